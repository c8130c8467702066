//! Every call recorded in shared/models/*/pipelines.json (transformers 4.57 pipelines, float64
//! model) reproduced, through the `albert` binary with `--json` and through the library: the
//! same structure and keys, identical labels, tokens, words, answers, starts and ends, scores
//! within 1e-5 relative.

mod common;

use std::path::Path;
use std::process::Command;

use albert::pipelines::fill_mask::{self, FillMaskOptions};
use albert::pipelines::question_answering::{self as qa, QaInput, QuestionAnsweringOptions};
use albert::pipelines::text_classification::{self as tc, TextClassificationOptions, TopK};
use albert::pipelines::token_classification::{self as ner, TokenClassificationOptions};
use albert::pipelines::Pipeline;
use albert::{Albert, Compat, Engine, Tokenizer};
use common::{fixtures, model_dir};
use serde_json::Value;

const TOLERANCE: f64 = 1e-5;

/// One recorded call: its fixture, task, arguments and transformers' output.
struct Call {
    fixture: String,
    task: String,
    args: serde_json::Map<String, Value>,
    output: Value,
}

fn calls() -> Vec<Call> {
    let mut out = Vec::new();
    for fixture in fixtures() {
        let Ok(text) = std::fs::read_to_string(model_dir(&fixture).join("pipelines.json")) else {
            continue;
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        let task = v["task"].as_str().unwrap().to_string();
        for c in v["calls"].as_array().unwrap() {
            out.push(Call {
                fixture: fixture.clone(),
                task: task.clone(),
                args: c["args"].as_object().unwrap().clone(),
                output: c["output"].clone(),
            });
        }
    }
    out
}

/// Checks that `got` has `want`'s structure, keys and values (scores within TOLERANCE,
/// relative); returns the worst score error, or where they differ.
fn compare(got: &Value, want: &Value, path: &str, key: &str) -> Result<f64, String> {
    let mut worst = 0f64;
    match want {
        Value::Object(w) => {
            let g = got
                .as_object()
                .ok_or_else(|| format!("{path}: {got} is no object"))?;
            let (mut gk, mut wk): (Vec<_>, Vec<_>) = (g.keys().collect(), w.keys().collect());
            gk.sort();
            wk.sort();
            if gk != wk {
                return Err(format!("{path}: keys {gk:?}, expected {wk:?}"));
            }
            for (k, v) in w {
                worst = worst.max(compare(&g[k], v, &format!("{path}.{k}"), k)?);
            }
        }
        Value::Array(w) => {
            let g = got
                .as_array()
                .ok_or_else(|| format!("{path}: {got} is no list"))?;
            if g.len() != w.len() {
                return Err(format!("{path}: {} items, expected {}", g.len(), w.len()));
            }
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                worst = worst.max(compare(g, w, &format!("{path}[{i}]"), key)?);
            }
        }
        Value::Number(w) if key == "score" => {
            let g = got
                .as_f64()
                .ok_or_else(|| format!("{path}: {got} is no number"))?;
            let w = w.as_f64().unwrap_or(f64::NAN);
            worst = ((g - w) / w).abs();
            if worst.is_nan() || worst > TOLERANCE {
                return Err(format!("{path}: score {g} vs {w} ({worst:.2e})"));
            }
        }
        _ if got != want => return Err(format!("{path}: {got}, expected {want}")),
        _ => {}
    }
    Ok(worst)
}

/// The command line for a call: positional texts or questions, `--context`, and every other
/// argument as `--flag value` (null: `all`, a list: comma-joined, true: the bare flag).
fn cli_args(call: &Call) -> Vec<String> {
    let dir = model_dir(&call.fixture);
    let mut args = vec![
        call.task.clone(),
        "--model".into(),
        dir.display().to_string(),
    ];
    args.extend(["--json", "--device", "cpu"].map(String::from));
    let mut positional = Vec::new();
    for (k, v) in &call.args {
        let flag = format!("--{}", k.replace('_', "-"));
        match (k.as_str(), v) {
            ("inputs" | "question", Value::String(s)) => positional.push(s.clone()),
            (_, Value::Null) => args.extend([flag, "all".into()]),
            (_, Value::Bool(true)) => args.push(flag),
            (_, Value::Array(a)) => {
                let items: Vec<&str> = a.iter().map(|x| x.as_str().unwrap()).collect();
                args.extend([flag, items.join(",")]);
            }
            (_, Value::String(s)) => args.extend([flag, s.clone()]),
            (_, other) => args.extend([flag, other.to_string()]),
        }
    }
    args.extend(positional);
    args
}

#[test]
fn cli_reproduces_every_recorded_call() {
    let calls = calls();
    let mut worst = 0f64;
    for call in &calls {
        let out = Command::new(env!("CARGO_BIN_EXE_albert"))
            .args(cli_args(call))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{} {:?}: {stderr}",
            call.task,
            call.args
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        let what = format!("{} {}", call.fixture, call.task);
        worst = worst.max(compare(&got, &call.output, &what, "").unwrap_or_else(|e| panic!("{e}")));
    }
    println!(
        "{} calls reproduced by the CLI, worst score error {worst:.2e}",
        calls.len()
    );
    // fill-mask 3, question-answering 5, text-classification 4, token-classification 6.
    assert_eq!(calls.len(), 18, "pipelines.json calls found");
}

