// resident_test.h: the resident layer kernel (kernels/layer_resident.cu) on the emulator's
// cooperative launches. After `layers` applications its hidden state (f32 and T copy) and the last
// attention LayerNorm's output must equal, bit for bit, the T path's launches run `layers` times
// (forward/layer.rs layer_forward_t: the 64x64 products, the attention kernel, the split products
// and residual_layernorm_forward_to); the barrier words must end at (0, generation + barriers).
// A grid too small for the slabs must return without writing. Included by emu_test.cpp.
#pragma once

struct ResidentCase {
    int B, S, len1, A, I, splits_o, splits_f, layers, grid, act;
    int att_blocks = 0; // blocks taking attention items (0: the grid, as the engine)
};

static std::string resident_shape(const ResidentCase &c) {
    return shape({{"B", c.B}, {"S", c.S}, {"A", c.A}, {"I", c.I}, {"zo", c.splits_o}, {"zf", c.splits_f},
                  {"L", c.layers}, {"G", c.grid}});
}

static void test_layer_resident(const ResidentCase &c, bool refused = false) {
    const int H = 64 * c.A, I = c.I, M = c.B * c.S;
    const size_t mh = size_t(M) * H;
    auto weights = [](size_t n, int k) {
        const float s = std::sqrt(3.0f / float(k));
        std::vector<bf16> w(n);
        for (auto &x : w) x = store<bf16>(uni(-s, s));
        return w;
    };
    const std::vector<bf16> wqkv = weights(size_t(3) * H * H, H), wo = weights(size_t(H) * H, H),
                            wi = weights(size_t(I) * H, H), wf = weights(size_t(H) * I, I);
    const std::vector<float> bqkv = rand_vec(3 * H, -0.5f, 0.5f), bo = rand_vec(H, -0.5f, 0.5f),
                             bi = rand_vec(I, -0.5f, 0.5f), bf = rand_vec(H, -0.5f, 0.5f);
    const std::vector<float> lw0 = rand_vec(H, 0.5f, 1.5f), lb0 = rand_vec(H, -0.5f, 0.5f),
                             lw1 = rand_vec(H, 0.5f, 1.5f), lb1 = rand_vec(H, -0.5f, 0.5f);
    std::vector<float> mask(size_t(M), 0.0f);
    for (int b = 1; b < c.B; b++)
        for (int j = c.len1; j < c.S; j++) mask[size_t(b) * c.S + j] = -3.402823466e38f;
    const std::vector<float> hidden0 = rand_vec(mh, -2.0f, 2.0f);
    std::vector<bf16> hidden0_t(mh);
    for (size_t i = 0; i < mh; i++) hidden0_t[i] = store<bf16>(hidden0[i]);
    const float scale = 0.125f, eps = 1e-12f;
    const int parts_n = std::max(c.splits_o, c.splits_f);

    // The T path, launch by launch.
    std::vector<float> hidden = hidden0, attn(mh), parts(size_t(parts_n) * mh);
    std::vector<bf16> hidden_t = hidden0_t, qkv(mh * 3), ctx(mh), attn_t(mh), ffn(size_t(M) * I);
    bool ok_w = true;
    const dim3 t64(MMA_THREADS_SMALL);
    const size_t s64 = MMA_T_SMEM_BYTES_SMALL;
    auto g64 = [&](int N, int z) { return dim3((N + 63) / 64, (M + 63) / 64, z); };
    for (int l = 0; l < c.layers; l++) {
        ok_w &= emu::launch(linear_forward_mma64_bf16_from_bf16_to_bf16, g64(3 * H, 1), t64, s64, qkv.data(),
                            hidden_t.data(), wqkv.data(), bqkv.data(), M, H, 3 * H, ACT_NONE);
        ok_w &= emu::launch(attention_forward_mma_bf16_from_bf16_to_bf16, dim3((c.S + 63) / 64, c.A, c.B), dim3(128),
                            0, ctx.data(), qkv.data(), qkv.data() + H, qkv.data() + 2 * H, mask.data(), c.B, c.S,
                            c.A, 64, 3 * H, scale);
        ok_w &= emu::launch(linear_forward_mma64_bf16_from_bf16, g64(H, c.splits_o), t64, s64, parts.data(),
                            ctx.data(), wo.data(), bo.data(), M, H, H, ACT_NONE);
        ok_w &= emu::launch(residual_layernorm_forward_to_bf16, dim3(M), dim3(ROW_THREADS), size_t(H) * 4,
                            attn.data(), attn_t.data(), parts.data(), hidden.data(), lw0.data(), lb0.data(), M, H,
                            c.splits_o, eps);
        ok_w &= emu::launch(linear_forward_mma64_bf16_from_bf16_to_bf16, g64(I, 1), t64, s64, ffn.data(),
                            attn_t.data(), wi.data(), bi.data(), M, H, I, c.act);
        ok_w &= emu::launch(linear_forward_mma64_bf16_from_bf16, g64(H, c.splits_f), t64, s64, parts.data(),
                            ffn.data(), wf.data(), bf.data(), M, I, H, ACT_NONE);
        ok_w &= emu::launch(residual_layernorm_forward_to_bf16, dim3(M), dim3(ROW_THREADS), size_t(H) * 4,
                            hidden.data(), hidden_t.data(), parts.data(), attn.data(), lw1.data(), lb1.data(), M,
                            H, c.splits_f, eps);
    }

    // The resident kernel, from the same input.
    OutBuf got(mh), got_attn(mh);
    std::copy(hidden0.begin(), hidden0.end(), got.ptr());
    std::vector<bf16> got_t = hidden0_t, r_qkv(mh * 3), r_ctx(mh), r_attn_t(mh), r_ffn(size_t(M) * I);
    std::vector<float> r_parts(size_t(parts_n) * mh);
    const unsigned gen0 = 0xfffffffau; // wraps within the barriers
    std::vector<unsigned> sync = {0u, gen0};
    LayerResidentArgs<bf16> a{};
    a.weight[0] = wqkv.data(), a.weight[1] = wo.data(), a.weight[2] = wi.data(), a.weight[3] = wf.data();
    a.bias[0] = bqkv.data(), a.bias[1] = bo.data(), a.bias[2] = bi.data(), a.bias[3] = bf.data();
    a.ln_w[0] = lw0.data(), a.ln_b[0] = lb0.data(), a.ln_w[1] = lw1.data(), a.ln_b[1] = lb1.data();
    a.hidden = got.ptr(), a.hidden_t = got_t.data(), a.qkv = r_qkv.data(), a.ctx = r_ctx.data();
    a.parts = r_parts.data(), a.attn = got_attn.ptr(), a.attn_t = r_attn_t.data(), a.ffn = r_ffn.data();
    a.mask = mask.data(), a.sync = sync.data();
    a.B = c.B, a.S = c.S, a.H = H, a.I = I, a.A = c.A, a.splits_o = c.splits_o, a.splits_f = c.splits_f;
    a.layers = c.layers, a.act = c.act, a.attention_blocks = c.att_blocks ? c.att_blocks : c.grid;
    a.scale = scale, a.eps = eps;
    // The slabs: 3H/16 + (H/16) zo + I/16 + (H/16) zf, over the grid.
    const int slabs = 3 * H / 16 + H / 16 * c.splits_o + (I + 15) / 16 + H / 16 * c.splits_f;
    const int slots = std::min((slabs + c.grid - 1) / c.grid, RL_MAX_SLOTS);
    const size_t smem = layer_resident_smem(slots);
    emu::opt_in_dynamic_smem(layer_resident_bf16, smem, 227 * 1024);
    const bool ok = emu::launch_in_clusters(emu::kCooperative, layer_resident_bf16, dim3(c.grid),
                                            dim3(RL_THREADS), smem, a);
    const std::string sh = resident_shape(c);
    if (refused) { // too many slabs for the grid: returns before any write or barrier
        if (sync[0] != 0 || sync[1] != gen0) emu::report("barrier words changed by a refused launch");
        record_no_write("layer_resident refuses a small grid", sh, ok, mh - got_attn.unwritten());
        return;
    }
    const unsigned want_gen = gen0 + unsigned(7 * c.layers - (c.layers > 0));
    if (sync[0] != 0 || sync[1] != want_gen) emu::report("barrier words not (0, generation + barriers)");
    size_t differ = 0;
    for (size_t i = 0; i < mh; i++) differ += got_t[i].bits != hidden_t[i].bits;
    if (differ) emu::report(std::to_string(differ) + " hidden_t elements differ from the launches");
    std::vector<double> want(mh), want_attn(mh);
    for (size_t i = 0; i < mh; i++) want[i] = hidden[i], want_attn[i] = attn[i];
    record("layer_resident hidden == the launches", sh, got, want, ok && ok_w, 0.0);
    record("layer_resident attn == the launches", sh, got_attn, want_attn, ok && ok_w, 0.0);
}

