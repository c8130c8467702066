// emu_test.cpp: runs every extern "C" kernel of kernels/*.cu on the CPU emulator (cuda_emu.h)
// with the grid/block/shared memory of src/backend/cuda/launch.rs, and compares it with a
// float64 reference written here (the semantics of src/backend/cpu/reference.rs).
// attention_mma.cu is also compared with a mirror of its own roundings (see test_attention_mma).
//
// Built by run.sh from copies of kernels/ in which `extern __shared__ T x[];` is rewritten to
// EMU_DYNAMIC_SHARED(T, x) (see cuda_emu.h). All the sources share one translation unit:
// their macros (BM, BN, BK, THREADS, WARPS, MMA_*) do not collide. linear_mma.cu's mma.sync is
// emulated by mma_emu.h (warp-collective, fragment layout from the PTX ISA).
//
// Every output buffer is filled with a NaN pattern plus guard elements on both sides before
// each launch: an element left at the pattern is "unwritten", a changed guard is an
// out-of-bounds write. Error = relative Frobenius norm ||out - ref|| / ||ref||, limit 1e-5.
#include "common.cuh"
#include "linear.cu"
#include "attention.cu"
#include "embeddings.cu"
#include "gather.cu"
#include "layernorm.cu"
#include "layernorm_t.cu"
#include "linear_mma.cu"
#include "attention_mma.cu"
#include "embeddings_project.cu"
#include "linear_wgmma.cu"
#include "linear_tma.cu"
// common.cuh declares these two for host compilation (the device versions are PTX cvt asm):
// the emulator supplies them, with the exact RNE conversions of cuda_emu.h.
float to_f32(f16 x) { return __half2float(__half{x.bits}); }
float round_f16(float x) { return __half2float(__float2half_rn(x)); }

#undef BM
#undef BN
#undef BK
#undef THREADS
#undef WARPS

#include <algorithm>
#include <array>
#include <cfloat>
#include <chrono>
#include <random>
#include <type_traits>

// The launch constants of src/backend/cuda/launch.rs.
constexpr unsigned ROW_THREADS = 256;
constexpr unsigned ATTENTION_WARPS = 4;
constexpr unsigned LINEAR_TILE = 64;
constexpr unsigned LINEAR_THREADS = 256;
constexpr unsigned MMA_TILE = 128; // linear_forward_mma_*: same thread count, no dynamic smem
constexpr double TOL = 1e-5;

static std::mt19937_64 rng(20240611);
static float uni(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }
static std::vector<float> rand_vec(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> v(n);
    for (auto &x : v) x = uni(lo, hi);
    return v;
}

// ---- storage types -------------------------------------------------------------------------------
template <typename T> T store(float x);
template <> float store<float>(float x) { return x; }
// The test's own conversions (cuda_emu.h), independent of the kernels' round_bf16 / to_f32.
template <> bf16 store<bf16>(float x) { return bf16{__float2bfloat16_rn(x).bits}; }
template <> f16 store<f16>(float x) { return f16{__float2half_rn(x).bits}; }
static float load(float x) { return x; }
static float load(bf16 x) { return __bfloat162float(__nv_bfloat16{x.bits}); }
static float load(f16 x) { return __half2float(__half{x.bits}); }
template <typename T> static float round_operand(float x) { return load(store<T>(x)); }
template <typename T> const char *tname();
template <> const char *tname<float>() { return "f32"; }
template <> const char *tname<bf16>() { return "bf16"; }
template <> const char *tname<f16>() { return "f16"; }

// ---- output buffers with NaN poison and guards ---------------------------------------------------
constexpr size_t GUARD = 64;
constexpr uint32_t POISON = 0x7fc0deadu; // a quiet NaN no computation produces

struct OutBuf {
    std::vector<float> v;
    size_t n;
    explicit OutBuf(size_t n_) : v(n_ + 2 * GUARD), n(n_) { poison(); }
    void poison() { for (auto &x : v) x = emu_float(POISON); }
    float *ptr() { return v.data() + GUARD; }
    float operator[](size_t i) const { return v[GUARD + i]; }
    size_t unwritten() const {
        size_t c = 0;
        for (size_t i = 0; i < n; i++) c += emu_bits(v[GUARD + i]) == POISON;
        return c;
    }
    bool guards_intact() const {
        for (size_t i = 0; i < GUARD; i++)
            if (emu_bits(v[i]) != POISON || emu_bits(v[GUARD + n + i]) != POISON) return false;
        return true;
    }
};

// ---- results table -------------------------------------------------------------------------------
struct Result { std::string test, shape; double err; size_t unwritten; bool ok; std::string note; };
static std::vector<Result> results;

static double rel_frob(const OutBuf &out, const std::vector<double> &ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        const double d = double(out[i]) - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    if (std::isnan(num)) return NAN;
    return den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}

// Records one check: error within TOL, every element written, guards intact, no emulator report.
static void record(const std::string &test, const std::string &shape, const OutBuf &out,
                   const std::vector<double> &ref, bool launched, double tol = TOL) {
    Result r{test, shape, rel_frob(out, ref), out.unwritten(), true, ""};
    if (!launched) r.note += "launch refused; ";
    if (!out.guards_intact()) r.note += "OUT-OF-BOUNDS WRITE; ";
    if (r.unwritten) r.note += "unwritten elements; ";
    for (auto &e : emu::errors()) r.note += e + "; ";
    emu::errors().clear();
    r.ok = launched && r.note.empty() && r.err <= tol; // NaN err fails too
    results.push_back(r);
    std::printf("%-40s %-26s %10.3e %9zu  %s  %s\n", r.test.c_str(), r.shape.c_str(), r.err,
                r.unwritten, r.ok ? "ok  " : "FAIL", r.note.c_str());
    std::fflush(stdout);
}

