//! The fast CPU ops against the reference ops on seeded random data, for every instruction set
//! this CPU has (portable, AVX2, AVX-512, AVX512_BF16), at sizes that are not multiples of the
//! SIMD width, the register tile or the K block; then whole models (every head, padding) against
//! `Albert::forward`. Tolerances: `atol + rtol * |want|` per element, worst element reported.

use albert::backend::cpu::fast::attention::{attention_forward, AttentionScratch};
use albert::backend::cpu::fast::embeddings::{self, Table};
use albert::backend::cpu::fast::gemm::{linear_forward, Epilogue, Micro, PackedWeight};
use albert::backend::cpu::fast::{norm, AlignedBuf, FastAlbert, Isa};
use albert::backend::cpu::reference as reference_ops;
use albert::model::activation::Activation;
use albert::rng::Rng;
use albert::{Albert, AlbertConfig, DType, ForwardOptions, Head, Inputs};

/// Fails with the worst element when any |got - want| > atol + rtol * |want|.
fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst = (0usize, 0f64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}: non-finite at {i}");
        let excess = (*g as f64 - *w as f64).abs() - (atol + rtol * (*w as f64).abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let i = worst.0;
    assert!(
        worst.1 <= 0.0,
        "{what}: element {i}: got {}, want {} (atol {atol:e}, rtol {rtol:e})",
        got[i],
        want[i]
    );
    assert!(
        want.iter().any(|v| *v != 0.0),
        "{what}: reference is all zeros"
    );
}

const SHAPES: [(usize, usize, usize); 7] = [
    // (m, k, n): ragged against MR (3, 4, 12), NR (16, 32, 48), KC (128 k-steps), bf16 pairs.
    (1, 1, 1),
    (5, 7, 3),
    (13, 33, 47),
    (37, 130, 97),
    (4, 257, 50),
    (64, 300, 49),
    (29, 768, 96),
];

#[test]
fn linear_matches_reference_on_every_isa_and_ragged_shape() {
    let mut r = Rng::new(1);
    for isa in Isa::available() {
        for dtype in [DType::F32, DType::BF16] {
            for (m, k, n) in SHAPES {
                let inp = r.vec(m * k, 1.0);
                let w = r.vec(n * k, 1.0 / (k as f32).sqrt());
                let bias = r.vec(n, 0.5);
                let mut want = vec![0f32; m * n];
                reference_ops::linear_forward(&mut want, &inp, &w, Some(&bias), m, k, n, dtype);
                let pw = PackedWeight::new(&w, n, k, dtype, isa);
                let mut pa = AlignedBuf::zeros(pw.micro.packed_a_len(m, k));
                let mut got = vec![f32::NAN; m * n];
                linear_forward(
                    &mut got,
                    &inp,
                    &pw,
                    Some(&bias),
                    m,
                    k,
                    n,
                    Epilogue::None,
                    pa.u32s_mut(),
                );
                let what = format!("{} {dtype} m{m} k{k} n{n}", pw.micro.name());
                // f32 sums of k products of O(1): a few ulp of sqrt(k).
                assert_close(&what, &got, &want, 2e-6 * (k as f64).sqrt(), 1e-6);
            }
        }
    }
}

