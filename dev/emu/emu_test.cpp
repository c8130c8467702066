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
#include "linear_mma_ln.cu"
#include "linear_mma_grid_ln.cu"
#include "layer_resident.cu"
// common.cuh declares these three for host compilation (the device versions are PTX cvt asm):
// the emulator supplies them: the exact RNE conversions of cuda_emu.h, its launch's shared memory.
float to_f32(f16 x) { return __half2float(__half{x.bits}); }
float round_f16(float x) { return __half2float(__float2half_rn(x)); }
unsigned dynamic_smem_bytes() { return unsigned(emu::dyn_smem_bytes); }

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

// Records a launch that must not write: `written` elements of its outputs changed (0 passes),
// no emulator report.
static void record_no_write(const std::string &test, const std::string &shape, bool launched,
                            size_t written) {
    std::string note = written ? std::to_string(written) + " elements written; " : "";
    if (!launched) note += "launch refused; ";
    for (auto &e : emu::errors()) note += e + "; ";
    emu::errors().clear();
    const bool pass = note.empty();
    results.push_back({test, shape, 0.0, 0, pass, note});
    std::printf("%-40s %-26s %10s %9s  %s  %s\n", test.c_str(), shape.c_str(), "-", "-",
                pass ? "ok  " : "FAIL", note.c_str());
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

// The checks, by family (each a header of test functions; main below picks the groups).
#include "ops_test.h"
#include "emulator_test.h"
#include "mma_test.h"
#include "wgmma_test.h"
#include "tma_test.h"
#include "ln_fused_test.h"
#include "grid_ln_test.h"
#include "probe_test.h"
#include "resident_test.h"

// --only=GROUP[,GROUP...]: run these groups (conversions, emulator, linear, mma, wgmma, tma, ...)
static std::string only;
static bool want(const char *group) {
    if (only.empty()) return true;
    const std::string list = "," + only + ",";
    return list.find("," + std::string(group) + ",") != std::string::npos;
}

int main(int argc, char **argv) {
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--quick") quick = true;
        else if (a.rfind("--only=", 0) == 0) only = a.substr(7);
        else { std::fprintf(stderr, "usage: emu_test [--quick] [--only=GROUP[,GROUP...]]\n"); return 2; }
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
    if (want("ln_fused")) test_ln_fused(quick);
    if (want("grid_ln")) test_grid_ln(quick);
    if (want("probe")) test_probe(quick);
    if (want("resident")) test_resident(quick);

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
