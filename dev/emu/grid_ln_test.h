// grid_ln_test.h: the cooperative product + residual LayerNorm for small batches
// (linear_mma_grid_ln.cu) against the two kernels it replaces, bit for bit; and the row-group
// barrier (grid_sync.cuh) on the emulator's cooperative launches. Included by emu_test.cpp after
// mma_test.h.
#pragma once

// row_group_sync among the blocks of each blockIdx.y (gridDim.x x gridDim.z of them): each
// thread writes its slot, syncs, then reads the slot of the same thread in the next block of
// its group. A barrier that let a block through early reads poison (OutBuf); one whose words
// were not left reusable deadlocks (reported) or passes early in the second launch, which reuses
// `state` with another group size.
__global__ void selftest_row_group(float *out, float *slots, unsigned *state) {
    const unsigned n = blockDim.x, per = gridDim.x * gridDim.z;
    const unsigned rank = blockIdx.z * gridDim.x + blockIdx.x, group = blockIdx.y;
    const unsigned slot = (group * per + rank) * n + threadIdx.x;
    slots[slot] = float(1000 * (group * per + rank) + threadIdx.x);
    row_group_sync(state + 2 * group, per);
    const unsigned peer = (group * per + (rank + 1) % per) * n + threadIdx.x;
    out[slot] = __ldcg(&slots[peer]) + float(100000 * per);
}

static void test_row_groups() {
    std::vector<unsigned> state(2 * 3, 0u);
    for (dim3 grid : {dim3(3, 2, 2), dim3(2, 3, 1), dim3(1, 1, 1)}) {
        const unsigned n = 64, per = grid.x * grid.z, blocks = per * grid.y;
        OutBuf out(blocks * n), slots(blocks * n);
        const bool ok = emu::launch_in_clusters(emu::kCooperative, selftest_row_group, grid, dim3(n), 0,
                                                out.ptr(), slots.ptr(), state.data());
        std::vector<double> ref(blocks * n);
        for (unsigned g = 0; g < grid.y; g++)
            for (unsigned r = 0; r < per; r++)
                for (unsigned t = 0; t < n; t++)
                    ref[(g * per + r) * n + t] = 1000.0 * (g * per + (r + 1) % per) + t + 100000.0 * per;
        for (unsigned g = 0; g < grid.y; g++)
            if (state[2 * g] != 0) emu::report("row group " + std::to_string(g) + ": count not back to 0");
        record("emulator: cooperative row-group barrier", shape({{"x", grid.x}, {"y", grid.y}, {"z", grid.z}}),
               out, ref, ok, 0.0);
    }
}

// linear_forward_mma64_ln_T_from_T, cooperative, == linear_forward_mma64_T_from_T (f32 partials,
// `splits` k shares) then residual_layernorm_forward_to_T (parts = splits): f32 output and T
// copy, bit for bit; `in_place`: the output over the residual.
template <typename T>
static void test_linear_mma_grid_ln(
    void (*fused)(float *, T *, float *, const T *, const T *, const float *, const float *,
                  const float *, const float *, unsigned *, int, int, int, float),
    void (*product)(float *, const T *, const T *, const float *, int, int, int, int),
    void (*layernorm)(float *, T *, const float *, const float *, const float *, const float *, int,
                      int, int, float),
    int M, int K, int N, int splits, bool in_place) {
    const float eps = 1e-12f, ws = std::sqrt(3.0f / float(std::max(K, 1)));
    const size_t n = size_t(M) * N;
    std::vector<T> inp(size_t(M) * K), w(size_t(N) * K);
    for (auto &x : inp) x = store<T>(uni(-2.0f, 2.0f));
    for (auto &x : w) x = store<T>(uni(-ws, ws));
    std::vector<float> bias = rand_vec(N, -0.5f, 0.5f), res = rand_vec(n, -2.0f, 2.0f);
    std::vector<float> lw = rand_vec(N, 0.5f, 1.5f), lb = rand_vec(N, -0.5f, 0.5f);
    const int tile = 64;
    const dim3 grid((N + tile - 1) / tile, (M + tile - 1) / tile, splits);
    // The two kernels the fused one replaces, as the scheduler launches them.
    OutBuf partials(n * splits), want(n);
    bool ok = emu::launch(product, grid, dim3(MMA_THREADS_SMALL), MMA_T_SMEM_BYTES_SMALL, partials.ptr(),
                          inp.data(), w.data(), bias.data(), M, K, N, 0);
    std::vector<T> want_t(n, T{0xffff});
    ok &= emu::launch(layernorm, dim3(M), dim3(ROW_THREADS), size_t(N) * 4, want.ptr(), want_t.data(),
                      partials.ptr(), res.data(), lw.data(), lb.data(), M, N, splits, eps);
    // Fused, its state words dirty from an earlier use (as after any launch: count 0, some
    // generation).
    OutBuf out(n), parts(n * splits);
    const float *pres = res.data();
    if (in_place) std::copy_n(res.data(), n, out.ptr()), pres = out.ptr();
    std::vector<T> out_t(n, T{0xffff});
    std::vector<unsigned> state(2 * grid.y);
    for (unsigned g = 0; g < grid.y; g++) state[2 * g] = 0, state[2 * g + 1] = 0xfffffffeu + g;
    const bool ok_f = emu::launch_in_clusters(
        emu::kCooperative, fused, grid, dim3(MMA_THREADS_SMALL), MMA_T_SMEM_BYTES_SMALL, out.ptr(),
        out_t.data(), parts.ptr(), inp.data(), w.data(), bias.data(), pres, lw.data(), lb.data(),
        state.data(), M, K, N, eps);
    const std::string name = std::string("linear_forward_mma64_ln_") + tname<T>() + "_from_" + tname<T>();
    const std::string sh = shape({{"M", M}, {"K", K}, {"N", N}, {"z", splits}}) + (in_place ? " in place" : "");
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += out_t[i].bits != want_t[i].bits;
    if (differ) emu::report(std::to_string(differ) + " T elements differ from the unfused path");
    for (unsigned g = 0; g < grid.y; g++)
        if (state[2 * g] != 0 || state[2 * g + 1] != 0xffffffffu + g)
            emu::report("row group " + std::to_string(g) + ": state not (0, generation + 1)");
    std::vector<double> same(n);
    for (size_t i = 0; i < n; i++) same[i] = want[i];
    record(name + " == product + layernorm", sh, out, same, ok && ok_f, 0.0);
    record_rounded(name + " T copy", sh, out_t, want.ptr(), n, ok_f);
}

