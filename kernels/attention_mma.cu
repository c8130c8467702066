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
// Shared memory: K as [key][d] pairs of T in 32-bit words, rows of 36 words (padding 4): the B
// fragment loads (row group, word tig) hit 32 distinct banks. V as [key pair][d] words holding
// (V[2p][d], V[2p+1][d]): that is the B fragment of P V directly (b0 = V[2tig..2tig+1][group]),
// no transpose; rows of 72 words, so rows tig = 0..3 start 8 banks apart. Staging reads f32 rows
// of q/k/v coalesced (a warp reads 64 consecutive floats of one key row) and rounds to T.
//
// Version 1 (correctness first): one stage; staging and math alternate with two barriers per
// key tile. With T inputs the first tile's loads are issued with the mask scan (v1.22). Next: prefetch the next tile into registers (or cp.async once q/k/v are stored as T
// by the QKV epilogue), ldmatrix, 128-row blocks for long sequences.
#include "mma.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

#define FA_D 64       // head size
#define FA_BQ 64      // query rows per block: 16 per warp
#define FA_BK 64      // keys per tile
#define FA_WARPS 4
#define FA_KROW 36    // words per K row: 32 pairs + 4 padding
#define FA_VROW 72    // words per V key-pair row: 64 + 8 padding
#define FA_LOG2E 1.4426950408889634f

// q, k, v elements as T bits: f32 rounded here, or already T (the _from_ kernels: bit-identical).
template <typename T> __device__ __forceinline__ unsigned bits_of(float x) { return to_bits<T>(x); }
template <typename T> __device__ __forceinline__ unsigned bits_of(T x) { return x.bits; }
template <typename T, typename I> __device__ __forceinline__ unsigned pair_of(const I *p) {
    return bits_of<T>(p[0]) | (bits_of<T>(p[1]) << 16);
}

// The key tile j0..j0+63 of T inputs with 16-byte rows, in registers: K as 4 16-byte loads per
// thread (8 elements = 4 words of Ks), V as 2 (key pair, 8 d) items per thread, each two 16-byte
// loads (rows 2p, 2p + 1). Rows at or past `limit` are not read (zero).
struct KvTile {
    uint4 k[4], vlo[2], vhi[2];
};
template <typename I>
__device__ __forceinline__ void load_kv_vec(KvTile &r, const I *kb, const I *vb, int j0, int limit,
                                            int ld) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int e = 0; e < (FA_BK * FA_D / 8) / (FA_WARPS * 32); e++) { // 4
        const int idx = tid + e * FA_WARPS * 32, key = idx >> 3, ch = idx & 7, j = j0 + key;
        r.k[e] = make_uint4(0u, 0u, 0u, 0u);
        if (j < limit) r.k[e] = *reinterpret_cast<const uint4 *>(kb + (long long)j * ld + 8 * ch);
    }
#pragma unroll
    for (int e = 0; e < (FA_BK / 2 * FA_D / 8) / (FA_WARPS * 32); e++) { // 2
        const int idx = tid + e * FA_WARPS * 32, p = idx >> 3, ch = idx & 7, j = j0 + 2 * p;
        r.vlo[e] = r.vhi[e] = make_uint4(0u, 0u, 0u, 0u);
        if (j < limit) r.vlo[e] = *reinterpret_cast<const uint4 *>(vb + (long long)j * ld + 8 * ch);
        if (j + 1 < limit)
            r.vhi[e] = *reinterpret_cast<const uint4 *>(vb + (long long)(j + 1) * ld + 8 * ch);
    }
}

