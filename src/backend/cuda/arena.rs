//! The activation arena of the scheduler: every buffer one encoder pass needs, allocated for the
//! largest batch x sequence seen so far and reused by every pass that fits (CUDA graphs point
//! into it, so it is only ever replaced whole, after they are dropped).

use cudarc::driver::CudaSlice;

use super::device::CudaDevice;
use super::weights::DeviceMatrix;
use crate::dtype::DType;
use crate::error::Result;
use crate::model::config::AlbertConfig;

/// Encoder activations for up to `capacity` token rows (M = R*S).
pub(super) struct Arena {
    pub capacity: usize,
    pub ids: CudaSlice<i32>,    // [M]
    pub types: CudaSlice<i32>,  // [M]
    pub mask: CudaSlice<f32>,   // [M] additive, over keys
    pub x: CudaSlice<f32>,      // [M, E]
    pub hidden: CudaSlice<f32>, // [M, H]
    /// [M, 3H]: q, k, v side by side (the fused product's output); stored as T when the
    /// tensor-core attention reads it (which rounds them to T anyway), else f32.
    pub qkv: DeviceMatrix,
    pub ctx: CudaSlice<f32>,  // [M, H]
    pub proj: CudaSlice<f32>, // [M, H]
    pub attn: CudaSlice<f32>, // [M, H]
    /// [M, I]: the FFN intermediate, act(attn W1^T + b1); stored as T when the tensor-core
    /// products write and read it (linear_t.rs: they round it to T anyway), else f32. The
    /// largest activation: half its bytes is ~25 MB less traffic per layer application at M = 4096.
    pub ffn: DeviceMatrix,
}

impl Arena {
    /// Bytes of an arena for `capacity` token rows, q/k/v stored as `qkv` and the FFN
    /// intermediate as `ffn`.
    pub fn bytes(cfg: &AlbertConfig, capacity: usize, qkv: DType, ffn: DType) -> usize {
        let (e, h, i) = (cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size);
        let per_row = 3 * 4 + 4 * e + 4 * h * 4 + qkv.size_of() * 3 * h + ffn.size_of() * i;
        capacity.saturating_mul(per_row)
    }

    pub fn new(
        dev: &CudaDevice,
        cfg: &AlbertConfig,
        capacity: usize,
        qkv: DType,
        ffn: DType,
    ) -> Result<Self> {
        let (e, h, i) = (cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size);
        // Refuse up front with the sizes in the message; a failed allocation below is still an
        // error (CUDA_ERROR_OUT_OF_MEMORY), never an abort.
        let need = Self::bytes(cfg, capacity, qkv, ffn);
        if let Ok((free, _total)) = dev.ctx.mem_get_info() {
            if need > free {
                return Err(dev.err(
                    "allocating activations",
                    format!(
                        "{capacity} tokens need {} MiB, the GPU has {} MiB free (run smaller \
                         batches, or lower --max-tokens)",
                        need >> 20,
                        free >> 20
                    ),
                ));
            }
        }
        let f32s = |n: usize| {
            dev.stream
                .alloc_zeros::<f32>(n)
                .map_err(|err| dev.err("allocating activations", err))
        };
        let i32s = |n: usize| {
            dev.stream
                .alloc_zeros::<i32>(n)
                .map_err(|err| dev.err("allocating activations", err))
        };
        Ok(Arena {
            capacity,
            ids: i32s(capacity)?,
            types: i32s(capacity)?,
            mask: f32s(capacity)?,
            x: f32s(capacity * e)?,
            hidden: f32s(capacity * h)?,
            qkv: DeviceMatrix::zeros(dev, capacity * 3 * h, qkv)?,
            ctx: f32s(capacity * h)?,
            proj: f32s(capacity * h)?,
            attn: f32s(capacity * h)?,
            ffn: DeviceMatrix::zeros(dev, capacity * i, ffn)?,
        })
    }
}
