// emulator_test.h: the emulator's own parts (16-bit conversions, its rule checks on kernels
// written to break them, mma.m16n8k16, ldmatrix, cp.async) against plain models; included by
// emu_test.cpp.
#pragma once

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
// Exits with a copy in flight. Its source (inside out[0..63], written by no thread) is read at
// issue under EMU_CP_EARLY.
__global__ void selftest_cp_async_pending(float *out) {
    __shared__ __align__(16) float buf[64 * 4];
    cp_async16(&buf[4 * threadIdx.x], out + 4 * (threadIdx.x % 16u), 16);
}

// ldmatrix.x4 (mma_emu.h) against the PTX ISA's description, written out here independently:
// lane 8m + r points at row r of matrix m; lane l receives in d[m] the two 16-bit elements
// 2(l%4), 2(l%4)+1 of row l/4 of matrix m, or with .trans (TRANS) the elements l/4 of rows
// 2(l%4) and 2(l%4)+1 of matrix m. The rows are scattered (row r of matrix m lives at shared
// row (5m + 3r) % 32) so that a wrong address routing shows. Shared row q holds the values
// 1000q + c, c = 0..7. out[32 lane + 4 m + ...]: lo and hi halves, as floats.
template <bool TRANS> __global__ void selftest_ldmatrix(float *out) {
    __shared__ __align__(16) uint16_t rows[32][8];
    const unsigned lane = threadIdx.x % 32;
    for (unsigned c = 0; c < 8; c++) rows[lane][c] = uint16_t((1000 * lane + c) % 65536);
    __syncthreads();
    const unsigned m = lane / 8, r = lane % 8;
    unsigned d[4];
    if constexpr (TRANS) ldmatrix_x4_trans(d, &rows[(5 * m + 3 * r) % 32][0]);
    else ldmatrix_x4(d, &rows[(5 * m + 3 * r) % 32][0]);
    for (unsigned k = 0; k < 4; k++) {
        out[lane * 8 + 2 * k] = float(d[k] & 0xffffu);
        out[lane * 8 + 2 * k + 1] = float(d[k] >> 16);
    }
}

template <bool TRANS> static void test_ldmatrix() {
    OutBuf out(256);
    const bool ok = emu::launch(selftest_ldmatrix<TRANS>, dim3(1), dim3(32), 0, out.ptr());
    std::vector<double> ref(256);
    for (unsigned l = 0; l < 32; l++)
        for (unsigned m = 0; m < 4; m++)
            for (unsigned e = 0; e < 2; e++) {
                // (row, element) of matrix m that lane l receives in half e
                const unsigned row = TRANS ? 2 * (l % 4) + e : l / 4, col = TRANS ? l / 4 : 2 * (l % 4) + e;
                const unsigned q = (5 * m + 3 * row) % 32; // its shared row
                ref[l * 8 + 2 * m + e] = double((1000 * q + col) % 65536);
            }
    record(TRANS ? "emulator: ldmatrix.x4.trans per the ISA" : "emulator: ldmatrix.x4 per the ISA", "warp=1",
           out, ref, ok, 0.0);
}

static void test_cp_async() {
    std::vector<float> src = rand_vec(256);
    OutBuf out(192);
    const bool ok = emu::launch(selftest_cp_async, dim3(1), dim3(64), 0, out.ptr(), src.data());
    std::vector<double> ref(192);
    // Before the wait: the old bytes (copies land at the wait), or already the copy (EMU_CP_EARLY).
    const bool early = emu::cp_early();
    for (int t = 0; t < 64; t++)
        ref[3 * t] = early ? src[4 * t] : -1.0, ref[3 * t + 1] = src[4 * t], ref[3 * t + 2] = 0.0;
    record(early ? "emulator: cp.async lands when issued" : "emulator: cp.async lands at its wait", "block=64", out,
           ref, ok, 0.0);
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
