// layer_resident_{bf16,f16}: every application of the shared layer for a small batch (B S <= 128
// tokens) in one cooperative launch, the layer's weights resident in shared memory throughout
// (ALBERT_CUDA_RESIDENT=1, sm_80+ where the slabs fit: up to 224 KB per block, sm_90).
//
// Bit for bit the T path's launches (forward/layer.rs layer_forward_t), `layers` times:
//   qkv    = hidden_t @ Wqkv^T + bqkv                 (T)    linear_forward_mma64_*_to_*
//   ctx    = attention(qkv, mask)                     (T)    attention_forward_mma_*_to_*
//   parts  = split-K partials of ctx @ Wo^T (+ bo in partial 0), splits_o of them
//   attn   = LayerNorm(parts + hidden), attn_t        (f32, T) residual_layernorm_forward_to_*
//   ffn    = act(attn_t @ Wi^T + bi)                  (T)
//   parts  = split-K partials of ffn @ Wf^T (+ bf), splits_f of them
//   hidden = LayerNorm(parts + attn), hidden_t        (f32, T)
// Each output is the same chain of 16-k mma steps from a zero accumulator in k order within its
// K share (KShare: splits_o / splits_f from K alone, as the scheduler picks them), the partials
// are added in the same order and the LayerNorm statistics summed in the block kernel's order
// (layernorm_warp.cuh); the attention is the kernel's own body per work item (attention_mma.cuh).
//
// Why (notes/gpu.md, "Session 12"; the probe: dev/probes/resident.cuh): at b1 each product
// kernel waits ~70% of its time on its weight tiles' latency, 12 times per layer over. Here the
// weights (14.2 MB in bf16 for albert-base: 107 KB per SM of 132) are read into shared memory
// once per pass; a product phase then waits only on its activation, which the previous phase
// left in L2. The phases are separated by grid barriers (grid_sync.cuh), 7 per layer.
//
// Work: the four products' weights are cut into slabs of RL_NB rows (output columns) by one K
// share (at most RL_KS k): QKV 3H/16, the attention output H/16 x splits_o, FFN in I/16, FFN out
// H/16 x splits_f slabs, numbered in that order, within a product column-major (slab q: share
// q % splits, columns 16 (q / splits) ..). Block b of the G in the grid keeps slabs b, b + G,
// b + 2G, ... (at most RL_MAX_SLOTS), so every block holds about the same bytes and a phase
// gives a block at most ceil(slabs / G) + 1 of its slabs, in adjacent slots. A product phase:
// the [M, share] activation streams through RL_STAGES k tiles (cp.async from L2) and 4 warps of
// 32 rows multiply it with the block's slabs of that product, two at a time where they share
// the K share (always when G is a multiple of the splits: 132 SMs, 1 or 4 splits), so that a
// block waits for the activation once per phase, not once per slab. The
// attention's work items (64 query rows of one head of one sequence) go to blocks 0 ..
// attention_blocks - 1 in turn (the engine: the whole grid), in the activation stages' shared
// memory (free between the product phases). The LayerNorm rows go a row per warp over the grid.
//
// Launch: grid (G) blocks of RL_THREADS threads, all resident (cooperative; G <= the SM count x
// blocks per SM), dynamic shared memory layer_resident_smem(slots) with slots =
// ceil(slabs / G) <= RL_MAX_SLOTS (albert-base: 576 slabs, 5 slots on 132 SMs, 7 on 83). Needs M = B S <= RL_M,
// H = 64 A <= 1024, H and I multiples of 8, splits <= 4 with shares of at most RL_KS k, 16-byte
// aligned activations and weights; anything else returns at once (uniformly: no barrier waits).
// `sync`: two words, zero when first allocated (grid_sync.cuh leaves them reusable).
#include "mma_tile.cuh"
#include "layernorm_warp.cuh"
#include "attention_mma.cuh"
#include "grid_sync.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

