//! `--model` as a local directory or a Hugging Face model id (`albert/albert-base-v2`, optionally
//! `@revision`), resolved to a directory of the standard hub cache that huggingface_hub and
//! transformers share: `{cache}/models--{org}--{name}/refs/{revision}` holds a commit hash and
//! `snapshots/{hash}/` the files.
//!
//! The cache is read here, not through hf-hub: it is a few path joins, it lets an error say
//! exactly which file it looked for, and it honours HF_HUB_OFFLINE and HF_HUB_CACHE, which
//! hf-hub 0.4 ignores. hf-hub (blocking ureq client) only downloads, into the same cache, what
//! the cache lacks; a complete cached snapshot is used without asking the network (transformers
//! would first check for a newer commit).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the cache is and whether the network may be used.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// The hub cache directory (the one holding `models--*`).
    pub cache_dir: PathBuf,
    /// What chose `cache_dir`, for error messages (`HF_HOME`, ...).
    pub cache_origin: String,
    /// Use the cache only, never the network (HF_HUB_OFFLINE=1).
    pub offline: bool,
    /// The hub's URL (HF_ENDPOINT); None: https://huggingface.co.
    pub endpoint: Option<String>,
    /// An access token for gated or private models (HF_TOKEN).
    pub token: Option<String>,
}

impl HubOptions {
    /// The cache and mode the environment asks for, as huggingface_hub reads it: HF_HUB_CACHE,
    /// else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub;
    /// HF_HUB_OFFLINE (1, true, yes, on), HF_ENDPOINT, HF_TOKEN.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (cache_dir, cache_origin) = if let Some(d) = var("HF_HUB_CACHE") {
            (PathBuf::from(d), "HF_HUB_CACHE".to_string())
        } else if let Some(d) = var("HF_HOME") {
            (Path::new(&d).join("hub"), "HF_HOME".into())
        } else if let Some(d) = var("XDG_CACHE_HOME") {
            (
                Path::new(&d).join("huggingface/hub"),
                "XDG_CACHE_HOME".into(),
            )
        } else {
            let home = var("HOME").unwrap_or_else(|| ".".into());
            (
                Path::new(&home).join(".cache/huggingface/hub"),
                "the default".into(),
            )
        };
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        HubOptions {
            cache_dir,
            cache_origin,
            offline,
            endpoint: var("HF_ENDPOINT"),
            token: var("HF_TOKEN"),
        }
    }

    /// A given cache directory, online, nothing read from the environment.
    pub fn with_cache_dir(cache_dir: impl Into<PathBuf>) -> Self {
        HubOptions {
            cache_dir: cache_dir.into(),
            cache_origin: "given".into(),
            offline: false,
            endpoint: None,
            token: None,
        }
    }
}

/// A hub model id: `name` or `org/name`, and a revision (branch, tag or commit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelId {
    pub repo: String,
    pub revision: String,
}

impl ModelId {
    /// Parses `org/name[@revision]`; None for anything that is not an id (a path).
    pub fn parse(spec: &str) -> Option<Self> {
        let (repo, revision) = match spec.split_once('@') {
            Some((r, rev)) if !rev.is_empty() && !rev.contains("..") => (r, rev),
            Some(_) => return None,
            None => (spec, "main"),
        };
        let part_ok = |p: &str| {
            p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && !p.contains("--")
                && !p.contains("..")
                && p.len() <= 96
        };
        let parts: Vec<&str> = repo.split('/').collect();
        (parts.len() <= 2 && parts.iter().all(|p| part_ok(p))).then(|| ModelId {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }

    /// `models--org--name`, the repo's folder in the cache.
    pub fn folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

/// `spec` as a model directory: `spec` itself if it is a directory or does not look like a model
/// id (loading then names what is missing), else the id's snapshot in the cache the environment
/// names, downloaded first unless offline.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    resolve_model_with(spec, &HubOptions::from_env())
}

/// `resolve_model` with the cache and mode given.
pub fn resolve_model_with(spec: &str, opts: &HubOptions) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let Some(id) = ModelId::parse(spec) else {
        return Ok(path.to_path_buf());
    };
    let hub_err = |msg: String| Error::Hub {
        model: spec.to_string(),
        msg,
    };
    let missing = match cached(&id, &opts.cache_dir) {
        Ok(dir) => {
            if !opts.offline {
                // Nice to have, not needed by every command: fetch quietly if absent.
                for f in ["tokenizer.json", "tokenizer_config.json"] {
                    if !dir.join(f).exists() {
                        let _ = download(&id, opts, f);
                    }
                }
            }
            return Ok(dir);
        }
        Err(missing) => missing,
    };
    let looked = format!(
        "not a local directory, and not in the Hugging Face cache {} ({}): {missing}",
        opts.cache_dir.display(),
        opts.cache_origin
    );
    if opts.offline {
        return Err(hub_err(format!(
            "{looked}; HF_HUB_OFFLINE is set, so nothing is downloaded"
        )));
    }
    let fetched = download(&id, opts, "config.json").and_then(|config| {
        let weights = download(&id, opts, "model.safetensors").or_else(
            |first| -> std::result::Result<PathBuf, String> {
                let index =
                    download(&id, opts, "model.safetensors.index.json").map_err(|_| first)?;
                for shard in shards(&index)? {
                    download(&id, opts, &shard)?;
                }
                Ok(index)
            },
        );
        weights?;
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            let _ = download(&id, opts, f); // optional files
        }
        config
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| "the downloaded config.json has no directory".to_string())
    });
    fetched.map_err(|e| hub_err(format!("{looked}; downloading it failed: {e}")))
}

