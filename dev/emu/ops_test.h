// ops_test.h: the portable kernels (linear, embeddings, LayerNorm, attention, gather) and the
// tensor-core attention against float64 references; included by emu_test.cpp.
#pragma once

// ---- linear_forward_{f32,bf16,f16}, linear_forward_mma_{bf16,f16} --------------------------------
// tile: the block tile of launch.rs (LINEAR_TILE, or MMA_TILE for the tensor-core kernels).
template <typename T>
static void test_linear(void (*kernel)(float *, const float *, const T *, const float *, int, int,
                                       int, int),
                        int M, int K, int N, const std::vector<int> &acts, bool with_bias,
                        float in_range = 2.0f, unsigned tile = LINEAR_TILE,
                        const char *name = "linear_forward_") {
    // Pre-activations of order 1-3 (in_range 2) so every activation's interesting range is
    // exercised; a larger in_range reaches the saturated tails (mish's x > 20 branch, ...).
    const float ws = K > 0 ? std::sqrt(3.0f / float(K)) : 1.0f;
    std::vector<float> inp = rand_vec(size_t(M) * K, -in_range, in_range);
    std::vector<T> w(size_t(N) * K);
    for (auto &x : w) x = store<T>(uni(-ws, ws));
    std::vector<float> bias = rand_vec(N, -0.5f, 0.5f);
    // The reference product: operands rounded to T, then exact float64 arithmetic.
    std::vector<double> pre(size_t(M) * N);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = with_bias ? bias[n] : 0.0;
            for (int k = 0; k < K; k++)
                s += double(round_operand<T>(inp[size_t(m) * K + k])) * double(load(w[size_t(n) * K + k]));
            pre[size_t(m) * N + n] = s;
        }
    const dim3 grid((N + tile - 1) / tile, (M + tile - 1) / tile, 1);
    for (int act : acts) {
        OutBuf out(size_t(M) * N);
        const bool ok = emu::launch(kernel, grid, dim3(LINEAR_THREADS), 0, out.ptr(), inp.data(),
                                    w.data(), with_bias ? bias.data() : nullptr, M, K, N, act);
        std::vector<double> ref(pre.size());
        for (size_t i = 0; i < ref.size(); i++) ref[i] = act_ref(pre[i], act);
        record(std::string(name) + tname<T>() + (with_bias ? "" : " (no bias)") +
                   (in_range != 2.0f ? " (|x| to " + std::to_string(int(in_range)) + ")" : ""),
               shape({{"M", M}, {"K", K}, {"N", N}, {"act", act}}), out, ref, ok);
    }
}

// ---- embeddings_forward_{f32,bf16,f16} -----------------------------------------------------------
template <typename T>
static void test_embeddings(void (*kernel)(float *, const int *, const int *, const T *, const T *,
                                           const T *, const float *, const float *, int, int, int,
                                           float),
                            int M, int S, int E) {
    const int V = 11, P = S + 2, TT = 2;
    const float eps = 1e-12f;
    auto table = [&](int rows) {
        std::vector<T> t(size_t(rows) * E);
        for (auto &x : t) x = store<T>(uni(-1.0f, 1.0f));
        return t;
    };
    std::vector<T> word = table(V), pos = table(P), type = table(TT);
    std::vector<int> ids(M), types(M);
    for (int m = 0; m < M; m++) ids[m] = int(rng() % V), types[m] = int(rng() % TT);
    std::vector<float> lw = rand_vec(E, 0.5f, 1.5f), lb = rand_vec(E, -0.5f, 0.5f);
    std::vector<double> ref(size_t(M) * E);
    for (int m = 0; m < M; m++) {
        std::vector<double> x(E);
        for (int c = 0; c < E; c++)
            x[c] = double(load(word[size_t(ids[m]) * E + c])) +
                   double(load(type[size_t(types[m]) * E + c])) +
                   double(load(pos[size_t(m % S) * E + c]));
        layernorm_ref(&ref[size_t(m) * E], x, lw, lb, eps);
    }
    OutBuf out(size_t(M) * E);
    const bool ok = emu::launch(kernel, dim3(M), dim3(ROW_THREADS), size_t(E) * 4, out.ptr(),
                                ids.data(), types.data(), word.data(), pos.data(), type.data(),
                                lw.data(), lb.data(), M, S, E, eps);
    record(std::string("embeddings_forward_") + tname<T>(), shape({{"M", M}, {"S", S}, {"E", E}}),
           out, ref, ok);
}

