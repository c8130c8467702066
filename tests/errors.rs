//! Every class of bad input is an `albert::Error` of the right kind whose message names the
//! culprit (file, tensor, field, token and position), never a panic. Fixtures are copied to a
//! temp dir before they are broken; ../shared is never written.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use albert::pipelines::fill_mask::fill_mask;
use albert::{io, Albert, Engine, Error, ForwardOptions, Head, Inputs, Tokenizer};
use common::{copy_model, edit_checkpoint, edit_config, model_dir, read_raw, RawTensor};
use safetensors::Dtype;
use serde_json::json;

const FFN_WEIGHT: &str = "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight";

/// tiny-albert-mlm, loaded once for every input test.
fn mlm() -> &'static Albert {
    static MODEL: OnceLock<Albert> = OnceLock::new();
    MODEL.get_or_init(|| Albert::from_dir(&model_dir("tiny-albert-mlm"), None).unwrap())
}

fn mlm_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::Cpu(mlm().clone()))
}

fn load(dir: &Path) -> Error {
    Albert::from_dir(dir, None).expect_err("loading should fail")
}

/// Asserts that `text` contains every one of `parts`.
fn assert_names(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "message does not name `{p}`: {text}");
    }
}

fn forward_err(model: &Albert, inputs: &Inputs) -> Error {
    model
        .forward(inputs, ForwardOptions::default())
        .expect_err("forward should fail")
}

// ---------------------------------------------------------------------------------------------
// Checkpoint files

#[test]
fn missing_model_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        model_dir("tiny-albert-mlm").join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let e = load(tmp.path());
    assert!(matches!(e, Error::Safetensors { .. }), "{e:?}");
    let dir = tmp.path().display().to_string();
    assert_names(&e.to_string(), &[&dir, "model.safetensors"]);
}

#[test]
fn missing_config_json() {
    let tmp = copy_model("tiny-albert-mlm");
    std::fs::remove_file(tmp.path().join("config.json")).unwrap();
    let e = load(tmp.path());
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert_names(&e.to_string(), &["config.json"]);
}

/// Cuts `model.safetensors` of a copy of tiny-albert-mlm to `len(bytes)` and loads it.
fn load_truncated(len: impl FnOnce(usize) -> usize) -> (tempfile::TempDir, Error) {
    let tmp = copy_model("tiny-albert-mlm");
    let path = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..len(bytes.len())]).unwrap();
    let e = load(tmp.path());
    (tmp, e)
}

#[test]
fn truncated_safetensors_body() {
    let (tmp, e) = load_truncated(|n| n / 2);
    assert!(matches!(e, Error::Safetensors { .. }), "{e:?}");
    let path = tmp.path().join("model.safetensors").display().to_string();
    assert_names(&e.to_string(), &[&path]);
}

#[test]
fn truncated_inside_header() {
    // The header of tiny-albert-mlm is a few KB of JSON; 200 bytes cut it mid-way.
    let (tmp, e) = load_truncated(|_| 200);
    assert!(matches!(e, Error::Safetensors { .. }), "{e:?}");
    let path = tmp.path().join("model.safetensors").display().to_string();
    assert_names(&e.to_string(), &[&path]);
}

#[test]
fn truncated_inside_length_prefix() {
    let (tmp, e) = load_truncated(|_| 5);
    assert!(matches!(e, Error::Safetensors { .. }), "{e:?}");
    let path = tmp.path().join("model.safetensors").display().to_string();
    assert_names(&e.to_string(), &[&path]);
}

#[test]
fn empty_safetensors_file() {
    let (tmp, e) = load_truncated(|_| 0);
    assert!(
        matches!(e, Error::Safetensors { .. } | Error::Io { .. }),
        "{e:?}"
    );
    let path = tmp.path().join("model.safetensors").display().to_string();
    assert_names(&e.to_string(), &[&path]);
}

