// resident-probe: what a persistent b1 layer kernel would cost per phase, measured on the GPU
// (resident.cuh says what each mode runs). Not part of the engine: scripts/gpu-check builds it
// here (`prepare`: nvcc, static CUDA runtime) and runs it on the device; scripts/probe_table.py
// prints its lines against notes/predictions.json ("probe").
//
// For each b1/s128 product of the layer (M = 128 tokens) and each slab width NB (64, 32, 16): the grid is
// (N / NB, K / 768) blocks, launched cooperatively; per phase, in us, from the difference of two
// launches of 8 and 108 phases (so the launch itself drops out), median of 5:
//   barrier        a grid-wide barrier alone
//   product        a product phase from the resident slab, no barrier
//   product+barrier
//   stream+barrier the slab re-read from L2 every phase (today's kernels' way)
//   product+ln     (N = 768: the attention and FFN outputs) the product, a barrier, the
//                  residual LayerNorm of its rows by the grid's warps, a second barrier
// and the phase's result against float64 on the CPU (the product: max error over sum |a w|;
// the LayerNorm: max error over the output's largest magnitude).
// Then b1's attention as a phase (resident_attention): alone and with the barrier.
// Exit status 1 if a result is wrong, 2 on a CUDA error.
// Output: one JSON object per line (stdout); progress and errors on stderr.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "resident.cuh"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            std::fprintf(stderr, "resident-probe: %s: %s\n", #x, cudaGetErrorString(e_));          \
            std::exit(2);                                                                          \
        }                                                                                          \
    } while (0)

typedef void (*Kernel)(float *, const bf16 *, const bf16 *, unsigned *, int, int, int, int, unsigned,
                       ResidentLn<bf16>);

struct Config {
    const char *name; // the launch's shape as `albert bench --kernel-costs` names it
    Kernel kernel;
    int nb, smem, M, K, N, splits;
    bool barrier_only;
};

