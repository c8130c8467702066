// linear_forward on sm_90a's wgmma with the tiles staged by the tensor memory accelerator (TMA,
// tma.cuh), T activations (bf16/f16):
//   out[M, N] = act(inp[M, K] @ weight[N, K]^T + bias[N])     (or split-K f32 partials)
// linear_wgmma.cu's kernels with another staging: the same tiles (wgmma_tile.cuh), stage layout,
// split-K shares, chain of k16 steps and epilogue, so the same bits (tests: == linear_wgmma.cu).
//
// Roles (warp specialisation): the block is WgTile's consumer warpgroups plus one producer warp
// (128x128, 64x64) or warpgroup (128x256, which needs the producer's registers: setmaxnreg).
// One producer thread issues two box copies per k tile (A: TM rows, W: TN rows, 64 k each) into
// the stage of the tile, up to STAGES tiles ahead, each stage's `full` barrier counting the bytes
// (one arrival, the producer's, with the stage's byte count). The consumers wait on `full`, issue
// the tile's four wgmma k16 steps and, once the group of the previous tile has retired
// (wgmma_wait<1>), release that tile's stage: one arrival per warp on its `empty` barrier,
// which the producer waits on before refilling it. No block-wide barrier after the set-up, and no
// copy instructions or addresses in the consumers' loop (linear_wgmma.cu: ~8 cp.async per thread
// and a __syncthreads per k tile).
//
// Grid (x, 1, splits): the output tiles of split z (blockIdx.z) are numbered n fastest; block x
// takes tiles x, x + gridDim.x, ... With one block per tile that is the usual launch; with fewer
// (ALBERT_CUDA_PERSISTENT: as many as fit on the SMs at once) each block keeps its stages, barriers
// and producer across its tiles, and the producer fills the stages for the next tile while the
// consumers store the last one (v1.30). With ping-pong consumers (ALBERT_CUDA_PINGPONG, v1.31;
// WgTmaPingPong) each consumer warpgroup takes whole tiles in turn, the other's epilogue under
// its main loop. Each output element's chain is the same either way.
//
// Host contract (src/backend/cuda/tma.rs, linear_t.rs): `amap` is the activation [M, K] with a box
// of 64 k x TM rows, `wmap` the weight [N, K] with 64 x TN, both 128-byte swizzled with zero fill;
// so K % 8 == 0 and both matrices 16-byte aligned (else the host takes linear_wgmma.cu's kernels).
#include "mma_tile.cuh"
#include "tma.cuh"
#include "wgmma.cuh"
#include "wgmma_tile.cuh"

