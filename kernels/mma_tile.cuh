// The block tiles of the tensor-core products, shared by linear_mma.cu and embeddings_project.cu:
// MmaTile (a block's output tile, its warps and k tiles), the cp.async staging of 16-bit tiles
// (ChunkStager, stage_tile_ragged), one warp's 16-k mma step from shared tiles (warp_mma_k16,
// with the lane's ldmatrix rows a_frag_row / b_frag_row) and the epilogue (store_tile).
// Shared tiles are K-contiguous rows padded by 8 elements (80 B, 144 B or 272 B for k 32, 64,
// 128): the 8 16-byte rows one ldmatrix phase reads then start at 8 distinct 4-bank groups (no
// conflict). Fragment layout: mma.cuh. Here B = W^T, so b0 = W[n = group][k = 2tig..2tig+1].
// Templates and macros only: code exists only where an sm_80+ kernel instantiates them.
#pragma once
#include "mma.cuh"

#define MMA_BK 32      // k per tile of the 128x128 kernels
#define MMA_BK_SMALL 64 // k per tile of the 64x64 kernels: half the iterations (and barriers)
#define MMA_PAD 8
#define MMA_STAGES 3   // W tiles in shared memory (f32 inp): two in flight while one is multiplied
#define MMA_STAGES_T 4 // A and W tiles (T inp, 128x128): three pairs in flight while one is multiplied
#define MMA_STAGES_SMALL 4 // A and W tiles (64x64, k 64): three pairs in flight (small M: one block
                           // per SM, latency-bound per k tile); 3 blocks per SM still fit (v1.21)
#define MMA_SPLIT_K 64 // split-K shares are whole multiples of 64 k, whatever the tile's k

// A block tile of BM x BN outputs in k tiles of BK, computed by WARPS_M x WARPS_N warps, each
// warp MI x NJ mma tiles of 16x8; STAGES_T tile pairs in shared memory with T activations.
template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int BK_, int STAGES_T_> struct MmaTile {
    static constexpr int TILE_M = BM_, TILE_N = BN_, WARPS_M = WARPS_M_, WARPS_N = WARPS_N_;
    static constexpr int TILE_K = BK_, ROW = BK_ + MMA_PAD, STAGES_T = STAGES_T_;
    static constexpr int NTHREADS = 32 * WARPS_M * WARPS_N;
    static constexpr int MI = TILE_M / WARPS_M / 16, NJ = TILE_N / WARPS_N / 8;
    // Dynamic shared memory of the T-input kernels: S A tiles and S W tiles.
    static constexpr int T_SMEM = 2 * STAGES_T * TILE_M * ROW * 2;
    static_assert(TILE_M == TILE_N, "A and W tiles have the same shape (one stage layout)");
    static_assert(NJ % 2 == 0, "B fragments are loaded two n tiles per ldmatrix.x4");
    static_assert(MMA_SPLIT_K % TILE_K == 0, "split-K shares are whole k tiles");
};
typedef MmaTile<128, 128, 2, 4, MMA_BK, MMA_STAGES_T> TileLarge;           // 256 threads, warp 64x32
// An experiment (ALBERT_CUDA_K64=1, linear_t.rs): the 128x128 T-input tile taking k 64 at a time in
// 3 stages (110,592 B: sm_80/90 only, over the 99 KB of sm_86/89), half the barriers and loop
// overhead per mma, as v1.14 did for the 64x64 tile.
typedef MmaTile<128, 128, 2, 4, MMA_BK_SMALL, 3> TileLargeK64;
typedef MmaTile<64, 64, 2, 2, MMA_BK_SMALL, MMA_STAGES_SMALL> TileSmall; // 128 threads, warp 32x32
// An experiment (ALBERT_CUDA_DEEP=1, linear_t.rs): the 64x64 tile with 8 stages (147,456 B: one
// block per SM, sm_80/90 only), for grids of at most one block per SM (small M), whose products
// wait on their copies: seven tile pairs (112 KB) in flight per SM instead of three (48 KB).
typedef MmaTile<64, 64, 2, 2, MMA_BK_SMALL, 8> TileSmallDeep;
#define MMA_THREADS 256                    // TileLarge::NTHREADS (launch bounds)
#define MMA_THREADS_SMALL 128              // TileSmall::NTHREADS
// Dynamic shared memory of the T-input kernels (80 KB / 72 KB: the launcher opts in above 48 KB;
// both fit the 99 KB a block may opt into on sm_86/89).
#define MMA_T_SMEM_BYTES (2 * MMA_STAGES_T * 128 * (MMA_BK + MMA_PAD) * 2)
#define MMA_T_SMEM_BYTES_SMALL (2 * MMA_STAGES_SMALL * 64 * (MMA_BK_SMALL + MMA_PAD) * 2)
#define MMA_T_SMEM_BYTES_K64 (2 * 3 * 128 * (MMA_BK_SMALL + MMA_PAD) * 2)
#define MMA_T_SMEM_BYTES_DEEP (2 * 8 * 64 * (MMA_BK_SMALL + MMA_PAD) * 2)
static_assert(MMA_T_SMEM_BYTES_K64 == TileLargeK64::T_SMEM, "kernels.rs MMA_T_SMEM_K64 mirrors it");
static_assert(MMA_T_SMEM_BYTES_DEEP == TileSmallDeep::T_SMEM, "kernels.rs MMA_T_SMEM_DEEP mirrors it");
static_assert(MMA_T_SMEM_BYTES == TileLarge::T_SMEM && MMA_T_SMEM_BYTES_SMALL == TileSmall::T_SMEM,
              "kernels.rs MMA_T_SMEM* mirror these");

