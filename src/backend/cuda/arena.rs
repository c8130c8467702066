//! The activation arena of the scheduler: every buffer one encoder pass needs, allocated for the
//! largest batch x sequence seen so far and reused by every pass that fits (CUDA graphs point
//! into it, so it is only ever replaced whole, after they are dropped).

use cudarc::driver::{sys, CudaSlice, DevicePtrMut, DriverError};

use super::device::CudaDevice;
use super::weights::DeviceMatrix;
use crate::dtype::DType;
use crate::error::Result;
use crate::model::config::AlbertConfig;

/// How the arena stores the activations the products read (f32, or the operand type T).
#[derive(Clone, Copy, Debug)]
pub(super) struct Storage {
    pub qkv: DType,
    pub ffn: DType,
    pub t: Option<DType>,
    /// The embeddings run unfused (embeddings, then their projection: `x` [M, E] between
    /// them); false where embeddings_project does both in one kernel.
    pub x: bool,
}

/// Rows per group of the grid LayerNorm products (kernels/linear_mma_grid_ln.cu: 64x64 tiles).
pub(super) const ROW_GROUP: usize = 64;

/// Encoder activations for up to `capacity` token rows (M = R*S).
pub(super) struct Arena {
    pub capacity: usize,
    pub ids: CudaSlice<i32>,       // [M]
    pub types: CudaSlice<i32>,     // [M]
    pub mask: CudaSlice<f32>,      // [M] additive, over keys
    pub x: Option<CudaSlice<f32>>, // [M, E], where Storage::x
    pub hidden: CudaSlice<f32>,    // [M, H]
    /// [M, 3H]: q, k, v side by side (the fused product's output); stored as T when the
    /// tensor-core attention reads it (which rounds them to T anyway), else f32.
    pub qkv: DeviceMatrix,
    /// [M, H]: the attention output in f32, without T copies only (with them the attention
    /// writes `TCopies::ctx` alone: 12.6 MB less at b32/s128).
    pub ctx: Option<CudaSlice<f32>>,
    /// [splits, M, H]: the attention output and FFN output products (with T copies: their
    /// split-K partial sums, `CudaDevice::output_splits`; else splits = 1).
    pub proj: CudaSlice<f32>,
    pub attn: CudaSlice<f32>, // [M, H]
    /// [M, I]: the FFN intermediate, act(attn W1^T + b1); stored as T when the tensor-core
    /// products write and read it (linear_t.rs: they round it to T anyway), else f32. The
    /// largest activation: half its bytes is ~25 MB less traffic per layer application at M = 4096.
    pub ffn: DeviceMatrix,
    /// T copies of the activations the products read, when every encoder product runs on
    /// tensor cores with T activations (`CudaDevice::encoder_keeps_t`); else None.
    pub t: Option<TCopies>,
    /// [2 * ceil(M / 64)]: each 64-row group's barrier words (count, generation) for the grid
    /// LayerNorm products (kernels/grid_sync.cuh). Zero when allocated; every barrier leaves
    /// its count back at 0, so they need no reset between passes or graph replays. Not an
    /// activation: `poison` leaves them alone.
    pub row_sync: CudaSlice<u32>,
}

/// The activations stored as T (bf16/f16) for the tensor-core products, next to the f32 ones
/// the residuals and LayerNorms read. Each is its f32 counterpart rounded to T (RNE), the very
/// rounding the products apply as they stage an f32 activation: no result changes.
pub(super) struct TCopies {
    pub hidden: DeviceMatrix, // [M, H]: the layer input (the QKV product's)
    pub ctx: DeviceMatrix,    // [M, H]: the attention output (the output projection's input)
    pub attn: DeviceMatrix,   // [M, H]: after the attention's LayerNorm (the FFN-in input)
}

impl Arena {
    /// Bytes of an arena for `capacity` token rows, q/k/v stored as `qkv`, the FFN
    /// intermediate as `ffn`, and T copies of `t` (if any).
    pub fn bytes(cfg: &AlbertConfig, capacity: usize, st: Storage) -> usize {
        let (e, h, i) = (cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size);
        let copies = st.t.map_or(0, |t| 3 * t.size_of() * h);
        let splits = Self::splits(cfg, st);
        let per_row = 3 * 4
            + if st.x { 4 * e } else { 0 }
            + 4 * h * (2 + splits)
            + if st.t.is_none() { 4 * h } else { 0 }
            + st.qkv.size_of() * 3 * h
            + st.ffn.size_of() * i
            + copies;
        capacity
            .saturating_mul(per_row)
            .saturating_add(capacity.div_ceil(ROW_GROUP) * 8)
    }

