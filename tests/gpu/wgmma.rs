//! sm_90a: the wgmma products (cp.async and TMA staging, 128x256 tiles, persistent grids)
//! against the reference, the mma.sync path and each other; where their operands land.

use crate::model::batch_invariance_with;
use crate::util::*;

/// `open` with ALBERT_CUDA_WGMMA=1, which makes a device load kernels/linear_wgmma.cu. The
/// harness runs one test at a time on one thread: nothing else reads the variable.
pub fn with_wgmma_env<R>(open: impl FnOnce() -> R) -> R {
    std::env::set_var("ALBERT_CUDA_WGMMA", "1");
    let r = open();
    std::env::remove_var("ALBERT_CUDA_WGMMA");
    r
}

/// A device whose T-input products run on wgmma (ALBERT_CUDA_WGMMA; `wide`: with 128x256
/// tiles where they fill two waves, ALBERT_CUDA_WGMMA_WIDE), or None (printed) where
/// kernels/linear_wgmma.cu did not load below sm_90. On sm_90 a module that did not load
/// (the driver refused its PTX or cubin, or a shared memory opt-in) fails the test: a skip there
/// would pass without running the kernels it is about.
pub fn wgmma_device(wide: bool) -> Option<Ctx> {
    let mut wg = with_wgmma_env(|| albert::backend::cuda::CudaDevice::open(0).unwrap());
    wg.wgmma = true;
    wg.wgmma_wide = wide;
    if wg.kernels.has("linear_forward_wgmma_bf16_from_bf16") {
        return Some(wg);
    }
    let (major, minor) = wg.compute_capability;
    let why = wg.kernels.origin.iter().find(|(m, _)| *m == "linear_wgmma");
    assert!(
        major != 9,
        "linear_wgmma not loaded on sm_{major}{minor}: {why:?}"
    );
    println!("  skipped: linear_wgmma not loaded on sm_{major}{minor}: {why:?}");
    None
}

/// Whether `probe` (a wgmma device) loaded `kernel`; on sm_90 it must have (as `wgmma_device`).
fn loaded_on_sm90(probe: &Ctx, kernel: &str, module: &str) -> bool {
    if probe.kernels.has(kernel) {
        return true;
    }
    let why = probe.kernels.origin.iter().find(|(m, _)| *m == module);
    let cc = probe.compute_capability;
    assert!(
        cc.0 != 9,
        "{kernel} not loaded on sm_{}{}: {why:?}",
        cc.0,
        cc.1
    );
    println!("  skipped: {kernel} not loaded: {why:?}");
    false
}

/// The wgmma products (sm_90a) against the CPU reference with the same operand rounding
/// (1e-5, as every product), both tiles (64x64 where 128x128 leaves SMs idle), 9 k tiles
/// through the 6 stages, ragged
/// and albert-base shapes, a misaligned activation (plain staging), split-K; and whether
/// they give mma.sync's bits, printed: the emulator rounds both instructions' k16 steps
/// alike and says yes, the ISA does not promise it.
pub fn wgmma_products_match_reference(dev: &Ctx) {
    let (Some(wg), Some(wide)) = (wgmma_device(false), wgmma_device(true)) else {
        return;
    };
    let mut r = Rng::new(41);
    let shapes = [
        (1, 1, 1, 0),
        (3, 5, 7, 0),
        (130, 33, 129, 0),
        (70, 40, 200, 1),
        (257, 520, 130, 0),
        (37, 3072, 768, 0),
        (128, 768, 2304, 0),
        (2048, 520, 1152, 0), // 144 128x128 tiles: the large kernel on <= 144 SMs
        (4096, 136, 2304, 0), // 288 128x256 tiles: the wide kernel on <= 144 SMs
    ];
    let (mut same, mut total) = (0usize, 0usize);
    for dtype in [DType::BF16, DType::F16] {
        for (i, &(m, k, n, skew)) in shapes.iter().enumerate() {
            let act = [None, Some(Activation::Gelu), Some(Activation::Tanh)][i % 3];
            let ProductCase { inp, w, bias, want } = product_case(&mut r, dtype, (m, k, n), act);
            let padded: Vec<f32> = std::iter::repeat_n(0.0, skew).chain(inp).collect();
            let what = format!("wgmma {dtype} [{m},{k}]x[{n},{k}] +{skew} {act:?}");
            // The same product on `on` (wgmma or not), split into `splits` partials.
            let run = |on: &Ctx, splits: usize| {
                let wd = DeviceMatrix::upload(on, &w, dtype).unwrap();
                let bias_d = up(on, &bias);
                let inp_t = DeviceMatrix::upload(on, &padded, dtype).unwrap();
                let view = inp_t.view(skew..);
                let mut out = poisoned(on, splits * m * n);
                match splits {
                    1 => on.linear_forward_from(&mut out, &view, &wd, Some(&bias_d), m, k, n, act),
                    _ => on.linear_forward_split(
                        &mut out,
                        &view,
                        &wd,
                        Some(&bias_d),
                        m,
                        k,
                        n,
                        splits,
                    ),
                }
                .unwrap();
                let p = down(on, &out);
                (0..m * n)
                    .map(|e| (1..splits).fold(p[e], |acc, z| acc + p[z * m * n + e]))
                    .collect::<Vec<f32>>()
            };
            let splits: &[usize] = if act.is_none() { &[1, 3] } else { &[1] };
            for &s in splits {
                let mma = run(dev, s);
                for (on, tiles) in [(&wg, "128x128"), (&wide, "128x256")] {
                    let got = run(on, s);
                    check(&format!("{what} splits {s} {tiles}"), &got, &want, 1e-5);
                    total += got.len();
                    same += got
                        .iter()
                        .zip(&mma)
                        .filter(|(a, b)| a.to_bits() == b.to_bits())
                        .count();
                }
            }
        }
    }
    println!("  bit-identical to mma.sync: {same} of {total} elements");
}

