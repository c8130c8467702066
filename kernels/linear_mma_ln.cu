// linear_forward_mma_ln_{bf16,f16}: a T-input product that feeds a residual LayerNorm, with the
// LayerNorm in its epilogue (sm_90: thread block clusters):
//   pre[M, N] = (inp[M, K] @ weight[N, K]^T + bias) + residual
//   out[M, N] = LayerNorm(pre) * ln_weight + ln_bias (f32), out_t = out rounded to T.
// Bit for bit linear_forward_mma_*_from_* (128x128 tiles, one split) followed by
// residual_layernorm_forward_to_* (layernorm_t.cu: parts = 1, 256 threads per row): the same
// mma chain per output, the same f32 adds (acc + bias, then + residual), and the LayerNorm
// statistics summed in the block kernel's order (layernorm_row_warp below), so a sequence's
// results do not depend on which of the two paths its batch took.
//
// A cluster of N / 128 blocks (at most 8, the portable cluster size: N <= 1024) owns 128 whole
// rows: each block computes its 128 x 128 tile as linear_forward_mma does and stores pre for it
// in `out` (each element's residual is read by the thread that then overwrites it, so `out` may
// alias `residual`); after barrier.cluster (release/acquire: the other blocks' stores are
// visible) the cluster's 8 x N / 128 warps normalize the 128 rows, a row per warp, reading pre
// through L2 and writing out and out_t in place of it. This removes the LayerNorm's launch and
// the product's separate f32 output pass through it; the bytes are the same (pre is written and
// read once, now while the cluster's rows are hot in L2).
// Launched with grid (N / 128, ceil(M / 128)), 256 threads, MMA_T_SMEM bytes of dynamic shared
// memory and cluster dimension (N / 128, 1, 1) (launch.rs checks N); a launch whose cluster does
// not span N returns without writing (uniformly, before any barrier).
#include "mma_products.cuh"
#include "cluster.cuh"
#include "layernorm_warp.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// pre = (acc + bias) + residual for this thread's outputs of the block's tile, into out.
template <typename C>
__device__ __forceinline__ void store_tile_residual(float *out, const float (&acc)[C::MI][C::NJ][4],
                                                    const float *__restrict__ bias,
                                                    const float *residual, int m0, int n0, int M,
                                                    int N) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int group = lane >> 2, tig = lane & 3;
    const int warp_m = warp / C::WARPS_N, warp_n = warp % C::WARPS_N;
    float bv[C::NJ][2];
    tile_bias<C>(bv, bias, n0, N);
#pragma unroll
    for (int i = 0; i < C::MI; i++)
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int m = m0 + warp_m * (C::MI * 16) + i * 16 + group + 8 * half;
            if (m >= M) continue;
            const long long r = (long long)m * N;
#pragma unroll
            for (int j = 0; j < C::NJ; j++) {
                const int n = n0 + warp_n * (C::NJ * 8) + j * 8 + 2 * tig; // n + 1 < N: N % 128 == 0
                const float x0 = acc[i][j][2 * half] + bv[j][0], x1 = acc[i][j][2 * half + 1] + bv[j][1];
                const float pre0 = x0 + residual[r + n], pre1 = x1 + residual[r + n + 1];
                out[r + n] = pre0;
                out[r + n + 1] = pre1;
            }
        }
}

template <typename T>
__device__ void linear_mma_ln(float *out, T *out_t, const T *__restrict__ inp, const T *__restrict__ weight,
                              const float *__restrict__ bias, const float *residual,
                              const float *__restrict__ ln_w, const float *__restrict__ ln_b, int M,
                              int K, int N, float eps) {
    using C = TileLarge;
    const unsigned blocks = cluster_nctarank();
    if (blocks * C::TILE_N != (unsigned)N || gridDim.x != blocks || gridDim.z != 1) return;
    const int m0 = blockIdx.y * C::TILE_M, n0 = blockIdx.x * C::TILE_N;
    const KShare<C::TILE_K> share(K); // one split: every k tile
    float acc[C::MI][C::NJ][4];
    linear_mma_products<C, T, T>(acc, inp, weight, M, K, N, m0, n0, share.t0, share.tiles);
    store_tile_residual<C>(out, acc, bias, residual, m0, n0, M, N);
    cluster_sync(); // every block of the cluster has stored its columns of the 128 rows
    constexpr int warps = C::NTHREADS / 32;
    for (int r = int(cluster_ctarank()) * warps + (int(threadIdx.x) >> 5); r < C::TILE_M;
         r += int(blocks) * warps) {
        const int m = m0 + r;
        if (m >= M) break;
        float *row = out + (long long)m * N;
        // L2: other blocks of the cluster wrote the row's other columns.
        layernorm_row_warp<T>(row, out_t + (long long)m * N, [row](int c) { return __ldcg(row + c); },
                              ln_w, ln_b, N, eps);
    }
}
#define LINEAR_MMA_LN_BODY(T) linear_mma_ln<T>(out, out_t, inp, weight, bias, residual, ln_w, ln_b, M, K, N, eps);
#else
// sm_80 (no clusters): the entry points exist (the registry checks names) but the module is
// loaded on compute capability 9.0 and up only (kernels.rs).
#define LINEAR_MMA_LN_BODY(T) __trap();
#endif

#define LINEAR_MMA_LN(NAME, T)                                                                     \
    extern "C" __global__ void __launch_bounds__(MMA_THREADS, 2) NAME(                             \
        float *out, T *out_t, const T *inp, const T *weight, const float *bias,                    \
        const float *residual, const float *ln_w, const float *ln_b, int M, int K, int N,          \
        float eps) {                                                                               \
        LINEAR_MMA_LN_BODY(T)                                                                      \
    }
LINEAR_MMA_LN(linear_forward_mma_ln_bf16_from_bf16, bf16)
LINEAR_MMA_LN(linear_forward_mma_ln_f16_from_f16, f16)
