//! Checkpoint variants: half-precision files, sharded checkpoints, extra and untied tensors, bare
//! AlbertModel files and head overrides, each run on the fixture's reference inputs and compared
//! with transformers' outputs (or with the plain float32 checkpoint's outputs).

mod common;

use std::path::Path;

use albert::{io, Albert, Error, ForwardOptions, Head, Inputs, Outputs, Tensor};
use common::{
    copy_model, edit_checkpoint, edit_config, model_dir, output_mask, read_raw, reference_outputs,
    rel_error, write_raw, RawTensor,
};
use safetensors::Dtype;
use serde_json::json;

/// What golden.rs holds every fixture to.
const TOLERANCE: f64 = 1e-5;

/// The reference inputs of fixture `name`.
fn reference_inputs(name: &str) -> Inputs {
    io::read_inputs(&model_dir(name).join("reference.safetensors")).unwrap()
}

/// Loads `dir` (with `head`) and runs it on fixture `fixture`'s reference inputs, hidden states
/// included.
fn run(dir: &Path, head: Option<Head>, fixture: &str) -> Outputs {
    let model = Albert::from_dir(dir, head).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let opts = ForwardOptions {
        hidden_states: true,
    };
    model.forward(&reference_inputs(fixture), opts).unwrap()
}

/// The worst relative error of `out` against every output reference.json lists for `fixture`.
fn worst_vs_reference(out: &Outputs, fixture: &str) -> (String, f64) {
    let reference =
        io::read_f32_tensors(&model_dir(fixture).join("reference.safetensors")).unwrap();
    let inputs = reference_inputs(fixture);
    let (_, names) = reference_outputs(fixture);
    let mut worst = (String::new(), 0.0);
    for name in names {
        let want = &reference[&name];
        let got = out
            .get(&name)
            .unwrap_or_else(|| panic!("{fixture}: no output {name}"));
        let err = rel_error(got, want, output_mask(&inputs, &want.shape).as_deref());
        if err.is_nan() || err > worst.1 {
            worst = (name, err);
        }
    }
    worst
}

fn assert_matches_reference(out: &Outputs, fixture: &str) {
    let (name, err) = worst_vs_reference(out, fixture);
    assert!(
        err <= TOLERANCE,
        "{fixture}/{name}: {err:.3e} > {TOLERANCE}"
    );
}

/// The worst relative error of `got` against `want` over every output of `want`.
fn worst_vs(got: &Outputs, want: &Outputs, inputs: &Inputs) -> (String, f64) {
    assert_eq!(
        got.names().collect::<Vec<_>>(),
        want.names().collect::<Vec<_>>()
    );
    let mut worst = (String::new(), 0.0);
    for (name, w) in &want.tensors {
        let err = rel_error(
            got.get(name).unwrap(),
            w,
            output_mask(inputs, &w.shape).as_deref(),
        );
        if err.is_nan() || err > worst.1 {
            worst = (name.clone(), err);
        }
    }
    worst
}

/// Every output bit for bit equal.
fn assert_identical(got: &Outputs, want: &Outputs) {
    assert_eq!(
        got.names().collect::<Vec<_>>(),
        want.names().collect::<Vec<_>>()
    );
    for (name, w) in &want.tensors {
        let g = got.get(name).unwrap();
        assert_eq!(g.shape, w.shape, "{name}");
        let same = g
            .data
            .iter()
            .zip(&w.data)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name} differs");
    }
}

fn f32s(t: &Tensor) -> &[f32] {
    &t.data
}

// ---------------------------------------------------------------------------------------------
// Half-precision checkpoints

/// Rewrites every F32 tensor of `dir`'s checkpoint with `convert`, which turns one f32 into the
/// new dtype's little-endian bytes.
fn convert_checkpoint(dir: &Path, dtype: Dtype, convert: impl Fn(f32) -> Vec<u8>) {
    edit_checkpoint(dir, |ts| {
        for t in ts.iter_mut().filter(|t| t.dtype == Dtype::F32) {
            t.data = t.to_f32().into_iter().flat_map(&convert).collect();
            t.dtype = dtype;
        }
    });
}