// Stages k tile t (k = TK t .. TK t + TK-1) of rows r0..r0+ROWS-1 of a [R, K] matrix of 16-bit
// elements (W, or a T activation) into `buf` with plain element stores, zero outside the
// matrix: ragged K (K % 8 != 0) or a misaligned matrix, where 16-byte copies cannot be used
// (ChunkStager below is the cp.async path of every real model). Complete at once; the caller
// still commits a (then empty) group after it.
template <int ROWS, int TK, int NT>
__device__ __forceinline__ void stage_tile_ragged(unsigned short (*buf)[TK + MMA_PAD],
                                                  const unsigned short *__restrict__ bits, int r0,
                                                  int t, int K, int R) {
    const int tid = threadIdx.x, k0 = t * TK;
#pragma unroll 1 // unrolled, this path alone took the kernel from 183 to 255 registers
    for (int e = 0; e < (ROWS * TK) / NT; e++) {
        const int idx = tid + e * NT, r = idx / TK, kk = idx % TK;
        const int row = r0 + r, k = k0 + kk;
        buf[r][kk] = (row < R && k < K) ? bits[(long long)row * K + k] : (unsigned short)0;
    }
}

// This thread's share of staging a ROWS x TK tile of a [R, K] matrix of 16-bit elements by
// cp.async, worked out once per kernel: its chunks all sit in one k column (kc) of rows
// r, r + RSTEP, ...; per k tile only the k offset and the k bound change. (Recomputing row, k and
// the 64-bit address per chunk and tile was ~100 of the ~215 instructions per k tile of the
// 128x128 kernel: ncu had the integer pipe the busiest, 46%, at ~10 instructions per mma.)
// Stage layout: rows padded by MMA_PAD (ldmatrix, above), or with SW128 (TK = 64) the unpadded
// 128-byte rows of wgmma's 128-byte swizzle (wgmma.cuh): chunk c of row r at chunk c ^ (r % 8),
// which is the same for all of a thread's rows since RSTEP is a multiple of 8.
template <int ROWS, int TK, int NT, bool SW128 = false> struct ChunkStager {
    static constexpr int CH = (ROWS * TK / 8) / NT, RSTEP = NT / (TK / 8);
    static constexpr int PITCH = SW128 ? TK : TK + MMA_PAD; // elements per stage row
    static_assert(CH * NT == ROWS * TK / 8 && NT % (TK / 8) == 0, "whole chunks, one column");
    static_assert(!SW128 || (TK == 64 && RSTEP % 8 == 0), "128-byte rows, one swizzle per thread");
    const unsigned short *src; // row r's chunk at k tile 0 (the matrix itself if r >= R)
    unsigned row_in;           // bit e: row r + e RSTEP is inside the matrix
    int kc, soff;              // k within the tile; element offset of chunk 0 in a tile
    long long rstride;         // RSTEP rows, in elements

    __device__ __forceinline__ ChunkStager(const unsigned short *bits, int r0, int R, int K) {
        const int tid = threadIdx.x, r = tid / (TK / 8), c = tid % (TK / 8);
        kc = c * 8;
        soff = r * PITCH + (SW128 ? (c ^ (r % 8)) * 8 : kc);
        rstride = (long long)RSTEP * K;
        src = bits + (long long)(r0 + r) * K + kc;
        row_in = 0;
#pragma unroll
        for (int e = 0; e < CH; e++) row_in |= (r0 + r + e * RSTEP < R ? 1u : 0u) << e;
    }
    // Copies of k tile t into `tile` (a [ROWS][PITCH] stage); zero-filled outside the
    // matrix (K % 8 == 0: a chunk is all in or all out). `bits` is any valid address.
    __device__ __forceinline__ void stage(unsigned short *tile, const unsigned short *bits, int t,
                                          int K) const {
        const bool k_in = t * TK + kc < K;
#pragma unroll
        for (int e = 0; e < CH; e++) {
            const bool in = k_in && ((row_in >> e) & 1u);
            const unsigned short *g = src + e * rstride + t * TK;
            cp_async16(tile + soff + e * RSTEP * PITCH, in ? g : bits, in ? 16 : 0);
        }
    }
};

