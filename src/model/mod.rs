//! The ALBERT model: configuration, weights, and the forward pass written once, top to bottom.

pub mod activation;
pub mod checkpoint;
pub mod config;
pub mod forward;
pub mod head;
pub mod heads;
pub mod save;
pub mod synthetic;
pub mod weights;

use std::path::Path;

use crate::dtype::DType;
use crate::error::Result;
use crate::limits::Limits;
use checkpoint::Checkpoint;
use config::AlbertConfig;
use head::Head;
use weights::Weights;

/// A loaded model: its configuration, its weights on the host, the head it runs, and the type
/// its matrix products round their operands to (f32: none).
#[derive(Clone, Debug)]
pub struct Albert {
    pub config: AlbertConfig,
    pub weights: Weights,
    pub head: Head,
    pub dtype: DType,
    /// What one forward pass may ask for (checked before allocating).
    pub limits: Limits,
}

impl Albert {
    /// Loads a Hugging Face model directory (config.json + model.safetensors or its shards).
    /// `head` overrides the head that config.json's `architectures` names.
    pub fn from_dir(dir: &Path, head: Option<Head>) -> Result<Self> {
        let config = AlbertConfig::from_file(&dir.join("config.json"))?;
        let head = match head {
            Some(h) => h,
            None => config.default_head()?,
        };
        let ckpt = Checkpoint::open_dir(dir)?;
        let weights = Weights::load(&ckpt, &config, head)?;
        Ok(Albert {
            config,
            weights,
            head,
            dtype: DType::F32,
            limits: Limits::default(),
        })
    }

    /// The same model computing as a `dtype` tensor-core engine does: every matrix weight and
    /// embedding table rounded to `dtype` once, and every matrix product's activation operand
    /// rounded as it enters (biases, LayerNorm parameters and activations between ops stay f32).
    /// On the CPU this is the reference for the GPU's bf16/f16 paths, not a faster mode.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.weights.round_matrices(dtype);
        self.dtype = dtype;
        self
    }
}
