//! The bodies of the fuzz targets, shared by `cargo fuzz` (fuzz/fuzz_targets/*.rs) and the
//! seeded run in the normal test suite (tests/fuzz_seeded.rs). Each takes arbitrary bytes and
//! must return without a panic, a hang or an oversized allocation; where a result can be checked
//! cheaply it is (paths stay in their folder, token fields line up, the fast CPU path agrees with
//! the reference), and a failed check panics, which both harnesses report.
//!
//! Every model here is "micro" (vocab 40, E 8, H 16): a forward pass takes microseconds, so a
//! fuzzer runs many thousands of cases a second.

#![allow(dead_code)] // each fuzz target uses one body

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use albert::backend::cpu::fast::FastAlbert;
use albert::model::checkpoint::{shard_paths_from_str, Checkpoint};
use albert::model::weights::Weights;
use albert::{
    Albert, AlbertConfig, DType, EncodeOptions, ForwardOptions, Head, Inputs, Limits, Outputs,
    Padding, Tokenizer, Truncation,
};

pub const HEADS: [Head; 7] = Head::ALL;

/// The micro model's config.json: two groups, two layers per group, three applications.
pub const MICRO_CONFIG: &str = r#"{
  "architectures": ["AlbertForPreTraining"], "model_type": "albert",
  "vocab_size": 40, "embedding_size": 8, "hidden_size": 16, "intermediate_size": 24,
  "num_attention_heads": 2, "num_hidden_layers": 3, "num_hidden_groups": 2,
  "inner_group_num": 2, "max_position_embeddings": 16, "type_vocab_size": 2,
  "hidden_act": "gelu_new", "layer_norm_eps": 1e-12, "pad_token_id": 0,
  "id2label": {"0": "A", "1": "B", "2": "C"}
}"#;

/// The checkpoint target's config: smaller still, so that a whole checkpoint (every head's
/// tensors) is ~5 KB and libFuzzer mutates a file it can cover.
pub const NANO_CONFIG: &str = r#"{
  "architectures": ["AlbertForPreTraining"], "model_type": "albert",
  "vocab_size": 12, "embedding_size": 4, "hidden_size": 8, "intermediate_size": 8,
  "num_attention_heads": 2, "num_hidden_layers": 2, "num_hidden_groups": 1,
  "inner_group_num": 1, "max_position_embeddings": 8, "type_vocab_size": 2,
  "id2label": {"0": "A", "1": "B", "2": "C"}
}"#;

pub fn nano_config() -> &'static AlbertConfig {
    static CFG: OnceLock<AlbertConfig> = OnceLock::new();
    CFG.get_or_init(|| AlbertConfig::from_json_str(NANO_CONFIG, "nano").expect("nano config"))
}

/// Forward passes of the fuzz targets refuse more tokens than this.
pub const MICRO_MAX_TOKENS: usize = 48;

/// Runs `f` on a one-thread rayon pool, from inside it: the engines' parallel loops then run
/// in place, without handing each micro op to another thread (which would cost more than the op).
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a one-thread pool")
    })
    .install(f)
}

pub fn micro_config() -> &'static AlbertConfig {
    static CFG: OnceLock<AlbertConfig> = OnceLock::new();
    CFG.get_or_init(|| AlbertConfig::from_json_str(MICRO_CONFIG, "micro").expect("micro config"))
}