/// Rounds every F32 tensor of `dir`'s checkpoint through `round`, keeping F32.
fn round_checkpoint(dir: &Path, round: impl Fn(f32) -> f32) {
    edit_checkpoint(dir, |ts| {
        for t in ts.iter_mut().filter(|t| t.dtype == Dtype::F32) {
            let v: Vec<f32> = t.to_f32().into_iter().map(&round).collect();
            *t = RawTensor::f32(&t.name, t.shape.clone(), &v);
        }
    });
}

/// A half-precision copy of tiny-albert-mlm loads and runs; it is exactly the float32 model
/// whose weights are rounded to that precision (the conversion to f32 is exact), and close to
/// the float32 model itself.
fn check_half(
    dtype: Dtype,
    to_bytes: impl Fn(f32) -> Vec<u8>,
    round: impl Fn(f32) -> f32,
    tol: f64,
) {
    let fixture = "tiny-albert-mlm";
    let half_dir = copy_model(fixture);
    convert_checkpoint(half_dir.path(), dtype, to_bytes);
    assert!(read_raw(&half_dir.path().join("model.safetensors"))
        .iter()
        .all(|t| t.dtype == dtype));
    let half_out = run(half_dir.path(), None, fixture);

    let rounded_dir = copy_model(fixture);
    round_checkpoint(rounded_dir.path(), round);
    assert_identical(&half_out, &run(rounded_dir.path(), None, fixture));

    let full = run(&model_dir(fixture), None, fixture);
    let (name, err) = worst_vs(&half_out, &full, &reference_inputs(fixture));
    println!("{dtype:?} vs F32 checkpoint: worst {err:.2e} ({name})");
    assert!(err <= tol, "{dtype:?}: {name} {err:.3e} > {tol}");
    // Rounding the weights must show: a loader that ignored the dtype would not get here, but
    // one that silently read the F32 file would.
    assert!(err > 0.0, "{dtype:?} outputs equal the F32 ones exactly");
}

// Tolerances. Rounding a weight to f16 moves it by at most 2^-11 (4.9e-4) of its value, to bf16
// by at most 2^-8 (3.9e-3); the forward pass stays in f32, so the outputs move by a multiple of
// that, largest in the logits (the fixtures' sharpened attention amplifies it). Measured on this
// fixture: 1.8e-3 for f16 and 1.3e-2 for bf16, both in `logits`, i.e. ~3.5x the weight rounding.
// The bounds leave 4-5x room and are of the order of what transformers itself is off when it
// computes in half precision (2.1e-2 in f16, 3.4e-2 in bf16 on base-v2, shared/README.md); a
// wrong conversion (bytes misread, halves swapped) is off by O(1).
const F16_TOLERANCE: f64 = 1e-2;
const BF16_TOLERANCE: f64 = 5e-2;

#[test]
fn f16_checkpoint() {
    check_half(
        Dtype::F16,
        |v| half::f16::from_f32(v).to_le_bytes().to_vec(),
        |v| half::f16::from_f32(v).to_f32(),
        F16_TOLERANCE,
    );
}

#[test]
fn bf16_checkpoint() {
    check_half(
        Dtype::BF16,
        |v| half::bf16::from_f32(v).to_le_bytes().to_vec(),
        |v| half::bf16::from_f32(v).to_f32(),
        BF16_TOLERANCE,
    );
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints

/// Splits `dir/model.safetensors` into `shards` files with an index (mapping each tensor to the
/// file holding it) and removes the single file.
fn shard(dir: &Path, shards: usize) -> Vec<String> {
    let single = dir.join("model.safetensors");
    let tensors = read_raw(&single);
    std::fs::remove_file(&single).unwrap();
    let per = tensors.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    let mut files = Vec::new();
    for (i, chunk) in tensors.chunks(per).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
        write_raw(&dir.join(&file), chunk);
        for t in chunk {
            weight_map.insert(t.name.clone(), json!(file));
        }
        files.push(file);
    }
    let index = json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index).unwrap(),
    )
    .unwrap();
    files
}

