// Shared by every kernel: storage types, activations, reductions.
//
// Design: activations between kernels are f32 in global memory; weights are stored as T (f32,
// bf16 or f16) and products accumulate in f32. LayerNorm statistics are summed in f64, which
// costs nothing in a memory-bound kernel and removes the largest f32 error source of the model
// (measured on the CPU reference: f32 statistics alone move the 12-layer groups fixture from
// 3.1e-6 to 7.1e-6 away from float64).
//
// build.rs inlines this file into each .cu for NVRTC, so it must stay self-contained.
#pragma once

// Activation ids. Must match `cuda_activation_id` in src/backend/cuda/launch.rs.
#define ACT_NONE 0
#define ACT_GELU 1        // exact erf form (gelu, gelu_python)
#define ACT_GELU_TANH 2   // gelu_new, gelu_pytorch_tanh, gelu_accurate
#define ACT_GELU_FAST 3
#define ACT_GELU_10 4
#define ACT_QUICK_GELU 5
#define ACT_SILU 6
#define ACT_RELU 7
#define ACT_RELU6 8
#define ACT_RELU2 9
#define ACT_SIGMOID 10
#define ACT_TANH 11
#define ACT_MISH 12

// -infinity without math.h (NVRTC has no INFINITY macro).
#define NEG_INF __uint_as_float(0xff800000u)

// bf16 and f16 are our own 2-byte storage types, not cuda_bf16.h / cuda_fp16.h: NVRTC has no
// include path to the toolkit's headers on a machine with only a driver and libnvrtc, and the
// run-time fallback must compile there. The layouts match half::bf16 / half::f16 on the host.
struct bf16 { unsigned short bits; };
struct f16 { unsigned short bits; };

__device__ __forceinline__ float to_f32(float x) { return x; }
// bf16 is the top half of an f32: widening is exact.
__device__ __forceinline__ float to_f32(bf16 x) { return __uint_as_float((unsigned)x.bits << 16); }

// f32 -> bf16, round to nearest even (NaN stays NaN).
__device__ __forceinline__ float round_bf16(float x) {
    const unsigned u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return x;
    const unsigned r = u + 0x7fffu + ((u >> 16) & 1u);
    return __uint_as_float(r & 0xffff0000u);
}

#ifdef __CUDA_ARCH__
__device__ __forceinline__ float to_f32(f16 x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}
// f32 -> f16 bits, round to nearest even (the hardware conversion).
__device__ __forceinline__ unsigned short f16_bits(float x) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
}
__device__ __forceinline__ float round_f16(float x) { return to_f32(f16{f16_bits(x)}); }
#else
// Host versions, for the CPU emulation of the kernels in dev/emu (same results as PTX cvt).
float to_f32(f16 x);
float round_f16(float x);
unsigned short f16_bits(float x);
#endif

// The launch's dynamic shared memory in bytes: a kernel that sizes its use from its arguments
// checks that the launch gave it that much (layer_resident.cu). The emulator defines it as its
// launch's (dev/emu/emu_test.cpp).
#ifdef __CUDA_ARCH__
__device__ __forceinline__ unsigned dynamic_smem_bytes() {
    unsigned v;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(v));
    return v;
}
#else
unsigned dynamic_smem_bytes();
#endif