static unsigned short bf16_bits(float x) { // round to nearest even (finite inputs)
    unsigned u;
    std::memcpy(&u, &x, 4);
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float bf16_value(unsigned short b) {
    const unsigned u = (unsigned)b << 16;
    float x;
    std::memcpy(&x, &u, 4);
    return x;
}

// One cooperative launch, in ms (events around it).
static float launch_ms(const void *kernel, dim3 grid, void **args, size_t smem, cudaEvent_t start,
                       cudaEvent_t stop) {
    CHECK(cudaEventRecord(start));
    CHECK(cudaLaunchCooperativeKernel(kernel, grid, dim3(RESIDENT_THREADS), args, smem, 0));
    CHECK(cudaEventRecord(stop));
    CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    return ms;
}

// Per phase, us: (t(108) - t(8)) / 100, median of 5; launch(phases) -> ms.
template <typename F> static double per_phase(F launch) {
    launch(8); // warm
    std::vector<double> us;
    for (int r = 0; r < 5; r++) {
        const double a = launch(8), b = launch(108);
        us.push_back((b - a) * 1000.0 / 100.0);
    }
    std::sort(us.begin(), us.end());
    return us[2];
}

struct Run {
    const Config &c;
    dim3 grid;
    float *parts;
    bf16 *act, *weight;
    unsigned *sync;
    ResidentLn<bf16> ln;
    cudaEvent_t start, stop;
    const std::vector<float> *host_res = nullptr, *host_w = nullptr, *host_b = nullptr;

    // One cooperative launch of `phases` phases, in ms.
    float launch(int phases, unsigned flags) {
        int M = c.M, K = c.K, N = c.N;
        void *args[] = {&parts, &act, &weight, &sync, &M, &K, &N, &phases, &flags, &ln};
        return launch_ms((const void *)c.kernel, grid, args, c.smem, start, stop);
    }
    double per_phase(unsigned flags) {
        return ::per_phase([&](int phases) { return launch(phases, flags); });
    }
};

// The LayerNorm's output (f32 and its bf16 copy) against float64 from the partials `parts`
// the device computed (checked above): max |error| over the output's largest magnitude.
static double check_layernorm(const Run &run, const Config &c, const std::vector<float> &parts) {
    const size_t n = size_t(c.M) * c.N;
    std::vector<float> out(n);
    std::vector<unsigned short> out_t(n);
    CHECK(cudaMemcpy(out.data(), run.ln.out, n * 4, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(out_t.data(), run.ln.out_t, n * 2, cudaMemcpyDeviceToHost));
    double worst = 0, top = 1e-30;
    for (int m = 0; m < c.M; m++) {
        std::vector<double> x(c.N);
        double mean = 0, var = 0;
        for (int col = 0; col < c.N; col++) {
            double v = (*run.host_res)[size_t(m) * c.N + col];
            for (int z = 0; z < c.splits; z++) v += parts[(size_t(z) * c.M + m) * c.N + col];
            x[col] = v, mean += v;
        }
        mean /= c.N;
        for (double v : x) var += (v - mean) * (v - mean);
        var /= c.N;
        for (int col = 0; col < c.N; col++) {
            const double want = (x[col] - mean) / std::sqrt(var + 1e-12) * (*run.host_w)[col] + (*run.host_b)[col];
            const size_t i = size_t(m) * c.N + col;
            top = std::max(top, std::fabs(want));
            worst = std::max(worst, std::fabs(out[i] - want));
            if (out_t[i] != bf16_bits(out[i])) worst = std::max(worst, 1.0); // the copy is out, rounded
        }
    }
    return worst / top;
}

// b1's attention (S = 128, 12 heads of 64: 24 work items) as a phase of a one-block-per-SM grid,
// alone and with the barrier; its output against float64 softmax attention on the same bf16 q, k,
// v (the kernel rounds the probabilities to bf16 for P V, its output to bf16: ~1e-3). Returns
// whether the result was right.
static bool probe_attention(int sms, std::mt19937 &rng) {
    const int B = 1, S = 128, A = 12, H = A * 64;
    float scale = 0.125f;
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    std::vector<unsigned short> qkv(size_t(B) * S * 3 * H);
    for (auto &x : qkv) x = bf16_bits(uni(rng));
    int per_sm = 0;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, resident_attention_bf16, RESIDENT_THREADS, 0));
    std::printf("{\"probe\": \"resident\", \"shape\": \"b1 s128 12x64\", \"nb\": 0, \"blocks\": %d, \"sms\": %d, "
                "\"per_sm\": %d",
                sms, sms, per_sm);
    if (per_sm < 1) {
        std::printf(", \"skipped\": \"no block fits an SM\"}\n");
        return true;
    }
    bf16 *d_qkv, *d_out;
    float *d_mask;
    unsigned *d_sync;
    cudaEvent_t start, stop;
    CHECK(cudaMalloc(&d_qkv, qkv.size() * 2));
    CHECK(cudaMalloc(&d_out, size_t(B) * S * H * 2));
    CHECK(cudaMalloc(&d_mask, size_t(B) * S * 4));
    CHECK(cudaMalloc(&d_sync, 8));
    CHECK(cudaMemcpy(d_qkv, qkv.data(), qkv.size() * 2, cudaMemcpyHostToDevice));
    CHECK(cudaMemset(d_mask, 0, size_t(B) * S * 4)); // no padding
    CHECK(cudaMemset(d_sync, 0, 8));
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));
    int b = B, s = S, a = A;
    auto launch = [&](int phases, unsigned flags) {
        void *args[] = {&d_out, &d_qkv, &d_mask, &d_sync, &b, &s, &a, &scale, &phases, &flags};
        return launch_ms((const void *)resident_attention_bf16, dim3(sms), args, 0, start, stop);
    };
    launch(2, RESIDENT_BARRIER);
    std::vector<unsigned short> out(size_t(B) * S * H);
    unsigned words[2];
    CHECK(cudaMemcpy(out.data(), d_out, out.size() * 2, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(words, d_sync, 8, cudaMemcpyDeviceToHost));
    auto at = [&](int row, int col) { return double(bf16_value(qkv[size_t(row) * 3 * H + col])); };
    double worst = 0;
    for (int h = 0; h < A; h++)
        for (int i = 0; i < S; i++) {
            std::vector<double> p(S);
            double top = -1e300, sum = 0;
            for (int j = 0; j < S; j++) {
                double dot = 0;
                for (int d = 0; d < 64; d++) dot += at(i, h * 64 + d) * at(j, H + h * 64 + d);
                p[j] = dot * scale, top = std::max(top, p[j]);
            }
            for (int j = 0; j < S; j++) p[j] = std::exp(p[j] - top), sum += p[j];
            for (int d = 0; d < 64; d++) {
                double want = 0;
                for (int j = 0; j < S; j++) want += p[j] / sum * at(j, 2 * H + h * 64 + d);
                worst = std::max(worst, std::fabs(bf16_value(out[size_t(i) * H + h * 64 + d]) - want));
            }
        }
    const bool ok = worst < 2e-2 && words[0] == 0 && words[1] == 2;
    std::printf(", \"max_err\": %.3g, \"sync_words\": [%u, %u], \"ok\": %s", worst, words[0], words[1],
                ok ? "true" : "false");
    std::printf(", \"attention_us\": %.3f", per_phase([&](int n) { return launch(n, 0u); }));
    std::printf(", \"attention_barrier_us\": %.3f}\n", per_phase([&](int n) { return launch(n, RESIDENT_BARRIER); }));
    std::fflush(stdout);
    CHECK(cudaFree(d_qkv));
    CHECK(cudaFree(d_out));
    CHECK(cudaFree(d_mask));
    CHECK(cudaFree(d_sync));
    CHECK(cudaEventDestroy(start));
    CHECK(cudaEventDestroy(stop));
    return ok;
}

