//! Sizes are checked before anything is allocated for them: a forward pass over the token limit,
//! config.json sizes no model has, a JSON file too large to read, a safetensors header claiming
//! a huge tensor. Each is a clear error naming what is wrong, on every CPU engine and the CLI.

mod common;

use std::process::Command;

use albert::backend::cpu::fast::FastAlbert;
use albert::model::checkpoint::Checkpoint;
use albert::model::weights::Weights;
use albert::{Albert, AlbertConfig, DType, Engine, Error, ForwardOptions, Head, Inputs, Limits};

fn micro() -> AlbertConfig {
    let mut c = AlbertConfig::default();
    (c.vocab_size, c.embedding_size, c.hidden_size) = (50, 8, 16);
    (c.intermediate_size, c.num_attention_heads) = (32, 2);
    (c.num_hidden_layers, c.num_hidden_groups, c.inner_group_num) = (2, 1, 1);
    c.max_position_embeddings = 64;
    c
}

fn engines(model: Albert) -> Vec<(&'static str, Engine)> {
    vec![
        ("reference", Engine::Cpu(model.clone())),
        (
            "fast f32",
            Engine::CpuFast(Box::new(
                FastAlbert::new(model.clone(), DType::F32).unwrap(),
            )),
        ),
        (
            "fast bf16",
            Engine::CpuFast(Box::new(FastAlbert::new(model, DType::BF16).unwrap())),
        ),
    ]
}

#[test]
fn forward_over_the_token_limit_is_refused_before_any_activation() {
    let model = Albert::synthetic(micro(), Head::Model, 1).with_limits(Limits { max_tokens: 100 });
    for (name, engine) in engines(model) {
        let ok = Inputs::new(vec![1; 100], None, None, &[2, 50]).unwrap();
        assert!(
            engine.forward(&ok, ForwardOptions::default()).is_ok(),
            "{name}"
        );
        let over = Inputs::new(vec![1; 102], None, None, &[2, 51]).unwrap();
        match engine.forward(&over, ForwardOptions::default()) {
            Err(Error::Input(msg)) => assert!(
                msg.contains("102 tokens") && msg.contains("limit of 100"),
                "{name}: {msg}"
            ),
            other => panic!(
                "{name}: expected an Input error, got {:?}",
                other.map(|_| ())
            ),
        }
        // Nothing was allocated for the refused pass: the arena still fits the first one only.
        assert!(engine.activation_bytes() < 1 << 20, "{name}");
    }
}

#[test]
fn the_default_limit_refuses_a_huge_batch() {
    let model = Albert::synthetic(micro(), Head::Model, 1);
    let (b, s) = (4096, 64); // 262,144 tokens: ~80 GiB of activations at albert-base sizes
    let huge = Inputs::new(vec![1; b * s], None, None, &[b, s]).unwrap();
    for (name, engine) in engines(model) {
        let err = engine
            .forward(&huge, ForwardOptions::default())
            .unwrap_err();
        assert!(
            err.to_string().contains("Limits::max_tokens"),
            "{name}: {err}"
        );
    }
}

#[test]
fn config_sizes_no_model_has_are_refused_by_field() {
    let base =
        std::fs::read_to_string(common::model_dir("tiny-albert-mlm").join("config.json")).unwrap();
    for (field, value) in [
        ("hidden_size", "1073741824"),
        ("vocab_size", "4294967296"),
        ("num_hidden_layers", "100000"),
        ("intermediate_size", "18446744073709551615"),
    ] {
        let mut json: serde_json::Value = serde_json::from_str(&base).unwrap();
        json[field] = serde_json::from_str(value).unwrap();
        let err = AlbertConfig::from_json_str(&json.to_string(), "config.json").unwrap_err();
        assert!(
            matches!(err, Error::Config { .. }) && err.to_string().contains(field),
            "{field}: {err}"
        );
    }
}

#[test]
fn an_oversized_config_file_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(albert::limits::MAX_CONFIG_BYTES + 1).unwrap(); // sparse: no disk used
    let err = AlbertConfig::from_file(&path).unwrap_err();
    assert!(
        err.to_string().contains("config.json") && err.to_string().contains("larger than"),
        "{err}"
    );
}

#[test]
fn a_header_claiming_a_huge_tensor_is_refused() {
    // A valid header whose tensor claims 2^40 x 128 f32 values backed by 16 bytes.
    let header = br#"{"albert.embeddings.word_embeddings.weight":{"dtype":"F32","shape":[1099511627776,128],"data_offsets":[0,16]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 16]);
    let err = match Checkpoint::from_bytes("huge.safetensors", bytes) {
        Err(e) => e,
        Ok(ckpt) => Weights::load(&ckpt, &micro(), Head::Model)
            .expect_err("a 2^40-row tensor must not load"),
    };
    assert!(err.to_string().contains("huge.safetensors"), "{err}");
}

#[test]
fn the_cli_takes_max_tokens() {
    let dir = common::model_dir("tiny-albert-mlm");
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("in.safetensors");
    albert::io::write_inputs(
        &inputs,
        &Inputs::new(vec![5; 64], None, None, &[4, 16]).unwrap(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_albert"))
        .args([
            "forward",
            "--device",
            "cpu",
            "--max-tokens",
            "32",
            "--model",
        ])
        .arg(&dir)
        .arg("--inputs")
        .arg(&inputs)
        .arg("--output")
        .arg(tmp.path().join("out.safetensors"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("64 tokens") && stderr.contains("limit of 32"),
        "{stderr}"
    );
}
