// embeddings_project_{bf16,f16}: the embeddings and their E -> H projection in one kernel, for
// the encoder's T activations (forward.rs), E = 128 (every ALBERT checkpoint):
//   x[M, E]   = LayerNorm(word[ids] + token_type[types] + position[m % S])    (embeddings.cu)
//   out[M, N] = round_T(x) @ weight[N, E]^T + bias[N]                          (linear_mma.cu)
//   out_t     = out rounded to T                                 (layernorm_t.cu's round_to)
// round_T(x) is the rounding the T-input product applies as it stages x, so `out` is the
// unfused chain's product, and out_t the copy the first layer's QKV product reads. x itself
// never reaches global memory: the unfused chain wrote it as f32, read it back, and launched
// three kernels where this is one.
// x differs from embeddings.cu's only in the order its f64 statistics are summed (each thread 8
// consecutive elements, then across the 16 threads of a row; embeddings.cu sums over a block);
// both are exact to far below f32 rounding, so the f32 x of the two agree but for rare last-bit
// ties.
//
// A block computes a 64x64 tile of out (TileSmall's 4 warps of 32x32) with all E = 128 of k in
// shared memory: it starts the cp.async copies of its 64 weight rows (constant, so before the
// wait for the previous kernel: common.cuh grid_dependency_enter), computes its 64 rows of x
// into the A tile meanwhile (every block of a block row recomputes them: 3 x 16 KB of table
// reads, from L2), then runs 8 16-k mma steps per warp. 64x64 tiles at every M (one tile shape:
// a row's results do not depend on its batch).
// Phase 1 (x): thread t owns 8-element chunk t % 16 of rows t / 16 + 8 i, i = 0..7: all 24
// 16-byte table loads of a thread are independent, and the row sums are 16-lane butterflies,
// 8 rows at a time.
#include "mma_tile.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

#define EMB_E 128                         // the embedding size of this kernel
#define EMB_CHUNKS (EMB_E / 8)            // 16-byte chunks per row of a 16-bit table
#define EMB_ROW (EMB_E + MMA_PAD)         // padded shared row: 272 B
#define EMB_PASSES (TileSmall::TILE_M * EMB_CHUNKS / MMA_THREADS_SMALL) // rows per thread
#define EMB_ROW_STEP (MMA_THREADS_SMALL / EMB_CHUNKS)                   // 8 rows per pass
static_assert(EMB_PASSES * EMB_ROW_STEP == TileSmall::TILE_M, "whole rows per block");

// 8 consecutive elements of a 16-bit table row, widened to f32; 16-byte loads when `vec`.
template <typename T>
__device__ __forceinline__ void load8(float (&v)[8], const T *__restrict__ p, bool vec) {
    if (vec) {
        const uint4 u = *reinterpret_cast<const uint4 *>(p);
        const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int e = 0; e < 4; e++) {
            v[2 * e] = to_f32(T{(unsigned short)(w[e] & 0xffffu)});
            v[2 * e + 1] = to_f32(T{(unsigned short)(w[e] >> 16)});
        }
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = to_f32(p[e]);
    }
}