#[test]
fn sharded_checkpoint_equals_single_file() {
    for fixture in ["tiny-albert-mlm", "tiny-albert-groups"] {
        let tmp = copy_model(fixture);
        let files = shard(tmp.path(), 2);
        assert_eq!(files.len(), 2);
        assert!(!tmp.path().join("model.safetensors").exists());
        let sharded = run(tmp.path(), None, fixture);
        assert_identical(&sharded, &run(&model_dir(fixture), None, fixture));
        assert_matches_reference(&sharded, fixture);
    }
}

/// Rewrites the index of a sharded copy so that `tensor` maps to `file`.
fn point_index(dir: &Path, tensor: &str, file: &str) {
    let path = dir.join("model.safetensors.index.json");
    let mut index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    index["weight_map"][tensor] = json!(file);
    std::fs::write(&path, index.to_string()).unwrap();
}

#[test]
fn index_pointing_outside_the_directory_is_an_error() {
    // The model lives in tmp/model; tmp/x.safetensors exists and is a valid checkpoint, so only
    // the refusal to leave the directory can stop the loader.
    let tmp = tempfile::tempdir().unwrap();
    let src = copy_model("tiny-albert-mlm");
    let dir = tmp.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.path().join(f), dir.join(f)).unwrap();
    }
    let files = shard(&dir, 2);
    std::fs::copy(dir.join(&files[0]), tmp.path().join("x.safetensors")).unwrap();
    let index = dir.join("model.safetensors.index.json");
    let outside = tmp.path().join("x.safetensors").display().to_string();
    for target in [
        "../x.safetensors",
        outside.as_str(),
        "sub/x.safetensors",
        "..",
    ] {
        point_index(&dir, "predictions.bias", target);
        let e = Albert::from_dir(&dir, None).unwrap_err();
        assert!(matches!(e, Error::Safetensors { .. }), "{target}: {e:?}");
        let msg = e.to_string();
        for part in [
            index.display().to_string().as_str(),
            "predictions.bias",
            target,
        ] {
            assert!(msg.contains(part), "message does not name `{part}`: {msg}");
        }
    }
}

#[test]
fn index_naming_a_missing_shard_is_an_error() {
    let tmp = copy_model("tiny-albert-mlm");
    shard(tmp.path(), 2);
    let missing = "model-00003-of-00003.safetensors";
    point_index(tmp.path(), "predictions.bias", missing);
    let e = Albert::from_dir(tmp.path(), None).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(e.to_string().contains(missing), "{e}");
}

#[test]
fn index_that_is_not_an_index_is_an_error() {
    let tmp = copy_model("tiny-albert-mlm");
    shard(tmp.path(), 2);
    let index = tmp.path().join("model.safetensors.index.json");
    for text in [
        "{ not json",
        r#"{"metadata": {}}"#,
        r#"{"weight_map": {}}"#,
        r#"{"weight_map": {"predictions.bias": 7}}"#,
    ] {
        std::fs::write(&index, text).unwrap();
        let e = Albert::from_dir(tmp.path(), None).unwrap_err();
        assert!(matches!(e, Error::Safetensors { .. }), "{text}: {e:?}");
        let msg = e.to_string();
        assert!(msg.contains(&index.display().to_string()), "{msg}");
    }
}

#[test]
fn index_listing_a_tensor_no_shard_holds_is_a_missing_tensor() {
    let tmp = copy_model("tiny-albert-mlm");
    let files = shard(tmp.path(), 2);
    // Drop predictions.bias from whichever shard holds it; the index still lists it.
    for f in &files {
        let path = tmp.path().join(f);
        let mut ts = read_raw(&path);
        ts.retain(|t| t.name != "predictions.bias");
        write_raw(&path, &ts);
    }
    let e = Albert::from_dir(tmp.path(), None).unwrap_err();
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name == "predictions.bias"),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Extra, renamed and untied tensors

