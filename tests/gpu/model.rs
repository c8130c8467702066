//! The whole model on the GPU: against every ../shared fixture (f32) and the CPU emulation
//! (bf16/f16), fill-mask, repeatability, batch invariance, out of memory, threads.

use crate::common::{fixtures, model_dir, output_mask, rel_error};
use crate::util::*;

pub fn run_fixture(
    name: &str,
    model: &Albert,
    dtype: DType,
    dev_ordinal: usize,
) -> (Vec<(String, f64)>, albert::Outputs, albert::Inputs) {
    let dir = model_dir(name);
    let inputs = io::read_inputs(&dir.join("reference.safetensors")).unwrap();
    let gpu = CudaAlbert::new(model, dev_ordinal, dtype).unwrap();
    let out = gpu
        .forward(
            &inputs,
            ForwardOptions {
                hidden_states: true,
            },
        )
        .unwrap();
    let reference = io::read_f32_tensors(&dir.join("reference.safetensors")).unwrap();
    let mut errors = Vec::new();
    for (n, want) in &reference {
        if let Some(got) = out.get(n) {
            errors.push((
                n.clone(),
                rel_error(got, want, output_mask(&inputs, &want.shape).as_deref()),
            ));
        }
    }
    (errors, out, inputs)
}

pub fn model_f32_matches_fixtures(dev: &Ctx) {
    let mut failures = Vec::new();
    for name in fixtures() {
        let model = Albert::from_dir(&model_dir(&name), None).unwrap();
        let (errors, _, _) = run_fixture(&name, &model, DType::F32, 0);
        assert!(errors.len() >= 3, "{name}: outputs missing");
        let worst =
            errors
                .iter()
                .cloned()
                .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
        println!(
            "  f32 {name:28} worst {:.2e} ({}) on {}",
            worst.1, worst.0, dev.name
        );
        failures.extend(
            errors
                .into_iter()
                .filter(|e| e.1.is_nan() || e.1 > 1e-5)
                .map(|e| format!("{name}/{}: {:.3e}", e.0, e.1)),
        );
    }
    assert!(failures.is_empty(), "beyond 1e-5: {failures:?}");
}

