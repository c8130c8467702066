// linear_forward on tensor cores, for bf16 and f16 weights (sm_80 and newer):
//   out[M, N] = act(inp[M, K] @ weight[N, K]^T + bias[N])
// out is f32, or T for the _to_bf16 / _to_f16 kernels (the fused QKV product feeding
// attention_mma.cu's _from_ kernels, and the FFN-in product with its activation).
// inp is f32, or already T for the _from_bf16 / _from_f16 kernels (the FFN-out product reading
// the [M, I] intermediate the FFN-in product stored as T).
// Same contract and numerics as linear_forward_{bf16,f16} in linear.cu: the f32 activation is
// rounded to T as it is staged, products of two T are exact in f32, accumulation is f32. Only
// the summation order differs, so both agree within f32 rounding.
// Storing an activation as T (RNE, to_bits<T>) and reading it back is the very rounding the f32
// kernel applies when it stages that activation, so _to_ followed by _from_ gives the same bits
// as f32 storage followed by the f32-input kernel: no result changes, only bytes. (transformers
// in bf16 also stores the FFN intermediate, like every activation, in bf16.)
//
// Version 3: mma.sync.m16n8k16 (bf16/f16 in, f32 accumulate), fragments loaded with ldmatrix.x4
// (6 instructions per warp and 16-k step instead of 24 32-bit loads); a 3-stage cp.async
// pipeline for the weight tiles (two in flight while one is multiplied) and a register prefetch
// of the next f32 activation tile (it must be rounded to T on the way, which cp.async cannot
// do); one barrier pair per k tile. With a T activation both tiles go through cp.async, in 4
// stages of dynamic shared memory (80 KB; 124-126 registers: two blocks per SM). With 2 stages of
// static memory, each k tile cost ~1,700 cycles on an H200 (ncu, notes/gpu.md v1.9): one block's
// loads were not hidden behind its products.
// Version 1 staged both tiles with plain loads and stalled on every tile.
// Block tiles (MmaTile): 128x128x32 with 8 warps in a 2 (M) x 4 (N) grid, each warp 64x32 = 4x4
// mma tiles; for T activations also 64x64x64 with 4 warps of 32x32 in 4 stages (72 KB; the
// mma64 kernels: 4x as many blocks, for small M, where a [128, 768] output had 6 blocks for 132
// SMs).
// Split-K (T-input kernels): gridDim.z blocks share an output tile, block z multiplying its own
// consecutive share of the k tiles and storing an f32 partial sum at out + z * M * N (bias in
// partial 0, no activation); the residual + LayerNorm kernel adds the partials in order z = 0, 1,
// ... (layernorm_t.cu). The tile shape never changes an output's bits (each element is the same
// chain of 16-k mma steps in the same order), the number of splits does: the scheduler picks it
// from K alone, so a sequence's results do not depend on the batch it is in.
// Tiles, staging, the warp's mma step and the epilogue: mma_tile.cuh.
// sm_90a: linear_wgmma.cu runs the same T-input products on wgmma (ALBERT_CUDA_WGMMA=1).
#include "mma_tile.cuh"

// mma.sync bf16/f16 needs sm_80; NVRTC compiling for an older device gets an empty module, and
// the engine then uses linear.cu's kernels (the registry loads this module only on 8.0+).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