/// Replaces a copy's model.safetensors with `bytes` and loads it.
fn load_bytes(bytes: &[u8]) -> (tempfile::TempDir, Error) {
    let tmp = copy_model("tiny-albert-mlm");
    let path = tmp.path().join("model.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let e = load(tmp.path());
    assert!(matches!(e, Error::Safetensors { .. }), "{e:?}");
    let path = path.display().to_string();
    assert_names(&e.to_string(), &[&path]);
    (tmp, e)
}

#[test]
fn garbage_header() {
    // A plausible length prefix followed by bytes that are not JSON.
    let mut bytes = 64u64.to_le_bytes().to_vec();
    bytes.extend((0..64u8).map(|i| i.wrapping_mul(37).wrapping_add(0x80)));
    bytes.extend([0u8; 256]);
    load_bytes(&bytes);
    // Valid UTF-8 that is not JSON.
    let mut bytes = 16u64.to_le_bytes().to_vec();
    bytes.extend(b"this is not json");
    load_bytes(&bytes);
    // JSON that is not a safetensors header.
    let header = br#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 99]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend([0u8; 8]);
    load_bytes(&bytes);
    // Pure noise: the "length" is astronomically large.
    load_bytes(&[0xffu8; 4096]);
}

#[test]
fn header_length_larger_than_file() {
    let original = std::fs::read(model_dir("tiny-albert-mlm").join("model.safetensors")).unwrap();
    let mut bytes = original.clone();
    bytes[..8].copy_from_slice(&((original.len() as u64) + 1000).to_le_bytes());
    load_bytes(&bytes);
}

#[test]
fn wrong_dtype_tensor() {
    let tmp = copy_model("tiny-albert-mlm");
    let name = "albert.embeddings.LayerNorm.weight";
    edit_checkpoint(tmp.path(), |ts| {
        let t = ts.iter_mut().find(|t| t.name == name).unwrap();
        let ints: Vec<i64> = t.to_f32().iter().map(|&v| v as i64).collect();
        *t = RawTensor::i64(name, t.shape.clone(), &ints);
    });
    let e = load(tmp.path());
    match &e {
        Error::Dtype { name: n, dtype, .. } => {
            assert_eq!(n, name);
            assert_eq!(dtype, "I64");
        }
        _ => panic!("expected Error::Dtype, got {e:?}"),
    }
    let path = tmp.path().join("model.safetensors").display().to_string();
    assert_names(&e.to_string(), &[name, "I64", &path, "F32"]);
}

#[test]
fn missing_tensor() {
    let tmp = copy_model("tiny-albert-mlm");
    edit_checkpoint(tmp.path(), |ts| ts.retain(|t| t.name != FFN_WEIGHT));
    let e = load(tmp.path());
    match &e {
        Error::MissingTensor { name, expected, .. } => {
            assert_eq!(name, FFN_WEIGHT);
            assert_eq!(expected, &[128, 64]);
        }
        _ => panic!("expected Error::MissingTensor, got {e:?}"),
    }
    let dir = tmp.path().display().to_string();
    assert_names(&e.to_string(), &[FFN_WEIGHT, "[128, 64]", &dir]);
}

#[test]
fn missing_word_embeddings_of_a_prefixed_checkpoint_names_the_prefixed_tensor() {
    let tmp = copy_model("tiny-albert-mlm");
    let name = "albert.embeddings.word_embeddings.weight";
    edit_checkpoint(tmp.path(), |ts| ts.retain(|t| t.name != name));
    let e = load(tmp.path());
    assert!(matches!(e, Error::MissingTensor { .. }), "{e:?}");
    assert_names(&e.to_string(), &[name]);
}

#[test]
fn misshaped_tensor() {
    let tmp = copy_model("tiny-albert-mlm");
    edit_checkpoint(tmp.path(), |ts| {
        let t = ts.iter_mut().find(|t| t.name == FFN_WEIGHT).unwrap();
        t.shape = vec![64, 128]; // transposed: same byte count, wrong layout
    });
    let e = load(tmp.path());
    match &e {
        Error::ShapeMismatch {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, FFN_WEIGHT);
            assert_eq!(expected, &[128, 64]);
            assert_eq!(found, &[64, 128]);
        }
        _ => panic!("expected Error::ShapeMismatch, got {e:?}"),
    }
    let path = tmp.path().join("model.safetensors").display().to_string();
    assert_names(
        &e.to_string(),
        &[FFN_WEIGHT, "[128, 64]", "[64, 128]", &path],
    );
}

