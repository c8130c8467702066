//! The `albert` binary end to end: forward on safetensors inputs, fill-mask, tokenize and bench
//! against the reference data, and every error path exiting non-zero with `error:` and the
//! culprit on stderr, never a panic.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use albert::io;
use common::{model_dir, output_mask, read_raw, reference_outputs, rel_error, shared, RawTensor};
use safetensors::Dtype;
use serde_json::Value;

const TOLERANCE: f64 = 1e-5;

fn albert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_albert"))
        .args(args)
        .output()
        .expect("run the albert binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the command succeeded, showing its stderr if not.
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr:\n{}",
        out.status.code(),
        stderr(out)
    );
}

/// Asserts a clean failure: non-zero exit, `error:` and every one of `culprits` on stderr, no
/// panic.
fn assert_clean_failure(out: &Output, culprits: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded; stderr:\n{err}");
    assert!(!err.contains("panicked"), "panicked:\n{err}");
    assert_ne!(out.status.code(), Some(101), "exit code of a panic:\n{err}");
    assert!(err.contains("error:"), "no `error:` on stderr:\n{err}");
    for c in culprits {
        assert!(err.contains(c), "stderr does not name `{c}`:\n{err}");
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `albert forward` on `inputs`, returning the outputs it wrote.
fn forward(fixture: &str, inputs: &Path) -> std::collections::BTreeMap<String, albert::Tensor> {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out.safetensors");
    let model = model_dir(fixture);
    let out = albert(&[
        "forward",
        "--model",
        path_str(&model),
        "--inputs",
        path_str(inputs),
        "--output",
        path_str(&output),
        "--hidden-states",
        "--device",
        "cpu",
    ]);
    assert_ok(&out);
    io::read_f32_tensors(&output).unwrap()
}

fn check_forward(fixture: &str) {
    let reference_file = model_dir(fixture).join("reference.safetensors");
    let got = forward(fixture, &reference_file);
    let reference = io::read_f32_tensors(&reference_file).unwrap();
    let inputs = io::read_inputs(&reference_file).unwrap();
    let (_, names) = reference_outputs(fixture);
    for name in names {
        let g = got
            .get(&name)
            .unwrap_or_else(|| panic!("{fixture}: output file lacks {name}"));
        let want = &reference[&name];
        let err = rel_error(g, want, output_mask(&inputs, &want.shape).as_deref());
        assert!(err <= TOLERANCE, "{fixture}/{name}: {err:.3e}");
    }
}

#[test]
fn forward_question_answering() {
    check_forward("tiny-albert-qa");
}

#[test]
fn forward_multiple_choice() {
    check_forward("tiny-albert-mc");
}

#[test]
fn forward_int32_inputs_equal_int64() {
    let fixture = "tiny-albert-qa";
    let reference_file = model_dir(fixture).join("reference.safetensors");
    let tmp = tempfile::tempdir().unwrap();
    let int32_file = tmp.path().join("inputs32.safetensors");
    let inputs: Vec<RawTensor> = read_raw(&reference_file)
        .into_iter()
        .filter(|t| ["input_ids", "attention_mask", "token_type_ids"].contains(&t.name.as_str()))
        .map(|t| {
            assert_eq!(t.dtype, Dtype::I64, "{}", t.name);
            let v: Vec<i32> = t
                .data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as i32)
                .collect();
            RawTensor::i32(&t.name, t.shape.clone(), &v)
        })
        .collect();
    assert_eq!(inputs.len(), 3);
    common::write_raw(&int32_file, &inputs);
    let from32 = forward(fixture, &int32_file);
    let from64 = forward(fixture, &reference_file);
    assert_eq!(
        from32.keys().collect::<Vec<_>>(),
        from64.keys().collect::<Vec<_>>()
    );
    for (name, t) in &from64 {
        assert_eq!(&from32[name], t, "{name}");
    }
}

/// fill-mask --json for `texts`, parsed.
fn fill_mask_json(texts: &[&str]) -> Value {
    let model = model_dir("tiny-albert-mlm");
    let mut args = vec![
        "fill-mask",
        "--model",
        path_str(&model),
        "--json",
        "--top-k",
        "5",
        "--device",
        "cpu",
    ];
    args.extend(texts);
    let out = albert(&args);
    assert_ok(&out);
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// One text's answers against the pipeline's.
fn assert_same_answers(got: &Value, want: &Value, text: &str) {
    let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(got.len(), want.len(), "{text}");
    for (g, w) in got.iter().zip(want) {
        for key in ["token", "token_str", "sequence"] {
            assert_eq!(g[key], w[key], "{text}: {key}");
        }
        let (gs, ws) = (g["score"].as_f64().unwrap(), w["score"].as_f64().unwrap());
        assert!(
            ((gs - ws) / ws).abs() <= TOLERANCE,
            "{text}: score {gs} vs {ws}"
        );
    }
}

#[test]
fn fill_mask_matches_the_pipeline() {
    let path = model_dir("tiny-albert-mlm").join("fill_mask.json");
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = cases.as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        assert_eq!(case["top_k"], 5);
        let got = fill_mask_json(&[text]);
        assert_same_answers(&got, &case["answers"], text);
    }
    // Two texts at once: a list of two lists, in order.
    let texts: Vec<&str> = cases
        .iter()
        .take(2)
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 2, "fill_mask.json needs two texts");
    let got = fill_mask_json(&texts);
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), 2);
    for (g, case) in got.iter().zip(cases) {
        assert_same_answers(g, &case["answers"], case["text"].as_str().unwrap());
    }
}

