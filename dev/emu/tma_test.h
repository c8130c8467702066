// tma_test.h: the TMA products (kernels/linear_tma.cu, tma_emu.h) on the emulator; included by
// emu_test.cpp after wgmma_test.h, whose helpers it uses.
//
// linear_forward_wgmma{,64}_tma_* against linear_wgmma.cu's cp.async kernels of the same tile, bit
// for bit (the same stages, chain of k16 steps and epilogue; only the staging differs), with the
// copies landing as late (deferred) and as early (at issue) as the ISA allows: the first exposes
// a stage read before its barrier, the second a stage refilled while a wgmma still reads it.

// The tensor map linear_t.rs encodes for a [rows, K] operand: a box of 64 k x `box_rows` rows,
// 128-byte swizzle.
template <typename T> static TensorMap tma_map(const std::vector<T> &m, int rows, int K, int box_rows) {
    TensorMap map;
    const uint64_t dims[2] = {uint64_t(K), uint64_t(rows)};
    const uint32_t box[2] = {64, uint32_t(box_rows)};
    if (const char *e = emu::encode_tensor_map_2d(&map, 2, m.data(), dims, uint64_t(K) * 2, box, 128))
        emu::report(std::string("tensor map: ") + e);
    return map;
}

template <typename T>
static void test_linear_tma(void (*wg)(float *, const T *, const T *, const float *, int, int, int, int),
                            void (*tma)(float *, TensorMap, TensorMap, const float *, int, int, int, int),
                            void (*tma_to)(T *, TensorMap, TensorMap, const float *, int, int, int, int),
                            int tile, int tile_n, int M, int K, int N, int act, int splits,
                            unsigned persistent = 0, bool pingpong = false) {
    auto [inp, w, bias] = t_product<T>(M, K, N);
    const bool small = tile == 64, wide = tile_n == 256;
    const size_t mn = size_t(M) * N * splits;
    const dim3 grid((N + tile_n - 1) / tile_n, (M + tile - 1) / tile, splits);
    const unsigned threads = small ? 128 : 256, producer = wide || pingpong ? 128 : 32;
    const std::string t = tname<T>(),
                      kn = std::string("linear_forward_wgmma") + (small ? "64" : wide ? "_wide" : pingpong ? "_pingpong" : "") +
                           "_tma_" + t + "_from_" + t;
    OutBuf want(mn);
    bool ok = emu::launch(wg, grid, dim3(threads), small ? WG_SMEM_BYTES_SMALL : wide ? WG_SMEM_BYTES_WIDE : WG_SMEM_BYTES,
                          want.ptr(), inp.data(), w.data(), bias.data(), M, K, N, act);
    std::vector<double> same(mn);
    for (size_t i = 0; i < mn; i++) same[i] = want[i];
    const TensorMap amap = tma_map(inp, M, K, tile), wmap = tma_map(w, N, K, tile_n);
    const size_t smem = small ? WG_TMA_SMEM_BYTES_SMALL : wide ? WG_TMA_SMEM_BYTES_WIDE
                                                 : pingpong ? WG_TMA_SMEM_BYTES_PINGPONG : WG_TMA_SMEM_BYTES;
    // One block per output tile, then `blocks` blocks taking every tile in turn (persistent).
    const unsigned work = grid.x * grid.y;
    for (unsigned blocks : {work, persistent})
        for (bool at_issue : {false, true}) {
            if (blocks == 0 || (blocks != work && blocks >= work)) continue;
            emu::tma_copy_at_issue = at_issue;
            const std::string sh = shape({{"M", M}, {"K", K}, {"N", N}, {"act", act}, {"splits", splits}}) +
                                   (at_issue ? " early" : " late") +
                                   (blocks == work ? "" : " " + std::to_string(blocks) + " blocks");
            OutBuf got(mn);
            const dim3 g(blocks, 1, splits);
            const bool ok_tma = emu::launch(tma, g, dim3(threads + producer), smem, got.ptr(), amap, wmap, bias.data(), M, K, N, act);
            record(kn + " == cp.async wgmma", sh, got, same, ok && ok_tma, 0.0);
            if (splits > 1) continue;
            std::vector<T> got_t(mn, T{0xffff});
            const bool ok_t = emu::launch(tma_to, g, dim3(threads + producer), smem, got_t.data(), amap, wmap, bias.data(), M, K,
                                          N, act);
            record_rounded(kn + "_to_" + t, sh, got_t, got.ptr(), mn, ok_tma && ok_t);
        }
    emu::tma_copy_at_issue = false;
}

