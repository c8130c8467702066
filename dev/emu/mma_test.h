// mma_test.h: the mma.sync products (T outputs and inputs, tile shapes, the opt-in variants)
// and the fused embeddings + projection; included by emu_test.cpp after emulator_test.h.
#pragma once

// linear_forward_mma_*_to_*: the epilogue stores T; must be the f32 kernel's output rounded to T
// (RNE), bit for bit. Unwritten elements keep the poison 0xffff (NaN in bf16 and f16).
template <typename T>
static void test_linear_to_t(void (*f32_out)(float *, const float *, const T *, const float *, int,
                                             int, int, int),
                             void (*t_out)(T *, const float *, const T *, const float *, int, int,
                                           int, int),
                             int M, int K, int N, int act) {
    const float ws = std::sqrt(3.0f / float(std::max(K, 1)));
    std::vector<float> inp = rand_vec(size_t(M) * K, -2.0f, 2.0f), bias = rand_vec(N, -0.5f, 0.5f);
    std::vector<T> w(size_t(N) * K);
    for (auto &x : w) x = store<T>(uni(-ws, ws));
    const dim3 grid((N + MMA_TILE - 1) / MMA_TILE, (M + MMA_TILE - 1) / MMA_TILE, 1);
    OutBuf ref_out(size_t(M) * N);
    bool ok = emu::launch(f32_out, grid, dim3(LINEAR_THREADS), 0, ref_out.ptr(), inp.data(), w.data(),
                          bias.data(), M, K, N, act);
    std::vector<T> got(size_t(M) * N + 2 * GUARD, T{0xffff});
    ok &= emu::launch(t_out, grid, dim3(LINEAR_THREADS), 0, got.data() + GUARD, inp.data(), w.data(),
                      bias.data(), M, K, N, act);
    OutBuf widened(size_t(M) * N);
    std::vector<double> want(size_t(M) * N);
    size_t unwritten = 0, guard_hits = 0;
    for (size_t i = 0; i < GUARD; i++) guard_hits += got[i].bits != 0xffff || got[GUARD + size_t(M) * N + i].bits != 0xffff;
    for (size_t i = 0; i < size_t(M) * N; i++) {
        unwritten += got[GUARD + i].bits == 0xffff;
        widened.ptr()[i] = load(got[GUARD + i]);
        want[i] = round_operand<T>(ref_out[i]);
    }
    if (unwritten || guard_hits) emu::report("T output: " + std::to_string(unwritten) + " unwritten, " + std::to_string(guard_hits) + " guard elements changed");
    record(std::string("linear_forward_mma_") + tname<T>() + "_to_" + tname<T>() + " == round(f32 out)",
           shape({{"M", M}, {"K", K}, {"N", N}, {"act", act}}), widened, want, ok, 0.0);
}

