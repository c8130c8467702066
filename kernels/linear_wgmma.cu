// linear_forward on sm_90a's warpgroup tensor cores (wgmma.cuh), T activations (bf16/f16):
//   out[M, N] = act(inp[M, K] @ weight[N, K]^T + bias[N])     (or split-K f32 partials)
// The same contract, split-K shares and epilogue as linear_mma.cu's T-input kernels, and the same
// chain of 16-k steps per output element (k tiles of 64 in order, four k16 steps each): where the
// tensor cores round a k16 step the same way in both instructions, the bits are the same.
// (The emulator says so; a GPU decides: tests/gpu/wgmma.rs wgmma_products_match_reference counts them.)
//
// Block tiles (WgTile): 128x128 with 2 warpgroups (each wgmma.m64n128k16 on its 64 rows), or
// 64x64 with one (m64n64k16) for small M, as the mma.sync kernels choose theirs; 128x256
// (m64n256k16) for grids of two waves or more, an experiment. k 64 per tile,
// one 128-byte swizzled row per tile row; STAGES tile pairs (A and W) in dynamic shared memory,
// staged by cp.async (ChunkStager<..., SW128>) S - 2 tiles ahead, and one group of wgmma in flight
// while the next tile is issued (wgmma_wait<1>): the stage a copy overwrites was read by the
// group two tiles back, which every warpgroup has retired before the barrier that precedes it.
// linear_tma.cu stages the same tiles by TMA (cp.async.bulk.tensor) from one producer warp.
#include "mma_tile.cuh"
#include "wgmma.cuh"
#include "wgmma_tile.cuh"

#if HAVE_WGMMA

// Stages k tile t of rows r0..r0+ROWS-1 of a [R, K] matrix with plain stores into the swizzled
// layout, zero outside the matrix: ragged K or a misaligned matrix (no 16-byte copies).
template <int ROWS, int NT>
__device__ __forceinline__ void stage_tile_ragged_sw128(unsigned short *tile,
                                                        const unsigned short *__restrict__ bits,
                                                        int r0, int t, int K, int R) {
    const int tid = threadIdx.x, k0 = t * WG_BK;
#pragma unroll 1
    for (int e = 0; e < (ROWS * WG_BK) / NT; e++) {
        const int idx = tid + e * NT, r = idx / WG_BK, kk = idx % WG_BK;
        const int row = r0 + r, k = k0 + kk;
        tile[r * WG_BK + (((kk / 8) ^ (r % 8)) * 8) + kk % 8] =
            (row < R && k < K) ? bits[(long long)row * K + k] : (unsigned short)0;
    }
}