// Sum over the 16 lanes that share a row (lanes 0-15 or 16-31 of the warp).
__device__ __forceinline__ double row_sum16(double v) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename T>
__device__ void embeddings_project(float *__restrict__ out,            // [M, N]
                                   T *__restrict__ out_t,              // [M, N]
                                   const int *__restrict__ input_ids,      // [M]
                                   const int *__restrict__ token_type_ids, // [M]
                                   const T *__restrict__ word,         // [V, E]
                                   const T *__restrict__ position,     // [P, E]
                                   const T *__restrict__ token_type,   // [T, E]
                                   const float *__restrict__ ln_weight, // [E]
                                   const float *__restrict__ ln_bias,   // [E]
                                   const T *__restrict__ weight,       // [N, E]
                                   const float *__restrict__ bias,     // [N]
                                   int M, int S, int N, float eps) {
    typedef TileSmall C;
    __shared__ __align__(16) unsigned short As[C::TILE_M][EMB_ROW]; // round_T(x), 17 KB
    __shared__ __align__(16) unsigned short Ws[C::TILE_N][EMB_ROW]; // weight rows, 17 KB
    const int tid = threadIdx.x, warp = tid >> 5;
    const int warp_m = warp / C::WARPS_N, warp_n = warp % C::WARPS_N;
    const int m0 = blockIdx.y * C::TILE_M, n0 = blockIdx.x * C::TILE_N;

    // The weight tile: in flight while x is computed.
    const unsigned short *wbits = reinterpret_cast<const unsigned short *>(weight);
    if ((reinterpret_cast<unsigned long long>(weight) & 15) == 0) {
        const ChunkStager<C::TILE_N, EMB_E, C::NTHREADS> w_stager(wbits, n0, N, EMB_E);
        w_stager.stage(&Ws[0][0], wbits, 0, EMB_E);
    } else {
        stage_tile_ragged<C::TILE_N, EMB_E, C::NTHREADS>(Ws, wbits, n0, 0, EMB_E, N);
    }
    cp_async_commit();
    grid_dependency_enter(); // the weights are constant; ids and the outputs are not

    // x: rows m0 + r, r = tid / 16 + 8 i; columns c0 .. c0 + 7.
    const int cc = tid % EMB_CHUNKS, c0 = 8 * cc, r0 = tid / EMB_CHUNKS;
    const bool vec = ((reinterpret_cast<unsigned long long>(word) |
                       reinterpret_cast<unsigned long long>(position) |
                       reinterpret_cast<unsigned long long>(token_type)) & 15) == 0;
    float x[EMB_PASSES][8];
#pragma unroll
    for (int i = 0; i < EMB_PASSES; i++) {
        const int m = m0 + r0 + EMB_ROW_STEP * i;
        if (m >= M) { // a row past the batch: zeros in the A tile, never stored
#pragma unroll
            for (int e = 0; e < 8; e++) x[i][e] = 0.0f;
            continue;
        }
        float w[8], t[8], p[8];
        load8(w, word + (long long)input_ids[m] * EMB_E + c0, vec);
        load8(t, token_type + (long long)token_type_ids[m] * EMB_E + c0, vec);
        load8(p, position + (long long)(m % S) * EMB_E + c0, vec);
        // transformers adds (word + type) first, then position.
#pragma unroll
        for (int e = 0; e < 8; e++) x[i][e] = (w[e] + t[e]) + p[e];
    }
    double lw[8], lb[8];
#pragma unroll
    for (int e = 0; e < 8; e++) lw[e] = ln_weight[c0 + e], lb[e] = ln_bias[c0 + e];
    // LayerNorm with f64 statistics (common.cuh), all 8 rows' reductions side by side.
    double mean[EMB_PASSES], rstd[EMB_PASSES];
#pragma unroll
    for (int i = 0; i < EMB_PASSES; i++) {
        double s = 0.0;
#pragma unroll
        for (int e = 0; e < 8; e++) s += (double)x[i][e];
        mean[i] = s;
    }
#pragma unroll
    for (int i = 0; i < EMB_PASSES; i++) mean[i] = row_sum16(mean[i]) / EMB_E;
#pragma unroll
    for (int i = 0; i < EMB_PASSES; i++) {
        double q = 0.0;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const double d = (double)x[i][e] - mean[i];
            q += d * d;
        }
        rstd[i] = q;
    }
#pragma unroll
    for (int i = 0; i < EMB_PASSES; i++)
        rstd[i] = 1.0 / sqrt(row_sum16(rstd[i]) / EMB_E + (double)eps);
#pragma unroll
    for (int i = 0; i < EMB_PASSES; i++) {
        unsigned packed[4];
#pragma unroll
        for (int e = 0; e < 8; e += 2) {
            const int m = m0 + r0 + EMB_ROW_STEP * i;
            float y[2];
#pragma unroll
            for (int h = 0; h < 2; h++)
                y[h] = m < M ? (float)(((double)x[i][e + h] - mean[i]) * rstd[i] * lw[e + h] + lb[e + h])
                             : 0.0f;
            packed[e / 2] = (unsigned)to_bits<T>(y[0]) | ((unsigned)to_bits<T>(y[1]) << 16);
        }
        *reinterpret_cast<uint4 *>(&As[r0 + EMB_ROW_STEP * i][c0]) =
            make_uint4(packed[0], packed[1], packed[2], packed[3]);
    }
    cp_async_wait<0>();
    __syncthreads(); // the A tile and everyone's weight copies

    float acc[C::MI][C::NJ][4];
#pragma unroll
    for (int i = 0; i < C::MI; i++)
#pragma unroll
        for (int j = 0; j < C::NJ; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;
    const unsigned short *a_frag = a_frag_row<EMB_ROW>(As, warp_m * (C::MI * 16), tid & 31);
    const unsigned short *b_frag = b_frag_row<EMB_ROW>(Ws, warp_n * (C::NJ * 8), tid & 31);
#pragma unroll
    for (int kk = 0; kk < EMB_E; kk += 16)
        warp_mma_k16<T, C::MI, C::NJ, EMB_ROW>(acc, a_frag + kk, b_frag + kk);
    // Both outputs from the same registers: out_t is out rounded to T.
    store_tile<C, ACT_NONE>(out, acc, bias, m0, n0, M, N, ACT_NONE);
    store_tile<C, ACT_NONE>(out_t, acc, bias, m0, n0, M, N, ACT_NONE);
}

#define EMBEDDINGS_PROJECT(NAME, T)                                                                \
    extern "C" __global__ void __launch_bounds__(MMA_THREADS_SMALL) NAME(                          \
        float *out, T *out_t, const int *input_ids, const int *token_type_ids, const T *word,       \
        const T *position, const T *token_type, const float *ln_weight, const float *ln_bias,      \
        const T *weight, const float *bias, int M, int S, int N, float eps) {                      \
        embeddings_project<T>(out, out_t, input_ids, token_type_ids, word, position, token_type,   \
                              ln_weight, ln_bias, weight, bias, M, S, N, eps);                     \
    }
EMBEDDINGS_PROJECT(embeddings_project_bf16, bf16)
EMBEDDINGS_PROJECT(embeddings_project_f16, f16)

#endif // sm_80+
