//! The model's weights on the device: uploaded once at load. Every layer application of a
//! group launches its kernels with the same device buffers (the shared layer stays resident,
//! 14 MB for albert-base in bf16, small enough to live in an H100's L2).
//! Matrices and embedding tables are stored as the engine's dtype; biases and LayerNorm
//! parameters stay f32 (a few KB, and they are added in f32 anyway).

use std::ops::RangeBounds;

use cudarc::driver::{CudaSlice, CudaStream, CudaView, DevicePtr};
use half::{bf16, f16};

use super::device::CudaDevice;
use crate::dtype::DType;
use crate::error::Result;
use crate::model::weights::{LayerNorm, Linear, Weights};

/// The fused QKV projection: the three [H, H] weights stacked along the output dimension
/// ([3H, H], rows query, key, value) and their biases concatenated ([3H]). Each output element
/// is the same dot product as in its own [H, H] product.
fn stack_qkv(query: &Linear, key: &Linear, value: &Linear) -> Linear {
    let parts = [query, key, value];
    Linear {
        weight: parts
            .iter()
            .flat_map(|l| l.weight.iter().copied())
            .collect(),
        bias: parts.iter().flat_map(|l| l.bias.iter().copied()).collect(),
        out_features: parts.iter().map(|l| l.out_features).sum(),
        in_features: query.in_features,
    }
}

/// A weight matrix or table in the engine's storage type.
pub enum DeviceMatrix {
    F32(CudaSlice<f32>),
    BF16(CudaSlice<bf16>),
    F16(CudaSlice<f16>),
}

impl DeviceMatrix {
    pub fn upload(dev: &CudaDevice, host: &[f32], dtype: DType) -> Result<Self> {
        let s = &dev.stream;
        let up = |e| dev.err("uploading weights", e);
        Ok(match dtype {
            DType::F32 => DeviceMatrix::F32(s.clone_htod(host).map_err(up)?),
            DType::BF16 => {
                let v: Vec<bf16> = host.iter().map(|&x| bf16::from_f32(x)).collect();
                DeviceMatrix::BF16(s.clone_htod(&v).map_err(up)?)
            }
            DType::F16 => {
                let v: Vec<f16> = host.iter().map(|&x| f16::from_f32(x)).collect();
                DeviceMatrix::F16(s.clone_htod(&v).map_err(up)?)
            }
        })
    }

    /// `n` zeros in `dtype`: an activation buffer (the fused QKV output is stored as T when
    /// the tensor-core attention reads it).
    pub fn zeros(dev: &CudaDevice, n: usize, dtype: DType) -> Result<Self> {
        let s = &dev.stream;
        let up = |e| dev.err("allocating activations", e);
        Ok(match dtype {
            DType::F32 => DeviceMatrix::F32(s.alloc_zeros(n).map_err(up)?),
            DType::BF16 => DeviceMatrix::BF16(s.alloc_zeros(n).map_err(up)?),
            DType::F16 => DeviceMatrix::F16(s.alloc_zeros(n).map_err(up)?),
        })
    }

