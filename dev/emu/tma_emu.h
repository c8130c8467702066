// tma_emu.h: sm_90's tensor memory accelerator and shared-memory barriers for the CPU emulator:
//   cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [dst], [map, {k, row}], [bar]
//   mbarrier.init / arrive / arrive.expect_tx / try_wait.parity, fence.mbarrier_init
//   setmaxnreg.{inc,dec}.sync.aligned (registers are not modelled: checked, then nothing)
// Kernels call tma_load_2d, mbar_init, mbar_init_fence, mbar_arrive, mbar_arrive_expect_tx,
// mbar_wait and setmaxnreg_{inc,dec}<N> (kernels/tma.cuh). Included at the end of cuda_emu.h.
//
// Written from the PTX ISA and the driver API's cuTensorMapEncodeTiled, NOT from the kernel:
//  * A tensor map (encode_tensor_map_2d, which the fake driver's cuTensorMapEncodeTiled calls) is
//    the emulator's own encoding of a 2-D tiled map in the 128 opaque bytes: global address
//    (16-byte aligned), element size, dims {inner, outer}, the outer stride in bytes (a multiple
//    of 16), the box {inner, outer} (each 1..256) and the swizzle. Modelled: 16-bit elements,
//    element strides 1, no interleave, zero fill, swizzle none or 128 bytes (box inner extent at
//    most 128 bytes). A map the driver would refuse is refused.
//  * A copy writes the box row-major at dst (element (r, c) at dst + r * inner box bytes + c * 2),
//    with the 128-byte swizzle applied to the shared address bits (bits 4-6 ^= bits 7-9), as
//    wgmma reads it; elements outside the tensor are 0. dst must be 128-byte aligned.
//  * mbarrier: a phase completes when its pending arrivals reach 0 and its transaction count is
//    0; arrive_expect_tx adds to the count, a landed copy subtracts its box's bytes (outside
//    elements included). try_wait.parity p succeeds once the phase of parity p has completed.
//
// When a copy lands: by default (deferred) at the latest moment the ISA allows, when a thread
// waits on its barrier and only the copies are missing; so a kernel that reads a stage without
// waiting for its barrier reads the stage's previous bytes. With `tma_copy_at_issue` at its
// issue, the earliest moment; a kernel that refills a stage while a wgmma still reads it is then
// reported by wgmma's issue-versus-retire check. emu_test runs the TMA kernels both ways.
// Also reported: use of an uninitialised barrier, an arrival beyond the phase's count, copies
// still pending when the block ends.
#pragma once

namespace emu {

struct EmuTensorMap { // the 128 opaque bytes of a map, as this emulator encodes them
    uint64_t magic;
    const unsigned char *addr;
    uint64_t dims[2], stride; // elements; outer stride in bytes
    uint32_t box[2], elem, swizzle; // swizzle: 0 none, 128 bytes
};
static_assert(sizeof(EmuTensorMap) <= 128, "fits CUtensorMap's opaque bytes");
constexpr uint64_t kTensorMapMagic = 0x454d55544d415032ull; // "EMUTMAP2"

// cuTensorMapEncodeTiled's checks and encoding for the modelled case; null or what is wrong.
inline const char *encode_tensor_map_2d(void *map, unsigned elem_bytes, const void *addr,
                                        const uint64_t dims[2], uint64_t stride_bytes,
                                        const uint32_t box[2], unsigned swizzle_bytes) {
    if (elem_bytes != 2) return "only 16-bit elements are modelled";
    if (uintptr_t(addr) % 16) return "global address not 16-byte aligned";
    if (dims[0] == 0 || dims[1] == 0 || dims[0] > (1ull << 32) || dims[1] > (1ull << 32))
        return "dimension outside 1 .. 2^32";
    if (stride_bytes % 16 || stride_bytes < dims[0] * elem_bytes || stride_bytes >= (1ull << 40))
        return "stride not a multiple of 16 bytes, below a row, or >= 2^40";
    if (box[0] == 0 || box[1] == 0 || box[0] > 256 || box[1] > 256) return "box dimension outside 1 .. 256";
    if (box[0] * elem_bytes % 16) return "box inner extent not a multiple of 16 bytes";
    if (swizzle_bytes != 0 && swizzle_bytes != 128) return "only no swizzle or the 128-byte swizzle is modelled";
    if (swizzle_bytes == 128 && box[0] * elem_bytes > 128) return "box inner extent above the 128-byte swizzle span";
    EmuTensorMap m{kTensorMapMagic, static_cast<const unsigned char *>(addr), {dims[0], dims[1]},
                   stride_bytes, {box[0], box[1]}, elem_bytes, swizzle_bytes};
    std::memset(map, 0, 128);
    std::memcpy(map, &m, sizeof m);
    return nullptr;
}

struct TmaCopy { uint64_t dst; EmuTensorMap map; int k, row; };

struct MBarrier {
    unsigned count = 0, pending = 0; // arrivals per phase, still to come in this one
    long long tx = 0;                // transaction bytes announced, not landed
    unsigned long long phase = 0;    // phases completed
    std::vector<TmaCopy> copies;     // issued, not landed (deferred)
};
inline GroupMutex mbar_mu;                       // the block's barriers (real threads: shared)
inline std::map<uint64_t, MBarrier> mbarriers;   // the running block's, by .shared address
inline bool tma_copy_at_issue = false;

inline MBarrier *mbarrier(uint64_t bar, const char *what) { // under mbar_mu
    const auto it = mbarriers.find(bar);
    if (it != mbarriers.end()) return &it->second;
    report(std::string(what) + ": barrier at shared address " + std::to_string(bar) + " not initialised");
    return nullptr;
}
inline void mbar_complete_if_done(MBarrier &b) {
    if (b.pending == 0 && b.tx == 0) {
        b.phase++;
        b.pending = b.count;
    }
#if EMU_FIBERS
    fiber_progress++;
#endif
}

inline void tma_run(const TmaCopy &c, MBarrier &b) { // under mbar_mu
    const EmuTensorMap &m = c.map;
    const uint64_t row_bytes = uint64_t(m.box[0]) * m.elem;
    for (uint32_t r = 0; r < m.box[1]; r++)
        for (uint32_t e = 0; e < m.box[0]; e++) {
            const long long y = (long long)c.row + r, x = (long long)c.k + e;
            uint16_t v = 0;
            if (y >= 0 && x >= 0 && uint64_t(y) < m.dims[1] && uint64_t(x) < m.dims[0])
                std::memcpy(&v, m.addr + uint64_t(y) * m.stride + uint64_t(x) * m.elem, 2);
            uint64_t a = c.dst + r * row_bytes + uint64_t(e) * m.elem;
            if (m.swizzle == 128) a ^= ((a >> 7) & 7u) << 4;
            if (unsigned char *p = const_cast<unsigned char *>(smem_at(a, 2, "cp.async.bulk.tensor")))
                std::memcpy(p, &v, 2);
        }
    b.tx -= (long long)(row_bytes * m.box[1]);
    mbar_complete_if_done(b);
}

inline void tma_block_begin() { mbarriers.clear(); }
inline void tma_block_end() {
    for (auto &[addr, b] : mbarriers)
        if (!b.copies.empty()) {
            report("cp.async.bulk.tensor copies still pending when the block ended (nobody waited "
                   "on their barrier)");
            break;
        }
    mbarriers.clear();
}

} // namespace emu

