// linear_forward: out[M, N] = act(inp[M, K] @ weight[N, K]^T + bias[N])
//
// The fused epilogue is bias + activation (ACT_NONE for a plain product); the residual add goes
// with the LayerNorm that follows (residual_layernorm_forward), as on the CPU.
//
// Version 1, correctness first: a 64x64x16 shared-memory tiled SIMT product, 256 threads, each
// computing a 4x4 sub-tile strided by 16 so shared-memory reads are conflict-free and the stores
// are coalesced. The activation operand is rounded to T as it is loaded (a no-op for f32), so a
// bf16/f16 product has exactly the numerics of a tensor-core one; the weights are T already.
// Each 16-deep K tile is summed in a fresh register and then added to the total (blocked
// summation): the f32 error then grows with K/16 + 16 terms instead of K.
// Tensor cores (mma.sync, wgmma) replace the inner loop in the next version.
#include "common.cuh"

#define BM 64
#define BN 64
#define BK 16
#define THREADS 256

template <typename T>
__device__ void linear_forward(float *__restrict__ out,        // [M, N]
                               const float *__restrict__ inp,  // [M, K]
                               const T *__restrict__ weight,   // [N, K]
                               const float *__restrict__ bias, // [N] or null
                               int M, int K, int N, int act) {
    // +1 column: the transposing stores below hit 16 distinct banks instead of one.
    __shared__ float As[BK][BM + 1];
    __shared__ float Ws[BK][BN + 1];
    grid_dependency_enter();
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += BK) {
        // Each thread loads 4 elements of each tile; consecutive threads read consecutive k.
#pragma unroll
        for (int e = 0; e < (BM * BK) / THREADS; e++) {
            const int idx = tid + e * THREADS, r = idx / BK, kk = idx % BK;
            const int m = m0 + r, n = n0 + r, k = k0 + kk;
            As[kk][r] = (m < M && k < K) ? round_to<T>(inp[(long long)m * K + k]) : 0.0f;
            Ws[kk][r] = (n < N && k < K) ? to_f32(weight[(long long)n * K + k]) : 0.0f;
        }
        __syncthreads();
        float part[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) part[i][j] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = Ws[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) part[i][j] = fmaf(a[i], b[j], part[i][j]);
        }
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) acc[i][j] += part[i][j];
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int m = m0 + ty + 16 * i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int n = n0 + tx + 16 * j;
            if (n >= N) continue;
            const float v = acc[i][j] + (bias ? bias[n] : 0.0f);
            out[(long long)m * N + n] = apply_activation(v, act);
        }
    }
}

#define LINEAR(SUFFIX, T)                                                                          \
    extern "C" __global__ void __launch_bounds__(THREADS) linear_forward_##SUFFIX(                \
        float *out, const float *inp, const T *weight, const float *bias, int M, int K, int N,     \
        int act) {                                                                                 \
        linear_forward<T>(out, inp, weight, bias, M, K, N, act);                                   \
    }

// One entry point per weight type: f32, bf16, f16.
LINEAR(f32, float)
LINEAR(bf16, bf16)
LINEAR(f16, f16)
