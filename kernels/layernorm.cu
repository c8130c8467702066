// layernorm_forward:          out[M, C] = LayerNorm(inp[M, C])
// residual_layernorm_forward: out[M, C] = LayerNorm(inp[M, C] + residual[M, C])
// One block per row; the row is staged in shared memory (C floats) so it is read from global
// memory once; statistics in f64 (see common.cuh). `out` may alias `residual` (the layer's
// final add & norm writes the hidden state in place): each block reads its row before writing.
#include "common.cuh"

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
