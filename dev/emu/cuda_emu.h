// cuda_emu.h: runs the CUDA kernels of kernels/*.cu as plain C++ on the CPU, to test them
// without a GPU. Force-included (g++ -include) before each kernel source.
//
// Execution model (see launch() at the end):
//  * Blocks run one after another; the threads of a block run as fibers on the launching thread
//    (default), switched round-robin whenever one waits at a barrier, or, in the sanitizer
//    builds (EMU_FIBERS=0), concurrently, one std::thread per CUDA thread. Everything a block
//    shares therefore lives in per-block state. See "fibers" below.
//  * `__shared__` is `static`: a static local of a (template) function is one object shared by
//    every thread that runs it, which is exactly shared memory while only one block runs at a
//    time. Caveat: it keeps the previous block's values (real shared memory starts undefined), so
//    a read-before-write of a static __shared__ array reads stale data instead of garbage.
//  * `extern __shared__ T name[];` cannot be spelled with a macro (`extern static` is not C++),
//    so run.sh rewrites exactly that line into EMU_DYNAMIC_SHARED(T, name), a pointer into a
//    per-launch buffer of shared_mem_bytes, refilled with NaN bytes before every block and
//    surrounded by guard bytes that are checked after every block (out-of-bounds writes).
//  * __syncthreads is a barrier (emu::Group) of all threads of the block; __syncwarp and the
//    shuffles use a barrier of the 32 lanes of the warp plus an exchange buffer. Every barrier
//    checks that all participating threads called it from the same source line (divergent
//    barriers) and that no thread of the block/warp has exited before it (barrier after an
//    early return, shuffle with inactive lanes). Violations are recorded in emu::errors(),
//    which the tests check.
//  * mma.sync.m16n8k16 (bf16/f16 -> f32) is a warp-collective exchange of the fragments through
//    the same checked warp barrier: see mma_emu.h, included at the end.
//  * wgmma.mma_async (sm_90a, m64nNk16 from shared-memory descriptors) runs at the wait_group
//    that retires it, through a checked barrier of the warpgroup's 128 threads: wgmma_emu.h.
//    Dynamic shared memory has emulated .shared addresses (smem_u32) for its descriptors, and
//    starts 528 bytes past a 1024-byte boundary (16-byte aligned as CUDA promises, no more).
//  * cp.async copies run when the issuing thread waits for their group (see "cp.async" below);
//    TMA copies (cp.async.bulk.tensor) when a thread waits on their mbarrier: tma_emu.h.
//  * Emulated barriers and shuffles are full memory fences between the participants, so a
//    missing barrier only shows when the schedule happens to expose it. Build with
//    EMU_SAN=thread (ThreadSanitizer) to see every unordered shared-memory access; in that build
//    shuffles do not count as ordering (as on the GPU), only __syncwarp/__syncthreads do.
#pragma once

#include <math.h> // expf, erff, ... in the global namespace, INFINITY
#include <atomic>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <source_location>
#include <string>
#include <thread>
#include <chrono>
#include <tuple>
#include <functional>
#include <map>
#include <vector>
#if defined(__SANITIZE_ADDRESS__) // under ASan, reads of the guard bytes are reported too
#include <sanitizer/asan_interface.h>
#define EMU_GUARD(p, n, on) ((on) ? ASAN_POISON_MEMORY_REGION(p, n) : ASAN_UNPOISON_MEMORY_REGION(p, n))
#else
#define EMU_GUARD(p, n, on) ((void)0)
#endif
// A real shuffle exchanges registers but does not order shared-memory accesses between lanes
// (only __syncwarp / __syncthreads do). Under ThreadSanitizer the emulated shuffle's barrier is
// therefore hidden from TSan, so a missing __syncwarp after a shuffle shows up as a data race.
#if defined(__SANITIZE_THREAD__)
extern "C" void AnnotateIgnoreSyncBegin(const char *file, int line);
extern "C" void AnnotateIgnoreSyncEnd(const char *file, int line);
#define EMU_IGNORE_SYNC_BEGIN() AnnotateIgnoreSyncBegin(__FILE__, __LINE__)
#define EMU_IGNORE_SYNC_END() AnnotateIgnoreSyncEnd(__FILE__, __LINE__)
#else
#define EMU_IGNORE_SYNC_BEGIN() ((void)0)
#define EMU_IGNORE_SYNC_END() ((void)0)
#endif

// ---- qualifiers --------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static // see above; __restrict__ is already a g++ keyword
#define EMU_DYNAMIC_SHARED(T, name) T *name = static_cast<T *>(::emu::dynamic_shared())

