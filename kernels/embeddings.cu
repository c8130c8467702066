// embeddings_forward: out[M, E] = LayerNorm(word[ids] + token_type[types] + position[m % S]).
// One block per token row; the row is summed into shared memory (f32), then normalised with
// f64 statistics. The E -> H projection that follows is a linear_forward.
// Ids are validated on the host before launch (Inputs::validate), so no bounds checks here.
#include "common.cuh"

template <typename T>
__device__ void embeddings_forward(float *__restrict__ out,          // [M, E]
                                   const int *__restrict__ input_ids,      // [M]
                                   const int *__restrict__ token_type_ids, // [M]
                                   const T *__restrict__ word,       // [V, E]
                                   const T *__restrict__ position,   // [P, E]
                                   const T *__restrict__ token_type, // [T, E]
                                   const float *__restrict__ ln_weight, // [E]
                                   const float *__restrict__ ln_bias,   // [E]
                                   int M, int S, int E, float eps) {
    extern __shared__ float row[]; // [E]
    __shared__ double scratch[32];
    grid_dependency_enter();
    const int m = blockIdx.x;
    if (m >= M) return;
    const long long w0 = (long long)input_ids[m] * E;
    const long long t0 = (long long)token_type_ids[m] * E;
    const long long p0 = (long long)(m % S) * E;
    // transformers adds (word + type) first, then position.
    for (int c = threadIdx.x; c < E; c += blockDim.x)
        row[c] = (to_f32(word[w0 + c]) + to_f32(token_type[t0 + c])) + to_f32(position[p0 + c]);
    __syncthreads();
    layernorm_row(out + (long long)m * E, row, ln_weight, ln_bias, E, eps, scratch);
}

#define EMBEDDINGS(SUFFIX, T)                                                                      \
    extern "C" __global__ void embeddings_forward_##SUFFIX(                                        \
        float *out, const int *input_ids, const int *token_type_ids, const T *word,                \
        const T *position, const T *token_type, const float *ln_weight, const float *ln_bias,      \
        int M, int S, int E, float eps) {                                                          \
        embeddings_forward<T>(out, input_ids, token_type_ids, word, position, token_type,          \
                              ln_weight, ln_bias, M, S, E, eps);                                   \
    }

// One entry point per table type: f32, bf16, f16.
EMBEDDINGS(f32, float)
EMBEDDINGS(bf16, bf16)
EMBEDDINGS(f16, f16)