// linear_forward_mma_*_from_*: the activation arrives stored as T (the FFN intermediate).
//  * against the float64 reference (operands already T, exact products and sums): limit 1e-5;
//  * bit for bit against the f32-input kernel given the same values before rounding: storing as
//    T (RNE) is the rounding that kernel applies while staging, and the summation order is the
//    same, so the scheduler's _to_ + _from_ pair changes no result.
// `offset` moves inp one element (2 bytes) off 16-byte alignment: A then takes the plain-store
// path even at K % 8 == 0 (W stays on cp.async).
template <typename T>
static void test_linear_from_t(void (*f32_in)(float *, const float *, const T *, const float *, int,
                                              int, int, int),
                               void (*t_in)(float *, const T *, const T *, const float *, int, int,
                                            int, int),
                               int M, int K, int N, int act, int offset = 0) {
    const float ws = std::sqrt(3.0f / float(std::max(K, 1)));
    std::vector<float> inp = rand_vec(size_t(M) * K, -2.0f, 2.0f), bias = rand_vec(N, -0.5f, 0.5f);
    std::vector<T> inp_t(size_t(M) * K + 8), w(size_t(N) * K);
    for (size_t i = 0; i < inp.size(); i++) inp_t[offset + i] = store<T>(inp[i]);
    for (auto &x : w) x = store<T>(uni(-ws, ws));
    std::vector<double> ref(size_t(M) * N);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = bias[n];
            for (int k = 0; k < K; k++)
                s += double(load(inp_t[offset + size_t(m) * K + k])) * double(load(w[size_t(n) * K + k]));
            ref[size_t(m) * N + n] = act_ref(s, act);
        }
    const dim3 grid((N + MMA_TILE - 1) / MMA_TILE, (M + MMA_TILE - 1) / MMA_TILE, 1);
    OutBuf out(size_t(M) * N), same(size_t(M) * N);
    const bool ok = emu::launch(t_in, grid, dim3(LINEAR_THREADS), MMA_T_SMEM_BYTES, out.ptr(), inp_t.data() + offset,
                                w.data(), bias.data(), M, K, N, act);
    const bool ok32 = emu::launch(f32_in, grid, dim3(LINEAR_THREADS), 0, same.ptr(), inp.data(),
                                  w.data(), bias.data(), M, K, N, act);
    const std::string name = std::string("linear_forward_mma_") + tname<T>() + "_from_" + tname<T>();
    const std::string sh = shape({{"M", M}, {"K", K}, {"N", N}, {"act", act}}) + (offset ? " +1" : "");
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < ref.size(); i++)
        if (std::abs(double(out[i]) - ref[i]) > worst) worst = std::abs(double(out[i]) - ref[i]), at = i;
    record(name, sh, out, ref, ok);
    std::printf("    worst element: |out - ref| = %.3e at (m %zu, n %zu), ref %.6f\n", worst,
                N ? at / N : 0, N ? at % N : 0, ref.empty() ? 0.0 : ref[at]);
    std::vector<double> f32_bits(ref.size());
    for (size_t i = 0; i < ref.size(); i++) f32_bits[i] = same[i];
    record(name + " == f32-input kernel", sh, out, f32_bits, ok && ok32, 0.0);
}

// linear_forward_mma_*_from_*_to_*: both activations stored as T (every encoder product when the
// LayerNorms and the attention keep T copies): the _from_ kernel's f32 output, rounded.
// Random operands of a product with T activations: inp [M, K] in [-2, 2], w [N, K] in
// +-sqrt(3 / K) (outputs of order 1), bias [N] in [-0.5, 0.5], drawn in that order.
template <typename T> struct TProduct {
    std::vector<T> inp, w;
    std::vector<float> bias;
};
template <typename T> static TProduct<T> t_product(int M, int K, int N) {
    const float ws = std::sqrt(3.0f / float(std::max(K, 1)));
    TProduct<T> p{std::vector<T>(size_t(M) * K), std::vector<T>(size_t(N) * K), {}};
    for (auto &x : p.inp) x = store<T>(uni(-2.0f, 2.0f));
    for (auto &x : p.w) x = store<T>(uni(-ws, ws));
    p.bias = rand_vec(N, -0.5f, 0.5f);
    return p;
}

template <typename T>
static void test_linear_from_to_t(void (*t_in)(float *, const T *, const T *, const float *, int,
                                               int, int, int),
                                  void (*t_in_out)(T *, const T *, const T *, const float *, int,
                                                   int, int, int),
                                  int M, int K, int N, int act) {
    auto [inp, w, bias] = t_product<T>(M, K, N);
    const dim3 grid((N + MMA_TILE - 1) / MMA_TILE, (M + MMA_TILE - 1) / MMA_TILE, 1);
    OutBuf f32_out(size_t(M) * N);
    bool ok = emu::launch(t_in, grid, dim3(LINEAR_THREADS), MMA_T_SMEM_BYTES, f32_out.ptr(), inp.data(), w.data(),
                          bias.data(), M, K, N, act);
    std::vector<T> got(size_t(M) * N, T{0xffff});
    ok &= emu::launch(t_in_out, grid, dim3(LINEAR_THREADS), MMA_T_SMEM_BYTES, got.data(), inp.data(), w.data(),
                      bias.data(), M, K, N, act);
    const std::string name = std::string("linear_forward_mma_") + tname<T>() + "_from_" + tname<T>() + "_to_" + tname<T>();
    record_rounded(name, shape({{"M", M}, {"K", K}, {"N", N}, {"act", act}}), got, f32_out.ptr(),
                   size_t(M) * N, ok);
}

