// probe_test.h: the persistent-kernel probe (dev/probes/resident.cuh) on the emulator's cooperative
// launches. Its product phases must equal linear_forward_mma64 (64x64 tiles, split-K partials, no
// bias) bit for bit in every mode, phase after phase, and its LayerNorm phase
// residual_layernorm_forward_to_bf16 on those partials (f32 output and T copy); a barrier-only run
// writes nothing; the barrier words end at (0, generation + barriers). What the GPU run then measures is the time of
// a phase that computes the engine's own bits. Included by emu_test.cpp after grid_ln_test.h.
#pragma once
#include "resident.cuh"

typedef void (*ResidentKernel)(float *, const bf16 *, const bf16 *, unsigned *, int, int, int, int, unsigned,
                               ResidentLn<bf16>);

static std::string resident_flags(unsigned flags) {
    std::string s;
    if (flags & RESIDENT_PRODUCT) s += "product";
    if (flags & RESIDENT_BARRIER) s += s.empty() ? "barrier" : "+barrier";
    if (flags & RESIDENT_STREAM) s += "+stream";
    if (flags & RESIDENT_LAYERNORM) s += "+layernorm";
    return s;
}

// The probe with `flags` for `phases` phases against the split product kernel (or, without
// RESIDENT_PRODUCT, against no write at all).
static void test_resident(const char *name, ResidentKernel kernel, int nb, int smem, int M, int K,
                          int N, int splits, int phases, unsigned flags) {
    const float ws = std::sqrt(3.0f / float(K));
    std::vector<bf16> inp(size_t(M) * K + 8), w(size_t(N) * K);
    for (auto &x : inp) x = store<bf16>(uni(-2.0f, 2.0f));
    for (auto &x : w) x = store<bf16>(uni(-ws, ws));
    const size_t n = size_t(splits) * M * N;
    const std::string sh = shape({{"M", M}, {"K", K}, {"N", N}, {"z", splits}, {"p", phases}}) + " " +
                           resident_flags(flags);
    const unsigned gen0 = 0xfffffffdu; // wraps within the phases
    std::vector<unsigned> state = {0u, gen0};
    OutBuf parts(n);
    const dim3 grid((N + nb - 1) / nb, splits);
    // The LayerNorm's operands (used with RESIDENT_LAYERNORM only).
    const size_t rows = size_t(M) * N;
    std::vector<float> res = rand_vec(rows, -2.0f, 2.0f), lw = rand_vec(N, 0.5f, 1.5f), lb = rand_vec(N, -0.5f, 0.5f);
    OutBuf out(rows);
    std::vector<bf16> out_t(rows, bf16{0xffff});
    const ResidentLn<bf16> ln{out.ptr(), out_t.data(), res.data(), lw.data(), lb.data(), 1e-12f};
    const bool ok = emu::launch_in_clusters(emu::kCooperative, kernel, grid, dim3(RESIDENT_THREADS), smem,
                                            parts.ptr(), inp.data(), w.data(), state.data(), M, K, N, phases,
                                            flags, ln);
    const unsigned barriers = (flags & RESIDENT_LAYERNORM) ? 2u : (flags & RESIDENT_BARRIER) ? 1u : 0u;
    const unsigned want_gen = gen0 + barriers * unsigned(phases);
    if (state[0] != 0 || state[1] != want_gen) emu::report("barrier words not (0, generation + phases)");
    if (!(flags & RESIDENT_PRODUCT)) {
        record_no_write(std::string(name) + " writes nothing", sh, ok, n - parts.unwritten());
        return;
    }
    OutBuf want(n);
    const bool ok_w = emu::launch(linear_forward_mma64_bf16_from_bf16, dim3((N + 63) / 64, (M + 63) / 64, splits),
                                  dim3(MMA_THREADS_SMALL), MMA_T_SMEM_BYTES_SMALL, want.ptr(), inp.data(),
                                  w.data(), nullptr, M, K, N, ACT_NONE);
    std::vector<double> same(n);
    for (size_t i = 0; i < n; i++) same[i] = want[i];
    record(std::string(name) + " == linear_forward_mma64", sh, parts, same, ok && ok_w, 0.0);
    if (!(flags & RESIDENT_LAYERNORM)) {
        if (out.unwritten() != rows) emu::report("LayerNorm output written without RESIDENT_LAYERNORM");
        return;
    }
    OutBuf want_ln(rows);
    std::vector<bf16> want_t(rows, bf16{0xffff});
    const bool ok_ln = emu::launch(residual_layernorm_forward_to_bf16, dim3(M), dim3(ROW_THREADS), size_t(N) * 4,
                                   want_ln.ptr(), want_t.data(), want.ptr(), res.data(), lw.data(), lb.data(), M, N,
                                   splits, 1e-12f);
    size_t differ = 0;
    for (size_t i = 0; i < rows; i++) differ += out_t[i].bits != want_t[i].bits;
    if (differ) emu::report(std::to_string(differ) + " T elements differ from residual_layernorm_forward_to");
    std::vector<double> same_ln(rows);
    for (size_t i = 0; i < rows; i++) same_ln[i] = want_ln[i];
    record(std::string(name) + " == residual_layernorm_forward_to", sh, out, same_ln, ok && ok_ln, 0.0);
}

