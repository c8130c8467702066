// gather_rows: out[n, C] = inp[rows[n], C]. Picks the [CLS] rows for the pooler and the [MASK]
// rows for fill-mask, so heads run their products on those rows only.
#include "common.cuh"

extern "C" __global__ void gather_rows(float *__restrict__ out,       // [N, C]
                                       const float *__restrict__ inp, // [M, C]
                                       const int *__restrict__ rows,  // [N], each < M
                                       int N, int C) {
    grid_dependency_enter();
    const int n = blockIdx.x;
    if (n >= N) return;
    const long long src = (long long)rows[n] * C, dst = (long long)n * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) out[dst + c] = inp[src + c];
}
