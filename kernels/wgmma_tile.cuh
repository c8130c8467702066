// The block tiles of the wgmma products (linear_wgmma.cu, linear_tma.cu): k 64 per tile, one
// 128-byte swizzled row per tile row (wgmma.cuh), STAGES tile pairs (A then W) in dynamic shared
// memory aligned to the swizzle's 1024-byte atoms.
#pragma once

#define WG_BK 64
#define WG_STAGES 6       // 128x128: 6 x 32 KB (+1 KB alignment): 4 tile pairs in flight
#define WG_STAGES_SMALL 6 // 64x64: 6 x 16 KB: 2 blocks per SM
#define WG_STAGES_WIDE 4  // 128x256: 4 x 48 KB: 2 tile pairs in flight
// The epilogue's view (store_tile): warps stacked along M, 16 rows x TILE_N each.
template <int TM_, int TN_, int STAGES_> struct WgTile {
    static constexpr int TILE_M = TM_, TILE_N = TN_, TILE_K = WG_BK, STAGES = STAGES_;
    static constexpr int WARPGROUPS = TM_ / 64, NTHREADS = 128 * WARPGROUPS;
    static constexpr int WARPS_M = TM_ / 16, WARPS_N = 1, MI = 1, NJ = TN_ / 8;
    static constexpr int STAGE_ELEMS = (TM_ + TN_) * WG_BK; // A tile then W tile, 128-byte rows
    // Dynamic shared memory: the stages plus 1 KB to align them to the swizzle's 1024-byte atom.
    static constexpr int SMEM = STAGES * STAGE_ELEMS * 2 + 1024;
    static_assert(TM_ % 64 == 0 && TN_ % 64 == 0 && STAGES >= 3, "whole warpgroups and atoms");
};
typedef WgTile<128, 128, WG_STAGES> WgLarge;      // 256 threads, 197,632 B
typedef WgTile<64, 64, WG_STAGES_SMALL> WgSmall;   // 128 threads, 99,328 B
// 128x256 (m64n256k16 per warpgroup, 128 accumulators per thread): 85 FLOP per staged byte
// instead of 64, for grids of two waves or more (ALBERT_CUDA_WGMMA_WIDE=1); 4 stages of 48 KB.
typedef WgTile<128, 256, WG_STAGES_WIDE> WgWide; // 256 threads, 197,632 B
#define WG_SMEM_BYTES 197632
#define WG_SMEM_BYTES_SMALL 99328
#define WG_SMEM_BYTES_WIDE 197632
static_assert(WG_SMEM_BYTES == WgLarge::SMEM && WG_SMEM_BYTES_SMALL == WgSmall::SMEM &&
                  WG_SMEM_BYTES_WIDE == WgWide::SMEM,
              "kernels.rs WG_SMEM* mirror these");

