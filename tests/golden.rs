//! The whole model against transformers' float64 outputs in ../shared/models: every output and
//! every hidden state of every fixture within 1e-5 relative error over unpadded positions.

mod common;

use albert::{io, Albert, ForwardOptions, Inputs};
use common::{fixtures, model_dir, rel_error};

const TOLERANCE: f64 = 1e-5;

/// Runs one fixture and returns (output name, relative error) for every reference output.
fn run_fixture(name: &str) -> Vec<(String, f64)> {
    let dir = model_dir(name);
    let reference = io::read_f32_tensors(&dir.join("reference.safetensors")).unwrap();
    let inputs = io::read_inputs(&dir.join("reference.safetensors")).unwrap();
    let model = Albert::from_dir(&dir, None).unwrap();
    let out = model
        .forward(
            &inputs,
            ForwardOptions {
                hidden_states: true,
            },
        )
        .unwrap();

    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    assert_eq!(listed["head"], model.head.class_name(), "{name}: head");
    let mut errors = Vec::new();
    for want_name in listed["outputs"].as_array().unwrap() {
        let want_name = want_name.as_str().unwrap();
        let want = &reference[want_name];
        let got = out
            .get(want_name)
            .unwrap_or_else(|| panic!("{name}: no output {want_name}"));
        let err = rel_error(got, want, token_mask(&inputs, &want.shape).as_deref());
        errors.push((want_name.to_string(), err));
    }
    errors
}

/// Per-token outputs ([R, S, ...] or [B, S]) are compared where attention_mask is 1; pooled
/// outputs ([B, N]) everywhere.
fn token_mask(inputs: &Inputs, shape: &[usize]) -> Option<Vec<i64>> {
    let per_token = shape.len() >= 2
        && shape[0] * shape[1] == inputs.rows() * inputs.seq
        && shape[1] == inputs.seq;
    per_token.then(|| inputs.attention_mask.clone())
}

#[test]
fn every_fixture_matches_transformers() {
    let mut failures = Vec::new();
    for name in fixtures() {
        let errors = run_fixture(&name);
        let worst =
            errors
                .iter()
                .cloned()
                .fold(("".to_string(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
        println!("{name:28} worst {:.2e} ({})", worst.1, worst.0);
        for (output, err) in errors {
            if std::env::var("GOLDEN_VERBOSE").is_ok() {
                println!("  {output:20} {err:.3e}");
            }
            if !(err <= TOLERANCE) {
                failures.push(format!("{name}/{output}: {err:.3e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "outputs beyond {TOLERANCE}: {failures:#?}"
    );
}

/// bf16/f16 numerics (operands of every matrix product rounded, as tensor cores compute) on
/// base-v2 must be at least as close to float64 as transformers' own bf16/f16 runs, which the
/// fixture README measures at 3.4e-2 and 2.1e-2.
#[test]
fn reduced_precision_is_as_close_as_transformers() {
    use albert::DType;
    let dir = model_dir("base-v2-random-mlm");
    let reference = io::read_f32_tensors(&dir.join("reference.safetensors")).unwrap();
    let inputs = io::read_inputs(&dir.join("reference.safetensors")).unwrap();
    for (dtype, transformers_error) in [(DType::BF16, 3.4e-2), (DType::F16, 2.1e-2)] {
        let model = Albert::from_dir(&dir, None).unwrap().with_dtype(dtype);
        let out = model.forward(&inputs, ForwardOptions::default()).unwrap();
        let want = &reference["logits"];
        let err = rel_error(
            out.get("logits").unwrap(),
            want,
            token_mask(&inputs, &want.shape).as_deref(),
        );
        println!("base-v2 {dtype}: logits {err:.2e} (transformers {transformers_error:.1e})");
        assert!(err < transformers_error, "{dtype}: {err:.3e}");
    }
}
