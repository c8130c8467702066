//! The attention launchers: softmax(q k^T / sqrt(D) + mask) v per head, on the tensor-core
//! flash kernel (kernels/attention_mma.cu: D = 64, bf16/f16 operands, q, k, v stored as f32 or
//! T, the context written as f32 or T) or the warp-per-row kernel (kernels/attention.cu: f32,
//! any D).

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::costs::Cost;
use super::device::CudaDevice;
use super::launch::SMEM_LIMIT;
use super::weights::{DeviceMatrix, DeviceOut, DeviceView};
use crate::dtype::DType;
use crate::error::Result;

/// Query rows per block of attention_forward (WARPS in kernels/attention.cu); also the warps per
/// block of attention_forward_mma (FA_WARPS in kernels/attention_mma.cu).
const ATTENTION_WARPS: usize = 4;
/// Query rows per block (FA_BQ) and the one head size (FA_D) of attention_forward_mma.
const ATTENTION_MMA_ROWS: usize = 64;
const ATTENTION_MMA_D: usize = 64;

impl CudaDevice {
    /// Whether attention_forward takes the tensor-core kernel at these operands and head size,
    /// so the fused QKV product can store q, k, v as T for it (`linear_forward_to`).
    pub fn attention_uses_mma(&self, operands: DType, d: usize) -> bool {
        let t = operands.name();
        self.tensor_cores
            && d == ATTENTION_MMA_D
            && operands != DType::F32
            && self
                .kernels
                .has(&format!("attention_forward_mma_{t}_from_{t}"))
            && self.kernels.has(&format!("linear_forward_mma_{t}_to_{t}"))
    }

