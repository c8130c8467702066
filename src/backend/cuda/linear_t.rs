//! Launchers of the tensor-core products whose activations are stored as the weight's type T
//! (bf16/f16) instead of f32: `linear_forward_to` writes its output as T (the fused QKV product
//! for the tensor-core attention, the FFN-in product), `linear_forward_from` reads its input as
//! T (the FFN-out product), `linear_forward_t` either side or both (every encoder product when
//! the LayerNorms and the attention store T copies, forward.rs). All are bit-identical to the f32-storage path: the tensor-core
//! product rounds its f32 activation to T (RNE) as it stages it, which is exactly the rounding
//! of storing it as T. transformers in bf16 stores these activations in bf16 too.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::device::CudaDevice;
use super::kernels::dynamic_smem;
use super::launch::{cuda_activation_id, LINEAR_THREADS, MMA_TILE};
use super::weights::{DeviceMatrix, DeviceOut, DeviceView};
use crate::dtype::DType;
use crate::error::Result;
use crate::model::activation::Activation;

/// What both launchers check before a launch: the [M, N] grid, or None when it is empty.
struct Checked {
    cfg: LaunchConfig,
    mkn: (i32, i32, i32),
    act: i32,
}

impl CudaDevice {
    /// Whether the products can keep activations as `operands` (bf16/f16 with tensor cores):
    /// then the scheduler stores the FFN intermediate [M, I] as T.
    pub fn linear_keeps_t(&self, operands: DType) -> bool {
        let t = operands.name();
        self.tensor_cores
            && operands != DType::F32
            && self.kernels.has(&format!("linear_forward_mma_{t}_to_{t}"))
            && self
                .kernels
                .has(&format!("linear_forward_mma_{t}_from_{t}"))
    }

    /// Whether every encoder product can read T activations: the LayerNorms and the attention
    /// then also store T copies of their outputs (arena.rs `TCopies`) and the products take
    /// `linear_forward_t`'s T-in kernels (cp.async staging, half the bytes, ~95 registers
    /// instead of ~190, so two blocks per SM).
    pub fn encoder_keeps_t(&self, operands: DType, d: usize) -> bool {
        let t = operands.name();
        self.linear_keeps_t(operands)
            && self.attention_uses_mma(operands, d)
            && [
                format!("linear_forward_mma_{t}_from_{t}_to_{t}"),
                format!("attention_forward_mma_{t}_from_{t}_to_{t}"),
                format!("residual_layernorm_forward_to_{t}"),
            ]
            .iter()
            .all(|k| self.kernels.has(k))
    }

