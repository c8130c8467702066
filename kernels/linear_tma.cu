// linear_forward on sm_90a's wgmma with the tiles staged by the tensor memory accelerator (TMA,
// tma.cuh), T activations (bf16/f16):
//   out[M, N] = act(inp[M, K] @ weight[N, K]^T + bias[N])     (or split-K f32 partials)
// linear_wgmma.cu's kernels with another staging: the same tiles (wgmma_tile.cuh), stage layout,
// split-K shares, chain of k16 steps and epilogue, so the same bits (tests: == linear_wgmma.cu).
//
// Roles (warp specialisation): the block is WgTile's consumer warpgroups plus one producer warp.
// One producer thread issues two box copies per k tile (A: TM rows, W: TN rows, 64 k each) into
// the stage of the tile, up to STAGES tiles ahead, each stage's `full` barrier counting the bytes
// (one arrival, the producer's, with the stage's byte count). The consumers wait on `full`, issue
// the tile's four wgmma k16 steps and, once the group of the previous tile has retired
// (wgmma_wait<1>), release that tile's stage: one arrival per warpgroup on its `empty` barrier,
// which the producer waits on before refilling it. No block-wide barrier after the set-up, and no
// copy instructions or addresses in the consumers' loop (linear_wgmma.cu: ~8 cp.async per thread
// and a __syncthreads per k tile).
//
// Host contract (src/backend/cuda/tma.rs, linear_t.rs): `amap` is the activation [M, K] with a box
// of 64 k x TM rows, `wmap` the weight [N, K] with 64 x TN, both 128-byte swizzled with zero fill;
// so K % 8 == 0 and both matrices 16-byte aligned (else the host takes linear_wgmma.cu's kernels).
#include "mma_tile.cuh"
#include "tma.cuh"
#include "wgmma.cuh"
#include "wgmma_tile.cuh"

// WgTile's block plus the producer warp; the stages, then the 2 STAGES barriers (8 bytes each).
template <typename W> struct WgTma : W {
    static constexpr int CONSUMERS = W::NTHREADS, NTHREADS = W::NTHREADS + 32;
    static constexpr unsigned STAGE_BYTES = W::STAGE_ELEMS * 2;
    static constexpr int SMEM = W::SMEM + 128;
    static_assert(W::STAGES * 2 * 8 <= 128, "the barriers fit after the stages");
};
typedef WgTma<WgLarge> WgTmaLarge; // 288 threads, 197,760 B
typedef WgTma<WgSmall> WgTmaSmall; // 160 threads, 99,456 B
// No 128x256 version: 9 warps leave 168 registers a thread (a quarter of the register file per
// 3 warps of each SM sub-partition), and m64n256k16's 128 accumulators then spill (ptxas: 1.3 KB);
// it needs a producer warpgroup and setmaxnreg (consumers 232, producer 40).
#define WG_TMA_SMEM_BYTES 197760
#define WG_TMA_SMEM_BYTES_SMALL 99456
static_assert(WG_TMA_SMEM_BYTES == WgTmaLarge::SMEM && WG_TMA_SMEM_BYTES_SMALL == WgTmaSmall::SMEM,
              "kernels.rs WG_TMA_SMEM* mirror these");

#if HAVE_WGMMA