// I: the activation's storage, float (rounded to T through registers) or T (cp.async).
// C: the block tile (MmaTile); f32 activations use TileLarge only.
template <typename C, typename T, typename O, typename I>
__device__ void linear_forward_mma(O *__restrict__ out,            // [gridDim.z, M, N]
                                   const I *__restrict__ inp,      // [M, K]
                                   const T *__restrict__ weight,   // [N, K]
                                   const float *__restrict__ bias, // [N] or null
                                   int M, int K, int N, int act) {
    constexpr bool a_async = sizeof(I) == 2; // T activations: staged like the weights
    constexpr int S = a_async ? C::STAGES_T : MMA_STAGES;
    constexpr int TM = C::TILE_M, TN = C::TILE_N, MI = C::MI, NJ = C::NJ, NT = C::NTHREADS;
    constexpr int TK = C::TILE_K, ROW = C::ROW;
    static_assert(a_async || TM == 128, "f32 activations: the 128x128 tile only");
    typedef unsigned short Tile[TM][ROW]; // 10 KB (128 x 32), 9 KB (64 x 64)
    Tile *As, *Ws; // [a_async ? S : 1] and [S] tiles
    if constexpr (a_async) { // S A tiles, then S W tiles: C::T_SMEM, dynamic
        extern __shared__ __align__(16) unsigned short mma_smem[];
        As = reinterpret_cast<Tile *>(mma_smem);
        Ws = As + S;
    } else { // one A tile and S W tiles, 40 KB: static
        __shared__ __align__(16) unsigned short As_static[1][TM][ROW];
        __shared__ __align__(16) unsigned short Ws_static[S][TN][ROW];
        As = As_static;
        Ws = Ws_static;
    }
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int warp_m = warp / C::WARPS_N, warp_n = warp % C::WARPS_N;
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    const unsigned short *wbits = reinterpret_cast<const unsigned short *>(weight);
    const unsigned short *abits = reinterpret_cast<const unsigned short *>(inp); // a_async only
    // Split-K: this block's k tiles are t0 .. t0 + tiles - 1 (KShare), its output partial z;
    // the bias goes into partial 0 only.
    const KShare<TK> share(K);
    const int t0 = share.t0, tiles = share.tiles;
    out += (long long)blockIdx.z * M * N;
    if (blockIdx.z > 0) bias = nullptr;
    const bool vec_w = K % 8 == 0 && (reinterpret_cast<unsigned long long>(weight) & 15) == 0;
    const bool vec_a = K % 8 == 0 && (reinterpret_cast<unsigned long long>(inp) & 15) == 0;

    float acc[MI][NJ][4];
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;

    // An f32 A tile goes through registers, rounded to T on the way: tile t + 1 is loaded while
    // tile t is multiplied and stored after. 16 elements per thread; consecutive threads read
    // consecutive k of a row. Out-of-range elements are zero. (t counts from t0 here and below.)
    constexpr int A_PER_THREAD = TM * TK / NT;
    float a_next[a_async ? 1 : A_PER_THREAD];
    auto load_a = [&](int t) {
#pragma unroll
        for (int e = 0; e < A_PER_THREAD; e++) {
            const int idx = tid + e * NT, r = idx / TK, kk = idx % TK;
            const int m = m0 + r, k = (t0 + t) * TK + kk;
            a_next[e] = (m < M && k < K) ? to_f32(inp[(long long)m * K + k]) : 0.0f;
        }
    };
    auto store_a = [&]() {
#pragma unroll
        for (int e = 0; e < A_PER_THREAD; e++) {
            const int idx = tid + e * NT;
            As[0][idx / TK][idx % TK] = to_bits<T>(a_next[e]);
        }
    };
    // Tile t's copies: W, and a T activation's A tile in the same group.
    const ChunkStager<TN, TK, NT> w_stager(wbits, n0, N, K);
    const ChunkStager<TM, TK, NT> a_stager(abits, m0, M, K);
    auto stage_w = [&](int t) {
        if (vec_w)
            w_stager.stage(&Ws[t % S][0][0], wbits, t0 + t, K);
        else
            stage_tile_ragged<TN, TK, NT>(Ws[t % S], wbits, n0, t0 + t, K, N);
    };
    auto stage_a = [&](int t) {
        if constexpr (a_async) {
            if (vec_a)
                a_stager.stage(&As[t % S][0][0], abits, t0 + t, K);
            else
                stage_tile_ragged<TM, TK, NT>(As[t % S], abits, m0, t0 + t, K, M);
        }
    };

    // Prologue: tiles 0 .. S-2 in flight; an f32 A tile 0 in shared memory. The weight tiles are
    // constant, so their copies start before the wait for the previous kernel, in one group of
    // their own (common.cuh grid_dependency_enter); then the activation's, one group per tile.
    // The extra group at the front keeps the main loop's count exact: when tile t is multiplied
    // S + t + 1 groups were committed, at most S - 1 are pending, so the first t + 2 (the
    // weights' group, then those of tiles 0 .. t) have landed.
#pragma unroll
    for (int t = 0; t < S - 1; t++)
        if (t < tiles) stage_w(t);
    cp_async_commit();
    grid_dependency_enter();
#pragma unroll
    for (int t = 0; t < S - 1; t++) {
        if (t < tiles) stage_a(t);
        cp_async_commit();
    }
    if constexpr (!a_async) {
        if (tiles > 0) {
            load_a(0);
            store_a();
        }
    }

    // The lane's ldmatrix rows at stage 0, k 0; stage and k are constant offsets from them.
    const unsigned short *a_frag = a_frag_row<ROW>(As[0], warp_m * (MI * 16), lane);
    const unsigned short *b_frag = b_frag_row<ROW>(Ws[0], warp_n * (NJ * 8), lane);

    for (int t = 0; t < tiles; t++) {
        if constexpr (!a_async)
            if (t + 1 < tiles) load_a(t + 1); // in flight during the products below
        // Tile t + S - 1 goes into the stage tile t - 1 used: every warp finished with it before
        // the previous iteration's last barrier.
        const int tn = t + S - 1;
        if (tn < tiles) {
            stage_w(tn);
            stage_a(tn);
        }
        cp_async_commit();
        cp_async_wait<S - 1>(); // this thread's copies of tile t have landed
        __syncthreads();        // everyone's, and an f32 A tile t
        const int st = t % S, sa = a_async ? st : 0;
#pragma unroll
        for (int kk = 0; kk < TK; kk += 16)
            warp_mma_k16<T, MI, NJ, ROW>(acc, a_frag + sa * (TM * ROW) + kk,
                                         b_frag + st * (TN * ROW) + kk);
        __syncthreads(); // As and this W stage are free again
        if constexpr (!a_async)
            if (t + 1 < tiles) store_a();
    }
    cp_async_wait<0>(); // only empty groups can be left; keeps the rule "no copy outlives us"

    // The activation is chosen once, outside the unrolled stores: inlined per element behind a
    // runtime switch, 64 copies of every activation made the epilogue 43k instructions (360 KB
    // of code) and each block paid ~26 us of instruction-cache misses in it (ncu on an H200,
    // notes/gpu.md v1.9). ALBERT's activations get their own copy; the rest share the switch.
    switch (act) {
    case ACT_NONE: store_tile<C, ACT_NONE>(out, acc, bias, m0, n0, M, N, act); break;
    case ACT_GELU: store_tile<C, ACT_GELU>(out, acc, bias, m0, n0, M, N, act); break;
    case ACT_GELU_TANH: store_tile<C, ACT_GELU_TANH>(out, acc, bias, m0, n0, M, N, act); break;
    default: store_tile<C, -1>(out, acc, bias, m0, n0, M, N, act); break;
    }
}

