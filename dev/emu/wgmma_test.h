// wgmma_test.h: the sm_90a wgmma products against the mma.sync kernels, the wgmma model's
// unit checks and layout probes; included by emu_test.cpp after mma_test.h (tma_test.h after it
// uses its helpers).
#pragma once

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