// The 64x64-tile T-input kernels (linear_forward_mma64_*, 128 threads, 40 KB) and split-K
// (gridDim.z > 1, either tile): launched as linear_t.rs does.
//  * the 64x64 kernels give the 128x128 kernels' bits (each output is the same chain of mma
//    steps), for f32 and T outputs;
//  * split-K stores `splits` f32 partials (bias in the first); their in-order f32 sum is the
//    product within f32 rounding of the float64 reference, and both tiles give the same partials.
template <typename T>
static void test_linear_tiles(void (*large)(float *, const T *, const T *, const float *, int, int, int, int),
                              void (*small)(float *, const T *, const T *, const float *, int, int, int, int),
                              void (*small_to)(T *, const T *, const T *, const float *, int, int, int, int),
                              int M, int K, int N, int act, int splits) {
    auto [inp, w, bias] = t_product<T>(M, K, N);
    const size_t mn = size_t(M) * N;
    auto grid = [&](int tile, int z) { return dim3((N + tile - 1) / tile, (M + tile - 1) / tile, z); };
    const std::string t = tname<T>(), sh = shape({{"M", M}, {"K", K}, {"N", N}, {"act", act}});
    OutBuf want(mn), got(mn);
    bool ok = emu::launch(large, grid(128, 1), dim3(LINEAR_THREADS), MMA_T_SMEM_BYTES, want.ptr(),
                          inp.data(), w.data(), bias.data(), M, K, N, act);
    ok &= emu::launch(small, grid(64, 1), dim3(MMA_THREADS_SMALL), MMA_T_SMEM_BYTES_SMALL, got.ptr(),
                      inp.data(), w.data(), bias.data(), M, K, N, act);
    std::vector<double> same(mn);
    for (size_t i = 0; i < mn; i++) same[i] = want[i];
    record("linear_forward_mma64_" + t + "_from_" + t + " == 128x128 tiles", sh, got, same, ok, 0.0);
    std::vector<T> got_t(mn, T{0xffff});
    const bool ok_t = emu::launch(small_to, grid(64, 1), dim3(MMA_THREADS_SMALL), MMA_T_SMEM_BYTES_SMALL,
                                  got_t.data(), inp.data(), w.data(), bias.data(), M, K, N, act);
    record_rounded("linear_forward_mma64_" + t + "_from_" + t + "_to_" + t, sh, got_t, want.ptr(), mn, ok && ok_t);
    if (splits < 2 || act != 0) return;
    // Split-K: partials [splits, M, N].
    const std::string ssh = sh + " splits " + std::to_string(splits);
    OutBuf parts(mn * splits), parts64(mn * splits);
    bool oks = emu::launch(large, grid(128, splits), dim3(LINEAR_THREADS), MMA_T_SMEM_BYTES, parts.ptr(),
                           inp.data(), w.data(), bias.data(), M, K, N, 0);
    oks &= emu::launch(small, grid(64, splits), dim3(MMA_THREADS_SMALL), MMA_T_SMEM_BYTES_SMALL,
                       parts64.ptr(), inp.data(), w.data(), bias.data(), M, K, N, 0);
    OutBuf sum(mn);
    std::vector<double> ref(mn), same_parts(mn * splits);
    for (size_t i = 0; i < mn; i++) {
        float s = parts[i];
        for (int p = 1; p < splits; p++) s += parts[p * mn + i];
        sum.ptr()[i] = s;
    }
    for (size_t i = 0; i < mn * splits; i++) same_parts[i] = parts[i];
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = bias[n];
            for (int k = 0; k < K; k++)
                s += double(load(inp[size_t(m) * K + k])) * double(load(w[size_t(n) * K + k]));
            ref[size_t(m) * N + n] = s;
        }
    record("linear_forward_mma_" + t + "_from_" + t + " split-K (sum of partials)", ssh, sum, ref, oks);
    record("linear_forward_mma64_" + t + "_from_" + t + " split-K partials == 128x128 tiles'", ssh,
           parts64, same_parts, oks, 0.0);
}

