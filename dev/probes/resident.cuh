// resident_phases: the probe of a persistent b1 layer kernel's two unknowns (dev/probes/resident.cu
// measures it on a GPU, dev/emu/probe_test.h checks it on the emulator). Not part of the engine.
//
// A persistent layer kernel for small batches would keep the shared layer's weights in shared
// memory for all 12 applications (14.2 MB in bf16 over 132 SMs: 107 KB each, of 228 KB) and run
// each product as a phase of one cooperative grid, the phases separated by grid-wide barriers.
// Its time per phase is what this kernel measures:
//   - the barrier alone (RESIDENT_BARRIER), on grids of 1 or 2 blocks per SM;
//   - a product phase from a resident weight slab (RESIDENT_PRODUCT): every block reads the
//     whole activation share [M, KS] from L2 per phase, the slab never again;
//   - the same with the slab re-read from L2 every phase (RESIDENT_STREAM), as today's kernels
//     read their weight tiles;
//   - a product feeding a LayerNorm (RESIDENT_LAYERNORM: the attention output, the FFN output):
//     after the barrier the grid's warps normalize the M rows, a row per warp, from the partials
//     (layernorm_warp.cuh, as linear_mma_grid_ln.cu), then meet at a second barrier before the
//     next phase may read them;
//   - the attention as a phase (resident_attention, below): the engine's kernel body per work
//     item, then the barrier.
//
// Grid (N / NB, splits), RESIDENT_THREADS threads, ResidentShape<NB, KS>::SMEM bytes of dynamic
// shared memory, launched cooperatively (all blocks resident) when RESIDENT_BARRIER is set.
// Block (x, y) keeps weight[x NB .. x NB + NB-1, y KS .. y KS + KS-1] in shared memory and per
// phase writes parts[y][M, N] (its NB columns) = act[M, y KS ..] @ slab^T, M <= RESIDENT_M. Each
// output is one thread's f32 chain of mma.sync k16 steps in k order from a zero accumulator, as
// in linear_forward_mma64 (64x64 tiles) with K share KS: the same bits (so a persistent kernel
// built this way keeps the engine's batch invariance).
// With RESIDENT_LAYERNORM (splits <= 4, N <= 1024) also ln.out[M, N] = LayerNorm(((parts[0] +
// parts[1]) + ...) + ln.residual) and ln.out_t = it rounded to T: residual_layernorm_forward_to's
// bits.
// `sync`: two words, zero when allocated (grid_sync.cuh; left reusable).
#pragma once
#include "mma_tile.cuh"
#include "layernorm_warp.cuh"
// nvcc's host pass over resident.cu sees the kernels as empty stubs: the device helpers
// (cp.async, the barrier's atomics) exist only in the device pass and in the emulator.
#if defined(__CUDACC__) && !defined(__CUDA_ARCH__)
#define RESIDENT_DEVICE_CODE 0
// The engine's attention (below) is in both passes, since it defines kernels: its device-only
// helpers need declarations to parse here.
__device__ void cp_async16(void *dst, const void *src, int src_bytes);
__device__ void cp_async_commit();
template <int N> __device__ void cp_async_wait();
#else
#define RESIDENT_DEVICE_CODE 1
#include "grid_sync.cuh"
#endif

#include "attention_mma.cuh" // attention_forward_mma, for resident_attention

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define RESIDENT_PRODUCT 1u
#define RESIDENT_BARRIER 2u
#define RESIDENT_STREAM 4u
#define RESIDENT_LAYERNORM 8u // implies the barrier
#define RESIDENT_LN_PARTS 4
#define RESIDENT_THREADS 128 // 4 warps, each 32 rows x NB columns
#define RESIDENT_M 128
#define RESIDENT_TK 64    // activation k tile
#define RESIDENT_STAGES 3 // activation tiles in shared memory: two in flight while one is multiplied

template <int NB, int KS> struct ResidentShape {
    static_assert(NB % 16 == 0 && KS % RESIDENT_TK == 0, "pairs of n8 tiles; whole k tiles");
    static constexpr int WPITCH = KS + MMA_PAD, APITCH = RESIDENT_TK + MMA_PAD; // elements
    static constexpr int SMEM = (NB * WPITCH + RESIDENT_STAGES * RESIDENT_M * APITCH) * 2;
};

// The LayerNorm's operands (RESIDENT_LAYERNORM only).
template <typename T> struct ResidentLn {
    float *out;     // [M, N]
    T *out_t;       // [M, N]
    const float *residual, *w, *b; // [M, N], [N], [N]
    float eps;
};

