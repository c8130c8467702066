// Warpgroup tensor-core instructions of sm_90a (PTX ISA, "Asynchronous Warpgroup Level Matrix
// Multiply-Accumulate Instructions": wgmma.mma_async, wgmma.fence, wgmma.commit_group,
// wgmma.wait_group), for linear_wgmma.cu. The CPU emulator models them (dev/emu/wgmma_emu.h).
//
// wgmma.mma_async.sync.aligned.m64nNk16.f32.{bf16,f16}, N = 64, 128, 256: the 4 warps of a warpgroup (128
// consecutive threads from a multiple of 128) compute D[64, N] = A[64, 16] B[16, N] + D, A and B
// read from shared memory through 64-bit matrix descriptors, D in registers.
// Operands as used here: both "K-major" (imm-trans-a = imm-trans-b = 0): A's rows and B's
// columns (the weight's rows) are 16 consecutive k, in the 128-byte swizzled layout below.
//
// Shared-memory layout (128-byte swizzle): a tile of R rows x 64 k of 16-bit elements is R rows
// of 128 bytes, 1024-byte aligned; 16-byte chunk c (k = 8c .. 8c+7) of row r is stored at chunk
// c ^ (r % 8) of that row. So every 8 rows form one 1024-byte atom and an 8-row ldmatrix-like
// read of one chunk column touches 8 different bank groups.
// Descriptor (64 bits): start address >> 4 in bits 0-13, leading-dimension byte offset >> 4 in
// bits 16-29 (unused by K-major swizzled operands whose k extent, 32 bytes, is inside the 128-byte
// row; set to 1 as is conventional), stride-dimension byte offset >> 4 in bits 32-45 (1024: from
// one 8-row atom to the next), base offset in bits 49-51 (0: atoms 1024-byte aligned), swizzle
// mode in bits 62-63 (1 = 128 bytes). The hardware applies the swizzle to the address bits
// (chunk bits 4-6 ^= row bits 7-9), so the k16 step j of a 64-k tile is the same descriptor with
// the start address advanced by 32 j bytes.
//
// D fragment (f32): thread lane l of warp w of the warpgroup holds, for each 8-column block j of
// N, d[j][0..1] = D[16 w + l/4][8 j + 2 (l%4) + 0..1] and d[j][2..3] = the same columns of row
// 16 w + l/4 + 8: per warp, N/8 stacked m16n8 C fragments of mma.sync (mma.cuh).
//
// Ordering: shared memory written by cp.async or plain stores is visible to wgmma only after
// fence.proxy.async.shared::cta in each writing thread, then a barrier. wgmma.fence before the
// first wgmma of a group that accumulates into registers other instructions wrote;
// commit_group closes the thread's issued wgmmas into a group, wait_group<N> returns when at most
// N groups are pending. The accumulators must not be touched between issue and wait:
// wgmma_fence_acc() keeps the compiler from moving their uses across the wait.
#pragma once
#include "mma.cuh"

// Whether this compilation has the wgmma instructions (sm_90a PTX or the CPU emulator).
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define HAVE_WGMMA 1
#else
#define HAVE_WGMMA 0
#endif

#if HAVE_WGMMA

// A K-major operand with the 128-byte swizzle: `smem` is the shared address of row 0 (k offset
// included: + 32 bytes per k16 step), rows grouped 8 per 1024-byte atom.
__device__ __forceinline__ unsigned long long wgmma_desc(unsigned smem) {
    const unsigned long long start = (smem >> 4) & 0x3fffu;
    const unsigned long long lbo = 1, sbo = 1024 >> 4, swizzle_128b = 1;
    return start | (lbo << 16) | (sbo << 32) | (swizzle_128b << 62);
}
// The descriptor of the same operand k16 steps further on: the start address field advances by
// 32 bytes >> 4 = 2 per step (no carry out of the 14-bit field: shared addresses < 256 KB).
#define WGMMA_DESC_K16_STEP 2ull

#ifdef __CUDA_ARCH__
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Shared memory this thread wrote (generic proxy: st.shared, cp.async) becomes visible to the
// async proxy (wgmma); a barrier after it makes every thread's writes visible.
__device__ __forceinline__ void fence_proxy_async_shared() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// An accumulator register: its value is produced by the asm here, so the compiler cannot move
// a use of it above this point (placed after wgmma_wait).
__device__ __forceinline__ void wgmma_fence_acc(float &r) { asm volatile("" : "+f"(r)::"memory"); }