// embeddings_project_{bf16,f16} (E = 128), launched as launch.rs does: grid (ceil(N/64),
// ceil(M/64)), 128 threads, static shared memory. Checked against
//  * the unfused chain the scheduler runs without it: embeddings_forward_T (f32 x), x rounded to
//    T, the 64x64 T-input product: bit for bit. (x's f64 statistics are summed in another order;
//    the two f32 x could differ only where an f64 value lies within ~1e-16 of an f32 rounding
//    tie, and then change a product only if that moves a T rounding: not in these data.)
//  * float64: LayerNorm in f64 of the same table values, x rounded to T, the product in f64;
//  * out_t == out rounded to T, bit for bit.
// M = 70: a ragged second block row; N = 200: a ragged 4th block column; S = 64 < M: positions
// wrap as m % S. misalign: tables and weight one element past a 16-byte boundary (the kernel's
// element-wise loads and staging).
template <typename T>
static void test_embeddings_project(void (*fused)(float *, T *, const int *, const int *, const T *,
                                                  const T *, const T *, const float *, const float *,
                                                  const T *, const float *, int, int, int, float),
                                    void (*embed)(float *, const int *, const int *, const T *,
                                                  const T *, const T *, const float *,
                                                  const float *, int, int, int, float),
                                    void (*product)(float *, const T *, const T *, const float *,
                                                    int, int, int, int),
                                    int M, int S, int N, bool misalign = false) {
    const int E = EMB_E, V = 37, P = S + 3, TT = 2, off = misalign ? 1 : 0;
    const float eps = 1e-12f;
    auto table = [&](int rows, float scale) { // `off` elements of padding, then the table
        std::vector<T> t(size_t(rows) * E + off);
        for (auto &x : t) x = store<T>(uni(-scale, scale));
        return t;
    };
    std::vector<T> word_s = table(V, 1.0f), pos_s = table(P, 0.5f), type_s = table(TT, 0.5f);
    std::vector<T> w_s = table(N, std::sqrt(3.0f / E));
    const T *word = word_s.data() + off, *pos = pos_s.data() + off, *type = type_s.data() + off;
    const T *w = w_s.data() + off;
    std::vector<int> ids(M), types(M);
    for (int m = 0; m < M; m++) ids[m] = int(rng() % V), types[m] = int(rng() % TT);
    std::vector<float> lw = rand_vec(E, 0.5f, 1.5f), lb = rand_vec(E, -0.5f, 0.5f);
    std::vector<float> bias = rand_vec(N, -0.5f, 0.5f);
    const size_t mn = size_t(M) * N;
    const std::string t = tname<T>(),
                      sh = shape({{"M", M}, {"S", S}, {"N", N}}) + (misalign ? " misaligned" : "");
    // The unfused chain.
    OutBuf x(size_t(M) * E), chain(mn);
    bool ok = emu::launch(embed, dim3(M), dim3(ROW_THREADS), size_t(E) * 4, x.ptr(), ids.data(),
                          types.data(), word, pos, type, lw.data(), lb.data(),
                          M, S, E, eps);
    std::vector<T> x_t(size_t(M) * E);
    for (size_t i = 0; i < x_t.size(); i++) x_t[i] = store<T>(x[i]);
    ok &= emu::launch(product, dim3((N + 63) / 64, (M + 63) / 64), dim3(MMA_THREADS_SMALL),
                      MMA_T_SMEM_BYTES_SMALL, chain.ptr(), x_t.data(), w, bias.data(), M, E,
                      N, 0);
    // Fused.
    OutBuf out(mn);
    std::vector<T> out_t(mn, T{0xffff});
    const bool okf = emu::launch(fused, dim3((N + 63) / 64, (M + 63) / 64), dim3(MMA_THREADS_SMALL), 0,
                                 out.ptr(), out_t.data(), ids.data(), types.data(), word,
                                 pos, type, lw.data(), lb.data(), w,
                                 bias.data(), M, S, N, eps);
    std::vector<double> same(mn), ref(mn);
    for (size_t i = 0; i < mn; i++) same[i] = chain[i];
    for (int m = 0; m < M; m++) {
        std::vector<double> row(E), y(E);
        for (int c = 0; c < E; c++)
            row[c] = double(load(word[size_t(ids[m]) * E + c])) +
                     double(load(type[size_t(types[m]) * E + c])) +
                     double(load(pos[size_t(m % S) * E + c]));
        layernorm_ref(y.data(), row, lw, lb, eps);
        for (int n = 0; n < N; n++) {
            double s = bias[n];
            for (int c = 0; c < E; c++)
                s += double(round_operand<T>(float(y[c]))) * double(load(w[size_t(n) * E + c]));
            ref[size_t(m) * N + n] = s;
        }
    }
    const std::string name = "embeddings_project_" + t;
    record(name + " == unfused chain", sh, out, same, ok && okf, 0.0);
    record(name, sh, out, ref, okf);
    record_rounded(name + " out_t", sh, out_t, out.ptr(), mn, okf);
}