#if RESIDENT_DEVICE_CODE
template <typename T, int NB, int KS>
__device__ void resident_phases(float *parts, const T *act, const T *weight, unsigned *sync, int M,
                                int K, int N, int phases, unsigned flags, ResidentLn<T> ln) {
    using S = ResidentShape<NB, KS>;
    constexpr int TK = RESIDENT_TK, NT = RESIDENT_THREADS, ST = RESIDENT_STAGES;
    constexpr int MI = 2, NJ = NB / 8, WPITCH = S::WPITCH, APITCH = S::APITCH;
    // Uniform across the grid, so no block waits at a barrier others skip.
    if (M < 0 || M > RESIDENT_M || K % 8 != 0 || (reinterpret_cast<unsigned long long>(act) & 15) ||
        (reinterpret_cast<unsigned long long>(weight) & 15) ||
        ((flags & RESIDENT_LAYERNORM) && (gridDim.y > RESIDENT_LN_PARTS || N > 1024)))
        return;
    if (flags & RESIDENT_LAYERNORM) flags |= RESIDENT_BARRIER;
    extern __shared__ __align__(16) unsigned short resident_smem[];
    typedef unsigned short WRow[WPITCH];
    typedef unsigned short ARow[APITCH];
    WRow *Ws = reinterpret_cast<WRow *>(resident_smem);                  // [NB][WPITCH]: the slab
    ARow *As = reinterpret_cast<ARow *>(resident_smem + NB * WPITCH);    // [ST][RESIDENT_M][APITCH]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int n0 = blockIdx.x * NB, k0 = blockIdx.y * KS;
    const int t0 = k0 / TK, left = K <= k0 ? 0 : (K - k0 + TK - 1) / TK; // k tiles from k0 on
    const int tiles = left < KS / TK ? left : KS / TK;
    const unsigned short *wbits = reinterpret_cast<const unsigned short *>(weight);
    const unsigned short *abits = reinterpret_cast<const unsigned short *>(act);
    const unsigned blocks = gridDim.x * gridDim.y;

    // The slab: NB rows x KS k in 16-byte chunks, zero past N and K.
    auto stage_slab = [&]() {
        for (int c = tid; c < NB * (KS / 8); c += NT) {
            const int r = c / (KS / 8), kc = (c % (KS / 8)) * 8;
            const bool in = n0 + r < N && k0 + kc < K;
            cp_async16(&Ws[r][kc], in ? wbits + (long long)(n0 + r) * K + k0 + kc : wbits, in ? 16 : 0);
        }
        cp_async_commit();
    };
    const ChunkStager<RESIDENT_M, TK, NT> a_stager(abits, 0, M, K);
    const unsigned short *a_frag = a_frag_row<APITCH>(As, warp * (MI * 16), lane);
    const unsigned short *b_frag = b_frag_row<WPITCH>(Ws, 0, lane);

    stage_slab();
    for (int p = 0; p < phases; p++) {
        // Every warp is done with the slab: the last barrier of the previous phase's main loop.
        if ((flags & RESIDENT_STREAM) && p > 0) stage_slab();
        if (flags & RESIDENT_PRODUCT) {
            float acc[MI][NJ][4];
#pragma unroll
            for (int i = 0; i < MI; i++)
#pragma unroll
                for (int j = 0; j < NJ; j++)
#pragma unroll
                    for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;
            // Groups: (the slab,) tiles 0 .. ST-2, then one per tile: at tile t at most ST-1
            // are pending, so the slab and tiles 0 .. t have landed.
#pragma unroll
            for (int t = 0; t < ST - 1; t++) {
                if (t < tiles) a_stager.stage(&As[t * RESIDENT_M][0], abits, t0 + t, K);
                cp_async_commit();
            }
            for (int t = 0; t < tiles; t++) {
                const int tn = t + ST - 1; // into the stage tile t - 1 used (freed by its barrier)
                if (tn < tiles) a_stager.stage(&As[(tn % ST) * RESIDENT_M][0], abits, t0 + tn, K);
                cp_async_commit();
                cp_async_wait<ST - 1>();
                __syncthreads();
                const unsigned short *a = a_frag + (t % ST) * (RESIDENT_M * APITCH);
#pragma unroll
                for (int kk = 0; kk < TK; kk += 16)
                    warp_mma_k16<T, MI, NJ, APITCH, WPITCH>(acc, a + kk, b_frag + t * TK + kk);
                __syncthreads();
            }
            // parts[y][m][n] for the warp's 32 rows and the block's NB columns, element by element.
            const int group = lane >> 2, tig = lane & 3;
            float *out = parts + (long long)blockIdx.y * M * N;
#pragma unroll
            for (int i = 0; i < MI; i++)
#pragma unroll
                for (int half = 0; half < 2; half++) {
                    const int m = warp * (MI * 16) + i * 16 + group + 8 * half;
                    if (m >= M) continue;
#pragma unroll
                    for (int j = 0; j < NJ; j++) {
                        const int n = n0 + j * 8 + 2 * tig;
                        if (n < N) out[(long long)m * N + n] = acc[i][j][2 * half];
                        if (n + 1 < N) out[(long long)m * N + n + 1] = acc[i][j][2 * half + 1];
                    }
                }
        }
        cp_async_wait<0>(); // the slab, where no product waited for it
        if (flags & RESIDENT_BARRIER) row_group_sync(sync, blocks);
        if (flags & RESIDENT_LAYERNORM) {
            // Rows by the grid's warps in turn (partials through L2: layernorm_warp.cuh).
            const long long part = (long long)M * N;
            const int nparts = int(gridDim.y), warps = RESIDENT_THREADS / 32;
            for (int r = int(blockIdx.y * gridDim.x + blockIdx.x) * warps + warp; r < M; r += int(blocks) * warps) {
                const long long r0 = (long long)r * N;
                const PartialsPlusResidual<RESIDENT_LN_PARTS> pre{parts + r0, ln.residual + r0, part, nparts};
                layernorm_row_warp<T>(ln.out + r0, ln.out_t + r0, pre, ln.w, ln.b, N, ln.eps);
            }
            row_group_sync(sync, blocks); // the next phase reads the normalized rows
        }
    }
}