// Split-K: block z of gridDim.z multiplies k tiles t0 .. t0 + tiles - 1 (possibly none: it then
// stores zeros) of the all_tiles of TK; shares are counted in MMA_SPLIT_K chunks, so tiles of any
// k split K at the same places.
// Share z of `splits` (the kernels: blockIdx.z of gridDim.z; a persistent caller its own).
template <int TK> struct KShare {
    int t0, tiles;
    __device__ __forceinline__ explicit KShare(int K) : KShare(K, gridDim.z, blockIdx.z) {}
    __device__ __forceinline__ KShare(int K, unsigned splits, int z) {
        const int all_tiles = (K + TK - 1) / TK, chunks = (K + MMA_SPLIT_K - 1) / MMA_SPLIT_K;
        const int per = (chunks + splits - 1) / splits * (MMA_SPLIT_K / TK);
        t0 = all_tiles < z * per ? all_tiles : z * per;
        const int t1 = all_tiles < t0 + per ? all_tiles : t0 + per;
        tiles = t1 - t0;
    }
};

// The bias of this thread's 2 NJ columns of the block's tile (n, n + 1 for each j; 0 past N or
// without a bias): read once, not once per row.
template <typename C>
__device__ __forceinline__ void tile_bias(float (&bv)[C::NJ][2], const float *__restrict__ bias, int n0,
                                          int N) {
    const int lane = threadIdx.x & 31, warp_n = (threadIdx.x >> 5) % C::WARPS_N, tig = lane & 3;
#pragma unroll
    for (int j = 0; j < C::NJ; j++)
#pragma unroll
        for (int c = 0; c < 2; c++) {
            const int n = n0 + warp_n * (C::NJ * 8) + j * 8 + 2 * tig + c;
            bv[j][c] = (bias && n < N) ? bias[n] : 0.0f;
        }
}

