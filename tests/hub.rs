//! `--model` as a Hugging Face model id, resolved from a hub cache that each test lays out in a
//! temp dir exactly as huggingface_hub does (blobs, refs/{revision}, snapshots/{commit} with
//! links to the blobs); offline mode and every error. No test touches the network: the one that
//! lets a download be tried points HF_ENDPOINT at a closed port of localhost.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use albert::hub::{self, HubOptions, ModelId};
use albert::{Albert, Error};
use common::{model_dir, read_raw, write_raw};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const REPO: &str = "test-org/tiny-seqcls";
const FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

/// Puts `files` of fixture `fixture` into `cache` as the snapshot `commit` of `repo`, with
/// `refs/{revision}` pointing at it. Files are blobs linked from the snapshot, as on disk after a
/// real download (copied where links are not available).
fn lay_out(
    cache: &Path,
    repo: &str,
    fixture: &str,
    files: &[&str],
    revision: &str,
    commit: &str,
) -> PathBuf {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshot = root.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs").join(revision), commit).unwrap();
    for (i, f) in files.iter().enumerate() {
        let blob = root.join("blobs").join(format!("blob{i}-{commit}"));
        std::fs::copy(model_dir(fixture).join(f), &blob).unwrap();
        link(&blob, &snapshot.join(f));
    }
    snapshot
}

#[cfg(unix)]
fn link(blob: &Path, at: &Path) {
    std::os::unix::fs::symlink(blob, at).unwrap();
}

#[cfg(not(unix))]
fn link(blob: &Path, at: &Path) {
    std::fs::copy(blob, at).unwrap();
}

fn offline(cache: &Path) -> HubOptions {
    HubOptions {
        offline: true,
        ..HubOptions::with_cache_dir(cache)
    }
}

/// The binary with a clean Hugging Face environment plus `env`.
fn albert(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_albert"));
    for k in [
        "HF_HOME",
        "HF_HUB_CACHE",
        "HF_HUB_OFFLINE",
        "HF_ENDPOINT",
        "HF_TOKEN",
        "XDG_CACHE_HOME",
    ] {
        cmd.env_remove(k);
    }
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
}

fn classify(model: &str, env: &[(&str, &str)]) -> Output {
    let args = [
        "text-classification",
        "--model",
        model,
        "--device",
        "cpu",
        "--json",
        "--top-k",
        "all",
        "Plants create energy.",
    ];
    albert(&args, env)
}

fn assert_clean_failure(out: &Output, culprits: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(!err.contains("panicked") && err.contains("error:"), "{err}");
    for c in culprits {
        assert!(err.contains(c), "stderr does not name `{c}`:\n{err}");
    }
}

#[test]
fn model_ids_parse() {
    let id = ModelId::parse("albert/albert-base-v2").unwrap();
    assert_eq!(
        (id.repo.as_str(), id.revision.as_str()),
        ("albert/albert-base-v2", "main")
    );
    assert_eq!(id.folder(), "models--albert--albert-base-v2");
    assert_eq!(
        ModelId::parse("albert-base-v2").unwrap().folder(),
        "models--albert-base-v2"
    );
    assert_eq!(ModelId::parse("org/name@v1.0").unwrap().revision, "v1.0");
    for path in [
        "./model",
        "/abs/model",
        "../shared/models/x",
        "a/b/c",
        "org/",
        "x--y",
        "org/name@",
        "~/m",
        "",
    ] {
        assert!(ModelId::parse(path).is_none(), "{path} parsed as an id");
    }
}

#[test]
fn resolves_ids_from_a_prepared_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let snapshot = lay_out(&cache, REPO, "tiny-albert-seqcls", &FILES, "main", COMMIT);
    let dir = hub::resolve_model_with(REPO, &offline(&cache)).unwrap();
    assert_eq!(dir, snapshot);
    Albert::from_dir(&dir, None).unwrap();
    // A branch or tag, and a commit hash straight to its snapshot.
    let other = "fedcba9876543210fedcba9876543210fedcba98";
    let v1 = lay_out(&cache, REPO, "tiny-albert-seqcls", &FILES, "v1", other);
    assert_eq!(
        hub::resolve_model_with(&format!("{REPO}@v1"), &offline(&cache)).unwrap(),
        v1
    );
    assert_eq!(
        hub::resolve_model_with(&format!("{REPO}@{COMMIT}"), &offline(&cache)).unwrap(),
        snapshot
    );
    // A directory is itself, an id or not; a path that is no id is left to the loader.
    let local = model_dir("tiny-albert-qa");
    assert_eq!(
        hub::resolve_model_with(local.to_str().unwrap(), &offline(&cache)).unwrap(),
        local
    );
    let missing = tmp.path().join("no/such/dir");
    assert_eq!(
        hub::resolve_model_with(missing.to_str().unwrap(), &offline(&cache)).unwrap(),
        missing
    );
}