/// ../shared: $ALBERT_SHARED, else the first `shared` folder beside an ancestor of this crate.
pub fn shared() -> PathBuf {
    if let Some(dir) = std::env::var_os("ALBERT_SHARED") {
        return PathBuf::from(dir);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared"))
        .find(|s| s.join("albert-tokenizer").is_dir())
        .expect("../shared (with albert-tokenizer/) beside the project, or ALBERT_SHARED")
}

/// The checkpoint target's one small input (ids below the nano vocabulary).
fn small_inputs() -> Inputs {
    Inputs::new(vec![2, 7, 11, 3, 2, 5, 0, 0], None, None, &[2, 4]).expect("small inputs")
}

fn inputs_for(head: Head) -> Inputs {
    let base = small_inputs();
    match head {
        Head::MultipleChoice => {
            Inputs::new(base.input_ids, None, None, &[1, 2, 4]).expect("small mc inputs")
        }
        _ => base,
    }
}

// ---------------------------------------------------------------------------------------------
// checkpoint: a safetensors file's bytes, loaded as the nano model with one head (picked by
// the input's length, so mutations reach every head) and run.

pub fn checkpoint(data: &[u8]) {
    let Ok(ckpt) = Checkpoint::from_bytes("fuzz.safetensors", data.to_vec()) else {
        return;
    };
    let cfg = nano_config();
    let head = HEADS[data.len() % HEADS.len()];
    let Ok(weights) = Weights::load(&ckpt, cfg, head) else {
        return;
    };
    {
        let model = Albert {
            config: cfg.clone(),
            weights,
            head,
            dtype: DType::F32,
            limits: Limits {
                max_tokens: MICRO_MAX_TOKENS,
            },
        };
        // Hostile values (NaN, inf, huge) flow through every op: errors are fine, panics not.
        let inputs = inputs_for(head);
        let _ = model.forward(&inputs, ForwardOptions::default());
        if let Ok(fast) = FastAlbert::new(model, DType::BF16) {
            let _ = fast.forward(&inputs, ForwardOptions::default());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// config: config.json text; a small enough model is built with random weights and run.

pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = AlbertConfig::from_json_str(text, "fuzz/config.json") else {
        return;
    };
    let head = cfg.default_head();
    let _ = (cfg.head_size(), cfg.num_labels());
    for i in 0..cfg.num_hidden_layers.min(64) {
        assert!(cfg.group_of_application(i) < cfg.num_hidden_groups);
    }
    let params = (cfg.vocab_size + cfg.max_position_embeddings + cfg.type_vocab_size)
        .saturating_mul(cfg.embedding_size)
        .saturating_add(
            cfg.hidden_size
                .saturating_mul(4 * cfg.hidden_size + 2 * cfg.intermediate_size)
                .saturating_mul(cfg.num_hidden_groups * cfg.inner_group_num),
        )
        .saturating_add(cfg.hidden_size.saturating_mul(cfg.num_labels()));
    if params > 20_000 || cfg.num_hidden_layers > 8 {
        return; // the shape is valid; running it would only be slow
    }
    let Ok(head) = head else { return };
    let model = Albert::synthetic(cfg.clone(), head, 1);
    let s = cfg.max_position_embeddings.min(5);
    let rows = if head == Head::MultipleChoice { 2 } else { 1 };
    let ids: Vec<i64> = (0..rows * s).map(|i| (i % cfg.vocab_size) as i64).collect();
    let shape: Vec<usize> = match head {
        Head::MultipleChoice => vec![1, 2, s],
        _ => vec![1, s],
    };
    let inputs = Inputs::new(ids, None, None, &shape).expect("inputs within the config");
    let reference = model.forward(&inputs, ForwardOptions::default());
    if let Ok(fast) = FastAlbert::new(model, DType::F32) {
        let fast = fast.forward(&inputs, ForwardOptions::default());
        agree("config", &reference, &fast);
    }
}

// ---------------------------------------------------------------------------------------------
// index: model.safetensors.index.json text; every shard it names must be a file in the folder.

pub fn index(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = Path::new("/nonexistent/model");
    if let Ok(paths) = shard_paths_from_str(dir, text, "fuzz/index.json") {
        assert!(!paths.is_empty());
        for p in paths {
            assert_eq!(
                p.parent(),
                Some(dir),
                "shard {} escapes the folder",
                p.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tokenizer: arbitrary text (and pair), options from the first bytes, then decode.

pub fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::from_dir(&shared().join("albert-tokenizer")).expect("shared tokenizer")
    })
}

pub fn tokenize(data: &[u8]) {
    let tok = tokenizer();
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&len, rest)) = rest.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // A 0x1F (unit separator) splits the text from its pair.
    let (first, pair) = match text.split_once('\u{1f}') {
        Some((a, b)) => (a.to_string(), Some(b.to_string())),
        None => (text.to_string(), None),
    };
    let opts = EncodeOptions {
        padding: [Padding::None, Padding::Longest, Padding::MaxLength][(flags % 3) as usize],
        truncation: [
            Truncation::None,
            Truncation::LongestFirst,
            Truncation::OnlyFirst,
            Truncation::OnlySecond,
        ][((flags >> 2) % 4) as usize],
        max_length: (flags & 0x40 != 0).then_some(len as usize),
    };
    let chars = |t: &str| t.chars().count();
    // `limit`: the most tokens the encoding may have, where the call promises one.
    let check = |e: &albert::Encoding, texts: &[&str], limit: Option<usize>| {
        let n = e.input_ids.len();
        assert!(
            [
                e.tokens.len(),
                e.token_type_ids.len(),
                e.attention_mask.len()
            ]
            .iter()
            .chain([e.special_tokens_mask.len(), e.offsets.len()].iter())
            .all(|&m| m == n),
            "ragged encoding of {texts:?}"
        );
        let longest = texts.iter().map(|t| chars(t)).max().unwrap_or(0);
        for &(a, b) in &e.offsets {
            assert!(
                a <= b && b <= longest,
                "offset ({a}, {b}) past {longest} chars"
            );
        }
        let vocab = tok.vocab_size();
        assert!(e.input_ids.iter().all(|&id| (id as usize) < vocab));
        if let Some(max) = limit {
            assert!(n <= max, "{n} tokens, at most {max} promised");
        }
        let _ = tok.decode(&e.input_ids, flags & 0x80 != 0);
    };
    let texts: Vec<&str> = std::iter::once(first.as_str())
        .chain(pair.as_deref())
        .collect();
    // Truncation promises max_length (padding to max_length pads up to it, so the same), except
    // for a pair whose strategy cannot cut the longer side enough (then the crate errors or keeps
    // the rest, as transformers does).
    let promised = match opts.truncation {
        Truncation::None => None,
        Truncation::LongestFirst => opts.max_length,
        _ => opts.max_length.filter(|_| texts.len() == 1),
    };
    if let Ok(e) = tok.encode(&first, pair.as_deref(), &opts) {
        // A single encode drops an empty pair.
        let single = pair.as_deref().is_none_or(str::is_empty);
        let limit = if single {
            opts.max_length
                .filter(|_| opts.truncation != Truncation::None)
        } else {
            promised
        };
        check(&e, &texts, limit);
    }
    let batch = vec![(first.clone(), pair.clone()), ("a".to_string(), None)];
    if let Ok(encs) = tok.encode_batch(&batch, &opts) {
        check(&encs[0], &texts, promised);
        check(&encs[1], &["a"], None);
    }
    if let Some(p) = &pair {
        let max = 8 + (len as usize % 40);
        if let Ok(spans) = tok.encode_pair_spans(&first, p, max, (flags as usize) % 8) {
            for s in &spans {
                check(&s.encoding, &texts, Some(max));
            }
        }
    }
    // Any ids at all decode without a panic (out-of-range ones are skipped or an error).
    let ids: Vec<u32> = rest
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .collect();
    let _ = tok.decode(&ids, flags & 1 != 0);
}

// ---------------------------------------------------------------------------------------------
// forward: shapes, ids, masks and token types from bytes, run by the reference and the fast
// path (f32 must agree with the reference; bf16 must not panic).

struct Engines {
    reference: Albert,
    fast: FastAlbert,
    fast_bf16: FastAlbert,
}

fn engines(head: Head) -> &'static Engines {
    static ALL: OnceLock<Vec<Engines>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        HEADS
            .iter()
            .map(|&h| {
                let m = Albert::synthetic(micro_config().clone(), h, 7).with_limits(Limits {
                    max_tokens: MICRO_MAX_TOKENS,
                });
                Engines {
                    fast: FastAlbert::new(m.clone(), DType::F32).expect("fast f32"),
                    fast_bf16: FastAlbert::new(m.clone(), DType::BF16).expect("fast bf16"),
                    reference: m,
                }
            })
            .collect()
    });
    &all[HEADS.iter().position(|&h| h == head).expect("a known head")]
}