// Fibers (EMU_FIBERS, the default without sanitizers): the threads of a block run as fibers on
// the launching thread, switched at barriers (see "fibers" below), instead of one std::thread
// each: ~100x faster on few cores. The sanitizer builds keep real threads (TSan sees the races
// between them; ASan does not follow stack switches).
#ifndef EMU_FIBERS
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define EMU_FIBERS 0
#else
#define EMU_FIBERS 1
#endif
#endif
// The state of an emulated thread (indices, ctx, pending copies and products): thread_local
// with real threads; with fibers plain globals that the scheduler swaps (one launch runs at a
// time in a process either way: launch() is not reentrant).
#if EMU_FIBERS
#define EMU_THREAD_STATE
#else
#define EMU_THREAD_STATE thread_local
#endif
// ---- thread and block indices ------------------------------------------------------------------
// CUDA's 16-byte vector type (16-byte aligned, as on the device) and its constructor.
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline EMU_THREAD_STATE dim3 threadIdx, blockIdx, blockDim, gridDim;

// ---- bit casts ----------------------------------------------------------------------------------
inline uint32_t emu_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float emu_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __uint_as_float(unsigned u) { return emu_float(u); }
inline float __int_as_float(int i) { return emu_float(uint32_t(i)); }
inline unsigned __float_as_uint(float f) { return emu_bits(f); }
inline int __float_as_int(float f) { return int(emu_bits(f)); }

