//! One API over every device: a loaded model placed on the CPU or on a CUDA GPU, with the
//! device and dtype the user asked for. `--device auto` takes the GPU when CUDA works and
//! otherwise the CPU, with a one-line notice saying why. On the CPU, `cpu` is the fast path
//! (rayon + SIMD, f32 or bf16 weights) and `cpu-reference` the readable reference (f64 inside
//! each op; bf16/f16 emulated); f16 on `cpu` runs the reference's emulation too (no f16
//! dot-product instructions to run it faster).

use crate::backend::cpu::fast::FastAlbert;
use crate::backend::DeviceRequest;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::model::config::AlbertConfig;
use crate::model::head::Head;
use crate::model::heads::ForwardOptions;
use crate::model::Albert;
use crate::tensor::Outputs;

// `Cpu(Albert)` is built directly by tests and pipelines; boxing it would change their code.
#[allow(clippy::large_enum_variant)]
pub enum Engine {
    /// The reference path (f32, or bf16/f16 numerics emulated with f32 storage).
    Cpu(Albert),
    /// The fast CPU path: packed f32 or bf16 weights, SIMD kernels, rayon.
    CpuFast(Box<FastAlbert>),
    #[cfg(feature = "cuda")]
    Cuda(Box<crate::backend::cuda::CudaAlbert>),
}

impl Engine {
    /// Places `model` on `device` in `dtype` (default: bf16 on the GPU, f32 on the CPU). Returns
    /// the engine and, when `auto` could not use the GPU, a notice saying why.
    pub fn new(
        model: Albert,
        device: DeviceRequest,
        dtype: Option<DType>,
    ) -> Result<(Self, Option<String>)> {
        match device {
            DeviceRequest::Cpu => Ok((Self::cpu_fast(model, dtype)?, None)),
            DeviceRequest::CpuReference => Ok((Self::cpu(model, dtype), None)),
            DeviceRequest::Cuda(n) => Ok((Self::cuda(&model, n, dtype)?, None)),
            DeviceRequest::Auto => match Self::cuda(&model, 0, dtype) {
                Ok(engine) => Ok((engine, None)),
                Err(e) => {
                    let why = match e {
                        Error::Device { msg, .. } => msg,
                        other => other.to_string(),
                    };
                    Ok((
                        Self::cpu_fast(model, dtype)?,
                        Some(format!("running on the CPU: {why}")),
                    ))
                }
            },
        }
    }

    /// The fast CPU path in f32 or bf16; f16 runs the reference's emulation.
    fn cpu_fast(model: Albert, dtype: Option<DType>) -> Result<Self> {
        match dtype.unwrap_or(DType::F32) {
            DType::F16 => Ok(Self::cpu(model, Some(DType::F16))),
            d => Ok(Engine::CpuFast(Box::new(FastAlbert::new(model, d)?))),
        }
    }

