// attention_forward on tensor cores, flash style, for head size 64 and bf16/f16 operands:
//   out[B, S, A*64] = softmax(q k^T * scale + mask) v for every (batch, head).
// Same contract as attention_forward in attention.cu (q, k, v: row r, column c at x[r*ld + c],
// f32, or already T for the _from_bf16 / _from_f16 kernels: the fused QKV product's output,
// head h at columns h*64..; mask additive [B, S] over keys, MASKED = -FLT_MAX for padding), with
// q, k, v and the probabilities P rounded to T for the products; scores, softmax statistics and
// the output accumulate in f32.
//
// Design (FlashAttention-2 shape): a block owns 64 query rows of one (batch, head), 4 warps of
// 16 rows each. Q stays in registers as mma A fragments for the whole kernel. The block walks the
// keys 64 at a time: K and V of the tile are staged in shared memory as T, each warp computes its
// 16x64 score tile (8 x 4 mma over D), updates its running row max and sum (online softmax,
// f32), rescales its 16x64 output accumulator and adds P V (4 x 8 mma), P taken straight from
// the score registers (the C fragment of S is the A fragment of P). No S x S matrix anywhere.
//
// Padding: a block first finds the sequence's length L = 1 + the last key whose mask is above
// MASKED, and never touches keys past it: their softmax weight is exactly 0 in the reference too
// (f32 or f64, score + MASKED - max underflows to exp = 0). Masked keys inside [0, L) get the
// mask added as in the reference. A sequence whose keys are all masked takes L = S: every score
// rounds to MASKED, every weight is exp(0) = 1, and the output is the plain mean of V over the
// S keys, as in the reference and in transformers.
// The online softmax starts from max = -inf; the first tile always holds key 0 < L with a
// finite score, so the first rescale factor is exp(-inf) = 0 and never NaN. exp is computed as
// exp2((s - max) * log2 e) in f32: s - max is formed first, so MASKED - MASKED = 0 (weight 1)
// and MASKED - finite = -FLT_MAX (times log2 e: -inf, weight 0); folding log2 e into the scale
// would overflow MASKED to -inf.
// The row sum adds the probabilities as rounded to T, the values that multiply V, so the output
// is a convex combination of the rounded V rows.
//
// Shared memory: K and V tiles both as [key][d] pairs of T in 32-bit words, rows of 36 words
// (padding 4), two stages each. The B fragments come from ldmatrix: K's (keys x d = n x k) plain,
// V's (keys x d = k x n) transposed (.trans); the 8 rows of one 8x8 matrix start 4 banks apart,
// so each phase of an ldmatrix hits 32 distinct banks. The mask of the whole sequence (up to
// FA_MAX_S keys) is kept in shared memory from the length scan on.
//
// Pipeline (v1.32). T inputs with 16-byte aligned rows (every fused QKV output) are staged by
// cp.async, two key tiles in flight: the first two go out before the length scan (rows below S;
// a thread zeroes its own chunks past the length once they land), each later one as soon as its
// stage is free, with rows past the length zero-filled by the copy. The Q loads go out before the
// scan too, so a block waits for memory once before its first product instead of once per tile
// plus twice at the start (v1.22). f32 inputs and misaligned T rows are staged element-wise,
// rounding to T, one tile at a time into the same layout: the same fragments, the same bits.
#pragma once
#include "mma.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

#define FA_D 64       // head size
#define FA_BQ 64      // query rows per block: 16 per warp
#define FA_BK 64      // keys per tile
#define FA_WARPS 4
#define FA_ROW 36     // words per K or V row: 32 pairs + 4 padding
#define FA_STAGES 2   // key tiles in shared memory
#define FA_MAX_S 512  // keys whose mask values stay in shared memory (past it: read per tile)
#define FA_LOG2E 1.4426950408889634f

// q, k, v elements as T bits: f32 rounded here, or already T (the _from_ kernels: bit-identical).
template <typename T> __device__ __forceinline__ unsigned bits_of(float x) { return to_bits<T>(x); }
template <typename T> __device__ __forceinline__ unsigned bits_of(T x) { return x.bits; }
template <typename T, typename I> __device__ __forceinline__ unsigned pair_of(const I *p) {
    return bits_of<T>(p[0]) | (bits_of<T>(p[1]) << 16);
}