// ---- 16-bit float types, exact round-to-nearest-even -------------------------------------------
// cuda_bf16.h / cuda_fp16.h's names, for kernels that use them; also the test's independent
// conversions (self-tested against the compiler's _Float16 and a slow RNE in emu_test.cpp).
struct __nv_bfloat16 { uint16_t bits; };
struct __half { uint16_t bits; };

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u = emu_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {uint16_t((u >> 16) | 0x40u)}; // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u); // round half to even; overflow carries into inf
    return {uint16_t(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 h) { return emu_float(uint32_t(h.bits) << 16); }

inline __half __float2half_rn(float f) {
    const uint32_t u = emu_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return {uint16_t(sign | 0x7e00u)};  // NaN
    if (a >= 0x477ff000u) return {uint16_t(sign | 0x7c00u)}; // >= 65520 rounds to inf
    if (a < 0x38800000u) {                                    // < 2^-14: subnormal or zero
        // |f| * 2^24 is exact; rounding it to an integer (RNE, the default mode) gives the
        // subnormal's mantissa, or 0x400 (the smallest normal) when it rounds up to it.
        return {uint16_t(sign | uint32_t(std::nearbyint(double(emu_float(a)) * 16777216.0)))};
    }
    uint32_t h = ((((a >> 23) - 127 + 15) << 10) | ((a & 0x7fffffu) >> 13));
    const uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; // carry may roll into the exponent
    return {uint16_t(sign | h)};
}
// common.cuh declares this for host compilation (the device version is PTX cvt.rn.f16.f32).
inline unsigned short f16_bits(float x) { return __float2half_rn(x).bits; }
inline float __half2float(__half h) {
    const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16, e = (h.bits >> 10) & 0x1fu,
                   m = h.bits & 0x3ffu;
    if (e == 0) return (sign ? -1.0f : 1.0f) * float(m) * 0x1p-24f; // zero or subnormal (exact)
    if (e == 31) return emu_float(sign | 0x7f800000u | (m << 13));  // inf / NaN
    return emu_float(sign | ((e - 15 + 127) << 23) | (m << 13));
}

// ---- the emulator's per-block state ------------------------------------------------------------
namespace emu {

struct Site { const char *file = nullptr; unsigned line = 0; };

// Problems found while running kernels (divergent barriers, ...); checked by the tests.
inline std::mutex errors_mu;
inline EMU_THREAD_STATE int ignoring_sync = 0; // inside a shuffle of the TSan build (see below)
inline std::vector<std::string> &errors() { static std::vector<std::string> e; return e; }
inline void report(const std::string &msg) {
    if (ignoring_sync) EMU_IGNORE_SYNC_END(); // this lock must order the vector for TSan
    {
        std::lock_guard<std::mutex> g(errors_mu);
        if (errors().size() < 20) errors().push_back(msg);
    }
    if (ignoring_sync) EMU_IGNORE_SYNC_BEGIN();
}
inline std::string where(Site s) { return std::string(s.file) + ":" + std::to_string(s.line); }

#if EMU_FIBERS
inline void fiber_yield(); // to the block's scheduler, which resumes the next fiber
inline unsigned long fiber_progress = 0; // arrivals and exits, for deadlocks
// The fibers of a launch share one OS thread: nothing to lock.
struct GroupMutex { void lock() {} void unlock() {} };
#else
using GroupMutex = std::mutex;
#endif

// A barrier of the threads of a block or of the lanes of a warp (with threads: mutex + condition
// variable, so that members can leave it when they return from the kernel). When the last member
// arrives it checks the phase: all members must wait at the same call site, and none may have
// exited (CUDA requires block-/warp-uniform barriers). Its counters are atomics only so that the
// TSan build can ignore its synchronisation without reports on this bookkeeping; the mutex
// guards them (hence relaxed), and `phase` is read outside it only by a member that has not
// arrived yet, so it cannot change meanwhile.
struct Group {
    struct Slot { std::atomic<const char *> file{nullptr}; std::atomic<unsigned> line{0}; };
    static constexpr auto kRelaxed = std::memory_order_relaxed;
    GroupMutex mu;
#if !EMU_FIBERS
    std::condition_variable cv;
#endif
    std::atomic<unsigned> expected, arrived{0}, phase{0}, exited{0};
    std::unique_ptr<Slot[]> site; // where each member waits in this phase (file null: not)
    const unsigned n, first;      // members; linear thread id of member 0 (for messages)
    const char *what;             // "__syncthreads" or "warp"
    Group(unsigned n_, const char *what_, unsigned first_)
        : expected(n_), site(new Slot[n_]), n(n_), first(first_), what(what_) {}

    void wait(unsigned member, Site s) {
        std::unique_lock<GroupMutex> lk(mu);
        site[member].file.store(s.file, kRelaxed);
        site[member].line.store(s.line, kRelaxed);
        const unsigned p = phase.load(kRelaxed);
        const bool last = arrived.fetch_add(1, kRelaxed) + 1 == expected.load(kRelaxed);
#if EMU_FIBERS
        fiber_progress++;
        if (last) complete();
        else {
            lk.unlock();
            while (phase.load(kRelaxed) == p) fiber_yield();
        }
#else
        if (last) complete();
        else cv.wait(lk, [&] { return phase.load(kRelaxed) != p; });
#endif
    }
    void exit() { // the member returned from the kernel
        std::lock_guard<GroupMutex> lk(mu);
#if EMU_FIBERS
        fiber_progress++;
#endif
        exited.fetch_add(1, kRelaxed);
        const unsigned left = expected.fetch_sub(1, kRelaxed) - 1, in = arrived.load(kRelaxed);
        if (left == in && in > 0) complete();
    }
    void complete() { // under mu
        Site ref{};
        for (unsigned i = 0; i < n; i++) {
            const Site s{site[i].file.load(kRelaxed), site[i].line.load(kRelaxed)};
            site[i].file.store(nullptr, kRelaxed);
            if (!s.file) continue;
            if (!ref.file) ref = s;
            else if (s.line != ref.line || (s.file != ref.file && std::strcmp(s.file, ref.file) != 0))
                report(std::string("divergent ") + what + ": thread " + std::to_string(first + i) +
                       " at " + where(s) + ", another at " + where(ref) + block_str());
        }
        if (ref.file && exited.load(kRelaxed) > 0)
            report(std::string(what) + " at " + where(ref) + " after " +
                   std::to_string(exited.load()) + " thread(s) of the group exited" + block_str());
        arrived.store(0, kRelaxed);
        phase.fetch_add(1, kRelaxed);
#if !EMU_FIBERS
        cv.notify_all();
#endif
    }
    static std::string block_str() {
        return " (block " + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," +
               std::to_string(blockIdx.z) + ")";
    }
};

// One mma.m16n8k16's operands, assembled from a warp's fragments (mma_emu.h).
struct MmaTile {
    float A[16][16], B[16][8], C[16][8];
    unsigned phase = ~0u; // the warp barrier phase they were assembled in
};

struct Warp {
    Group group;
    MmaTile mma_tile[2]; // with fibers: assembled once per mma, by the first lane (mma_emu.h)
    std::atomic<double> xchg[32]; // shuffle exchange buffer (float and double fit exactly)
    // mma_m16n8k16 fragments (mma_emu.h): [buffer][lane][registers a[0..3], b[0..1], c[0..3] bits]
    std::atomic<uint32_t> mma_xchg[2][32][10];
    explicit Warp(unsigned first) : group(32, "warp", first) {}
};

// The 4 warps of a warpgroup (threads 128 g .. 128 g + 127), for wgmma (wgmma_emu.h): a barrier
// of its 128 threads and a double-buffered exchange of their two descriptors.
struct Warpgroup {
    Group group;
    std::atomic<uint64_t> desc_xchg[2][128][2];
    explicit Warpgroup(unsigned first) : group(128, "warpgroup", first) {}
};

struct Block {
    Group group;
    std::vector<std::unique_ptr<Warp>> warps;
    std::vector<std::unique_ptr<Warpgroup>> warpgroups; // whole warpgroups only
    explicit Block(unsigned n) : group(n, "__syncthreads", 0) {
        for (unsigned w = 0; w < n / 32; w++) warps.push_back(std::make_unique<Warp>(w * 32));
        for (unsigned g = 0; g < n / 128; g++) warpgroups.push_back(std::make_unique<Warpgroup>(g * 128));
    }
};

// A thread block cluster (sm_90; launch_cluster below): its blocks run at the same time, and
// barrier.cluster is a barrier of all their threads. A plain launch has no Cluster (a cluster of
// one block, as on the GPU).
struct Cluster {
    Group group;
    unsigned blocks;
    Cluster(unsigned threads, unsigned blocks_) : group(threads, "barrier.cluster", 0), blocks(blocks_) {}
};

struct ThreadCtx {
    Block *block = nullptr;
    unsigned tid = 0;
    Cluster *cluster = nullptr;
    unsigned rank = 0; // the block's rank in its cluster (%cluster_ctarank)
};
inline EMU_THREAD_STATE ThreadCtx ctx;
// The running block's dynamic shared memory: per emulated thread, since the blocks of a cluster
// run at the same time, each with its own.
inline EMU_THREAD_STATE unsigned char *dyn_smem = nullptr;
inline size_t dyn_smem_bytes = 0;
// Dynamic shared memory starts at this many bytes past a 1024-byte boundary (host address and
// emulated .shared address alike): 16-byte aligned as CUDA promises, and no more, so a kernel
// that needs a coarser alignment (wgmma's 1024-byte swizzle atoms) must make it itself.
constexpr size_t kSmemPhase = 528;
// The .shared address of dynamic shared memory's first byte: congruent to the host address
// modulo 1024, so that alignment worked out on a generic pointer holds for the address too.
constexpr unsigned kSmemWindow = 1024 + kSmemPhase;

inline void *dynamic_shared() { return dyn_smem; }

inline Site site_of(const std::source_location &l) { return Site{l.file_name(), l.line()}; }

} // namespace emu

// A generic pointer into dynamic shared memory as a .shared address (mma.cuh smem_u32 on the
// device), and back. Only dynamic shared memory has emulated addresses.
inline unsigned smem_u32(const void *p) {
    const auto *c = static_cast<const unsigned char *>(p);
    if (!emu::dyn_smem || c < emu::dyn_smem || c > emu::dyn_smem + emu::dyn_smem_bytes) {
        emu::report("smem_u32: pointer outside dynamic shared memory");
        return 0;
    }
    return emu::kSmemWindow + unsigned(c - emu::dyn_smem);
}
namespace emu {
// The host address of `bytes` bytes at .shared address `a`, or null (reported) outside.
inline const unsigned char *smem_at(uint64_t a, size_t bytes, const char *what) {
    if (a < kSmemWindow || a - kSmemWindow + bytes > dyn_smem_bytes) {
        report(std::string(what) + ": shared address " + std::to_string(a) +
               " outside dynamic shared memory");
        return nullptr;
    }
    return dyn_smem + (a - kSmemWindow);
}
} // namespace emu

// ---- barriers and warp intrinsics --------------------------------------------------------------
inline void __syncthreads(std::source_location l = std::source_location::current()) {
    emu::ctx.block->group.wait(emu::ctx.tid, emu::site_of(l));
}

// kernels/cluster.cuh on the device: %cluster_ctarank, %cluster_nctarank, and barrier.cluster
// (arrive.release + wait.acquire) of every thread of the cluster; without a cluster (a plain
// launch) the block is a cluster of one, as on the GPU.
inline unsigned cluster_ctarank() { return emu::ctx.rank; }
inline unsigned cluster_nctarank() { return emu::ctx.cluster ? emu::ctx.cluster->blocks : 1u; }
inline void cluster_sync(std::source_location l = std::source_location::current()) {
    if (!emu::ctx.cluster) return __syncthreads(l);
    const unsigned n = unsigned(emu::ctx.block->warps.size()) * 32;
    emu::ctx.cluster->group.wait(emu::ctx.rank * n + emu::ctx.tid, emu::site_of(l));
}
// ld.global.cg: a load through L2 only (no stale L1 line of data another block wrote).
template <typename T> inline T __ldcg(const T *p) { return *p; }

// kernels/grid_sync.cuh on the device: the words of a barrier among the blocks of a cooperative
// launch (emu::launch_cooperative runs them all at once). The arrival and the release count as
// progress for the fibers' deadlock check; a spinning block does not, so blocks that wait on
// arrivals that never come are reported.
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void grid_progress() {
#if EMU_FIBERS
    emu::fiber_progress++;
#endif
}
inline unsigned grid_load_acquire(const unsigned *p) {
    return std::atomic_ref<unsigned>(*const_cast<unsigned *>(p)).load(std::memory_order_acquire);
}
inline unsigned grid_atomic_add(unsigned *p, unsigned v) {
    grid_progress();
    return std::atomic_ref<unsigned>(*p).fetch_add(v, std::memory_order_acq_rel);
}
inline void grid_store_release(unsigned *p, unsigned v) {
    grid_progress();
    std::atomic_ref<unsigned>(*p).store(v, std::memory_order_release);
}
inline void grid_spin_pause() {
#if EMU_FIBERS
    emu::fiber_yield();
#else
    std::this_thread::sleep_for(std::chrono::microseconds(20));
#endif
}

inline void __syncwarp(unsigned mask = 0xffffffffu,
                       std::source_location l = std::source_location::current()) {
    if (mask != 0xffffffffu) emu::report("__syncwarp with a partial mask is not emulated");
    emu::Warp &w = *emu::ctx.block->warps[emu::ctx.tid / 32];
    w.group.wait(emu::ctx.tid % 32, emu::site_of(l));
}

template <typename T>
inline T emu_shfl_xor(unsigned mask, T v, int lane_mask, int width, std::source_location l) {
    if (mask != 0xffffffffu || width != 32)
        emu::report("__shfl_xor_sync with a partial mask or width is not emulated");
    emu::Warp &w = *emu::ctx.block->warps[emu::ctx.tid / 32];
    const unsigned lane = emu::ctx.tid % 32;
    EMU_IGNORE_SYNC_BEGIN();
    emu::ignoring_sync++;
    w.xchg[lane].store(double(v), std::memory_order_relaxed);
    w.group.wait(lane, emu::site_of(l)); // every lane has published its value
    const T r = T(w.xchg[(lane ^ unsigned(lane_mask)) & 31u].load(std::memory_order_relaxed));
    w.group.wait(lane, emu::site_of(l)); // every lane has read before the buffer is reused
    emu::ignoring_sync--;
    EMU_IGNORE_SYNC_END();
    return r;
}
inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask, int width = 32,
                             std::source_location l = std::source_location::current()) {
    return emu_shfl_xor(mask, v, lane_mask, width, l);
}
inline double __shfl_xor_sync(unsigned mask, double v, int lane_mask, int width = 32,
                              std::source_location l = std::source_location::current()) {
    return emu_shfl_xor(mask, v, lane_mask, width, l);
}