fn engine(fixture: &str) -> Engine {
    Engine::Cpu(Albert::from_dir(&model_dir(fixture), None).unwrap())
}

/// The library's JSON for a call, with the tokenizer `compat` gives.
fn library_json(call: &Call, engine: &Engine, compat: Compat) -> Value {
    let tok = Tokenizer::from_dir_compat(&model_dir(&call.fixture), compat).unwrap();
    let p = Pipeline::new(engine, &tok);
    let a = &call.args;
    let text = || vec![a["inputs"].as_str().unwrap().to_string()];
    let uint = |k: &str| a.get(k).map(|v| v.as_u64().unwrap() as usize);
    match call.task.as_str() {
        "fill-mask" => {
            let targets = a.get("targets").map(|t| {
                let t = t.as_array().unwrap();
                t.iter().map(|x| x.as_str().unwrap().to_string()).collect()
            });
            let opts = FillMaskOptions {
                top_k: uint("top_k").unwrap_or(5),
                targets,
            };
            fill_mask::to_json(&fill_mask::run(&p, &text(), &opts).unwrap()[0])
        }
        "text-classification" => {
            let top_k = match a.get("top_k") {
                None => TopK::Default,
                Some(Value::Null) => TopK::All,
                Some(k) => TopK::K(k.as_u64().unwrap() as usize),
            };
            let opts = TextClassificationOptions {
                top_k,
                ..Default::default()
            };
            tc::to_json(&tc::run(&p, &text(), &opts).unwrap(), top_k)
        }
        "token-classification" => {
            let opts = TokenClassificationOptions {
                aggregation: a["aggregation_strategy"].as_str().unwrap().parse().unwrap(),
                ..Default::default()
            };
            ner::to_json(&ner::run(&p, &text(), &opts).unwrap())
        }
        "question-answering" => {
            let d = QuestionAnsweringOptions::default();
            let opts = QuestionAnsweringOptions {
                top_k: uint("top_k").unwrap_or(d.top_k),
                max_answer_len: uint("max_answer_len").unwrap_or(d.max_answer_len),
                max_seq_len: uint("max_seq_len"),
                doc_stride: uint("doc_stride"),
                ..d
            };
            let input = QaInput {
                question: a["question"].as_str().unwrap().into(),
                context: a["context"].as_str().unwrap().into(),
            };
            qa::to_json(&qa::run(&p, &[input], &opts).unwrap())
        }
        other => panic!("no library mapping for task {other}"),
    }
}

#[test]
fn library_reproduces_every_recorded_call() {
    let calls = calls();
    let mut worst = 0f64;
    for call in &calls {
        let engine = engine(&call.fixture);
        let got = library_json(call, &engine, Compat::Transformers4);
        let what = format!("{} {} {:?}", call.fixture, call.task, call.args);
        worst = worst.max(compare(&got, &call.output, &what, "").unwrap_or_else(|e| panic!("{e}")));
    }
    println!(
        "{} calls reproduced by the library, worst score error {worst:.2e}",
        calls.len()
    );
    assert_eq!(calls.len(), 18);
}

/// Why the pipelines tokenize as transformers 4 did: with transformers 5's pre-tokenizer every
/// token-classification and question-answering call would report other starts (the space before
/// a word is no longer part of its first token), while fill-mask and text-classification, which
/// use ids only, are unchanged.
#[test]
fn transformers5_offsets_would_move_token_and_answer_starts() {
    for call in calls() {
        let engine = engine(&call.fixture);
        let got = library_json(&call, &engine, Compat::Transformers5);
        let same = compare(&got, &call.output, "", "").is_ok();
        let offsets_matter = matches!(
            call.task.as_str(),
            "token-classification" | "question-answering"
        );
        assert_eq!(
            same, !offsets_matter,
            "{} {:?}: {got}",
            call.task, call.args
        );
    }
}

#[test]
fn tokenizer_compat_offsets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/albert-tokenizer");
    let text = "Marie Curie moved";
    let opts = Default::default();
    let v4 = Tokenizer::from_dir_compat(&dir, Compat::Transformers4).unwrap();
    let v5 = Tokenizer::from_dir(&dir).unwrap();
    let (e4, e5) = (
        v4.encode(text, None, &opts).unwrap(),
        v5.encode(text, None, &opts).unwrap(),
    );
    assert_eq!(e4.input_ids, e5.input_ids);
    assert_eq!(e4.tokens[2], "▁cur");
    assert_eq!((e4.offsets[2], e5.offsets[2]), ((5, 9), (6, 9)));
    // A trailing space: a "▁" token of its own in transformers 4, nothing in 5.
    let (t4, t5) = (
        v4.encode("hello ", None, &opts).unwrap(),
        v5.encode("hello ", None, &opts).unwrap(),
    );
    assert_eq!((t4.input_ids.len(), t5.input_ids.len()), (4, 3));
    assert_eq!(
        v4.convert_tokens_to_string(&["▁paris".into(), "▁in".into()])
            .unwrap(),
        "paris in"
    );
}