// The chunks a thread stages of a key tile: 64 keys x 8 chunks of 16 bytes (8 elements) per
// matrix, 4 per thread; chunk e is key (tid + 128e) / 8, chunk (tid + 128e) % 8.
#define FA_CHUNKS ((FA_BK * FA_D / 8) / (FA_WARPS * 32))

// cp.async of key tile j0 of K and V (T, 16-byte rows) into one stage; rows at or past `limit`
// are zero-filled (nothing read: the source is row 0).
template <typename I>
__device__ __forceinline__ void issue_kv(unsigned (*Ks)[FA_ROW], unsigned (*Vs)[FA_ROW], const I *kb,
                                         const I *vb, int j0, int limit, int ld) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int e = 0; e < FA_CHUNKS; e++) {
        const int idx = tid + e * FA_WARPS * 32, key = idx >> 3, ch = idx & 7, j = j0 + key;
        const bool in = j < limit;
        const long long off = (long long)(in ? j : 0) * ld + 8 * ch;
        cp_async16(&Ks[key][4 * ch], kb + off, in ? 16 : 0);
        cp_async16(&Vs[key][4 * ch], vb + off, in ? 16 : 0);
    }
}

// Zeroes this thread's chunks of a landed tile whose keys are at or past the length L (tiles
// issued before L was known): a zero V row times weight 0 adds 0 (a stale or NaN one would not).
__device__ __forceinline__ void zero_past_length(unsigned (*Ks)[FA_ROW], unsigned (*Vs)[FA_ROW], int j0,
                                                 int L) {
    const int tid = threadIdx.x;
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
    for (int e = 0; e < FA_CHUNKS; e++) {
        const int idx = tid + e * FA_WARPS * 32, key = idx >> 3, ch = idx & 7;
        if (j0 + key >= L) {
            *reinterpret_cast<uint4 *>(&Ks[key][4 * ch]) = zero;
            *reinterpret_cast<uint4 *>(&Vs[key][4 * ch]) = zero;
        }
    }
}

// Element-wise staging (f32 inputs, or T rows not 16-byte aligned): pairs rounded to T, zero
// past the length. 16 words per thread and matrix, unrolled 8 at a time (register pressure).
template <typename T, typename I>
__device__ __forceinline__ void stage_kv_elementwise(unsigned (*Ks)[FA_ROW], unsigned (*Vs)[FA_ROW],
                                                     const I *kb, const I *vb, int j0, int L, int ld) {
    const int tid = threadIdx.x;
#pragma unroll 8
    for (int e = 0; e < (FA_BK * FA_D / 2) / (FA_WARPS * 32); e++) {
        const int idx = tid + e * FA_WARPS * 32, key = idx >> 5, pair = idx & 31, j = j0 + key;
        Ks[key][pair] = j < L ? pair_of<T>(kb + (long long)j * ld + 2 * pair) : 0u;
        Vs[key][pair] = j < L ? pair_of<T>(vb + (long long)j * ld + 2 * pair) : 0u;
    }
}

// The block's shared memory (39 KB): the kernels' static, a persistent caller's own (in its
// dynamic shared memory, 16-byte aligned: each block its own, as the CPU emulator needs too).
struct __align__(16) FaShared {
    unsigned Ks[FA_STAGES][FA_BK][FA_ROW];
    unsigned Vs[FA_STAGES][FA_BK][FA_ROW];
    float Mseq[FA_MAX_S];   // the sequence's mask, keys below FA_MAX_S
    float Ms[FA_BK];        // the tile's mask; -inf past the length
    float last_s[FA_WARPS]; // per warp: the last key above MASKED
};