// ---- cp.async (sm_80): asynchronous global -> shared copies -----------------------------------
// Kernels call cp_async16(dst, src, src_bytes) (16 bytes, src_bytes < 16 zero-fills the rest),
// cp_async_commit() and cp_async_wait<N>() (kernels/mma.cuh; on the GPU: cp.async.cg,
// cp.async.commit_group, cp.async.wait_group). The emulation performs each copy at the latest
// moment the PTX ISA allows: when the issuing thread's cp_async_wait<N> needs its group complete
// (a thread's groups complete in commit order). Before that the destination keeps its old bytes,
// so a read of a stage before its wait (or a wait of the wrong depth) sees stale data. Checked:
// 16-byte alignment of both addresses, and no copy left pending when the thread exits.
// EMU_CP_EARLY=1 in the environment: each copy lands at the earliest moment instead, when it is
// issued, so a stage restaged while another warp may still read it (a missing barrier between
// the last read and the next copy) shows as wrong values. A correct kernel passes both ways.
namespace emu {
struct PendingCopy { void *dst; const void *src; int src_bytes; };
inline EMU_THREAD_STATE std::vector<PendingCopy> cp_open;                  // issued, not committed
inline EMU_THREAD_STATE std::vector<std::vector<PendingCopy>> cp_committed; // groups, oldest first
inline bool cp_early() {
    static const bool early = [] {
        const char *e = std::getenv("EMU_CP_EARLY");
        return e && *e && std::string(e) != "0";
    }();
    return early;
}
inline void cp_copy(const PendingCopy &c) {
    std::memcpy(c.dst, c.src, size_t(c.src_bytes));
    std::memset(static_cast<unsigned char *>(c.dst) + c.src_bytes, 0, size_t(16 - c.src_bytes));
}
inline void cp_run(const std::vector<PendingCopy> &group) {
    if (cp_early()) return; // landed when issued
    for (const PendingCopy &c : group) cp_copy(c);
}
inline void cp_check_exit() { // empty groups left uncompleted are harmless
    bool pending = !cp_open.empty();
    for (const auto &g : cp_committed) pending |= !g.empty();
    if (pending) report("cp.async copies still pending when the thread exited (missing cp_async_wait<0>)");
    cp_open.clear();
    cp_committed.clear();
}
} // namespace emu