/// Where the wgmma kernels read and write, decoded from exact small-integer products (f16,
/// K = 64: one k tile, all four k16 steps), for the 64x64, 128x128 and 128x256 kernels: with
/// A one-hot (A[m][k] = 1 at k = m % 64), out[m][n] = W[n][m % 64], so W[n][k] = k names the
/// k each output read (want m % 64) and W[n][k] = n % 1024 the weight row (want n % 1024);
/// with A[m][0] = m % 1024, W[n][0] = 1 and zeros elsewhere, out[m][n] names the activation
/// row (want m % 1024; f16 holds these integers exactly). A wrong descriptor, swizzle or fragment layout shows here as the exact
/// (m, n) -> (row, k) mix-up, printed, which the next session can read off.
pub fn wgmma_layout_probes(_dev: &Ctx) {
    let (Some(wg), Some(wide)) = (wgmma_device(false), wgmma_device(true)) else {
        return;
    };
    let dtype = DType::F16;
    let k = 64;
    // 64x64: one block; 128x128 tiles from sm_count blocks on; 128x256 from 2 sm_count.
    let c = (wg.sm_count as f64).sqrt().ceil() as usize;
    let (big, widest) = (128 * c, 256 * c);
    let one_hot = |m: usize| -> Vec<f32> {
        (0..m * k)
            .map(|i| (i % k == (i / k) % 64) as u8 as f32)
            .collect()
    };
    let first_k = |m: usize, v: &dyn Fn(usize) -> f32| -> Vec<f32> {
        (0..m * k)
            .map(|i| if i % k == 0 { v(i / k) } else { 0.0 })
            .collect()
    };
    let mut bad = 0;
    for (dev, side) in [(&wg, 64), (&wg, big), (&wide, widest)] {
        let (m, n) = (side, side);
        type Probe<'a> = (&'a str, Vec<f32>, Vec<f32>, &'a dyn Fn(usize, usize) -> f32);
        let probes: [Probe; 3] = [
            (
                "k read",
                one_hot(m),
                (0..n * k).map(|i| (i % k) as f32).collect(),
                &|r, _| (r % 64) as f32,
            ),
            (
                "weight row",
                one_hot(m),
                (0..n * k).map(|i| ((i / k) % 1024) as f32).collect(),
                &|_, c| (c % 1024) as f32,
            ),
            (
                "activation row",
                first_k(m, &|r| (r % 1024) as f32),
                first_k(n, &|_| 1.0),
                &|r, _| (r % 1024) as f32,
            ),
        ];
        for (what, a, w, want) in probes {
            let wd = DeviceMatrix::upload(dev, &w, dtype).unwrap();
            let at = DeviceMatrix::upload(dev, &a, dtype).unwrap();
            let mut out = poisoned(dev, m * n);
            dev.linear_forward_from(&mut out, &at.view(0..), &wd, None, m, k, n, None)
                .unwrap();
            let got = down(dev, &out);
            let wrong: Vec<(usize, usize, f32, f32)> = (0..m * n)
                .map(|e| (e / n, e % n, got[e], want(e / n, e % n)))
                .filter(|&(_, _, g, w)| g != w)
                .collect();
            for (r, c, g, w) in wrong.iter().take(8) {
                println!("  {side}x{side} {what}: out[{r}][{c}] = {g}, want {w}");
            }
            if !wrong.is_empty() {
                println!("  {side}x{side} {what}: {} of {} wrong", wrong.len(), m * n);
            }
            bad += wrong.len();
        }
    }
    assert_eq!(
        bad, 0,
        "wgmma layout probes: {bad} outputs wrong (printed above)"
    );
}

