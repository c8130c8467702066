//! Reading tensors out of a Hugging Face checkpoint: `model.safetensors`, or the shards listed by
//! `model.safetensors.index.json`. Files are memory-mapped; each tensor the model asks for is
//! converted to f32 once (F32, F16 and BF16 are read) and the maps are dropped after loading.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The memory maps of every file of a checkpoint.
pub struct Checkpoint {
    /// What errors call the checkpoint: its directory or file.
    origin: String,
    files: Vec<(PathBuf, Bytes)>,
}

/// A checkpoint file's bytes: memory-mapped, or in memory (`Checkpoint::from_bytes`).
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

impl Checkpoint {
    /// Opens `dir/model.safetensors`, or every shard named by `dir/model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join(SINGLE_FILE);
        let index = dir.join(INDEX_FILE);
        let paths = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            shard_paths(dir, &index)?
        } else {
            return Err(Error::safetensors(
                dir.display().to_string(),
                format!("no {SINGLE_FILE} or {INDEX_FILE} in this directory"),
            ));
        };
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: the map is read-only and private to this process; a file truncated by
            // another process while mapped would fault, which is the standard caveat of
            // memory-mapped loading (safetensors, candle and transformers accept it too).
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            // Parse once now so that a corrupt file is reported before anything is converted.
            SafeTensors::deserialize(&map)
                .map_err(|e| Error::safetensors(path.display().to_string(), e.to_string()))?;
            files.push((path, Bytes::Mapped(map)));
        }
        Ok(Checkpoint {
            origin: dir.display().to_string(),
            files,
        })
    }

    /// A checkpoint of one safetensors file held in memory; `origin` names it in errors.
    pub fn from_bytes(origin: &str, bytes: Vec<u8>) -> Result<Self> {
        SafeTensors::deserialize(&bytes).map_err(|e| Error::safetensors(origin, e.to_string()))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            files: vec![(PathBuf::from(origin), Bytes::Owned(bytes))],
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The names of every tensor in every file.
    pub fn names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (_, map) in &self.files {
            if let Ok(st) = SafeTensors::deserialize(map) {
                out.extend(st.names().into_iter().map(|n| n.to_string()));
            }
        }
        out
    }

    pub fn contains(&self, name: &str) -> bool {
        self.files.iter().any(|(_, map)| {
            SafeTensors::deserialize(map)
                .map(|st| st.tensor(name).is_ok())
                .unwrap_or(false)
        })
    }

    /// Reads tensor `name` as f32, checking that its shape is `expected`.
    pub fn tensor_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        for (path, map) in &self.files {
            let st = SafeTensors::deserialize(map)
                .map_err(|e| Error::safetensors(path.display().to_string(), e.to_string()))?;
            let Ok(view) = st.tensor(name) else { continue };
            let origin = path.display().to_string();
            if view.shape() != expected {
                return Err(Error::ShapeMismatch {
                    name: name.into(),
                    expected: expected.to_vec(),
                    found: view.shape().to_vec(),
                    path: origin,
                });
            }
            return to_f32(view.dtype(), view.data()).ok_or_else(|| Error::Dtype {
                name: name.into(),
                dtype: format!("{:?}", view.dtype()),
                expected: "F32, F16 or BF16".into(),
                path: origin,
            });
        }
        Err(Error::MissingTensor {
            name: name.into(),
            expected: expected.to_vec(),
            path: self.origin.clone(),
        })
    }
}

/// Converts little-endian F32/F16/BF16 bytes to f32; `None` for any other dtype.
pub fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// The shard files named in an index's `weight_map`, each once, in a stable order. A shard name
/// must be a plain file name inside `dir`: an index cannot point the loader elsewhere.
fn shard_paths(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    let text = crate::limits::read_text(index, crate::limits::MAX_CONFIG_BYTES)?;
    shard_paths_from_str(dir, &text, &index.display().to_string())
}

/// `shard_paths` of an index's text; `origin` names the index in errors.
pub fn shard_paths_from_str(dir: &Path, text: &str, origin: &str) -> Result<Vec<PathBuf>> {
    let origin = origin.to_string();
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::safetensors(&origin, format!("not valid JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::safetensors(&origin, "no `weight_map` object"))?;
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            Error::safetensors(
                &origin,
                format!("weight_map entry `{tensor}` is not a file name"),
            )
        })?;
        let plain = Path::new(file)
            .file_name()
            .map(|f| f == file)
            .unwrap_or(false);
        if !plain || file.contains(['/', '\\']) {
            return Err(Error::safetensors(
                &origin,
                format!(
                    "weight_map entry `{tensor}` names `{file}`, which is not a file in {}",
                    dir.display()
                ),
            ));
        }
        if seen.insert(file.to_string(), ()).is_none() {
            out.push(dir.join(file));
        }
    }
    if out.is_empty() {
        return Err(Error::safetensors(&origin, "`weight_map` is empty"));
    }
    out.sort();
    Ok(out)
}