// resident_attention: phases of the engine's attention, work items taken in turn by `blocks`
// blocks, == attention_forward_mma_bf16_from_bf16_to_bf16 launched as its kernel, bit for bit;
// sequence 1 padded past `len1` keys. The attention's shared memory is static, which the
// emulator keeps as one object (cuda_emu.h): blocks that run at the same time would share it.
// So with the barrier (a cooperative launch) one block takes every item; without it the blocks
// run one after another, as in a plain launch.
static void test_resident_attention(int B, int S, int A, int len1, unsigned blocks, int phases, unsigned flags) {
    const int H = A * 64;
    const size_t rows = size_t(B) * S, n = rows * H;
    std::vector<bf16> qkv(rows * 3 * H);
    for (auto &x : qkv) x = store<bf16>(uni(-2.0f, 2.0f));
    std::vector<float> mask(rows, 0.0f);
    for (int b = 1; b < B; b++)
        for (int j = len1; j < S; j++) mask[size_t(b) * S + j] = -3.402823466e38f;
    const float scale = 0.125f;
    std::vector<bf16> want(n, bf16{0xffff}), got(n, bf16{0xeeee});
    const bool ok_w = emu::launch(attention_forward_mma_bf16_from_bf16_to_bf16, dim3((S + 63) / 64, A, B), dim3(128),
                                  0, want.data(), qkv.data(), qkv.data() + H, qkv.data() + 2 * H, mask.data(), B, S,
                                  A, 64, 3 * H, scale);
    const unsigned gen0 = 0xfffffffeu;
    std::vector<unsigned> state = {0u, gen0};
    const bool coop = flags & RESIDENT_BARRIER;
    if (coop && blocks != 1) emu::report("test error: a cooperative grid of more than one block");
    const bool ok = emu::launch_in_clusters(coop ? emu::kCooperative : 1, resident_attention_bf16, dim3(blocks),
                                            dim3(RESIDENT_THREADS), 0, got.data(), qkv.data(), mask.data(),
                                            state.data(), B, S, A, scale, phases, flags);
    const unsigned want_gen = gen0 + ((flags & RESIDENT_BARRIER) ? unsigned(phases) : 0u);
    if (state[0] != 0 || state[1] != want_gen) emu::report("barrier words not (0, generation + phases)");
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += got[i].bits != want[i].bits;
    if (differ) emu::report(std::to_string(differ) + " of " + std::to_string(n) + " outputs differ from the kernel");
    record_no_write("resident_attention == attention_forward_mma",
                    shape({{"B", B}, {"S", S}, {"A", A}, {"blocks", blocks}, {"p", phases}}) + " " +
                        resident_flags(flags),
                    ok && ok_w, 0);
}