// The block's work item: query tile qt (rows 64 qt ..) of head h of sequence b (the kernels:
// blockIdx.x, .y, .z; a persistent caller its own, with a __syncthreads() between two items),
// in the shared arrays Ks .. last_s (FaShared's; the kernels pass five static arrays, which
// ptxas allocates around better than one struct: no sm_80 spill).
template <typename T, typename I, typename O>
__device__ __forceinline__ void attention_forward_mma(O *__restrict__ out,            // [B, S, A*64]
                                      const I *__restrict__ q,        // [B, S, ld]
                                      const I *__restrict__ k,        // [B, S, ld]
                                      const I *__restrict__ v,        // [B, S, ld]
                                      const float *__restrict__ mask, // [B, S]
                                      int B, int S, int A, int D, int ld, float scale, int qt, int h,
                                      int b, unsigned (&Ks)[FA_STAGES][FA_BK][FA_ROW],
                                      unsigned (&Vs)[FA_STAGES][FA_BK][FA_ROW], float (&Mseq)[FA_MAX_S],
                                      float (&Ms)[FA_BK], float (&last_s)[FA_WARPS]) {
    grid_dependency_enter();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int group = lane >> 2, tig = lane & 3;
    if (D != FA_D || b >= B || h >= A) return; // uniform over the block: before any barrier
    const int H = A * FA_D;
    const float masked = -3.402823466e38f; // -FLT_MAX, MASKED of reference.rs
    const float *mrow = mask + (long long)b * S;
    const long long seq = (long long)b * S;
    const I *kb = k + seq * ld + h * FA_D, *vb = v + seq * ld + h * FA_D;
    // T inputs with 16-byte aligned rows (ld % 8 == 0: every fused QKV output) are staged by
    // cp.async and Q read in 4-byte loads: the 2-byte loads, 8 in flight per thread, made a
    // tile cost ~8 L2 round trips (ncu at b1/s128 on an H200: 12.4 us for 24 blocks).
    const bool vec = sizeof(I) == 2 && ld % 8 == 0 &&
                     ((reinterpret_cast<unsigned long long>(q) | reinterpret_cast<unsigned long long>(k) |
                       reinterpret_cast<unsigned long long>(v)) & 15) == 0;
    // The first two key tiles go out before the length is known (rows below S: inside the
    // sequence); one group per tile, empty or not, so that the loop waits with wait_group 1.
    if constexpr (sizeof(I) == 2)
        if (vec) {
            issue_kv(Ks[0], Vs[0], kb, vb, 0, S, ld);
            cp_async_commit();
            if (S > FA_BK) issue_kv(Ks[1], Vs[1], kb, vb, FA_BK, S, ld);
            cp_async_commit();
        }

    // This warp's 16 query rows as A fragments, rounded to T: qa[kk] covers d = 16kk..16kk+15.
    // Loaded before the scan, so that their latency overlaps it.
    const int r0 = qt * FA_BQ + warp * 16 + group, r1 = r0 + 8;
    unsigned qa[4][4];
    {
        const I *q0 = q + (seq + r0) * ld + h * FA_D, *q1 = q + (seq + r1) * ld + h * FA_D;
        auto pair = [&](const I *p) -> unsigned {
            if constexpr (sizeof(I) == 2)
                if (vec) return *reinterpret_cast<const unsigned *>(p); // 2 elements, low first
            return pair_of<T>(p);
        };
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            const int c = 16 * kk + 2 * tig;
            qa[kk][0] = r0 < S ? pair(q0 + c) : 0u;
            qa[kk][1] = r1 < S ? pair(q1 + c) : 0u;
            qa[kk][2] = r0 < S ? pair(q0 + c + 8) : 0u;
            qa[kk][3] = r1 < S ? pair(q1 + c + 8) : 0u;
        }
    }

    // The sequence's length: 1 + the last key whose mask is above MASKED (0 if all are masked).
    float last = -1.0f;
    for (int j = tid; j < S; j += FA_WARPS * 32) {
        const float m = mrow[j];
        if (j < FA_MAX_S) Mseq[j] = m;
        if (m > masked) last = (float)j; // j < 2^24: exact
    }
    last = warp_max(last);
    if (lane == 0) last_s[warp] = last;
    __syncthreads();
    int L = (int)fmaxf(fmaxf(last_s[0], last_s[1]), fmaxf(last_s[2], last_s[3])) + 1;
    if (L == 0) L = S; // every key masked: uniform weights over all S keys, as the reference
    const int tiles = (L + FA_BK - 1) / FA_BK;

    float o[8][4]; // output rows (group, group+8) x d = 8n + 2tig + (0,1)
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) o[n][c] = 0.0f;
    float row_max[2] = {NEG_INF, NEG_INF}; // running max of rows group, group+8
    float row_sum[2] = {0.0f, 0.0f};       // this lane's part of the running sums

    for (int t = 0; t < tiles; t++) {
        const int j0 = t * FA_BK, st = t % FA_STAGES;
        unsigned(*const Kt)[FA_ROW] = Ks[st];
        unsigned(*const Vt)[FA_ROW] = Vs[st];
        bool staged = false;
        if constexpr (sizeof(I) == 2) {
            if (vec) {
                cp_async_wait<1>(); // this thread's copies of tile t have landed
                if (j0 + FA_BK > L) zero_past_length(Kt, Vt, j0, L);
                staged = true;
            }
        }
        if (!staged) stage_kv_elementwise<T>(Kt, Vt, kb, vb, j0, L, ld);
        if (tid < FA_BK) {
            const int j = j0 + tid;
            Ms[tid] = j < L ? (j < FA_MAX_S ? Mseq[j] : mrow[j]) : NEG_INF;
        }
        __syncthreads(); // the tile is staged

        // Scores: s[n] = rows (group, group+8) x keys j0 + 8n + 2tig + (0,1). One ldmatrix.x4
        // gives the B fragments of two k16 steps: matrix m = lane / 8 is keys 8n..8n+7 x
        // d 32i + 8m..+7, so kf[i] = {b0, b1 of step 2i, b0, b1 of step 2i + 1}.
        float s[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++) {
            unsigned kf[2][4];
#pragma unroll
            for (int i = 0; i < 2; i++) ldmatrix_x4(kf[i], &Kt[8 * n + (lane & 7)][16 * i + 4 * (lane >> 3)]);
#pragma unroll
            for (int c = 0; c < 4; c++) s[n][c] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                const unsigned bk[2] = {kf[kk >> 1][2 * (kk & 1)], kf[kk >> 1][2 * (kk & 1) + 1]};
                mma_m16n8k16<T>(s[n], qa[kk], bk);
            }
        }
        // Online softmax, rows group (c = 0, 1) and group + 8 (c = 2, 3); the 4 lanes of a group
        // hold one row's 64 keys between them.
        float tile_max[2] = {NEG_INF, NEG_INF};
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                s[n][c] = s[n][c] * scale + Ms[8 * n + 2 * tig + (c & 1)];
                tile_max[c >> 1] = fmaxf(tile_max[c >> 1], s[n][c]);
            }
        float alpha[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
            const float m = fmaxf(row_max[r], tile_max[r]);
            alpha[r] = exp2f((row_max[r] - m) * FA_LOG2E); // 0 on the first tile
            row_max[r] = m;
            row_sum[r] *= alpha[r];
        }
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const float p = to_f32(T{to_bits<T>(exp2f((s[n][c] - row_max[c >> 1]) * FA_LOG2E))});
                s[n][c] = p;
                row_sum[c >> 1] += p;
                o[n][c] *= alpha[c >> 1];
            }
        // o += P V over the tile's 4 groups of 16 keys; P's A fragment is two score tiles. One
        // ldmatrix.x4.trans gives the B fragments of two n8 columns: matrix m = lane / 8 is
        // keys 16kk + 8(m & 1)..+7 x d 8(2np + m / 2)..+7, transposed.
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            unsigned pa[4];
            pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int np = 0; np < 4; np++) {
                unsigned vf[4];
                ldmatrix_x4_trans(vf, &Vt[16 * kk + (lane & 7) + 8 * ((lane >> 3) & 1)][4 * (2 * np + (lane >> 4))]);
                const unsigned bv0[2] = {vf[0], vf[1]}, bv1[2] = {vf[2], vf[3]};
                mma_m16n8k16<T>(o[2 * np], pa, bv0);
                mma_m16n8k16<T>(o[2 * np + 1], pa, bv1);
            }
        }
        __syncthreads(); // every warp is done with the stage (and Ms) before they are restaged
        if constexpr (sizeof(I) == 2)
            if (vec) {
                if (t + FA_STAGES < tiles) issue_kv(Kt, Vt, kb, vb, j0 + FA_STAGES * FA_BK, L, ld);
                cp_async_commit();
            }
    }
    if constexpr (sizeof(I) == 2)
        if (vec) cp_async_wait<0>(); // a prologue tile past the length may still be in flight

    // Full row sums over the group's 4 lanes, then out = o / sum.
#pragma unroll
    for (int r = 0; r < 2; r++) {
        row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
        row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
    }
    const float inv0 = 1.0f / row_sum[0], inv1 = 1.0f / row_sum[1];
    O *o0 = out + (seq + r0) * H + h * FA_D, *o1 = out + (seq + r1) * H + h * FA_D;
#pragma unroll
    for (int n = 0; n < 8; n++) {
        const int c = 8 * n + 2 * tig;
        if (r0 < S) store_out(&o0[c], o[n][0] * inv0), store_out(&o0[c + 1], o[n][1] * inv0);
        if (r1 < S) store_out(&o1[c], o[n][2] * inv1), store_out(&o1[c + 1], o[n][3] * inv1);
    }
}

#endif // sm_80+