inline void mbar_init(unsigned bar, unsigned count) {
    std::lock_guard<emu::GroupMutex> g(emu::mbar_mu);
    if (bar % 8) emu::report("mbarrier.init: address not 8-byte aligned");
    if (count == 0 || count >= (1u << 20)) emu::report("mbarrier.init: count outside 1 .. 2^20 - 1");
    emu::smem_at(bar, 8, "mbarrier.init");
    emu::MBarrier &b = emu::mbarriers[bar];
    b = emu::MBarrier{};
    b.count = b.pending = count;
}
inline void mbar_init_fence() {}
inline void mbar_arrive_expect_tx(unsigned bar, unsigned bytes) {
    std::lock_guard<emu::GroupMutex> g(emu::mbar_mu);
    emu::MBarrier *b = emu::mbarrier(bar, "mbarrier.arrive.expect_tx");
    if (!b) return;
    if (b->pending == 0) emu::report("mbarrier.arrive: more arrivals than the barrier's count");
    b->tx += bytes;
    b->pending--;
    emu::mbar_complete_if_done(*b);
}
inline void mbar_arrive(unsigned bar) { mbar_arrive_expect_tx(bar, 0); }
inline void tma_load_2d(unsigned dst, const void *map, int k, int row, unsigned bar) {
    std::lock_guard<emu::GroupMutex> g(emu::mbar_mu);
    emu::EmuTensorMap m;
    std::memcpy(&m, map, sizeof m);
    if (m.magic != emu::kTensorMapMagic) {
        emu::report("cp.async.bulk.tensor: not a tensor map (encode it with cuTensorMapEncodeTiled)");
        return;
    }
    if (dst % 128) emu::report("cp.async.bulk.tensor: shared destination not 128-byte aligned");
    emu::MBarrier *b = emu::mbarrier(bar, "cp.async.bulk.tensor");
    if (!b) return;
    const emu::TmaCopy c{dst, m, k, row};
    if (emu::tma_copy_at_issue) emu::tma_run(c, *b);
    else b->copies.push_back(c);
}
inline void mbar_wait(unsigned bar, unsigned parity) {
#if !EMU_FIBERS
    unsigned spins = 0;
#endif
    for (;;) {
        {
            std::lock_guard<emu::GroupMutex> g(emu::mbar_mu);
            emu::MBarrier *b = emu::mbarrier(bar, "mbarrier.try_wait");
            if (!b || (b->phase & 1u) != (parity & 1u)) return;
            if (b->pending == 0 && !b->copies.empty()) { // deferred copies land now
                std::vector<emu::TmaCopy> copies;
                copies.swap(b->copies);
                for (const emu::TmaCopy &c : copies) emu::tma_run(c, *b);
                continue;
            }
        }
#if EMU_FIBERS
        emu::fiber_yield();
#else
        // Real threads (the ThreadSanitizer build): hundreds of them may wait at once on two
        // cores (a ping-pong consumer waits out the other's whole main loop); after a few
        // yields they sleep, so that the threads with work get the cores.
        if (++spins < 64) std::this_thread::yield();
        else std::this_thread::sleep_for(std::chrono::microseconds(50));
#endif
    }
}

// setmaxnreg: all 128 threads of a warpgroup from the same site (`.sync.aligned`), N a multiple
// of 8 in 24 .. 256.
template <int N> [[gnu::noinline]] void setmaxnreg_dec() {
    static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg: N a multiple of 8 in 24 .. 256");
    emu::warpgroup_sync("<setmaxnreg.dec call, return pc>", __builtin_return_address(0));
}
template <int N> [[gnu::noinline]] void setmaxnreg_inc() {
    static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg: N a multiple of 8 in 24 .. 256");
    emu::warpgroup_sync("<setmaxnreg.inc call, return pc>", __builtin_return_address(0));
}