// WgTile's block plus the producer: one warp, or (PRODUCER_WG) a whole warpgroup that gives
// registers to the consumers with setmaxnreg; the stages, then the 2 STAGES barriers (8 bytes
// each) and, PINGPONG, the two consumers' turn barriers. PINGPONG (v1.31): each consumer
// warpgroup computes whole output tiles (all TILE_M rows, H = TILE_M / 64 halves of
// accumulators), the two taking the block's tiles in turn, instead of 64 rows of every tile.
template <typename W, bool PRODUCER_WG, bool PINGPONG_ = false> struct WgTma : W {
    static constexpr int CONSUMERS = W::NTHREADS, NTHREADS = W::NTHREADS + (PRODUCER_WG ? 128 : 32);
    static constexpr bool SETMAXNREG = PRODUCER_WG, PINGPONG = PINGPONG_;
    static constexpr int H = PINGPONG ? W::WARPGROUPS : 1; // 64-row halves per consumer warpgroup
    // `empty` arrivals per stage: one per warp of each consumer warpgroup that reads it, each
    // after that warp's own wgmma.wait_group (the PTX ISA promises the wait for the executing
    // thread's groups only; one arrival per warpgroup would rely on it covering all four warps).
    static constexpr int RELEASES = 4 * (PINGPONG ? 1 : W::WARPGROUPS);
    static constexpr unsigned STAGE_BYTES = W::STAGE_ELEMS * 2;
    static constexpr int SMEM = W::SMEM + 128;
    static_assert(W::STAGES * 2 * 8 + (PINGPONG ? 16 : 0) <= 128, "the barriers fit after the stages");
    static_assert(!PINGPONG || (W::WARPGROUPS == 2 && PRODUCER_WG), "two consumers, registers for 2 halves");
};
typedef WgTma<WgLarge, false> WgTmaLarge; // 288 threads, 197,760 B
typedef WgTma<WgSmall, false> WgTmaSmall; // 160 threads, 99,456 B
// 128x256: with one producer warp (9 warps) a thread gets 168 registers (a quarter of the
// register file per 3 warps of each SM sub-partition) and m64n256k16's 128 accumulators spill
// (ptxas: 1.3 KB). With a producer warpgroup (12 warps, 168 at entry) setmaxnreg moves them:
// producer 40, consumers 232 (2 x 128 x 232 + 128 x 40 = 64,512 of 65,536).
typedef WgTma<WgWide, true> WgTmaWide; // 384 threads, 197,760 B
// Ping-pong 128x128 (v1.31): a consumer's 2 x 64 accumulators need the producer warpgroup's
// registers too (the 128x256 kernel's split).
typedef WgTma<WgLarge, true, true> WgTmaPingPong; // 384 threads, 197,760 B
#define WG_TMA_SMEM_BYTES 197760
#define WG_TMA_SMEM_BYTES_SMALL 99456
#define WG_TMA_SMEM_BYTES_WIDE 197760
#define WG_TMA_SMEM_BYTES_PINGPONG 197760
#define WG_TMA_REGS_PRODUCER 40
#define WG_TMA_REGS_CONSUMER 232
static_assert(WG_TMA_SMEM_BYTES == WgTmaLarge::SMEM && WG_TMA_SMEM_BYTES_SMALL == WgTmaSmall::SMEM &&
                  WG_TMA_SMEM_BYTES_WIDE == WgTmaWide::SMEM &&
                  WG_TMA_SMEM_BYTES_PINGPONG == WgTmaPingPong::SMEM,
              "kernels.rs WG_TMA_SMEM* mirror these");
static_assert(2 * 128 * WG_TMA_REGS_CONSUMER + 128 * WG_TMA_REGS_PRODUCER <= 65536, "register file");

#if HAVE_WGMMA

// The block's shared layout: stage s's A tile at stage0 + s STAGE_BYTES, its W tile TM rows of
// 128 bytes after it; full[s] and empty[s] barriers after the last stage.
template <typename C> struct TmaStages {
    unsigned stage0, bars;
    __device__ __forceinline__ unsigned a(int s) const { return stage0 + s * C::STAGE_BYTES; }
    __device__ __forceinline__ unsigned w(int s) const { return a(s) + C::TILE_M * 128; }
    __device__ __forceinline__ unsigned full(int s) const { return bars + 8u * s; }
    __device__ __forceinline__ unsigned empty(int s) const { return bars + 8u * (C::STAGES + s); }
    // PINGPONG: consumer c may start its next tile's main loop (turn(c)'s next phase).
    __device__ __forceinline__ unsigned turn(int c) const { return bars + 8u * (2 * C::STAGES + c); }
};

// The block's output tiles (persistent grid): w = blockIdx.x, + gridDim.x, ... below tiles_n x
// tiles_m, n fastest (the order of a launch with one block per tile); one split (blockIdx.z) each.
struct TmaWork {
    int tiles_n, work;
    __device__ __forceinline__ TmaWork(int M, int N, int TM, int TN)
        : tiles_n((N + TN - 1) / TN), work(tiles_n * ((M + TM - 1) / TM)) {}
    __device__ __forceinline__ int m0(int w, int TM) const { return w / tiles_n * TM; }
    __device__ __forceinline__ int n0(int w, int TN) const { return w % tiles_n * TN; }
};

