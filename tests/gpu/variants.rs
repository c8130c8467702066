//! The launch and tile experiments (PDL, 8-stage and k-64 products), cubins against PTX and
//! the per-kernel cost log: each the default path's bits, through the whole model.

use crate::util::*;

/// Programmatic dependent launch (ALBERT_CUDA_PDL=1): every kernel waits for its
/// predecessor (kernels/common.cuh grid_dependency_enter) after staging only constant data,
/// so the results are those of plain launches bit for bit, eager and as graphs (warm-up,
/// capture, replay), at albert-base sizes: b1 (64x64 tiles, one wave), b32 (128x128 tiles,
/// several waves, the dependent grid's blocks waiting on SMs the last wave frees) and a
/// ragged shape. Below sm_90 the engine refuses PDL (the kernels there have no wait).
pub fn pdl_matches_plain_launches(dev: &Ctx) {
    let model = Albert::synthetic(base_shaped(), albert::Head::Model, 13);
    let vocab = model.config.vocab_size;
    for dtype in DTYPES {
        let plain = CudaAlbert::new(&model, 0, dtype).unwrap().with_pdl(false);
        let pdl = CudaAlbert::new(&model, 0, dtype).unwrap().with_pdl(true);
        let cc = pdl.dev.compute_capability;
        if !pdl.pdl() {
            assert!(cc.0 < 9, "{dtype}: PDL refused on sm_{}{}", cc.0, cc.1);
            println!(
                "  {dtype}: PDL needs sm_90+ (this is sm_{}{}), skipped",
                cc.0, cc.1
            );
            continue;
        }
        assert!(!plain.pdl());
        let mut r = Rng::new(23);
        for (rows, s) in [(1, 128), (large_rows(dev), 128), (3, 37)] {
            let inputs = random_inputs(&mut r, rows, s, vocab);
            let want = plain.forward(&inputs, ForwardOptions::default()).unwrap();
            same_bits_each_pass(&format!("PDL {dtype} R={rows} S={s}"), &pdl, &inputs, &want);
        }
        assert!(
            pdl.graph_status().starts_with("on"),
            "{dtype}: graphs {}",
            pdl.graph_status()
        );
    }
}

/// The ALBERT_CUDA_DEEP experiment (64x64 products with 8 stages where the grid has at
/// most one block per SM): the same bits as the 4-stage kernels through the whole model at
/// b1/s128 (on 96 SMs or more every product takes them: 24-96 blocks), a ragged b2/s37, and
/// b3/s64 (on 132 SMs QKV's 108 blocks and the attention output's 36 take them, the FFN's
/// 144 do not); every 64x64 launch takes them exactly when its grid fits the SMs. Skipped
/// where the 144 KB kernels did not load.
pub fn deep_products_match_four_stages(dev: &Ctx) {
    let model = Albert::synthetic(base_shaped(), albert::Head::Model, 67);
    let vocab = model.config.vocab_size;
    for dtype in [DType::BF16, DType::F16] {
        let plain = CudaAlbert::new(&model, 0, dtype).unwrap();
        let mut deep = CudaAlbert::new(&model, 0, dtype).unwrap();
        deep.dev.deep = true;
        if deep.products() != "mma.sync deep" {
            println!(
                "  {dtype}: the 8-stage kernels did not load ({}), skipped",
                deep.products()
            );
            continue;
        }
        let mut r = Rng::new(71);
        for (rows, s) in [(1, 128), (2, 37), (3, 64)] {
            let inputs = random_inputs(&mut r, rows, s, vocab);
            let want = plain.forward(&inputs, ForwardOptions::default()).unwrap();
            same_bits_each_pass(
                &format!("deep {dtype} R={rows} S={s}"),
                &deep,
                &inputs,
                &want,
            );
            // Which products took them: each 64x64 one whose grid fits the SMs.
            let costs = deep.kernel_costs(&inputs).unwrap();
            let mut taken = 0;
            for c in costs.iter().filter(|c| c.kernel.contains("mma64")) {
                let blocks = c.grid.iter().map(|&g| g as usize).product::<usize>();
                let is_deep = c.kernel.contains("mma64_deep");
                assert_eq!(
                    is_deep,
                    blocks <= dev.sm_count,
                    "{dtype} R={rows} S={s}: {} with {blocks} blocks on {} SMs",
                    c.kernel,
                    dev.sm_count
                );
                taken += usize::from(is_deep);
            }
            println!(
                "  deep {dtype} R={rows} S={s}: {taken} of {} launches",
                costs.len()
            );
            let layers = model.config.num_hidden_layers;
            if rows * s == 128 && dev.sm_count >= 96 {
                assert_eq!(
                    taken,
                    4 * layers,
                    "{dtype} b1: the 8-stage kernels were not taken"
                );
            }
            if rows * s == 192 && dev.sm_count == 132 {
                let want = 2 * layers;
                assert_eq!(taken, want, "{dtype} b3/s64: QKV and attention output only");
            }
        }
    }
}