// The emulator's TMA checks: a kernel that breaks one rule must be reported.
static void selftest_mbar_uninit(float *out) { // waits on a barrier nobody initialised
    unsigned short *base = wg_aligned_smem();
    if (threadIdx.x == 0) mbar_wait(smem_u32(base), 0);
    out[threadIdx.x] = 0.0f;
}
static void selftest_tma_unwaited(float *out) { // a copy nobody waits for
    unsigned short *base = wg_aligned_smem();
    static TensorMap map;
    static std::vector<bf16> src(64 * 64);
    const unsigned bar = smem_u32(base + 64 * 64);
    if (threadIdx.x == 0) {
        map = tma_map(src, 64, 64, 64);
        mbar_init(bar, 1);
        mbar_arrive_expect_tx(bar, 64 * 128);
        tma_load_2d(smem_u32(base), &map, 0, 0, bar);
    }
    out[threadIdx.x] = 0.0f;
}
static void selftest_mbar_overarrive(float *out) { // two arrivals on a barrier of count 1
    unsigned short *base = wg_aligned_smem();
    const unsigned bar = smem_u32(base);
    if (threadIdx.x == 0) {
        mbar_init(bar, 2);
        mbar_arrive_expect_tx(bar, 16); // the phase waits for 16 bytes
        mbar_arrive(bar);
        mbar_arrive(bar); // a third arrival in a phase of 2
    }
    out[threadIdx.x] = 0.0f;
}

// The driver's refusals that the engine relies on (linear_t.rs falls back before them).
static void test_tensor_map_refusals() {
    std::vector<bf16> m(64 * 72);
    TensorMap map;
    const uint32_t box[2] = {64, 64};
    const uint64_t ok_dims[2] = {64, 64}, dims72[2] = {72, 64}, dims77[2] = {77, 64};
    struct Case { const char *what; const void *addr; const uint64_t *dims; uint64_t stride; unsigned swizzle; bool ok; };
    const Case cases[] = {
        {"aligned [64, 64]", m.data(), ok_dims, 128, 128, true},
        {"address + 2 bytes", m.data() + 1, ok_dims, 128, 128, false},
        {"K = 77 (stride 154 bytes)", m.data(), dims77, 154, 128, false},
        {"stride below a row", m.data(), dims72, 128, 128, false},
        {"64-byte swizzle", m.data(), ok_dims, 128, 64, false},
    };
    for (const Case &c : cases) {
        const char *e = emu::encode_tensor_map_2d(&map, 2, c.addr, c.dims, c.stride, box, c.swizzle);
        const bool pass = (e == nullptr) == c.ok;
        results.push_back({std::string("tensor map: ") + c.what, c.ok ? "accepted" : "refused", 0.0, 0, pass, e ? e : ""});
        std::printf("%-40s %-26s %10s %9s  %s  %s\n", ("tensor map: " + std::string(c.what)).c_str(),
                    c.ok ? "accepted" : "refused", "-", "-", pass ? "ok  " : "FAIL", e ? e : "");
    }
}

