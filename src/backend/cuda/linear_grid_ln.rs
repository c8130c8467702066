//! The launcher of the cooperative product + residual LayerNorm kernel for small batches
//! (kernels/linear_mma_grid_ln.cu, ALBERT_CUDA_GRID_LN=1, sm_80+): `linear_forward_grid_ln` is
//! bit for bit `linear_forward_split` with 64x64 tiles followed by
//! `residual_layernorm_forward_to` over the same partials, in one launch whose blocks of each
//! 64-row group meet at a barrier (all of them resident: a cooperative launch) and then
//! normalize the group's rows.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::arena::ROW_GROUP;
use super::costs::Cost;
use super::device::CudaDevice;
use super::kernels::MMA_T_SMEM_SMALL;
use super::weights::{DeviceMatrix, DeviceView};
use crate::dtype::DType;
use crate::error::Result;

/// kernels/linear_mma_grid_ln.cu: 64x64 tiles (ROW_GROUP rows) of 128 threads, at most
/// GRID_LN_PARTS k shares, a row per warp (N <= 1024).
const TILE: usize = ROW_GROUP;
const THREADS: u32 = 128;
const MAX_PARTS: usize = 4;
const MAX_COLUMNS: usize = 1024;

impl CudaDevice {
    /// Whether `linear_forward_grid_ln` takes the product of a [M, K] T activation and an
    /// [N, K] weight of type `operands` into `splits` partials: ALBERT_CUDA_GRID_LN is on, the
    /// device takes cooperative launches, the kernel loaded, at most 4 splits, N <= 1024, and
    /// the grid (N / 64 x M / 64 x splits blocks) no larger than the SMs hold at once (the
    /// driver's occupancy): small batches.
    pub fn grid_ln_fits(&self, operands: DType, (m, n): (usize, usize), splits: usize) -> bool {
        let t = operands.name();
        let kn = format!("linear_forward_mma64_ln_{t}_from_{t}");
        let blocks = n.div_ceil(TILE) * m.div_ceil(TILE) * splits;
        self.grid_ln
            && self.cooperative
            && (1..=MAX_PARTS).contains(&splits)
            && (1..=MAX_COLUMNS).contains(&n)
            && m > 0
            && self.kernels.has(&kn)
            && blocks <= self.sm_count * self.resident_per_sm(&kn, THREADS, MMA_T_SMEM_SMALL)
    }

    /// out = LayerNorm(sum of the `splits` partials of inp @ weight^T + bias, + residual) *
    /// ln_weight + ln_bias, out_t = out rounded to T, the partials through `parts` [splits, M,
    /// N]; `sync` holds the row groups' barrier words (arena.rs `row_sync`). Where
    /// `grid_ln_fits`; a grid the SMs cannot hold is refused by the driver.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_forward_grid_ln(
        &self,
        out: &mut CudaSlice<f32>,                                 // [M, N]
        out_t: &mut DeviceMatrix,                                 // [M, N] as T
        parts: &mut CudaSlice<f32>,                               // [splits, M, N]
        inp: &DeviceView,                                         // [M, K] as T
        weight: &DeviceMatrix,                                    // [N, K]
        bias: Option<&CudaSlice<f32>>,                            // [N]
        residual: &CudaSlice<f32>,                                // [M, N]
        (ln_weight, ln_bias): (&CudaSlice<f32>, &CudaSlice<f32>), // [N]
        sync: &mut CudaSlice<u32>,                                // [2 ceil(M / 64)]
        (m, k, n): (usize, usize, usize),
        splits: usize,
        eps: f32,
    ) -> Result<()> {
        let t = weight.suffix();
        let name = format!("linear_forward_mma64_ln_{t}_from_{t}");
        let kn = name.as_str();
        let stored = weight.dtype();
        self.check_ln_operands(kn, stored, (inp, out_t), "sm_80 (ALBERT_CUDA_GRID_LN)")?;
        self.check(
            kn,
            (1..=MAX_PARTS).contains(&splits) && n <= MAX_COLUMNS,
            || format!("{splits} splits of N = {n}: at most {MAX_PARTS} and {MAX_COLUMNS}"),
        )?;
        let mkn = self.check_product(
            kn,
            (parts.len(), inp.len()),
            weight,
            bias,
            (m, k, n),
            splits,
        )?;
        self.check(
            kn,
            out.len() >= m * n && residual.len() >= m * n && out_t.len() >= m * n,
            || format!("output, residual or T copy smaller than [{m}, {n}]"),
        )?;
        self.check(kn, ln_weight.len() == n && ln_bias.len() == n, || {
            format!("LayerNorm parameters are not [{n}]")
        })?;
        let groups = m.div_ceil(TILE);
        self.check(kn, sync.len() >= 2 * groups, || {
            format!("{} barrier words for {groups} row groups", sync.len())
        })?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(TILE) as u32, groups as u32, splits as u32),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: MMA_T_SMEM_SMALL as u32,
        };
        let size = stored.size_of();
        let cost = Cost::product_layernorm((m, k, n), (size, size, size), splits);
        let f = self.kernels.get(kn);
        let mut b = self.cooperative_launcher(f);
        b.arg(out);
        b.arg(out_t); // T (checked above)
        b.arg(parts);
        b.arg(inp).arg(weight).arg(bias); // T, T (checked above); a null bias: 64-bit zero
        b.arg(residual).arg(ln_weight).arg(ln_bias).arg(sync);
        b.arg(&mkn.0).arg(&mkn.1).arg(&mkn.2).arg(&eps);
        // SAFETY: arguments match linear_forward_mma64_ln_{bf16,f16}_from_{bf16,f16} in
        // kernels/linear_mma_grid_ln.cu in type and order (out and parts f32, out_t / inp /
        // weight of the weight's type T, checked above; a null bias is a 64-bit zero pointer,
        // which the kernel tests; sync u32); every buffer holds the elements the grid touches
        // (checked: [splits, M, N] partials, two barrier words per row group); the grid is
        // (N / 64, M / 64, splits) blocks of 128 threads with the 64x64 T-input tile's dynamic
        // shared memory (opted in at load, kernels.rs), launched cooperatively: all of it
        // resident, or refused, so the row-group barrier's spin ends.
        self.launched(kn, &cfg, cost, unsafe { b.launch(cfg) })
    }
}