#[test]
fn sharded_snapshots_resolve_and_load() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let snapshot = lay_out(
        &cache,
        REPO,
        "tiny-albert-seqcls",
        &["config.json", "tokenizer.json"],
        "main",
        COMMIT,
    );
    let tensors = read_raw(&model_dir("tiny-albert-seqcls").join("model.safetensors"));
    let (a, b) = tensors.split_at(tensors.len() / 2);
    write_raw(&snapshot.join("model-00001-of-00002.safetensors"), a);
    let map: serde_json::Map<String, serde_json::Value> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let shard = if i < a.len() { 1 } else { 2 };
            (
                t.name.clone(),
                format!("model-0000{shard}-of-00002.safetensors").into(),
            )
        })
        .collect();
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(
        snapshot.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let e = hub::resolve_model_with(REPO, &offline(&cache)).unwrap_err();
    assert!(matches!(e, Error::Hub { .. }));
    assert!(
        e.to_string().contains("model-00002-of-00002.safetensors"),
        "{e}"
    );
    write_raw(&snapshot.join("model-00002-of-00002.safetensors"), b);
    let dir = hub::resolve_model_with(REPO, &offline(&cache)).unwrap();
    Albert::from_dir(&dir, None).unwrap();
}

#[test]
fn offline_misses_say_where_they_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let e = hub::resolve_model_with("albert/albert-base-v2", &offline(&cache)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Hub { .. }), "{e:?}");
    let refs = cache.join("models--albert--albert-base-v2/refs/main");
    for part in [
        "albert/albert-base-v2",
        &refs.display().to_string(),
        "HF_HUB_OFFLINE",
    ] {
        assert!(msg.contains(part), "{msg} does not name {part}");
    }
    // A snapshot without weights, and a ref to a snapshot that is not there.
    let snapshot = lay_out(
        &cache,
        REPO,
        "tiny-albert-seqcls",
        &["config.json"],
        "main",
        COMMIT,
    );
    let msg = hub::resolve_model_with(REPO, &offline(&cache))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&snapshot.display().to_string()) && msg.contains("model.safetensors"),
        "{msg}"
    );
    let msg = hub::resolve_model_with(&format!("{REPO}@{}", "f".repeat(40)), &offline(&cache))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&"f".repeat(40)) && msg.contains("config.json"),
        "{msg}"
    );
}

#[test]
fn cli_runs_a_model_id_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_str().unwrap();
    lay_out(
        &tmp.path().join("hub"),
        REPO,
        "tiny-albert-seqcls",
        &FILES,
        "main",
        COMMIT,
    );
    let local = classify(model_dir("tiny-albert-seqcls").to_str().unwrap(), &[]);
    assert!(local.status.success());
    let by_id = classify(REPO, &[("HF_HOME", home), ("HF_HUB_OFFLINE", "1")]);
    assert!(
        by_id.status.success(),
        "{}",
        String::from_utf8_lossy(&by_id.stderr)
    );
    assert_eq!(by_id.stdout, local.stdout);
    // HF_HUB_CACHE wins over HF_HOME, as in huggingface_hub.
    let hub_cache = tmp.path().join("hub");
    let env = [
        ("HF_HOME", "/nonexistent"),
        ("HF_HUB_CACHE", hub_cache.to_str().unwrap()),
        ("HF_HUB_OFFLINE", "true"),
    ];
    assert_eq!(classify(REPO, &env).stdout, local.stdout);
    // Online, a complete snapshot is used as it is: the closed endpoint is never asked.
    let env = [("HF_HOME", home), ("HF_ENDPOINT", "http://127.0.0.1:9")];
    assert_eq!(classify(REPO, &env).stdout, local.stdout);
    // Every pipeline and forward/tokenize take ids.
    let out = albert(
        &["tokenize", "--model", REPO, "hello"],
        &[("HF_HOME", home), ("HF_HUB_OFFLINE", "1")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cli_hub_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_str().unwrap();
    let out = classify(
        "albert/albert-base-v2",
        &[("HF_HOME", home), ("HF_HUB_OFFLINE", "1")],
    );
    let refs = tmp
        .path()
        .join("hub/models--albert--albert-base-v2/refs/main");
    assert_clean_failure(
        &out,
        &[
            "albert/albert-base-v2",
            &refs.display().to_string(),
            "HF_HUB_OFFLINE",
            "HF_HOME",
        ],
    );
    // Online with nothing cached: the download is tried and fails cleanly (localhost, closed).
    let env = [("HF_HOME", home), ("HF_ENDPOINT", "http://127.0.0.1:9")];
    let out = classify("albert/albert-base-v2", &env);
    assert_clean_failure(
        &out,
        &[
            "albert/albert-base-v2",
            "downloading it failed",
            "config.json",
        ],
    );
    // An id whose snapshot lacks the tokenizer: the loader names the file.
    lay_out(
        &tmp.path().join("hub"),
        REPO,
        "tiny-albert-seqcls",
        &FILES[..2],
        "main",
        COMMIT,
    );
    let out = classify(REPO, &[("HF_HOME", home), ("HF_HUB_OFFLINE", "1")]);
    assert_clean_failure(&out, &["tokenizer.json", COMMIT]);
}
