// layernorm_row_warp: the residual LayerNorm of one row by one warp, bit for bit what
// residual_layernorm_forward_to (layernorm_t.cu, a block of 256 threads per row) computes, for
// the kernels that normalize rows in a product's epilogue (linear_mma_ln.cu, linear_mma_grid_ln.cu).
#pragma once
#include "common.cuh"

// The statistics are the block kernel's (layernorm_row / layernorm_stats, common.cuh): thread
// t = 32 v + lane of that block sums its elements c = t, t + 256, ... in f64 in that order, warp
// v's sum is the xor-tree warp_sum of those, and the block's is warp_sum over lanes 0..7 holding
// warps 0..7's sums (0 elsewhere). Here lane `lane` plays thread 32 v + lane of every virtual
// warp v in turn. C <= 1024. load(c) gives the row's pre-LayerNorm value at column c (it is
// called once per column, before anything is written); `row` receives the f32 output, row_t the
// T copy (either may be where load reads: every load comes first).
template <typename T, typename Load>
__device__ __forceinline__ void layernorm_row_warp(float *row, T *row_t, Load load,
                                                   const float *__restrict__ ln_w,
                                                   const float *__restrict__ ln_b, int C, float eps) {
    const int lane = threadIdx.x & 31;
    float x[8][4];
#pragma unroll
    for (int v = 0; v < 8; v++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int c = 32 * v + lane + 256 * e;
            x[v][e] = c < C ? load(c) : 0.0f;
        }
    double tot = 0.0;
#pragma unroll
    for (int v = 0; v < 8; v++) {
        double s = 0.0;
#pragma unroll
        for (int e = 0; e < 4; e++)
            if (32 * v + lane + 256 * e < C) s += (double)x[v][e];
        s = warp_sum(s);
        if (lane == v) tot = s;
    }
    const double mean = warp_sum(tot) / C;
    tot = 0.0;
#pragma unroll
    for (int v = 0; v < 8; v++) {
        double q = 0.0;
#pragma unroll
        for (int e = 0; e < 4; e++)
            if (32 * v + lane + 256 * e < C) {
                const double d = (double)x[v][e] - mean;
                q += d * d;
            }
        q = warp_sum(q);
        if (lane == v) tot = q;
    }
    const double var = warp_sum(tot) / C;
    const RowStats st{mean, 1.0 / sqrt(var + (double)eps)};
#pragma unroll
    for (int v = 0; v < 8; v++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int c = 32 * v + lane + 256 * e;
            if (c < C) {
                const float y = layernorm_apply(x[v][e], st, ln_w[c], ln_b[c]);
                row[c] = y;
                store_out(&row_t[c], y);
            }
        }
}

// A row's pre-LayerNorm value from a product's split-K partials (stored by other blocks of the
// launch: read through L2) and the residual, added in residual_layernorm_forward_to's order
// (layernorm_t.cu): ((p0 + p1) + ...) + residual. p: the row in partial 0, the others `part`
// elements apart; nparts <= MAX. A `load` for layernorm_row_warp.
template <int MAX> struct PartialsPlusResidual {
    const float *p, *res;
    long long part;
    int nparts;
    __device__ __forceinline__ float operator()(int c) const {
        float x = __ldcg(p + c);
#pragma unroll
        for (int z = 1; z < MAX; z++)
            if (z < nparts) x += __ldcg(p + z * part + c);
        return x + res[c];
    }
};