// Stores a loaded tile into Ks and Vs, zero past the length L: K's words as loaded, V's
// interleaved into 8 words per item (V[2p][d] low, V[2p+1][d] high). The same words the
// element-wise staging stores.
__device__ __forceinline__ void store_kv(unsigned (*Ks)[FA_KROW], unsigned (*Vs)[FA_VROW],
                                         const KvTile &r, int j0, int L) {
    const int tid = threadIdx.x;
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
    for (int e = 0; e < (FA_BK * FA_D / 8) / (FA_WARPS * 32); e++) {
        const int idx = tid + e * FA_WARPS * 32, key = idx >> 3, ch = idx & 7;
        *reinterpret_cast<uint4 *>(&Ks[key][4 * ch]) = j0 + key < L ? r.k[e] : zero;
    }
#pragma unroll
    for (int e = 0; e < (FA_BK / 2 * FA_D / 8) / (FA_WARPS * 32); e++) {
        const int idx = tid + e * FA_WARPS * 32, p = idx >> 3, ch = idx & 7, j = j0 + 2 * p;
        const uint4 lo = j < L ? r.vlo[e] : zero, hi = j + 1 < L ? r.vhi[e] : zero;
        const unsigned l[4] = {lo.x, lo.y, lo.z, lo.w}, u[4] = {hi.x, hi.y, hi.z, hi.w};
        unsigned w[8];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[2 * i] = (l[i] & 0xffffu) | (u[i] << 16);         // d = 8ch + 2i
            w[2 * i + 1] = (l[i] >> 16) | (u[i] & 0xffff0000u); // d = 8ch + 2i + 1
        }
        *reinterpret_cast<uint4 *>(&Vs[p][8 * ch]) = make_uint4(w[0], w[1], w[2], w[3]);
        *reinterpret_cast<uint4 *>(&Vs[p][8 * ch + 4]) = make_uint4(w[4], w[5], w[6], w[7]);
    }
}

