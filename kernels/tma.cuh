// The tensor memory accelerator (TMA) and shared-memory barriers of sm_90 (PTX ISA: "Tensor Copy
// Instructions" cp.async.bulk.tensor, "Parallel Synchronization and Communication Instructions:
// mbarrier"), for linear_tma.cu. The CPU emulator models them (dev/emu/tma_emu.h).
//
// TensorMap: the 128-byte tensor map the driver encodes (cuTensorMapEncodeTiled, src/backend/
// cuda/tma.rs): a 2-D [rows, K] matrix of 16-bit elements, a box of 64 k x BOX rows per copy,
// 128-byte swizzle, zeros for elements outside the matrix. Passed by value as a
// `const __grid_constant__` kernel parameter; copies name it by its generic address.
//
// tma_load_2d(dst, map, k, row, bar): one box, k .. k + 63 of rows row .. row + BOX - 1, into the
// shared tile at dst (1024-byte aligned): row r's 128 bytes at dst + 128 r, its 16-byte chunk c
// at chunk c ^ (r % 8) (the swizzle wgmma.cuh's descriptors read). The copy adds the box's bytes
// (outside elements included) to `bar`'s transaction count when they have landed.
//
// mbarrier (8 bytes of shared memory): a phase completes when `count` arrivals have been made and
// every transaction byte announced by arrive_expect_tx has landed; then the next phase begins
// with the same count. mbar_wait(bar, parity) returns once the phase with that parity (0 for the
// first, 1 for the second, ...) has completed. Shared memory the copy engine wrote is visible to
// a thread once its wait for the copy's barrier returns.
#pragma once
#include "mma.cuh"

struct __align__(64) TensorMap {
    unsigned long long opaque[16];
};

#ifdef __CUDA_ARCH__
#define GRID_CONSTANT __grid_constant__
#if __CUDA_ARCH__ >= 900
__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes the initialised barriers visible to the copy engine (then a __syncthreads to the threads).
__device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
    unsigned done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}
__device__ __forceinline__ void tma_load_2d(unsigned dst, const TensorMap *map, int k, int row,
                                            unsigned bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
                 "l"(reinterpret_cast<unsigned long long>(map)), "r"(k), "r"(row), "r"(bar)
                 : "memory");
}
#endif
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// The warpgroup's registers per thread become N (sm_90a; a multiple of 8 in 24 .. 256): a
// producer gives registers back, the consumers take them. All 128 threads execute it.
template <int N> __device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
#else
template <int N> __device__ __forceinline__ void setmaxnreg_dec() {}
template <int N> __device__ __forceinline__ void setmaxnreg_inc() {}
#endif
#else
// The CPU emulator (dev/emu/tma_emu.h) defines these.
template <int N> void setmaxnreg_dec();
template <int N> void setmaxnreg_inc();
#define GRID_CONSTANT
void mbar_init(unsigned bar, unsigned count);
void mbar_init_fence();
void mbar_arrive(unsigned bar);
void mbar_arrive_expect_tx(unsigned bar, unsigned bytes);
void mbar_wait(unsigned bar, unsigned parity);
void tma_load_2d(unsigned dst, const void *map, int k, int row, unsigned bar);
#endif