/// The whole model with the wgmma products, without and with 128x256 tiles: batch-invariant
/// (as batch_invariance_on_gpu checks the default engine: the [1, 20] sentence runs 64x64
/// tiles, the [32, 128] batch 128x128 and 128x256 ones), and how far from the mma.sync
/// engine (printed; bounded loosely).
pub fn wgmma_model_batch_invariant(dev: &Ctx) {
    if wgmma_device(false).is_none() {
        return;
    }
    let model = Albert::synthetic(base_shaped(), albert::Head::Model, 43);
    let vocab = model.config.vocab_size;
    for (wide, label) in [(false, "wgmma "), (true, "wgmma wide ")] {
        let on = |model: &Albert, dtype| {
            let mut g = with_wgmma_env(|| CudaAlbert::new(model, 0, dtype).unwrap());
            g.dev.wgmma_wide = wide;
            Some(g)
        };
        batch_invariance_with(dev, label, on);
        for dtype in [DType::BF16, DType::F16] {
            let plain = CudaAlbert::new(&model, 0, dtype).unwrap();
            let wg = on(&model, dtype).unwrap();
            let mut r = Rng::new(47);
            let inputs = random_inputs(&mut r, large_rows(dev), 128, vocab);
            let want = plain.forward(&inputs, ForwardOptions::default()).unwrap();
            let got = wg.forward(&inputs, ForwardOptions::default()).unwrap();
            for (name, w) in &want.tensors {
                let g: &Tensor = got.get(name).unwrap();
                let worst = g
                    .data
                    .iter()
                    .zip(&w.data)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                println!("  {label}{dtype} {name}: max |wgmma - mma.sync| = {worst:.3e}");
                // Layout or ordering errors give O(1) garbage; summation-order
                // differences, amplified by the bf16 roundings, stay far below.
                assert!(
                    worst < 0.25,
                    "{label}{dtype} {name}: wgmma engine {worst} from mma.sync"
                );
            }
        }
    }
}