/// The ALBERT_CUDA_K64 experiment (128x128 T-input products taking k 64 per tile): the same
/// bits as the default kernels through the whole model at albert-base sizes, b32 (128x128
/// tiles, split-K FFN output) and b8. Skipped where the 110 KB kernels did not load.
pub fn k64_products_match_k32(dev: &Ctx) {
    let model = Albert::synthetic(base_shaped(), albert::Head::Model, 29);
    let vocab = model.config.vocab_size;
    for dtype in [DType::BF16, DType::F16] {
        let plain = CudaAlbert::new(&model, 0, dtype).unwrap();
        let mut k64 = CudaAlbert::new(&model, 0, dtype).unwrap();
        k64.dev.k64 = true;
        let t = dtype.name();
        if !k64
            .dev
            .kernels
            .has(&format!("linear_forward_mma_k64_{t}_from_{t}"))
        {
            println!("  {dtype}: the k-64 kernels did not load (110 KB of shared memory), skipped");
            continue;
        }
        let mut r = Rng::new(31);
        for (rows, s) in [(large_rows(dev), 128), (8, 100)] {
            let inputs = random_inputs(&mut r, rows, s, vocab);
            let want = plain.forward(&inputs, ForwardOptions::default()).unwrap();
            let got = k64.forward(&inputs, ForwardOptions::default()).unwrap();
            same_bits(&format!("k64 {dtype} R={rows} S={s}"), &got, &want);
        }
    }
}

/// The ALBERT_CUDA_FUSED_LN experiment (the attention output's product and residual LayerNorm
/// in one cluster kernel, kernels/linear_mma_ln.cu, sm_90): the same bits as the two kernels
/// through the whole model, eager and as graphs, at b32-sized batches (128x128 tiles: the fused
/// kernel is taken, once per layer application, and the LayerNorm launches halve) and a ragged
/// one (M not a multiple of 128: the last cluster's rows past M untouched); at b1 (64x64 tiles)
/// it is not taken. With ALBERT_CUDA_K_PER_SPLIT=3072 the FFN output is unsplit and fused
/// too. Skipped below sm_90 (no clusters: the kernels are not loaded).
pub fn fused_layernorm_matches_unfused(dev: &Ctx) {
    let model = Albert::synthetic(base_shaped(), albert::Head::Model, 37);
    let (vocab, layers) = (model.config.vocab_size, model.config.num_hidden_layers);
    for dtype in [DType::BF16, DType::F16] {
        let plain = CudaAlbert::new(&model, 0, dtype).unwrap();
        let mut fused = CudaAlbert::new(&model, 0, dtype).unwrap();
        fused.dev.fused_ln = true;
        let t = dtype.name();
        let kn = format!("linear_forward_mma_ln_{t}_from_{t}");
        if !fused.dev.kernels.has(&kn) {
            let cc = fused.dev.compute_capability;
            assert!(cc.0 < 9, "{dtype}: {kn} not loaded on sm_{}{}", cc.0, cc.1);
            println!("  {dtype}: no clusters below sm_90, skipped");
            continue;
        }
        let mut r = Rng::new(41);
        let rows = large_rows(dev);
        // f16 takes the same path through other conversions: one shape (the emulator's time).
        let shapes = match dtype {
            DType::BF16 => vec![(rows, 128, true), (rows + 1, 100, true), (1, 128, false)],
            _ => vec![(rows, 128, true)],
        };
        for (rows, s, taken) in shapes {
            let inputs = random_inputs(&mut r, rows, s, vocab);
            let want = plain.forward(&inputs, ForwardOptions::default()).unwrap();
            same_bits_each_pass(
                &format!("fused LN {dtype} R={rows} S={s}"),
                &fused,
                &inputs,
                &want,
            );
            // The FFN output too where ALBERT_CUDA_K_PER_SPLIT leaves it unsplit.
            let ffn_unsplit =
                albert::backend::cuda::CudaDevice::output_splits(model.config.intermediate_size)
                    == 1;
            let want_fused = if taken {
                layers * (1 + usize::from(ffn_unsplit))
            } else {
                0
            };
            let label = format!("{dtype} R={rows} S={s}");
            fused_launches(&label, (&fused, &plain), &inputs, "mma_ln", want_fused);
        }
    }
}