#[test]
fn head_weights_absent_from_checkpoint() {
    // tiny-albert-tokcls has no pooler; as a sequence classifier it needs one.
    let e = Albert::from_dir(
        &model_dir("tiny-albert-tokcls"),
        Some(Head::SequenceClassification),
    )
    .unwrap_err();
    assert!(matches!(e, Error::MissingTensor { .. }), "{e:?}");
    assert_names(&e.to_string(), &["albert.pooler.weight"]);
}

// ---------------------------------------------------------------------------------------------
// config.json

/// Loads a copy of tiny-albert-mlm whose config.json `edit` has changed; returns the error and
/// the config path.
fn bad_config(
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> (Error, String) {
    let tmp = copy_model("tiny-albert-mlm");
    edit_config(tmp.path(), edit);
    let e = load(tmp.path());
    let path = tmp.path().join("config.json").display().to_string();
    (e, path)
}

/// Asserts `e` is a config error naming the file and each of `parts`.
fn assert_config_err(e: &Error, path: &str, parts: &[&str]) {
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert_names(&e.to_string(), &[path]);
    assert_names(&e.to_string(), parts);
}

#[test]
fn config_not_json() {
    let tmp = copy_model("tiny-albert-mlm");
    let path = tmp.path().join("config.json");
    std::fs::write(&path, "{\"hidden_size\": 64,, }").unwrap();
    let e = load(tmp.path());
    assert_config_err(&e, &path.display().to_string(), &["JSON"]);
    std::fs::write(&path, "[1, 2, 3]").unwrap();
    let e = load(tmp.path());
    assert_config_err(&e, &path.display().to_string(), &["object"]);
}

#[test]
fn config_hidden_size_not_divisible_by_heads() {
    let (e, path) = bad_config(|c| {
        c.insert("num_attention_heads".into(), json!(5));
    });
    assert_config_err(
        &e,
        &path,
        &["hidden_size", "64", "num_attention_heads", "5"],
    );
}

#[test]
fn config_num_hidden_groups_zero() {
    let (e, path) = bad_config(|c| {
        c.insert("num_hidden_groups".into(), json!(0));
    });
    assert_config_err(&e, &path, &["num_hidden_groups"]);
}

#[test]
fn config_more_groups_than_layers() {
    let (e, path) = bad_config(|c| {
        c.insert("num_hidden_groups".into(), json!(5));
    });
    assert_config_err(
        &e,
        &path,
        &["num_hidden_groups", "5", "num_hidden_layers", "4"],
    );
}

#[test]
fn config_zero_sizes() {
    for field in [
        "vocab_size",
        "embedding_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "inner_group_num",
        "max_position_embeddings",
        "type_vocab_size",
    ] {
        let (e, path) = bad_config(|c| {
            c.insert(field.into(), json!(0));
        });
        assert_config_err(&e, &path, &[field]);
    }
}

#[test]
fn config_unknown_hidden_act() {
    let (e, path) = bad_config(|c| {
        c.insert("hidden_act".into(), json!("swishish"));
    });
    assert_config_err(&e, &path, &["hidden_act", "swishish"]);
}

#[test]
fn config_wrong_types() {
    let cases = [
        ("hidden_size", json!("64")),
        ("num_attention_heads", json!(4.5)),
        ("num_hidden_layers", json!(-1)),
        ("vocab_size", json!([30000])),
        ("layer_norm_eps", json!("1e-12")),
        ("tie_word_embeddings", json!("yes")),
        ("hidden_act", json!(7)),
        ("architectures", json!("AlbertForMaskedLM")),
        ("id2label", json!(["a", "b"])),
    ];
    for (field, value) in cases {
        let (e, path) = bad_config(|c| {
            c.insert(field.into(), value.clone());
        });
        assert_config_err(&e, &path, &[field]);
    }
}

#[test]
fn config_other_bad_values() {
    let (e, path) = bad_config(|c| {
        c.insert("model_type".into(), json!("bert"));
    });
    assert_config_err(&e, &path, &["model_type", "bert"]);
    let (e, path) = bad_config(|c| {
        c.insert("layer_norm_eps".into(), json!(-1.0));
    });
    assert_config_err(&e, &path, &["layer_norm_eps"]);
    let (e, path) = bad_config(|c| {
        c.insert("pad_token_id".into(), json!(30000));
    });
    assert_config_err(&e, &path, &["pad_token_id", "30000"]);
    let (e, path) = bad_config(|c| {
        c.insert("id2label".into(), json!({"0": "a", "2": "c"}));
    });
    assert_config_err(&e, &path, &["id2label"]);
}

#[test]
fn config_unknown_architecture() {
    let (e, _) = bad_config(|c| {
        c.insert("architectures".into(), json!(["BertForMaskedLM"]));
    });
    assert!(
        matches!(&e, Error::UnknownHead(h) if h == "BertForMaskedLM"),
        "{e:?}"
    );
    assert_names(&e.to_string(), &["BertForMaskedLM", "AlbertForMaskedLM"]);
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// [CLS] a b c [SEP] as two rows of five, with `edit` applied to (ids, mask, types).
fn inputs_2x5(edit: impl FnOnce(&mut Vec<i64>, &mut Vec<i64>, &mut Vec<i64>)) -> Inputs {
    let mut ids = vec![2, 10, 11, 12, 3, 2, 20, 21, 3, 0];
    let mut mask = vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 0];
    let mut types = vec![0; 10];
    edit(&mut ids, &mut mask, &mut types);
    Inputs::new(ids, Some(mask), Some(types), &[2, 5]).unwrap()
}

fn assert_out_of_range(e: &Error, want_what: &str, want: (i64, usize, usize, usize)) {
    match e {
        Error::IdOutOfRange {
            what,
            value,
            batch,
            pos,
            limit,
            ..
        } => {
            assert_eq!(*what, want_what);
            assert_eq!((*value, *batch, *pos, *limit), want, "{e}");
        }
        _ => panic!("expected Error::IdOutOfRange, got {e:?}"),
    }
    let (value, batch, pos, limit) = want;
    assert_names(
        &e.to_string(),
        &[
            want_what,
            &value.to_string(),
            &format!("batch {batch}"),
            &format!("position {pos}"),
            &limit.to_string(),
        ],
    );
}

#[test]
fn token_id_at_vocab_size() {
    let x = inputs_2x5(|ids, _, _| ids[7] = 30000);
    let e = forward_err(mlm(), &x);
    assert_out_of_range(&e, "token id", (30000, 1, 2, 30000));
    // Also a padded position: out-of-range ids are refused wherever they are.
    let x = inputs_2x5(|ids, _, _| ids[9] = 1 << 40);
    let e = forward_err(mlm(), &x);
    assert_out_of_range(&e, "token id", (1 << 40, 1, 4, 30000));
}

#[test]
fn negative_token_id() {
    let x = inputs_2x5(|ids, _, _| ids[3] = -1);
    let e = forward_err(mlm(), &x);
    assert_out_of_range(&e, "token id", (-1, 0, 3, 30000));
}

#[test]
fn token_type_id_at_type_vocab_size() {
    let x = inputs_2x5(|_, _, types| types[6] = 2);
    let e = forward_err(mlm(), &x);
    assert_out_of_range(&e, "token type id", (2, 1, 1, 2));
    let x = inputs_2x5(|_, _, types| types[0] = -3);
    let e = forward_err(mlm(), &x);
    assert_out_of_range(&e, "token type id", (-3, 0, 0, 2));
}

#[test]
fn attention_mask_value_two() {
    let x = inputs_2x5(|_, mask, _| mask[4] = 2);
    let e = forward_err(mlm(), &x);
    assert_out_of_range(&e, "attention mask value", (2, 0, 4, 2));
}

#[test]
fn sequence_longer_than_positions() {
    let s = 513;
    let x = Inputs::new(vec![5; s], None, None, &[1, s]).unwrap();
    let e = forward_err(mlm(), &x);
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    assert_names(&e.to_string(), &["513", "max_position_embeddings", "512"]);
}

#[test]
fn mismatched_shapes_in_inputs_new() {
    let e = Inputs::new(vec![2, 5, 3], Some(vec![1, 1]), None, &[1, 3]).unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    assert_names(&e.to_string(), &["attention_mask", "2", "[1, 3]"]);
    let e = Inputs::new(vec![2, 5, 3], None, Some(vec![0; 4]), &[1, 3]).unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    assert_names(&e.to_string(), &["token_type_ids", "4", "[1, 3]"]);
    let e = Inputs::new(vec![2, 5, 3], None, None, &[2, 3]).unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    assert_names(&e.to_string(), &["input_ids", "3", "[2, 3]"]);
    for shape in [&[6][..], &[1, 1, 2, 3]] {
        let e = Inputs::new(vec![1; 6], None, None, shape).unwrap_err();
        assert!(matches!(e, Error::Input(_)), "{e:?}");
        assert_names(&e.to_string(), &["input_ids", &format!("{shape:?}")]);
    }
}

#[test]
fn overflowing_shape_in_inputs_new_is_an_error() {
    let r = std::panic::catch_unwind(|| Inputs::new(vec![1, 2], None, None, &[usize::MAX, 2]));
    let e = r.expect("Inputs::new panicked").unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e:?}");
}

