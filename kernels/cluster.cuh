// Thread block clusters (sm_90): the block's rank in its cluster, the cluster's size, and
// barrier.cluster, a barrier of every thread of the cluster whose arrive has release and whose
// wait has acquire semantics at cluster scope: writes (global or shared) before it are visible
// to every thread of the cluster after it. A kernel launched without a cluster dimension is a
// cluster of one block. The CPU emulator (dev/emu/cuda_emu.h) defines the same three functions.
#pragma once

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ unsigned cluster_ctarank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
__device__ __forceinline__ unsigned cluster_nctarank() {
    unsigned n;
    asm volatile("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(n));
    return n;
}
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n"
                 "barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
#endif