int main() {
    int dev = 0, sms = 0, coop = 0;
    CHECK(cudaSetDevice(dev));
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev));
    if (!coop) {
        std::printf("{\"probe\": \"resident\", \"skipped\": \"no cooperative launches on this device\"}\n");
        return 0;
    }
    // Slabs of 64, 32 and 16 columns: fewer blocks each doing more, or more blocks each reading
    // the same activation share (196 KB per phase) for less work.
    const int s64 = ResidentShape<64, 768>::SMEM, s32 = ResidentShape<32, 768>::SMEM, s16 = ResidentShape<16, 768>::SMEM;
    const Kernel k64 = resident_phases_bf16_nb64_k768, k32 = resident_phases_bf16_nb32_k768,
                 k16 = resident_phases_bf16_nb16_k768;
    const std::vector<Config> configs = {
        {"barrier", k16, 16, s16, 0, 768, 16 * sms, 1, true},
        {"barrier", k16, 16, s16, 0, 768, 32 * sms, 1, true},
        {"128x768x2304", k64, 64, s64, 128, 768, 2304, 1, false},
        {"128x768x2304", k32, 32, s32, 128, 768, 2304, 1, false},
        {"128x768x2304", k16, 16, s16, 128, 768, 2304, 1, false},
        {"128x768x768", k64, 64, s64, 128, 768, 768, 1, false},
        {"128x768x768", k32, 32, s32, 128, 768, 768, 1, false},
        {"128x768x768", k16, 16, s16, 128, 768, 768, 1, false},
        {"128x768x3072", k64, 64, s64, 128, 768, 3072, 1, false},
        {"128x768x3072", k32, 32, s32, 128, 768, 3072, 1, false},
        {"128x768x3072", k16, 16, s16, 128, 768, 3072, 1, false},
        {"128x3072x768/4", k64, 64, s64, 128, 3072, 768, 4, false},
        {"128x3072x768/4", k32, 32, s32, 128, 3072, 768, 4, false},
        {"128x3072x768/4", k16, 16, s16, 128, 3072, 768, 4, false},
    };
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    int status = 0;
    for (const Config &c : configs) {
        const dim3 grid(c.N / c.nb, c.splits);
        const int blocks = int(grid.x * grid.y);
        CHECK(cudaFuncSetAttribute((const void *)c.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, c.smem));
        int per_sm = 0;
        CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, c.kernel, RESIDENT_THREADS, c.smem));
        std::printf("{\"probe\": \"resident\", \"shape\": \"%s\", \"nb\": %d, \"blocks\": %d, \"sms\": %d, "
                    "\"per_sm\": %d",
                    c.name, c.nb, blocks, sms, per_sm);
        if (blocks > per_sm * sms) {
            std::printf(", \"skipped\": \"%d blocks do not fit %d SMs x %d\"}\n", blocks, sms, per_sm);
            continue;
        }
        std::fprintf(stderr, "resident-probe: %s NB %d, %d blocks\n", c.name, c.nb, blocks);
        std::vector<unsigned short> a(size_t(c.M) * c.K), w(size_t(c.N) * c.K);
        for (auto &x : a) x = bf16_bits(uni(rng));
        for (auto &x : w) x = bf16_bits(0.05f * uni(rng));
        const size_t nparts = size_t(c.splits) * c.M * c.N;
        Run run{c, grid, nullptr, nullptr, nullptr, nullptr, {}, {}, {}};
        CHECK(cudaMalloc(&run.parts, std::max<size_t>(nparts, 1) * 4));
        CHECK(cudaMalloc(&run.act, std::max<size_t>(a.size(), 8) * 2));
        CHECK(cudaMalloc(&run.weight, w.size() * 2));
        CHECK(cudaMalloc(&run.sync, 8));
        CHECK(cudaMemset(run.sync, 0, 8));
        if (!a.empty()) CHECK(cudaMemcpy(run.act, a.data(), a.size() * 2, cudaMemcpyHostToDevice));
        CHECK(cudaMemcpy(run.weight, w.data(), w.size() * 2, cudaMemcpyHostToDevice));
        CHECK(cudaEventCreate(&run.start));
        CHECK(cudaEventCreate(&run.stop));

        // The LayerNorm's operands where the product feeds one (N = 768 here).
        const bool layernorm = !c.barrier_only && c.N <= 1024 && c.splits <= RESIDENT_LN_PARTS;
        std::vector<float> res(size_t(c.M) * c.N), lw(c.N), lb(c.N);
        for (auto &x : res) x = uni(rng);
        for (auto &x : lw) x = 1.0f + 0.5f * uni(rng);
        for (auto &x : lb) x = 0.5f * uni(rng);
        if (layernorm) {
            float *d_res, *d_w, *d_b;
            CHECK(cudaMalloc(&run.ln.out, res.size() * 4));
            CHECK(cudaMalloc(&run.ln.out_t, res.size() * 2));
            CHECK(cudaMalloc(&d_res, res.size() * 4));
            CHECK(cudaMalloc(&d_w, lw.size() * 4));
            CHECK(cudaMalloc(&d_b, lb.size() * 4));
            CHECK(cudaMemcpy(d_res, res.data(), res.size() * 4, cudaMemcpyHostToDevice));
            CHECK(cudaMemcpy(d_w, lw.data(), lw.size() * 4, cudaMemcpyHostToDevice));
            CHECK(cudaMemcpy(d_b, lb.data(), lb.size() * 4, cudaMemcpyHostToDevice));
            run.ln.residual = d_res, run.ln.w = d_w, run.ln.b = d_b, run.ln.eps = 1e-12f;
            run.host_res = &res, run.host_w = &lw, run.host_b = &lb;
        }
        if (!c.barrier_only) { // two phases with barriers, then the result and the barrier words
            // With the LayerNorm: 2 barriers per phase, so the generation ends at 4, not 2.
            run.launch(layernorm ? 1 : 2, RESIDENT_PRODUCT | (layernorm ? RESIDENT_LAYERNORM : RESIDENT_BARRIER));
            std::vector<float> got(nparts);
            unsigned words[2];
            CHECK(cudaMemcpy(got.data(), run.parts, nparts * 4, cudaMemcpyDeviceToHost));
            CHECK(cudaMemcpy(words, run.sync, 8, cudaMemcpyDeviceToHost));
            const int ks = c.K / c.splits;
            double worst = 0;
            for (int z = 0; z < c.splits; z++)
                for (int m = 0; m < c.M; m++)
                    for (int n = 0; n < c.N; n++) {
                        double ref = 0, mag = 0;
                        for (int k = z * ks; k < (z + 1) * ks; k++) {
                            const double p = double(bf16_value(a[size_t(m) * c.K + k])) * bf16_value(w[size_t(n) * c.K + k]);
                            ref += p, mag += std::fabs(p);
                        }
                        const double g = got[(size_t(z) * c.M + m) * c.N + n];
                        worst = std::max(worst, std::fabs(g - ref) / std::max(mag, 1e-30));
                    }
            bool ok = worst < 1e-5 && words[0] == 0 && words[1] == 2;
            std::printf(", \"max_err\": %.3g, \"sync_words\": [%u, %u]", worst, words[0], words[1]);
            if (layernorm) {
                const double ln_err = check_layernorm(run, c, got);
                std::printf(", \"ln_max_err\": %.3g", ln_err);
                ok &= ln_err < 1e-5;
            }
            std::printf(", \"ok\": %s", ok ? "true" : "false");
            if (!ok) status = 1;
        }
        std::printf(", \"barrier_us\": %.3f", run.per_phase(RESIDENT_BARRIER));
        if (!c.barrier_only) {
            std::printf(", \"product_us\": %.3f", run.per_phase(RESIDENT_PRODUCT));
            std::printf(", \"product_barrier_us\": %.3f", run.per_phase(RESIDENT_PRODUCT | RESIDENT_BARRIER));
            std::printf(", \"stream_barrier_us\": %.3f",
                        run.per_phase(RESIDENT_PRODUCT | RESIDENT_BARRIER | RESIDENT_STREAM));
            if (layernorm) std::printf(", \"product_ln_us\": %.3f", run.per_phase(RESIDENT_PRODUCT | RESIDENT_LAYERNORM));
        }
        std::printf("}\n");
        std::fflush(stdout);
        CHECK(cudaFree(run.parts));
        CHECK(cudaFree(run.act));
        CHECK(cudaFree(run.weight));
        CHECK(cudaFree(run.sync));
        if (layernorm) {
            CHECK(cudaFree(run.ln.out));
            CHECK(cudaFree(run.ln.out_t));
            CHECK(cudaFree((void *)run.ln.residual));
            CHECK(cudaFree((void *)run.ln.w));
            CHECK(cudaFree((void *)run.ln.b));
        }
        CHECK(cudaEventDestroy(run.start));
        CHECK(cudaEventDestroy(run.stop));
    }
    std::fprintf(stderr, "resident-probe: attention b1 s128\n");
    if (!probe_attention(sms, rng)) status = 1;
    return status;
}