static std::string shape(std::initializer_list<std::pair<const char *, long>> dims) {
    std::string s;
    for (auto &[k, v] : dims) s += (s.empty() ? "" : " ") + std::string(k) + "=" + std::to_string(v);
    return s;
}

// ---- references (float64, as src/backend/cpu/reference.rs and src/model/activation.rs) ---------
static double act_ref(double x, int act) {
    const double s2pi = std::sqrt(2.0 / M_PI);
    auto sigmoid = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
    switch (act) {
    case 1: return 0.5 * x * (1.0 + std::erf(x / M_SQRT2));
    case 2: return 0.5 * x * (1.0 + std::tanh(s2pi * (x + 0.044715 * x * x * x)));
    case 3: return 0.5 * x * (1.0 + std::tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)));
    case 4: return std::clamp(0.5 * x * (1.0 + std::erf(x / M_SQRT2)), -10.0, 10.0);
    case 5: return x * sigmoid(1.702 * x);
    case 6: return x * sigmoid(x);
    case 7: return std::max(x, 0.0);
    case 8: return std::clamp(x, 0.0, 6.0);
    case 9: return std::max(x, 0.0) * std::max(x, 0.0);
    case 10: return sigmoid(x);
    case 11: return std::tanh(x);
    case 12: return x * std::tanh(x > 20.0 ? x : std::log1p(std::exp(x)));
    default: return x;
    }
}

