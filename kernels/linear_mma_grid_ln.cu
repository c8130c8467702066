// linear_forward_mma64_ln_{bf16,f16}_from_{bf16,f16}: a T-input product that feeds a residual
// LayerNorm, with the LayerNorm in the same launch, for small batches (a cooperative launch):
//   parts[z, M, N] = split-K partial z of inp[M, K] @ weight[N, K]^T (bias in partial 0)
//   out[M, N] = LayerNorm(((parts[0] + parts[1]) + ...) + residual) * ln_weight + ln_bias (f32),
//   out_t = out rounded to T.
// Bit for bit linear_forward_mma64_*_from_* (64x64 tiles, gridDim.z splits) followed by
// residual_layernorm_forward_to_* (layernorm_t.cu: gridDim.z partials, 256 threads per row):
// the same mma chain per output, the same partial stores, the partials added in the same order,
// and the statistics summed in the block kernel's order (layernorm_warp.cuh).
//
// The blocks of one 64-row group (gridDim.x x gridDim.z of them: every column tile and every k
// share) store their partials, meet at row_group_sync (grid_sync.cuh: the launch is cooperative,
// so all of them are resident and the spin wait ends), then normalize the group's 64 rows, a row
// per warp (4 per block), reading the partials through L2. What goes: the LayerNorm's launch and
// ramp, and its 64 rows' wait for the product's last block; the partials' bytes are the same
// (written once, read once, while hot in L2). Needs every block of the grid resident: the
// launcher takes this kernel only where the driver's occupancy says so (small M), sets the
// cooperative attribute, and passes `sync` (two words per row group, zero when allocated; the
// barrier leaves them reusable, grid_sync.cuh).
// Launched with grid (N / 64 rounded up, ceil(M / 64), splits), 128 threads, the 64x64 T-input
// tile's dynamic shared memory; splits <= 4 (the LayerNorm kernel's partials loaded together),
// N <= 1024 (a row per warp: layernorm_row_warp).
#include "mma_products.cuh"
#include "layernorm_warp.cuh"
#include "grid_sync.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define GRID_LN_PARTS 4 // at most this many split-K partials

template <typename T>
__device__ void linear_mma64_ln(float *out, T *out_t, float *parts, const T *__restrict__ inp,
                                const T *__restrict__ weight, const float *__restrict__ bias,
                                const float *residual, const float *__restrict__ ln_w,
                                const float *__restrict__ ln_b, unsigned *sync, int M, int K, int N,
                                float eps) {
    using C = TileSmall;
    if (gridDim.z > GRID_LN_PARTS || N > 1024) return; // uniformly, before any barrier
    const int m0 = blockIdx.y * C::TILE_M, n0 = blockIdx.x * C::TILE_N;
    const KShare<C::TILE_K> share(K);
    float acc[C::MI][C::NJ][4];
    linear_mma_products<C, T, T>(acc, inp, weight, M, K, N, m0, n0, share.t0, share.tiles);
    const long long part = (long long)M * N;
    store_tile<C, ACT_NONE>(parts + blockIdx.z * part, acc, blockIdx.z ? nullptr : bias, m0, n0, M,
                            N, ACT_NONE);
    const unsigned blocks = gridDim.x * gridDim.z;
    row_group_sync(sync + 2 * blockIdx.y, blocks); // the group's partials are all stored
    constexpr int warps = C::NTHREADS / 32;
    const int nparts = int(gridDim.z);
    const int first = int(blockIdx.z * gridDim.x + blockIdx.x) * warps + (int(threadIdx.x) >> 5);
    for (int r = first; r < C::TILE_M; r += int(blocks) * warps) {
        const int m = m0 + r;
        if (m >= M) break;
        const long long r0 = (long long)m * N;
        const PartialsPlusResidual<GRID_LN_PARTS> pre{parts + r0, residual + r0, part, nparts};
        layernorm_row_warp<T>(out + r0, out_t + r0, pre, ln_w, ln_b, N, eps);
    }
}

#define LINEAR_MMA64_LN(NAME, T)                                                                   \
    extern "C" __global__ void __launch_bounds__(MMA_THREADS_SMALL) NAME(                          \
        float *out, T *out_t, float *parts, const T *inp, const T *weight, const float *bias,      \
        const float *residual, const float *ln_w, const float *ln_b, unsigned *sync, int M, int K, \
        int N, float eps) {                                                                        \
        linear_mma64_ln<T>(out, out_t, parts, inp, weight, bias, residual, ln_w, ln_b, sync, M, K, \
                           N, eps);                                                                \
    }
LINEAR_MMA64_LN(linear_forward_mma64_ln_bf16_from_bf16, bf16)
LINEAR_MMA64_LN(linear_forward_mma64_ln_f16_from_f16, f16)
#endif // sm_80+