/// The snapshot directory of `id` if the cache holds its config.json and safetensors weights,
/// else a sentence saying which path is missing.
pub fn cached(id: &ModelId, cache_dir: &Path) -> std::result::Result<PathBuf, String> {
    let repo = cache_dir.join(id.folder());
    let is_commit = id.revision.len() == 40 && id.revision.chars().all(|c| c.is_ascii_hexdigit());
    let commit = if is_commit {
        id.revision.clone()
    } else {
        let r = repo.join("refs").join(&id.revision);
        match std::fs::read_to_string(&r) {
            Ok(hash) => hash.trim().to_string(),
            Err(e) => return Err(format!("looked for {}: {e}", r.display())),
        }
    };
    let dir = repo.join("snapshots").join(&commit);
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(format!("looked for {}: no such file", config.display()));
    }
    if dir.join("model.safetensors").is_file() {
        return Ok(dir);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(format!(
            "{} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        ));
    }
    for shard in shards(&index)? {
        if !dir.join(&shard).is_file() {
            return Err(format!(
                "looked for {}, listed in {}: no such file",
                dir.join(&shard).display(),
                index.display()
            ));
        }
    }
    Ok(dir)
}

/// The shard files a model.safetensors.index.json lists, each once, in order.
fn shards(index: &Path) -> std::result::Result<Vec<String>, String> {
    let text = crate::limits::read_text(index, crate::limits::MAX_CONFIG_BYTES)
        .map_err(|e| e.to_string())?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
    let map = json["weight_map"]
        .as_object()
        .ok_or_else(|| format!("{}: no `weight_map` object", index.display()))?;
    let mut files: Vec<String> = Vec::new();
    for f in map.values().filter_map(|v| v.as_str()) {
        // A shard name is a file of the snapshot, never a path out of it.
        if f.contains('/') || f.contains('\\') || f.starts_with('.') {
            return Err(format!("{}: bad shard name {f:?}", index.display()));
        }
        if !files.iter().any(|g| g == f) {
            files.push(f.to_string());
        }
    }
    Ok(files)
}

/// Downloads `file` of `id` into the cache (hf-hub), returning its snapshot path.
fn download(id: &ModelId, opts: &HubOptions, file: &str) -> std::result::Result<PathBuf, String> {
    use hf_hub::api::sync::ApiBuilder;
    let mut builder =
        ApiBuilder::from_cache(hf_hub::Cache::new(opts.cache_dir.clone())).with_progress(true);
    if let Some(e) = &opts.endpoint {
        builder = builder.with_endpoint(e.clone());
    }
    if opts.token.is_some() {
        builder = builder.with_token(opts.token.clone());
    }
    let api = builder.build().map_err(|e| e.to_string())?;
    let repo = hf_hub::Repo::with_revision(
        id.repo.clone(),
        hf_hub::RepoType::Model,
        id.revision.clone(),
    );
    api.repo(repo).get(file).map_err(|e| format!("{file}: {e}"))
}