/// Writes an inputs file with these tensors and reads it back.
fn read_inputs_of(tensors: &[RawTensor]) -> (tempfile::TempDir, String, albert::Result<Inputs>) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("inputs.safetensors");
    common::write_raw(&path, tensors);
    let r = io::read_inputs(&path);
    (tmp, path.display().to_string(), r)
}

#[test]
fn mismatched_shapes_in_inputs_file() {
    let ids = RawTensor::i64("input_ids", vec![1, 4], &[2, 10, 11, 3]);
    let mask = RawTensor::i64("attention_mask", vec![1, 5], &[1; 5]);
    let (_tmp, path, r) = read_inputs_of(&[ids.clone(), mask]);
    let e = r.unwrap_err();
    match &e {
        Error::ShapeMismatch {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, "attention_mask");
            assert_eq!(expected, &[1, 4]);
            assert_eq!(found, &[1, 5]);
        }
        _ => panic!("expected Error::ShapeMismatch, got {e:?}"),
    }
    assert_names(
        &e.to_string(),
        &["attention_mask", "[1, 4]", "[1, 5]", &path],
    );

    // Same element count, different shape: still refused.
    let types = RawTensor::i64("token_type_ids", vec![2, 2], &[0; 4]);
    let (_tmp, path, r) = read_inputs_of(&[ids, types]);
    let e = r.unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
    assert_names(
        &e.to_string(),
        &["token_type_ids", "[1, 4]", "[2, 2]", &path],
    );
}