// ---- layernorm_forward / residual_layernorm_forward ----------------------------------------------
// alias: 0 none, 1 out == residual (the in-place add & norm the header comment allows), 2 out == inp.
// A kernel's T output against its f32 counterpart's output rounded to T (RNE): bit for bit, and
// every element written (T buffers start as 0xffff, which no rounding of these outputs gives).
template <typename T>
static void record_rounded(const std::string &name, const std::string &sh, const std::vector<T> &got,
                           const float *f32_out, size_t n, bool ok) {
    OutBuf widened(n);
    std::vector<double> want(n);
    size_t unwritten = 0;
    for (size_t i = 0; i < n; i++) {
        unwritten += got[i].bits == 0xffff;
        widened.ptr()[i] = load(got[i]);
        want[i] = round_operand<T>(f32_out[i]);
    }
    if (unwritten) emu::report(name + ": " + std::to_string(unwritten) + " T elements unwritten");
    record(name + " == round(f32 out)", sh, widened, want, ok, 0.0);
}

static void test_layernorm(bool residual, int M, int C, float offset, int alias = 0) {
    const float eps = 1e-12f;
    std::vector<float> inp = rand_vec(size_t(M) * C), res = rand_vec(size_t(M) * C);
    for (auto &x : inp) x += offset;
    std::vector<float> lw = rand_vec(C, 0.5f, 1.5f), lb = rand_vec(C, -0.5f, 0.5f);
    std::vector<double> ref(size_t(M) * C);
    for (int m = 0; m < M; m++) {
        std::vector<double> x(C);
        for (int c = 0; c < C; c++)
            x[c] = double(inp[size_t(m) * C + c]) + (residual ? double(res[size_t(m) * C + c]) : 0.0);
        layernorm_ref(&ref[size_t(m) * C], x, lw, lb, eps);
    }
    OutBuf out(size_t(M) * C);
    const float *pin = inp.data(), *pres = res.data();
    if (alias) { // copy the aliased operand into the output buffer and pass it twice
        std::copy_n(alias == 1 ? res.data() : inp.data(), size_t(M) * C, out.ptr());
        (alias == 1 ? pres : pin) = out.ptr();
    }
    const size_t smem = size_t(C) * 4;
    const bool ok = residual
        ? emu::launch(residual_layernorm_forward, dim3(M), dim3(ROW_THREADS), smem, out.ptr(), pin,
                      pres, lw.data(), lb.data(), M, C, eps)
        : emu::launch(layernorm_forward, dim3(M), dim3(ROW_THREADS), smem, out.ptr(), pin,
                      lw.data(), lb.data(), M, C, eps);
    std::string name = residual ? "residual_layernorm_forward" : "layernorm_forward";
    if (alias) name += alias == 1 ? " out=residual" : " out=inp";
    record(name, shape({{"M", M}, {"C", C}, {"offset", long(offset)}}), out, ref, ok);
}

// residual_layernorm_forward_to_T: the f32 output bit for bit the plain kernel's on the partials'
// in-order sum ((p0 + p1) + p2 ..., as f32), and the T copy its rounding; `in_place` writes the f32
// output over the residual, as the scheduler does.
template <typename T>
static void test_layernorm_to(void (*kernel)(float *, T *, const float *, const float *,
                                             const float *, const float *, int, int, int, float),
                              int M, int C, bool in_place, int parts = 1) {
    const float eps = 1e-12f;
    const size_t n = size_t(M) * C, smem = size_t(C) * 4;
    std::vector<float> inp = rand_vec(n * parts), res = rand_vec(n);
    std::vector<float> lw = rand_vec(C, 0.5f, 1.5f), lb = rand_vec(C, -0.5f, 0.5f);
    std::vector<float> summed(inp.begin(), inp.begin() + n);
    for (int p = 1; p < parts; p++)
        for (size_t i = 0; i < n; i++) summed[i] += inp[p * n + i];
    OutBuf want(n), out(n);
    bool ok = emu::launch(residual_layernorm_forward, dim3(M), dim3(ROW_THREADS), smem, want.ptr(),
                          summed.data(), res.data(), lw.data(), lb.data(), M, C, eps);
    const float *pres = res.data();
    if (in_place) std::copy_n(res.data(), n, out.ptr()), pres = out.ptr();
    std::vector<T> out_t(n, T{0xffff});
    ok &= emu::launch(kernel, dim3(M), dim3(ROW_THREADS), smem, out.ptr(), out_t.data(), inp.data(),
                      pres, lw.data(), lb.data(), M, C, parts, eps);
    const std::string name = std::string("residual_layernorm_forward_to_") + tname<T>();
    const std::string sh = shape({{"M", M}, {"C", C}, {"parts", parts}}) + (in_place ? " out=residual" : "");
    std::vector<double> same(n);
    for (size_t i = 0; i < n; i++) same[i] = want[i];
    record_rounded(name, sh, out_t, want.ptr(), n, ok);
    record(name + " f32 out == residual_layernorm_forward", sh, out, same, true, 0.0);
}

