// layernorm_forward:          out[M, C] = LayerNorm(inp[M, C])
// residual_layernorm_forward: out[M, C] = LayerNorm(inp[M, C] + residual[M, C])
// residual_layernorm_forward_to_{bf16,f16}: the same, and out_t[M, C] = out rounded to T (RNE):
// the copy the next tensor-core products read (they would round the f32 row to T as they stage
// it: bit-identical, half the bytes, cp.async staging); `out` stays f32 for the residual.
// One block per row; the row is staged in shared memory (C floats) so it is read from global
// memory once; statistics in f64 (see common.cuh). `out` may alias `residual` (the layer's
// final add & norm writes the hidden state in place): each block reads its row before writing.
#include "mma.cuh"

__device__ void residual_layernorm(float *out, const float *inp, const float *residual,
                                   const float *__restrict__ weight, const float *__restrict__ bias,
                                   int M, int C, float eps) {
    extern __shared__ float row[]; // [C]
    __shared__ double scratch[32];
    const int m = blockIdx.x;
    if (m >= M) return;
    const long long r0 = (long long)m * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        row[c] = residual ? inp[r0 + c] + residual[r0 + c] : inp[r0 + c];
    __syncthreads();
    layernorm_row(out + r0, row, weight, bias, C, eps, scratch);
}

extern "C" __global__ void layernorm_forward(float *out, const float *inp, const float *weight,
                                             const float *bias, int M, int C, float eps) {
    residual_layernorm(out, inp, nullptr, weight, bias, M, C, eps);
}

extern "C" __global__ void residual_layernorm_forward(float *out, const float *inp,
                                                      const float *residual, const float *weight,
                                                      const float *bias, int M, int C, float eps) {
    residual_layernorm(out, inp, residual, weight, bias, M, C, eps);
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
template <typename T>
__device__ void residual_layernorm_to(float *out, T *out_t, const float *inp, const float *residual,
                                      const float *__restrict__ weight,
                                      const float *__restrict__ bias, int M, int C, float eps) {
    residual_layernorm(out, inp, residual, weight, bias, M, C, eps);
    if (blockIdx.x >= M) return;
    // Each thread rounds the elements it wrote itself (layernorm_row's stride): no barrier.
    const long long r0 = (long long)blockIdx.x * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) store_out(&out_t[r0 + c], out[r0 + c]);
}

#define RESIDUAL_LAYERNORM_TO(NAME, T)                                                             \
    extern "C" __global__ void NAME(float *out, T *out_t, const float *inp, const float *residual, \
                                    const float *weight, const float *bias, int M, int C,          \
                                    float eps) {                                                   \
        residual_layernorm_to<T>(out, out_t, inp, residual, weight, bias, M, C, eps);              \
    }
RESIDUAL_LAYERNORM_TO(residual_layernorm_forward_to_bf16, bf16)
RESIDUAL_LAYERNORM_TO(residual_layernorm_forward_to_f16, f16)
#endif // sm_80+