static void layernorm_ref(double *out, const std::vector<double> &x, const std::vector<float> &w,
                          const std::vector<float> &b, float eps) {
    const double c = double(x.size());
    double mean = 0, var = 0;
    for (double v : x) mean += v;
    mean /= c;
    for (double v : x) var += (v - mean) * (v - mean);
    var /= c;
    const double rstd = 1.0 / std::sqrt(var + double(eps));
    for (size_t i = 0; i < x.size(); i++) out[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

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
        int L = 0; // the kernel's length rule
        for (int j = 0; j < S; j++)
            if (mask[size_t(b) * S + j] > -FLT_MAX) L = j + 1;
        if (L == 0) L = S;
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
                std::vector<double> p(S);
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < S; j++) {
                    p[j] = dot(j) * (1.0 / std::sqrt(double(D))) + double(mask[size_t(b) * S + j]);
                    mx = std::max(mx, p[j]);
                }
                for (auto &x : p) sum += (x = std::exp(x - mx));
                for (int c = 0; c < D; c++) {
                    double acc = 0;
                    for (int j = 0; j < S; j++) acc += p[j] / sum * vat(j, c);
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

// ---- the emulator's own 16-bit conversions, against the compiler's _Float16 and a slow RNE --------
static void test_conversions() {
    size_t bad_h = 0, bad_b = 0, bad_k = 0, n = 0;
    auto slow_bf16 = [](float f) -> uint16_t { // nearest of the two truncations, ties to even
        const uint32_t u = emu_bits(f);
        if (std::isnan(f)) return uint16_t((u >> 16) | 0x40);
        const uint16_t lo = uint16_t(u >> 16), hi = uint16_t(lo + 1);
        auto val = [](uint16_t b) { // 0x7f80 counts as 2^128 when rounding, as in IEEE
            return (b & 0x7fff) == 0x7f80 ? ((b & 0x8000) ? -0x1p128 : 0x1p128)
                                          : double(emu_float(uint32_t(b) << 16));
        };
        if (std::isinf(f)) return lo;
        const double dlo = std::fabs(val(lo) - f), dhi = std::fabs(val(hi) - f);
        if (dlo < dhi) return lo;
        if (dhi < dlo) return hi;
        return (lo & 1) ? hi : lo;
    };
    auto check = [&](uint32_t u) {
        const float f = emu_float(u);
        n++;
        _Float16 h = (_Float16)f;
        uint16_t hb; std::memcpy(&hb, &h, 2);
        const uint16_t mine = __float2half_rn(f).bits;
        if (std::isnan(f) ? !std::isnan(__half2float({mine})) : mine != hb) bad_h++;
        if (!std::isnan(f) && emu_bits(__half2float({hb})) != emu_bits(float(h))) bad_h++;
        if (__float2bfloat16_rn(f).bits != slow_bf16(f)) bad_b++;
        // The kernels' own bf16 code (common.cuh: round_bf16, to_f32(bf16)) against the above.
        const float want = __bfloat162float(__float2bfloat16_rn(f));
        const float got = round_to<bf16>(f);
        if (std::isnan(f) ? !std::isnan(got) : emu_bits(got) != emu_bits(want)) bad_k++;
        if (emu_bits(to_f32(bf16{uint16_t(u >> 16)})) != (u & 0xffff0000u)) bad_k++;
    };
    for (uint64_t u = 0; u < (1ull << 32); u += 9973) check(uint32_t(u));
    for (uint32_t e : {0x33000000u, 0x38800000u, 0x477fe000u, 0x477ff000u, 0x7f7fffffu, 0x7f800000u})
        for (int d = -4096; d <= 4096; d++) check(e + d), check((e + d) | 0x80000000u);
    std::vector<double> zero(1, 0.0);
    OutBuf dummy(1);
    dummy.ptr()[0] = float(bad_h + bad_b);
    record("emulator f16/bf16 RNE self-test", shape({{"values", long(n)}}), dummy, zero, true, 0.0);
    OutBuf dummy2(1);
    dummy2.ptr()[0] = float(bad_k);
    record("common.cuh round_bf16/to_f32(bf16)", shape({{"values", long(n)}}), dummy2, zero, true, 0.0);
}

// ---- the emulator's checks, on small kernels written to break the rules ------------------------
__global__ void selftest_warp_reduce(float *out) { // warp_sum / warp_max / block_sum values
    __shared__ double scratch[32];
    const float s = warp_sum(float(threadIdx.x & 31)), m = warp_max(float(threadIdx.x & 31));
    const double b = block_sum(double(threadIdx.x), scratch);
    if (threadIdx.x == 0) out[0] = s, out[1] = m, out[2] = float(b);
}
__global__ void selftest_barrier_after_return(float *out) {
    if (threadIdx.x >= 32) return; // warps 1.. leave, warp 0 then waits at a block barrier
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}
__global__ void selftest_divergent_barrier(float *out) {
    if (threadIdx.x < 32) __syncthreads(); // two different barriers (deadlock or UB on a GPU)
    else __syncthreads();
    out[threadIdx.x] = 1.0f;
}
__global__ void selftest_shuffle_inactive(float *out) {
    if (threadIdx.x & 1) return; // odd lanes gone, then a full-mask shuffle
    out[threadIdx.x] = warp_sum(1.0f);
}

// Runs a kernel that breaks a rule (one block of 64 threads); the row passes when the emulator
// reports a problem containing `want`.
static void expect_report(const char *name, void (*k)(float *), const char *want,
                          unsigned threads = 64, size_t smem = 0) {
    OutBuf o(threads);
    emu::launch(k, dim3(1), dim3(threads), smem, o.ptr());
    bool found = false;
    for (auto &e : emu::errors()) found |= e.find(want) != std::string::npos;
    const std::string first = emu::errors().empty() ? "nothing reported" : emu::errors()[0];
    emu::errors().clear();
    const std::string block = "block=" + std::to_string(threads);
    results.push_back({name, block, 0.0, 0, found, first});
    std::printf("%-40s %-26s %10s %9s  %s  %s\n", name, block.c_str(), "-", "-", found ? "ok  " : "FAIL",
                first.c_str());
}

static void test_emulator() {
    // Values: warp_sum(0..31) = 496, warp_max = 31, block_sum(0..255) = 32640.
    OutBuf out(3);
    bool ok = emu::launch(selftest_warp_reduce, dim3(2), dim3(256), 0, out.ptr());
    record("emulator: warp/block reductions", "block=256", out, {496.0, 31.0, 32640.0}, ok, 0.0);
    // Each of these must be reported by the emulator (the row passes when it is).
    expect_report("emulator: detects barrier after return", selftest_barrier_after_return, "exited");
    expect_report("emulator: detects divergent barrier", selftest_divergent_barrier, "divergent");
    expect_report("emulator: detects shuffle, exited lanes", selftest_shuffle_inactive, "exited");
}

// ---- the mma.m16n8k16 emulation alone (mma_emu.h), against a plain matmul ----------------------
// Loads the fragments with the PTX ISA's per-element formulas (section 9.7.14.5.8, "Matrix
// Fragments for mma.m16n8k16 with floating point type"), written out independently of both
// mma_emu.h and linear_mma.cu. Warp w of block x works on tile x * warps + w: D = C, then
// `steps` times D = A_s B_s + D (consecutive mmas exercise the double-buffered exchange).
// a: [tiles][steps][16][16] row-major, b: [tiles][steps][16 k][8 n], c, d: [tiles][16][8].
template <typename T>
__global__ void selftest_mma(float *d, const uint16_t *a, const uint16_t *b, const float *c,
                             int steps) {
    const unsigned lane = threadIdx.x % 32, tile = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const unsigned groupID = lane >> 2, threadID_in_group = lane % 4;
    auto c_row = [&](unsigned i) { return i < 2 ? groupID : groupID + 8; };
    auto c_col = [&](unsigned i) { return threadID_in_group * 2 + (i & 0x1); };
    float acc[4];
    for (unsigned i = 0; i < 4; i++) acc[i] = c[tile * 128 + c_row(i) * 8 + c_col(i)];
    for (int s = 0; s < steps; s++) {
        const uint16_t *A = a + (size_t(tile) * steps + s) * 256, *B = b + (size_t(tile) * steps + s) * 128;
        unsigned ra[4] = {0, 0, 0, 0}, rb[2] = {0, 0};
        for (unsigned i = 0; i < 8; i++) { // a_i: element i of 8, low to high, two per register
            const unsigned row = (i < 2 || (4 <= i && i < 6)) ? groupID : groupID + 8;
            const unsigned col = i < 4 ? threadID_in_group * 2 + (i & 0x1)
                                       : threadID_in_group * 2 + (i & 0x1) + 8;
            ra[i / 2] |= unsigned(A[row * 16 + col]) << (16 * (i % 2));
        }
        for (unsigned i = 0; i < 4; i++) { // b_i
            const unsigned row = i < 2 ? threadID_in_group * 2 + (i & 0x1)
                                       : threadID_in_group * 2 + (i & 0x1) + 8;
            const unsigned col = groupID;
            rb[i / 2] |= unsigned(B[row * 8 + col]) << (16 * (i % 2));
        }
        mma_m16n8k16<T>(acc, ra, rb);
    }
    for (unsigned i = 0; i < 4; i++) d[tile * 128 + c_row(i) * 8 + c_col(i)] = acc[i];
}
__global__ void selftest_mma_exited(float *out) { // odd lanes gone, then a warp-wide mma
    if (threadIdx.x & 1) return;
    float c[4] = {0, 0, 0, 0};
    const unsigned a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    mma_m16n8k16<bf16>(c, a, b);
    out[threadIdx.x] = c[0];
}
__global__ void selftest_mma_divergent(float *out) { // two different mma instructions
    float c[4] = {0, 0, 0, 0};
    const unsigned a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    if (threadIdx.x & 1) mma_m16n8k16<bf16>(c, a, b);
    else mma_m16n8k16<f16>(c, a, b);
    out[threadIdx.x] = c[0];
}
__global__ void selftest_mma_divergent_same(float *out) { // one mma, two call sites
    float c[4] = {0, 0, 0, 0};
    const unsigned a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    if (threadIdx.x & 1) { // different code after each call, so g++ cannot merge the two calls
        mma_m16n8k16<bf16>(c, a, b);
        out[threadIdx.x] = c[0];
    } else {
        mma_m16n8k16<bf16>(c, a, b);
        out[threadIdx.x] = 2.0f * c[1] + 1.0f;
    }
}

// cp.async (cuda_emu.h): a copy lands at the issuing thread's wait, not before; src_bytes < 16
// zero-fills. out[3t + 0..2] = before the wait (-1), after it (src[4t]), the zero-filled word (0).
__global__ void selftest_cp_async(float *out, const float *src) {
    __shared__ __align__(16) float buf[64 * 4];
    const unsigned t = threadIdx.x;
    for (int i = 0; i < 4; i++) buf[4 * t + i] = -1.0f;
    cp_async16(&buf[4 * t], src + 4 * t, 16);
    cp_async_commit();
    out[3 * t] = buf[4 * t];
    cp_async_wait<0>();
    out[3 * t + 1] = buf[4 * t];
    cp_async16(&buf[4 * t], src + 4 * t, 4);
    cp_async_commit();
    cp_async_wait<0>();
    out[3 * t + 2] = buf[4 * t + 1];
}
__global__ void selftest_cp_async_pending(float *out) { // exits with a copy in flight
    __shared__ __align__(16) float buf[64 * 4];
    cp_async16(&buf[4 * threadIdx.x], out + 4 * (threadIdx.x & ~3u), 16);
    out[threadIdx.x] = 1.0f;
}

// ldmatrix.x4 (mma_emu.h) against the PTX ISA's description, written out here independently:
// lane 8m + r points at row r of matrix m; lane l receives in d[m] the two 16-bit elements
// 2(l%4), 2(l%4)+1 of row l/4 of matrix m. The rows are scattered (row r of matrix m lives at
// shared row (5m + 3r) % 32) so that a wrong address routing shows. Shared row q holds the
// values 1000q + c, c = 0..7. out[32 lane + 4 m + ...]: lo and hi halves, as floats.
__global__ void selftest_ldmatrix(float *out) {
    __shared__ __align__(16) uint16_t rows[32][8];
    const unsigned lane = threadIdx.x % 32;
    for (unsigned c = 0; c < 8; c++) rows[lane][c] = uint16_t((1000 * lane + c) % 65536);
    __syncthreads();
    const unsigned m = lane / 8, r = lane % 8;
    unsigned d[4];
    ldmatrix_x4(d, &rows[(5 * m + 3 * r) % 32][0]);
    for (unsigned k = 0; k < 4; k++) {
        out[lane * 8 + 2 * k] = float(d[k] & 0xffffu);
        out[lane * 8 + 2 * k + 1] = float(d[k] >> 16);
    }
}

static void test_ldmatrix() {
    OutBuf out(256);
    const bool ok = emu::launch(selftest_ldmatrix, dim3(1), dim3(32), 0, out.ptr());
    std::vector<double> ref(256);
    for (unsigned l = 0; l < 32; l++)
        for (unsigned m = 0; m < 4; m++) {
            const unsigned row = l / 4, q = (5 * m + 3 * row) % 32; // shared row of (m, row)
            for (unsigned e = 0; e < 2; e++) ref[l * 8 + 2 * m + e] = double((1000 * q + 2 * (l % 4) + e) % 65536);
        }
    record("emulator: ldmatrix.x4 per the ISA", "warp=1", out, ref, ok, 0.0);
}

static void test_cp_async() {
    std::vector<float> src = rand_vec(256);
    OutBuf out(192);
    const bool ok = emu::launch(selftest_cp_async, dim3(1), dim3(64), 0, out.ptr(), src.data());
    std::vector<double> ref(192);
    for (int t = 0; t < 64; t++) ref[3 * t] = -1.0, ref[3 * t + 1] = src[4 * t], ref[3 * t + 2] = 0.0;
    record("emulator: cp.async lands at its wait", "block=64", out, ref, ok, 0.0);
    expect_report("emulator: detects cp.async pending at exit", selftest_cp_async_pending, "pending");
}

// integers: small integer entries (exact in bf16 and f16, and every sum exact in f32): tol 0.
template <typename T> static void test_mma_unit(bool integers) {
    const int tiles = 4, steps = 3; // grid 2 x 64 threads
    std::vector<uint16_t> a(size_t(tiles) * steps * 256), b(size_t(tiles) * steps * 128);
    std::vector<float> c(size_t(tiles) * 128);
    auto draw = [&](float lo, float hi) {
        return integers ? float(int(rng() % unsigned(hi - lo + 1)) + int(lo)) : uni(lo, hi);
    };
    for (auto &x : a) x = store<T>(draw(-8, 8)).bits;
    for (auto &x : b) x = store<T>(draw(-8, 8)).bits;
    for (auto &x : c) x = draw(-100, 100);
    std::vector<double> ref(c.size());
    for (int t = 0; t < tiles; t++)
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++) {
                double s = c[size_t(t) * 128 + m * 8 + n];
                for (int st = 0; st < steps; st++)
                    for (int k = 0; k < 16; k++)
                        s += double(load(T{a[(size_t(t) * steps + st) * 256 + m * 16 + k]})) *
                             double(load(T{b[(size_t(t) * steps + st) * 128 + k * 8 + n]}));
                ref[size_t(t) * 128 + m * 8 + n] = s;
            }
    OutBuf out(c.size());
    const bool ok = emu::launch(selftest_mma<T>, dim3(2), dim3(64), 0, out.ptr(), a.data(),
                                b.data(), c.data(), steps);
    record(std::string("emulator: mma.m16n8k16 ") + tname<T>() + (integers ? " (integers)" : ""),
           shape({{"tiles", tiles}, {"steps", steps}}), out, ref, ok, integers ? 0.0 : 1e-6);
}

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

// linear_forward_wgmma{,64}_* (sm_90a: wgmma from 128-byte swizzled stages, wgmma_emu.h) against
// the mma.sync kernels of the same tile: bit for bit (each output is the same chain of 16-k steps
// in the same order, and the emulator rounds both instructions' steps alike), for f32 and T
// outputs and split-K partials. `offset` 1: the activation one element past a 16-byte boundary
// (A staged with plain stores into the swizzled layout).
template <typename T>
static void test_linear_wgmma(void (*mma)(float *, const T *, const T *, const float *, int, int, int, int),
                              void (*wg)(float *, const T *, const T *, const float *, int, int, int, int),
                              void (*wg_to)(T *, const T *, const T *, const float *, int, int, int, int),
                              int tile_m, int tile_n, int M, int K, int N, int act, int splits, int offset = 0) {
    auto [inp0, w, bias] = t_product<T>(M, K, N);
    std::vector<T> inp(inp0.size() + 8);
    std::copy(inp0.begin(), inp0.end(), inp.begin() + offset);
    const bool small = tile_m == 64;
    const unsigned threads = small ? MMA_THREADS_SMALL : LINEAR_THREADS;
    const size_t mma_smem = small ? MMA_T_SMEM_BYTES_SMALL : MMA_T_SMEM_BYTES;
    const size_t wg_smem = small ? WG_SMEM_BYTES_SMALL : tile_n == 256 ? WG_SMEM_BYTES_WIDE : WG_SMEM_BYTES;
    const size_t mn = size_t(M) * N * splits;
    auto grid = [&](int tn) { return dim3((N + tn - 1) / tn, (M + tile_m - 1) / tile_m, splits); };
    const std::string t = tname<T>(),
                      kn = std::string("linear_forward_wgmma") + (small ? "64_" : tile_n == 256 ? "_wide_" : "_") + t + "_from_" + t;
    const std::string sh = shape({{"M", M}, {"K", K}, {"N", N}, {"act", act}, {"splits", splits}}) + (offset ? " +1" : "");
    OutBuf want(mn), got(mn);
    bool ok = emu::launch(mma, grid(tile_m), dim3(threads), mma_smem, want.ptr(), inp.data() + offset, w.data(),
                          bias.data(), M, K, N, act);
    ok &= emu::launch(wg, grid(tile_n), dim3(threads), wg_smem, got.ptr(), inp.data() + offset, w.data(),
                      bias.data(), M, K, N, act);
    std::vector<double> same(mn);
    for (size_t i = 0; i < mn; i++) same[i] = want[i];
    record(kn + " == mma.sync", sh, got, same, ok, 0.0);
    if (splits > 1) return;
    std::vector<T> got_t(mn, T{0xffff});
    const bool ok_t = emu::launch(wg_to, grid(tile_n), dim3(threads), wg_smem, got_t.data(), inp.data() + offset,
                                  w.data(), bias.data(), M, K, N, act);
    record_rounded(kn + "_to_" + t, sh, got_t, got.ptr(), mn, ok && ok_t);
}

// Dynamic shared memory from its first 1024-byte boundary (wgmma's swizzle atoms).
static unsigned short *wg_aligned_smem() {
    EMU_DYNAMIC_SHARED(unsigned short, s);
    return reinterpret_cast<unsigned short *>((reinterpret_cast<uintptr_t>(s) + 1023) & ~uintptr_t(1023));
}
// The self-tests' operands: an A and a W stage of 64 rows x 64 k at wg_aligned_smem(), every
// element `fill`, written, fenced for wgmma and past a barrier.
static unsigned short *wg_selftest_stages(unsigned short fill) {
    unsigned short *base = wg_aligned_smem();
    for (int i = threadIdx.x; i < 2 * 64 * 64; i += 128) base[i] = fill;
    fence_proxy_async_shared();
    __syncthreads();
    return base;
}

// The emulator's wgmma checks: a kernel that breaks one rule must be reported.
static void selftest_wgmma_no_fence(float *out) { // no wgmma_fence before the product
    unsigned short *base = wg_selftest_stages(0);
    float d[8][4] = {};
    const unsigned long long a = wgmma_desc(smem_u32(base)), b = wgmma_desc(smem_u32(base + 64 * 64));
    wgmma_k16<bf16, 64>(d, a, b);
    wgmma_commit();
    wgmma_wait<0>();
    out[threadIdx.x] = d[0][0];
}
static void selftest_wgmma_overwrite(float *out) { // an operand stage written before the wait
    unsigned short *base = wg_selftest_stages(0x3f80); // 1.0 in bf16
    float d[8][4] = {};
    const unsigned long long a = wgmma_desc(smem_u32(base)), b = wgmma_desc(smem_u32(base + 64 * 64));
    wgmma_fence();
    wgmma_k16<bf16, 64>(d, a, b);
    wgmma_commit();
    __syncthreads();
    for (int i = threadIdx.x; i < 64 * 64; i += 128) base[i] = 0; // the A stage, still in use
    __syncthreads();
    wgmma_wait<0>();
    out[threadIdx.x] = d[0][0];
}
static void selftest_wgmma_pending(float *out) { // exits with a group pending
    unsigned short *base = wg_selftest_stages(0);
    float d[8][4] = {};
    wgmma_fence();
    wgmma_k16<bf16, 64>(d, wgmma_desc(smem_u32(base)), wgmma_desc(smem_u32(base + 64 * 64)));
    wgmma_commit();
    out[threadIdx.x] = 0.0f;
}

// The model's reading of the ISA on one m64n64k16 against a product written out here: A [64, 16]
// and B [64 n, 16 k] placed by the swizzle formula of wgmma.cuh's comment (chunk c of row r at
// chunk c ^ (r % 8) of 128-byte rows), at the k16 step j of a 64-k tile (start address + 32 j
// bytes); D from the fragment layout. Values are small integers: every sum is exact.
static std::vector<float> wg_unit_a, wg_unit_b;
static void wgmma_unit_kernel(float *out, int j) {
    unsigned short *base = wg_aligned_smem();
    if (threadIdx.x == 0) {
        for (int i = 0; i < 2 * 64 * 64; i++) base[i] = 0x7fc0; // NaN: only the k16 step j is read
        for (int r = 0; r < 64; r++)
            for (int k = 0; k < 16; k++) {
                const int kk = 16 * j + k, at = r * 64 + (((kk / 8) ^ (r % 8)) * 8) + kk % 8;
                base[at] = __float2bfloat16_rn(wg_unit_a[r * 16 + k]).bits;
                base[64 * 64 + at] = __float2bfloat16_rn(wg_unit_b[r * 16 + k]).bits;
            }
    }
    fence_proxy_async_shared();
    __syncthreads();
    float d[8][4];
    for (int i = 0; i < 8; i++)
        for (int c = 0; c < 4; c++) d[i][c] = 0.5f;
    wgmma_fence();
    wgmma_k16<bf16, 64>(d, wgmma_desc(smem_u32(base)) + j * WGMMA_DESC_K16_STEP,
                        wgmma_desc(smem_u32(base + 64 * 64)) + j * WGMMA_DESC_K16_STEP);
    wgmma_commit();
    wgmma_wait<0>();
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int i = 0; i < 8; i++)
        for (int c = 0; c < 4; c++)
            out[(16 * w + lane / 4 + 8 * (c / 2)) * 64 + 8 * i + 2 * (lane % 4) + c % 2] = d[i][c];
}
static void test_wgmma_unit() {
    for (int j = 0; j < 4; j++) {
        wg_unit_a.resize(64 * 16);
        wg_unit_b.resize(64 * 16);
        for (auto &x : wg_unit_a) x = float(int(uni(-4.0f, 4.0f)));
        for (auto &x : wg_unit_b) x = float(int(uni(-4.0f, 4.0f)));
        OutBuf out(64 * 64);
        std::vector<double> ref(64 * 64);
        for (int m = 0; m < 64; m++)
            for (int n = 0; n < 64; n++) {
                double s = 0.5;
                for (int k = 0; k < 16; k++) s += double(wg_unit_a[m * 16 + k]) * wg_unit_b[n * 16 + k];
                ref[m * 64 + n] = s;
            }
        const bool ok = emu::launch(wgmma_unit_kernel, dim3(1), dim3(128), 2 * 64 * 64 * 2 + 1024, out.ptr(), j);
        record("emulator: wgmma m64n64k16 (swizzle, D layout)", "k16 step " + std::to_string(j), out, ref, ok, 0.0);
    }
}