// A variant of a T-input product kernel with the same tile (`tile` rows and columns, `threads`)
// but another pipeline, against the kernel it varies: bit for bit (the same chain of 16-k mma
// steps per output), split into `splits` f32 partials or not, and its T output == its f32
// output rounded. The variants: linear_forward_mma_k64_* (ALBERT_CUDA_K64: 128x128 tiles, k 64
// per tile, 3 stages, 110,592 B) against the k-32 128x128 kernels, and
// linear_forward_mma64_deep_* (ALBERT_CUDA_DEEP: 8 stages, 147,456 B) against the 4-stage 64x64
// kernels.
struct Variant {
    std::string name, of; // "linear_forward_mma_k64", "k 32"
    int tile, threads, smem_ref, smem;
};
template <typename T>
static void test_linear_variant(const Variant &v,
                                void (*ref)(float *, const T *, const T *, const float *, int, int, int, int),
                                void (*alt)(float *, const T *, const T *, const float *, int, int, int, int),
                                void (*alt_to)(T *, const T *, const T *, const float *, int, int, int, int),
                                int M, int K, int N, int act, int splits) {
    auto [inp, w, bias] = t_product<T>(M, K, N);
    const size_t mn = size_t(M) * N * splits;
    const dim3 grid((N + v.tile - 1) / v.tile, (M + v.tile - 1) / v.tile, splits);
    const std::string t = tname<T>(),
                      sh = shape({{"M", M}, {"K", K}, {"N", N}, {"act", act}, {"splits", splits}});
    OutBuf want(mn), got(mn);
    bool ok = emu::launch(ref, grid, dim3(v.threads), v.smem_ref, want.ptr(), inp.data(), w.data(),
                          bias.data(), M, K, N, act);
    ok &= emu::launch(alt, grid, dim3(v.threads), v.smem, got.ptr(), inp.data(), w.data(), bias.data(),
                      M, K, N, act);
    std::vector<double> same(mn);
    for (size_t i = 0; i < mn; i++) same[i] = want[i];
    record(v.name + "_" + t + "_from_" + t + " == " + v.of, sh, got, same, ok, 0.0);
    if (splits > 1) return;
    std::vector<T> got_t(mn, T{0xffff});
    const bool ok_t = emu::launch(alt_to, grid, dim3(v.threads), v.smem, got_t.data(), inp.data(),
                                  w.data(), bias.data(), M, K, N, act);
    record_rounded(v.name + "_" + t + "_from_" + t + "_to_" + t, sh, got_t, got.ptr(), mn, ok && ok_t);
}