// The producer: one thread issues every copy of the block's output tiles, `tiles` k tiles each
// (t0 .. t0 + tiles - 1 of K), the ring of stages running on across them: the block's k tile g
// (counted over all its output tiles) goes to stage g % STAGES. The first output tile's first
// STAGES k tiles: the weights' boxes before the wait for the previous kernel (common.cuh), the
// activations' after it; then each stage again once its tile is released, which for the next
// output tile happens while the consumers store the previous one.
template <typename C>
__device__ __forceinline__ void tma_produce(const TmaStages<C> &st, const TensorMap *amap,
                                            const TensorMap *wmap, int t0, int tiles,
                                            const TmaWork &work) {
    constexpr int S = C::STAGES;
    int w = blockIdx.x;
    if (threadIdx.x != C::CONSUMERS || w >= work.work) {
        grid_dependency_enter();
        return;
    }
    int m0 = work.m0(w, C::TILE_M), n0 = work.n0(w, C::TILE_N);
    const int first = tiles < S ? tiles : S;
    for (int t = 0; t < first; t++) {
        mbar_arrive_expect_tx(st.full(t), C::STAGE_BYTES);
        tma_load_2d(st.w(t), wmap, (t0 + t) * WG_BK, n0, st.full(t));
    }
    grid_dependency_enter();
    for (int t = 0; t < first; t++) tma_load_2d(st.a(t), amap, (t0 + t) * WG_BK, m0, st.full(t));
    int g = first; // k tiles issued so far
    for (int t = first;;) {
        for (; t < tiles; t++, g++) {
            const int s = g % S;
            if (g >= S) mbar_wait(st.empty(s), (g / S - 1) & 1); // tile g - S released its stage
            mbar_arrive_expect_tx(st.full(s), C::STAGE_BYTES);
            tma_load_2d(st.w(s), wmap, (t0 + t) * WG_BK, n0, st.full(s));
            tma_load_2d(st.a(s), amap, (t0 + t) * WG_BK, m0, st.full(s));
        }
        w += gridDim.x;
        if (w >= work.work) return;
        m0 = work.m0(w, C::TILE_M);
        n0 = work.n0(w, C::TILE_N);
        t = 0;
    }
}

// A consumer warpgroup: one output tile's `tiles` k tiles (the block's k tiles g0 .. g0 + tiles
// - 1) as wgmma k16 steps into this thread's accumulators, each stage released once the product
// of the next tile has been issued and its own has retired, the last one once all have. Its rows
// of A: 64 of every tile (warpgroup w: rows 64 w ..), or PINGPONG all of its own tile, as H
// 64-row halves (acc[h]: rows 64 h ..). `turn_done` (PINGPONG): arrived on by each warp once
// every k tile of this tile has landed and all but the last k tile's products have retired. Per
// warp, not by one thread: the other consumer's next turn must not complete (and its waits move
// on by a phase) while a warp of this one has not yet passed its own turn wait, or that warp's
// parity wait would miss the phase it waits for.
template <typename C, typename T>
__device__ __forceinline__ void tma_consume(const TmaStages<C> &st, float (&acc)[C::H][1][C::NJ][4],
                                            int g0, int tiles, unsigned turn_done) {
    constexpr int S = C::STAGES;
    constexpr unsigned long long HALF = 64 * 128 >> 4; // 64 rows of A, in descriptor units
    const int warpgroup = threadIdx.x / 128;
    // This warpgroup's descriptors at stage 0, k 0: its first 64 rows of A, all TN rows of W.
    const unsigned long long a_desc0 = wgmma_desc(st.a(0) + (C::PINGPONG ? 0 : warpgroup * 64 * 128));
    const unsigned long long w_desc0 = wgmma_desc(st.w(0));
    if (tiles == 0) { // an empty split-K share: nothing to wait for or to retire, but the turn
        __syncwarp();   // (every lane of the warp is past its turn wait)
        if (turn_done && threadIdx.x % 32 == 0) mbar_arrive(turn_done);
        return;
    }
    for (int t = 0; t < tiles; t++) {
        const int g = g0 + t, s = g % S;
        mbar_wait(st.full(s), (g / S) & 1); // k tile g has landed
        const unsigned long long off = (unsigned long long)s * (C::STAGE_BYTES >> 4); // desc units
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < WG_BK / 16; j++)
#pragma unroll
            for (int h = 0; h < C::H; h++)
                wgmma_k16<T, C::TILE_N>(acc[h][0], a_desc0 + h * HALF + off + j * WGMMA_DESC_K16_STEP,
                                        w_desc0 + off + j * WGMMA_DESC_K16_STEP);
        wgmma_commit();
        wgmma_wait<1>(); // k tile g - 1's group has retired in this warpgroup: release its stage
        if (threadIdx.x % 32 == 0) { // (one branch at the loop's end: no aligned instruction follows)
            if (t > 0) mbar_arrive(st.empty((g - 1) % S)); // lane 0 of each warp
            // The turn: one arrival per warp, each past the wait_group above (warp-synchronous),
            // so the phase completes only once all four warps have passed their turn wait.
            if (turn_done && t == tiles - 1) mbar_arrive(turn_done);
        }
    }
    wgmma_wait<0>();
    if (threadIdx.x % 32 == 0) mbar_arrive(st.empty((g0 + tiles - 1) % S));