/// The ALBERT_CUDA_TMA experiment (kernels/linear_tma.cu: the wgmma products' tiles staged by
/// TMA from a producer warp): the same bits as the cp.async wgmma kernels through the whole
/// model, eager, captured and replayed, at b1 (64x64 tiles) and the large batch (128x128,
/// split-K FFN output; and with ALBERT_CUDA_WGMMA_WIDE 128x256 from a producer warpgroup),
/// and every T-input product of the pass took a TMA kernel (albert-base's
/// K of 768 and 3072 and the arena's buffers are all describable by a tensor map).
pub fn tma_products_match_wgmma(dev: &Ctx) {
    let Some(probe) = wgmma_device(false) else {
        return;
    };
    if !loaded_on_sm90(
        &probe,
        "linear_forward_wgmma_tma_bf16_from_bf16",
        "linear_tma",
    ) {
        return;
    }
    let model = Albert::synthetic(base_shaped(), albert::Head::Model, 73);
    let vocab = model.config.vocab_size;
    // 128x256 tiles (a producer warpgroup) at the large batch only, where they are taken.
    let runs = [
        (DType::BF16, false, vec![(1, 128), (large_rows(dev), 128)]),
        (DType::F16, false, vec![(1, 128), (large_rows(dev), 128)]),
        (DType::BF16, true, vec![(large_rows(dev), 128)]),
    ];
    for (dtype, wide, shapes) in runs {
        let mut wg = with_wgmma_env(|| CudaAlbert::new(&model, 0, dtype).unwrap());
        let mut tma = with_wgmma_env(|| CudaAlbert::new(&model, 0, dtype).unwrap());
        // The same kernels on a persistent grid (ALBERT_CUDA_PERSISTENT).
        let mut per = with_wgmma_env(|| CudaAlbert::new(&model, 0, dtype).unwrap());
        wg.dev.wgmma_wide = wide;
        tma.dev.wgmma_wide = wide;
        tma.dev.tma = true;
        per.dev.wgmma_wide = wide;
        per.dev.tma = true;
        per.dev.persistent = true;
        let label = if wide { "wgmma wide tma" } else { "wgmma tma" };
        assert_eq!(tma.products(), label);
        assert_eq!(per.products(), format!("{label} persistent"));
        let mut r = Rng::new(79);
        for (rows, s) in shapes {
            let inputs = random_inputs(&mut r, rows, s, vocab);
            let want = wg.forward(&inputs, ForwardOptions::default()).unwrap();
            for (engine, kind) in [
                (&mut tma, label.to_string()),
                (&mut per, format!("{label} persistent")),
            ] {
                same_bits_each_pass(
                    &format!("{kind} {dtype} R={rows} S={s}"),
                    engine,
                    &inputs,
                    &want,
                );
            }
            // The persistent grids: never more blocks than fit on the SMs (at most 2 per SM
            // for these kernels), and fewer than the output tiles somewhere at the large batch.
            let grids = |costs: &[albert::backend::cuda::costs::LaunchCost]| -> Vec<u32> {
                let tma_products = costs.iter().filter(|c| c.kernel.contains("_tma_"));
                tma_products.map(|c| c.grid[0] * c.grid[2]).collect()
            };
            let one_each = grids(&tma.kernel_costs(&inputs).unwrap());
            let resident = grids(&per.kernel_costs(&inputs).unwrap());
            let sms = per.dev.sm_count as u32;
            assert_eq!(
                one_each.len(),
                resident.len(),
                "{label} {dtype}: TMA launches"
            );
            for (a, b) in one_each.iter().zip(&resident) {
                assert!(
                    b <= a && *b <= 2 * sms,
                    "{label} {dtype}: {b} persistent blocks for {a} tiles, {sms} SMs"
                );
            }
            let looped = one_each
                .iter()
                .zip(&resident)
                .filter(|(a, b)| b < a)
                .count();
            println!("  {label} persistent {dtype} R={rows}: {looped} of {} products on fewer blocks than tiles", resident.len());
            if rows > 1 {
                assert!(
                    looped > 0,
                    "{label} {dtype} R={rows}: no product took tiles in turn"
                );
            }
            let costs = tma.kernel_costs(&inputs).unwrap();
            let products: Vec<_> = costs
                .iter()
                .filter(|c| c.kernel.starts_with("linear_forward") && c.kernel.contains("_from_"))
                .collect();
            let on_tma = products
                .iter()
                .filter(|c| c.kernel.contains("_tma_"))
                .count();
            let on_wide = products
                .iter()
                .filter(|c| c.kernel.contains("_wide_tma_"))
                .count();
            println!(
                "  {label} {dtype} R={rows} S={s}: {on_tma} of {} T-input products, {on_wide} 128x256",
                products.len()
            );
            // QKV, FFN-in and the split FFN-out fill two waves of 128x256 tiles at the large
            // batch; the attention output (N = 768, one split) does not.
            let layers = model.config.num_hidden_layers;
            assert_eq!(
                on_wide,
                if wide { 3 * layers } else { 0 },
                "{label} {dtype}: 128x256 launches"
            );
            assert_eq!(
                on_tma,
                products.len(),
                "{dtype} R={rows}: a product left TMA"
            );
            assert_eq!(
                on_tma,
                4 * model.config.num_hidden_layers,
                "{dtype} R={rows}: products per pass"
            );
        }
    }
}