// More than GRID_LN_PARTS k shares: the kernel must not write (nor wait).
template <typename T>
static void test_linear_mma_grid_ln_refuses(
    void (*fused)(float *, T *, float *, const T *, const T *, const float *, const float *,
                  const float *, const float *, unsigned *, int, int, int, float)) {
    const int M = 5, K = 320, N = 64, splits = GRID_LN_PARTS + 1;
    std::vector<T> inp(size_t(M) * K, store<T>(1.0f)), w(size_t(N) * K, store<T>(0.5f));
    std::vector<float> bias(N, 0.0f), res(size_t(M) * N, 1.0f), lw(N, 1.0f), lb(N, 0.0f);
    OutBuf out(size_t(M) * N), parts(size_t(M) * N * splits);
    std::vector<T> out_t(size_t(M) * N, T{0xffff});
    std::vector<unsigned> state(2, 0u);
    const bool ok = emu::launch_in_clusters(emu::kCooperative, fused, dim3(1, 1, splits), dim3(MMA_THREADS_SMALL),
                                            MMA_T_SMEM_BYTES_SMALL, out.ptr(), out_t.data(), parts.ptr(),
                                            inp.data(), w.data(), bias.data(), res.data(), lw.data(),
                                            lb.data(), state.data(), M, K, N, 1e-12f);
    size_t written = out.n - out.unwritten() + parts.n - parts.unwritten();
    for (const T &x : out_t) written += x.bits != 0xffff;
    record_no_write("linear_forward_mma64_ln 5 shares: no write", "M=5 N=64", ok, written);
}

static void test_grid_ln(bool quick) {
    test_row_groups();
    emu::opt_in_dynamic_smem(linear_forward_mma64_ln_bf16_from_bf16, MMA_T_SMEM_BYTES_SMALL);
    emu::opt_in_dynamic_smem(linear_forward_mma64_ln_f16_from_f16, MMA_T_SMEM_BYTES_SMALL);
    emu::opt_in_dynamic_smem(linear_forward_mma64_bf16_from_bf16, MMA_T_SMEM_BYTES_SMALL);
    emu::opt_in_dynamic_smem(linear_forward_mma64_f16_from_f16, MMA_T_SMEM_BYTES_SMALL);
    auto both = [&](int M, int K, int N, int splits, bool in_place) {
        test_linear_mma_grid_ln<bf16>(linear_forward_mma64_ln_bf16_from_bf16, linear_forward_mma64_bf16_from_bf16,
                                      residual_layernorm_forward_to_bf16, M, K, N, splits, in_place);
        test_linear_mma_grid_ln<f16>(linear_forward_mma64_ln_f16_from_f16, linear_forward_mma64_f16_from_f16,
                                     residual_layernorm_forward_to_f16, M, K, N, splits, in_place);
    };
    both(1, 64, 64, 1, false);   // one block, one row
    both(37, 200, 96, 2, true);  // K % 8 != 0: plain staging; a ragged column tile; 2 shares; in place
    both(70, 256, 128, 4, false); // 2 row groups (the second with 6 rows), 4 shares of one k tile
    if (!quick) {
        both(128, 768, 768, 1, true);  // ALBERT's attention output at b1: 12 blocks per row group
        both(65, 3072, 256, 4, false); // the FFN output's K in 4 shares (16 blocks per row group)
        both(3, 136, 1024, 3, true);   // C = 1024 (a row per warp's limit), 3 shares of 64 + 64 + 8
    }
    test_linear_mma_grid_ln_refuses<bf16>(linear_forward_mma64_ln_bf16_from_bf16);
}