#pragma unroll
    for (int h = 0; h < C::H; h++)
#pragma unroll
        for (int j = 0; j < C::NJ; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) wgmma_fence_acc(acc[h][0][j][c]);
}

// The epilogue of one consumer warpgroup's accumulators (rows m0 .. of the output), the
// activation chosen once (linear_mma.cu). store_tile places warp w's rows at 16 w, so a
// warpgroup's rows m0 + 64 h .. of half h go in as tile row m0 + 64 h - 64 warpgroup.
template <typename C, typename O>
__device__ __forceinline__ void tma_store(O *__restrict__ out, const float (&acc)[C::H][1][C::NJ][4],
                                          const float *__restrict__ bias, int m0, int n0, int M,
                                          int N, int act) {
    const int shift = C::PINGPONG ? 64 * (threadIdx.x / 128) : 0;
#pragma unroll
    for (int h = 0; h < C::H; h++) {
        const int r0 = m0 + 64 * h - shift;
        switch (act) {
        case ACT_NONE: store_tile<C, ACT_NONE>(out, acc[h], bias, r0, n0, M, N, act); break;
        case ACT_GELU: store_tile<C, ACT_GELU>(out, acc[h], bias, r0, n0, M, N, act); break;
        case ACT_GELU_TANH: store_tile<C, ACT_GELU_TANH>(out, acc[h], bias, r0, n0, M, N, act); break;
        default: store_tile<C, -1>(out, acc[h], bias, r0, n0, M, N, act); break;
        }
    }
}