/// An id, mask value or token type from one byte: mostly valid, sometimes hostile.
fn value(b: u8, limit: i64) -> i64 {
    match b {
        0..=239 => i64::from(b) % limit,
        240 => -1,
        241 => limit,
        242 => i64::MAX,
        243 => i64::MIN,
        244 => i64::from(u32::MAX) + 1,
        _ => i64::from(b),
    }
}

pub fn forward(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let (b, s, flags) = (data[0] as usize % 4 + 1, data[1] as usize % 20 + 1, data[2]);
    let head = HEADS[(flags % 7) as usize];
    let choices = (head == Head::MultipleChoice).then_some((flags >> 3) as usize % 3 + 1);
    let n = b * choices.unwrap_or(1) * s;
    let bytes = |k: usize| (0..n).map(move |i| *data.get(3 + k * n + i).unwrap_or(&1));
    let cfg = micro_config();
    let ids: Vec<i64> = bytes(0).map(|x| value(x, cfg.vocab_size as i64)).collect();
    let mask: Option<Vec<i64>> =
        (flags & 0x20 != 0).then(|| bytes(1).map(|x| value(x, 2)).collect());
    let types: Option<Vec<i64>> =
        (flags & 0x40 != 0).then(|| bytes(2).map(|x| value(x, 2)).collect());
    let shape: Vec<usize> = match choices {
        Some(c) => vec![b, c, s],
        None => vec![b, s],
    };
    let Ok(inputs) = Inputs::new(ids, mask, types, &shape) else {
        return;
    };
    let e = engines(head);
    let opts = ForwardOptions {
        hidden_states: flags & 0x80 != 0,
    };
    let reference = e.reference.forward(&inputs, opts);
    let fast = e.fast.forward(&inputs, opts);
    agree("forward", &reference, &fast);
    let _ = e.fast_bf16.forward(&inputs, opts);
}

/// The fast path accepts what the reference accepts and computes the same outputs (f32).
fn agree(what: &str, reference: &albert::Result<Outputs>, fast: &albert::Result<Outputs>) {
    match (reference, fast) {
        (Ok(r), Ok(f)) => {
            assert_eq!(
                r.tensors.len(),
                f.tensors.len(),
                "{what}: output names differ"
            );
            for ((nr, tr), (nf, tf)) in r.tensors.iter().zip(&f.tensors) {
                assert_eq!((nr, &tr.shape), (nf, &tf.shape), "{what}: outputs differ");
                for (x, y) in tr.data.iter().zip(&tf.data) {
                    let close =
                        (x - y).abs() <= 1e-3 * (1.0 + x.abs()) || (x.is_nan() && y.is_nan());
                    assert!(close, "{what}: {nr}: reference {x} fast {y}");
                }
            }
        }
        (Err(_), Err(_)) => {}
        (r, f) => panic!(
            "{what}: reference {:?} but fast path {:?}",
            r.as_ref().map(|_| "ok"),
            f.as_ref().map(|_| "ok")
        ),
    }
}