#define RL_THREADS 128    // 4 warps of 32 rows (the attention's FA_WARPS too)
#define RL_M 128          // rows (tokens) at most
#define RL_NB 16          // columns per slab
#define RL_KS 768         // k per slab at most (a K share)
#define RL_TK 64          // activation k tile
#define RL_STAGES 3       // activation tiles in flight: two while one is multiplied
#define RL_MAX_SLOTS 7    // slabs per block: 54 KB of stages + 7 x 24.3 KB <= 227 KB
#define RL_PARTS 4        // split-K partials at most (the LayerNorm loads them together)
#define RL_WPITCH (RL_KS + MMA_PAD)
#define RL_APITCH (RL_TK + MMA_PAD)
#define RL_STAGE_ELEMS (RL_STAGES * RL_M * RL_APITCH)
#define RL_SLOT_ELEMS (RL_NB * RL_WPITCH)
// Dynamic shared memory for `slots` slabs: the activation stages, then the slabs.
#define layer_resident_smem(slots) ((RL_STAGE_ELEMS + (slots) * RL_SLOT_ELEMS) * 2)
static_assert(FA_WARPS * 32 == RL_THREADS, "the attention runs on the layer's block");
static_assert(sizeof(FaShared) <= RL_STAGE_ELEMS * 2, "the attention's shared memory over the stages");

// The kernel's operands (one struct: 28 of them).
template <typename T> struct LayerResidentArgs {
    const T *weight[4];      // QKV [3H, H], attention output [H, H], FFN in [I, H], FFN out [H, I]
    const float *bias[4];    // [3H], [H], [I], [H]
    const float *ln_w[2];    // the attention's and the output's LayerNorm weight [H]
    const float *ln_b[2];    // and bias [H]
    float *hidden;           // [M, H]: the first application's input, the last one's output
    T *hidden_t;             // [M, H]: hidden rounded to T
    T *qkv;                  // [M, 3H]
    T *ctx;                  // [M, H]
    float *parts;            // [max(splits_o, splits_f), M, H]
    float *attn;             // [M, H]
    T *attn_t;               // [M, H]
    T *ffn;                  // [M, I]
    const float *mask;       // [B, S]: 0 or MASKED
    unsigned *sync;          // the barrier's two words
    int B, S, H, I, A;       // sequences, their length, hidden, intermediate, heads (of 64)
    int splits_o, splits_f;  // the output products' K splits
    int layers;              // layer applications
    int act;                 // the FFN's activation (ACT_*)
    int attention_blocks;    // blocks that take attention items (the grid, or fewer)
    float scale, eps;        // attention scale, LayerNorm eps
};

typedef unsigned short RlWRow[RL_WPITCH];
typedef unsigned short RlARow[RL_APITCH];

// One of the four products: [M, K] activation (T) @ [N, K]^T weight, `splits` K shares.
struct RlProduct {
    const unsigned short *weight, *act;
    const float *bias;
    int K, N, splits, nblk; // nblk: slabs per share, ceil(N / RL_NB)
    __device__ __forceinline__ int slabs() const { return nblk * splits; }
};

// acc = the activation's k tiles t0 .. t0 + tiles - 1 (all M rows) @ slab^T, the slab holding
// those k from its k 0: the warp's 32 rows x 8 NJ columns (NJ = 4: two slabs in adjacent slots,
// one pass over the activation for both). Every k tile's copies and barriers are the block's;
// the stages are free again on return.
template <typename T, int NJ>
__device__ __forceinline__ void rl_slab_product(float (&acc)[2][NJ][4], const unsigned short *abits, int M,
                                                int K, int t0, int tiles, const RlWRow *slab, RlARow *As) {
    constexpr int TK = RL_TK, ST = RL_STAGES;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;
    const ChunkStager<RL_M, TK, RL_THREADS> stager(abits, 0, M, K);
    // Groups: tiles 0 .. ST-2, then one per tile: at tile t at most ST-1 are pending, so tiles
    // 0 .. t have landed.
#pragma unroll
    for (int t = 0; t < ST - 1; t++) {
        if (t < tiles) stager.stage(&As[t * RL_M][0], abits, t0 + t, K);
        cp_async_commit();
    }
    const unsigned short *a_frag = a_frag_row<RL_APITCH>(As, warp * 32, lane);
    const unsigned short *b_frag = b_frag_row<RL_WPITCH>(slab, 0, lane);
    for (int t = 0; t < tiles; t++) {
        const int tn = t + ST - 1; // into the stage tile t - 1 used (freed by its last barrier)
        if (tn < tiles) stager.stage(&As[(tn % ST) * RL_M][0], abits, t0 + tn, K);
        cp_async_commit();
        cp_async_wait<ST - 1>();
        __syncthreads();
        const unsigned short *a = a_frag + (t % ST) * (RL_M * RL_APITCH);
#pragma unroll
        for (int kk = 0; kk < TK; kk += 16)
            warp_mma_k16<T, 2, NJ, RL_APITCH, RL_WPITCH>(acc, a + kk, b_frag + t * TK + kk);
        __syncthreads(); // every warp is done with stage t % ST
    }
    cp_async_wait<0>(); // only empty groups are left
}