template <typename C, typename T, typename O>
__device__ void linear_forward_wgmma_tma(O *__restrict__ out,            // [gridDim.z, M, N]
                                         const TensorMap *amap,          // inp [M, K] as T
                                         const TensorMap *wmap,          // weight [N, K] as T
                                         const float *__restrict__ bias, // [N] or null
                                         int M, int K, int N, int act) {
    extern __shared__ __align__(16) unsigned short wg_smem[];
    unsigned short *base = reinterpret_cast<unsigned short *>(
        (reinterpret_cast<unsigned long long>(wg_smem) + 1023) & ~1023ull);
    const unsigned stage0 = smem_u32(base);
    const TmaStages<C> st{stage0, stage0 + C::STAGES * C::STAGE_BYTES};
    const TmaWork work(M, N, C::TILE_M, C::TILE_N);
    const KShare<WG_BK> share(K);
    out += (long long)blockIdx.z * M * N;
    if (blockIdx.z > 0) bias = nullptr;

    if (threadIdx.x == 0) {
        for (int s = 0; s < C::STAGES; s++) {
            mbar_init(st.full(s), 1);
            mbar_init(st.empty(s), C::RELEASES);
        }
        if (C::PINGPONG) { // one arrival per warp of the other consumer (tma_consume)
            mbar_init(st.turn(0), 4);
            mbar_init(st.turn(1), 4);
        }
        mbar_init_fence();
    }
    __syncthreads(); // the last block-wide barrier

    // The two roles, one branch each (setmaxnreg applies per warpgroup and branch).
    if (threadIdx.x >= C::CONSUMERS) {
        if (C::SETMAXNREG) setmaxnreg_dec<WG_TMA_REGS_PRODUCER>();
        tma_produce<C>(st, amap, wmap, share.t0, share.tiles, work);
    } else {
        if (C::SETMAXNREG) setmaxnreg_inc<WG_TMA_REGS_CONSUMER>();
        grid_dependency_enter(); // before the epilogue's writes
        // The block's i-th tile (w = blockIdx.x + i gridDim.x) is the ring's k tiles i tiles ..
        // Every consumer takes every tile, or PINGPONG consumer c the tiles i = c, c + 2, ...,
        // its main loop starting once the other's previous one has issued (turn(c)): so the two
        // main loops take turns on the tensor cores, one's epilogue under the other's loop, and
        // no consumer waits on a stage more than one phase ahead of its last completion (a
        // parity wait two phases ahead would pass on the older phase).
        const int c = C::PINGPONG ? threadIdx.x / 128 : 0, step = C::PINGPONG ? 2 : 1;
        for (int i = c, j = 0; int(blockIdx.x + i * gridDim.x) < work.work; i += step, j++) {
            const int w = blockIdx.x + i * gridDim.x;
            const int m0 = work.m0(w, C::TILE_M), n0 = work.n0(w, C::TILE_N);
            if (C::PINGPONG && c == 1) mbar_wait(st.turn(1), j & 1);
            if (C::PINGPONG && c == 0 && j > 0) mbar_wait(st.turn(0), (j - 1) & 1);
            float acc[C::H][1][C::NJ][4];
#pragma unroll
            for (int h = 0; h < C::H; h++)
#pragma unroll
                for (int jj = 0; jj < C::NJ; jj++)
#pragma unroll
                    for (int e = 0; e < 4; e++) acc[h][0][jj][e] = 0.0f;
            tma_consume<C, T>(st, acc, i * share.tiles, share.tiles, C::PINGPONG ? st.turn(1 - c) : 0u);
            tma_store<C>(out, acc, bias, m0, n0, M, N, act);
        }
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
LINEAR_TMA(linear_forward_wgmma_wide_tma_bf16_from_bf16, WgTmaWide, bf16, float)
LINEAR_TMA(linear_forward_wgmma_wide_tma_f16_from_f16, WgTmaWide, f16, float)
LINEAR_TMA(linear_forward_wgmma_wide_tma_bf16_from_bf16_to_bf16, WgTmaWide, bf16, bf16)
LINEAR_TMA(linear_forward_wgmma_wide_tma_f16_from_f16_to_f16, WgTmaWide, f16, f16)
LINEAR_TMA(linear_forward_wgmma_pingpong_tma_bf16_from_bf16, WgTmaPingPong, bf16, float)
LINEAR_TMA(linear_forward_wgmma_pingpong_tma_f16_from_f16, WgTmaPingPong, f16, float)
LINEAR_TMA(linear_forward_wgmma_pingpong_tma_bf16_from_bf16_to_bf16, WgTmaPingPong, bf16, bf16)
LINEAR_TMA(linear_forward_wgmma_pingpong_tma_f16_from_f16_to_f16, WgTmaPingPong, f16, f16)