/// The ALBERT_CUDA_GRID_LN experiment (the output products' residual LayerNorms in the
/// products' own cooperative launch at small batches, kernels/linear_mma_grid_ln.cu, sm_80+):
/// the same bits as the split products and LayerNorm kernels through the whole model, eager and
/// as graphs (the row groups' barrier words are reused by every replay). Each output product is
/// fused exactly where `grid_ln_fits` says its grid fits on the SMs (b1: at least the attention
/// output's 24 blocks on any GPU of 8 SMs or more), with one LayerNorm launch less per fused
/// product; at a batch too large for the SMs nothing is fused.
pub fn grid_layernorm_matches_unfused(dev: &Ctx) {
    let model = Albert::synthetic(base_shaped(), albert::Head::Model, 43);
    let cfg = &model.config;
    let (vocab, layers) = (cfg.vocab_size, cfg.num_hidden_layers);
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let splits = albert::backend::cuda::CudaDevice::output_splits;
    for dtype in [DType::BF16, DType::F16] {
        let plain = CudaAlbert::new(&model, 0, dtype).unwrap();
        let mut grid = CudaAlbert::new(&model, 0, dtype).unwrap();
        grid.dev.grid_ln = true;
        if !grid.dev.cooperative {
            println!("  the device takes no cooperative launches (MPS?): skipped");
            return;
        }
        let t = dtype.name();
        let kn = format!("linear_forward_mma64_ln_{t}_from_{t}");
        assert!(grid.dev.kernels.has(&kn), "{dtype}: {kn} not loaded");
        let mut r = Rng::new(47);
        // f16 takes the same path through other conversions: one shape (the emulator's time).
        let shapes = match dtype {
            DType::BF16 => vec![(1, 128), (2, 100), (32 * dev.sm_count.div_ceil(8), 128)],
            _ => vec![(1, 128)],
        };
        for (rows, s) in shapes {
            let m = rows * s;
            let fits =
                |n: usize, k: usize| usize::from(grid.dev.grid_ln_fits(dtype, (m, n), splits(k)));
            let want_fused = layers * (fits(h, h) + fits(h, i));
            if rows == 1 {
                assert!(
                    fits(h, h) == 1,
                    "{dtype}: b1's attention output (24 blocks) not fused"
                );
            }
            if rows > 2 {
                assert_eq!(
                    want_fused, 0,
                    "{dtype} R={rows}: a grid larger than the SMs hold"
                );
                continue; // the selection is the point here; the pass is the plain one
            }
            let inputs = random_inputs(&mut r, rows, s, vocab);
            let want = plain.forward(&inputs, ForwardOptions::default()).unwrap();
            same_bits_each_pass(
                &format!("grid LN {dtype} R={rows} S={s}"),
                &grid,
                &inputs,
                &want,
            );
            let label = format!("{dtype} R={rows} S={s}");
            fused_launches(&label, (&grid, &plain), &inputs, "mma64_ln", want_fused);
        }
    }
}