// tests/gpu/wgmma.rs wgmma_layout_probes, on the 64x64 kernel: its exact expected values, checked here
// so that a failure on a GPU is the hardware's reading of the layout, not the probe's.
static void test_wgmma_probes() {
    const int M = 64, K = 64, N = 64;
    std::vector<f16> one_hot(M * K), first_k(M * K), w_k(N * K), w_row(N * K), w_first(N * K);
    for (int i = 0; i < M * K; i++) {
        one_hot[i] = store<f16>(float(i % K == (i / K) % 64));
        first_k[i] = store<f16>(i % K == 0 ? float((i / K) % 1024) : 0.0f);
        w_k[i] = store<f16>(float(i % K));
        w_row[i] = store<f16>(float((i / K) % 1024));
        w_first[i] = store<f16>(i % K == 0 ? 1.0f : 0.0f);
    }
    const std::vector<std::tuple<const char *, std::vector<f16> *, std::vector<f16> *, int>> probes = {
        {"k read", &one_hot, &w_k, 0}, {"weight row", &one_hot, &w_row, 1}, {"activation row", &first_k, &w_first, 2}};
    for (auto [what, a, w, kind] : probes) {
        OutBuf out(M * N);
        std::vector<double> want(M * N);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) want[m * N + n] = kind == 0 ? m % 64 : kind == 1 ? n % 1024 : m % 1024;
        const bool ok = emu::launch(linear_forward_wgmma64_f16_from_f16, dim3(1), dim3(128), WG_SMEM_BYTES_SMALL,
                                    out.ptr(), a->data(), w->data(), (const float *)nullptr, M, K, N, 0);
        record(std::string("wgmma layout probe: ") + what, "64x64", out, want, ok, 0.0);
    }
}

