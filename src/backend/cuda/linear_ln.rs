//! The launcher of the product + residual LayerNorm cluster kernel (kernels/linear_mma_ln.cu,
//! ALBERT_CUDA_FUSED_LN=1, sm_90): `linear_forward_ln` is bit for bit `linear_forward_split`
//! with one split followed by `residual_layernorm_forward_to` with one partial, in one launch
//! whose clusters of N / 128 blocks each own 128 whole rows.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::costs::Cost;
use super::device::CudaDevice;
use super::kernels::dynamic_smem;
use super::launch::{LINEAR_THREADS, MMA_TILE};
use super::weights::{DeviceMatrix, DeviceView};
use crate::dtype::DType;
use crate::error::Result;

/// The portable cluster size: at most 8 blocks of 128 columns, so N <= 1024.
const MAX_CLUSTER: usize = 8;

impl CudaDevice {
    /// The checks of the LayerNorm products' operand types: the weight's 16-bit type T for the
    /// activation `inp` and the T copy, and the kernel `kn` loaded (`needs` says where it is).
    pub(super) fn check_ln_operands(
        &self,
        kn: &str,
        stored: DType,
        (inp, out_t): (&DeviceView, &DeviceMatrix),
        needs: &str,
    ) -> Result<()> {
        let ok = stored != DType::F32
            && inp.dtype() == stored
            && out_t.dtype() == stored
            && self.kernels.has(kn);
        self.check(kn, ok, || {
            format!(
                "needs T = {stored} activation and copy (got {} and {}) and {needs}",
                inp.dtype(),
                out_t.dtype()
            )
        })
    }

    /// Whether `linear_forward_ln` takes the product of a [M, K] T activation and an [N, K]
    /// weight of type `operands` into `splits` partials: ALBERT_CUDA_FUSED_LN is on, the kernel
    /// loaded (sm_90), one split, N a multiple of 128 up to 1024, and the grid as large as the
    /// split product's with 128x128 tiles (`product_tile` would not take 64x64 ones), so that
    /// no SM loses its block to the fusion.
    pub fn linear_ln_fits(&self, operands: DType, (m, n): (usize, usize), splits: usize) -> bool {
        let t = operands.name();
        self.fused_ln
            && splits == 1
            && n % MMA_TILE == 0
            && (1..=MAX_CLUSTER).contains(&(n / MMA_TILE))
            && m.div_ceil(MMA_TILE) * (n / MMA_TILE) >= self.sm_count
            && self
                .kernels
                .has(&format!("linear_forward_mma_ln_{t}_from_{t}"))
    }

    /// out = LayerNorm((inp @ weight^T + bias) + residual) * ln_weight + ln_bias, out_t = out
    /// rounded to T: a product feeding a residual LayerNorm, fused (where `linear_ln_fits`).
    /// `out` may be the residual buffer itself only through the kernel's aliasing rule; the
    /// scheduler passes distinct buffers.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_forward_ln(
        &self,
        out: &mut CudaSlice<f32>,                                 // [M, N]
        out_t: &mut DeviceMatrix,                                 // [M, N] as T
        inp: &DeviceView,                                         // [M, K] as T
        weight: &DeviceMatrix,                                    // [N, K]
        bias: Option<&CudaSlice<f32>>,                            // [N]
        residual: &CudaSlice<f32>,                                // [M, N]
        (ln_weight, ln_bias): (&CudaSlice<f32>, &CudaSlice<f32>), // [N]
        (m, k, n): (usize, usize, usize),
        eps: f32,
    ) -> Result<()> {
        let t = weight.suffix();
        let name = format!("linear_forward_mma_ln_{t}_from_{t}");
        let kn = name.as_str();
        let stored = weight.dtype();
        self.check_ln_operands(kn, stored, (inp, out_t), "sm_90 (ALBERT_CUDA_FUSED_LN)")?;
        let cluster = n / MMA_TILE;
        self.check(
            kn,
            n % MMA_TILE == 0 && (1..=MAX_CLUSTER).contains(&cluster),
            || {
                format!(
                    "N = {n} is not a multiple of {MMA_TILE} up to {}",
                    MAX_CLUSTER * MMA_TILE
                )
            },
        )?;
        let mkn = self.check_product(kn, (out.len(), inp.len()), weight, bias, (m, k, n), 1)?;
        self.check(kn, residual.len() >= m * n && out_t.len() >= m * n, || {
            format!("residual or T copy smaller than [{m}, {n}]")
        })?;
        self.check(kn, ln_weight.len() == n && ln_bias.len() == n, || {
            format!("LayerNorm parameters are not [{n}]")
        })?;
        if m == 0 {
            return Ok(());
        }
        self.check(kn, m.div_ceil(MMA_TILE) <= 65535, || {
            format!("M = {m} rows exceed the grid")
        })?;
        let cfg = LaunchConfig {
            grid_dim: (cluster as u32, m.div_ceil(MMA_TILE) as u32, 1),
            block_dim: (LINEAR_THREADS, 1, 1),
            shared_mem_bytes: dynamic_smem(kn).unwrap_or(0) as u32,
        };
        let size = stored.size_of();
        let cost = Cost::product_layernorm((m, k, n), (size, size, size), 1);
        let f = self.kernels.get(kn);
        let mut b = self.cluster_launcher(f, cluster as u32);
        b.arg(out);
        b.arg(out_t); // T (checked above)
        b.arg(inp).arg(weight).arg(bias); // T, T (checked above); a null bias: 64-bit zero
        b.arg(residual).arg(ln_weight).arg(ln_bias);
        b.arg(&mkn.0).arg(&mkn.1).arg(&mkn.2).arg(&eps);
        // SAFETY: arguments match linear_forward_mma_ln_{bf16,f16}_from_{bf16,f16} in
        // kernels/linear_mma_ln.cu in type and order (out f32, out_t / inp / weight of the
        // weight's type T, checked above; a null bias is a 64-bit zero pointer, which the kernel
        // tests); every buffer holds the [M, N], [M, K], [N, K] and [N] elements the grid touches
        // (checked); the grid is (N / 128, ceil(M / 128)) in clusters of N / 128 along x, which
        // the kernel requires (it writes nothing otherwise), 256 threads and the 128x128 T-input
        // tile's dynamic shared memory (opted in at load, kernels.rs).
        self.launched(kn, &cfg, cost, unsafe { b.launch(cfg) })
    }
}