/// The ALBERT_CUDA_RESIDENT experiment (every layer application of a small batch in one
/// cooperative launch, the layer's weights resident in shared memory: kernels/layer_resident.cu,
/// sm_90 for its 179 KB per block on 132 SMs): the same bits as the T path's launches through the whole
/// model, eager and as graphs (the barrier words reused by every replay). Taken exactly where
/// `resident_taken` says (M <= 128 tokens, albert-base's 576 slabs at most 7 per SM: 83 SMs or
/// more), then one launch in place of every layer launch; at 129 tokens nothing changes.
pub fn resident_layers_match_the_launches(dev: &Ctx) {
    let model = Albert::synthetic(base_shaped(), albert::Head::Model, 59);
    let (vocab, layers) = (model.config.vocab_size, model.config.num_hidden_layers);
    for dtype in [DType::BF16, DType::F16] {
        let plain = CudaAlbert::new(&model, 0, dtype).unwrap();
        let mut res = CudaAlbert::new(&model, 0, dtype).unwrap();
        res.dev.resident_layers = true;
        if !res.resident_layers() {
            let cc = res.dev.compute_capability;
            assert!(
                cc.0 < 9 || !res.dev.cooperative,
                "{dtype}: layer_resident not loaded on sm_{}{}",
                cc.0,
                cc.1
            );
            println!("  {dtype}: needs sm_90's shared memory and cooperative launches: skipped");
            continue;
        }
        let mut r = Rng::new(61);
        // f16 takes the same path through other conversions: one shape (the emulator's time).
        let shapes = match dtype {
            DType::BF16 => vec![(1, 128), (2, 50), (1, 129)],
            _ => vec![(1, 128)],
        };
        for (rows, s) in shapes {
            let m = rows * s;
            let taken = res.resident_taken(m);
            assert_eq!(
                taken,
                m <= 128 && dev.sm_count >= 83,
                "{dtype} R={rows} S={s}: resident_taken"
            );
            let inputs = random_inputs(&mut r, rows, s, vocab);
            let want = plain.forward(&inputs, ForwardOptions::default()).unwrap();
            let label = format!("{dtype} R={rows} S={s}");
            same_bits_each_pass(&format!("resident {label}"), &res, &inputs, &want);
            let costs = res.kernel_costs(&inputs).unwrap();
            let count = |name: &str| costs.iter().filter(|c| c.kernel.contains(name)).count();
            assert_eq!(count("layer_resident"), usize::from(taken), "{label}");
            let attention = if taken { 0 } else { layers };
            assert_eq!(count("attention_forward"), attention, "{label}");
            println!("  {label}: resident {taken}, same bits");
        }
    }
}

/// The embedded cubins (loaded by default: no JIT at start-up) and the embedded PTX
/// (ALBERT_CUDA_PTX=1: JIT-compiled by the driver) are the same kernels: every module comes
/// from the path asked for, and the whole model gives the same bits both ways, in every dtype,
/// and with ALBERT_CUDA_WGMMA=1 on sm_90a.
pub fn cubins_match_ptx(dev: &Ctx) {
    let model = Albert::synthetic(base_shaped(), albert::Head::Model, 53);
    let vocab = model.config.vocab_size;
    let cc = dev.compute_capability;
    let has_cubin = cc.0 == 8 || cc == (9, 0);
    if !has_cubin {
        println!(
            "  sm_{}{}: no embedded cubin runs here (sm_80, sm_90a); checking PTX only",
            cc.0, cc.1
        );
    }
    let wgmma_runs = [false, true];
    for wgmma in wgmma_runs.iter().copied().filter(|&w| !w || cc == (9, 0)) {
        // The harness runs one test at a time on one thread: nothing else reads them.
        let open = |ptx: bool, dtype| {
            if wgmma {
                std::env::set_var("ALBERT_CUDA_WGMMA", "1");
            }
            if ptx {
                std::env::set_var("ALBERT_CUDA_PTX", "1");
            }
            let g = CudaAlbert::new(&model, 0, dtype);
            std::env::remove_var("ALBERT_CUDA_PTX");
            std::env::remove_var("ALBERT_CUDA_WGMMA");
            g.unwrap()
        };
        for dtype in DTYPES {
            let (machine, jit) = (open(false, dtype), open(true, dtype));
            for (g, want) in [
                (&machine, if has_cubin { "cubin " } else { "ptx " }),
                (&jit, "ptx "),
            ] {
                for (module, how) in &g.dev.kernels.origin {
                    assert!(
                        how.starts_with(want) || how.starts_with("not loaded"),
                        "{module}: {how} (expected {want}...)"
                    );
                }
            }
            let mut r = Rng::new(59);
            for (rows, s) in [(large_rows(dev), 128), (3, 37)] {
                let inputs = random_inputs(&mut r, rows, s, vocab);
                let want = jit.forward(&inputs, ForwardOptions::default()).unwrap();
                let got = machine.forward(&inputs, ForwardOptions::default()).unwrap();
                let label = format!("cubin vs PTX, wgmma {wgmma}, {dtype} R={rows} S={s}");
                same_bits(&label, &got, &want);
            }
        }
    }
}