inline void cp_async16(void *dst, const void *src, int src_bytes) {
    if ((uintptr_t(dst) | uintptr_t(src)) & 15u) emu::report("cp.async: address not 16-byte aligned");
    if (src_bytes < 0 || src_bytes > 16) emu::report("cp.async: src_bytes outside 0..16");
    emu::cp_open.push_back({dst, src, src_bytes < 0 ? 0 : (src_bytes > 16 ? 16 : src_bytes)});
    if (emu::cp_early()) emu::cp_copy(emu::cp_open.back());
}
inline void cp_async_commit() {
    emu::cp_committed.push_back(std::move(emu::cp_open));
    emu::cp_open.clear();
}
namespace emu { inline EMU_THREAD_STATE bool cp_landed = false; } // for wgmma's proxy-fence check
template <int N> inline void cp_async_wait() {
    while (emu::cp_committed.size() > size_t(N)) {
        emu::cp_landed |= !emu::cp_committed.front().empty();
        emu::cp_run(emu::cp_committed.front());
        emu::cp_committed.erase(emu::cp_committed.begin());
    }
}

// ---- wgmma (sm_90a): per-thread state of the asynchronous warpgroup products ------------------
// The operations themselves are in wgmma_emu.h; here is what launch() checks at thread exit.
namespace emu {
struct PendingWgmma {
    float *d;                    // the thread's accumulators, N / 2 floats
    unsigned n;                  // N of m64nNk16
    uint64_t a, b;               // descriptors
    float (*widen)(uint16_t);
    std::vector<uint16_t> at_issue; // the operand elements the thread's sums read, at issue
};
inline EMU_THREAD_STATE std::vector<PendingWgmma> wg_open;                   // issued, not committed
inline EMU_THREAD_STATE std::vector<std::vector<PendingWgmma>> wg_committed; // groups, oldest first
inline EMU_THREAD_STATE bool wg_fenced = false;       // wgmma_fence since the last wait
inline void wgmma_check_exit() {
    bool pending = !wg_open.empty();
    for (const auto &g : wg_committed) pending |= !g.empty();
    if (pending) report("wgmma still pending when the thread exited (missing wgmma_wait<0>)");
    wg_open.clear();
    wg_committed.clear();
    wg_fenced = false;
    cp_landed = false;
}

// ---- fibers ------------------------------------------------------------------------------------
// With EMU_FIBERS, launch() runs a block's threads as fibers (ucontext) on its own thread: each
// runs until it waits at a barrier whose phase has not completed, then yields to the scheduler,
// which resumes the next unfinished fiber round-robin. The thread-local state of an emulated
// thread (indices, ctx, pending cp.async and wgmma groups) is swapped in and out with it. A round
// in which no fiber arrives at a barrier or exits is a deadlock: reported, then abort().
#if EMU_FIBERS
} // namespace emu
#include <sys/mman.h>
#if defined(__x86_64__) && !defined(EMU_FIBER_UCONTEXT)
#define EMU_FIBER_ASM 1
#else
#define EMU_FIBER_ASM 0
#include <ucontext.h>
#endif
namespace emu {

struct FiberTls { // an emulated thread's EMU_THREAD_STATE while it is switched out
    dim3 thread_idx, block_idx; // blockDim, gridDim: the same for every fiber of the launch
    unsigned char *smem = nullptr;
    ThreadCtx ctx;
    int ignoring_sync = 0;
    std::vector<PendingCopy> cp_open;
    std::vector<std::vector<PendingCopy>> cp_committed;
    bool cp_landed = false;
    std::vector<PendingWgmma> wg_open;
    std::vector<std::vector<PendingWgmma>> wg_committed;
    bool wg_fenced = false;
    void swap_with_thread() {
        std::swap(thread_idx, threadIdx), std::swap(block_idx, blockIdx), std::swap(ctx, emu::ctx);
        std::swap(smem, emu::dyn_smem);
        std::swap(ignoring_sync, emu::ignoring_sync);
        cp_open.swap(emu::cp_open), cp_committed.swap(emu::cp_committed);
        std::swap(cp_landed, emu::cp_landed);
        wg_open.swap(emu::wg_open), wg_committed.swap(emu::wg_committed);
        std::swap(wg_fenced, emu::wg_fenced);
    }
};

struct Fiber {
    FiberTls tls; // the fiber's state while it is not running
    const std::function<void()> *body = nullptr;
    bool done = false;
#if EMU_FIBER_ASM
    void *sp = nullptr; // saved stack pointer while switched out
#else
    ucontext_t uc;
#endif
};

constexpr size_t kFiberStack = 256 * 1024; // + a PROT_NONE guard page below: overflow faults
inline Fiber *fiber_current = nullptr;

inline std::vector<void *> &fiber_stacks() { // reused across blocks and launches
    static std::vector<void *> stacks;
    return stacks;
}
inline void *fiber_stack(size_t i) {
    auto &stacks = fiber_stacks();
    while (stacks.size() <= i) {
        void *m = mmap(nullptr, kFiberStack + 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) { std::perror("emu: fiber stack"); std::abort(); }
        mprotect(m, 4096, PROT_NONE);
        stacks.push_back(static_cast<char *>(m) + 4096);
    }
    return stacks[i];
}

#if EMU_FIBER_ASM
// emu_fiber_switch(&save, load): pushes the callee-saved registers, MXCSR and the x87 control
// word (System V x86-64) on the current stack, stores the stack pointer in *save, switches to
// `load` and pops the same from there. No system call (ucontext's swapcontext makes one per
// switch for the signal mask: ~5x slower here).
extern "C" void emu_fiber_switch(void **save, void *load);
asm(R"(
    .text
    .globl emu_fiber_switch
    .type emu_fiber_switch, @function
emu_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_fiber_switch, .-emu_fiber_switch
)");
inline void *fiber_scheduler_sp = nullptr;
[[noreturn]] inline void fiber_start() {
    Fiber *f = fiber_current;
    (*f->body)();
    f->done = true;
    emu_fiber_switch(&f->sp, fiber_scheduler_sp);
    std::abort(); // never resumed
}
// A new fiber's stack as emu_fiber_switch leaves a switched-out one: control words, six
// registers, then fiber_start as the return address, placed so that fiber_start begins with the
// stack aligned as after a call (rsp = 8 mod 16).
inline void fiber_init(Fiber &f, void *stack) {
    auto *top = reinterpret_cast<uint64_t *>(
        (reinterpret_cast<uintptr_t>(stack) + kFiberStack) & ~uintptr_t(15));
    uint64_t *sp = top - 2; // [sp] = return address; after ret, rsp = top - 8 (8 mod 16)
    sp[0] = reinterpret_cast<uint64_t>(&fiber_start);
    sp -= 6;
    for (int i = 0; i < 6; i++) sp[i] = 0; // r15 r14 r13 r12 rbx rbp
    sp -= 1;
    uint32_t mxcsr;
    uint16_t fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    std::memcpy(sp, &mxcsr, 4);
    std::memcpy(reinterpret_cast<char *>(sp) + 4, &fpucw, 2);
    f.sp = sp;
}
inline void fiber_resume(Fiber &f) { emu_fiber_switch(&fiber_scheduler_sp, f.sp); }
} // namespace emu
inline void emu::fiber_yield() { emu_fiber_switch(&fiber_current->sp, fiber_scheduler_sp); }
namespace emu {
#else
inline ucontext_t fiber_scheduler;
inline void fiber_entry() {
    Fiber *f = fiber_current;
    (*f->body)();
    f->done = true; // uc_link returns to the scheduler
}
inline void fiber_init(Fiber &f, void *stack) {
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = stack;
    f.uc.uc_stack.ss_size = kFiberStack;
    f.uc.uc_link = &fiber_scheduler;
    makecontext(&f.uc, fiber_entry, 0);
}
inline void fiber_resume(Fiber &f) { swapcontext(&fiber_scheduler, &f.uc); }
} // namespace emu
inline void emu::fiber_yield() { swapcontext(&fiber_current->uc, &fiber_scheduler); }
namespace emu {
#endif

// Runs body(t) for t < n as n fibers; returns when all have returned.
inline void run_fibers(unsigned n, const std::function<void(unsigned)> &body) {
    std::vector<Fiber> fibers(n);
    std::vector<std::function<void()>> bodies(n);
    for (unsigned t = 0; t < n; t++) {
        bodies[t] = [&body, t] { body(t); };
        fibers[t].body = &bodies[t];
        fiber_init(fibers[t], fiber_stack(t));
    }
    for (unsigned alive = n; alive > 0;) {
        const unsigned long before = fiber_progress;
        for (Fiber &f : fibers) {
            if (f.done) continue;
            fiber_current = &f;
            f.tls.swap_with_thread();
            fiber_resume(f);
            f.tls.swap_with_thread();
            fiber_current = nullptr;
            if (f.done) alive--;
        }
        if (alive > 0 && fiber_progress == before) {
            report("deadlock: every unfinished thread of the block (or cluster) waits at a barrier "
                   "that the others never reach" + Group::block_str());
            for (const std::string &e : errors()) std::fprintf(stderr, "emu: %s\n", e.c_str());
            std::abort();
        }
    }
}
#endif
} // namespace emu