#[test]
fn inputs_file_other_errors() {
    // No input_ids.
    let mask = RawTensor::i64("attention_mask", vec![1, 4], &[1; 4]);
    let (_tmp, path, r) = read_inputs_of(&[mask]);
    let e = r.unwrap_err();
    assert!(matches!(e, Error::MissingTensor { .. }), "{e:?}");
    assert_names(&e.to_string(), &["input_ids", &path]);
    // Float ids.
    let ids = RawTensor::f32("input_ids", vec![1, 4], &[2.0, 10.0, 11.0, 3.0]);
    let (_tmp, path, r) = read_inputs_of(&[ids]);
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Dtype { .. }), "{e:?}");
    assert_names(&e.to_string(), &["input_ids", "F32", "I64", &path]);
    // Float token types next to good ids.
    let ids = RawTensor::i64("input_ids", vec![1, 4], &[2, 10, 11, 3]);
    let types = RawTensor::f32("token_type_ids", vec![1, 4], &[0.0; 4]);
    let (_tmp, path, r) = read_inputs_of(&[ids, types]);
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Dtype { .. }), "{e:?}");
    assert_names(&e.to_string(), &["token_type_ids", "F32", &path]);
    // Not a safetensors file at all.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("inputs.safetensors");
    std::fs::write(&path, b"input_ids = [2, 10, 3]").unwrap();
    let e = io::read_inputs(&path).unwrap_err();
    assert!(matches!(e, Error::Safetensors { .. }), "{e:?}");
    assert_names(&e.to_string(), &[&path.display().to_string()]);
    // A file that does not exist.
    let path = tmp.path().join("absent.safetensors");
    let e = io::read_inputs(&path).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert_names(&e.to_string(), &["absent.safetensors"]);
}