#define LINEAR_MMA_TILED(NAME, C, THREADS, T, O, I)                                                \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME(                                    \
        O *out, const I *inp, const T *weight, const float *bias, int M, int K, int N, int act) {  \
        linear_forward_mma<C, T, O, I>(out, inp, weight, bias, M, K, N, act);                      \
    }
#define LINEAR_MMA(NAME, T, O, I) LINEAR_MMA_TILED(NAME, TileLarge, MMA_THREADS, T, O, I)
#define LINEAR_MMA64(NAME, T, O, I) LINEAR_MMA_TILED(NAME, TileSmall, MMA_THREADS_SMALL, T, O, I)

LINEAR_MMA(linear_forward_mma_bf16, bf16, float, float)
LINEAR_MMA(linear_forward_mma_f16, f16, float, float)
LINEAR_MMA(linear_forward_mma_bf16_to_bf16, bf16, bf16, float)   // out [M, N] as bf16
LINEAR_MMA(linear_forward_mma_f16_to_f16, f16, f16, float)
LINEAR_MMA(linear_forward_mma_bf16_from_bf16, bf16, float, bf16) // inp [M, K] as bf16
LINEAR_MMA(linear_forward_mma_f16_from_f16, f16, float, f16)
LINEAR_MMA(linear_forward_mma_bf16_from_bf16_to_bf16, bf16, bf16, bf16) // both stored as bf16
LINEAR_MMA(linear_forward_mma_f16_from_f16_to_f16, f16, f16, f16)
// 64x64 tiles (4 warps), T activations: small M, where 128x128 tiles leave most SMs idle.
LINEAR_MMA64(linear_forward_mma64_bf16_from_bf16, bf16, float, bf16)
LINEAR_MMA64(linear_forward_mma64_f16_from_f16, f16, float, f16)
LINEAR_MMA64(linear_forward_mma64_bf16_from_bf16_to_bf16, bf16, bf16, bf16)
LINEAR_MMA64(linear_forward_mma64_f16_from_f16_to_f16, f16, f16, f16)
// 128x128 tiles taking k 64 at a time (TileLargeK64, 110 KB): the ALBERT_CUDA_K64=1 experiment.
#define LINEAR_MMA_K64(NAME, T, O, I) LINEAR_MMA_TILED(NAME, TileLargeK64, MMA_THREADS, T, O, I)
LINEAR_MMA_K64(linear_forward_mma_k64_bf16_from_bf16, bf16, float, bf16)
LINEAR_MMA_K64(linear_forward_mma_k64_f16_from_f16, f16, float, f16)
LINEAR_MMA_K64(linear_forward_mma_k64_bf16_from_bf16_to_bf16, bf16, bf16, bf16)
LINEAR_MMA_K64(linear_forward_mma_k64_f16_from_f16_to_f16, f16, f16, f16)
// 64x64 tiles with 8 stages (TileSmallDeep, 144 KB): the ALBERT_CUDA_DEEP=1 experiment.
#define LINEAR_MMA64_DEEP(NAME, T, O, I) LINEAR_MMA_TILED(NAME, TileSmallDeep, MMA_THREADS_SMALL, T, O, I)
LINEAR_MMA64_DEEP(linear_forward_mma64_deep_bf16_from_bf16, bf16, float, bf16)
LINEAR_MMA64_DEEP(linear_forward_mma64_deep_f16_from_f16, f16, float, f16)
LINEAR_MMA64_DEEP(linear_forward_mma64_deep_bf16_from_bf16_to_bf16, bf16, bf16, bf16)
LINEAR_MMA64_DEEP(linear_forward_mma64_deep_f16_from_f16_to_f16, f16, f16, f16)

#endif // sm_80+