template <typename C, typename T, typename O>
__device__ void linear_forward_wgmma(O *__restrict__ out,            // [gridDim.z, M, N]
                                     const T *__restrict__ inp,      // [M, K]
                                     const T *__restrict__ weight,   // [N, K]
                                     const float *__restrict__ bias, // [N] or null
                                     int M, int K, int N, int act) {
    constexpr int S = C::STAGES, TM = C::TILE_M, TN = C::TILE_N, NT = C::NTHREADS, NJ = C::NJ;
    extern __shared__ __align__(16) unsigned short wg_smem[];
    // Stage s: A tile at base + s * STAGE_ELEMS, W tile TM rows after it; 1024-byte aligned.
    unsigned short *base = reinterpret_cast<unsigned short *>(
        (reinterpret_cast<unsigned long long>(wg_smem) + 1023) & ~1023ull);
    const int tid = threadIdx.x, warpgroup = tid / 128;
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    const unsigned short *wbits = reinterpret_cast<const unsigned short *>(weight);
    const unsigned short *abits = reinterpret_cast<const unsigned short *>(inp);
    const KShare<WG_BK> share(K);
    const int t0 = share.t0, tiles = share.tiles;
    out += (long long)blockIdx.z * M * N;
    if (blockIdx.z > 0) bias = nullptr;
    const bool vec_w = K % 8 == 0 && (reinterpret_cast<unsigned long long>(weight) & 15) == 0;
    const bool vec_a = K % 8 == 0 && (reinterpret_cast<unsigned long long>(inp) & 15) == 0;

    float acc[1][NJ][4];
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[0][j][c] = 0.0f;

    const ChunkStager<TN, WG_BK, NT, true> w_stager(wbits, n0, N, K);
    const ChunkStager<TM, WG_BK, NT, true> a_stager(abits, m0, M, K);
    auto a_tile = [&](int t) { return base + (t % S) * C::STAGE_ELEMS; };
    auto w_tile = [&](int t) { return base + (t % S) * C::STAGE_ELEMS + TM * WG_BK; };
    auto stage_w = [&](int t) {
        if (vec_w)
            w_stager.stage(w_tile(t), wbits, t0 + t, K);
        else
            stage_tile_ragged_sw128<TN, NT>(w_tile(t), wbits, n0, t0 + t, K, N);
    };
    auto stage_a = [&](int t) {
        if (vec_a)
            a_stager.stage(a_tile(t), abits, t0 + t, K);
        else
            stage_tile_ragged_sw128<TM, NT>(a_tile(t), abits, m0, t0 + t, K, M);
    };

    // Prologue: tiles 0 .. S-3 in flight, the constant weights' copies in one group before the
    // wait for the previous kernel (common.cuh), then one group per activation tile. When tile t
    // is multiplied S - 1 + t groups were committed and those of tiles 0 .. t (the first t + 2)
    // must have landed: at most S - 3 pending.
#pragma unroll
    for (int t = 0; t < S - 2; t++)
        if (t < tiles) stage_w(t);
    cp_async_commit();
    grid_dependency_enter();
#pragma unroll
    for (int t = 0; t < S - 2; t++) {
        if (t < tiles) stage_a(t);
        cp_async_commit();
    }

    // This warpgroup's descriptors at stage 0, k 0: its 64 rows of A, all TN rows of W.
    const unsigned long long a_desc0 = wgmma_desc(smem_u32(base + warpgroup * 64 * WG_BK));
    const unsigned long long w_desc0 = wgmma_desc(smem_u32(base + TM * WG_BK));
    constexpr unsigned long long STAGE_STEP = (C::STAGE_ELEMS * 2) >> 4; // descriptor units
    for (int t = 0; t < tiles; t++) {
        cp_async_wait<S - 3>(); // this thread's copies of tile t have landed
        fence_proxy_async_shared();
        __syncthreads(); // everyone's; and every warpgroup retired the wgmma of tile t - 2
        // Tile t + S - 2 goes into the stage tile t - 2 was read from.
        const int tn = t + S - 2;
        if (tn < tiles) {
            stage_w(tn);
            stage_a(tn);
        }
        cp_async_commit();
        const unsigned long long st = (unsigned long long)(t % S) * STAGE_STEP;
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < WG_BK / 16; j++)
            wgmma_k16<T, TN>(acc[0], a_desc0 + st + j * WGMMA_DESC_K16_STEP,
                             w_desc0 + st + j * WGMMA_DESC_K16_STEP);
        wgmma_commit();
        wgmma_wait<1>(); // the previous tile's group has retired; this one may run on
    }
    wgmma_wait<0>();
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int c = 0; c < 4; c++) wgmma_fence_acc(acc[0][j][c]);
    cp_async_wait<0>(); // only empty groups can be left

    switch (act) { // the activation chosen once (linear_mma.cu)
    case ACT_NONE: store_tile<C, ACT_NONE>(out, acc, bias, m0, n0, M, N, act); break;
    case ACT_GELU: store_tile<C, ACT_GELU>(out, acc, bias, m0, n0, M, N, act); break;
    case ACT_GELU_TANH: store_tile<C, ACT_GELU_TANH>(out, acc, bias, m0, n0, M, N, act); break;
    default: store_tile<C, -1>(out, acc, bias, m0, n0, M, N, act); break;
    }
}

#define LINEAR_WGMMA_BODY(C, T, O) linear_forward_wgmma<C, T, O>(out, inp, weight, bias, M, K, N, act);
#else
// Other targets (sm_80 PTX, NVRTC for compute_90): the entry points exist (the registry checks
// names) but are never loaded there (kernels.rs loads this module from sm_90a PTX only).
#define LINEAR_WGMMA_BODY(C, T, O) __trap();
#endif // HAVE_WGMMA

#define LINEAR_WGMMA(NAME, C, T, O)                                                                \
    extern "C" __global__ void __launch_bounds__(C::NTHREADS) NAME(                                \
        O *out, const T *inp, const T *weight, const float *bias, int M, int K, int N, int act) {  \
        LINEAR_WGMMA_BODY(C, T, O)                                                                 \
    }
LINEAR_WGMMA(linear_forward_wgmma_bf16_from_bf16, WgLarge, bf16, float)
LINEAR_WGMMA(linear_forward_wgmma_f16_from_f16, WgLarge, f16, float)
LINEAR_WGMMA(linear_forward_wgmma_bf16_from_bf16_to_bf16, WgLarge, bf16, bf16)
LINEAR_WGMMA(linear_forward_wgmma_f16_from_f16_to_f16, WgLarge, f16, f16)
LINEAR_WGMMA(linear_forward_wgmma64_bf16_from_bf16, WgSmall, bf16, float)
LINEAR_WGMMA(linear_forward_wgmma64_f16_from_f16, WgSmall, f16, float)
LINEAR_WGMMA(linear_forward_wgmma64_bf16_from_bf16_to_bf16, WgSmall, bf16, bf16)
LINEAR_WGMMA(linear_forward_wgmma64_f16_from_f16_to_f16, WgSmall, f16, f16)
LINEAR_WGMMA(linear_forward_wgmma_wide_bf16_from_bf16, WgWide, bf16, float)
LINEAR_WGMMA(linear_forward_wgmma_wide_f16_from_f16, WgWide, f16, float)
LINEAR_WGMMA(linear_forward_wgmma_wide_bf16_from_bf16_to_bf16, WgWide, bf16, bf16)
LINEAR_WGMMA(linear_forward_wgmma_wide_f16_from_f16_to_f16, WgWide, f16, f16)