// ---- launch ------------------------------------------------------------------------------------
namespace emu {

inline void tma_block_begin(); // tma_emu.h: the block's mbarriers, copies pending at its end
inline void tma_block_end();

constexpr size_t kGuard = 4096;       // guard bytes on each side of dynamic shared memory
constexpr unsigned char kPoison = 0xff; // 0xffffffff is a NaN as float and double

// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes): the opt-in a
// launch above 48 KB of dynamic shared memory needs (the engine sets it when it loads the kernel).
// 99 KB is the smallest limit of the sm_80+ devices the tensor-core kernels run on (sm_86/89);
// a kernel meant only for sm_80 (163 KB) and sm_90 (227 KB), which the engine goes without
// elsewhere, passes its device's limit.
inline std::map<const void *, size_t> &smem_opt_in() {
    static std::map<const void *, size_t> m;
    return m;
}
template <typename... P>
bool opt_in_dynamic_smem(void (*kernel)(P...), size_t bytes, size_t device_limit = 99 * 1024) {
    if (bytes > device_limit) {
        report("dynamic shared memory opt-in above the device's limit (99 KB: sm_86/sm_89)");
        return false;
    }
    smem_opt_in()[reinterpret_cast<const void *>(kernel)] = bytes;
    return true;
}

// launch_in_clusters(kCooperative, ...): every block of the grid at the same time, as a
// cooperative launch keeps them all resident (no cluster: each block is a cluster of one).
constexpr unsigned kCooperative = 0;

// Runs kernel<<<grid, block, smem_bytes>>>(args...) in clusters of `cluster_x` blocks along x
// (1: a plain launch): clusters in order x fastest, the blocks of a cluster at the same time
// (their threads as fibers of one scheduler, or all as threads), each with block.x*block.y*
// block.z threads and its own dynamic shared memory. Returns false (and reports) when CUDA
// would refuse the launch.
template <typename... P, typename... A>
bool launch_in_clusters(unsigned cluster_x, void (*kernel)(P...), dim3 grid, dim3 block,
                        size_t smem_bytes, A... args) {
    static_assert(sizeof...(P) == sizeof...(A), "argument count differs from the kernel's");
    const std::tuple<P...> params(static_cast<P>(args)...);
    const unsigned n = block.x * block.y * block.z;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || n == 0 || n > 1024 || grid.y > 65535 ||
        grid.z > 65535) {
        report("invalid launch configuration (CUDA rejects a zero or oversized grid/block)");
        return false;
    }
    if (n % 32 != 0) { // the warp emulation needs full warps (true of every launch here)
        report("block size is not a multiple of 32");
        return false;
    }
    const bool coop = cluster_x == kCooperative;
    if (!coop && (cluster_x > 8 || grid.x % cluster_x != 0)) {
        report("invalid cluster (1..8 blocks, portable size, dividing the grid)");
        return false;
    }
    // The blocks that run together: a cluster, or the whole cooperative grid.
    const unsigned together = coop ? grid.x * grid.y * grid.z : cluster_x;
    const auto opt = smem_opt_in().find(reinterpret_cast<const void *>(kernel));
    if (smem_bytes > 48 * 1024 && (opt == smem_opt_in().end() || smem_bytes > opt->second)) {
        report("dynamic shared memory above 48 KB without opt-in");
        return false;
    }
    // Per block: guard bytes, then smem_bytes starting kSmemPhase past a 1024-byte boundary,
    // then guard.
    const size_t guarded_size = smem_bytes + 2 * kGuard;
    std::vector<std::vector<unsigned char>> buffers(together);
    std::vector<unsigned char *> guarded(together);
    for (unsigned b = 0; b < together; b++) {
        buffers[b].resize(smem_bytes + 2 * kGuard + 1024);
        const size_t lead = (1024 + kSmemPhase - (uintptr_t(buffers[b].data()) + kGuard) % 1024) % 1024;
        guarded[b] = buffers[b].data() + lead; // kGuard + smem_bytes + kGuard bytes
    }
    dyn_smem_bytes = smem_bytes;
    // A cooperative grid is one pass of these loops with every block in it.
    const unsigned z_end = coop ? 1 : grid.z, y_end = coop ? 1 : grid.y, x_step = coop ? grid.x : cluster_x;
    const auto block_index = [&](unsigned bx0, unsigned by, unsigned bz, unsigned b) {
        if (!coop) return dim3(bx0 + b, by, bz);
        return dim3(b % grid.x, b / grid.x % grid.y, b / (grid.x * grid.y));
    };
    for (unsigned bz = 0; bz < z_end; bz++)
        for (unsigned by = 0; by < y_end; by++)
            for (unsigned bx0 = 0; bx0 < grid.x; bx0 += x_step) {
                std::vector<std::unique_ptr<Block>> blks;
                for (unsigned b = 0; b < together; b++) {
                    std::memset(guarded[b], kPoison, guarded_size); // undefined at block start
                    EMU_GUARD(guarded[b], kGuard, true);
                    EMU_GUARD(guarded[b] + kGuard + smem_bytes, kGuard, true);
                    blks.push_back(std::make_unique<Block>(n));
                }
                dyn_smem = guarded[0] + kGuard; // outside the threads (tma_block_end): block 0's
                std::unique_ptr<Cluster> cluster;
                if (!coop && cluster_x > 1) cluster = std::make_unique<Cluster>(n * cluster_x, cluster_x);
                tma_block_begin();
                const auto thread = [&](unsigned i) {
                    const unsigned b = i / n, t = i % n;
                    threadIdx = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
                    blockIdx = block_index(bx0, by, bz, b);
                    blockDim = block;
                    gridDim = grid;
                    dyn_smem = guarded[b] + kGuard;
                    ctx = ThreadCtx{blks[b].get(), t, cluster.get(), coop ? 0u : b};
                    std::apply(kernel, params); // each thread gets its own copy of the args
                    cp_check_exit();
                    wgmma_check_exit();
                    blks[b]->warps[t / 32]->group.exit();
                    blks[b]->group.exit();
                    if (cluster) cluster->group.exit();
                };
                const unsigned threads = n * together;
#if EMU_FIBERS
                run_fibers(threads, thread);
#else
                std::vector<std::thread> pool;
                pool.reserve(threads);
                for (unsigned i = 0; i < threads; i++) pool.emplace_back(thread, i);
                for (auto &th : pool) th.join();
#endif
                tma_block_end();
                for (unsigned b = 0; b < together; b++) {
                    EMU_GUARD(guarded[b], guarded_size, false);
                    for (size_t i = 0; i < kGuard; i++)
                        if (guarded[b][i] != kPoison || guarded[b][kGuard + smem_bytes + i] != kPoison) {
                            const dim3 bi = block_index(bx0, by, bz, b);
                            report("write outside dynamic shared memory (block " + std::to_string(bi.x) +
                                   "," + std::to_string(bi.y) + "," + std::to_string(bi.z) + ")");
                            break;
                        }
                }
            }
    dyn_smem = nullptr;
    dyn_smem_bytes = 0;
    return true;
}

// Runs kernel<<<grid, block, smem_bytes>>>(args...): blocks in order x fastest, one at a time.
template <typename... P, typename... A>
bool launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem_bytes, A... args) {
    return launch_in_clusters(1, kernel, grid, block, smem_bytes, args...);
}

} // namespace emu

#include "mma_emu.h"   // after emu::Warp
#include "wgmma_emu.h" // after emu::Warpgroup
#include "tma_emu.h"