/// The ALBERT_CUDA_PINGPONG experiment (kernels/linear_tma.cu PINGPONG: the 128x128 TMA products'
/// two consumer warpgroups taking whole output tiles in turn, on a persistent grid): the same
/// bits as the cp.async wgmma kernels through the whole model, eager, captured and replayed, at
/// b1 and the large batch; every product the cooperative TMA kernels run at 128x128 on it (at
/// the large batch all, with ALBERT_CUDA_WGMMA_WIDE the attention output; at b1 none on an
/// H100/H200); grids never above the SMs' capacity, and at the large batch fewer blocks than
/// tiles somewhere (both of a block's consumers busy).
pub fn pingpong_products_match_wgmma(dev: &Ctx) {
    let Some(probe) = wgmma_device(false) else {
        return;
    };
    let kernel = "linear_forward_wgmma_pingpong_tma_bf16_from_bf16";
    if !loaded_on_sm90(&probe, kernel, "linear_tma") {
        return;
    }
    let model = Albert::synthetic(base_shaped(), albert::Head::Model, 89);
    let vocab = model.config.vocab_size;
    let layers = model.config.num_hidden_layers;
    let large = large_rows(dev);
    let runs = [
        (DType::BF16, false, vec![(1, 128), (large, 128)]),
        (DType::F16, false, vec![(large, 128)]),
        (DType::BF16, true, vec![(large, 128)]),
    ];
    for (dtype, wide, shapes) in runs {
        let mut wg = with_wgmma_env(|| CudaAlbert::new(&model, 0, dtype).unwrap());
        let mut pp = with_wgmma_env(|| CudaAlbert::new(&model, 0, dtype).unwrap());
        wg.dev.wgmma_wide = wide;
        pp.dev.wgmma_wide = wide;
        pp.dev.tma = true;
        pp.dev.persistent = true;
        pp.dev.pingpong = true;
        let mut per = with_wgmma_env(|| CudaAlbert::new(&model, 0, dtype).unwrap());
        per.dev.wgmma_wide = wide;
        per.dev.tma = true;
        per.dev.persistent = true;
        let label = if wide { "wgmma wide tma" } else { "wgmma tma" };
        assert_eq!(pp.products(), format!("{label} persistent pingpong"));
        let mut r = Rng::new(97);
        for (rows, s) in shapes {
            let inputs = random_inputs(&mut r, rows, s, vocab);
            let want = wg.forward(&inputs, ForwardOptions::default()).unwrap();
            same_bits_each_pass(
                &format!("{label} pingpong {dtype} R={rows} S={s}"),
                &pp,
                &inputs,
                &want,
            );
            let costs = pp.kernel_costs(&inputs).unwrap();
            let pingpong: Vec<_> = costs
                .iter()
                .filter(|c| c.kernel.contains("_pingpong_tma_"))
                .collect();
            let sms = pp.dev.sm_count as u32;
            // A split's 128x128 output tiles, from the launch's "M x K x N" shape.
            let tiles = |shape: &str| -> u32 {
                let d: Vec<u32> = shape
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|s| !s.is_empty())
                    .take(3)
                    .map(|s| s.parse().unwrap())
                    .collect();
                d[0].div_ceil(128) * d[2].div_ceil(128)
            };
            let mut looped = 0;
            for c in &pingpong {
                let (blocks, work) = (c.grid[0], tiles(&c.shape));
                assert!(
                    blocks <= work && blocks * c.grid[2] <= 2 * sms,
                    "{} {}: {:?} blocks for {work} tiles a split on {sms} SMs",
                    c.kernel,
                    c.shape,
                    c.grid
                );
                looped += usize::from(blocks < work);
            }
            if rows > 1 {
                assert!(looped > 0, "{label} {dtype}: no block took two tiles");
            }
            // Every product the cooperative kernels run at 128x128: at b1 none on 132 SMs
            // (64x64 tiles fill them better), some on the fake's 8; at the large batch all, or
            // with 128x256 tiles only the attention output.
            let cooperative = per.kernel_costs(&inputs).unwrap();
            let expected = cooperative
                .iter()
                .filter(|c| c.kernel.starts_with("linear_forward_wgmma_tma_"))
                .count();
            if rows > 1 {
                assert_eq!(expected, if wide { layers } else { 4 * layers });
            }
            println!(
                "  {label} pingpong {dtype} R={rows}: {} of {} products per pass on ping-pong \
                 kernels, {looped} with blocks taking tiles in turn",
                pingpong.len(),
                4 * layers
            );
            assert_eq!(pingpong.len(), expected, "{label} {dtype} R={rows}");
        }
    }
}