#define RESIDENT_CALL(T, NB, KS) resident_phases<T, NB, KS>(parts, act, weight, sync, M, K, N, phases, flags, ln)

static_assert(FA_WARPS * 32 == RESIDENT_THREADS, "the attention's block is the probe's");

// resident_attention: the attention as a phase of the persistent kernel. Per phase the grid's
// blocks take the B x A x ceil(S / 64) work items (64 query rows of one head) in turn, each the
// engine's own attention_forward_mma (attention_mma.cuh: the same bits as its kernel), then
// (RESIDENT_BARRIER) meet at the grid barrier. qkv: the fused QKV output [B S, 3 A 64] (T, as
// the engine's QKV product leaves it), mask [B, S], out [B S, A 64] (T). Static shared memory
// only (the attention's 39 KB).
template <typename T>
__device__ void resident_attention(T *out, const T *qkv, const float *mask, unsigned *sync, int B, int S,
                                   int A, float scale, int phases, unsigned flags) {
    const int qtiles = (S + FA_BQ - 1) / FA_BQ, items = B * A * qtiles, H = A * FA_D;
    const unsigned blocks = gridDim.x * gridDim.y;
    __shared__ FaShared sh;
    for (int p = 0; p < phases; p++) {
        for (int w = int(blockIdx.x); w < items; w += int(gridDim.x)) {
            attention_forward_mma<T, T, T>(out, qkv, qkv + H, qkv + 2 * H, mask, B, S, A, FA_D, 3 * H, scale,
                                           w % qtiles, (w / qtiles) % A, w / (qtiles * A), sh.Ks, sh.Vs, sh.Mseq,
                                           sh.Ms, sh.last_s);
            __syncthreads(); // the next item restages the shared tiles (its last barrier orders
                             // that already: kept, so that this does not rest on it)
        }
        if (flags & RESIDENT_BARRIER) row_group_sync(sync, blocks);
    }
}
#define RESIDENT_ATT_CALL(T) resident_attention<T>(out, qkv, mask, sync, B, S, A, scale, phases, flags)
#else
#define RESIDENT_CALL(T, NB, KS)
#define RESIDENT_ATT_CALL(T)
#endif

#define RESIDENT_PHASES(NAME, T, NB, KS)                                                           \
    extern "C" __global__ void __launch_bounds__(RESIDENT_THREADS, 1)                              \
        NAME(float *parts, const T *act, const T *weight, unsigned *sync, int M, int K, int N,     \
             int phases, unsigned flags, ResidentLn<T> ln) {                                       \
        RESIDENT_CALL(T, NB, KS);                                                                  \
    }
RESIDENT_PHASES(resident_phases_bf16_nb64_k768, bf16, 64, 768)
RESIDENT_PHASES(resident_phases_bf16_nb32_k768, bf16, 32, 768)
RESIDENT_PHASES(resident_phases_bf16_nb16_k768, bf16, 16, 768)
RESIDENT_PHASES(resident_phases_bf16_nb16_k128, bf16, 16, 128) // the emulator's small shapes

extern "C" __global__ void __launch_bounds__(RESIDENT_THREADS, 1)
    resident_attention_bf16(bf16 *out, const bf16 *qkv, const float *mask, unsigned *sync, int B, int S, int A,
                            float scale, int phases, unsigned flags) {
    RESIDENT_ATT_CALL(bf16);
}
#endif // sm_80+