template <typename T, int N>
__device__ void wgmma_k16(float (&d)[N / 8][4], unsigned long long a, unsigned long long b);

#define WG_D4(j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
#define WG_D32 WG_D4(0), WG_D4(1), WG_D4(2), WG_D4(3), WG_D4(4), WG_D4(5), WG_D4(6), WG_D4(7)
#define WG_D32_HI WG_D4(8), WG_D4(9), WG_D4(10), WG_D4(11), WG_D4(12), WG_D4(13), WG_D4(14), WG_D4(15)
#define WG_R8(a, b, c, e, f, g, h, i) "%" #a ",%" #b ",%" #c ",%" #e ",%" #f ",%" #g ",%" #h ",%" #i
#define WG_R32                                                                                     \
    WG_R8(0, 1, 2, 3, 4, 5, 6, 7) "," WG_R8(8, 9, 10, 11, 12, 13, 14, 15) ","                      \
        WG_R8(16, 17, 18, 19, 20, 21, 22, 23) "," WG_R8(24, 25, 26, 27, 28, 29, 30, 31)
#define WG_R64                                                                                     \
    WG_R32 "," WG_R8(32, 33, 34, 35, 36, 37, 38, 39) "," WG_R8(40, 41, 42, 43, 44, 45, 46, 47) ","  \
        WG_R8(48, 49, 50, 51, 52, 53, 54, 55) "," WG_R8(56, 57, 58, 59, 60, 61, 62, 63)
#define WG_R128                                                                                    \
    WG_R64 "," WG_R8(64, 65, 66, 67, 68, 69, 70, 71) "," WG_R8(72, 73, 74, 75, 76, 77, 78, 79) ","  \
        WG_R8(80, 81, 82, 83, 84, 85, 86, 87) "," WG_R8(88, 89, 90, 91, 92, 93, 94, 95) ","        \
        WG_R8(96, 97, 98, 99, 100, 101, 102, 103) "," WG_R8(104, 105, 106, 107, 108, 109, 110, 111) \
        "," WG_R8(112, 113, 114, 115, 116, 117, 118, 119) ","                                      \
        WG_R8(120, 121, 122, 123, 124, 125, 126, 127)
#define WG_D32_3 WG_D4(16), WG_D4(17), WG_D4(18), WG_D4(19), WG_D4(20), WG_D4(21), WG_D4(22), WG_D4(23)
#define WG_D32_4 WG_D4(24), WG_D4(25), WG_D4(26), WG_D4(27), WG_D4(28), WG_D4(29), WG_D4(30), WG_D4(31)
// scale-d 1 (D += A B), imm-scale-a/b 1, imm-trans-a/b 0 (both K-major).
#define WGMMA_SS(T, N, TYPE, REGS, A, B, ...)                                                      \
    template <>                                                                                    \
    __device__ __forceinline__ void wgmma_k16<T, N>(float (&d)[N / 8][4], unsigned long long a,    \
                                                    unsigned long long b) {                        \
        asm volatile("wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " {" REGS    \
                     "}, %" #A ", %" #B ", 1, 1, 1, 0, 0;\n"                                       \
                     : __VA_ARGS__                                                                 \
                     : "l"(a), "l"(b));                                                            \
    }
WGMMA_SS(bf16, 64, "bf16", WG_R32, 32, 33, WG_D32)
WGMMA_SS(f16, 64, "f16", WG_R32, 32, 33, WG_D32)
WGMMA_SS(bf16, 128, "bf16", WG_R64, 64, 65, WG_D32, WG_D32_HI)
WGMMA_SS(f16, 128, "f16", WG_R64, 64, 65, WG_D32, WG_D32_HI)
WGMMA_SS(bf16, 256, "bf16", WG_R128, 128, 129, WG_D32, WG_D32_HI, WG_D32_3, WG_D32_4)
WGMMA_SS(f16, 256, "f16", WG_R128, 128, 129, WG_D32, WG_D32_HI, WG_D32_3, WG_D32_4)
#undef WGMMA_SS
#else
// The CPU emulator (dev/emu/wgmma_emu.h) defines these.
void wgmma_fence();
void wgmma_commit();
template <int N> void wgmma_wait();
void fence_proxy_async_shared();
inline void wgmma_fence_acc(float &) {}
template <typename T, int N> void wgmma_k16(float (&d)[N / 8][4], unsigned long long a, unsigned long long b);
#endif

#endif // HAVE_WGMMA