#[test]
fn tokenize_matches_transformers() {
    let dir = shared().join("albert-tokenizer");
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let case = &cases["cases"][0];
    assert!(case["text_pair"].is_null());
    let out = albert(&[
        "tokenize",
        "--model",
        path_str(&dir),
        "--json",
        case["text"].as_str().unwrap(),
    ]);
    assert_ok(&out);
    let got: Value = serde_json::from_str(&stdout(&out)).unwrap();
    for key in ["input_ids", "tokens", "offsets"] {
        assert_eq!(got[key], case[key], "{key}");
    }
}

#[test]
fn bench_prints_one_json_line() {
    let out = albert(&[
        "bench", "--batch", "1", "--seq", "8", "--iters", "1", "--warmup", "0", "--json",
        "--device", "cpu",
    ]);
    assert_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "stdout:\n{text}");
    let row: Value = serde_json::from_str(lines[0]).unwrap();
    let keys = [
        "batch",
        "seq",
        "device",
        "dtype",
        "p50_ms",
        "p90_ms",
        "seqs_per_s",
        "tokens_per_s",
        "gflops",
    ];
    for key in keys {
        assert!(row.get(key).is_some(), "no `{key}` in {row}");
    }
    assert_eq!(row["batch"], 1);
    assert_eq!(row["seq"], 8);
    for key in ["p50_ms", "p90_ms", "seqs_per_s", "tokens_per_s", "gflops"] {
        let v = row[key].as_f64().unwrap_or_else(|| panic!("{key}: {row}"));
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
}

// ---------------------------------------------------------------------------------------------
// Error paths

/// A forward call with every required argument, `model` and `extra` varying.
fn forward_with(model: &str, extra: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = model_dir("tiny-albert-qa").join("reference.safetensors");
    let output = tmp.path().join("out.safetensors");
    let mut args = vec![
        "forward",
        "--model",
        model,
        "--inputs",
        path_str(&inputs),
        "--output",
        path_str(&output),
    ];
    args.extend(extra);
    albert(&args)
}

#[test]
fn missing_model_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-model");
    let out = forward_with(path_str(&missing), &["--device", "cpu"]);
    assert_clean_failure(&out, &["no-such-model"]);
    let out = albert(&["fill-mask", "--model", path_str(&missing), "a [MASK]."]);
    assert_clean_failure(&out, &["no-such-model"]);
}

