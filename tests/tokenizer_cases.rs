//! Every case of shared/albert-tokenizer/cases.json (what transformers' AlbertTokenizerFast
//! returns) reproduced field by field: ids, tokens, token types, masks, character offsets and
//! the decoded text. A missing shared/ is a failure, not a skip.

use std::path::{Path, PathBuf};

use albert::tokenizer::{EncodeOptions, Encoding, Padding, Tokenizer, Truncation};
use serde_json::Value;

fn shared() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    assert!(
        dir.join("albert-tokenizer/cases.json").is_file(),
        "{} has no albert-tokenizer/cases.json: these tests need the shared fixtures",
        dir.display()
    );
    dir
}

fn cases() -> Value {
    let path = shared().join("albert-tokenizer/cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(dir: &Path) -> Tokenizer {
    Tokenizer::from_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("integer") as u32)
        .collect()
}

/// The keyword arguments transformers was called with, as EncodeOptions.
fn options(o: &Value) -> EncodeOptions {
    let truncation = match &o["truncation"] {
        Value::Null | Value::Bool(false) => Truncation::None,
        Value::Bool(true) => Truncation::LongestFirst,
        Value::String(s) => match s.as_str() {
            "longest_first" => Truncation::LongestFirst,
            "only_first" => Truncation::OnlyFirst,
            "only_second" => Truncation::OnlySecond,
            "do_not_truncate" => Truncation::None,
            other => panic!("unknown truncation {other:?}"),
        },
        other => panic!("unknown truncation {other}"),
    };
    let padding = match &o["padding"] {
        Value::Null | Value::Bool(false) => Padding::None,
        Value::Bool(true) => Padding::Longest,
        Value::String(s) => match s.as_str() {
            "longest" => Padding::Longest,
            "max_length" => Padding::MaxLength,
            "do_not_pad" => Padding::None,
            other => panic!("unknown padding {other:?}"),
        },
        other => panic!("unknown padding {other}"),
    };
    let max_length = o["max_length"].as_u64().map(|n| n as usize);
    EncodeOptions {
        padding,
        truncation,
        max_length,
    }
}

/// What transformers returned for one case, in our Encoding.
fn expected(case: &Value) -> Encoding {
    Encoding {
        input_ids: u32s(&case["input_ids"]),
        tokens: case["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| t.as_str().expect("token string").to_string())
            .collect(),
        token_type_ids: u32s(&case["token_type_ids"]),
        attention_mask: u32s(&case["attention_mask"]),
        special_tokens_mask: u32s(&case["special_tokens_mask"]),
        offsets: case["offsets"]
            .as_array()
            .expect("offsets")
            .iter()
            .map(|p| {
                (
                    p[0].as_u64().unwrap() as usize,
                    p[1].as_u64().unwrap() as usize,
                )
            })
            .collect(),
    }
}

fn short(text: &str) -> String {
    let head: String = text.chars().take(60).collect();
    if head.len() < text.len() {
        format!("{head:?}...")
    } else {
        format!("{head:?}")
    }
}

fn encode_case(tok: &Tokenizer, case: &Value) -> Encoding {
    let text = case["text"].as_str().expect("text");
    let pair = case["text_pair"].as_str();
    tok.encode(text, pair, &options(&case["options"]))
        .unwrap_or_else(|e| panic!("encoding {}: {e}", short(text)))
}

fn assert_same(got: &Encoding, want: &Encoding, what: &str) {
    let fields: [(&str, String, String); 6] = [
        (
            "input_ids",
            format!("{:?}", got.input_ids),
            format!("{:?}", want.input_ids),
        ),
        (
            "tokens",
            format!("{:?}", got.tokens),
            format!("{:?}", want.tokens),
        ),
        (
            "token_type_ids",
            format!("{:?}", got.token_type_ids),
            format!("{:?}", want.token_type_ids),
        ),
        (
            "attention_mask",
            format!("{:?}", got.attention_mask),
            format!("{:?}", want.attention_mask),
        ),
        (
            "special_tokens_mask",
            format!("{:?}", got.special_tokens_mask),
            format!("{:?}", want.special_tokens_mask),
        ),
        (
            "offsets",
            format!("{:?}", got.offsets),
            format!("{:?}", want.offsets),
        ),
    ];
    for (name, g, w) in fields {
        assert_eq!(g, w, "{what}: {name} differs");
    }
    assert_eq!(got, want, "{what}");
}

#[test]
fn every_case_matches_transformers() {
    let cases = cases();
    let tok = load(&shared().join("albert-tokenizer"));
    let list = cases["cases"]
        .as_array()
        .expect("cases.json: `cases` must be an array");
    assert!(!list.is_empty(), "cases.json has no cases");
    for (i, case) in list.iter().enumerate() {
        let what = format!("case {i} {}", short(case["text"].as_str().unwrap_or("")));
        let got = encode_case(&tok, case);
        assert_same(&got, &expected(case), &what);
        let decoded = tok
            .decode(&got.input_ids, true)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            decoded,
            case["decoded"].as_str().expect("decoded"),
            "{what}: decoded differs"
        );
    }
}