    /// The checks shared by the two launchers: `stored` (the T side) has the weight's 16-bit
    /// type and the kernel exists, buffers hold [M, K] and [M, N], weight [N, K], bias [N].
    #[allow(clippy::too_many_arguments)]
    fn check_linear_t(
        &self,
        kn: &str,
        stored: DType,
        (out_len, inp_len): (usize, usize),
        weight: &DeviceMatrix,
        bias: Option<&CudaSlice<f32>>,
        (m, k, n): (usize, usize, usize),
        act: Option<Activation>,
    ) -> Result<Option<Checked>> {
        self.check(
            kn,
            stored == weight.dtype() && stored != DType::F32 && self.kernels.has(kn),
            || {
                format!(
                    "a {stored} activation needs the tensor-core kernel for {} weights (sm_80+)",
                    weight.dtype()
                )
            },
        )?;
        self.check(kn, out_len >= m * n && inp_len >= m * k, || {
            format!("buffers smaller than [{m}, {k}] -> [{m}, {n}]")
        })?;
        self.check(kn, weight.len() == n * k, || {
            format!("weight has {} elements, expected [{n}, {k}]", weight.len())
        })?;
        self.check(kn, bias.is_none_or(|b| b.len() == n), || {
            format!("bias is not [{n}]")
        })?;
        let mkn = (
            self.dim(kn, "M", m)?,
            self.dim(kn, "K", k)?,
            self.dim(kn, "N", n)?,
        );
        if m == 0 || n == 0 {
            return Ok(None); // a zero-sized grid is a launch error; there is nothing to do
        }
        self.check(kn, m.div_ceil(MMA_TILE) <= 65535, || {
            format!("M = {m} rows exceed the grid")
        })?;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(MMA_TILE) as u32, m.div_ceil(MMA_TILE) as u32, 1),
            block_dim: (LINEAR_THREADS, 1, 1),
            shared_mem_bytes: dynamic_smem(kn).unwrap_or(0) as u32,
        };
        let act = cuda_activation_id(act);
        Ok(Some(Checked { cfg, mkn, act }))
    }

    /// linear_forward with the output stored as the weight's type T (bf16/f16, tensor-core
    /// kernel only): the fused QKV product feeding the tensor-core attention, and the FFN-in
    /// product with its activation (read back by `linear_forward_from`). Each element is the
    /// f32 kernel's, rounded to T (RNE).
    #[allow(clippy::too_many_arguments)]
    pub fn linear_forward_to(
        &self,
        out: &mut DeviceMatrix,        // [M, N] as T
        inp: &CudaSlice<f32>,          // [M, K]
        weight: &DeviceMatrix,         // [N, K]
        bias: Option<&CudaSlice<f32>>, // [N]
        m: usize,
        k: usize,
        n: usize,
        act: Option<Activation>,
    ) -> Result<()> {
        let inp = DeviceView::F32(inp.slice(..));
        self.linear_forward_t(out.into(), &inp, weight, bias, m, k, n, act)
    }

    /// linear_forward reading its activation stored as the weight's type T (bf16/f16,
    /// tensor-core kernel only): the FFN-out product on the [M, I] intermediate that
    /// `linear_forward_to` stored. The same bits as linear_forward on the f32 activation.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_forward_from(
        &self,
        out: &mut CudaSlice<f32>,      // [M, N]
        inp: &DeviceView,              // [M, K] as T
        weight: &DeviceMatrix,         // [N, K]
        bias: Option<&CudaSlice<f32>>, // [N]
        m: usize,
        k: usize,
        n: usize,
        act: Option<Activation>,
    ) -> Result<()> {
        let t = weight.suffix();
        let kn = format!("linear_forward_mma_{t}_from_{t}");
        self.check(&kn, inp.dtype() != DType::F32, || {
            "the activation is f32: use linear_forward".into()
        })?;
        self.linear_forward_t(out.into(), inp, weight, bias, m, k, n, act)
    }

    /// The tensor-core product with either side stored as the weight's type T (bf16/f16) and
    /// the other f32, or both T: `linear_forward_mma_{t}[_from_{t}][_to_{t}]`. Every element
    /// is bit-identical to the f32-storage path's (rounded to T where it is stored as T). Both
    /// sides f32 is linear_forward's job: refused here.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_forward_t(
        &self,
        out: DeviceOut,                // [M, N], f32 or T
        inp: &DeviceView,              // [M, K], f32 or T
        weight: &DeviceMatrix,         // [N, K]
        bias: Option<&CudaSlice<f32>>, // [N]
        m: usize,
        k: usize,
        n: usize,
        act: Option<Activation>,
    ) -> Result<()> {
        let t = weight.suffix();
        let from = match inp.dtype() {
            DType::F32 => String::new(),
            _ => format!("_from_{t}"),
        };
        let to = match out.dtype() {
            DType::F32 => String::new(),
            _ => format!("_to_{t}"),
        };
        let name = format!("linear_forward_mma_{t}{from}{to}");
        let kn = name.as_str();
        self.check(kn, !(from.is_empty() && to.is_empty()), || {
            "both sides are f32: use linear_forward".into()
        })?;
        let stored = match out.dtype() {
            DType::F32 => inp.dtype(),
            o => o,
        };
        self.check(
            kn,
            inp.dtype() == DType::F32 || inp.dtype() == stored,
            || format!("input stored as {}, output as {stored}", inp.dtype()),
        )?;
        let lens = (out.len(), inp.len());
        let Some(c) = self.check_linear_t(kn, stored, lens, weight, bias, (m, k, n), act)? else {
            return Ok(());
        };
        let null: u64 = 0;
        let f = self.kernels.get(kn);
        let mut b = self.stream.launch_builder(f);
        match out {
            DeviceOut::F32(o) => b.arg(o),
            DeviceOut::BF16(o) => b.arg(o),
            DeviceOut::F16(o) => b.arg(o),
        };
        match inp {
            DeviceView::F32(x) => b.arg(x),
            DeviceView::BF16(x) => b.arg(x),
            DeviceView::F16(x) => b.arg(x),
        };
        match weight {
            DeviceMatrix::F32(w) => b.arg(w),
            DeviceMatrix::BF16(w) => b.arg(w),
            DeviceMatrix::F16(w) => b.arg(w),
        };
        match bias {
            Some(bias) => b.arg(bias),
            None => b.arg(&null),
        };
        b.arg(&c.mkn.0).arg(&c.mkn.1).arg(&c.mkn.2).arg(&c.act);
        // SAFETY: arguments match linear_forward_mma_{t}[_from_{t}][_to_{t}] in
        // kernels/linear_mma.cu in type and order: the name is built from the storage types of
        // out and inp, each T side has the weight's type (checked above and by check_linear_t),
        // a null bias is a 64-bit zero pointer, which the kernel tests; sizes checked there too.
        // A T view that is not 16-byte aligned is legal: the kernel then stages A with plain
        // loads.
        self.launched(kn, unsafe { b.launch(c.cfg) })
    }
}