    /// A range of the elements, as a view of the same type.
    pub fn view(&self, range: impl RangeBounds<usize>) -> DeviceView<'_> {
        match self {
            DeviceMatrix::F32(s) => DeviceView::F32(s.slice(range)),
            DeviceMatrix::BF16(s) => DeviceView::BF16(s.slice(range)),
            DeviceMatrix::F16(s) => DeviceView::F16(s.slice(range)),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            DeviceMatrix::F32(_) => DType::F32,
            DeviceMatrix::BF16(_) => DType::BF16,
            DeviceMatrix::F16(_) => DType::F16,
        }
    }

    /// The device address of the first element (tensor maps, alignment checks).
    pub fn device_addr(&self, stream: &CudaStream) -> u64 {
        match self {
            DeviceMatrix::F32(s) => s.device_ptr(stream).0,
            DeviceMatrix::BF16(s) => s.device_ptr(stream).0,
            DeviceMatrix::F16(s) => s.device_ptr(stream).0,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            DeviceMatrix::F32(s) => s.len(),
            DeviceMatrix::BF16(s) => s.len(),
            DeviceMatrix::F16(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kernel-name suffix of this storage type.
    pub fn suffix(&self) -> &'static str {
        match self {
            DeviceMatrix::F32(_) => "f32",
            DeviceMatrix::BF16(_) => "bf16",
            DeviceMatrix::F16(_) => "f16",
        }
    }
}

/// A view of device elements in one of the storage types: q, k, v for attention_forward (f32,
/// or T as the fused QKV product stores them for the tensor-core attention).
pub enum DeviceView<'a> {
    F32(CudaView<'a, f32>),
    BF16(CudaView<'a, bf16>),
    F16(CudaView<'a, f16>),
}

impl DeviceView<'_> {
    /// The device address of the first element (tensor maps, alignment checks).
    pub fn device_addr(&self, stream: &CudaStream) -> u64 {
        match self {
            DeviceView::F32(s) => s.device_ptr(stream).0,
            DeviceView::BF16(s) => s.device_ptr(stream).0,
            DeviceView::F16(s) => s.device_ptr(stream).0,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            DeviceView::F32(s) => s.len(),
            DeviceView::BF16(s) => s.len(),
            DeviceView::F16(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            DeviceView::F32(_) => DType::F32,
            DeviceView::BF16(_) => DType::BF16,
            DeviceView::F16(_) => DType::F16,
        }
    }
}

/// A kernel's output buffer in one of the storage types: f32, or T for the activations the
/// tensor-core kernels store as T (they would round them to T as they stage them anyway).
pub enum DeviceOut<'a> {
    F32(&'a mut CudaSlice<f32>),
    BF16(&'a mut CudaSlice<bf16>),
    F16(&'a mut CudaSlice<f16>),
}

impl DeviceOut<'_> {
    pub fn len(&self) -> usize {
        match self {
            DeviceOut::F32(s) => s.len(),
            DeviceOut::BF16(s) => s.len(),
            DeviceOut::F16(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            DeviceOut::F32(_) => DType::F32,
            DeviceOut::BF16(_) => DType::BF16,
            DeviceOut::F16(_) => DType::F16,
        }
    }
}

impl<'a> From<&'a mut CudaSlice<f32>> for DeviceOut<'a> {
    fn from(s: &'a mut CudaSlice<f32>) -> Self {
        DeviceOut::F32(s)
    }
}

impl<'a> From<&'a mut DeviceMatrix> for DeviceOut<'a> {
    fn from(m: &'a mut DeviceMatrix) -> Self {
        match m {
            DeviceMatrix::F32(s) => DeviceOut::F32(s),
            DeviceMatrix::BF16(s) => DeviceOut::BF16(s),
            DeviceMatrix::F16(s) => DeviceOut::F16(s),
        }
    }
}

pub struct DeviceLinear {
    pub weight: DeviceMatrix, // [out, in]
    pub bias: CudaSlice<f32>, // [out]
    pub out_features: usize,
    pub in_features: usize,
}

pub struct DeviceNorm {
    pub weight: CudaSlice<f32>, // [n]
    pub bias: CudaSlice<f32>,   // [n]
}

pub struct DeviceLayer {
    /// [3H, H]: query, key and value stacked (rows 0..H, H..2H, 2H..3H), bias [3H]: one
    /// product writes q, k, v side by side in [M, 3H], where attention reads them (ld = 3H).
    pub qkv: DeviceLinear,
    pub attn_output: DeviceLinear, // [H, H]
    pub attn_norm: DeviceNorm,     // [H]
    pub ffn: DeviceLinear,         // [I, H]
    pub ffn_output: DeviceLinear,  // [H, I]
    pub output_norm: DeviceNorm,   // [H]
}

pub struct DeviceMlm {
    pub dense: DeviceLinear, // [E, H]
    pub norm: DeviceNorm,    // [E]
    /// [V, E]: the untied decoder; `None` when tied (the word table is the decoder).
    pub decoder: Option<DeviceMatrix>,
    pub bias: CudaSlice<f32>, // [V]
}

pub struct DeviceWeights {
    pub word: DeviceMatrix,            // [V, E]
    pub position: DeviceMatrix,        // [P, E]
    pub token_type: DeviceMatrix,      // [T, E]
    pub emb_norm: DeviceNorm,          // [E]
    pub projection: DeviceLinear,      // [H, E]
    pub groups: Vec<Vec<DeviceLayer>>, // [G][inner_group_num]
    pub pooler: Option<DeviceLinear>,
    pub mlm: Option<DeviceMlm>,
    pub sop: Option<DeviceLinear>,
    pub classifier: Option<DeviceLinear>,
    /// Bytes held on the device.
    pub bytes: usize,
}

impl DeviceWeights {
    pub fn upload(dev: &CudaDevice, w: &Weights, dtype: DType) -> Result<Self> {
        let mut bytes = 0usize;
        let mut matrix = |host: &[f32]| -> Result<DeviceMatrix> {
            bytes += host.len() * dtype.size_of();
            DeviceMatrix::upload(dev, host, dtype)
        };
        let vector = |host: &[f32]| {
            dev.stream
                .clone_htod(host)
                .map_err(|e| dev.err("uploading weights", e))
        };
        let mut linear = |l: &Linear| -> Result<DeviceLinear> {
            Ok(DeviceLinear {
                weight: matrix(&l.weight)?,
                bias: vector(&l.bias)?,
                out_features: l.out_features,
                in_features: l.in_features,
            })
        };
        let norm = |n: &LayerNorm| -> Result<DeviceNorm> {
            Ok(DeviceNorm {
                weight: vector(&n.weight)?,
                bias: vector(&n.bias)?,
            })
        };
        let e = &w.embeddings;
        let projection = linear(&e.projection)?;
        let mut groups = Vec::with_capacity(w.groups.len());
        for group in &w.groups {
            let mut layers = Vec::with_capacity(group.len());
            for l in group {
                layers.push(DeviceLayer {
                    qkv: linear(&stack_qkv(&l.query, &l.key, &l.value))?,
                    attn_output: linear(&l.attn_output)?,
                    attn_norm: norm(&l.attn_norm)?,
                    ffn: linear(&l.ffn)?,
                    ffn_output: linear(&l.ffn_output)?,
                    output_norm: norm(&l.output_norm)?,
                });
            }
            groups.push(layers);
        }
        let pooler = w.pooler.as_ref().map(&mut linear).transpose()?;
        let sop = w.sop.as_ref().map(&mut linear).transpose()?;
        let classifier = w.classifier.as_ref().map(&mut linear).transpose()?;
        let mlm = match &w.mlm {
            Some(m) => Some(DeviceMlm {
                dense: linear(&m.dense)?,
                norm: norm(&m.norm)?,
                decoder: None,
                bias: vector(&m.bias)?,
            }),
            None => None,
        };
        let mut mlm = mlm;
        if let (Some(dm), Some(m)) = (&mut mlm, &w.mlm) {
            dm.decoder = m.decoder.as_deref().map(&mut matrix).transpose()?;
        }
        Ok(DeviceWeights {
            word: matrix(&e.word)?,
            position: matrix(&e.position)?,
            token_type: matrix(&e.token_type)?,
            emb_norm: norm(&e.norm)?,
            projection,
            groups,
            pooler,
            mlm,
            sop,
            classifier,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::reference::linear_forward;

    /// The fused product's output row is [q | k | v]: the three separate products side by side.
    #[test]
    fn stacked_qkv_computes_the_three_products() {
        let (m, h) = (3, 5);
        let lin = |seed: usize| Linear {
            weight: (0..h * h)
                .map(|i| ((i * 7 + seed) % 11) as f32 - 5.0)
                .collect(),
            bias: (0..h).map(|i| (i + seed) as f32 * 0.5).collect(),
            out_features: h,
            in_features: h,
        };
        let (q, k, v) = (lin(1), lin(2), lin(3));
        let x: Vec<f32> = (0..m * h).map(|i| (i % 4) as f32 - 1.5).collect();
        let qkv = stack_qkv(&q, &k, &v);
        assert_eq!((qkv.out_features, qkv.in_features), (3 * h, h));
        let mut fused = vec![0f32; m * 3 * h];
        linear_forward(
            &mut fused,
            &x,
            &qkv.weight,
            Some(&qkv.bias),
            m,
            h,
            3 * h,
            DType::F32,
        );
        for (part, l) in [&q, &k, &v].into_iter().enumerate() {
            let mut want = vec![0f32; m * h];
            linear_forward(&mut want, &x, &l.weight, Some(&l.bias), m, h, h, DType::F32);
            for r in 0..m {
                let got = &fused[r * 3 * h + part * h..r * 3 * h + (part + 1) * h];
                assert_eq!(got, &want[r * h..(r + 1) * h], "row {r}, part {part}");
            }
        }
    }
}