// out[m, n0[j / 2] ..] = act(acc + bias) for the warp's rows and the slabs' 16 columns each
// (store_tile's epilogue: the bias, or +0 without one, then the activation, then the store's
// rounding).
template <int ACT, int NJ, typename O>
__device__ __forceinline__ void rl_store(O *out, const float (&acc)[2][NJ][4], const float *bias,
                                         const int (&n0)[NJ / 2], int M, int N, int act) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, group = lane >> 2, tig = lane & 3;
    float bv[NJ][2];
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int c = 0; c < 2; c++) {
            const int n = n0[j / 2] + (j % 2) * 8 + 2 * tig + c;
            bv[j][c] = (bias && n < N) ? bias[n] : 0.0f;
        }
    const bool pairs = N % 2 == 0 && reinterpret_cast<unsigned long long>(out) % (2 * sizeof(O)) == 0;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int m = warp * 32 + i * 16 + group + 8 * half;
            if (m >= M) continue;
            O *row = out + (long long)m * N;
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                const int n = n0[j / 2] + (j % 2) * 8 + 2 * tig;
                if (n >= N) continue;
                const float v0 = activate<ACT>(acc[i][j][2 * half] + bv[j][0], act);
                const float v1 = activate<ACT>(acc[i][j][2 * half + 1] + bv[j][1], act);
                if (pairs) {
                    store_pair(&row[n], v0, v1);
                } else {
                    store_out(&row[n], v0);
                    if (n + 1 < N) store_out(&row[n + 1], v1);
                }
            }
        }
}

// Product p of the layer (0 QKV, 1 attention output, 2 FFN in, 3 FFN out), by value (a
// run-time p selects among registers, not from a local array).
template <typename T> __device__ __forceinline__ RlProduct rl_product(const LayerResidentArgs<T> &a, int p) {
    auto bits = [](const T *x) { return reinterpret_cast<const unsigned short *>(x); };
    const int H = a.H, I = a.I, hb = (H + RL_NB - 1) / RL_NB;
    switch (p) {
    case 0: return {bits(a.weight[0]), bits(a.hidden_t), a.bias[0], H, 3 * H, 1, (3 * H + RL_NB - 1) / RL_NB};
    case 1: return {bits(a.weight[1]), bits(a.ctx), a.bias[1], H, H, a.splits_o, hb};
    case 2: return {bits(a.weight[2]), bits(a.attn_t), a.bias[2], H, I, 1, (I + RL_NB - 1) / RL_NB};
    default: return {bits(a.weight[3]), bits(a.ffn), a.bias[3], I, H, a.splits_f, hb};
    }
}

