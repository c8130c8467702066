//! Helpers shared by the integration tests: where ../shared is, and how far two outputs are.
#![allow(dead_code)]

use std::path::PathBuf;

use albert::Tensor;

/// ../shared beside the project root; the tests cannot run without it, so say where it should be.
/// $ALBERT_SHARED overrides it (scripts/gpu-check carries a copy to the GPU machine).
pub fn shared() -> PathBuf {
    let p = match std::env::var_os("ALBERT_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    };
    assert!(
        p.join("models").is_dir(),
        "reference data not found at {}",
        p.display()
    );
    p
}

pub fn model_dir(name: &str) -> PathBuf {
    shared().join("models").join(name)
}

pub fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(shared().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Relative Frobenius error ||got - want|| / ||want|| over the rows whose mask is 1. `mask` has
/// one value per leading position (per token for [R, S, ...] tensors); `None` compares all.
pub fn rel_error(got: &Tensor, want: &Tensor, mask: Option<&[i64]>) -> f64 {
    assert_eq!(got.shape, want.shape, "shapes differ");
    let n = got.data.len();
    let inner = match mask {
        Some(m) => n / m.len(),
        None => n,
    };
    let (mut num, mut den) = (0f64, 0f64);
    for (i, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
        if mask.is_some_and(|m| m[i / inner] == 0) {
            continue;
        }
        assert!(g.is_finite(), "non-finite output at {i}");
        num += (*g as f64 - *w as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    assert!(
        den > 0.0,
        "reference is all zeros over the compared positions"
    );
    (num / den).sqrt()
}

// ---------------------------------------------------------------------------------------------
// Checkpoint surgery for the error, loading and CLI tests: copy a fixture to a temp dir, read its
// tensors as raw bytes, change them, write them back. ../shared itself is never written.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

/// One tensor of a safetensors file, owned: little-endian bytes as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    pub fn f32(name: &str, shape: Vec<usize>, values: &[f32]) -> Self {
        RawTensor {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn i64(name: &str, shape: Vec<usize>, values: &[i64]) -> Self {
        RawTensor {
            name: name.into(),
            dtype: Dtype::I64,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn i32(name: &str, shape: Vec<usize>, values: &[i32]) -> Self {
        RawTensor {
            name: name.into(),
            dtype: Dtype::I32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// The values of an F32 tensor.
    pub fn to_f32(&self) -> Vec<f32> {
        assert_eq!(self.dtype, Dtype::F32, "{} is {:?}", self.name, self.dtype);
        self.data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

/// Every tensor of a safetensors file, sorted by name.
pub fn read_raw(path: &Path) -> Vec<RawTensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<RawTensor> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| RawTensor {
            name,
            dtype: v.dtype(),
            shape: v.shape().to_vec(),
            data: v.data().to_vec(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Writes `tensors` as one safetensors file.
pub fn write_raw(path: &Path, tensors: &[RawTensor]) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|t| {
            let view = safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .unwrap_or_else(|e| panic!("{}: {e}", t.name));
            (t.name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// A temp dir holding a copy of every file of fixture `name` (a few MB for the tiny ones).
pub fn copy_model(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model_dir(name)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    tmp
}

/// Rewrites `dir/config.json` after `edit` has changed it.
pub fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(value.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

/// Replaces `dir/model.safetensors` with `edit` applied to its tensors.
pub fn edit_checkpoint(dir: &Path, edit: impl FnOnce(&mut Vec<RawTensor>)) {
    let path = dir.join("model.safetensors");
    let mut tensors = read_raw(&path);
    edit(&mut tensors);
    write_raw(&path, &tensors);
}

/// The attention mask to compare an output of `shape` with: per-token outputs ([R, S, ...] or
/// [B, S]) only where attention_mask is 1, pooled outputs ([B, N]) everywhere. As golden.rs.
pub fn output_mask(inputs: &albert::Inputs, shape: &[usize]) -> Option<Vec<i64>> {
    let per_token = shape.len() >= 2
        && shape[0] * shape[1] == inputs.rows() * inputs.seq
        && shape[1] == inputs.seq;
    per_token.then(|| inputs.attention_mask.clone())
}

/// The output names reference.json lists for fixture `name`, and its head class.
pub fn reference_outputs(name: &str) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(model_dir(name).join("reference.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let outputs = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    (v["head"].as_str().unwrap().to_string(), outputs)
}