/// `albert bench --kernel-costs`: one eager pass records every launch, loaded kernels
/// only, and their FLOPs add up to the encoder's (bench::encoder_flops) in every dtype and
/// whatever graphs did before; recording stops with the pass.
pub fn kernel_costs_cover_the_pass(dev: &Ctx) {
    let model = Albert::synthetic(base_shaped(), albert::Head::Model, 61);
    let cfg = model.config.clone();
    for dtype in DTYPES {
        let g = CudaAlbert::new(&model, 0, dtype).unwrap();
        for (rows, s) in [(2, 37), (large_rows(dev), 128), (2, 37)] {
            let inputs = albert::bench::random_inputs(&cfg, rows, s, 7).unwrap();
            // Warm-up and capture first: the recorded pass must still run eagerly.
            g.encode_only(&inputs).unwrap();
            g.encode_only(&inputs).unwrap();
            let costs = g.kernel_costs(&inputs).unwrap();
            let label = format!("{dtype} R={rows} S={s}");
            assert!(
                costs.len() > cfg.num_hidden_layers * 4,
                "{label}: {} launches",
                costs.len()
            );
            for c in &costs {
                assert!(
                    g.dev.kernels.has(&c.kernel),
                    "{label}: {} not loaded",
                    c.kernel
                );
                assert!(
                    c.bytes > 0.0 && c.grid.iter().all(|&d| d > 0),
                    "{label}: {c:?}"
                );
            }
            let flops: f64 = costs.iter().map(|c| c.flops).sum();
            let want = albert::bench::encoder_flops(&cfg, rows, s);
            assert!(
                (flops - want).abs() <= 1e-9 * want,
                "{label}: {flops} FLOPs, want {want}"
            );
            assert_eq!(
                g.kernel_costs(&inputs).unwrap(),
                costs,
                "{label}: not repeatable"
            );
            g.encode_only(&inputs).unwrap();
            assert!(g.dev.costs.take().is_empty(), "{label}: still recording");
            println!(
                "  {label}: {} launches, {:.2} GFLOP",
                costs.len(),
                flops / 1e9
            );
        }
    }
}

/// The pass of `fused` launches `kernel` (a product with its LayerNorm) `want` times and one
/// residual LayerNorm kernel less per such launch than `plain`'s pass of the same inputs.
fn fused_launches(
    label: &str,
    (fused, plain): (&CudaAlbert, &CudaAlbert),
    inputs: &albert::Inputs,
    kernel: &str,
    want: usize,
) {
    let count = |costs: &[albert::backend::cuda::costs::LaunchCost], name: &str| {
        costs.iter().filter(|c| c.kernel.contains(name)).count()
    };
    let costs = fused.kernel_costs(inputs).unwrap();
    let base = plain.kernel_costs(inputs).unwrap();
    assert_eq!(count(&costs, kernel), want, "{label}");
    assert_eq!(
        count(&costs, "residual_layernorm") + want,
        count(&base, "residual_layernorm"),
        "{label}: one LayerNorm launch per fused product"
    );
    println!("  {label}: {want} fused launches, same bits");
}