    /// out[B, S, A*D] = softmax(q k^T / sqrt(D) + mask) v per (batch, head); q, k, v hold row r
    /// at `r * ld` (ld = 3H: slices of the fused QKV output), mask is additive [B, S] over keys.
    /// bf16/f16 `operands` take the tensor-core kernel where the device has it and D = 64 (q, k,
    /// v and the probabilities rounded to that type, f32 softmax and accumulation); f32, and
    /// every other head size, the exact warp-per-row kernel. q, k, v are f32, or already stored
    /// as the operand type (then only the tensor-core kernel reads them).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_forward(
        &self,
        out: &mut CudaSlice<f32>, // [B, S, A*D]
        q: &DeviceView,           // [B, S, ld]
        k: &DeviceView,           // [B, S, ld]
        v: &DeviceView,           // [B, S, ld]
        mask: &CudaSlice<f32>,    // [B, S]
        b: usize,
        s: usize,
        a: usize,
        d: usize,
        ld: usize,
        operands: DType,
    ) -> Result<()> {
        let mma = self.tensor_cores;
        self.attention_forward_with(out, q, k, v, mask, b, s, a, d, ld, operands, mma)
    }

    /// attention_forward with the kernel chosen by the caller: `mma` picks the tensor-core kernel
    /// for bf16/f16 operands where the device has it and D = 64 (tests run both).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_forward_with(
        &self,
        out: &mut CudaSlice<f32>, // [B, S, A*D]
        q: &DeviceView,           // [B, S, ld]
        k: &DeviceView,           // [B, S, ld]
        v: &DeviceView,           // [B, S, ld]
        mask: &CudaSlice<f32>,    // [B, S]
        b: usize,
        s: usize,
        a: usize,
        d: usize,
        ld: usize,
        operands: DType,
        mma: bool,
    ) -> Result<()> {
        let out = DeviceOut::F32(out);
        self.attention_launch(out, q, k, v, mask, b, s, a, d, ld, operands, mma)
    }

    /// attention_forward with q, k, v and the output all stored as T (the tensor-core kernel
    /// only): the output projection reads it as T. The f32 kernel's output rounded to T.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_forward_to(
        &self,
        out: &mut DeviceMatrix, // [B, S, A*D] as T
        q: &DeviceView,         // [B, S, ld] as T
        k: &DeviceView,         // [B, S, ld] as T
        v: &DeviceView,         // [B, S, ld] as T
        mask: &CudaSlice<f32>,  // [B, S]
        b: usize,
        s: usize,
        a: usize,
        d: usize,
        ld: usize,
    ) -> Result<()> {
        let operands = out.dtype();
        let kn = "attention_forward_to";
        self.check(kn, operands != DType::F32 && q.dtype() == operands, || {
            format!(
                "out stored as {operands} needs q, k, v stored as the same 16-bit type, got {}",
                q.dtype()
            )
        })?;
        let mma = self.tensor_cores;
        self.attention_launch(out.into(), q, k, v, mask, b, s, a, d, ld, operands, mma)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_launch(
        &self,
        out: DeviceOut,        // [B, S, A*D]
        q: &DeviceView,        // [B, S, ld]
        k: &DeviceView,        // [B, S, ld]
        v: &DeviceView,        // [B, S, ld]
        mask: &CudaSlice<f32>, // [B, S]
        b: usize,
        s: usize,
        a: usize,
        d: usize,
        ld: usize,
        operands: DType,
        mma: bool,
    ) -> Result<()> {
        let storage = q.dtype();
        let t = operands.name();
        let to = match out.dtype() {
            DType::F32 => String::new(),
            _ => format!("_to_{t}"),
        };
        let mma_name = match (storage, operands) {
            (_, DType::F32) => None,
            (DType::F32, _) => Some(format!("attention_forward_mma_{t}")),
            _ => Some(format!("attention_forward_mma_{t}_from_{t}{to}")),
        };
        let use_mma =
            mma && d == ATTENTION_MMA_D && mma_name.as_deref().is_some_and(|n| self.kernels.has(n));
        let kn = match (use_mma, &mma_name) {
            (true, Some(name)) => name.as_str(),
            _ => "attention_forward",
        };
        self.check(kn, k.dtype() == storage && v.dtype() == storage, || {
            "q, k, v are stored in different types".into()
        })?;
        self.check(kn, storage == DType::F32 || (use_mma && storage == operands), || {
            format!("q, k, v stored as {storage} need the tensor-core kernel at {storage} operands (D = 64, sm_80+, tensor cores on); got {operands} operands, D = {d}")
        })?;
        self.check(kn, out.dtype() == DType::F32 || use_mma, || {
            format!("an output stored as {} needs the tensor-core kernel (D = 64, sm_80+, tensor cores on); D = {d}", out.dtype())
        })?;
        let h = a * d;
        let rows = b * s;
        // The last row read starts at (rows - 1) * ld and reads H columns.
        let need = if rows == 0 { 0 } else { (rows - 1) * ld + h };
        self.check(kn, ld >= h, || format!("row stride ld = {ld} < H = {h}"))?;
        self.check(
            kn,
            out.len() >= rows * h
                && [q.len(), k.len(), v.len()].iter().all(|&l| l >= need)
                && mask.len() >= rows,
            || format!("buffers smaller than [{b}, {s}, {a}x{d}] (q, k, v row stride {ld})"),
        )?;
        let smem = match use_mma {
            true => 0, // static shared memory only (18.7 KB)
            false => ATTENTION_WARPS * (s + d) * 4,
        };
        self.check(kn, smem <= SMEM_LIMIT, || {
            format!("S = {s}, D = {d} need {smem} B of shared memory")
        })?;
        self.check(kn, a <= 65535 && b <= 65535, || {
            format!("B = {b} or A = {a} exceed the grid")
        })?;
        let (b_, s_, a_, d_, ld_) = (
            self.dim(kn, "B", b)?,
            self.dim(kn, "S", s)?,
            self.dim(kn, "A", a)?,
            self.dim(kn, "D", d)?,
            self.dim(kn, "ld", ld)?,
        );
        if rows * h == 0 {
            return Ok(());
        }
        let scale = (1.0 / (d as f64).sqrt()) as f32;
        let rows_per_block = if use_mma {
            ATTENTION_MMA_ROWS
        } else {
            ATTENTION_WARPS
        };
        let cfg = LaunchConfig {
            grid_dim: (s.div_ceil(rows_per_block) as u32, a as u32, b as u32),
            block_dim: ((ATTENTION_WARPS * 32) as u32, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        let cost = Cost::attention((b, s, a, d), (storage.size_of(), out.dtype().size_of()));
        let f = self.kernels.get(kn);
        let mut l = self.launcher(f);
        match out {
            DeviceOut::F32(o) => l.arg(o),
            DeviceOut::BF16(o) => l.arg(o),
            DeviceOut::F16(o) => l.arg(o),
        };
        for x in [q, k, v] {
            match x {
                DeviceView::F32(x) => l.arg(x),
                DeviceView::BF16(x) => l.arg(x),
                DeviceView::F16(x) => l.arg(x),
            };
        }
        l.arg(mask)
            .arg(&b_)
            .arg(&s_)
            .arg(&a_)
            .arg(&d_)
            .arg(&ld_)
            .arg(&scale);
        // SAFETY: arguments match attention_forward in kernels/attention.cu and
        // attention_forward_mma_* in kernels/attention_mma.cu in type and order (the element
        // type of q, k, v is the kernel's: f32 for the first two, T for the _from_ kernels; out
        // is f32, or T for the _to_ kernels, whose name is built from its type);
        // every row the grid reads or writes is inside the buffers (checked above); the mma
        // kernels are only chosen for D = 64, the head size they are written for.
        self.launched(kn, &cfg, cost, unsafe { l.launch(cfg) })
    }
}
