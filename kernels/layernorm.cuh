// The row LayerNorm shared by layernorm.cu and layernorm_t.cu: one block per row, the row staged
// in shared memory (C floats, dynamic) so it is read from global memory once, statistics in f64
// (common.cuh). `out` may alias `residual` or `inp`: each block reads its row before writing.
#pragma once
#include "common.cuh"

__device__ void residual_layernorm(float *out, const float *inp, const float *residual,
                                   const float *__restrict__ weight, const float *__restrict__ bias,
                                   int M, int C, float eps) {
    extern __shared__ float row[]; // [C]
    __shared__ double scratch[32];
    grid_dependency_enter();
    const int m = blockIdx.x;
    if (m >= M) return;
    const long long r0 = (long long)m * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        row[c] = residual ? inp[r0 + c] + residual[r0 + c] : inp[r0 + c];
    __syncthreads();
    layernorm_row(out + r0, row, weight, bias, C, eps, scratch);
}
