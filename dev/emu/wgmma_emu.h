// wgmma_emu.h: sm_90a's asynchronous warpgroup products for the CPU emulator:
//   wgmma.mma_async.sync.aligned.m64nNk16.f32.{bf16,f16}.{bf16,f16}  d, a-desc, b-desc, 1, 1, 1, 0, 0
//   wgmma.fence / commit_group / wait_group, fence.proxy.async.shared::cta
// Kernels call wgmma_k16<T, N>(d, a_desc, b_desc), wgmma_fence(), wgmma_commit(),
// wgmma_wait<N>() and fence_proxy_async_shared() (kernels/wgmma.cuh). Included at the end of
// cuda_emu.h (it needs emu::Warpgroup).
//
// Written from the PTX ISA ("Asynchronous Warpgroup Level Matrix Multiply-Accumulate", its
// matrix-descriptor format and shared-memory layouts, and the register fragment of D for
// m64nNk16), NOT from the kernel:
//  * Descriptor: start address >> 4 in bits 0-13, leading byte offset >> 4 in 16-29, stride byte
//    offset >> 4 in 32-45, base offset in 49-51, swizzle mode in 62-63. Modelled: swizzle mode 1
//    (128 bytes) with base offset 0, operands K-major (imm-trans 0), whose 16 k (32 bytes) lie in
//    one 128-byte row, so the leading byte offset is not used. Element (row r, k) of the operand
//    (A: r = m, 64 rows; B: r = n, N rows) is at address start + (r / 8) * SBO + (r % 8) * 128 +
//    2 k, with the 128-byte swizzle applied to the address bits: bits 4-6 ^= bits 7-9. Anything
//    else is reported as not modelled.
//  * D: lane l of warp w (of the warpgroup) holds d[4 j + i] = D[16 w + l / 4 + 8 (i / 2)][8 j +
//    2 (l % 4) + i % 2], j = 0 .. N/8 - 1.
//  * Numerics: as mma_emu.h's m16n8k16 (our choice; the ISA fixes neither order nor precision):
//    per element the 16 products summed in double, D added in double, one rounding to float.
//
// Asynchrony: the product happens at the latest moment the ISA allows, the wait_group that
// retires its group (as each thread arrives at it), reading shared memory and writing the accumulators then. A kernel that
// reads the accumulators before the wait, or overwrites an operand's stage while a group reading
// it is pending, therefore computes wrong values; the latter is also reported directly: each
// product's operands are read at issue too and must equal those at the wait. Also checked: all
// 128 threads of the warpgroup issue from the same site with the same descriptors (`.aligned`,
// "the same across all the warps"); wgmma_fence() before the first product after a wait (or at
// the start); fence_proxy_async_shared() after this thread's cp.async copies landed and before
// it issues a product reading shared memory (plain stores are not tracked); no product pending
// when the thread exits (cuda_emu.h).
#pragma once
#include <type_traits>