static void test_resident(bool quick) {
    emu::opt_in_dynamic_smem(linear_forward_mma64_bf16_from_bf16, MMA_T_SMEM_BYTES_SMALL);
    emu::opt_in_dynamic_smem(linear_forward_mma64_bf16_from_bf16_to_bf16, MMA_T_SMEM_BYTES_SMALL);
    // One sequence of 37 tokens (ragged rows), 2 heads, the FFN output in 2 shares, 2 layers, 13
    // blocks for 64 slabs (5 slots: some blocks 4).
    test_layer_resident({1, 37, 37, 2, 256, 1, 2, 2, 13, ACT_GELU_TANH});
    // Two sequences, the second padded past 30 keys; I = 264 (a ragged last slab, a partial k
    // tile in the FFN output's second share), both outputs split, erf GELU, 16 blocks; the
    // attention's 4 items on 3 blocks (one takes two, restaging its shared memory). 3 layers in
    // the full run (--quick: 1, for the ThreadSanitizer build's time).
    test_layer_resident({2, 50, 30, 2, 264, 2, 2, quick ? 1 : 3, 16, ACT_GELU, 3});
    if (!quick) test_layer_resident({2, 50, 30, 2, 264, 2, 2, 1, 16, ACT_GELU});
    // 9 blocks for 64 slabs: 8 slots, more than fit; the kernel returns untouched.
    test_layer_resident({1, 37, 37, 2, 256, 1, 2, 1, 9, ACT_GELU_TANH}, true);
    if (!quick) {
        // b1's 128 rows, 4 heads, the FFN output in 4 shares: 192 slabs on 40 blocks.
        test_layer_resident({1, 128, 128, 4, 1024, 1, 4, 2, 40, ACT_GELU_TANH});
    }
}