#[test]
fn extra_keys_are_tolerated() {
    let fixture = "tiny-albert-mlm";
    let tmp = copy_model(fixture);
    edit_checkpoint(tmp.path(), |ts| {
        let find = |name: &str| ts.iter().find(|t| t.name == name).unwrap().clone();
        let mut decoder = find("albert.embeddings.word_embeddings.weight");
        decoder.name = "predictions.decoder.weight".into();
        let mut decoder_bias = find("predictions.bias");
        decoder_bias.name = "predictions.decoder.bias".into();
        let positions: Vec<i64> = (0..512).collect();
        ts.push(RawTensor::i64(
            "albert.embeddings.position_ids",
            vec![1, 512],
            &positions,
        ));
        ts.push(decoder);
        ts.push(decoder_bias);
        ts.push(RawTensor::f32(
            "some.optimizer.state",
            vec![3],
            &[1.0, 2.0, 3.0],
        ));
    });
    let out = run(tmp.path(), None, fixture);
    assert_identical(&out, &run(&model_dir(fixture), None, fixture));
    assert_matches_reference(&out, fixture);
}

#[test]
fn decoder_bias_stored_only_as_decoder_bias() {
    let fixture = "tiny-albert-mlm";
    let tmp = copy_model(fixture);
    edit_checkpoint(tmp.path(), |ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.name == "predictions.bias")
            .unwrap();
        t.name = "predictions.decoder.bias".into();
    });
    let out = run(tmp.path(), None, fixture);
    assert_identical(&out, &run(&model_dir(fixture), None, fixture));
}

/// gelu_new, as transformers' NewGELUActivation.
fn gelu_new(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

#[test]
fn untied_decoder() {
    let fixture = "tiny-albert-mlm";
    let tmp = copy_model(fixture);
    let tensors = read_raw(&tmp.path().join("model.safetensors"));
    let get = |name: &str| {
        tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name}"))
            .to_f32()
    };
    let word = get("albert.embeddings.word_embeddings.weight"); // [V, E]
    let (v, e, h) = (30000, 32, 64);
    // The decoder: the word embeddings with rows permuted and scaled, so the scale is realistic
    // and every logit changes.
    let decoder: Vec<f32> = (0..v)
        .flat_map(|r| {
            let src = (r * 7919 + 13) % v;
            word[src * e..(src + 1) * e].iter().map(|x| x * 1.5)
        })
        .collect();
    let mut with_decoder = tensors.clone();
    with_decoder.push(RawTensor::f32(
        "predictions.decoder.weight",
        vec![v, e],
        &decoder,
    ));
    write_raw(&tmp.path().join("model.safetensors"), &with_decoder);

    // Tied (the default), the stored decoder is ignored.
    let tied = run(&model_dir(fixture), None, fixture);
    assert_identical(&run(tmp.path(), None, fixture), &tied);

    edit_config(tmp.path(), |c| {
        c.insert("tie_word_embeddings".into(), json!(false));
    });
    let untied = run(tmp.path(), None, fixture);
    let inputs = reference_inputs(fixture);
    let logits = untied.get("logits").unwrap();
    let (worst_name, worst) = worst_vs(&untied, &tied, &inputs);
    assert_eq!(worst_name, "logits", "only the logits may change");
    assert!(worst > 0.1, "untied logits barely differ: {worst:.3e}");
    // The encoder is untouched.
    assert_identical(
        &Outputs {
            tensors: untied
                .tensors
                .iter()
                .filter(|(n, _)| n != "logits")
                .cloned()
                .collect(),
        },
        &Outputs {
            tensors: tied
                .tensors
                .iter()
                .filter(|(n, _)| n != "logits")
                .cloned()
                .collect(),
        },
    );

    // The logits by hand, in f64: LayerNorm_E(gelu_new(h Wd^T + bd)) Wdec^T + bias.
    let dense_w = get("predictions.dense.weight"); // [E, H]
    let dense_b = get("predictions.dense.bias");
    let ln_w = get("predictions.LayerNorm.weight");
    let ln_b = get("predictions.LayerNorm.bias");
    let bias = get("predictions.bias");
    let hidden = f32s(untied.get("last_hidden_state").unwrap());
    let s = inputs.seq;
    let mut manual = vec![0f32; logits.data.len()];
    for row in 0..inputs.rows() * s {
        if inputs.attention_mask[row] == 0 {
            continue;
        }
        let x = &hidden[row * h..(row + 1) * h];
        let y: Vec<f64> = (0..e)
            .map(|j| {
                let dot: f64 = (0..h)
                    .map(|k| dense_w[j * h + k] as f64 * x[k] as f64)
                    .sum();
                gelu_new(dot + dense_b[j] as f64)
            })
            .collect();
        let mean = y.iter().sum::<f64>() / e as f64;
        let var = y.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / e as f64;
        let normed: Vec<f64> = (0..e)
            .map(|j| (y[j] - mean) / (var + 1e-12).sqrt() * ln_w[j] as f64 + ln_b[j] as f64)
            .collect();
        for t in 0..v {
            let dot: f64 = (0..e).map(|j| decoder[t * e + j] as f64 * normed[j]).sum();
            manual[row * v + t] = (dot + bias[t] as f64) as f32;
        }
    }
    let manual = Tensor::new(logits.shape.clone(), manual);
    let err = rel_error(logits, &manual, Some(&inputs.attention_mask));
    assert!(err <= TOLERANCE, "untied logits vs manual: {err:.3e}");

    // Untied with the decoder equal to the word embeddings is the tied model, bit for bit.
    let mut same = tensors.clone();
    same.push(RawTensor::f32(
        "predictions.decoder.weight",
        vec![v, e],
        &word,
    ));
    write_raw(&tmp.path().join("model.safetensors"), &same);
    assert_identical(&run(tmp.path(), None, fixture), &tied);

    // Untied without a decoder weight: the error names it.
    write_raw(&tmp.path().join("model.safetensors"), &tensors);
    let e = Albert::from_dir(tmp.path(), None).unwrap_err();
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name == "predictions.decoder.weight"),
        "{e:?}"
    );
    assert!(e.to_string().contains("predictions.decoder.weight"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Bare AlbertModel checkpoints and head overrides

#[test]
fn bare_albert_model_checkpoint() {
    let fixture = "tiny-albert-groups";
    let dir = model_dir(fixture);
    assert!(!read_raw(&dir.join("model.safetensors"))
        .iter()
        .any(|t| t.name.starts_with("albert.")));
    let out = run(&dir, Some(Head::Model), fixture);
    assert_matches_reference(&out, fixture);

    let e = Albert::from_dir(&dir, Some(Head::SequenceClassification)).unwrap_err();
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name == "classifier.weight"),
        "{e:?}"
    );
    assert!(e.to_string().contains("classifier.weight"), "{e}");

    let e = Albert::from_dir(&dir, Some(Head::MaskedLm)).unwrap_err();
    assert!(matches!(&e, Error::MissingTensor { .. }), "{e:?}");
    assert!(e.to_string().contains("predictions."), "{e}");
}

