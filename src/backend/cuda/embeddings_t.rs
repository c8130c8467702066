//! The launcher of kernels/embeddings_project.cu: embeddings, their LayerNorm and the E -> H
//! projection in one kernel, writing the projection's f32 output and its T copy (the first
//! layer's QKV product reads T). The same results as the unfused chain (`embeddings_forward`,
//! `linear_forward` with the LayerNorm's output rounded to T as the product stages it,
//! `round_to`), in one launch instead of three and without the [M, E] round trip through
//! global memory.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::costs::Cost;
use super::device::CudaDevice;
use super::launcher::Launch;
use super::weights::{DeviceLinear, DeviceMatrix, DeviceNorm};
use crate::dtype::DType;
use crate::error::Result;

/// The one embedding size of the kernel (EMB_E): every ALBERT checkpoint's.
const EMB_E: usize = 128;
/// Output tile and threads per block (TileSmall in kernels/mma_tile.cuh).
const TILE: usize = 64;
const THREADS: u32 = 128;

impl CudaDevice {
    /// Whether `embeddings_project` can run tables and projection stored as `dtype` with
    /// embedding size `e` (else the scheduler launches the three unfused kernels).
    pub fn embeddings_project_fits(&self, dtype: DType, e: usize) -> bool {
        dtype != DType::F32
            && e == EMB_E
            && self
                .kernels
                .has(&format!("embeddings_project_{}", dtype.name()))
    }

    /// out[M, H] = LayerNorm(word[ids] + token_type[types] + position[m % S]) rounded to T,
    /// times projection^T, plus its bias; out_t = out rounded to T. Ids checked on the host.
    #[allow(clippy::too_many_arguments)]
    pub fn embeddings_project(
        &self,
        out: &mut CudaSlice<f32>,                         // [M, H]
        out_t: &mut DeviceMatrix,                         // [M, H] as T
        input_ids: &CudaSlice<i32>,                       // [M]
        token_type_ids: &CudaSlice<i32>,                  // [M]
        [word, position, token_type]: [&DeviceMatrix; 3], // [V, E], [P, E], [T, E] as T
        norm: &DeviceNorm,                                // [E]
        projection: &DeviceLinear,                        // [H, E] as T, bias [H]
        (m, s): (usize, usize),
        eps: f32,
    ) -> Result<()> {
        let (e, h) = (projection.in_features, projection.out_features);
        let t = projection.weight.dtype();
        let name = format!("embeddings_project_{}", t.name());
        let kn = name.as_str();
        self.check(kn, self.embeddings_project_fits(t, e), || {
            format!("needs bf16/f16 weights, E = {EMB_E} (got {t}, E = {e}) and sm_80+")
        })?;
        self.check(
            kn,
            [word, position, token_type, &*out_t]
                .iter()
                .all(|x| x.dtype() == t),
            || format!("tables and T output must be {t}, like the projection"),
        )?;
        self.check(
            kn,
            input_ids.len() >= m && token_type_ids.len() >= m && out_t.len() >= m * h,
            || format!("buffers smaller than M = {m} rows"),
        )?;
        self.check(kn, norm.weight.len() == e && norm.bias.len() == e, || {
            format!("LayerNorm parameters are not [{e}]")
        })?;
        let lens = (out.len(), m * e); // x [M, E] lives in shared memory only
        let (m_, _, h_) = self.check_product(
            kn,
            lens,
            &projection.weight,
            Some(&projection.bias),
            (m, e, h),
            1,
        )?;
        let s_ = self.dim(kn, "S", s)?;
        if m == 0 || h == 0 || s == 0 {
            return Ok(()); // a zero-sized grid is a launch error; there is nothing to do
        }
        let cfg = LaunchConfig {
            grid_dim: (h.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0, // static: two 64 x (128 + 8) tiles, 34,816 bytes
        };
        // The projection's product, plus the ids and the word and position rows it gathers, and
        // the T copy it also writes.
        let size = t.size_of();
        let mut cost = Cost::product((m, e, h), (size, size, 4), 1);
        cost.bytes += (m * 8 + (m + s) * e * size + m * h * size) as f64;
        let f = self.kernels.get(kn);
        let mut b = self.launcher(f);
        b.arg(out);
        push_t(&mut b, out_t);
        b.arg(input_ids).arg(token_type_ids);
        for table in [word, position, token_type] {
            push_t(&mut b, table);
        }
        b.arg(&norm.weight).arg(&norm.bias);
        push_t(&mut b, &projection.weight);
        b.arg(&projection.bias).arg(&m_).arg(&s_).arg(&h_).arg(&eps);
        // SAFETY: arguments match embeddings_project_{bf16,f16} in kernels/embeddings_project.cu
        // in type and order (out, out_t, ids, types, word, position, token_type, LayerNorm
        // weight and bias, projection weight and bias, M, S, N, eps); every T buffer has the
        // kernel's type and the sizes were checked above (E = 128, the kernel's constant); ids
        // were checked against the tables by Inputs::validate and S against the position table.
        // Unaligned tables or weight are legal: the kernel then loads them element by element.
        self.launched(kn, &cfg, cost, unsafe { b.launch(cfg) })
    }
}

/// Pushes a T buffer's device pointer (an f32 one is refused before any launch).
fn push_t<'a>(b: &mut Launch<'a>, x: &'a DeviceMatrix) {
    match x {
        DeviceMatrix::BF16(x) => b.arg(x),
        DeviceMatrix::F16(x) => b.arg(x),
        DeviceMatrix::F32(x) => b.arg(x),
    };
}