#[test]
fn linear_epilogues_match_reference() {
    let mut r = Rng::new(2);
    let eps = 1e-12;
    for isa in Isa::available() {
        for (m, k, n) in [(13usize, 33usize, 47usize), (37, 130, 97), (9, 64, 768)] {
            let inp = r.vec(m * k, 1.0);
            let w = r.vec(n * k, 1.0 / (k as f32).sqrt());
            let bias = r.vec(n, 0.5);
            let pw = PackedWeight::new(&w, n, k, DType::F32, isa);
            let mut pa = AlignedBuf::zeros(pw.micro.packed_a_len(m, k));
            let mut plain = vec![0f32; m * n];
            reference_ops::linear_forward(&mut plain, &inp, &w, Some(&bias), m, k, n, DType::F32);
            let tol = 2e-6 * (k as f64).sqrt();

            for act in [Activation::GeluTanh, Activation::Gelu, Activation::Relu] {
                let mut want = plain.clone();
                reference_ops::activation_forward(&mut want, act);
                let mut got = vec![0f32; m * n];
                let epi = Epilogue::Activation(act);
                linear_forward(
                    &mut got,
                    &inp,
                    &pw,
                    Some(&bias),
                    m,
                    k,
                    n,
                    epi,
                    pa.u32s_mut(),
                );
                assert_close(
                    &format!("{} {act:?} m{m} n{n}", isa.name()),
                    &got,
                    &want,
                    tol,
                    1e-6,
                );
            }

            let residual = r.vec(m * n, 1.0);
            let (lw, lb) = (r.vec(n, 1.0), r.vec(n, 0.2));
            let mut want = vec![0f32; m * n];
            reference_ops::residual_layernorm_forward(
                &mut want, &plain, &residual, &lw, &lb, n, eps,
            );
            let mut got = vec![0f32; m * n];
            let epi = Epilogue::ResidualLayerNorm {
                residual: &residual,
                weight: &lw,
                bias: &lb,
                eps,
            };
            linear_forward(
                &mut got,
                &inp,
                &pw,
                Some(&bias),
                m,
                k,
                n,
                epi,
                pa.u32s_mut(),
            );
            // LayerNorm divides by the row's std (~1.3 here): the product's error carries over.
            assert_close(
                &format!("{} residual LN m{m} n{n}", isa.name()),
                &got,
                &want,
                4.0 * tol,
                1e-6,
            );
        }
    }
}

/// q, k, v interleaved as the fused QKV output: row r holds q | k | v, each [A*D].
fn qkv_split(qkv: &[f32], rows: usize, h: usize) -> [Vec<f32>; 3] {
    let part = |p: usize| {
        (0..rows)
            .flat_map(|r| {
                qkv[r * 3 * h + p * h..r * 3 * h + (p + 1) * h]
                    .iter()
                    .copied()
            })
            .collect()
    };
    [part(0), part(1), part(2)]
}

#[test]
fn attention_matches_reference_with_padding_and_long_rows() {
    let mut r = Rng::new(3);
    let masked = reference_ops::MASKED;
    // (b, s, a, d): D not a multiple of 16 or 32, S past the key block (256) and ragged.
    for isa in Isa::available() {
        for (b, s, a, d) in [
            (1usize, 1usize, 1usize, 8usize),
            (3, 7, 2, 24),
            (2, 33, 3, 16),
            (2, 300, 2, 64),
            (4, 45, 1, 40),
        ] {
            let h = a * d;
            let qkv = r.vec(b * s * 3 * h, 2.0);
            // Row 0: no padding; row 1: right-padded; row 2: all padding; row 3: a hole.
            let mut mask = vec![0f32; b * s];
            for bi in 0..b {
                for j in 0..s {
                    let pad = match bi {
                        1 => j >= s.div_ceil(2),
                        2 => true,
                        3 => j % 3 == 1,
                        _ => false,
                    };
                    mask[bi * s + j] = if pad { masked } else { 0.0 };
                }
            }
            let [q, k, v] = qkv_split(&qkv, b * s, h);
            let mut want = vec![0f32; b * s * h];
            reference_ops::attention_forward(&mut want, &q, &k, &v, &mask, b, s, a, d);
            let scratch = AttentionScratch::new(isa, s, d, 2);
            let mut got = vec![f32::NAN; b * s * h];
            attention_forward(
                &mut got,
                &qkv,
                &qkv[h..],
                &qkv[2 * h..],
                &mask,
                b,
                s,
                a,
                d,
                3 * h,
                &scratch,
            );
            assert_close(
                &format!("{} attention b{b} s{s} a{a} d{d}", isa.name()),
                &got,
                &want,
                2e-6,
                2e-5,
            );
        }
    }
}

