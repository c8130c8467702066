// Tensor-core helpers shared by the mma kernels (linear_mma.cu, attention_mma.cu):
// mma.sync.m16n8k16 with f32 accumulation, and f32 -> 16-bit operand bits.
// Fragment layout (PTX ISA, mma.m16n8k16 .bf16/.f16): lane = 4 * group + tig;
//   A (16x16, row): a0 = A[group][2tig..], a1 = A[group+8][2tig..], a2 = A[group][8+2tig..],
//                   a3 = A[group+8][8+2tig..]          (each register: two consecutive k)
//   B (16x8, col):  b0 = B[2tig..][group], b1 = B[8+2tig..][group]
//   C (16x8):       c0,c1 = C[group][2tig, 2tig+1], c2,c3 = C[group+8][2tig, 2tig+1]
// Two 16-bit elements per 32-bit register, the lower-numbered one in the low half.
//
// build.rs inlines this file (and common.cuh) into each .cu for NVRTC; the users guard their
// kernels with __CUDA_ARCH__ >= 800 too (the instruction's minimum).
#pragma once
#include "common.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

// D = A B + D for one warp's 16x8x16 tile (fragments as in the layout note above).
template <typename T> __device__ void mma_m16n8k16(float *c, const unsigned *a, const unsigned *b);
#ifdef __CUDA_ARCH__
template <> __device__ __forceinline__ void mma_m16n8k16<bf16>(float *c, const unsigned *a, const unsigned *b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <> __device__ __forceinline__ void mma_m16n8k16<f16>(float *c, const unsigned *a, const unsigned *b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#else
// The CPU emulation (dev/emu) provides these: a warp-wide exchange of the fragments.
template <> void mma_m16n8k16<bf16>(float *c, const unsigned *a, const unsigned *b);
template <> void mma_m16n8k16<f16>(float *c, const unsigned *a, const unsigned *b);
#endif

template <typename T> __device__ __forceinline__ unsigned short to_bits(float x);
template <> __device__ __forceinline__ unsigned short to_bits<bf16>(float x) {
    const unsigned u = __float_as_uint(x);
    // A NaN whose payload is only in the low half would truncate to infinity: keep it NaN.
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x0040u);
    return (unsigned short)(__float_as_uint(round_bf16(x)) >> 16);
}
template <> __device__ __forceinline__ unsigned short to_bits<f16>(float x) { return f16_bits(x); }

// An activation's store: f32, or rounded to T (RNE), the rounding every tensor-core consumer
// applies as it stages an f32 activation: storing it as T changes no result, only bytes
// (the "_to_" kernels).
__device__ __forceinline__ void store_out(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_out(bf16 *p, float v) { p->bits = to_bits<bf16>(v); }
__device__ __forceinline__ void store_out(f16 *p, float v) { p->bits = to_bits<f16>(v); }

// Two adjacent elements (p[0] = lo, p[1] = hi) in one store; p aligned to two elements.
__device__ __forceinline__ void store_pair(float *p, float lo, float hi) {
    *reinterpret_cast<unsigned long long *>(p) =
        (unsigned long long)__float_as_uint(lo) | ((unsigned long long)__float_as_uint(hi) << 32);
}
template <typename T> __device__ __forceinline__ void store_pair(T *p, float lo, float hi) {
    *reinterpret_cast<unsigned *>(p) = (unsigned)to_bits<T>(lo) | ((unsigned)to_bits<T>(hi) << 16);
}

// cp.async (sm_80): 16 bytes global -> shared without a register round trip, cached in L2 only
// (.cg); the bytes past src_bytes (0..16) are zero-filled. Both addresses 16-byte aligned.
// A thread's copies are grouped by cp_async_commit(); cp_async_wait<N>() returns when at most N
// of its groups are still in flight. Other threads see the data only after a barrier.
#ifdef __CUDA_ARCH__
// A generic pointer into shared memory as a 32-bit .shared address. The intrinsic, not inline
// asm: the compiler folds it into the address arithmetic of a pointer it knows is shared (the
// asm version cost a conversion per cp.async and per ldmatrix in the main loop).
__device__ __forceinline__ unsigned smem_u32(const void *p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
    const unsigned s = smem_u32(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#endif // the CPU emulation (dev/emu/cuda_emu.h) defines them for the host

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: four 8x8 matrices of 16-bit elements from shared
// memory, one warp-collective instruction instead of four 32-bit loads per lane. Lane
// 8m + r gives the address of row r of matrix m (16 contiguous, 16-byte aligned bytes); lane l
// receives d[m] = row l/4 of matrix m, elements 2(l%4) and 2(l%4)+1 (the lower in the low half):
// exactly an mma A or B fragment register when the matrices are chosen as in linear_mma.cu.
#ifdef __CUDA_ARCH__
__device__ __forceinline__ void ldmatrix_x4(unsigned *d, const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(smem_u32(row))
                 : "memory");
}
// ldmatrix...x4.trans: the same four matrices, each transposed on the way: lane l receives
// d[m] = column l/4 of matrix m, elements of rows 2(l%4) and 2(l%4)+1 (the lower in the low
// half). For a row-major [k][n] tile (V in attention: keys x d) that is an mma B fragment.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned *d, const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(smem_u32(row))
                 : "memory");
}
#else
void ldmatrix_x4(unsigned *d, const void *row);       // dev/emu/mma_emu.h
void ldmatrix_x4_trans(unsigned *d, const void *row); // dev/emu/mma_emu.h
#endif

// Two f32 values as one operand register of T: lo in the low half (the lower k or row).
template <typename T> __device__ __forceinline__ unsigned pack2(float lo, float hi) {
    return (unsigned)to_bits<T>(lo) | ((unsigned)to_bits<T>(hi) << 16);
}

#endif // sm_80+