namespace emu {

// The .shared address of element (r, k) of a K-major operand with the 128-byte swizzle.
inline uint64_t wgmma_address(uint64_t desc, unsigned r, unsigned k) {
    const uint64_t start = (desc & 0x3fffu) << 4, sbo = ((desc >> 32) & 0x3fffu) << 4;
    const uint64_t logical = start + (r / 8) * sbo + (r % 8) * 128 + 2 * k;
    return logical ^ (((logical >> 7) & 7u) << 4);
}

inline bool wgmma_modelled(uint64_t desc) {
    const unsigned swizzle = unsigned(desc >> 62), base_offset = unsigned(desc >> 49) & 7u;
    if (swizzle == 1 && base_offset == 0) return true;
    report("wgmma: descriptor with swizzle mode " + std::to_string(swizzle) + ", base offset " +
           std::to_string(base_offset) + " is not modelled (only 128-byte swizzle, base offset 0)");
    return false;
}

// Row r's 16 k of a K-major operand (32 bytes, as stored): two 16-byte chunks, each contiguous
// under the swizzle (the start address is 16-byte aligned and the XOR moves whole chunks). A
// chunk outside shared memory is reported and reads as zeros.
inline void wgmma_row(uint64_t desc, unsigned r, uint16_t *out) {
    for (unsigned half = 0; half < 2; half++) {
        const unsigned char *p = smem_at(wgmma_address(desc, r, 8 * half), 16, "wgmma operand");
        if (p) std::memcpy(out + 8 * half, p, 16);
        else std::memset(out + 8 * half, 0, 16);
    }
}

// The operand elements this thread's sums read, as stored: its two A rows (16 w + l / 4 + 8 h),
// then the B rows of its columns (8 j + 2 (l % 4) + c, j-major), 16 k each.
inline std::vector<uint16_t> wgmma_operands(const PendingWgmma &op) {
    const unsigned lane = ctx.tid % 32, w = (ctx.tid % 128) / 32;
    std::vector<uint16_t> raw((2 + op.n / 4) * 16);
    for (unsigned h = 0; h < 2; h++) wgmma_row(op.a, 16 * w + lane / 4 + 8 * h, &raw[16 * h]);
    for (unsigned j = 0; j < op.n / 8; j++)
        for (unsigned c = 0; c < 2; c++)
            wgmma_row(op.b, 8 * j + 2 * (lane % 4) + c, &raw[16 * (2 + 2 * j + c)]);
    return raw;
}

// This thread's N / 2 sums of 16 products (the order of its accumulators): d[4 j + 2 h + c] =
// sum over k of A[16 w + l / 4 + 8 h][k] B[8 j + 2 (l % 4) + c][k], each in k order in double.
template <float (*widen)(uint16_t)>
inline std::vector<double> wgmma_sums_as(const std::vector<uint16_t> &raw, unsigned n) {
    double a[2][16];
    for (unsigned h = 0; h < 2; h++)
        for (unsigned k = 0; k < 16; k++) a[h][k] = double(widen(raw[16 * h + k]));
    std::vector<double> s(n / 2);
    for (unsigned j = 0; j < n / 8; j++) {
        double b[2][16];
        for (unsigned c = 0; c < 2; c++)
            for (unsigned k = 0; k < 16; k++) b[c][k] = double(widen(raw[16 * (2 + 2 * j + c) + k]));
        double sum[2][2] = {}; // [h][c]: four independent chains
        for (unsigned k = 0; k < 16; k++)
            for (unsigned h = 0; h < 2; h++)
                for (unsigned c = 0; c < 2; c++) sum[h][c] += a[h][k] * b[c][k];
        for (unsigned h = 0; h < 2; h++)
            for (unsigned c = 0; c < 2; c++) s[4 * j + 2 * h + c] = sum[h][c];
    }
    return s;
}

// At the wait that retires the product: its operands must be the bytes they were at issue, and
// the accumulators get the sums (D added in double, one rounding).
inline void wgmma_retire(const PendingWgmma &op) {
    const std::vector<uint16_t> now = wgmma_operands(op);
    if (now != op.at_issue)
        report("wgmma: an operand in shared memory changed between the product's issue and the "
               "wait_group that retired it");
    const std::vector<double> s = op.widen == widen_bf16 ? wgmma_sums_as<widen_bf16>(now, op.n)
                                                         : wgmma_sums_as<widen_f16>(now, op.n);
    for (unsigned i = 0; i < op.n / 2; i++) op.d[i] = float(s[i] + double(op.d[i]));
}

inline Warpgroup *warpgroup_of_thread(const char *what) {
    Block &b = *ctx.block;
    if (ctx.tid / 128 >= b.warpgroups.size()) {
        report(std::string(what) + ": thread outside a whole warpgroup (block size not a multiple of 128)");
        return nullptr;
    }
    return b.warpgroups[ctx.tid / 128].get();
}

// The warpgroup-collective part of every wgmma instruction: all 128 threads arrive from the same
// site (checked by the barrier), and for the product, with the same descriptors. The barrier
// orders nothing for ThreadSanitizer (the instructions are not memory barriers), except where
// `orders`: at wait_group, whose retirement of the warpgroup's products is one event (every
// member's operand reads precede any member's return from the wait).
inline void warpgroup_sync(const char *what, const void *ret_pc, uint64_t a = 0, uint64_t b = 0,
                           bool orders = false) {
    Warpgroup *g = warpgroup_of_thread(what);
    if (!g) return;
    const unsigned member = ctx.tid % 128;
    if (!orders) EMU_IGNORE_SYNC_BEGIN();
    ignoring_sync += !orders;
    const unsigned buf = g->group.phase.load() & 1u;
    g->desc_xchg[buf][member][0].store(a, std::memory_order_relaxed);
    g->desc_xchg[buf][member][1].store(b, std::memory_order_relaxed);
    g->group.wait(member, Site{what, unsigned(uintptr_t(ret_pc))});
    if (g->desc_xchg[buf][0][0].load(std::memory_order_relaxed) != a ||
        g->desc_xchg[buf][0][1].load(std::memory_order_relaxed) != b)
        report(std::string(what) + ": descriptors differ across the warpgroup");
    ignoring_sync -= !orders;
    if (!orders) EMU_IGNORE_SYNC_END();
}

inline void wgmma_issue(float *d, unsigned n, uint64_t a, uint64_t b, float (*widen)(uint16_t),
                        const void *ret_pc) {
    warpgroup_sync("<wgmma.mma_async call, return pc>", ret_pc, a, b);
    if (!wg_fenced) report("wgmma.mma_async without a wgmma.fence since the last wait_group");
    if (cp_landed)
        report("wgmma.mma_async after cp.async copies landed without fence.proxy.async.shared::cta");
    if (!wgmma_modelled(a) || !wgmma_modelled(b)) return;
    PendingWgmma op{d, n, a, b, widen, {}};
    op.at_issue = wgmma_operands(op);
    wg_open.push_back(std::move(op));
}

[[gnu::noinline]] static void wgmma_fence_at_caller() {
    warpgroup_sync("<wgmma.fence call, return pc>", __builtin_return_address(0));
    wg_fenced = true;
}
[[gnu::noinline]] static void wgmma_commit_at_caller() {
    warpgroup_sync("<wgmma.commit_group call, return pc>", __builtin_return_address(0));
    wg_committed.push_back(std::move(wg_open));
    wg_open.clear();
}
// Each thread retires its share of the groups before the warpgroup's barrier, so that when any
// thread returns from the wait the whole warpgroup's products have read their operands: one
// thread may then release the stages (linear_tma.cu arrives on an mbarrier for its warpgroup).
[[gnu::noinline]] static void wgmma_wait_at_caller(size_t n) {
    while (wg_committed.size() > n) {
        for (const PendingWgmma &op : wg_committed.front()) wgmma_retire(op);
        wg_committed.erase(wg_committed.begin());
    }
    warpgroup_sync("<wgmma.wait_group call, return pc>", __builtin_return_address(0), 0, 0, true);
    wg_fenced = false;
}
template <typename T, int N>
[[gnu::noinline]] static void wgmma_at_caller(float *d, uint64_t a, uint64_t b) {
    static_assert(std::is_same_v<T, bf16> || std::is_same_v<T, f16>, "bf16 or f16 operands");
    wgmma_issue(d, N, a, b, std::is_same_v<T, bf16> ? widen_bf16 : widen_f16,
                __builtin_return_address(0));
}

} // namespace emu

[[gnu::always_inline]] inline void wgmma_fence() { emu::wgmma_fence_at_caller(); }
[[gnu::always_inline]] inline void wgmma_commit() { emu::wgmma_commit_at_caller(); }
template <int N> [[gnu::always_inline]] inline void wgmma_wait() { emu::wgmma_wait_at_caller(size_t(N)); }
inline void fence_proxy_async_shared() { emu::cp_landed = false; }
// kernels/wgmma.cuh declares it again for the host.
template <typename T, int N>
[[gnu::always_inline]] inline void wgmma_k16(float (&d)[N / 8][4], unsigned long long a,
                                             unsigned long long b) {
    emu::wgmma_at_caller<T, N>(&d[0][0], a, b);
}