#[test]
fn layernorms_and_embeddings_match_reference() {
    let mut r = Rng::new(4);
    for c in [1usize, 7, 33, 768] {
        let m = 5;
        let x = r.vec(m * c, 3.0);
        let res = r.vec(m * c, 1.0);
        let (w, b) = (r.vec(c, 1.0), r.vec(c, 0.3));
        let (mut want, mut got) = (vec![0f32; m * c], vec![0f32; m * c]);
        reference_ops::layernorm_forward(&mut want, &x, &w, &b, c, 1e-5);
        norm::layernorm_forward(&mut got, &x, &w, &b, c, 1e-5);
        assert_close(&format!("layernorm c{c}"), &got, &want, 1e-6, 1e-6);
        reference_ops::residual_layernorm_forward(&mut want, &x, &res, &w, &b, c, 1e-12);
        norm::residual_layernorm_forward(&mut got, &x, &res, &w, &b, c, 1e-12);
        assert_close(&format!("residual layernorm c{c}"), &got, &want, 1e-6, 1e-6);
    }

    let (v, p, t, e, s) = (50usize, 20usize, 2usize, 13usize, 6usize);
    let (word, pos, ty) = (r.vec(v * e, 0.5), r.vec(p * e, 0.5), r.vec(t * e, 0.5));
    let (w, b) = (r.vec(e, 1.0), r.vec(e, 0.1));
    let ids: Vec<u32> = (0..2 * s as u32).map(|i| (i * 7) % v as u32).collect();
    let types: Vec<u32> = (0..2 * s as u32).map(|i| i % 2).collect();
    for dtype in [DType::F32, DType::BF16] {
        let round = |x: &[f32]| x.iter().map(|v| dtype.round(*v)).collect::<Vec<f32>>();
        let mut want = vec![0f32; 2 * s * e];
        reference_ops::embeddings_forward(
            &mut want,
            &ids,
            &types,
            &round(&word),
            &round(&pos),
            &round(&ty),
            &w,
            &b,
            s,
            e,
            1e-12,
        );
        let mut got = vec![0f32; 2 * s * e];
        let tab = |x: &[f32]| Table::new(x.to_vec(), dtype);
        embeddings::embeddings_forward(
            &mut got,
            &ids,
            &types,
            &tab(&word),
            &tab(&pos),
            &tab(&ty),
            &w,
            &b,
            s,
            e,
            1e-12,
        );
        assert_close(&format!("embeddings {dtype}"), &got, &want, 1e-7, 1e-7);
    }
}

/// A small model of awkward sizes: E 13, H 40, 5 heads of 8, I 70, 3 layers in 2 groups of 2.
fn ragged_config() -> AlbertConfig {
    AlbertConfig {
        vocab_size: 101,
        embedding_size: 13,
        hidden_size: 40,
        num_hidden_layers: 3,
        num_hidden_groups: 2,
        num_attention_heads: 5,
        intermediate_size: 70,
        inner_group_num: 2,
        max_position_embeddings: 64,
        id2label: vec!["a".into(), "b".into(), "c".into()],
        ..AlbertConfig::default()
    }
}

fn ragged_inputs(choices: Option<usize>) -> Inputs {
    let (b, s) = (3usize, 19usize);
    let rows = b * choices.unwrap_or(1);
    let ids: Vec<i64> = (0..rows * s).map(|i| (5 + i * 13 % 96) as i64).collect();
    // Row r keeps its first s - 4r (mod s) tokens: right padding of every length.
    let mask: Vec<i64> = (0..rows * s)
        .map(|i| (i % s < s - (i / s * 4) % s) as i64)
        .collect();
    let types: Vec<i64> = (0..rows * s).map(|i| ((i % s) > 9) as i64).collect();
    let shape: Vec<usize> = match choices {
        Some(c) => vec![b, c, s],
        None => vec![b, s],
    };
    Inputs::new(ids, Some(mask), Some(types), &shape).unwrap()
}