#[test]
fn head_override_model_on_a_checkpoint_without_pooler() {
    let e = Albert::from_dir(&model_dir("tiny-albert-mlm"), Some(Head::Model)).unwrap_err();
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name == "albert.pooler.weight"),
        "{e:?}"
    );
    assert!(e.to_string().contains("albert.pooler.weight"), "{e}");
}

#[test]
fn pretraining_checkpoint_as_masked_lm() {
    let fixture = "tiny-albert-pretraining";
    let dir = model_dir(fixture);
    let model = Albert::from_dir(&dir, Some(Head::MaskedLm)).unwrap();
    assert_eq!(model.head, Head::MaskedLm);
    let inputs = reference_inputs(fixture);
    let out = model.forward(&inputs, ForwardOptions::default()).unwrap();
    assert_eq!(
        out.names().collect::<Vec<_>>(),
        ["last_hidden_state", "logits"]
    );
    let reference = io::read_f32_tensors(&dir.join("reference.safetensors")).unwrap();
    let want = &reference["prediction_logits"];
    let got = out.get("logits").unwrap();
    let err = rel_error(got, want, output_mask(&inputs, &want.shape).as_deref());
    assert!(err <= TOLERANCE, "logits vs prediction_logits: {err:.3e}");
    // And exactly the pretraining head's own prediction_logits.
    let full = run(&dir, None, fixture);
    assert_eq!(f32s(got), f32s(full.get("prediction_logits").unwrap()));
}