#[test]
fn empty_batch() {
    for shape in [[0, 5], [2, 0]] {
        let e = Inputs::new(vec![], None, None, &shape).unwrap_err();
        assert!(matches!(e, Error::Input(_)), "{e:?}");
        assert_names(&e.to_string(), &["empty batch", &format!("{shape:?}")]);
    }
    let e = Inputs::new(vec![], None, None, &[2, 0, 5]).unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    // An inputs file with zero rows.
    let ids = RawTensor::i64("input_ids", vec![0, 5], &[]);
    let (_tmp, _path, r) = read_inputs_of(&[ids]);
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    assert_names(&e.to_string(), &["empty batch"]);
}

#[test]
fn choices_inputs_to_a_single_sequence_head() {
    let x = Inputs::new(vec![2, 10, 3, 2, 11, 3], None, None, &[1, 2, 3]).unwrap();
    let e = forward_err(mlm(), &x);
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    assert_names(&e.to_string(), &["[B, C, S]", "AlbertForMaskedLM"]);
}

#[test]
fn single_sequence_inputs_to_multiple_choice() {
    let mc = Albert::from_dir(&model_dir("tiny-albert-mc"), None).unwrap();
    assert_eq!(mc.head, Head::MultipleChoice);
    let x = Inputs::new(vec![2, 10, 3, 2, 11, 3], None, None, &[2, 3]).unwrap();
    let e = forward_err(&mc, &x);
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    assert_names(&e.to_string(), &["AlbertForMultipleChoice", "[B, C, S]"]);
}

#[test]
fn out_of_range_id_in_multiple_choice_names_batch_and_choice() {
    let mc = Albert::from_dir(&model_dir("tiny-albert-mc"), None).unwrap();
    let (b, c, s) = (2, 3, 4);
    let mut ids = vec![5i64; b * c * s];
    let (bad_batch, bad_choice, bad_pos) = (1, 0, 2);
    ids[(bad_batch * c + bad_choice) * s + bad_pos] = 30000;
    let x = Inputs::new(ids, None, None, &[b, c, s]).unwrap();
    let e = forward_err(&mc, &x);
    assert!(matches!(e, Error::IdOutOfRange { .. }), "{e:?}");
    assert_names(&e.to_string(), &["batch 1", "choice 0", "position 2"]);
}

// ---------------------------------------------------------------------------------------------
// Fill-mask and head names