static void opt_in_wgmma() { // these kernels load on sm_90 only
    const size_t sm90 = 227 * 1024;
    emu::opt_in_dynamic_smem(linear_forward_wgmma_bf16_from_bf16, WG_SMEM_BYTES, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_f16_from_f16, WG_SMEM_BYTES, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_bf16_from_bf16_to_bf16, WG_SMEM_BYTES, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_f16_from_f16_to_f16, WG_SMEM_BYTES, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma64_bf16_from_bf16, WG_SMEM_BYTES_SMALL, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma64_f16_from_f16, WG_SMEM_BYTES_SMALL, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma64_bf16_from_bf16_to_bf16, WG_SMEM_BYTES_SMALL, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma64_f16_from_f16_to_f16, WG_SMEM_BYTES_SMALL, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_wide_bf16_from_bf16, WG_SMEM_BYTES_WIDE, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_wide_f16_from_f16, WG_SMEM_BYTES_WIDE, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_wide_bf16_from_bf16_to_bf16, WG_SMEM_BYTES_WIDE, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_wide_f16_from_f16_to_f16, WG_SMEM_BYTES_WIDE, sm90);
}

// A self-test kernel of one warpgroup with two 64 x 64 stages (wg_selftest_stages) must be
// reported with `want`.
static void expect(const char *name, void (*k)(float *), const char *want) {
    expect_report(name, k, want, 128, 2 * 64 * 64 * 2 + 1024);
}

