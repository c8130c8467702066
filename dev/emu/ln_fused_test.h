// ln_fused_test.h: the cluster-fused product + residual LayerNorm (linear_mma_ln.cu) against the
// two kernels it replaces, bit for bit; and the emulator's clusters. Included by emu_test.cpp
// after mma_test.h.
#pragma once

// The emulator's clusters (cuda_emu.h launch_in_clusters): the blocks of a cluster run together,
// barrier.cluster orders every thread's global stores before every thread's loads after it, and
// %cluster_ctarank / %cluster_nctarank are the block's rank and the cluster's size. Each thread
// of block b writes its slot, syncs, then reads the slot of the same thread in block b + 1 (mod
// the cluster): a block that ran alone, or a barrier that did not wait, reads poison.
__global__ void selftest_cluster(float *out, float *slots) {
    const unsigned n = blockDim.x, rank = cluster_ctarank(), size = cluster_nctarank();
    const unsigned base = blockIdx.x - rank; // the cluster's first block
    slots[blockIdx.x * n + threadIdx.x] = float(1000 * blockIdx.x + threadIdx.x);
    cluster_sync();
    const unsigned peer = base + (rank + 1) % size;
    out[blockIdx.x * n + threadIdx.x] = slots[peer * n + threadIdx.x] + float(100000 * size);
}

static void test_clusters() {
    const unsigned blocks = 6, n = 64;
    for (unsigned cluster : {1u, 2u, 3u}) {
        OutBuf out(blocks * n), slots(blocks * n);
        const bool ok = emu::launch_in_clusters(cluster, selftest_cluster, dim3(blocks), dim3(n), 0,
                                                out.ptr(), slots.ptr());
        std::vector<double> ref(blocks * n);
        for (unsigned b = 0; b < blocks; b++)
            for (unsigned t = 0; t < n; t++) {
                const unsigned peer = b / cluster * cluster + (b % cluster + 1) % cluster;
                ref[b * n + t] = 1000.0 * peer + t + 100000.0 * cluster;
            }
        record("emulator: clusters (rank, size, barrier)", shape({{"cluster", long(cluster)}}), out, ref, ok, 0.0);
    }
}

// linear_forward_mma_ln_T_from_T in clusters of N / 128 blocks == linear_forward_mma_T_from_T
// (f32 out, one split) then residual_layernorm_forward_to_T (parts 1): f32 output and T copy,
// bit for bit; `in_place`: the output over the residual, as the scheduler runs it.
template <typename T>
static void test_linear_mma_ln(void (*fused)(float *, T *, const T *, const T *, const float *,
                                             const float *, const float *, const float *, int, int,
                                             int, float),
                               void (*product)(float *, const T *, const T *, const float *, int, int,
                                               int, int),
                               void (*layernorm)(float *, T *, const float *, const float *,
                                                 const float *, const float *, int, int, int, float),
                               int M, int K, int N, bool in_place) {
    const float eps = 1e-12f, ws = std::sqrt(3.0f / float(std::max(K, 1)));
    const size_t n = size_t(M) * N;
    std::vector<T> inp(size_t(M) * K), w(size_t(N) * K);
    for (auto &x : inp) x = store<T>(uni(-2.0f, 2.0f));
    for (auto &x : w) x = store<T>(uni(-ws, ws));
    std::vector<float> bias = rand_vec(N, -0.5f, 0.5f), res = rand_vec(n, -2.0f, 2.0f);
    std::vector<float> lw = rand_vec(N, 0.5f, 1.5f), lb = rand_vec(N, -0.5f, 0.5f);
    const dim3 grid(N / MMA_TILE, (M + MMA_TILE - 1) / MMA_TILE, 1);
    // The two kernels the fused one replaces, as the scheduler launches them.
    OutBuf partial(n), want(n);
    bool ok = emu::launch(product, grid, dim3(LINEAR_THREADS), MMA_T_SMEM_BYTES, partial.ptr(), inp.data(),
                          w.data(), bias.data(), M, K, N, 0);
    std::vector<T> want_t(n, T{0xffff});
    ok &= emu::launch(layernorm, dim3(M), dim3(ROW_THREADS), size_t(N) * 4, want.ptr(), want_t.data(),
                      partial.ptr(), res.data(), lw.data(), lb.data(), M, N, 1, eps);
    // Fused.
    OutBuf out(n);
    const float *pres = res.data();
    if (in_place) std::copy_n(res.data(), n, out.ptr()), pres = out.ptr();
    std::vector<T> out_t(n, T{0xffff});
    const bool ok_f = emu::launch_in_clusters(unsigned(N / MMA_TILE), fused, grid, dim3(LINEAR_THREADS),
                                              MMA_T_SMEM_BYTES, out.ptr(), out_t.data(), inp.data(), w.data(),
                                              bias.data(), pres, lw.data(), lb.data(), M, K, N, eps);
    const std::string name = std::string("linear_forward_mma_ln_") + tname<T>() + "_from_" + tname<T>();
    const std::string sh = shape({{"M", M}, {"K", K}, {"N", N}}) + (in_place ? " out=residual" : "");
    std::vector<double> same(n);
    for (size_t i = 0; i < n; i++) same[i] = want[i];
    record(name + " == product + layernorm", sh, out, same, ok && ok_f, 0.0);
    record_rounded(name + " T copy", sh, out_t, want.ptr(), n, ok_f);
    // The unfused T copy, for completeness of the comparison: the same bits as the fused one.
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += out_t[i].bits != want_t[i].bits;
    if (differ) emu::report(name + ": " + std::to_string(differ) + " T elements differ from the unfused path");
}