static void opt_in_products() {
    // As the engine does when it loads them (kernels.rs): the T-input products' 80 KB.
    emu::opt_in_dynamic_smem(linear_forward_mma_bf16_from_bf16, MMA_T_SMEM_BYTES);
    emu::opt_in_dynamic_smem(linear_forward_mma_f16_from_f16, MMA_T_SMEM_BYTES);
    emu::opt_in_dynamic_smem(linear_forward_mma_bf16_from_bf16_to_bf16, MMA_T_SMEM_BYTES);
    emu::opt_in_dynamic_smem(linear_forward_mma_f16_from_f16_to_f16, MMA_T_SMEM_BYTES);
    emu::opt_in_dynamic_smem(linear_forward_mma64_bf16_from_bf16, MMA_T_SMEM_BYTES_SMALL);
    emu::opt_in_dynamic_smem(linear_forward_mma64_f16_from_f16, MMA_T_SMEM_BYTES_SMALL);
    emu::opt_in_dynamic_smem(linear_forward_mma64_bf16_from_bf16_to_bf16, MMA_T_SMEM_BYTES_SMALL);
    emu::opt_in_dynamic_smem(linear_forward_mma64_f16_from_f16_to_f16, MMA_T_SMEM_BYTES_SMALL);
    emu::opt_in_dynamic_smem(linear_forward_mma_k64_bf16_from_bf16, MMA_T_SMEM_BYTES_K64, 227 * 1024); // sm_90
    emu::opt_in_dynamic_smem(linear_forward_mma_k64_f16_from_f16, MMA_T_SMEM_BYTES_K64, 227 * 1024); // sm_90
    emu::opt_in_dynamic_smem(linear_forward_mma_k64_bf16_from_bf16_to_bf16, MMA_T_SMEM_BYTES_K64, 227 * 1024); // sm_90
    emu::opt_in_dynamic_smem(linear_forward_mma_k64_f16_from_f16_to_f16, MMA_T_SMEM_BYTES_K64, 227 * 1024); // sm_90
    emu::opt_in_dynamic_smem(linear_forward_mma64_deep_bf16_from_bf16, MMA_T_SMEM_BYTES_DEEP, 227 * 1024); // sm_90
    emu::opt_in_dynamic_smem(linear_forward_mma64_deep_f16_from_f16, MMA_T_SMEM_BYTES_DEEP, 227 * 1024); // sm_90
    emu::opt_in_dynamic_smem(linear_forward_mma64_deep_bf16_from_bf16_to_bf16, MMA_T_SMEM_BYTES_DEEP, 227 * 1024); // sm_90
    emu::opt_in_dynamic_smem(linear_forward_mma64_deep_f16_from_f16_to_f16, MMA_T_SMEM_BYTES_DEEP, 227 * 1024); // sm_90
}

