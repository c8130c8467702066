// residual_layernorm_forward_to_{bf16,f16}: out[M, C] = LayerNorm(inp + residual) as
// residual_layernorm_forward (layernorm.cu) computes it, and out_t[M, C] = out rounded to T
// (RNE): the copy the next tensor-core products read. They would round the f32 row to T as they
// stage it, so the results are bit-identical, with half the bytes and cp.async staging; `out`
// stays f32 for the next residual. sm_80+ like its readers (a module of its own, so older
// devices load layernorm.cu without it).
// inp holds `parts` consecutive [M, C] partial sums of a split-K product (linear_mma.cu), added
// in order 0, 1, ... before the residual: ((p0 + p1) + p2) + residual. parts = 1 is the plain
// residual LayerNorm. Both outputs are written from the same registers (out_t is not re-read).
// round_to_{bf16,f16}: out_t[n] = inp[n] rounded to T, the T copy of the embedding projection's
// output (the first layer's QKV product reads it).
#include "layernorm.cuh"
#include "mma.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define LN_ELEMS 4 // elements of a thread whose loads are issued together (C <= 1024 at 256 threads)
#define LN_PARTS 4 // partials loaded together (the scheduler makes at most 4); more are added after

template <typename T>
__device__ void residual_layernorm_to(float *out, T *out_t, const float *inp, const float *residual,
                                      const float *__restrict__ weight,
                                      const float *__restrict__ bias, int M, int C, int parts,
                                      float eps) {
    extern __shared__ float row[]; // [C]
    __shared__ double scratch[32];
    // The LayerNorm's weight and bias of this thread's first LN_ELEMS columns (c = threadIdx.x +
    // e * blockDim.x), loaded first: constant data, so before the wait for the previous kernel,
    // and their latency overlaps the row's instead of following the statistics (one L2 round
    // trip less per row). Columns past LN_ELEMS * blockDim.x are loaded where used.
    float wv[LN_ELEMS], bv[LN_ELEMS];
#pragma unroll
    for (int e = 0; e < LN_ELEMS; e++) {
        const int c = threadIdx.x + e * blockDim.x;
        wv[e] = c < C ? weight[c] : 0.0f;
        bv[e] = c < C ? bias[c] : 0.0f;
    }
    grid_dependency_enter();
    const int m = blockIdx.x;
    if (m >= M) return;
    const long long r0 = (long long)m * C, part = (long long)M * C;
    // Every load of LN_ELEMS elements (LN_PARTS partials each, and the residual) is issued
    // before the first add, so a row costs one memory latency, not a chain of them (the plain
    // loop kept two loads in flight: SASS). The sums keep their order.
    for (int c0 = threadIdx.x; c0 < C; c0 += LN_ELEMS * blockDim.x) {
        float v[LN_ELEMS][LN_PARTS], res[LN_ELEMS];
#pragma unroll
        for (int e = 0; e < LN_ELEMS; e++) {
            const int c = c0 + e * blockDim.x;
#pragma unroll
            for (int p = 0; p < LN_PARTS; p++)
                v[e][p] = c < C && p < parts ? inp[p * part + r0 + c] : 0.0f;
            res[e] = c < C ? residual[r0 + c] : 0.0f;
        }
#pragma unroll
        for (int e = 0; e < LN_ELEMS; e++) {
            const int c = c0 + e * blockDim.x;
            if (c >= C) break;
            float x = v[e][0];
#pragma unroll
            for (int p = 1; p < LN_PARTS; p++)
                if (p < parts) x += v[e][p];
            for (int p = LN_PARTS; p < parts; p++) x += inp[p * part + r0 + c];
            row[c] = x + res[e];
        }
    }
    __syncthreads();
    const RowStats st = layernorm_stats(row, C, eps, scratch);
#pragma unroll
    for (int e = 0; e < LN_ELEMS; e++) {
        const int c = threadIdx.x + e * blockDim.x;
        if (c < C) {
            const float y = layernorm_apply(row[c], st, wv[e], bv[e]);
            out[r0 + c] = y;
            store_out(&out_t[r0 + c], y);
        }
    }
    for (int c = threadIdx.x + LN_ELEMS * blockDim.x; c < C; c += blockDim.x) {
        const float y = layernorm_apply(row[c], st, weight[c], bias[c]);
        out[r0 + c] = y;
        store_out(&out_t[r0 + c], y);
    }
}

#define RESIDUAL_LAYERNORM_TO(NAME, T)                                                             \
    extern "C" __global__ void NAME(float *out, T *out_t, const float *inp, const float *residual, \
                                    const float *weight, const float *bias, int M, int C,          \
                                    int parts, float eps) {                                        \
        residual_layernorm_to<T>(out, out_t, inp, residual, weight, bias, M, C, parts, eps);       \
    }
RESIDUAL_LAYERNORM_TO(residual_layernorm_forward_to_bf16, bf16)
RESIDUAL_LAYERNORM_TO(residual_layernorm_forward_to_f16, f16)

#define ROUND_TO(NAME, T)                                                                          \
    extern "C" __global__ void NAME(T *out_t, const float *inp, long long n) {                     \
        grid_dependency_enter();                                                                   \
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;                \
             i += (long long)gridDim.x * blockDim.x)                                               \
            store_out(&out_t[i], inp[i]);                                                          \
    }
ROUND_TO(round_to_bf16, bf16)
ROUND_TO(round_to_f16, f16)
#endif // sm_80+
