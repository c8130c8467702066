// linear_mma_products: the main loop of the T/f32-input tensor-core products (mma.sync), the
// part linear_forward_mma (linear_mma.cu) and the fused LayerNorm products (linear_mma_ln.cu)
// share. Templates only: code exists only where an sm_80+ kernel instantiates them.
#pragma once
#include "mma_tile.cuh"

// The main loop of linear_forward_mma: acc = the block's TM x TN tile of inp @ weight^T over
// k tiles t0 .. t0 + tiles - 1 (block (m0, n0); no bias). Also the products of the fused
// LayerNorm kernels (linear_mma_ln.cu).
// I: the activation's storage, float (rounded to T through registers) or T (cp.async).
// C: the block tile (MmaTile); f32 activations use TileLarge only.
template <typename C, typename T, typename I>
__device__ __forceinline__ void linear_mma_products(float (&acc)[C::MI][C::NJ][4],
                                                    const I *__restrict__ inp,    // [M, K]
                                                    const T *__restrict__ weight, // [N, K]
                                                    int M, int K, int N, int m0, int n0, int t0,
                                                    int tiles) {
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
    const unsigned short *wbits = reinterpret_cast<const unsigned short *>(weight);
    const unsigned short *abits = reinterpret_cast<const unsigned short *>(inp); // a_async only
    const bool vec_w = K % 8 == 0 && (reinterpret_cast<unsigned long long>(weight) & 15) == 0;
    const bool vec_a = K % 8 == 0 && (reinterpret_cast<unsigned long long>(inp) & 15) == 0;

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

}