template <typename C, typename T, typename O>
__device__ void linear_forward_wgmma_tma(O *__restrict__ out,            // [gridDim.z, M, N]
                                         const TensorMap *amap,          // inp [M, K] as T
                                         const TensorMap *wmap,          // weight [N, K] as T
                                         const float *__restrict__ bias, // [N] or null
                                         int M, int K, int N, int act) {
    constexpr int S = C::STAGES, TM = C::TILE_M, TN = C::TILE_N, NJ = C::NJ;
    constexpr unsigned STAGE = C::STAGE_BYTES;
    extern __shared__ __align__(16) unsigned short wg_smem[];
    unsigned short *base = reinterpret_cast<unsigned short *>(
        (reinterpret_cast<unsigned long long>(wg_smem) + 1023) & ~1023ull);
    // Stage s: A tile at stage0 + s STAGE, W tile TM rows of 128 bytes after it.
    const unsigned stage0 = smem_u32(base), bars = stage0 + S * STAGE;
    auto full = [&](int s) { return bars + 8u * s; };
    auto empty = [&](int s) { return bars + 8u * (S + s); };
    const int tid = threadIdx.x;
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    const KShare<WG_BK> share(K);
    const int t0 = share.t0, tiles = share.tiles;
    out += (long long)blockIdx.z * M * N;
    if (blockIdx.z > 0) bias = nullptr;

    if (tid == 0) {
        for (int s = 0; s < S; s++) {
            mbar_init(full(s), 1);
            mbar_init(empty(s), C::WARPGROUPS);
        }
        mbar_init_fence();
    }
    __syncthreads(); // the last block-wide barrier

    if (tid >= C::CONSUMERS) { // the producer warp
        if (tid == C::CONSUMERS) {
            // The first S tiles: the weights' boxes before the wait for the previous kernel
            // (common.cuh), the activations' after it.
            const int first = tiles < S ? tiles : S;
            for (int t = 0; t < first; t++) {
                mbar_arrive_expect_tx(full(t), STAGE);
                tma_load_2d(stage0 + t * STAGE + TM * 128, wmap, (t0 + t) * WG_BK, n0, full(t));
            }
            grid_dependency_enter();
            for (int t = 0; t < first; t++)
                tma_load_2d(stage0 + t * STAGE, amap, (t0 + t) * WG_BK, m0, full(t));
            for (int t = S; t < tiles; t++) {
                const int s = t % S;
                mbar_wait(empty(s), (t / S - 1) & 1); // tile t - S released its stage
                mbar_arrive_expect_tx(full(s), STAGE);
                tma_load_2d(stage0 + s * STAGE + TM * 128, wmap, (t0 + t) * WG_BK, n0, full(s));
                tma_load_2d(stage0 + s * STAGE, amap, (t0 + t) * WG_BK, m0, full(s));
            }
        } else {
            grid_dependency_enter();
        }
        return;
    }

    grid_dependency_enter(); // before the epilogue's writes
    float acc[1][NJ][4];
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[0][j][c] = 0.0f;
    // This warpgroup's descriptors at stage 0, k 0: its 64 rows of A, all TN rows of W.
    const int warpgroup = tid / 128;
    const unsigned long long a_desc0 = wgmma_desc(stage0 + warpgroup * 64 * 128);
    const unsigned long long w_desc0 = wgmma_desc(stage0 + TM * 128);
    for (int t = 0; t < tiles; t++) {
        const int s = t % S;
        mbar_wait(full(s), (t / S) & 1); // tile t has landed
        const unsigned long long st = (unsigned long long)s * (STAGE >> 4); // descriptor units
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < WG_BK / 16; j++)
            wgmma_k16<T, TN>(acc[0], a_desc0 + st + j * WGMMA_DESC_K16_STEP,
                             w_desc0 + st + j * WGMMA_DESC_K16_STEP);
        wgmma_commit();
        wgmma_wait<1>(); // tile t - 1's group has retired in this warpgroup: release its stage
        if (t > 0 && tid % 128 == 0) mbar_arrive(empty((t - 1) % S));
    }
    wgmma_wait<0>();
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int c = 0; c < 4; c++) wgmma_fence_acc(acc[0][j][c]);

    switch (act) { // the activation chosen once (linear_mma.cu)
    case ACT_NONE: store_tile<C, ACT_NONE>(out, acc, bias, m0, n0, M, N, act); break;
    case ACT_GELU: store_tile<C, ACT_GELU>(out, acc, bias, m0, n0, M, N, act); break;
    case ACT_GELU_TANH: store_tile<C, ACT_GELU_TANH>(out, acc, bias, m0, n0, M, N, act); break;
    default: store_tile<C, -1>(out, acc, bias, m0, n0, M, N, act); break;
    }
}

#define LINEAR_TMA_BODY(C, T, O) linear_forward_wgmma_tma<C, T, O>(out, &amap, &wmap, bias, M, K, N, act);
#else
// Other targets: the entry points exist (the registry checks names) but are never loaded there
// (kernels.rs loads this module from sm_90a only).
#define LINEAR_TMA_BODY(C, T, O) __trap();
#endif // HAVE_WGMMA

#define LINEAR_TMA(NAME, C, T, O)                                                                  \
    extern "C" __global__ void __launch_bounds__(C::NTHREADS, 1)                                   \
        NAME(O *out, const GRID_CONSTANT TensorMap amap, const GRID_CONSTANT TensorMap wmap,       \
             const float *bias, int M, int K, int N, int act) {                                    \
        LINEAR_TMA_BODY(C, T, O)                                                                   \
    }
LINEAR_TMA(linear_forward_wgmma_tma_bf16_from_bf16, WgTmaLarge, bf16, float)
LINEAR_TMA(linear_forward_wgmma_tma_f16_from_f16, WgTmaLarge, f16, float)
LINEAR_TMA(linear_forward_wgmma_tma_bf16_from_bf16_to_bf16, WgTmaLarge, bf16, bf16)
LINEAR_TMA(linear_forward_wgmma_tma_f16_from_f16_to_f16, WgTmaLarge, f16, f16)
LINEAR_TMA(linear_forward_wgmma64_tma_bf16_from_bf16, WgTmaSmall, bf16, float)
LINEAR_TMA(linear_forward_wgmma64_tma_f16_from_f16, WgTmaSmall, f16, float)
LINEAR_TMA(linear_forward_wgmma64_tma_bf16_from_bf16_to_bf16, WgTmaSmall, bf16, bf16)
LINEAR_TMA(linear_forward_wgmma64_tma_f16_from_f16_to_f16, WgTmaSmall, f16, f16)