static void test_probe(bool quick) {
    constexpr int s16 = ResidentShape<16, 128>::SMEM, s32 = ResidentShape<32, 768>::SMEM,
                  s16k = ResidentShape<16, 768>::SMEM, s64 = ResidentShape<64, 768>::SMEM;
    emu::opt_in_dynamic_smem(resident_phases_bf16_nb64_k768, s64, 227 * 1024);
    emu::opt_in_dynamic_smem(resident_phases_bf16_nb16_k128, s16, 227 * 1024);
    emu::opt_in_dynamic_smem(resident_phases_bf16_nb32_k768, s32, 227 * 1024);
    emu::opt_in_dynamic_smem(resident_phases_bf16_nb16_k768, s16k, 227 * 1024);
    emu::opt_in_dynamic_smem(linear_forward_mma64_bf16_from_bf16, MMA_T_SMEM_BYTES_SMALL);
    const unsigned P = RESIDENT_PRODUCT, B = RESIDENT_BARRIER, S = RESIDENT_STREAM;
    const char *k128 = "resident_phases nb16 k128", *n32 = "resident_phases nb32 k768",
               *n16 = "resident_phases nb16 k768", *n64 = "resident_phases nb64 k768";
    // Ragged rows, a partial k tile (K = 120: zero-filled chunk), 3 blocks, two phases.
    test_resident(k128, resident_phases_bf16_nb16_k128, 16, s16, 37, 120, 48, 1, 2, P | B);
    // All 128 rows, N ragged inside a block (40 of 48 columns), the slab re-read every phase.
    test_resident(k128, resident_phases_bf16_nb16_k128, 16, s16, 128, 128, 40, 1, 3, P | B | S);
    // No barrier (not every block need be resident), one phase.
    test_resident(k128, resident_phases_bf16_nb16_k128, 16, s16, 5, 64, 16, 1, 1, P);
    // The barrier alone, 5 blocks, 4 phases: no write.
    test_resident(k128, resident_phases_bf16_nb16_k128, 16, s16, 0, 128, 80, 1, 4, B);
    // ALBERT's K share: 2 shares of 768, 3 column blocks of 32.
    test_resident(n32, resident_phases_bf16_nb32_k768, 32, s32, 70, 1536, 96, 2, 2, P | B);
    // 64-column slabs: a ragged second block (N = 100), 2 shares, the LayerNorm.
    test_resident(n64, resident_phases_bf16_nb64_k768, 64, s64, 50, 1536, 100, 2, 2, P | RESIDENT_LAYERNORM);
    // The LayerNorm phase (its barriers implied): 2 shares, ragged rows, N = 96 over 3 blocks (12
    // warps for 37 rows: some take 4); one share, a single block taking 5 rows per warp.
    const unsigned L = RESIDENT_LAYERNORM;
    test_resident(n32, resident_phases_bf16_nb32_k768, 32, s32, 37, 1536, 96, 2, 2, P | L);
    test_resident(k128, resident_phases_bf16_nb16_k128, 16, s16, 19, 128, 16, 1, 1, P | L | S);
    // The attention: 2 sequences (the second padded past 70 keys), 3 heads, 2 query tiles: 12
    // items on 5 blocks (some take 3, restaging their shared tiles); on one block, 2 phases
    // with their barriers.
    test_resident_attention(2, 100, 3, 70, 5, 2, 0);
    test_resident_attention(2, 100, 3, 70, 1, 2, B);
    test_resident_attention(1, 64, 2, 64, 3, 1, 0);
    if (!quick) {
        // The FFN output's 4 shares, 16-column slabs, streamed; and b1's 128 rows.
        test_resident(n16, resident_phases_bf16_nb16_k768, 16, s16k, 128, 3072, 32, 4, 2, P | B | S);
        test_resident(n32, resident_phases_bf16_nb32_k768, 32, s32, 128, 768, 64, 1, 2, P | B);
        // The FFN output's LayerNorm at b1's 128 rows: 4 shares, N = 128 over 4 x 4 blocks.
        test_resident(n32, resident_phases_bf16_nb32_k768, 32, s32, 128, 3072, 128, 4, 1, P | L);
    }
}
