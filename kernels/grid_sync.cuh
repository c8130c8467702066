// A barrier among some blocks of a cooperative launch (all of its blocks resident at once: the
// launcher sets CU_LAUNCH_ATTRIBUTE_COOPERATIVE, and the driver refuses a grid that cannot be):
// row_group_sync(state, blocks) returns in each of `blocks` blocks once all of them have called
// it, with every global write any of them made before it visible to all of them after it (loads
// of such data go through L2: __ldcg).
// state is two words in global memory, zero when first used: an arrival count and a generation.
// A sense-reversing barrier: each block reads the generation (acquire) before it arrives; the
// last to arrive sets the count back to 0 and then advances the generation (release), which the
// others wait for. So the words return to (0, g + 1) after every use, whatever `blocks` was: the
// same state serves every later launch (and CUDA graph replay) without a reset.
// The CPU emulator (dev/emu/cuda_emu.h) defines grid_load_acquire, grid_atomic_add,
// grid_store_release and grid_spin_pause the same way.
#pragma once

#if defined(__CUDA_ARCH__)
__device__ __forceinline__ unsigned grid_load_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
}
// atom.add, relaxed: ordered after the caller's __threadfence (the block's stores released).
__device__ __forceinline__ unsigned grid_atomic_add(unsigned *p, unsigned v) { return atomicAdd(p, v); }
__device__ __forceinline__ void grid_store_release(unsigned *p, unsigned v) {
    asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void grid_spin_pause() { __nanosleep(32); }
#endif

__device__ __forceinline__ void row_group_sync(unsigned *state, unsigned blocks) {
    __syncthreads(); // the block's writes are done (and, through thread 0's fence, released)
    if (threadIdx.x == 0) {
        unsigned *count = state, *gen = state + 1;
        const unsigned g = grid_load_acquire(gen); // before arriving: the barrier cannot pass yet
        __threadfence();                           // the block's writes before the arrival
        if (grid_atomic_add(count, 1u) == blocks - 1) {
            *count = 0; // nobody reads it before the next use (ordered by the release below)
            grid_store_release(gen, g + 1u);
        } else {
            while (grid_load_acquire(gen) == g) grid_spin_pause();
        }
        __threadfence(); // the others' writes, acquired, before the block's loads after it
    }
    __syncthreads();
}