// The epilogue: out = act(acc + bias) for this thread's MI x NJ mma tiles of the block's tile.
// ACT >= 0 is the activation known at compile time; -1 takes `act` at run time.
template <typename C, int ACT, typename O>
__device__ __forceinline__ void store_tile(O *__restrict__ out, const float (&acc)[C::MI][C::NJ][4],
                                           const float *__restrict__ bias, int m0, int n0, int M,
                                           int N, int act) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int group = lane >> 2, tig = lane & 3;
    const int warp_m = warp / C::WARPS_N, warp_n = warp % C::WARPS_N;
    float bv[C::NJ][2];
    tile_bias<C>(bv, bias, n0, N);
    // n is even: with N even and `out` aligned to two elements, (n, n + 1) is one aligned store
    // (ncu: 2-byte stores used 8 of every 32 bytes the memory system moved).
    const bool pairs = N % 2 == 0 && reinterpret_cast<unsigned long long>(out) % (2 * sizeof(O)) == 0;
#pragma unroll
    for (int i = 0; i < C::MI; i++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int m = m0 + warp_m * (C::MI * 16) + i * 16 + group + 8 * half;
            if (m >= M) continue;
            O *row = out + (long long)m * N;
#pragma unroll
            for (int j = 0; j < C::NJ; j++) {
                const int n = n0 + warp_n * (C::NJ * 8) + j * 8 + 2 * tig;
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
}

// ldmatrix.x4 rows of lane `lane` (mma.cuh): matrix lmat = lane / 8, row lrow = lane % 8.
// A: matrices (rows 0-7, k lo), (rows 8-15, k lo), (rows 0-7, k hi), (rows 8-15, k hi) of the
// warp's first 16-row tile at row0; B (rows of W): (n-tile j, k lo), (j, k hi), (j+1, k lo),
// (j+1, k hi) from n-tile 0 at row0. `tile` is a [rows][ROW] stage; k = 0. (Array indexing,
// not pointer arithmetic: with it nvcc folds the stage and k offsets into immediates.)
template <int ROW>
__device__ __forceinline__ const unsigned short *a_frag_row(const unsigned short (*tile)[ROW],
                                                            int row0, int lane) {
    const int lmat = lane >> 3, lrow = lane & 7;
    return &tile[row0 + 8 * (lmat & 1) + lrow][8 * (lmat >> 1)];
}
template <int ROW>
__device__ __forceinline__ const unsigned short *b_frag_row(const unsigned short (*tile)[ROW],
                                                            int row0, int lane) {
    const int lmat = lane >> 3, lrow = lane & 7;
    return &tile[row0 + (lmat >> 1) * 8 + lrow][8 * (lmat & 1)];
}

// One 16-k step of a warp's MI x NJ mma tiles: acc += A[16 MI rows, 16 k] B[16 k, 8 NJ cols],
// A's fragments from `a` and B's from `b` (a_frag_row / b_frag_row advanced to the stage and
// k; rows of ROW elements, B's of BROW where its tile is laid out differently). Every offset
// below is a constant: each ldmatrix is one register plus an immediate.
template <typename T, int MI, int NJ, int ROW, int BROW = ROW>
__device__ __forceinline__ void warp_mma_k16(float (&acc)[MI][NJ][4], const unsigned short *a,
                                             const unsigned short *b) {
    unsigned af[MI][4], bf[NJ][2];
#pragma unroll
    for (int i = 0; i < MI; i++) ldmatrix_x4(af[i], a + i * 16 * ROW);
#pragma unroll
    for (int j = 0; j < NJ; j += 2) { // B = b[j][0], b[j][1], b[j+1][0], b[j+1][1]
        unsigned r[4];
        ldmatrix_x4(r, b + j * 8 * BROW);
        bf[j][0] = r[0], bf[j][1] = r[1], bf[j + 1][0] = r[2], bf[j + 1][1] = r[3];
    }
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NJ; j++) mma_m16n8k16<T>(acc[i][j], af[i], bf[j]);
}