static void test_tma(bool quick) {
    opt_in_wgmma(); // the cp.async kernels compared with
    const size_t sm90 = 227 * 1024;
    emu::opt_in_dynamic_smem(linear_forward_wgmma_tma_bf16_from_bf16, WG_TMA_SMEM_BYTES, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_tma_f16_from_f16, WG_TMA_SMEM_BYTES, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_tma_bf16_from_bf16_to_bf16, WG_TMA_SMEM_BYTES, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_tma_f16_from_f16_to_f16, WG_TMA_SMEM_BYTES, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma64_tma_bf16_from_bf16, WG_TMA_SMEM_BYTES_SMALL, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma64_tma_f16_from_f16, WG_TMA_SMEM_BYTES_SMALL, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma64_tma_bf16_from_bf16_to_bf16, WG_TMA_SMEM_BYTES_SMALL, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma64_tma_f16_from_f16_to_f16, WG_TMA_SMEM_BYTES_SMALL, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_wide_tma_bf16_from_bf16, WG_TMA_SMEM_BYTES_WIDE, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_wide_tma_f16_from_f16, WG_TMA_SMEM_BYTES_WIDE, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_wide_tma_bf16_from_bf16_to_bf16, WG_TMA_SMEM_BYTES_WIDE, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_wide_tma_f16_from_f16_to_f16, WG_TMA_SMEM_BYTES_WIDE, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_pingpong_tma_bf16_from_bf16, WG_TMA_SMEM_BYTES_PINGPONG, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_pingpong_tma_f16_from_f16, WG_TMA_SMEM_BYTES_PINGPONG, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_pingpong_tma_bf16_from_bf16_to_bf16, WG_TMA_SMEM_BYTES_PINGPONG, sm90);
    emu::opt_in_dynamic_smem(linear_forward_wgmma_pingpong_tma_f16_from_f16_to_f16, WG_TMA_SMEM_BYTES_PINGPONG, sm90);
    test_tensor_map_refusals();
    expect("emulator: detects an uninitialised mbarrier", selftest_mbar_uninit, "not initialised");
    expect("emulator: detects a TMA copy never waited", selftest_tma_unwaited, "still pending");
    expect("emulator: detects mbarrier over-arrival", selftest_mbar_overarrive, "more arrivals");
    auto large_bf16 = [](int M, int K, int N, int act, int splits, unsigned persistent = 0) {
        test_linear_tma<bf16>(linear_forward_wgmma_bf16_from_bf16, linear_forward_wgmma_tma_bf16_from_bf16,
                              linear_forward_wgmma_tma_bf16_from_bf16_to_bf16, 128, 128, M, K, N, act, splits, persistent);
    };
    auto small_f16 = [](int M, int K, int N, int act, int splits, unsigned persistent = 0) {
        test_linear_tma<f16>(linear_forward_wgmma64_f16_from_f16, linear_forward_wgmma64_tma_f16_from_f16,
                             linear_forward_wgmma64_tma_f16_from_f16_to_f16, 64, 64, M, K, N, act, splits, persistent);
    };
    auto small_bf16 = [](int M, int K, int N, int act, int splits, unsigned persistent = 0) {
        test_linear_tma<bf16>(linear_forward_wgmma64_bf16_from_bf16, linear_forward_wgmma64_tma_bf16_from_bf16,
                              linear_forward_wgmma64_tma_bf16_from_bf16_to_bf16, 64, 64, M, K, N, act, splits, persistent);
    };
    // K = 520: 9 k tiles through 6 stages (the ring wraps: the producer waits on `empty`), the
    // last partial (zero fill past K); M, N ragged over two block rows/columns (zero-filled rows);
    // K = 136: fewer tiles than stages; split-K 4 at K = 328 (shares of 2, 2, 2, 0 tiles: a block
    // with none) and 3 at K = 1000. Persistent grids (last argument: blocks per split): 3 blocks
    // for 4 output tiles (block 0 takes two, its ring wrapping inside and across them), 1 block
    // for all 6 (54 k tiles), 3 blocks per split with an empty share.
    large_bf16(130, 520, 200, 2, 1, 3);
    small_f16(70, 520, 129, 12, 1, 1);
    small_bf16(3, 136, 7, 0, 1);
    small_f16(70, 328, 65, 0, 4, 3);
    // 128x256 (producer warpgroup): N = 300, a ragged second block column; K = 520 through 4
    // stages; split-K 3. Persistent: one block for all tiles.
    auto wide_bf16 = [](int M, int K, int N, int act, int splits, unsigned persistent = 0) {
        test_linear_tma<bf16>(linear_forward_wgmma_wide_bf16_from_bf16, linear_forward_wgmma_wide_tma_bf16_from_bf16,
                              linear_forward_wgmma_wide_tma_bf16_from_bf16_to_bf16, 128, 256, M, K, N, act, splits, persistent);
    };
    wide_bf16(130, 520, 300, 2, 1, 1);
    wide_bf16(33, 136, 260, 0, 3, 1);
    // Ping-pong 128x128 (v1.31: each consumer warpgroup whole tiles in turn, from a producer
    // warpgroup): one block per tile (the second consumer idle); 1 block for 4 tiles (each
    // consumer two, turns alternating, the ring wrapping inside tiles: 9 k tiles in 6 stages);
    // 3 blocks for 4; 12 tiles of 3 k tiles on 2 blocks (tiles shorter than the ring: a
    // consumer's next tile starts half a ring ahead); split-K 3, and 4 with an empty share, on
    // one block per split.
    auto pp_bf16 = [](int M, int K, int N, int act, int splits, unsigned persistent) {
        test_linear_tma<bf16>(linear_forward_wgmma_bf16_from_bf16, linear_forward_wgmma_pingpong_tma_bf16_from_bf16,
                              linear_forward_wgmma_pingpong_tma_bf16_from_bf16_to_bf16, 128, 128, M, K, N, act, splits,
                              persistent, true);
    };
    auto pp_f16 = [](int M, int K, int N, int act, int splits, unsigned persistent) {
        test_linear_tma<f16>(linear_forward_wgmma_f16_from_f16, linear_forward_wgmma_pingpong_tma_f16_from_f16,
                             linear_forward_wgmma_pingpong_tma_f16_from_f16_to_f16, 128, 128, M, K, N, act, splits,
                             persistent, true);
    };
    pp_bf16(130, 520, 200, 2, 1, 1);
    pp_f16(257, 136, 390, 12, 1, 2);
    pp_f16(130, 328, 200, 0, 4, 1); // shares of 2, 2, 2, 0 k tiles: turns pass on an empty one
    if (quick) return; // (the ThreadSanitizer build in CI runs the quick set: 384 threads a block)
    pp_bf16(130, 520, 200, 0, 1, 3);
    pp_bf16(33, 1000, 260, 0, 3, 1);
    test_linear_tma<f16>(linear_forward_wgmma_wide_f16_from_f16, linear_forward_wgmma_wide_tma_f16_from_f16,
                         linear_forward_wgmma_wide_tma_f16_from_f16_to_f16, 128, 256, 70, 1000, 520, 12, 1);
    test_linear_tma<f16>(linear_forward_wgmma_f16_from_f16, linear_forward_wgmma_tma_f16_from_f16,
                         linear_forward_wgmma_tma_f16_from_f16_to_f16, 128, 128, 33, 1000, 129, 1, 1);
    large_bf16(257, 1000, 130, 0, 3, 4);
}