static void test_mma(bool quick) {
    opt_in_products();
    test_mma_unit<bf16>(true);
    test_mma_unit<f16>(true);
    test_mma_unit<bf16>(false);
    test_mma_unit<f16>(false);
    expect_report("emulator: detects mma, exited lanes", selftest_mma_exited, "exited");
    expect_report("emulator: detects divergent mma (types)", selftest_mma_divergent, "divergent");
    expect_report("emulator: detects divergent mma (sites)", selftest_mma_divergent_same, "divergent");
    test_cp_async();
    test_ldmatrix<false>();
    test_ldmatrix<true>();

    // linear_forward_mma_{bf16,f16}, launched as launch.rs does: grid (ceil(N/128), ceil(M/128)),
    // 256 threads, no dynamic shared memory; the reference of the linear tests.
    // (129, 5, 9): a cheap shape with two block rows, so --quick also covers the grid's y.
    // (70, 136, 72): K % 8 == 0, so the weight tiles go through cp.async; 5 k tiles, the last
    // one partial (zero-filled chunks), and more tiles than pipeline stages.
    const std::vector<std::array<int, 3>> small = {{1, 1, 1}, {3, 5, 7}, {65, 33, 129}, {128, 32, 128}, {129, 5, 9}, {70, 136, 72}};
    const std::vector<std::array<int, 3>> big = {{130, 96, 200}, {257, 40, 129}};
    for (auto [M, K, N] : small) {
        test_linear<bf16>(linear_forward_mma_bf16, M, K, N, {0, 1}, true, 2.0f, MMA_TILE, "linear_forward_mma_");
        test_linear<f16>(linear_forward_mma_f16, M, K, N, {0, 12}, true, 2.0f, MMA_TILE, "linear_forward_mma_");
    }
    test_linear<f16>(linear_forward_mma_f16, 5, 77, 3, {2}, false, 2.0f, MMA_TILE, "linear_forward_mma_"); // null bias
    test_linear_to_t<bf16>(linear_forward_mma_bf16, linear_forward_mma_bf16_to_bf16, 70, 136, 200, 0);
    test_linear_to_t<f16>(linear_forward_mma_f16, linear_forward_mma_f16_to_f16, 33, 40, 129, 1);
    test_linear<bf16>(linear_forward_mma_bf16, 5, 0, 3, {0, 1}, true, 2.0f, MMA_TILE, "linear_forward_mma_"); // K = 0
    // T activations: M not a multiple of 128 (130: two block rows), K ragged (33, 77: plain
    // stores; 40, 136: cp.async with a partial last k tile), N ragged; one misaligned inp.
    test_linear_from_t<bf16>(linear_forward_mma_bf16, linear_forward_mma_bf16_from_bf16, 130, 33, 129, 1);
    test_linear_from_t<f16>(linear_forward_mma_f16, linear_forward_mma_f16_from_f16, 130, 136, 9, 1);
    test_linear_from_t<bf16>(linear_forward_mma_bf16, linear_forward_mma_bf16_from_bf16, 70, 40, 200, 0, 1);
    test_linear_from_t<f16>(linear_forward_mma_f16, linear_forward_mma_f16_from_f16, 3, 77, 7, 2);
    test_linear_from_t<bf16>(linear_forward_mma_bf16, linear_forward_mma_bf16_from_bf16, 1, 1, 1, 0);
    test_linear_from_t<f16>(linear_forward_mma_f16, linear_forward_mma_f16_from_f16, 5, 0, 3, 1); // K = 0
    // Both sides T; act 2 (gelu_new, ALBERT's) and 1 take the epilogue's compile-time copies,
    // 12 the run-time switch.
    test_linear_from_to_t<bf16>(linear_forward_mma_bf16_from_bf16, linear_forward_mma_bf16_from_bf16_to_bf16, 130, 136, 200, 2);
    test_linear_from_to_t<f16>(linear_forward_mma_f16_from_f16, linear_forward_mma_f16_from_f16_to_f16, 33, 40, 129, 12);
    test_linear_from_to_t<bf16>(linear_forward_mma_bf16_from_bf16, linear_forward_mma_bf16_from_bf16_to_bf16, 3, 77, 7, 1);
    // 64x64 tiles and split-K: M, N ragged and over one tile (2-3 block rows/columns of 64);
    // K = 136: 5 k tiles in 2 splits (3 + 2); K = 40 in 4 splits: 2 tiles, so two splits have
    // none and store zeros; K = 77: plain stores; act 2 and 12 take the epilogue's two paths.
    auto tiles_bf16 = [](int M, int K, int N, int act, int splits) {
        test_linear_tiles<bf16>(linear_forward_mma_bf16_from_bf16, linear_forward_mma64_bf16_from_bf16,
                                linear_forward_mma64_bf16_from_bf16_to_bf16, M, K, N, act, splits);
    };
    auto tiles_f16 = [](int M, int K, int N, int act, int splits) {
        test_linear_tiles<f16>(linear_forward_mma_f16_from_f16, linear_forward_mma64_f16_from_f16,
                               linear_forward_mma64_f16_from_f16_to_f16, M, K, N, act, splits);
    };
    tiles_bf16(130, 136, 200, 0, 2);
    tiles_f16(70, 40, 129, 0, 4);
    tiles_bf16(65, 77, 66, 2, 1);
    tiles_f16(3, 200, 7, 12, 1);
    tiles_bf16(33, 77, 70, 0, 3);
    // K = 3072 in 4 shares of 768 (the FFN output's split); K = 328: 6 chunks of 64 in 4 shares
    // of 2 (the last empty), the last chunk partial.
    tiles_bf16(20, 3072, 72, 0, 4);
    tiles_f16(70, 328, 65, 0, 4);
    // The k-64 128x128 kernels: ragged M, N (two block rows/columns), K = 136 (a partial last k
    // tile), K = 77 (plain stores), act 2 and 12; split-K 4 at K = 328.
    const Variant k64{"linear_forward_mma_k64", "k 32", 128, LINEAR_THREADS, MMA_T_SMEM_BYTES, MMA_T_SMEM_BYTES_K64};
    auto k64_bf16 = [&](int M, int K, int N, int act, int splits) {
        test_linear_variant<bf16>(k64, linear_forward_mma_bf16_from_bf16, linear_forward_mma_k64_bf16_from_bf16,
                                  linear_forward_mma_k64_bf16_from_bf16_to_bf16, M, K, N, act, splits);
    };
    auto k64_f16 = [&](int M, int K, int N, int act, int splits) {
        test_linear_variant<f16>(k64, linear_forward_mma_f16_from_f16, linear_forward_mma_k64_f16_from_f16,
                                 linear_forward_mma_k64_f16_from_f16_to_f16, M, K, N, act, splits);
    };
    k64_bf16(130, 136, 200, 2, 1);
    k64_f16(33, 77, 129, 12, 1);
    k64_bf16(70, 328, 65, 0, 4);
    // The 8-stage 64x64 kernels: K = 520 (9 k tiles: the ring of 8 stages wraps), K = 136 (3
    // tiles: most of the prologue's 7 stages empty, a partial last tile), K = 77 (plain stores),
    // ragged M and N over two block rows/columns, act 2 and 12; split-K 4 at K = 3072 (12 tiles
    // per share, the FFN output's) and 3 at K = 328.
    const Variant deep{"linear_forward_mma64_deep", "4 stages", 64, MMA_THREADS_SMALL, MMA_T_SMEM_BYTES_SMALL,
                       MMA_T_SMEM_BYTES_DEEP};
    auto deep_bf16 = [&](int M, int K, int N, int act, int splits) {
        test_linear_variant<bf16>(deep, linear_forward_mma64_bf16_from_bf16, linear_forward_mma64_deep_bf16_from_bf16,
                                  linear_forward_mma64_deep_bf16_from_bf16_to_bf16, M, K, N, act, splits);
    };
    auto deep_f16 = [&](int M, int K, int N, int act, int splits) {
        test_linear_variant<f16>(deep, linear_forward_mma64_f16_from_f16, linear_forward_mma64_deep_f16_from_f16,
                                 linear_forward_mma64_deep_f16_from_f16_to_f16, M, K, N, act, splits);
    };
    deep_bf16(70, 520, 130, 2, 1);
    deep_f16(65, 136, 66, 12, 1);
    deep_bf16(33, 77, 70, 0, 1);
    deep_bf16(20, 3072, 72, 0, 4);
    deep_f16(70, 328, 65, 0, 3);
    test_embeddings_project<bf16>(embeddings_project_bf16, embeddings_forward_bf16,
                                  linear_forward_mma64_bf16_from_bf16, 70, 64, 200);
    test_embeddings_project<f16>(embeddings_project_f16, embeddings_forward_f16,
                                 linear_forward_mma64_f16_from_f16, 3, 3, 64);
    test_embeddings_project<bf16>(embeddings_project_bf16, embeddings_forward_bf16,
                                  linear_forward_mma64_bf16_from_bf16, 9, 5, 72, true);
    if (quick) return;
    test_linear_from_t<bf16>(linear_forward_mma_bf16, linear_forward_mma_bf16_from_bf16, 257, 200, 130, 12);
    test_linear_from_t<f16>(linear_forward_mma_f16, linear_forward_mma_f16_from_f16, 17, 1000, 70, 0); // long K
    test_linear_from_t<bf16>(linear_forward_mma_bf16, linear_forward_mma_bf16_from_bf16, 33, 1003, 40, 1, 1);
    for (auto [M, K, N] : big) {
        test_linear<bf16>(linear_forward_mma_bf16, M, K, N, {0, 1, 12}, true, 2.0f, MMA_TILE, "linear_forward_mma_");
        test_linear<f16>(linear_forward_mma_f16, M, K, N, {0, 1, 12}, true, 2.0f, MMA_TILE, "linear_forward_mma_");
    }
    test_linear<bf16>(linear_forward_mma_bf16, 17, 1000, 70, {0}, true, 2.0f, MMA_TILE, "linear_forward_mma_"); // long K
}
