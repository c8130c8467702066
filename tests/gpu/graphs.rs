//! CUDA graphs (capture, replay with new inputs, arena growth, turned off) and the poisoned
//! arena.

use crate::util::*;

/// Each (R, S) key: the warm-up pass (eager), the capture pass and a replay all give the
/// eager engine's bits, in every dtype; and graphs were really used (no silent fallback).
pub fn graph_replay_matches_eager(_dev: &Ctx) {
    let model = mlm_model();
    let vocab = model.config.vocab_size;
    let keys = [(1, 8), (2, 13), (3, 32), (1, 128)];
    for dtype in DTYPES {
        let mut r = Rng::new(17);
        let eager = CudaAlbert::new(&model, 0, dtype)
            .unwrap()
            .with_graphs(false);
        let graphed = CudaAlbert::new(&model, 0, dtype).unwrap().with_graphs(true);
        for &(rows, s) in &keys {
            let inputs = random_inputs(&mut r, rows, s, vocab);
            let want = eager.forward(&inputs, ForwardOptions::default()).unwrap();
            same_bits_each_pass(&format!("{dtype} R={rows} S={s}"), &graphed, &inputs, &want);
        }
        let st = graphed.graph_stats();
        assert!(
            graphed.graph_status().starts_with("on"),
            "{dtype}: {}",
            graphed.graph_status()
        );
        assert_eq!(
            (st.captured, st.replays, st.eager),
            (keys.len(), 2 * keys.len(), keys.len()),
            "{dtype}: {st:?}"
        );
    }
}

/// One shape, new inputs every pass (two keys interleaved, sharing the staging buffers), each
/// equal to the eager engine: a replay that read stale staged inputs would repeat an earlier
/// answer. A pass that ends without synchronizing (no positions asked) comes right before
/// one that rewrites the staging buffers.
pub fn graph_replays_take_new_inputs(_dev: &Ctx) {
    let model = mlm_model();
    let vocab = model.config.vocab_size;
    for dtype in [DType::F32, DType::BF16] {
        let mut r = Rng::new(29);
        let eager = CudaAlbert::new(&model, 0, dtype)
            .unwrap()
            .with_graphs(false);
        let graphed = CudaAlbert::new(&model, 0, dtype).unwrap().with_graphs(true);
        for pass in 0..8 {
            let (rows, s) = if pass % 2 == 0 { (2, 16) } else { (1, 24) };
            let inputs = random_inputs(&mut r, rows, s, vocab);
            let want = eager.forward(&inputs, ForwardOptions::default()).unwrap();
            let got = graphed.forward(&inputs, ForwardOptions::default()).unwrap();
            same_bits(&format!("{dtype} pass {pass} R={rows} S={s}"), &got, &want);
            let next = random_inputs(&mut r, rows, s, vocab);
            assert!(graphed.masked_lm_logits(&next, &[]).unwrap().is_empty());
            let pos = [0, s - 1];
            let want = eager.masked_lm_logits(&next, &pos).unwrap();
            let got = graphed.masked_lm_logits(&next, &pos).unwrap();
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{dtype} pass {pass}: masked_lm_logits differ"
            );
        }
        let st = graphed.graph_stats();
        assert_eq!(st.captured, 2, "{dtype}: {st:?}");
        assert!(st.replays >= 20, "{dtype}: {st:?}");
    }
}