/// Relative Frobenius error over the positions whose mask is 1 (all, for pooled outputs).
fn rel_error(got: &[f32], want: &[f32], mask: Option<&[i64]>) -> f64 {
    let inner = mask.map_or(got.len(), |m| got.len() / m.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if mask.is_some_and(|m| m[i / inner] == 0) {
            continue;
        }
        num += (*g as f64 - *w as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    (num / den).sqrt()
}

#[test]
fn whole_model_matches_reference_for_every_head_and_isa() {
    for isa in Isa::available() {
        for head in Head::ALL {
            let choices = (head == Head::MultipleChoice).then_some(2);
            let inputs = ragged_inputs(choices);
            let model = Albert::synthetic(ragged_config(), head, 11);
            let want = model
                .forward(
                    &inputs,
                    ForwardOptions {
                        hidden_states: true,
                    },
                )
                .unwrap();
            let fast = FastAlbert::with_isa(model.clone(), DType::F32, isa).unwrap();
            let got = fast
                .forward(
                    &inputs,
                    ForwardOptions {
                        hidden_states: true,
                    },
                )
                .unwrap();
            let names: Vec<&str> = want.names().collect();
            assert_eq!(
                got.names().collect::<Vec<_>>(),
                names,
                "{head:?}: output names"
            );
            for name in names {
                let (g, w) = (got.get(name).unwrap(), want.get(name).unwrap());
                assert_eq!(g.shape, w.shape, "{head:?} {name}");
                let per_token = w.shape.len() >= 2 && w.shape[1] == inputs.seq
                    || w.shape.len() >= 3 && w.shape[2] == inputs.seq;
                let mask = per_token.then_some(inputs.attention_mask.as_slice());
                let err = rel_error(&g.data, &w.data, mask);
                assert!(err < 1e-5, "{} {head:?} {name}: {err:.2e}", isa.name());
            }
            // bf16 weights: as close to the reference's bf16 emulation as f32 sums allow.
            let emulated = model
                .clone()
                .with_dtype(DType::BF16)
                .forward(&inputs, Default::default())
                .unwrap();
            let fast = FastAlbert::with_isa(model, DType::BF16, isa).unwrap();
            let got = fast.forward(&inputs, Default::default()).unwrap();
            for (name, w) in &emulated.tensors {
                let err = rel_error(&got.get(name).unwrap().data, &w.data, None);
                assert!(err < 1e-3, "{} bf16 {head:?} {name}: {err:.2e}", isa.name());
            }
        }
    }
}

#[test]
fn arena_is_reused_across_shapes_and_results_do_not_change() {
    let model = Albert::synthetic(ragged_config(), Head::MaskedLm, 5);
    let fast = FastAlbert::new(model.clone(), DType::F32).unwrap();
    let small = ragged_inputs(None);
    let first = fast.forward(&small, Default::default()).unwrap();
    let big = Inputs::new(vec![7; 4 * 40], None, None, &[4, 40]).unwrap();
    fast.forward(&big, Default::default()).unwrap();
    let bytes = fast.arena_bytes();
    let again = fast.forward(&small, Default::default()).unwrap();
    assert_eq!(
        fast.arena_bytes(),
        bytes,
        "a smaller batch must reuse the arena"
    );
    assert_eq!(
        first.get("logits").unwrap().data,
        again.get("logits").unwrap().data
    );
    // masked_lm_logits agrees with the full head at the same rows.
    let logits = fast.masked_lm_logits(&small, &[0, 21, 40]).unwrap();
    let v = model.config.vocab_size;
    let full = &first.get("logits").unwrap().data;
    for (n, p) in [0usize, 21, 40].iter().enumerate() {
        assert_eq!(&logits[n * v..(n + 1) * v], &full[p * v..(p + 1) * v]);
    }
}

#[test]
fn micro_kernels_cover_ragged_k_against_a_naive_sum() {
    // The kernels alone, one register tile, K from 1 to past two sum blocks and odd (bf16 pairs).
    let mut r = Rng::new(6);
    for isa in Isa::available() {
        for micro in [Micro::f32(isa), Micro::attention(isa)] {
            for k in [1usize, 2, 7, 8, 9, 17, 64] {
                let (m, n) = (micro.mr - 1, micro.nr - 3);
                let a = r.vec(m * k, 1.0);
                let w = r.vec(n * k, 1.0);
                let pw = PackedWeight::with_micro(&w, n, k, micro);
                let mut pa = AlignedBuf::zeros(micro.packed_a_len(m, k));
                let mut got = vec![0f32; m * n];
                linear_forward(
                    &mut got,
                    &a,
                    &pw,
                    None,
                    m,
                    k,
                    n,
                    Epilogue::None,
                    pa.u32s_mut(),
                );
                let want: Vec<f32> = (0..m * n)
                    .map(|i| {
                        (0..k)
                            .map(|c| a[i / n * k + c] as f64 * w[i % n * k + c] as f64)
                            .sum::<f64>() as f32
                    })
                    .collect();
                assert_close(&format!("{} k{k}", micro.name()), &got, &want, 1e-5, 1e-6);
            }
        }
    }
}