// round_to_T: every element rounded (RNE), none past n written.
template <typename T>
static void test_round_to(void (*kernel)(T *, const float *, long long), long long n) {
    std::vector<float> inp = rand_vec(size_t(n), -3.0f, 3.0f);
    std::vector<T> got(size_t(n) + GUARD, T{0xffff});
    const bool ok = emu::launch(kernel, dim3(2), dim3(64), 0, got.data(), inp.data(), n);
    size_t past = 0;
    for (size_t i = size_t(n); i < got.size(); i++) past += got[i].bits != 0xffff;
    if (past) emu::report("round_to: " + std::to_string(past) + " elements written past n");
    got.resize(size_t(n));
    record_rounded(std::string("round_to_") + tname<T>(), shape({{"n", long(n)}}), got, inp.data(), size_t(n), ok);
}

// ---- attention_forward ---------------------------------------------------------------------------
// [rows, 3H]: row r is q[r], k[r], v[r] (each [rows, H]), the layout of the fused QKV product.
static std::vector<float> fuse_qkv(const std::vector<float> &q, const std::vector<float> &k,
                                   const std::vector<float> &v, size_t rows, int H) {
    std::vector<float> qkv(rows * 3 * H);
    for (size_t r = 0; r < rows; r++) {
        std::copy_n(&q[r * H], H, &qkv[r * 3 * H]);
        std::copy_n(&k[r * H], H, &qkv[r * 3 * H + H]);
        std::copy_n(&v[r * H], H, &qkv[r * 3 * H + 2 * H]);
    }
    return qkv;
}

// mask: batch 0 has its last keys padded (when S > 1), batch 1 (if any) is padded entirely.
static void test_attention(int B, int S, int A, int D) {
    const int H = A * D;
    const size_t n = size_t(B) * S * H;
    std::vector<float> q = rand_vec(n, -2, 2), k = rand_vec(n, -2, 2), v = rand_vec(n);
    std::vector<float> mask(size_t(B) * S, 0.0f);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < S; j++)
            if (b == 1 || (b == 0 && S > 1 && j >= S - std::max(1, S / 5))) mask[size_t(b) * S + j] = -FLT_MAX;
    // Reference (reference.rs: f64 scores, scale 1/sqrt(D), max-subtracted softmax).
    const double scale = 1.0 / std::sqrt(double(D));
    std::vector<double> ref(n), uniform(n);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < A; h++)
            for (int i = 0; i < S; i++) {
                std::vector<double> p(S);
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < S; j++) {
                    double dot = 0;
                    for (int c = 0; c < D; c++)
                        dot += double(q[(size_t(b) * S + i) * H + h * D + c]) * k[(size_t(b) * S + j) * H + h * D + c];
                    p[j] = dot * scale + double(mask[size_t(b) * S + j]);
                    mx = std::max(mx, p[j]);
                }
                for (auto &x : p) sum += (x = std::exp(x - mx));
                for (int c = 0; c < D; c++) {
                    double acc = 0, mean = 0;
                    for (int j = 0; j < S; j++) {
                        const double vj = v[(size_t(b) * S + j) * H + h * D + c];
                        acc += p[j] / sum * vj;
                        mean += vj / S;
                    }
                    ref[(size_t(b) * S + i) * H + h * D + c] = acc;
                    uniform[(size_t(b) * S + i) * H + h * D + c] = mean;
                }
            }
    OutBuf out(n);
    const size_t smem = ATTENTION_WARPS * size_t(S + D) * 4;
    const float fscale = float(1.0 / std::sqrt(double(D))); // as launch.rs computes it
    const dim3 grid((S + ATTENTION_WARPS - 1) / ATTENTION_WARPS, A, B);
    // q, k, v as the fused QKV product writes them: one [B*S, 3H] buffer, ld = 3H.
    const std::vector<float> qkv = fuse_qkv(q, k, v, size_t(B) * S, H);
    const bool ok = emu::launch(attention_forward, grid, dim3(ATTENTION_WARPS * 32), smem, out.ptr(),
                                qkv.data(), qkv.data() + H, qkv.data() + 2 * H, mask.data(), B, S,
                                A, D, 3 * H, fscale);
    record("attention_forward", shape({{"B", B}, {"S", S}, {"A", A}, {"D", D}}), out, ref, ok);
    if (B > 1) { // the fully padded batch row must be the plain average of V
        OutBuf part(size_t(S) * H);
        std::copy_n(out.ptr() + size_t(S) * H, size_t(S) * H, part.ptr());
        std::vector<double> want(uniform.begin() + size_t(S) * H, uniform.begin() + size_t(2) * S * H);
        record("attention_forward (masked row=mean V)", shape({{"B", B}, {"S", S}, {"A", A}, {"D", D}}),
               part, want, true);
    }
}