static void test_wgmma(bool quick) {
    opt_in_products(); // the mma.sync kernels compared with
    opt_in_wgmma();
    test_wgmma_unit();
    test_wgmma_probes();
    expect("emulator: detects wgmma without fence", selftest_wgmma_no_fence, "without a wgmma.fence");
    expect("emulator: detects wgmma operand overwrite", selftest_wgmma_overwrite, "changed between");
    expect("emulator: detects wgmma left pending", selftest_wgmma_pending, "still pending");
    auto large_bf16 = [](int M, int K, int N, int act, int splits, int offset = 0) {
        test_linear_wgmma<bf16>(linear_forward_mma_bf16_from_bf16, linear_forward_wgmma_bf16_from_bf16,
                                linear_forward_wgmma_bf16_from_bf16_to_bf16, 128, 128, M, K, N, act, splits, offset);
    };
    auto small_f16 = [](int M, int K, int N, int act, int splits, int offset = 0) {
        test_linear_wgmma<f16>(linear_forward_mma64_f16_from_f16, linear_forward_wgmma64_f16_from_f16,
                               linear_forward_wgmma64_f16_from_f16_to_f16, 64, 64, M, K, N, act, splits, offset);
    };
    auto small_bf16 = [](int M, int K, int N, int act, int splits, int offset = 0) {
        test_linear_wgmma<bf16>(linear_forward_mma64_bf16_from_bf16, linear_forward_wgmma64_bf16_from_bf16,
                                linear_forward_wgmma64_bf16_from_bf16_to_bf16, 64, 64, M, K, N, act, splits, offset);
    };
    // K = 520: 9 k tiles through 6 stages (the ring wraps), the last partial; M, N ragged over two
    // block rows/columns; K = 77: plain stores (K % 8 != 0); +1: a misaligned activation; split-K
    // 4 at K = 328 (6 chunks: shares of 2, 2, 2, 0).
    large_bf16(130, 520, 200, 2, 1);
    small_f16(70, 520, 129, 12, 1);
    small_bf16(65, 77, 66, 1, 1);
    small_bf16(3, 136, 7, 0, 1, 1);
    small_f16(70, 328, 65, 0, 4);
    // 128x256 tiles: N = 300 (a ragged second block column), K = 520 (9 tiles through 4
    // stages), a misaligned activation; split-K 3.
    auto wide_bf16 = [](int M, int K, int N, int act, int splits, int offset = 0) {
        test_linear_wgmma<bf16>(linear_forward_mma_bf16_from_bf16, linear_forward_wgmma_wide_bf16_from_bf16,
                                linear_forward_wgmma_wide_bf16_from_bf16_to_bf16, 128, 256, M, K, N, act, splits, offset);
    };
    wide_bf16(130, 520, 300, 2, 1);
    wide_bf16(33, 136, 260, 0, 3, 1);
    if (quick) return;
    test_linear_wgmma<f16>(linear_forward_mma_f16_from_f16, linear_forward_wgmma_wide_f16_from_f16,
                           linear_forward_wgmma_wide_f16_from_f16_to_f16, 128, 256, 70, 77, 520, 12, 1);
    test_linear_wgmma<f16>(linear_forward_mma_f16_from_f16, linear_forward_wgmma_f16_from_f16,
                           linear_forward_wgmma_f16_from_f16_to_f16, 128, 128, 33, 77, 129, 0, 1, 1);
    large_bf16(257, 1000, 130, 0, 3);
}

