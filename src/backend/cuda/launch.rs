//! Typed launchers: one per kernel, with the name and argument order of the CPU reference op
//! (outputs, inputs, dimensions). Each checks buffer sizes and dimension limits and returns an
//! `Error` instead of launching out of bounds.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::costs::Cost;
use super::device::CudaDevice;
use super::weights::{DeviceMatrix, DeviceOut};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::model::activation::Activation;

/// Threads per block of the row kernels (embeddings, LayerNorm, gather).
const ROW_THREADS: u32 = 256;
/// Tile of linear_forward (BM, BN and THREADS in kernels/linear.cu).
const LINEAR_TILE: usize = 64;
/// Tile of linear_forward_mma (MMA_BM, MMA_BN in kernels/linear_mma.cu; same thread count).
pub(super) const MMA_TILE: usize = 128;
pub(super) const LINEAR_THREADS: u32 = 256;
/// Shared memory a block may use without opting in (static + dynamic).
pub(super) const SMEM_LIMIT: usize = 48 * 1024;
/// Static shared memory of the row kernels: `double scratch[32]` in common.cuh's block_sum.
const ROW_STATIC_SMEM: usize = 32 * 8;

/// The id of an activation in kernels/common.cuh (ACT_*).
pub fn cuda_activation_id(act: Option<Activation>) -> i32 {
    match act {
        None | Some(Activation::Linear) => 0,
        Some(Activation::Gelu) => 1,
        Some(Activation::GeluTanh) | Some(Activation::GeluAccurate) => 2,
        Some(Activation::GeluFast) => 3,
        Some(Activation::Gelu10) => 4,
        Some(Activation::QuickGelu) => 5,
        Some(Activation::Silu) => 6,
        Some(Activation::Relu) => 7,
        Some(Activation::Relu6) => 8,
        Some(Activation::Relu2) => 9,
        Some(Activation::Sigmoid) => 10,
        Some(Activation::Tanh) => 11,
        Some(Activation::Mish) => 12,
    }
}

impl CudaDevice {
    pub(super) fn check(
        &self,
        kernel: &str,
        ok: bool,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        match ok {
            true => Ok(()),
            false => Err(Error::Device {
                device: self.label.clone(),
                msg: format!("{kernel}: {}", what()),
            }),
        }
    }