/// Small, small, large, small, small: the large pass grows the arena, which drops the small
/// key's graph (it points into the freed arena); the small key re-captures into the new one.
pub fn arena_growth_invalidates_graphs(_dev: &Ctx) {
    let model = mlm_model();
    let vocab = model.config.vocab_size;
    let mut r = Rng::new(31);
    let eager = CudaAlbert::new(&model, 0, DType::BF16)
        .unwrap()
        .with_graphs(false);
    let graphed = CudaAlbert::new(&model, 0, DType::BF16)
        .unwrap()
        .with_graphs(true);
    let steps = [(1, 8), (1, 8), (4, 64), (1, 8), (1, 8)];
    for (i, &(rows, s)) in steps.iter().enumerate() {
        let inputs = random_inputs(&mut r, rows, s, vocab);
        let want = eager.forward(&inputs, ForwardOptions::default()).unwrap();
        let got = graphed.forward(&inputs, ForwardOptions::default()).unwrap();
        same_bits(&format!("step {i} R={rows} S={s}"), &got, &want);
    }
    let st = graphed.graph_stats();
    // Captured at steps 1 and 3 (warm key, new arena), replayed at 1, 3, 4; eager at 0, 2.
    assert_eq!(
        (st.captured, st.invalidated, st.replays, st.eager),
        (2, 1, 3, 2),
        "{st:?}"
    );
}

/// ALBERT_CUDA_GRAPHS=0: every pass eager, no capture, the same bits as with graphs; and
/// a pass recording hidden states runs eagerly on a graph engine too.
pub fn graphs_off_runs_eagerly(_dev: &Ctx) {
    let model = mlm_model();
    let vocab = model.config.vocab_size;
    // The harness runs one test at a time on one thread: nothing else reads the variable.
    std::env::set_var("ALBERT_CUDA_GRAPHS", "0");
    let off = CudaAlbert::new(&model, 0, DType::BF16);
    std::env::remove_var("ALBERT_CUDA_GRAPHS");
    let off = off.unwrap();
    let on = CudaAlbert::new(&model, 0, DType::BF16).unwrap();
    assert!(
        off.graph_status().starts_with("off (ALBERT_CUDA_GRAPHS=0)"),
        "{}",
        off.graph_status()
    );
    let inputs = random_inputs(&mut Rng::new(37), 2, 20, vocab);
    for pass in 0..3 {
        let a = off.forward(&inputs, ForwardOptions::default()).unwrap();
        let b = on.forward(&inputs, ForwardOptions::default()).unwrap();
        same_bits(&format!("pass {pass}"), &b, &a);
    }
    let st = off.graph_stats();
    assert_eq!((st.captured, st.replays, st.eager), (0, 0, 3), "{st:?}");
    assert_eq!(on.graph_stats().captured, 1, "{:?}", on.graph_stats());
    let rec = ForwardOptions {
        hidden_states: true,
    };
    let a = off.forward(&inputs, rec).unwrap();
    let b = on.forward(&inputs, rec).unwrap();
    same_bits("recording hidden states", &b, &a);
    assert_eq!(on.graph_stats().captured, 1, "{:?}", on.graph_stats());
}

/// ALBERT_CUDA_POISON (the activation arena filled with NaN bytes before every pass)
/// changes no bit: no kernel reads arena memory its pass did not write, eager, captured or
/// replayed, as the arena grows and when a smaller pass runs inside a larger arena (its rows
/// past M then hold NaN), with the f32 kernels and the bf16 tensor-core path (T copies, split-K
/// partials), through the pretraining head.
pub fn arena_poison_changes_nothing(_dev: &Ctx) {
    let model = Albert::synthetic(base_shaped(), albert::Head::PreTraining, 83);
    let vocab = model.config.vocab_size;
    for dtype in [DType::F32, DType::BF16] {
        let plain = CudaAlbert::new(&model, 0, dtype).unwrap();
        let mut poisoned = CudaAlbert::new(&model, 0, dtype).unwrap();
        poisoned.dev.poison = true;
        let mut r = Rng::new(89);
        for (rows, s) in [(1, 37), (2, 64), (1, 20)] {
            let inputs = random_inputs(&mut r, rows, s, vocab);
            let want = plain.forward(&inputs, ForwardOptions::default()).unwrap();
            same_bits_each_pass(
                &format!("poison {dtype} R={rows} S={s}"),
                &poisoned,
                &inputs,
                &want,
            );
        }
    }
}
