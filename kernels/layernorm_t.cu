// residual_layernorm_forward_to_{bf16,f16}: out[M, C] = LayerNorm(inp + residual) as
// residual_layernorm_forward (layernorm.cu) computes it, and out_t[M, C] = out rounded to T
// (RNE): the copy the next tensor-core products read. They would round the f32 row to T as they
// stage it, so the results are bit-identical, with half the bytes and cp.async staging; `out`
// stays f32 for the next residual. sm_80+ like its readers (a module of its own, so older
// devices load layernorm.cu without it).
#include "layernorm.cuh"
#include "mma.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
template <typename T>
__device__ void residual_layernorm_to(float *out, T *out_t, const float *inp, const float *residual,
                                      const float *__restrict__ weight,
                                      const float *__restrict__ bias, int M, int C, float eps) {
    residual_layernorm(out, inp, residual, weight, bias, M, C, eps);
    if ((int)blockIdx.x >= M) return;
    // Each thread rounds the elements it wrote itself (layernorm_row's stride): no barrier.
    const long long r0 = (long long)blockIdx.x * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) store_out(&out_t[r0 + c], out[r0 + c]);
}

#define RESIDUAL_LAYERNORM_TO(NAME, T)                                                             \
    extern "C" __global__ void NAME(float *out, T *out_t, const float *inp, const float *residual, \
                                    const float *weight, const float *bias, int M, int C,          \
                                    float eps) {                                                   \
        residual_layernorm_to<T>(out, out_t, inp, residual, weight, bias, M, C, eps);              \
    }
RESIDUAL_LAYERNORM_TO(residual_layernorm_forward_to_bf16, bf16)
RESIDUAL_LAYERNORM_TO(residual_layernorm_forward_to_f16, f16)
#endif // sm_80+