#[test]
fn batch_case_matches_transformers() {
    let cases = cases();
    let tok = load(&shared().join("albert-tokenizer"));
    let batch = &cases["batch"];
    assert_eq!(
        batch["padding"], "longest",
        "the batch case pads to the longest"
    );
    let texts: Vec<(String, Option<String>)> = batch["texts"]
        .as_array()
        .expect("batch.texts")
        .iter()
        .map(|t| (t.as_str().expect("text").to_string(), None))
        .collect();
    let opts = EncodeOptions {
        padding: Padding::Longest,
        ..Default::default()
    };
    let encs = tok.encode_batch(&texts, &opts).expect("encode_batch");
    assert_eq!(encs.len(), texts.len());
    for (b, enc) in encs.iter().enumerate() {
        let what = format!("batch row {b} {}", short(&texts[b].0));
        assert_eq!(
            enc.input_ids,
            u32s(&batch["input_ids"][b]),
            "{what}: input_ids"
        );
        assert_eq!(
            enc.attention_mask,
            u32s(&batch["attention_mask"][b]),
            "{what}: attention_mask"
        );
        assert_eq!(
            enc.token_type_ids,
            u32s(&batch["token_type_ids"][b]),
            "{what}: token_type_ids"
        );
    }
}

#[test]
fn batch_of_cases_matches_single_encodes() {
    // encode_batch without padding must give each case's own encoding (pairs included).
    let cases = cases();
    let tok = load(&shared().join("albert-tokenizer"));
    let plain: Vec<&Value> = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["options"].as_object().is_none_or(|o| o.is_empty()))
        .filter(|c| c["text_pair"].as_str() != Some(""))
        .collect();
    let inputs: Vec<(String, Option<String>)> = plain
        .iter()
        .map(|c| {
            (
                c["text"].as_str().unwrap().into(),
                c["text_pair"].as_str().map(String::from),
            )
        })
        .collect();
    let encs = tok
        .encode_batch(&inputs, &EncodeOptions::default())
        .expect("encode_batch");
    for (i, (enc, case)) in encs.iter().zip(&plain).enumerate() {
        assert_same(
            enc,
            &expected(case),
            &format!("batch item {i} {}", short(&inputs[i].0)),
        );
    }
}

#[test]
fn to_inputs_of_batch_case_is_3_by_16() {
    let cases = cases();
    let tok = load(&shared().join("albert-tokenizer"));
    let texts: Vec<(String, Option<String>)> = cases["batch"]["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t.as_str().unwrap().to_string(), None))
        .collect();
    let opts = EncodeOptions {
        padding: Padding::Longest,
        ..Default::default()
    };
    let encs = tok.encode_batch(&texts, &opts).expect("encode_batch");
    let inputs = Tokenizer::to_inputs(&encs).expect("to_inputs");
    assert_eq!((inputs.batch, inputs.choices, inputs.seq), (3, None, 16));
    let flat = |key: &str| -> Vec<i64> {
        cases["batch"][key]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| u32s(row).into_iter().map(i64::from))
            .collect()
    };
    assert_eq!(inputs.input_ids, flat("input_ids"));
    assert_eq!(inputs.attention_mask, flat("attention_mask"));
    assert_eq!(inputs.token_type_ids, flat("token_type_ids"));
}

#[test]
fn every_model_tokenizer_encodes_the_first_case() {
    let cases = cases();
    let first = &cases["cases"][0];
    let models = shared().join("models");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&models)
        .unwrap_or_else(|e| panic!("{}: {e}", models.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.join("tokenizer.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no model directory with a tokenizer.json under {}",
        models.display()
    );
    for dir in dirs {
        let tok = load(&dir);
        assert_eq!(tok.model_max_length(), 512, "{}", dir.display());
        let what = format!(
            "{}: case 0 {}",
            dir.display(),
            short(first["text"].as_str().unwrap())
        );
        assert_same(&encode_case(&tok, first), &expected(first), &what);
    }
}

#[test]
fn special_ids_and_vocab() {
    let tok = load(&shared().join("albert-tokenizer"));
    assert_eq!(tok.pad_token_id(), 0);
    assert_eq!(tok.mask_token_id().unwrap(), 4);
    assert_eq!(tok.vocab_size(), 30000);
    assert_eq!(tok.model_max_length(), 512);
    for (id, token) in ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .enumerate()
    {
        assert_eq!(tok.token_to_id(token), Some(id as u32), "{token}");
        assert_eq!(tok.id_to_token(id as u32).as_deref(), Some(*token));
    }
    assert_eq!(tok.token_to_id("not-a-piece"), None);
    // decode keeps special tokens unless asked to skip them (the Metaspace decoder puts no
    // space before "[SEP]": it only turns "▁" into spaces).
    let enc = tok
        .encode("Hello world", None, &EncodeOptions::default())
        .unwrap();
    assert_eq!(
        tok.decode(&enc.input_ids, false).unwrap(),
        "[CLS] hello world[SEP]"
    );
    assert_eq!(tok.decode(&enc.input_ids, true).unwrap(), "hello world");
}