    /// The size checks of every product launcher: `out` holds `splits` [M, N] outputs, `inp`
    /// [M, K], the weight [N, K], the bias [N]; M, K, N as the kernels' 32-bit ints.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_product(
        &self,
        kn: &str,
        (out_len, inp_len): (usize, usize),
        weight: &DeviceMatrix,
        bias: Option<&CudaSlice<f32>>,
        (m, k, n): (usize, usize, usize),
        splits: usize,
    ) -> Result<(i32, i32, i32)> {
        self.check(kn, out_len >= splits * m * n && inp_len >= m * k, || {
            let out = match splits {
                1 => format!("[{m}, {n}]"),
                _ => format!("[{splits}, {m}, {n}]"),
            };
            format!("buffers smaller than [{m}, {k}] -> {out}")
        })?;
        self.check(kn, weight.len() == n * k, || {
            format!("weight has {} elements, expected [{n}, {k}]", weight.len())
        })?;
        self.check(kn, bias.is_none_or(|b| b.len() == n), || {
            format!("bias is not [{n}]")
        })?;
        Ok((
            self.dim(kn, "M", m)?,
            self.dim(kn, "K", k)?,
            self.dim(kn, "N", n)?,
        ))
    }

    pub(super) fn dim(&self, kernel: &str, name: &str, v: usize) -> Result<i32> {
        i32::try_from(v).map_err(|_| Error::Device {
            device: self.label.clone(),
            msg: format!("{kernel}: {name} = {v} exceeds the kernel's 32-bit index"),
        })
    }

    /// The result of launching `kernel` with `cfg`, which must do at least `cost` (logged while
    /// `costs` records).
    pub(super) fn launched(
        &self,
        kernel: &str,
        cfg: &LaunchConfig,
        cost: Cost,
        r: std::result::Result<impl Sized, cudarc::driver::DriverError>,
    ) -> Result<()> {
        self.costs.record(kernel, cfg, cost);
        r.map(|_| ())
            .map_err(|e| self.err(&format!("launching {kernel}"), e))
    }

    /// out[M, E] = LayerNorm(word[ids] + token_type[types] + position[m % S]); ids checked on the host.
    #[allow(clippy::too_many_arguments)]
    pub fn embeddings_forward(
        &self,
        out: &mut CudaSlice<f32>,        // [M, E]
        input_ids: &CudaSlice<i32>,      // [M]
        token_type_ids: &CudaSlice<i32>, // [M]
        word: &DeviceMatrix,             // [V, E]
        position: &DeviceMatrix,         // [P, E]
        token_type: &DeviceMatrix,       // [T, E]
        ln_weight: &CudaSlice<f32>,      // [E]
        ln_bias: &CudaSlice<f32>,        // [E]
        m: usize,
        s: usize,
        e: usize,
        eps: f32,
    ) -> Result<()> {
        let name = format!("embeddings_forward_{}", word.suffix());
        let k = name.as_str();
        self.check(
            k,
            out.len() >= m * e && input_ids.len() >= m && token_type_ids.len() >= m,
            || format!("buffers smaller than M = {m} rows of E = {e}"),
        )?;
        self.check(k, ln_weight.len() == e && ln_bias.len() == e, || {
            format!("LayerNorm parameters are not [{e}]")
        })?;
        self.check(
            k,
            word.suffix() == position.suffix() && word.suffix() == token_type.suffix(),
            || "tables of mixed types".into(),
        )?;
        self.check(k, e * 4 + ROW_STATIC_SMEM <= SMEM_LIMIT, || {
            format!("E = {e} needs more than 48 KB of shared memory")
        })?;
        if m == 0 || s == 0 || e == 0 {
            return Ok(()); // a zero-sized grid is a launch error; there is nothing to do
        }
        let (m_, s_, e_) = (
            self.dim(k, "M", m)?,
            self.dim(k, "S", s)?,
            self.dim(k, "E", e)?,
        );
        let cfg = LaunchConfig {
            grid_dim: (m as u32, 1, 1),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: (e * 4) as u32,
        };
        let f = self.kernels.get(k);
        let mut b = self.launcher(f);
        b.arg(out).arg(input_ids).arg(token_type_ids);
        for table in [word, position, token_type] {
            match table {
                DeviceMatrix::F32(t) => b.arg(t),
                DeviceMatrix::BF16(t) => b.arg(t),
                DeviceMatrix::F16(t) => b.arg(t),
            };
        }
        b.arg(ln_weight)
            .arg(ln_bias)
            .arg(&m_)
            .arg(&s_)
            .arg(&e_)
            .arg(&eps);
        // ids and types, the word and position rows, the output.
        let bytes = m * 8 + (m + s) * e * word.dtype().size_of() + m * e * 4;
        let cost = Cost::moves(bytes, (m, e, 1));
        // SAFETY: arguments match embeddings_forward_* in kernels/embeddings.cu in type and order;
        // every buffer holds at least the rows the grid touches (checked above); ids were checked
        // against the tables by Inputs::validate.
        self.launched(k, &cfg, cost, unsafe { b.launch(cfg) })
    }

    /// out[M, N] = act(inp[M, K] @ weight[N, K]^T + bias[N]); operands rounded to the weight's type.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_forward(
        &self,
        out: &mut CudaSlice<f32>,      // [M, N]
        inp: &CudaSlice<f32>,          // [M, K]
        weight: &DeviceMatrix,         // [N, K]
        bias: Option<&CudaSlice<f32>>, // [N]
        m: usize,
        k: usize,
        n: usize,
        act: Option<Activation>,
    ) -> Result<()> {
        let mma = self.tensor_cores;
        self.linear_forward_with(out, inp, weight, bias, m, k, n, act, mma)
    }

    /// linear_forward with the kernel chosen by the caller: `mma` picks the tensor-core kernel
    /// for bf16/f16 weights where the device has it (tests run both).
    #[allow(clippy::too_many_arguments)]
    pub fn linear_forward_with(
        &self,
        out: &mut CudaSlice<f32>,      // [M, N]
        inp: &CudaSlice<f32>,          // [M, K]
        weight: &DeviceMatrix,         // [N, K]
        bias: Option<&CudaSlice<f32>>, // [N]
        m: usize,
        k: usize,
        n: usize,
        act: Option<Activation>,
        mma: bool,
    ) -> Result<()> {
        let mma_name = format!("linear_forward_mma_{}", weight.suffix());
        let use_mma = mma && self.kernels.has(&mma_name);
        let (name, tile) = match use_mma {
            true => (mma_name, MMA_TILE),
            false => (format!("linear_forward_{}", weight.suffix()), LINEAR_TILE),
        };
        let kn = name.as_str();
        let lens = (out.len(), inp.len());
        let (m_, k_, n_) = self.check_product(kn, lens, weight, bias, (m, k, n), 1)?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        let act_id = cuda_activation_id(act);
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(tile) as u32, m.div_ceil(tile) as u32, 1),
            block_dim: (LINEAR_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        self.check(kn, m.div_ceil(tile) <= 65535, || {
            format!("M = {m} rows exceed the grid")
        })?;
        let f = self.kernels.get(kn);
        let mut b = self.launcher(f);
        b.arg(out).arg(inp).arg(weight).arg(bias);
        b.arg(&m_).arg(&k_).arg(&n_).arg(&act_id);
        let cost = Cost::product((m, k, n), (4, weight.dtype().size_of(), 4), 1);
        // SAFETY: arguments match linear_forward_* in kernels/linear.cu and linear_forward_mma_*
        // in kernels/linear_mma.cu in type and order (a null bias is a 64-bit zero pointer,
        // which the kernels test); sizes checked above.
        self.launched(kn, &cfg, cost, unsafe { b.launch(cfg) })
    }

    /// out[M, C] = LayerNorm(inp[M, C] + residual[M, C]) (residual None: plain LayerNorm).
    #[allow(clippy::too_many_arguments)]
    pub fn residual_layernorm_forward(
        &self,
        out: &mut CudaSlice<f32>,          // [M, C]
        inp: &CudaSlice<f32>,              // [M, C]
        residual: Option<&CudaSlice<f32>>, // [M, C]
        weight: &CudaSlice<f32>,           // [C]
        bias: &CudaSlice<f32>,             // [C]
        m: usize,
        c: usize,
        eps: f32,
    ) -> Result<()> {
        self.layernorm_launch(out, None, (inp, 1), residual, weight, bias, m, c, eps)
    }

    /// residual_layernorm_forward that also stores the result rounded to T (bf16/f16) in
    /// `out_t`: the copy the next tensor-core products read (bit-identical to their rounding
    /// of `out` as they stage it); `out` stays f32 for the next residual. `inp` holds `parts`
    /// partial sums of a split-K product (`linear_forward_split`), added in order before the
    /// residual; parts = 1 is one plain input.
    #[allow(clippy::too_many_arguments)]
    pub fn residual_layernorm_forward_to(
        &self,
        out: &mut CudaSlice<f32>, // [M, C]
        out_t: &mut DeviceMatrix, // [M, C] as T
        inp: &CudaSlice<f32>,     // [parts, M, C]
        parts: usize,
        residual: &CudaSlice<f32>, // [M, C]
        weight: &CudaSlice<f32>,   // [C]
        bias: &CudaSlice<f32>,     // [C]
        m: usize,
        c: usize,
        eps: f32,
    ) -> Result<()> {
        let out_t = Some(out_t.into());
        let inp = (inp, parts);
        self.layernorm_launch(out, out_t, inp, Some(residual), weight, bias, m, c, eps)
    }

    /// out_t[n] = inp[n] rounded to T (bf16/f16, RNE): the T copy of the embedding projection's
    /// output that the first layer's QKV product reads (the rounding it would apply itself).
    pub fn round_to(
        &self,
        out_t: &mut DeviceMatrix, // [n] as T
        inp: &CudaSlice<f32>,     // [n]
        n: usize,
    ) -> Result<()> {
        let name = format!("round_to_{}", out_t.dtype().name());
        let k = name.as_str();
        self.check(
            k,
            out_t.dtype() != DType::F32 && self.kernels.has(k),
            || "a T copy needs a 16-bit type and sm_80+".into(),
        )?;
        self.check(k, out_t.len() >= n && inp.len() >= n, || {
            format!("buffers smaller than [{n}]")
        })?;
        if n == 0 {
            return Ok(());
        }
        let n_ = n as i64;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256 * 4).min(65535) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let cost = Cost::moves(n * (4 + out_t.dtype().size_of()), (1, n, 1));
        let f = self.kernels.get(k);
        let mut b = self.launcher(f);
        match out_t {
            DeviceMatrix::BF16(t) => b.arg(t),
            DeviceMatrix::F16(t) => b.arg(t),
            DeviceMatrix::F32(t) => b.arg(t), // refused above
        };
        b.arg(inp).arg(&n_);
        // SAFETY: arguments match round_to_{bf16,f16} in kernels/layernorm_t.cu (T*, const
        // float*, long long); the name follows out_t's type; both hold n elements (checked); the
        // kernel's grid-stride loop covers any n with any grid.
        self.launched(k, &cfg, cost, unsafe { b.launch(cfg) })
    }

    #[allow(clippy::too_many_arguments)]
    fn layernorm_launch(
        &self,
        out: &mut CudaSlice<f32>,               // [M, C]
        out_t: Option<DeviceOut>,               // [M, C] as T
        (inp, parts): (&CudaSlice<f32>, usize), // [parts, M, C]
        residual: Option<&CudaSlice<f32>>,      // [M, C]
        weight: &CudaSlice<f32>,                // [C]
        bias: &CudaSlice<f32>,                  // [C]
        m: usize,
        c: usize,
        eps: f32,
    ) -> Result<()> {
        let name = match (&out_t, residual) {
            (Some(t), _) => format!("residual_layernorm_forward_to_{}", t.dtype().name()),
            (None, Some(_)) => "residual_layernorm_forward".into(),
            (None, None) => "layernorm_forward".into(),
        };
        let k = name.as_str();
        self.check(
            k,
            out_t.as_ref().is_none_or(|t| {
                t.dtype() != DType::F32 && residual.is_some() && self.kernels.has(k)
            }),
            || "a T copy needs a 16-bit type, a residual and sm_80+".into(),
        )?;
        self.check(k, parts >= 1 && (parts == 1 || out_t.is_some()), || {
            format!("{parts} partial inputs: only the T-copy kernel adds partials (at least one)")
        })?;
        self.check(
            k,
            out.len() >= m * c
                && inp.len() >= parts * m * c
                && residual.is_none_or(|r| r.len() >= m * c)
                && out_t.as_ref().is_none_or(|t| t.len() >= m * c),
            || format!("buffers smaller than [{m}, {c}]"),
        )?;
        self.check(k, weight.len() == c && bias.len() == c, || {
            format!("parameters are not [{c}]")
        })?;
        self.check(k, c * 4 + ROW_STATIC_SMEM <= SMEM_LIMIT, || {
            format!("C = {c} needs more than 48 KB of shared memory")
        })?;
        if m == 0 || c == 0 {
            return Ok(());
        }
        let (m_, c_) = (self.dim(k, "M", m)?, self.dim(k, "C", c)?);
        let parts_ = self.dim(k, "parts", parts)?;
        let cfg = LaunchConfig {
            grid_dim: (m as u32, 1, 1),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: (c * 4) as u32,
        };
        let out_t_kernel = out_t.is_some();
        // The partials (or input) and the residual read, the f32 output and the T copy written.
        let t_bytes = out_t.as_ref().map_or(0, |t| t.dtype().size_of());
        let reads = parts + usize::from(residual.is_some());
        let cost = Cost::moves(m * c * (4 * reads + 4 + t_bytes), (m, c, parts));
        let f = self.kernels.get(k);
        let mut b = self.launcher(f);
        b.arg(out);
        match out_t {
            Some(DeviceOut::BF16(t)) => b.arg(t),
            Some(DeviceOut::F16(t)) => b.arg(t),
            Some(DeviceOut::F32(t)) => b.arg(t), // refused above
            None => &mut b,
        };
        b.arg(inp);
        if let Some(r) = residual {
            b.arg(r);
        }
        b.arg(weight).arg(bias).arg(&m_).arg(&c_);
        if out_t_kernel {
            b.arg(&parts_);
        }
        b.arg(&eps);
        // SAFETY: arguments match (residual_)layernorm_forward in kernels/layernorm.cu and
        // residual_layernorm_forward_to_{bf16,f16} in kernels/layernorm_t.cu (which alone takes
        // `parts`) in type and order (the name is built from out_t's type); sizes checked, inp
        // for all parts.
        self.launched(k, &cfg, cost, unsafe { b.launch(cfg) })
    }

    /// out[N, C] = inp[rows[n], C].
    pub fn gather_rows(
        &self,
        out: &mut CudaSlice<f32>, // [N, C]
        inp: &CudaSlice<f32>,     // [M, C]
        rows: &CudaSlice<i32>,    // [N]
        rows_host: &[i32],        // the same indices, to check them
        c: usize,
    ) -> Result<()> {
        let kn = "gather_rows";
        let n = rows_host.len();
        let m = inp.len() / c.max(1);
        self.check(kn, out.len() >= n * c && rows.len() >= n, || {
            format!("buffers smaller than [{n}, {c}]")
        })?;
        self.check(
            kn,
            rows_host.iter().all(|&r| r >= 0 && (r as usize) < m),
            || format!("a row index is outside [0, {m})"),
        )?;
        let (n_, c_) = (self.dim(kn, "N", n)?, self.dim(kn, "C", c)?);
        if n == 0 || c == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (n as u32, 1, 1),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let f = self.kernels.get(kn);
        let mut l = self.launcher(f);
        l.arg(out).arg(inp).arg(rows).arg(&n_).arg(&c_);
        let cost = Cost::moves(n * (4 + 2 * c * 4), (n, c, 1));
        // SAFETY: arguments match gather_rows in kernels/gather.cu; every index checked above.
        self.launched(kn, &cfg, cost, unsafe { l.launch(cfg) })
    }
}