#include "tma_test.h"

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
    test_ldmatrix();

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

static std::string only; // --only=GROUP: run one group (conversions, emulator, linear, mma, wgmma, tma, ...)
static bool want(const char *group) { return only.empty() || only == group; }

int main(int argc, char **argv) {
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--quick") quick = true;
        else if (a.rfind("--only=", 0) == 0) only = a.substr(7);
        else { std::fprintf(stderr, "usage: emu_test [--quick] [--only=GROUP]\n"); return 2; }
    }
    const auto t0 = std::chrono::steady_clock::now();
    std::printf("%-40s %-26s %10s %9s  %s\n", "test", "shape", "rel.err", "unwritten", "ok");
    if (want("conversions")) test_conversions();
    if (want("emulator")) test_emulator();

    std::vector<int> all_acts;
    for (int a = 0; a <= 12; a++) all_acts.push_back(a);
    const std::vector<std::array<int, 3>> lin_shapes = {
        {1, 1, 1}, {3, 5, 7}, {65, 33, 129}, {64, 64, 64}, {130, 96, 200}};
    if (want("linear")) {
    for (auto [M, K, N] : lin_shapes) {
        // Every activation at every shape for f32; the 16-bit types with every activation at the
        // small shapes and a representative subset at the big ones (the emulator is slow).
        const bool big = size_t(M) * N > 4096;
        const std::vector<int> sub = {0, 1, 12};
        test_linear<float>(linear_forward_f32, M, K, N, quick && big ? sub : all_acts, true);
        test_linear<bf16>(linear_forward_bf16, M, K, N, big ? sub : all_acts, true);
        test_linear<f16>(linear_forward_f16, M, K, N, big ? sub : all_acts, true);
    }
    test_linear<float>(linear_forward_f32, 17, 1000, 70, {0, 2}, true);  // long K: blocked sums
    test_linear<bf16>(linear_forward_bf16, 17, 1000, 70, {0}, true);
    test_linear<f16>(linear_forward_f16, 5, 77, 3, {1}, false);           // null bias
    test_linear<float>(linear_forward_f32, 5, 0, 3, {0, 1}, true);        // K = 0: act(bias)
    test_linear<float>(linear_forward_f32, 9, 5, 33, all_acts, true, 30.0f); // saturated tails
    }

    if (want("embeddings"))
    for (int E : {1, 24, 128, 768, 1000}) {
        test_embeddings<float>(embeddings_forward_f32, 5, 3, E);
        test_embeddings<bf16>(embeddings_forward_bf16, 5, 3, E);
        test_embeddings<f16>(embeddings_forward_f16, 5, 3, E);
    }

    if (want("layernorm")) {
    for (int C : {1, 24, 768, 1000, 4096}) {
        test_layernorm(false, 3, C, 0.0f);
        test_layernorm(true, 3, C, 0.0f);
    }
    test_layernorm(false, 2, 1000, 1000.0f); // large mean: the f64 statistics
    test_layernorm(true, 3, 768, 0.0f, 1);   // in place: out aliases residual
    test_layernorm(true, 3, 768, 0.0f, 2);   // out aliases inp
    test_layernorm_to<bf16>(residual_layernorm_forward_to_bf16, 3, 768, true);
    test_layernorm_to<f16>(residual_layernorm_forward_to_f16, 2, 1000, false);
    test_layernorm_to<bf16>(residual_layernorm_forward_to_bf16, 3, 768, true, 4); // split-K partials
    test_layernorm_to<f16>(residual_layernorm_forward_to_f16, 2, 100, false, 3);
    // Past the loads batched per thread (LN_PARTS partials, LN_ELEMS elements): 6 partials, and
    // C = 4100 (two rounds of 4 x 256 elements, the second ragged).
    test_layernorm_to<bf16>(residual_layernorm_forward_to_bf16, 2, 1000, false, 6);
    test_layernorm_to<f16>(residual_layernorm_forward_to_f16, 2, 4100, true, 2);
    test_round_to<bf16>(round_to_bf16, 1000);
    test_round_to<f16>(round_to_f16, 77);
    }

    if (want("attention"))
    for (auto [B, S, A, D] : std::vector<std::array<int, 4>>{
             {1, 1, 1, 1}, {2, 37, 3, 16}, {1, 70, 2, 64}, {2, 33, 1, 100}, {2, 1, 2, 3}, {3, 5, 2, 8}})
        test_attention(B, S, A, D);

    if (want("mma")) test_mma(quick);
    if (want("wgmma")) test_wgmma(quick);
    if (want("tma")) test_tma(quick);
    if (want("attention_mma")) test_attention_mma_all(quick);

    if (want("gather")) {
    test_gather(7, 1, {6, 0, 3, 3});
    test_gather(7, 24, {6, 0, 3, 3});
    test_gather(5, 300, {4});
    test_gather(9, 1000, {8, 1, 0});
    }


    size_t fails = 0;
    for (auto &r : results) fails += !r.ok;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("\n%zu checks, %zu failed (%.1f s)\n", results.size(), fails, secs);
    return fails ? 1 : 0;
}