// Launched without clusters where N needs more than one block: the kernel must not write.
template <typename T>
static void test_linear_mma_ln_unclustered(void (*fused)(float *, T *, const T *, const T *, const float *,
                                                         const float *, const float *, const float *,
                                                         int, int, int, float)) {
    const int M = 5, K = 64, N = 256;
    std::vector<T> inp(size_t(M) * K, store<T>(1.0f)), w(size_t(N) * K, store<T>(0.5f));
    std::vector<float> bias(N, 0.0f), res(size_t(M) * N, 1.0f), lw(N, 1.0f), lb(N, 0.0f);
    OutBuf out(size_t(M) * N);
    std::vector<T> out_t(size_t(M) * N, T{0xffff});
    const bool ok = emu::launch(fused, dim3(N / MMA_TILE, 1, 1), dim3(LINEAR_THREADS), MMA_T_SMEM_BYTES,
                                out.ptr(), out_t.data(), inp.data(), w.data(), bias.data(), res.data(),
                                lw.data(), lb.data(), M, K, N, 1e-12f);
    size_t written = out.n - out.unwritten();
    for (const T &x : out_t) written += x.bits != 0xffff;
    record_no_write("linear_forward_mma_ln unclustered: no write", "M=5 N=256", ok, written);
}

static void test_ln_fused(bool quick) {
    test_clusters();
    emu::opt_in_dynamic_smem(linear_forward_mma_ln_bf16_from_bf16, MMA_T_SMEM_BYTES);
    emu::opt_in_dynamic_smem(linear_forward_mma_ln_f16_from_f16, MMA_T_SMEM_BYTES);
    emu::opt_in_dynamic_smem(linear_forward_mma_bf16_from_bf16, MMA_T_SMEM_BYTES);
    emu::opt_in_dynamic_smem(linear_forward_mma_f16_from_f16, MMA_T_SMEM_BYTES);
    auto both = [&](int M, int K, int N, bool in_place) {
        test_linear_mma_ln<bf16>(linear_forward_mma_ln_bf16_from_bf16, linear_forward_mma_bf16_from_bf16,
                                 residual_layernorm_forward_to_bf16, M, K, N, in_place);
        test_linear_mma_ln<f16>(linear_forward_mma_ln_f16_from_f16, linear_forward_mma_f16_from_f16,
                                residual_layernorm_forward_to_f16, M, K, N, in_place);
    };
    both(1, 64, 128, false);   // a cluster of one block, one row
    both(37, 100, 256, true);  // K % 8 != 0: plain staging; 2 blocks; in place
    both(130, 200, 384, false); // 2 row blocks, the second with 2 rows; 3 blocks
    if (!quick) {
        both(129, 768, 768, true); // ALBERT's attention output: clusters of 6
        both(64, 136, 1024, false); // clusters of 8 (the portable maximum), C = 1024
        both(130, 3072, 256, true); // the FFN output's K, unsplit (ALBERT_CUDA_K_PER_SPLIT=3072)
    }
    test_linear_mma_ln_unclustered<bf16>(linear_forward_mma_ln_bf16_from_bf16);
}