// ---- attention_forward_mma_{bf16,f16} (head size 64) ---------------------------------------------
// Mask patterns per sequence: 'f' full, 'l' right-padded to `len`, 'n' no real key at all,
// 'h' holes (every 7th key masked inside the length, then padding), 'e' an early run of masked
// keys (the first 70) before the real ones, then padding: the first key tile is all MASKED, and
// the second must discard it (rescale by exp(MASKED - max) = 0).
struct SeqMask { char kind; int len; };

// Two references:
//  * exact: q, k, v rounded to T, everything else float64 (what the op means at T operands);
//    limit 1e-2 for bf16, 2e-3 for f16 (P rounded to T is the difference).
//  * mirror: the kernel's own roundings in the kernel's order: f32 scores, running max and rescale
//    per 64-key tile, P rounded to T, row sums of the rounded P, keys past the length skipped;
//    the scores as the kernel's f32 chain of mma k16 steps (so no P rounding flips: one flip moved
//    a row by up to 6e-5, and a draw of the same shapes failed the earlier float(double dot)
//    mirror at 2.8e-5, 4 of 60 seeds above 2e-5). Only the sums of P V and of P differ (double
//    here, f32 there): limit 1e-6 (measured: <= 6.9e-8 over 60 seeds).
template <typename T>
static void test_attention_mma(void (*kernel)(float *, const float *, const float *, const float *,
                                              const float *, int, int, int, int, int, float),
                               void (*kernel_from)(float *, const T *, const T *, const T *,
                                                   const float *, int, int, int, int, int, float),
                               void (*kernel_from_to)(T *, const T *, const T *, const T *,
                                                      const float *, int, int, int, int, int, float),
                               int S, int A, const std::vector<SeqMask> &seqs) {
    const int B = int(seqs.size()), D = 64, H = A * D;
    const size_t n = size_t(B) * S * H;
    std::vector<float> q = rand_vec(n, -2, 2), k = rand_vec(n, -2, 2), v = rand_vec(n);
    std::vector<float> mask(size_t(B) * S, 0.0f);
    std::string kinds;
    for (int b = 0; b < B; b++) {
        kinds += seqs[b].kind;
        for (int j = 0; j < S; j++) {
            const auto [kind, len] = seqs[b];
            const bool pad = kind == 'n' || (kind != 'f' && j >= len) ||
                             (kind == 'h' && j % 7 == 3) || (kind == 'e' && j < 70);
            if (pad) mask[size_t(b) * S + j] = -FLT_MAX;
        }
    }
    // Keys past a sequence's length (the kernel's rule below) hold NaN in k and v: the kernel
    // must never let them reach a product (weight 0 times NaN is NaN), and the references skip
    // them (their weight is exactly 0 there).
    std::vector<int> lens(B);
    for (int b = 0; b < B; b++) {
        int L = 0;
        for (int j = 0; j < S; j++)
            if (mask[size_t(b) * S + j] > -FLT_MAX) L = j + 1;
        lens[b] = L == 0 ? S : L;
        for (int j = lens[b]; j < S; j++)
            for (int c = 0; c < H; c++) k[(size_t(b) * S + j) * H + c] = v[(size_t(b) * S + j) * H + c] = NAN;
    }
    auto rq = [&](const std::vector<float> &x) {
        std::vector<float> r(x.size());
        for (size_t i = 0; i < x.size(); i++) r[i] = round_operand<T>(x[i]);
        return r;
    };
    const std::vector<float> qr = rq(q), kr = rq(k), vr = rq(v);
    const float fscale = float(1.0 / std::sqrt(double(D)));
    const float log2e = 1.4426950408889634f;
    std::vector<double> exact(n), mirror(n);
    for (int b = 0; b < B; b++) {
        const int L = lens[b];
        for (int h = 0; h < A; h++)
            for (int i = 0; i < S; i++) {
                const size_t qi = (size_t(b) * S + i) * H + h * D;
                auto dot = [&](int j) {
                    double d = 0;
                    for (int c = 0; c < D; c++) d += double(qr[qi + c]) * kr[(size_t(b) * S + j) * H + h * D + c];
                    return d;
                };
                // The kernel's score: an f32 chain of four mma k16 steps (mma_emu.h: each step's
                // 16 products summed in double in k order, added to the f32 accumulator in
                // double, rounded once), so that P's roundings are the kernel's too.
                auto dot_f32 = [&](int j) {
                    float acc = 0.0f;
                    for (int c0 = 0; c0 < D; c0 += 16) {
                        double step = 0;
                        for (int c = c0; c < c0 + 16; c++)
                            step += double(qr[qi + c]) * kr[(size_t(b) * S + j) * H + h * D + c];
                        acc = float(step + double(acc));
                    }
                    return acc;
                };
                auto vat = [&](int j, int c) { return double(vr[(size_t(b) * S + j) * H + h * D + c]); };
                // exact
                std::vector<double> p(L);
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < L; j++) {
                    p[j] = dot(j) * (1.0 / std::sqrt(double(D))) + double(mask[size_t(b) * S + j]);
                    mx = std::max(mx, p[j]);
                }
                for (auto &x : p) sum += (x = std::exp(x - mx));
                for (int c = 0; c < D; c++) {
                    double acc = 0;
                    for (int j = 0; j < L; j++) acc += p[j] / sum * vat(j, c);
                    exact[qi + c] = acc;
                }
                // mirror
                float m = -INFINITY, l = 0;
                std::vector<double> o(D, 0.0);
                for (int j0 = 0; j0 < L; j0 += 64) {
                    const int j1 = std::min(L, j0 + 64);
                    std::vector<float> sc(j1 - j0);
                    float tm = -INFINITY;
                    for (int j = j0; j < j1; j++) {
                        sc[j - j0] = dot_f32(j) * fscale + mask[size_t(b) * S + j];
                        tm = std::max(tm, sc[j - j0]);
                    }
                    const float mn = std::max(m, tm), alpha = exp2f((m - mn) * log2e);
                    m = mn;
                    l *= alpha;
                    for (auto &x : o) x *= alpha;
                    for (int j = j0; j < j1; j++) {
                        const float pj = round_operand<T>(exp2f((sc[j - j0] - m) * log2e));
                        l += pj;
                        for (int c = 0; c < D; c++) o[c] += double(pj) * vat(j, c);
                    }
                }
                for (int c = 0; c < D; c++) mirror[qi + c] = o[c] / l;
            }
    }
    const std::vector<float> qkv = fuse_qkv(q, k, v, size_t(B) * S, H);
    OutBuf out(n);
    const dim3 grid((S + 63) / 64, A, B); // launch.rs: ATTENTION_MMA_ROWS query rows per block
    const bool ok = emu::launch(kernel, grid, dim3(128), 0, out.ptr(), qkv.data(), qkv.data() + H,
                                qkv.data() + 2 * H, mask.data(), B, S, A, D, 3 * H, fscale);
    const std::string sh = shape({{"S", S}, {"A", A}}) + " seqs=" + kinds;
    const std::string name = std::string("attention_forward_mma_") + tname<T>();
    record(name + " vs exact", sh, out, exact, ok, std::is_same_v<T, bf16> ? 1e-2 : 2e-3);
    OutBuf again(n); // the same output against the mirror (emulator reports already consumed)
    std::copy_n(out.ptr(), n, again.ptr());
    record(name + " vs mirror", sh, again, mirror, true, 1e-6);
    // The _from_ kernel on q, k, v already stored as T (what linear_forward_mma_*_to_* writes):
    // the same bits as the f32 kernel, which rounds them itself.
    std::vector<T> qkv_t(qkv.size());
    for (size_t i = 0; i < qkv.size(); i++) qkv_t[i] = store<T>(qkv[i]);
    OutBuf from_t(n);
    const bool ok_t = emu::launch(kernel_from, grid, dim3(128), 0, from_t.ptr(), qkv_t.data(),
                                  qkv_t.data() + H, qkv_t.data() + 2 * H, mask.data(), B, S, A, D,
                                  3 * H, fscale);
    std::vector<double> same(n);
    for (size_t i = 0; i < n; i++) same[i] = out[i];
    record(name + "_from_" + tname<T>() + " == f32-input", sh, from_t, same, ok_t, 0.0);
    // The same values one element off 16-byte alignment: the element-wise staging (above, the
    // 16-byte loads of aligned rows), the same bits.
    std::vector<T> skewed(qkv_t.size() + 1);
    std::copy(qkv_t.begin(), qkv_t.end(), skewed.begin() + 1);
    OutBuf from_skewed(n);
    const bool ok_s = emu::launch(kernel_from, grid, dim3(128), 0, from_skewed.ptr(), skewed.data() + 1,
                                  skewed.data() + 1 + H, skewed.data() + 1 + 2 * H, mask.data(), B, S,
                                  A, D, 3 * H, fscale);
    record(name + "_from_" + tname<T>() + " == f32-input", sh + " +1", from_skewed, same, ok_s, 0.0);
    // The _from_ _to_ kernel: its output stored as T (what the output projection reads).
    std::vector<T> to_t(n, T{0xffff});
    const bool ok_to = emu::launch(kernel_from_to, grid, dim3(128), 0, to_t.data(), qkv_t.data(),
                                   qkv_t.data() + H, qkv_t.data() + 2 * H, mask.data(), B, S, A, D,
                                   3 * H, fscale);
    record_rounded(name + "_from_" + tname<T>() + "_to_" + tname<T>(), sh, to_t, out.ptr(), n, ok_to);
}

