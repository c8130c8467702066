//! safetensors files in and out of `albert forward`: inputs (input_ids, attention_mask,
//! token_type_ids as int64 or int32) and float32 outputs under transformers' names.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::model::checkpoint::to_f32;
use crate::tensor::{Outputs, Tensor};

/// Reads the inputs of a forward pass. Only `input_ids` is required.
pub fn read_inputs(path: &Path) -> Result<Inputs> {
    let origin = path.display().to_string();
    let bytes = crate::limits::read_bytes(path, crate::limits::MAX_INPUT_BYTES)?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| Error::safetensors(&origin, e.to_string()))?;
    let (ids, shape) =
        read_int(&st, "input_ids", &origin)?.ok_or_else(|| Error::MissingTensor {
            name: "input_ids".into(),
            expected: vec![],
            path: origin.clone(),
        })?;
    let optional = |name: &str| -> Result<Option<Vec<i64>>> {
        match read_int(&st, name, &origin)? {
            None => Ok(None),
            Some((v, s)) if s == shape => Ok(Some(v)),
            Some((_, s)) => Err(Error::ShapeMismatch {
                name: name.into(),
                expected: shape.clone(),
                found: s,
                path: origin.clone(),
            }),
        }
    };
    let mask = optional("attention_mask")?;
    let types = optional("token_type_ids")?;
    Inputs::new(ids, mask, types, &shape)
}

/// An integer tensor as i64 with its shape; `None` when absent.
fn read_int(st: &SafeTensors, name: &str, origin: &str) -> Result<Option<(Vec<i64>, Vec<usize>)>> {
    let Ok(view) = st.tensor(name) else {
        return Ok(None);
    };
    let data = view.data();
    let values = match view.dtype() {
        Dtype::I64 => data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        Dtype::I32 => data
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
            .collect(),
        other => {
            return Err(Error::Dtype {
                name: name.into(),
                dtype: format!("{other:?}"),
                expected: "I64 or I32".into(),
                path: origin.into(),
            })
        }
    };
    Ok(Some((values, view.shape().to_vec())))
}

/// Every float tensor of a file, as f32 (F32, F16, BF16); other dtypes are skipped.
pub fn read_f32_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| Error::safetensors(&origin, e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if let Some(data) = to_f32(view.dtype(), view.data()) {
            out.insert(name, Tensor::new(view.shape().to_vec(), data));
        }
    }
    Ok(out)
}

/// Writes `outputs` as float32 tensors.
pub fn write_outputs(path: &Path, outputs: &Outputs) -> Result<()> {
    let origin = path.display().to_string();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = outputs
        .tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.shape.clone(),
                bytemuck::cast_slice(&t.data).to_vec(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, shape, b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::safetensors(&origin, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path)
        .map_err(|e| Error::safetensors(&origin, e.to_string()))
}

/// Writes int64 model inputs (for tests and for users preparing `albert forward` inputs).
pub fn write_inputs(path: &Path, inputs: &Inputs) -> Result<()> {
    let origin = path.display().to_string();
    let shape = match inputs.choices {
        Some(c) => vec![inputs.batch, c, inputs.seq],
        None => vec![inputs.batch, inputs.seq],
    };
    let enc = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let tensors = [
        ("input_ids", enc(&inputs.input_ids)),
        ("attention_mask", enc(&inputs.attention_mask)),
        ("token_type_ids", enc(&inputs.token_type_ids)),
    ];
    let views = tensors
        .iter()
        .map(|(n, b)| {
            TensorView::new(Dtype::I64, shape.clone(), b)
                .map(|v| (n.to_string(), v))
                .map_err(|e| Error::safetensors(&origin, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path)
        .map_err(|e| Error::safetensors(&origin, e.to_string()))
}