pub fn model_bf16_f16_match_emulation(_dev: &Ctx) {
    let mut failures = Vec::new();
    for dtype in [DType::BF16, DType::F16] {
        for name in fixtures() {
            let model = Albert::from_dir(&model_dir(&name), None).unwrap();
            let (fixture_errors, out, inputs) = run_fixture(&name, &model, dtype, 0);
            let emulated = model
                .clone()
                .with_dtype(dtype)
                .forward(
                    &inputs,
                    ForwardOptions {
                        hidden_states: true,
                    },
                )
                .unwrap();
            let mut worst_emu = 0f64;
            for (n, want) in &emulated.tensors {
                let got: &Tensor = out.get(n).unwrap();
                let e = rel_error(got, want, output_mask(&inputs, &want.shape).as_deref());
                worst_emu = worst_emu.max(e);
            }
            let worst_fix = fixture_errors.iter().map(|e| e.1).fold(0.0, f64::max);
            // The emulation's own distance to float64, on the same outputs.
            let reference =
                io::read_f32_tensors(&model_dir(&name).join("reference.safetensors")).unwrap();
            let emu_fix = reference
                .iter()
                .filter_map(|(n, want)| {
                    let got = emulated.get(n)?;
                    Some(rel_error(
                        got,
                        want,
                        output_mask(&inputs, &want.shape).as_deref(),
                    ))
                })
                .fold(0.0, f64::max);
            println!("  {dtype} {name:28} vs CPU emulation {worst_emu:.2e}, vs float64 fixture {worst_fix:.2e} (emulation {emu_fix:.2e})");
            if worst_emu.is_nan() || worst_fix.is_nan() || worst_fix > 1.5 * emu_fix + 1e-3 {
                failures.push(format!(
                    "{dtype} {name}: {worst_fix:.3e} from float64, the CPU emulation {emu_fix:.3e}"
                ));
            }
            if name == "base-v2-random-mlm" || name == "tiny-albert-mlm" {
                let bound = if dtype == DType::BF16 { 3.4e-2 } else { 2.1e-2 };
                if worst_fix > bound {
                    failures.push(format!("{dtype} base-v2: {worst_fix:.3e} from float64, transformers is {bound:.1e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

pub fn fill_mask_on_gpu_matches_cpu(_dev: &Ctx) {
    use albert::pipelines::fill_mask::fill_mask;
    let dir = model_dir("tiny-albert-mlm");
    let tok = albert::Tokenizer::from_dir(&dir).unwrap();
    let model = Albert::from_dir(&dir, None).unwrap();
    let texts = vec![
        "Plants create [MASK] through a process known as photosynthesis.".to_string(),
        "a [MASK] b [MASK] c".to_string(),
    ];
    let cpu_answers = fill_mask(&albert::Engine::Cpu(model.clone()), &tok, &texts, 5).unwrap();
    let gpu = albert::Engine::Cuda(Box::new(CudaAlbert::new(&model, 0, DType::F32).unwrap()));
    let gpu_answers = fill_mask(&gpu, &tok, &texts, 5).unwrap();
    for (c, g) in cpu_answers
        .iter()
        .flatten()
        .flatten()
        .zip(gpu_answers.iter().flatten().flatten())
    {
        assert_eq!((c.token, &c.sequence), (g.token, &g.sequence));
        assert!(
            (c.score - g.score).abs() <= 1e-5 * c.score.abs(),
            "{} vs {}",
            c.score,
            g.score
        );
    }
}

/// Same inputs twice, and the same sequence alone and padded in a batch: identical bits.
/// A difference between runs would be a race.
pub fn repeated_runs_are_identical(_dev: &Ctx) {
    let dir = model_dir("tiny-albert-groups");
    let model = Albert::from_dir(&dir, None).unwrap();
    let inputs = io::read_inputs(&dir.join("reference.safetensors")).unwrap();
    for dtype in DTYPES {
        let gpu = CudaAlbert::new(&model, 0, dtype).unwrap();
        let a = gpu.forward(&inputs, ForwardOptions::default()).unwrap();
        let b = gpu.forward(&inputs, ForwardOptions::default()).unwrap();
        assert_eq!(
            a.get("last_hidden_state"),
            b.get("last_hidden_state"),
            "{dtype}: two runs differ"
        );
    }
}

/// albert-base sizes (random weights): a 20-token sentence alone ([1, 20]: 64x64 product
/// tiles, one key tile) and as row 1 of a [32, 128] batch of longer ones (128x128 tiles,
/// padded keys; `large_rows`): every hidden state over its 20 positions bit for bit, in
/// each dtype. The products' tile shape changes no bits and the split-K count depends on K
/// alone (linear_t.rs `output_splits`); a mutated comparison (the next row) must differ.
pub fn batch_invariance_on_gpu(dev: &Ctx) {
    batch_invariance_with(dev, "", |model, dtype| {
        Some(CudaAlbert::new(model, 0, dtype).unwrap())
    });
}

/// batch_invariance_on_gpu's check for an engine from `engine` (None: skip that dtype);
/// `label` names its variant in the messages.
pub fn batch_invariance_with(
    dev: &Ctx,
    label: &str,
    engine: impl Fn(&Albert, DType) -> Option<CudaAlbert>,
) {
    let cfg = base_shaped();
    let model = Albert::synthetic(cfg, albert::Head::Model, 11);
    let (len, rows, s, at) = (20usize, large_rows(dev), 128usize, 1usize);
    let mut rng = Rng::new(5);
    let mut token = || 5 + (rng.next_u64() % 29000) as i64;
    let sentence: Vec<i64> = (0..len).map(|_| token()).collect();
    let mut ids = Vec::with_capacity(rows * s);
    let mut mask = Vec::with_capacity(rows * s);
    for r in 0..rows {
        let n = if r == at { len } else { s - (r % 7) };
        match r == at {
            true => ids.extend(sentence.iter().copied().chain(std::iter::repeat(0)).take(s)),
            false => ids.extend((0..s).map(|p| if p < n { token() } else { 0 })),
        }
        mask.extend((0..s).map(|p| (p < n) as i64));
    }
    let alone = albert::Inputs::new(sentence.clone(), None, None, &[1, len]).unwrap();
    let batch = albert::Inputs::new(ids, Some(mask), None, &[rows, s]).unwrap();
    let opts = ForwardOptions {
        hidden_states: true,
    };
    for dtype in DTYPES {
        let Some(gpu) = engine(&model, dtype) else {
            continue;
        };
        let a = gpu.forward(&alone, opts).unwrap();
        let b = gpu.forward(&batch, opts).unwrap();
        let h = 768;
        let mut compared = 0;
        for (name, ta) in &a.tensors {
            if ta.shape.len() != 3 {
                continue; // pooler_output is [B, H]: its first token is in the hidden states
            }
            let tb = b.get(name).unwrap();
            let row = |t: &Tensor, r: usize| {
                let st = t.shape[1] * h;
                t.data[r * st..r * st + len * h].to_vec()
            };
            assert_eq!(
                row(ta, 0),
                row(tb, at),
                "{label}{dtype} {name}: the sentence alone and in a batch differ"
            );
            assert_ne!(
                row(ta, 0),
                row(tb, (at + 1) % rows),
                "{label}{dtype} {name}: mutated row"
            );
            compared += 1;
        }
        assert!(
            compared >= model.config.num_hidden_layers + 2,
            "{dtype}: only {compared} hidden-state tensors compared"
        );
        println!(
            "  {label}{dtype}: {compared} tensors bit-identical alone and in a batch of {rows}"
        );
    }
}

/// Activations larger than the GPU: an Error::Device naming the sizes, not an abort, and the
/// engine still works afterwards.
pub fn out_of_memory_is_an_error(_dev: &Ctx) {
    let mut cfg = albert::AlbertConfig::default();
    (cfg.vocab_size, cfg.embedding_size, cfg.hidden_size) = (64, 16, 64);
    (cfg.intermediate_size, cfg.num_attention_heads) = (1 << 20, 1);
    (
        cfg.num_hidden_layers,
        cfg.num_hidden_groups,
        cfg.inner_group_num,
    ) = (1, 1, 1);
    cfg.max_position_embeddings = 512;
    let model = Albert::synthetic(cfg, albert::Head::Model, 1).with_limits(albert::Limits {
        max_tokens: usize::MAX,
    });
    let gpu = CudaAlbert::new(&model, 0, DType::BF16).unwrap();
    // 256 x 512 tokens x 2 MiB of FFN activations per token (bf16, as the tensor-core path
    // stores them; 4 MiB in f32): >= 256 GiB, more than an H200's 141 GB.
    let huge = albert::Inputs::new(vec![1; 256 * 512], None, None, &[256, 512]).unwrap();
    let err = gpu.forward(&huge, ForwardOptions::default()).unwrap_err();
    assert!(
        matches!(err, albert::Error::Device { .. }) && err.to_string().contains("MiB"),
        "{err}"
    );
    let small = albert::Inputs::new(vec![1; 8], None, None, &[1, 8]).unwrap();
    gpu.forward(&small, ForwardOptions::default()).unwrap();
}

/// One GPU model shared by 4 threads: every output bit for bit equal to the request alone.
pub fn threads_share_one_gpu_model(_dev: &Ctx) {
    let dir = model_dir("tiny-albert-mlm");
    let model = Albert::from_dir(&dir, None).unwrap();
    let gpu = CudaAlbert::new(&model, 0, DType::BF16).unwrap();
    let reqs: Vec<albert::Inputs> = (1..6)
        .map(|k| {
            let s = 7 * k;
            let ids = (0..k * s).map(|i| (i * 31 % 1000) as i64 + 5).collect();
            albert::Inputs::new(ids, None, None, &[k, s]).unwrap()
        })
        .collect();
    let alone: Vec<_> = reqs
        .iter()
        .map(|r| gpu.forward(r, ForwardOptions::default()).unwrap())
        .collect();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (gpu, reqs, alone) = (&gpu, &reqs, &alone);
            scope.spawn(move || {
                for round in 0..5 {
                    let i = (t + round) % reqs.len();
                    let out = gpu.forward(&reqs[i], ForwardOptions::default()).unwrap();
                    assert!(
                        out.tensors == alone[i].tensors,
                        "thread {t}: request {i} differs"
                    );
                }
            });
        }
    });
}