#[test]
fn io_error_cause_is_printed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-model");
    let out = forward_with(path_str(&missing), &["--device", "cpu"]);
    assert_clean_failure(&out, &["no-such-model"]);
    let err = stderr(&out);
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
}

#[test]
fn bad_device_value() {
    let model = model_dir("tiny-albert-qa");
    for device in ["tpu", "cuda:x", "gpu0"] {
        let out = forward_with(path_str(&model), &["--device", device]);
        assert_clean_failure(&out, &[device]);
    }
}

#[test]
fn cuda_device_without_a_gpu() {
    let model = model_dir("tiny-albert-qa");
    let out = forward_with(path_str(&model), &["--device", "cuda"]);
    // Without an NVIDIA device node no build can run on CUDA: the request must fail cleanly.
    // With one, a CUDA build may run; a CPU-only build must still fail cleanly.
    let gpu = Path::new("/dev/nvidiactl").exists();
    if out.status.success() {
        assert!(
            gpu,
            "--device cuda succeeded without a GPU:\n{}",
            stderr(&out)
        );
        eprintln!("--device cuda ran: this build has CUDA and the machine a GPU");
    } else {
        assert_clean_failure(&out, &["cuda"]);
    }
}

#[test]
fn fill_mask_text_without_mask() {
    let model = model_dir("tiny-albert-mlm");
    let text = "There is nothing to fill here.";
    let out = albert(&[
        "fill-mask",
        "--model",
        path_str(&model),
        "--device",
        "cpu",
        text,
    ]);
    assert_clean_failure(&out, &["[MASK]", text]);
}

#[test]
fn unknown_head() {
    let model = model_dir("tiny-albert-qa");
    let out = forward_with(
        path_str(&model),
        &["--head", "AlbertForCooking", "--device", "cpu"],
    );
    assert_clean_failure(&out, &["AlbertForCooking"]);
}

#[test]
fn other_bad_invocations() {
    let model = model_dir("tiny-albert-qa");
    // An inputs file that does not exist.
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("absent-inputs.safetensors");
    let output = tmp.path().join("out.safetensors");
    let out = albert(&[
        "forward",
        "--model",
        path_str(&model),
        "--inputs",
        path_str(&inputs),
        "--output",
        path_str(&output),
        "--device",
        "cpu",
    ]);
    assert_clean_failure(&out, &["absent-inputs.safetensors"]);
    // Single-sequence inputs to the multiple-choice fixture.
    let mc = model_dir("tiny-albert-mc");
    let out = forward_with(path_str(&mc), &["--device", "cpu"]);
    assert_clean_failure(&out, &["AlbertForMultipleChoice"]);
    // An unknown --truncation strategy.
    let tok = shared().join("albert-tokenizer");
    let out = albert(&[
        "tokenize",
        "--model",
        path_str(&tok),
        "--truncation",
        "sideways",
        "hello",
    ]);
    assert_clean_failure(&out, &["sideways"]);
    // fill-mask --top-k 0.
    let mlm = model_dir("tiny-albert-mlm");
    let out = albert(&[
        "fill-mask",
        "--model",
        path_str(&mlm),
        "--top-k",
        "0",
        "--device",
        "cpu",
        "a [MASK].",
    ]);
    assert_clean_failure(&out, &["top_k"]);
    // An output path in a directory that does not exist.
    let qa = model_dir("tiny-albert-qa");
    let out = albert(&[
        "forward",
        "--model",
        path_str(&qa),
        "--inputs",
        path_str(&qa.join("reference.safetensors")),
        "--output",
        path_str(&tmp.path().join("no-dir/out.safetensors")),
        "--device",
        "cpu",
    ]);
    assert_clean_failure(&out, &["no-dir"]);
}