    /// The partial sums `proj` holds per row and column: the most either split product makes.
    fn splits(cfg: &AlbertConfig, st: Storage) -> usize {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        match st.t {
            Some(_) => CudaDevice::output_splits(h).max(CudaDevice::output_splits(i)),
            None => 1,
        }
    }

    pub fn new(dev: &CudaDevice, cfg: &AlbertConfig, capacity: usize, st: Storage) -> Result<Self> {
        let (e, h, i) = (cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size);
        // Refuse up front with the sizes in the message; a failed allocation below is still an
        // error (CUDA_ERROR_OUT_OF_MEMORY), never an abort.
        let need = Self::bytes(cfg, capacity, st);
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
            x: match st.x {
                true => Some(f32s(capacity * e)?),
                false => None,
            },
            hidden: f32s(capacity * h)?,
            qkv: DeviceMatrix::zeros(dev, capacity * 3 * h, st.qkv)?,
            ctx: match st.t {
                None => Some(f32s(capacity * h)?),
                Some(_) => None,
            },
            proj: f32s(capacity * h * Self::splits(cfg, st))?,
            attn: f32s(capacity * h)?,
            ffn: DeviceMatrix::zeros(dev, capacity * i, st.ffn)?,
            t: match st.t {
                Some(t) => Some(TCopies {
                    hidden: DeviceMatrix::zeros(dev, capacity * h, t)?,
                    ctx: DeviceMatrix::zeros(dev, capacity * h, t)?,
                    attn: DeviceMatrix::zeros(dev, capacity * h, t)?,
                }),
                None => None,
            },
            row_sync: dev
                .stream
                .alloc_zeros::<u32>(2 * capacity.div_ceil(ROW_GROUP).max(1))
                .map_err(|err| dev.err("allocating activations", err))?,
        })
    }
}

impl Arena {
    /// Fills every buffer with 0xff bytes (NaN as f32, bf16 and f16; -1 as i32), stream-ordered
    /// before the pass that follows: with ALBERT_CUDA_POISON=1 (`CudaDevice::poison`) before every
    /// pass, so that a kernel reading arena memory its pass did not write reads NaN instead of a
    /// previous pass's plausible values (tests/gpu/graphs.rs `arena_poison_changes_nothing`).
    pub fn poison(&mut self, dev: &CudaDevice) -> Result<()> {
        let up = |e| dev.err("poisoning the activation arena", e);
        for s in [&mut self.ids, &mut self.types] {
            fill(dev, s).map_err(up)?;
        }
        let f32s = [
            Some(&mut self.mask),
            Some(&mut self.hidden),
            Some(&mut self.proj),
        ];
        let more = [Some(&mut self.attn), self.x.as_mut(), self.ctx.as_mut()];
        for s in f32s.into_iter().chain(more).flatten() {
            fill(dev, s).map_err(up)?;
        }
        let mut matrices = vec![&mut self.qkv, &mut self.ffn];
        if let Some(t) = &mut self.t {
            matrices.extend([&mut t.hidden, &mut t.ctx, &mut t.attn]);
        }
        for m in matrices {
            match m {
                DeviceMatrix::F32(s) => fill(dev, s),
                DeviceMatrix::BF16(s) => fill(dev, s),
                DeviceMatrix::F16(s) => fill(dev, s),
            }
            .map_err(up)?;
        }
        Ok(())
    }
}

/// cuMemsetD8Async(0xff) over the whole buffer on the device's stream.
fn fill<T>(dev: &CudaDevice, s: &mut CudaSlice<T>) -> std::result::Result<(), DriverError> {
    let bytes = s.len() * std::mem::size_of::<T>();
    let (ptr, _sync) = s.device_ptr_mut(&dev.stream);
    // SAFETY: `ptr` is this live allocation's address and `bytes` its size; the memset is
    // ordered on the stream every use of the arena is ordered on.
    unsafe { sys::cuMemsetD8Async(ptr, 0xff, bytes, dev.stream.cu_stream()) }.result()
}