// A product phase's stores: out_t = act(acc + bias) as T, or (out_t null) the f32 partial z of
// the output products, the bias in partial 0 only. One copy per ALBERT activation, as
// linear_mma.cu.
template <int NJ, typename T>
__device__ __forceinline__ void rl_epilogue(const LayerResidentArgs<T> &a, const RlProduct &P, T *out_t, int act,
                                            int z, int M, const float (&acc)[2][NJ][4], const int (&n0)[NJ / 2]) {
    if (out_t == nullptr) {
        float *part = a.parts + (long long)z * M * P.N;
        rl_store<ACT_NONE, NJ>(part, acc, z ? nullptr : P.bias, n0, M, P.N, ACT_NONE);
        return;
    }
    switch (act) {
    case ACT_NONE: rl_store<ACT_NONE, NJ>(out_t, acc, P.bias, n0, M, P.N, act); break;
    case ACT_GELU: rl_store<ACT_GELU, NJ>(out_t, acc, P.bias, n0, M, P.N, act); break;
    case ACT_GELU_TANH: rl_store<ACT_GELU_TANH, NJ>(out_t, acc, P.bias, n0, M, P.N, act); break;
    default: rl_store<-1, NJ>(out_t, acc, P.bias, n0, M, P.N, act); break;
    }
}