    fn cpu(model: Albert, dtype: Option<DType>) -> Self {
        match dtype.unwrap_or(DType::F32) {
            DType::F32 => Engine::Cpu(model),
            other => Engine::Cpu(model.with_dtype(other)),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda(model: &Albert, ordinal: usize, dtype: Option<DType>) -> Result<Self> {
        let dtype = dtype.unwrap_or(DType::BF16);
        Ok(Engine::Cuda(Box::new(
            crate::backend::cuda::CudaAlbert::new(model, ordinal, dtype)?,
        )))
    }

    #[cfg(not(feature = "cuda"))]
    fn cuda(_model: &Albert, ordinal: usize, _dtype: Option<DType>) -> Result<Self> {
        Err(Error::Device {
            device: format!("cuda:{ordinal}"),
            msg: "this build has no CUDA backend (built without the `cuda` feature)".into(),
        })
    }

    pub fn config(&self) -> &AlbertConfig {
        match self {
            Engine::Cpu(m) => &m.config,
            Engine::CpuFast(m) => &m.config,
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => &m.config,
        }
    }

    pub fn head(&self) -> Head {
        match self {
            Engine::Cpu(m) => m.head,
            Engine::CpuFast(m) => m.head,
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => m.head,
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Engine::Cpu(m) => m.dtype,
            Engine::CpuFast(m) => m.dtype,
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => m.dtype,
        }
    }

    /// `cpu` (the fast path), `cpu-ref` (the reference), or `cuda:N` for a GPU.
    pub fn device(&self) -> String {
        match self {
            Engine::Cpu(_) => "cpu-ref".into(),
            Engine::CpuFast(_) => "cpu".into(),
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => m.dev.label.clone(),
        }
    }

    /// A line describing the device: the GPU's name and compute capability.
    pub fn describe(&self) -> String {
        match self {
            Engine::Cpu(_) => format!("cpu reference ({} threads)", rayon::current_num_threads()),
            Engine::CpuFast(m) => format!(
                "cpu ({} threads; {} kernels)",
                rayon::current_num_threads(),
                m.kernel_name()
            ),
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => {
                let (major, minor) = m.dev.compute_capability;
                let how: Vec<String> = m
                    .dev
                    .kernels
                    .origin
                    .iter()
                    .map(|(n, h)| format!("{n}: {h}"))
                    .collect();
                format!(
                    "{} {} (sm_{major}{minor}; kernels {}; CUDA graphs {})",
                    m.dev.label,
                    m.dev.name,
                    how.join(", "),
                    m.graph_status()
                )
            }
        }
    }

    /// Whether the encoder ran as CUDA graphs so far ("on (N captured, M replays)" or
    /// "off (why)"); None off the GPU.
    pub fn graph_status(&self) -> Option<String> {
        match self {
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => Some(m.graph_status()),
            _ => None,
        }
    }

    /// Whether CUDA kernels launch with programmatic dependent launch; None off the GPU.
    pub fn pdl(&self) -> Option<bool> {
        match self {
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => Some(m.pdl()),
            _ => None,
        }
    }

    /// Whether the GPU encoder may fuse the attention output with its LayerNorm
    /// (`CudaAlbert::fused_ln`); None off the GPU.
    pub fn fused_ln(&self) -> Option<bool> {
        match self {
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => Some(m.fused_ln()),
            _ => None,
        }
    }

    /// Whether the GPU encoder may run its output products' LayerNorms in a cooperative
    /// kernel at small batches (`CudaAlbert::grid_ln`); None off the GPU.
    pub fn grid_ln(&self) -> Option<bool> {
        match self {
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => Some(m.grid_ln()),
            _ => None,
        }
    }

    /// Whether the GPU encoder runs the layer applications of `m` tokens as one resident
    /// launch (`CudaAlbert::resident_taken`: ALBERT_CUDA_RESIDENT=1 and a small batch); None
    /// off the GPU.
    pub fn resident_taken(&self, m: usize) -> Option<bool> {
        match self {
            #[cfg(feature = "cuda")]
            Engine::Cuda(e) => Some(e.resident_taken(m)),
            _ => {
                let _ = m;
                None
            }
        }
    }

    /// Which kernels the GPU encoder's products run on (`CudaAlbert::products`); None off
    /// the GPU.
    pub fn products(&self) -> Option<&'static str> {
        match self {
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => Some(m.products()),
            _ => None,
        }
    }

    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> Result<Outputs> {
        match self {
            Engine::Cpu(m) => m.forward(inputs, opts),
            Engine::CpuFast(m) => m.forward(inputs, opts),
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => m.forward(inputs, opts),
        }
    }

    /// Bytes held for weights (0 where the engine does not count them).
    pub fn weight_bytes(&self) -> usize {
        match self {
            Engine::Cpu(m) => m.weights.num_params() * 4,
            Engine::CpuFast(m) => m.weight_bytes(),
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => m.weight_bytes(),
        }
    }

    /// Bytes of the activation arena after the passes run so far (0 where not counted: the
    /// reference allocates per pass).
    pub fn activation_bytes(&self) -> usize {
        match self {
            Engine::CpuFast(m) => m.arena_bytes(),
            _ => 0,
        }
    }

    /// MLM logits [n, V] at token rows `positions` (row * S + position).
    pub fn masked_lm_logits(&self, inputs: &Inputs, positions: &[usize]) -> Result<Vec<f32>> {
        match self {
            Engine::Cpu(m) => m.masked_lm_logits(inputs, positions),
            Engine::CpuFast(m) => m.masked_lm_logits(inputs, positions),
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => m.masked_lm_logits(inputs, positions),
        }
    }

    /// The encoder alone, finished when this returns: what `albert bench` times.
    pub fn encode_only(&self, inputs: &Inputs) -> Result<()> {
        match self {
            Engine::Cpu(m) => m.encode(inputs, false).map(|_| ()),
            Engine::CpuFast(m) => m.encode_only(inputs),
            #[cfg(feature = "cuda")]
            Engine::Cuda(m) => m.encode_only(inputs),
        }
    }
}