template <typename T, typename I, typename O>
__device__ void attention_forward_mma(O *__restrict__ out,            // [B, S, A*64]
                                      const I *__restrict__ q,        // [B, S, ld]
                                      const I *__restrict__ k,        // [B, S, ld]
                                      const I *__restrict__ v,        // [B, S, ld]
                                      const float *__restrict__ mask, // [B, S]
                                      int B, int S, int A, int D, int ld, float scale) {
    __shared__ __align__(16) unsigned Ks[FA_BK][FA_KROW];
    __shared__ __align__(16) unsigned Vs[FA_BK / 2][FA_VROW];
    __shared__ float Ms[FA_BK];       // the tile's mask; -inf past the length
    __shared__ float last_s[FA_WARPS]; // per warp: the last key above MASKED
    grid_dependency_enter();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int group = lane >> 2, tig = lane & 3;
    const int h = blockIdx.y, b = blockIdx.z;
    if (D != FA_D || b >= B || h >= A) return; // uniform over the block: before any barrier
    const int H = A * FA_D;
    const float masked = -3.402823466e38f; // -FLT_MAX, MASKED of reference.rs
    const float *mrow = mask + (long long)b * S;
    const long long seq = (long long)b * S;
    const I *kb = k + seq * ld + h * FA_D, *vb = v + seq * ld + h * FA_D;
    // T inputs with 16-byte aligned rows (ld % 8 == 0: every fused QKV output) are read in
    // 16-byte (K, V) and 4-byte (Q) loads: the 2-byte loads, 8 in flight per thread, made a
    // tile cost ~8 L2 round trips (ncu at b1/s128 on an H200: 12.4 us for 24 blocks).
    const bool vec = sizeof(I) == 2 && ld % 8 == 0 &&
                     ((reinterpret_cast<unsigned long long>(q) | reinterpret_cast<unsigned long long>(k) |
                       reinterpret_cast<unsigned long long>(v)) & 15) == 0;
    // The first key tile's loads go out with the mask's (rows below S: inside the sequence);
    // the rows past the length, known only after the scan, are zeroed as the tile is stored.
    // A row then costs one memory latency before its first product instead of two.
    KvTile first;
    if constexpr (sizeof(I) == 2)
        if (vec) load_kv_vec(first, kb, vb, 0, S, ld);

    // The sequence's length: 1 + the last key whose mask is above MASKED (0 if all are masked).
    float last = -1.0f;
    for (int j = tid; j < S; j += FA_WARPS * 32)
        if (mrow[j] > masked) last = (float)j; // j < 2^24: exact
    last = warp_max(last);
    if (lane == 0) last_s[warp] = last;
    __syncthreads();
    int L = (int)fmaxf(fmaxf(last_s[0], last_s[1]), fmaxf(last_s[2], last_s[3])) + 1;
    if (L == 0) L = S; // every key masked: uniform weights over all S keys, as the reference
    if constexpr (sizeof(I) == 2)
        if (vec) store_kv(Ks, Vs, first, 0, L); // the loop's first barrier publishes it

    // This warp's 16 query rows as A fragments, rounded to T: qa[kk] covers d = 16kk..16kk+15.
    const int r0 = blockIdx.x * FA_BQ + warp * 16 + group, r1 = r0 + 8;
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

    float o[8][4]; // output rows (group, group+8) x d = 8n + 2tig + (0,1)
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) o[n][c] = 0.0f;
    float row_max[2] = {NEG_INF, NEG_INF}; // running max of rows group, group+8
    float row_sum[2] = {0.0f, 0.0f};       // this lane's part of the running sums

    for (int j0 = 0; j0 < L; j0 += FA_BK) {
        // Stage K (64 keys x 32 d-pairs) and V (32 key pairs x 64 d), zero past the length: a
        // zero V row times weight 0 adds 0 (a stale or NaN one would not). 16 words per thread
        // each, unrolled 8 at a time: fully unrolled, the kernel took 168-186 registers (2-3
        // blocks per SM); this way 128 (4 blocks, 16 warps), with 16 loads still in flight.
        bool staged = false;
        if constexpr (sizeof(I) == 2) {
            if (vec) {
                if (j0 > 0) {
                    KvTile next;
                    load_kv_vec(next, kb, vb, j0, L, ld);
                    store_kv(Ks, Vs, next, j0, L);
                }
                staged = true;
            }
        }
        if (!staged) {
#pragma unroll 8
            for (int e = 0; e < (FA_BK * FA_D / 2) / (FA_WARPS * 32); e++) {
                const int idx = tid + e * FA_WARPS * 32;
                const int key = idx >> 5, pair = idx & 31, j = j0 + key;
                Ks[key][pair] = j < L ? pair_of<T>(kb + (long long)j * ld + 2 * pair) : 0u;
            }
#pragma unroll 8
            for (int e = 0; e < (FA_BK * FA_D / 2) / (FA_WARPS * 32); e++) {
                const int idx = tid + e * FA_WARPS * 32;
                const int p = idx >> 6, d = idx & 63, j = j0 + 2 * p;
                const unsigned lo = j < L ? bits_of<T>(vb[(long long)j * ld + d]) : 0u;
                const unsigned hi = j + 1 < L ? bits_of<T>(vb[(long long)(j + 1) * ld + d]) : 0u;
                Vs[p][d] = lo | (hi << 16);
            }
        }
        if (tid < FA_BK) Ms[tid] = j0 + tid < L ? mrow[j0 + tid] : NEG_INF;
        __syncthreads(); // the tile is staged

        // Scores: s[n] = rows (group, group+8) x keys j0 + 8n + 2tig + (0,1).
        float s[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++) {
#pragma unroll
            for (int c = 0; c < 4; c++) s[n][c] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                unsigned bk[2];
                bk[0] = Ks[8 * n + group][8 * kk + tig];
                bk[1] = Ks[8 * n + group][8 * kk + 4 + tig];
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
        // o += P V over the tile's 4 groups of 16 keys; P's A fragment is two score tiles.
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            unsigned pa[4];
            pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int n = 0; n < 8; n++) {
                unsigned bv[2];
                bv[0] = Vs[8 * kk + tig][8 * n + group];
                bv[1] = Vs[8 * kk + 4 + tig][8 * n + group];
                mma_m16n8k16<T>(o[n], pa, bv);
            }
        }
        __syncthreads(); // every warp is done with the tile before it is restaged
    }

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

#define ATTENTION_MMA(NAME, T, I, O)                                                               \
    extern "C" __global__ void __launch_bounds__(FA_WARPS * 32) NAME(                              \
        O *out, const I *q, const I *k, const I *v, const float *mask, int B, int S, int A, int D, \
        int ld, float scale) {                                                                     \
        attention_forward_mma<T, I, O>(out, q, k, v, mask, B, S, A, D, ld, scale);                 \
    }

ATTENTION_MMA(attention_forward_mma_bf16, bf16, float, float)
ATTENTION_MMA(attention_forward_mma_f16, f16, float, float)
ATTENTION_MMA(attention_forward_mma_bf16_from_bf16, bf16, bf16, float) // q, k, v stored as bf16
ATTENTION_MMA(attention_forward_mma_f16_from_f16, f16, f16, float)
// out stored as T too: the output projection rounds it to T as it stages it (bit-identical).
ATTENTION_MMA(attention_forward_mma_bf16_from_bf16_to_bf16, bf16, bf16, bf16)
ATTENTION_MMA(attention_forward_mma_f16_from_f16_to_f16, f16, f16, f16)

#endif // sm_80+
