//! Helpers shared by the pipeline test files: fixtures as engines and transformers-4.57
//! tokenizers, the binary with piped stdin, and tolerant JSON comparison.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use albert::{Albert, Compat, Engine, Head, Tokenizer};
use serde_json::Value;

use crate::common::model_dir;

pub fn engine(fixture: &str, head: Option<Head>) -> Engine {
    Engine::Cpu(Albert::from_dir(&model_dir(fixture), head).unwrap())
}

pub fn tokenizer(fixture: &str) -> Tokenizer {
    Tokenizer::from_dir_compat(&model_dir(fixture), Compat::Transformers4).unwrap()
}

pub fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * b.abs().max(1e-6)
}

/// Equal JSON, scores within 1e-5 relative.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| match (k.as_str(), y.get(k)) {
                    ("score", Some(w)) => close(v.as_f64().unwrap(), w.as_f64().unwrap()),
                    (_, Some(w)) => same(v, w),
                    (_, None) => false,
                })
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

/// `albert args...` with `stdin` piped in.
pub fn albert(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_albert"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

pub fn json_of(out: &Output) -> Value {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {err}");
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn assert_clean_failure(out: &Output, culprits: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(!err.contains("panicked") && err.contains("error:"), "{err}");
    for c in culprits {
        assert!(err.contains(c), "stderr does not name `{c}`: {err}");
    }
}

pub const TEXTS: [&str; 5] = [
    "Marie Curie moved from Warsaw to Paris in 1891.",
    "Short.",
    "ALBERT shares one layer across all of its layers, so it is small and fast to load.",
    "Plants create energy through a process known as photosynthesis.",
    "Paris.",
];
