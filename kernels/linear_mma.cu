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
// The main loop: mma_products.cuh; tiles, staging, the warp's mma step and the epilogue:
// mma_tile.cuh.
// sm_90a: linear_wgmma.cu runs the same T-input products on wgmma (ALBERT_CUDA_WGMMA=1).
#include "mma_products.cuh"

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
    const int m0 = blockIdx.y * C::TILE_M, n0 = blockIdx.x * C::TILE_N;
    // Split-K: this block's k tiles are t0 .. t0 + tiles - 1 (KShare), its output partial z;
    // the bias goes into partial 0 only.
    const KShare<C::TILE_K> share(K);
    out += (long long)blockIdx.z * M * N;
    if (blockIdx.z > 0) bias = nullptr;
    float acc[C::MI][C::NJ][4];
    linear_mma_products<C, T, I>(acc, inp, weight, M, K, N, m0, n0, share.t0, share.tiles);

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