static void test_attention_mma_all(bool quick) {
    for (int t = 0; t < 2; t++) {
        auto run = [&](int S, int A, const std::vector<SeqMask> &seqs) {
            if (t == 0)
                test_attention_mma<bf16>(attention_forward_mma_bf16, attention_forward_mma_bf16_from_bf16,
                                         attention_forward_mma_bf16_from_bf16_to_bf16, S, A, seqs);
            else test_attention_mma<f16>(attention_forward_mma_f16, attention_forward_mma_f16_from_f16,
                                         attention_forward_mma_f16_from_f16_to_f16, S, A, seqs);
        };
        run(1, 1, {{'f', 0}});
        run(37, 2, {{'f', 0}, {'l', 20}, {'n', 0}});   // B*A = 6, one partial query block
        run(64, 1, {{'l', 1}, {'h', 61}});             // a sequence padded to length 1
        if (quick && t == 1) continue;
        run(150, 2, {{'h', 140}, {'e', 130}});         // 3 key tiles, the first one all MASKED
    }
}

// ---- gather_rows ---------------------------------------------------------------------------------
static void test_gather(int M, int C, std::vector<int> rows) {
    std::vector<float> inp = rand_vec(size_t(M) * C);
    const int N = int(rows.size());
    std::vector<double> ref(size_t(N) * C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) ref[size_t(n) * C + c] = inp[size_t(rows[n]) * C + c];
    OutBuf out(size_t(N) * C);
    const bool ok = emu::launch(gather_rows, dim3(N), dim3(ROW_THREADS), 0, out.ptr(), inp.data(),
                                rows.data(), N, C);
    record("gather_rows", shape({{"M", M}, {"N", N}, {"C", C}}), out, ref, ok, 0.0); // exact copy
}