// Programmatic dependent launch (PDL, sm_90+). The scheduler launches with the attribute only
// where every loaded module has these instructions (ALBERT_CUDA_PDL=1, device.rs); otherwise,
// and below sm_90, both are no-ops and kernels run strictly one after another.
// grid_dependency_enter(): first lets the next kernel of the stream begin launching (effective
// once every block of this grid has done so or exited; a block only runs it once resident, so
// the next kernel's blocks take only SMs this grid no longer fills), then waits until the
// previous kernel has completed with its writes visible. Every kernel calls it before its first
// read of an activation and its first global write; only constant data (weights, biases,
// LayerNorm parameters) may be read before it.
__device__ __forceinline__ void grid_dependency_enter() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Rounds an f32 activation to the operand type T and back: what a T x T tensor-core product sees.
template <typename T> __device__ __forceinline__ float round_to(float x);
template <> __device__ __forceinline__ float round_to<float>(float x) { return x; }
template <> __device__ __forceinline__ float round_to<bf16>(float x) { return round_bf16(x); }
template <> __device__ __forceinline__ float round_to<f16>(float x) { return round_f16(x); }

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// Accurate library functions (erff, tanhf, expf), never the fast intrinsics: the f32 path must
// stay within 1e-5 of float64.
__device__ __forceinline__ float apply_activation(float x, int act) {
    const float k_sqrt_2_over_pi = 0.7978845608028654f;
    switch (act) {
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case ACT_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(k_sqrt_2_over_pi * (x + 0.044715f * x * x * x)));
    case ACT_GELU_FAST: return 0.5f * x * (1.0f + tanhf(x * 0.7978845608f * (1.0f + 0.044715f * x * x)));
    case ACT_GELU_10:
        return fminf(fmaxf(0.5f * x * (1.0f + erff(x * 0.7071067811865476f)), -10.0f), 10.0f);
    case ACT_QUICK_GELU: return x * sigmoidf_(1.702f * x);
    case ACT_SILU: return x * sigmoidf_(x);
    case ACT_RELU: return fmaxf(x, 0.0f);
    case ACT_RELU6: return fminf(fmaxf(x, 0.0f), 6.0f);
    case ACT_RELU2: { float r = fmaxf(x, 0.0f); return r * r; }
    case ACT_SIGMOID: return sigmoidf_(x);
    case ACT_TANH: return tanhf(x);
    case ACT_MISH: { float sp = x > 20.0f ? x : log1pf(expf(x)); return x * tanhf(sp); }
    default: return x;
    }
}

// apply_activation as one out-of-line function, for an activation known only at run time in an
// unrolled epilogue: inlined there, the switch was copied at each of a thread's 64 outputs in
// every product kernel (linear_mma.cu's PTX was 21 MB per target, JIT-compiled at module load).
__device__ __noinline__ float apply_activation_call(float x, int act) { return apply_activation(x, act); }

// act(x) for an epilogue: ACT >= 0 is the activation known at compile time (inlined), -1 takes
// `act` at run time (a call).
template <int ACT> __device__ __forceinline__ float activate(float x, int act) {
    if constexpr (ACT >= 0) return apply_activation(x, ACT);
    else return apply_activation_call(x, act);
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block; every thread gets the result. `scratch` holds one double per warp.
// blockDim.x must be a multiple of 32 and at most 1024.
__device__ __forceinline__ double block_sum(double v, double *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double t = lane < warps ? scratch[lane] : 0.0;
    return warp_sum(t);
}

// The statistics of the row in `row` (f32, length C, in shared memory), in f64: mean and
// 1 / sqrt(variance + eps).
struct RowStats {
    double mean, rstd;
};
__device__ __forceinline__ RowStats layernorm_stats(const float *row, int C, float eps, double *scratch) {
    double s = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += (double)row[c];
    const double mean = block_sum(s, scratch) / C;
    double q = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const double d = (double)row[c] - mean;
        q += d * d;
    }
    const double var = block_sum(q, scratch) / C;
    return {mean, 1.0 / sqrt(var + (double)eps)};
}

// One normalized element: every LayerNorm kernel computes it with this expression.
__device__ __forceinline__ float layernorm_apply(float x, RowStats st, float w, float b) {
    return (float)(((double)x - st.mean) * st.rstd * (double)w + (double)b);
}

// LayerNorm of the row in `row` (f32, length C, in shared memory), statistics in f64; each
// element y goes to store(c, y) (the thread that computes it stores it).
template <typename Store>
__device__ __forceinline__ void layernorm_row_with(const float *row, const float *__restrict__ weight,
                                                   const float *__restrict__ bias, int C, float eps,
                                                   double *scratch, Store store) {
    const RowStats st = layernorm_stats(row, C, eps, scratch);
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        store(c, layernorm_apply(row[c], st, weight[c], bias[c]));
}

// The same into out[C].
__device__ __forceinline__ void layernorm_row(float *__restrict__ out, const float *row,
                                              const float *__restrict__ weight,
                                              const float *__restrict__ bias, int C, float eps,
                                              double *scratch) {
    layernorm_row_with(row, weight, bias, C, eps, scratch, [&](int c, float y) { out[c] = y; });
}
