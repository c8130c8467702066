// attention_forward on tensor cores (flash style, head size 64, bf16/f16 operands): the
// kernels, one work item (64 query rows of one head of one sequence) per block. The body,
// attention_forward_mma, and its design: attention_mma.cuh (also run as a phase of the resident
// layer kernel, layer_resident.cu).
#include "attention_mma.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

#define ATTENTION_MMA(NAME, T, I, O)                                                               \
    extern "C" __global__ void __launch_bounds__(FA_WARPS * 32) NAME(                              \
        O *out, const I *q, const I *k, const I *v, const float *mask, int B, int S, int A, int D, \
        int ld, float scale) {                                                                     \
        __shared__ __align__(16) unsigned Ks[FA_STAGES][FA_BK][FA_ROW];                            \
        __shared__ __align__(16) unsigned Vs[FA_STAGES][FA_BK][FA_ROW];                            \
        __shared__ float Mseq[FA_MAX_S], Ms[FA_BK], last_s[FA_WARPS];                              \
        attention_forward_mma<T, I, O>(out, q, k, v, mask, B, S, A, D, ld, scale, blockIdx.x,      \
                                       blockIdx.y, blockIdx.z, Ks, Vs, Mseq, Ms, last_s);          \
    }

ATTENTION_MMA(attention_forward_mma_bf16, bf16, float, float)
ATTENTION_MMA(attention_forward_mma_f16, f16, float, float)
ATTENTION_MMA(attention_forward_mma_bf16_from_bf16, bf16, bf16, float) // q, k, v stored as bf16
ATTENTION_MMA(attention_forward_mma_f16_from_f16, f16, f16, float)
// out stored as T too: the output projection rounds it to T as it stages it (bit-identical).
ATTENTION_MMA(attention_forward_mma_bf16_from_bf16_to_bf16, bf16, bf16, bf16)
ATTENTION_MMA(attention_forward_mma_f16_from_f16_to_f16, f16, f16, f16)

#endif // sm_80+
