// linear_forward on tensor cores, for bf16 and f16 weights (sm_80 and newer):
//   out[M, N] = act(inp[M, K] @ weight[N, K]^T + bias[N])
// Same contract and numerics as linear_forward_{bf16,f16} in linear.cu: the f32 activation is
// rounded to T as it is staged, products of two T are exact in f32, accumulation is f32. Only
// the summation order differs, so both agree within f32 rounding.
//
// Version 1: mma.sync.m16n8k16 (bf16/f16 in, f32 accumulate), one stage.
// Block tile 128x128x32, 8 warps in a 2 (M) x 4 (N) grid, each warp 64x32 = 4x4 mma tiles.
// Shared tiles are K-contiguous rows padded by 8 elements (80 B): the fragment loads below (one
// 32-bit word per lane, rows groupID, words threadID) then hit 32 distinct banks.
// Fragment layout: mma.cuh. Here B = W^T, so b0 = W[n = group][k = 2tig..2tig+1].
// Next: cp.async double buffering of W, ldmatrix, and a wgmma version for sm_90a (part 2).
#include "mma.cuh"

// mma.sync bf16/f16 needs sm_80; NVRTC compiling for an older device gets an empty module, and
// the engine then uses linear.cu's kernels (the registry loads this module only on 8.0+).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

#define MMA_BM 128
#define MMA_BN 128
#define MMA_BK 32
#define MMA_PAD 8
#define MMA_THREADS 256

template <typename T>
__device__ void linear_forward_mma(float *__restrict__ out,        // [M, N]
                                   const float *__restrict__ inp,  // [M, K]
                                   const T *__restrict__ weight,   // [N, K]
                                   const float *__restrict__ bias, // [N] or null
                                   int M, int K, int N, int act) {
    __shared__ __align__(16) unsigned short As[MMA_BM][MMA_BK + MMA_PAD];
    __shared__ __align__(16) unsigned short Ws[MMA_BN][MMA_BK + MMA_PAD];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int group = lane >> 2, tig = lane & 3;
    const int warp_m = warp >> 2, warp_n = warp & 3; // 2 x 4 warps
    const int m0 = blockIdx.y * MMA_BM, n0 = blockIdx.x * MMA_BN;
    const unsigned short *wbits = reinterpret_cast<const unsigned short *>(weight);

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += MMA_BK) {
        // Stage both tiles: 128 rows x 32 k each, 16 elements per thread per tile; consecutive
        // threads read consecutive k of a row. Out-of-range elements are zero.
#pragma unroll
        for (int e = 0; e < (MMA_BM * MMA_BK) / MMA_THREADS; e++) {
            const int idx = tid + e * MMA_THREADS, r = idx / MMA_BK, kk = idx % MMA_BK;
            const int m = m0 + r, n = n0 + r, k = k0 + kk;
            As[r][kk] = (m < M && k < K) ? to_bits<T>(inp[(long long)m * K + k]) : (unsigned short)0;
            Ws[r][kk] = (n < N && k < K) ? wbits[(long long)n * K + k] : (unsigned short)0;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < MMA_BK; kk += 16) {
            unsigned a[4][4], b[4][2];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int r = warp_m * 64 + i * 16 + group;
                a[i][0] = *reinterpret_cast<const unsigned *>(&As[r][kk + 2 * tig]);
                a[i][1] = *reinterpret_cast<const unsigned *>(&As[r + 8][kk + 2 * tig]);
                a[i][2] = *reinterpret_cast<const unsigned *>(&As[r][kk + 8 + 2 * tig]);
                a[i][3] = *reinterpret_cast<const unsigned *>(&As[r + 8][kk + 8 + 2 * tig]);
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int n = warp_n * 32 + j * 8 + group;
                b[j][0] = *reinterpret_cast<const unsigned *>(&Ws[n][kk + 2 * tig]);
                b[j][1] = *reinterpret_cast<const unsigned *>(&Ws[n][kk + 8 + 2 * tig]);
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) mma_m16n8k16<T>(acc[i][j], a[i], b[j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int m = m0 + warp_m * 64 + i * 16 + group + 8 * half;
            if (m >= M) continue;
#pragma unroll
            for (int j = 0; j < 4; j++) {
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    const int n = n0 + warp_n * 32 + j * 8 + 2 * tig + c;
                    if (n >= N) continue;
                    const float v = acc[i][j][2 * half + c] + (bias ? bias[n] : 0.0f);
                    out[(long long)m * N + n] = apply_activation(v, act);
                }
            }
        }
    }
}

#define LINEAR_MMA(SUFFIX, T)                                                                      \
    extern "C" __global__ void __launch_bounds__(MMA_THREADS) linear_forward_mma_##SUFFIX(        \
        float *out, const float *inp, const T *weight, const float *bias, int M, int K, int N,     \
        int act) {                                                                                 \
        linear_forward_mma<T>(out, inp, weight, bias, M, K, N, act);                               \
    }

LINEAR_MMA(bf16, bf16)
LINEAR_MMA(f16, f16)

#endif // sm_80+