template <typename T>
__device__ void layer_resident(const LayerResidentArgs<T> &a) {
    const int G = int(gridDim.x), b = int(blockIdx.x), tid = threadIdx.x, warp = tid >> 5;
    const int M = a.B * a.S, H = a.H, I = a.I;
    // Product p's slabs are s[p] .. s[p + 1] - 1 (s[0] = 0, s4 = all).
    const int s1 = rl_product(a, 0).slabs(), s2 = s1 + rl_product(a, 1).slabs();
    const int s3 = s2 + rl_product(a, 2).slabs(), s4 = s3 + rl_product(a, 3).slabs();
    bool ok = M >= 1 && M <= RL_M && H == a.A * FA_D && H <= 1024 && H % 8 == 0 && I >= 8 && I % 8 == 0 &&
              a.layers >= 0 && a.splits_o >= 1 && a.splits_o <= RL_PARTS && a.splits_f >= 1 &&
              a.splits_f <= RL_PARTS;
#pragma unroll
    for (int p = 0; p < 4; p++) {
        const RlProduct P = rl_product(a, p);
        ok = ok && KShare<RL_TK>(P.K, P.splits, 0).tiles * RL_TK <= RL_KS;
        ok = ok && !(reinterpret_cast<unsigned long long>(P.weight) & 15) &&
             !(reinterpret_cast<unsigned long long>(P.act) & 15);
    }
    const int slots = (s4 + G - 1) / G;
    // Uniform across the grid (the same arguments everywhere), so no block waits for one gone.
    if (!ok || slots > RL_MAX_SLOTS || dynamic_smem_bytes() < unsigned(layer_resident_smem(slots))) return;

    extern __shared__ __align__(16) unsigned short rl_smem[];
    RlARow *As = reinterpret_cast<RlARow *>(rl_smem);                   // [RL_STAGES * RL_M]
    RlWRow *Ws = reinterpret_cast<RlWRow *>(rl_smem + RL_STAGE_ELEMS);  // [slots * RL_NB]
    FaShared *fa = reinterpret_cast<FaShared *>(rl_smem); // the attention phase's, over the stages

    // Every slab once, zero past N and K: one group, waited for before the first phase.
    for (int j = 0, g = b; j < slots && g < s4; j++, g += G) {
        const int p = (g >= s1) + (g >= s2) + (g >= s3), q = g - (p == 0 ? 0 : p == 1 ? s1 : p == 2 ? s2 : s3);
        const RlProduct P = rl_product(a, p);
        const int z = q % P.splits, n0 = (q / P.splits) * RL_NB;
        const KShare<RL_TK> share(P.K, P.splits, z);
        const int k0 = share.t0 * RL_TK, chunks = share.tiles * (RL_TK / 8); // 16-byte chunks per row
        RlWRow *slab = Ws + j * RL_NB;
        for (int c = tid; c < RL_NB * chunks; c += RL_THREADS) {
            const int r = c / chunks, kc = (c % chunks) * 8;
            const bool in = n0 + r < P.N && k0 + kc < P.K;
            cp_async16(&slab[r][kc], in ? P.weight + (long long)(n0 + r) * P.K + k0 + kc : P.weight, in ? 16 : 0);
        }
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    // A product phase: the block's slabs of product p, stored as T (QKV, FFN in: with the
    // activation `act`) or as f32 partials (the output products: bias in partial 0). Two slabs
    // of the same K share (in adjacent slots: one [32, share] tile) take one pass together.
    auto product = [&](int p, int first, int end, T *out_t, int act) {
        const RlProduct P = rl_product(a, p);
        for (int j = 0, g = b; j < slots && g < end; j++, g += G) {
            if (g < first) continue;
            const int q = g - first, z = q % P.splits, q2 = q + G;
            const KShare<RL_TK> share(P.K, P.splits, z);
            if (j + 1 < slots && g + G < end && q2 % P.splits == z) {
                const int n0[2] = {(q / P.splits) * RL_NB, (q2 / P.splits) * RL_NB};
                float acc[2][4][4];
                rl_slab_product<T, 4>(acc, P.act, M, P.K, share.t0, share.tiles, Ws + j * RL_NB, As);
                rl_epilogue<4>(a, P, out_t, act, z, M, acc, n0);
                j++, g += G;
            } else {
                const int n0[1] = {(q / P.splits) * RL_NB};
                float acc[2][2][4];
                rl_slab_product<T, 2>(acc, P.act, M, P.K, share.t0, share.tiles, Ws + j * RL_NB, As);
                rl_epilogue<2>(a, P, out_t, act, z, M, acc, n0);
            }
        }
    };
    // A LayerNorm phase: out = LayerNorm(partials + residual), a row per warp over the grid.
    auto layernorm = [&](float *out, T *out_t, const float *residual, int nparts, const float *w, const float *bb) {
        const long long part = (long long)M * H;
        for (int r = b * (RL_THREADS / 32) + warp; r < M; r += G * (RL_THREADS / 32)) {
            const long long r0 = (long long)r * H;
            const PartialsPlusResidual<RL_PARTS> pre{a.parts + r0, residual + r0, part, nparts};
            layernorm_row_warp<T>(out + r0, out_t + r0, pre, w, bb, H, a.eps);
        }
    };
    const unsigned blocks = unsigned(G);
    const int qtiles = (a.S + FA_BQ - 1) / FA_BQ, items = a.B * a.A * qtiles;
    const int att_blocks = a.attention_blocks < G ? a.attention_blocks : G;
    for (int layer = 0; layer < a.layers; layer++) {
        product(0, 0, s1, a.qkv, ACT_NONE);
        row_group_sync(a.sync, blocks);
        for (int w = b; b < att_blocks && w < items; w += att_blocks) {
            attention_forward_mma<T, T, T>(a.ctx, a.qkv, a.qkv + H, a.qkv + 2 * H, a.mask, a.B, a.S, a.A, FA_D,
                                           3 * H, a.scale, w % qtiles, (w / qtiles) % a.A, w / (qtiles * a.A), fa->Ks, fa->Vs,
                                           fa->Mseq, fa->Ms, fa->last_s);
            __syncthreads(); // the next item restages the attention's shared tiles
        }
        row_group_sync(a.sync, blocks);
        product(1, s1, s2, nullptr, ACT_NONE);
        row_group_sync(a.sync, blocks);
        layernorm(a.attn, a.attn_t, a.hidden, a.splits_o, a.ln_w[0], a.ln_b[0]);
        row_group_sync(a.sync, blocks);
        product(2, s2, s3, a.ffn, a.act);
        row_group_sync(a.sync, blocks);
        product(3, s3, s4, nullptr, ACT_NONE);
        row_group_sync(a.sync, blocks);
        layernorm(a.hidden, a.hidden_t, a.attn, a.splits_f, a.ln_w[1], a.ln_b[1]);
        if (layer + 1 < a.layers) row_group_sync(a.sync, blocks); // the next QKV reads hidden_t
    }
}

#define LAYER_RESIDENT(NAME, T)                                                                    \
    extern "C" __global__ void __launch_bounds__(RL_THREADS, 1) NAME(LayerResidentArgs<T> a) {     \
        layer_resident<T>(a);                                                                      \
    }
LAYER_RESIDENT(layer_resident_bf16, bf16)
LAYER_RESIDENT(layer_resident_f16, f16)

#endif // sm_80+
