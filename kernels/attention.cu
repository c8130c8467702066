// attention_forward: out[B, S, A*D] = softmax(q k^T * scale + mask) v for every (batch, head).
// q, k, v hold row r, column c at x[r*ld + c], head h at columns h*D..(h+1)*D (ld = 3*A*D: the
// slices of the fused QKV product's output); mask is additive, [B, S] over keys:
// 0 for a token, -FLT_MAX for padding (what transformers adds; a row whose keys are all padding
// softmaxes to uniform, as there).
//
// Version 1, correctness first: one warp per query row, WARPS rows per block. The warp stages
// its query row and its S scores in shared memory, lanes own keys for the scores and head
// columns for the weighted sum. Any head size; S is bounded by shared memory (4 B per key per
// warp: S = 512 takes 8 KB). Exact expf, no S x S matrix in global memory.
// The f32 path, and the fallback for head sizes other than 64 (attention_mma.cu is the flash-style
// tensor-core kernel for bf16/f16 at D = 64).
#include "common.cuh"

#define WARPS 4

extern "C" __global__ void __launch_bounds__(WARPS * 32)
attention_forward(float *__restrict__ out,      // [B, S, A*D]
                  const float *__restrict__ q,  // [B, S, ld]
                  const float *__restrict__ k,  // [B, S, ld]
                  const float *__restrict__ v,  // [B, S, ld]
                  const float *__restrict__ mask, // [B, S]
                  int B, int S, int A, int D, int ld, float scale) {
    extern __shared__ float smem[]; // [WARPS][S] scores, then [WARPS][D] query rows
    grid_dependency_enter();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int h = blockIdx.y, b = blockIdx.z, i = blockIdx.x * WARPS + warp;
    if (i >= S || b >= B || h >= A) return; // warps are independent: no block barrier below
    float *scores = smem + warp * S;
    float *qrow = smem + WARPS * S + warp * D;
    const int H = A * D;
    const long long base = (long long)b * S * ld + (long long)h * D; // q, k, v
    const long long obase = (long long)b * S * H + (long long)h * D; // out

    for (int c = lane; c < D; c += 32) qrow[c] = q[base + (long long)i * ld + c];
    __syncwarp();

    float mx = NEG_INF;
    for (int j = lane; j < S; j += 32) {
        const float *kj = k + base + (long long)j * ld;
        float dot = 0.0f;
        for (int c = 0; c < D; c++) dot = fmaf(qrow[c], kj[c], dot);
        const float s = dot * scale + mask[(long long)b * S + j];
        scores[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < S; j += 32) {
        const float e = expf(scores[j] - mx);
        scores[j] = e;
        sum += e;
    }
    sum = warp_sum(sum);
    __syncwarp(); // every lane's scores are written before any lane reads them all
    const float inv = 1.0f / sum;
    for (int c = lane; c < D; c += 32) {
        float acc = 0.0f;
        for (int j = 0; j < S; j++) acc = fmaf(scores[j], v[base + (long long)j * ld + c], acc);
        out[obase + (long long)i * H + c] = acc * inv;
    }
}