fn mlm_tokenizer() -> Tokenizer {
    Tokenizer::from_dir(&model_dir("tiny-albert-mlm")).unwrap()
}

#[test]
fn fill_mask_without_mask() {
    let tok = mlm_tokenizer();
    let texts = vec![
        "Paris is the [MASK] of France.".to_string(),
        "No mask in this one.".to_string(),
    ];
    let e = fill_mask(mlm_engine(), &tok, &texts, 5).unwrap_err();
    assert!(matches!(e, Error::Pipeline(_)), "{e:?}");
    assert_names(
        &e.to_string(),
        &["[MASK]", "text 1", "No mask in this one."],
    );
}

#[test]
fn fill_mask_top_k_zero() {
    let tok = mlm_tokenizer();
    let texts = vec!["Paris is the [MASK] of France.".to_string()];
    let e = fill_mask(mlm_engine(), &tok, &texts, 0).unwrap_err();
    assert!(matches!(e, Error::Pipeline(_)), "{e:?}");
    assert_names(&e.to_string(), &["top_k"]);
}

#[test]
fn fill_mask_other_errors() {
    let tok = mlm_tokenizer();
    let e = fill_mask(mlm_engine(), &tok, &[], 5).unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    // A text too long for the position table.
    let long = format!("{} [MASK].", "word ".repeat(600));
    let e = fill_mask(mlm_engine(), &tok, &[long], 5).unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    assert_names(&e.to_string(), &["max_position_embeddings"]);
    // A model without a masked-LM head.
    let qa = Albert::from_dir(&model_dir("tiny-albert-qa"), None).unwrap();
    let texts = vec!["Paris is the [MASK] of France.".to_string()];
    let e = fill_mask(&Engine::Cpu(qa), &tok, &texts, 5).unwrap_err();
    assert!(matches!(e, Error::Pipeline(_)), "{e:?}");
    assert_names(&e.to_string(), &["AlbertForQuestionAnswering"]);
}

#[test]
fn tokenizer_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Tokenizer::from_dir(tmp.path()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert_names(&e.to_string(), &["tokenizer.json"]);
    let path = tmp.path().join("tokenizer.json");
    std::fs::write(&path, "{ not a tokenizer").unwrap();
    let e = Tokenizer::from_dir(tmp.path()).unwrap_err();
    assert!(matches!(e, Error::Tokenizer(_)), "{e:?}");
    assert_names(&e.to_string(), &[&path.display().to_string()]);
}

#[test]
fn unknown_head_name() {
    for name in ["AlbertForCooking", "", "albertformaskedlm"] {
        let e = Head::from_name(name).unwrap_err();
        assert!(matches!(&e, Error::UnknownHead(h) if h == name), "{e:?}");
        assert_names(
            &e.to_string(),
            &[&format!("`{name}`"), "AlbertForMaskedLM", "AlbertModel"],
        );
    }
}

#[test]
fn checkpoint_dtype_is_checked_per_tensor_not_per_file() {
    // A checkpoint mixing F32 and F16 tensors loads; only unsupported dtypes are refused.
    let tmp = copy_model("tiny-albert-mlm");
    let ts = read_raw(&tmp.path().join("model.safetensors"));
    assert!(ts.iter().all(|t| t.dtype == Dtype::F32));
    edit_checkpoint(tmp.path(), |ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.name == "predictions.bias")
            .unwrap();
        let halfs: Vec<u8> = t
            .to_f32()
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        t.dtype = Dtype::F16;
        t.data = halfs;
    });
    Albert::from_dir(tmp.path(), None).unwrap();
    edit_checkpoint(tmp.path(), |ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.name == "predictions.bias")
            .unwrap();
        t.dtype = Dtype::U16;
    });
    let e = load(tmp.path());
    assert!(matches!(e, Error::Dtype { .. }), "{e:?}");
    assert_names(&e.to_string(), &["predictions.bias", "U16"]);
}
