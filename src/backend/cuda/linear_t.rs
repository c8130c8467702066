//! Launchers of the tensor-core products whose activations are stored as the weight's type T
//! (bf16/f16) instead of f32: `linear_forward_to` writes its output as T (the fused QKV product
//! for the tensor-core attention, the FFN-in product), `linear_forward_from` reads its input as
//! T (the FFN-out product), `linear_forward_t` either side or both (every encoder product when
//! the LayerNorms and the attention store T copies, forward.rs). All are bit-identical to the f32-storage path: the tensor-core
//! product rounds its f32 activation to T (RNE) as it stages it, which is exactly the rounding
//! of storing it as T. transformers in bf16 stores these activations in bf16 too.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::costs::Cost;
use super::device::CudaDevice;
use super::kernels::dynamic_smem;
use super::launch::{cuda_activation_id, LINEAR_THREADS, MMA_TILE};
use super::tma::describable;

/// kernels/linear_mma.cu TileSmall: 64x64 output tiles, 128 threads (T activations only).
const MMA_TILE_SMALL: usize = 64;
const MMA_THREADS_SMALL: u32 = 128;
/// kernels/linear_wgmma.cu WgWide: 128x256 output tiles, 256 threads (ALBERT_CUDA_WGMMA_WIDE).
const WG_TILE_N_WIDE: usize = 256;
/// kernels/linear_tma.cu: the TMA products' producer after the wgmma tile's warpgroups, a warp
/// (128x128, 64x64) or a warpgroup (128x256 and ping-pong 128x128: its registers go to the
/// consumers); none for the other kernels.
fn tma_producer_threads(kernel: &str) -> u32 {
    if kernel.contains("_wide_tma_") || kernel.contains("_pingpong_tma_") {
        128
    } else if kernel.contains("_tma_") {
        32
    } else {
        0
    }
}

/// K per split of a split-K product: 24 k tiles of 32 keep each block's pipeline busy.
/// ALBERT_CUDA_K_PER_SPLIT (a multiple of 64) overrides it for the whole process, to measure
/// other splits (scripts/gpu-check: 384 splits the attention output in 2 as well; 1536 splits
/// the FFN output in 2 instead of 4).
const K_PER_SPLIT: usize = 768;
/// At most this many partial sums (the LayerNorm reads them all).
const MAX_SPLITS: usize = 4;
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

    /// A persistent grid's blocks per split: the SMs times the blocks of `kn` the driver can keep
    /// resident on one (its occupancy, asked once per kernel), shared among the splits, at least
    /// one each. Every block's tiles are computed the same way, so this changes no bits.
    fn persistent_blocks(&self, kn: &str, threads: u32, smem: usize, splits: usize) -> usize {
        let per_sm = self.resident_per_sm(kn, threads, smem).max(1);
        (self.sm_count * per_sm / splits.max(1)).max(1)
    }

    /// Blocks of `kn` (`threads` each, `smem` bytes of dynamic shared memory) the driver can
    /// keep resident on one SM: its occupancy, asked once per kernel (0 if it says none, or
    /// cannot say).
    pub(super) fn resident_per_sm(&self, kn: &str, threads: u32, smem: usize) -> usize {
        let mut resident = self.resident.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&n) = resident.get(kn) {
            return n as usize;
        }
        let n = self
            .kernels
            .get(kn)
            .occupancy_max_active_blocks_per_multiprocessor(threads, smem, None)
            .unwrap_or(0);
        resident.insert(kn.to_string(), n);
        n as usize
    }

    /// The checks before a T-activation product: `stored` (the T side) has the weight's 16-bit
    /// type and the kernel exists, then `check_product`'s sizes; the launch grid for `tile`
    /// (rows; columns `tile_n`) and `splits`, or None when the output is empty.
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
        (tile, tile_n, splits): (usize, usize, usize),
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
        let lens = (out_len, inp_len);
        let mkn = self.check_product(kn, lens, weight, bias, (m, k, n), splits)?;
        if m == 0 || n == 0 {
            return Ok(None); // a zero-sized grid is a launch error; there is nothing to do
        }
        self.check(kn, m.div_ceil(tile) <= 65535 && splits <= 65535, || {
            format!("M = {m} rows or {splits} splits exceed the grid")
        })?;
        let threads = if tile == MMA_TILE {
            LINEAR_THREADS
        } else {
            MMA_THREADS_SMALL
        } + tma_producer_threads(kn);
        let smem = dynamic_smem(kn).unwrap_or(0);
        // The TMA kernels number a split's output tiles in x (kernels/linear_tma.cu), one block
        // per tile or, persistent, as many blocks as fit on the SMs, each taking tiles in turn.
        let grid_dim = match tma_producer_threads(kn) {
            0 => (
                n.div_ceil(tile_n) as u32,
                m.div_ceil(tile) as u32,
                splits as u32,
            ),
            _ => {
                let work = m.div_ceil(tile) * n.div_ceil(tile_n);
                let blocks = match self.persistent {
                    true => work.min(self.persistent_blocks(kn, threads, smem, splits)),
                    false => work,
                };
                self.check(kn, work <= i32::MAX as usize, || {
                    format!("{work} output tiles exceed the grid")
                })?;
                (blocks as u32, 1, splits as u32)
            }
        };
        let cfg = LaunchConfig {
            grid_dim,
            block_dim: (threads, 1, 1),
            shared_mem_bytes: smem as u32,
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

    /// How many k shares (f32 partial sums) the products that feed a residual + LayerNorm
    /// split K into (`linear_forward_split`): a function of K alone, so that a sequence's
    /// results do not depend on the batch it runs in (a different number of partials would
    /// change the summation order). albert-base: 1 for the attention output (K = 768), 4 for
    /// the FFN output (K = 3072). At M = 128 the [M, 768] output has 24 64x64 tiles: the split
    /// gives 96 blocks of 24 k tiles instead of 24 blocks of 96.
    pub fn output_splits(k: usize) -> usize {
        (k / k_per_split()).clamp(1, MAX_SPLITS)
    }

    /// The tensor-core product with either side stored as the weight's type T (bf16/f16) and
    /// the other f32, or both T: `linear_forward_mma{,64}_{t}[_from_{t}][_to_{t}]`. Every element
    /// is bit-identical to the f32-storage path's (rounded to T where it is stored as T), with
    /// either tile shape. Both sides f32 is linear_forward's job: refused here.
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
        self.linear_t_launch(out, inp, weight, bias, (m, k, n), act, 1)
    }

    /// A split-K product on a T activation: parts[z] = inp[:, share z of K] @ weight[:, share
    /// z]^T, plus the bias in parts[0]; the consumer adds them in order z = 0, 1, ...
    /// (`residual_layernorm_forward_to` with `parts = splits`). No activation: it would not
    /// distribute over the sum.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_forward_split(
        &self,
        parts: &mut CudaSlice<f32>,    // [splits, M, N]
        inp: &DeviceView,              // [M, K] as T
        weight: &DeviceMatrix,         // [N, K]
        bias: Option<&CudaSlice<f32>>, // [N]
        m: usize,
        k: usize,
        n: usize,
        splits: usize,
    ) -> Result<()> {
        let t = weight.suffix();
        let kn = format!("linear_forward_mma_{t}_from_{t}");
        self.check(&kn, inp.dtype() != DType::F32 && splits >= 1, || {
            format!("split-K needs a T activation and at least one split (got {splits})")
        })?;
        self.linear_t_launch(parts.into(), inp, weight, bias, (m, k, n), None, splits)
    }

    /// 64x64 tiles (T activations) where 128x128 ones would leave SMs without a block: the
    /// tile shape changes no bits (kernels/linear_mma.cu).
    fn product_tile(&self, inp: DType, (m, n): (usize, usize), splits: usize) -> usize {
        let blocks = m.div_ceil(MMA_TILE) * n.div_ceil(MMA_TILE) * splits;
        match inp != DType::F32 && blocks < self.sm_count {
            true => MMA_TILE_SMALL,
            false => MMA_TILE,
        }
    }

    /// The product's kernel and its tile (rows, columns): wgmma where asked for
    /// (ALBERT_CUDA_WGMMA; with ALBERT_CUDA_WGMMA_WIDE 128x256 tiles where they fill two
    /// waves; with ALBERT_CUDA_TMA every tile staged by TMA where `tma_ok`: both operands
    /// describable by a tensor map; with ALBERT_CUDA_PINGPONG the other 128x128 ones by the
    /// ping-pong kernels), else the k-64 128x128 kernel (ALBERT_CUDA_K64) or the 8-stage 64x64 one
    /// (ALBERT_CUDA_DEEP), else mma.sync, at `product_tile`'s size; the experiments take T inputs only and fall back where their
    /// kernels did not load. Only the taken path's name is built (every eager launch runs this).
    fn product_kernel(
        &self,
        inp: DType,
        (t, from, to): (&str, &str, &str),
        (m, n): (usize, usize),
        splits: usize,
        tma_ok: bool,
    ) -> (String, usize, usize) {
        let tile = self.product_tile(inp, (m, n), splits);
        let name = |kind: &str| format!("linear_forward_{kind}_{t}{from}{to}");
        let t_in = !from.is_empty();
        if self.wgmma && t_in {
            let wide_blocks = m.div_ceil(MMA_TILE) * n.div_ceil(WG_TILE_N_WIDE) * splits;
            if self.wgmma_wide && tile == MMA_TILE && wide_blocks >= 2 * self.sm_count {
                let k = name("wgmma_wide_tma");
                if self.tma && tma_ok && self.kernels.has(&k) {
                    return (k, tile, WG_TILE_N_WIDE);
                }
                let k = name("wgmma_wide");
                if self.kernels.has(&k) {
                    return (k, tile, WG_TILE_N_WIDE);
                }
            }
            // Ping-pong needs a persistent grid (a block's second tile is its second
            // consumer's); the device turns persistence on with it.
            if self.pingpong && tile == MMA_TILE && self.tma && tma_ok {
                let k = name("wgmma_pingpong_tma");
                if self.kernels.has(&k) {
                    return (k, tile, tile);
                }
            }
            let kind = if tile == MMA_TILE { "wgmma" } else { "wgmma64" };
            let k = name(&format!("{kind}_tma"));
            if self.tma && tma_ok && self.kernels.has(&k) {
                return (k, tile, tile);
            }
            let k = name(kind);
            if self.kernels.has(&k) {
                return (k, tile, tile);
            }
        }
        if self.k64 && t_in && tile == MMA_TILE {
            let k = name("mma_k64");
            if self.kernels.has(&k) {
                return (k, tile, tile);
            }
        }
        // One block per SM either way (147 KB): only where the grid has no more blocks than SMs.
        let small_blocks = m.div_ceil(MMA_TILE_SMALL) * n.div_ceil(MMA_TILE_SMALL) * splits;
        if self.deep && tile == MMA_TILE_SMALL && small_blocks <= self.sm_count {
            let k = name("mma64_deep");
            if self.kernels.has(&k) {
                return (k, tile, tile);
            }
        }
        (
            name(if tile == MMA_TILE { "mma" } else { "mma64" }),
            tile,
            tile,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn linear_t_launch(
        &self,
        out: DeviceOut,                // [splits, M, N], f32 or T (T: splits = 1)
        inp: &DeviceView,              // [M, K], f32 or T
        weight: &DeviceMatrix,         // [N, K]
        bias: Option<&CudaSlice<f32>>, // [N]
        (m, k, n): (usize, usize, usize),
        act: Option<Activation>,
        splits: usize,
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
        let addrs = (
            inp.device_addr(&self.stream),
            weight.device_addr(&self.stream),
        );
        let tma_ok =
            self.tma && !from.is_empty() && describable(addrs.0, k) && describable(addrs.1, k);
        let (name, tile, tile_n) =
            self.product_kernel(inp.dtype(), (t, &from, &to), (m, n), splits, tma_ok);
        let kn = name.as_str();
        self.check(kn, !(from.is_empty() && to.is_empty()), || {
            "both sides are f32: use linear_forward".into()
        })?;
        self.check(
            kn,
            splits == 1 || (out.dtype() == DType::F32 && act.is_none()),
            || "split-K partials are f32, without an activation".into(),
        )?;
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
        let shape = (m, k, n);
        let Some(c) = self.check_linear_t(
            kn,
            stored,
            lens,
            weight,
            bias,
            shape,
            act,
            (tile, tile_n, splits),
        )?
        else {
            return Ok(());
        };
        let sizes = [inp.dtype(), weight.dtype(), out.dtype()].map(DType::size_of);
        let cost = Cost::product(shape, sizes.into(), splits);
        // The TMA kernels take the operands as tensor maps (boxes of the kernel's tile).
        let maps = match kn.contains("_tma_") {
            true => Some((
                self.tensor_map(
                    &format!("{kn} input"),
                    addrs.0,
                    inp.dtype(),
                    (m, k),
                    tile as u32,
                )?,
                self.tensor_map(
                    &format!("{kn} weight"),
                    addrs.1,
                    weight.dtype(),
                    (n, k),
                    tile_n as u32,
                )?,
            )),
            false => None,
        };
        let f = self.kernels.get(kn);
        let mut b = self.launcher(f);
        match out {
            DeviceOut::F32(o) => b.arg(o),
            DeviceOut::BF16(o) => b.arg(o),
            DeviceOut::F16(o) => b.arg(o),
        };
        if let Some((amap, wmap)) = &maps {
            b.arg(amap).arg(wmap);
        } else {
            b.arg(inp).arg(weight);
        }
        b.arg(bias);
        b.arg(&c.mkn.0).arg(&c.mkn.1).arg(&c.mkn.2).arg(&c.act);
        // SAFETY: arguments match linear_forward_mma{,64,_k64}_{t}[_from_{t}][_to_{t}] in
        // kernels/linear_mma.cu and linear_forward_wgmma{,64,_wide}_{t}_from_{t}[_to_{t}] in
        // kernels/linear_wgmma.cu (the same parameter list), or, for the {,64,_wide}_tma_ kernels of
        // kernels/linear_tma.cu, the same with inp and weight replaced by their tensor maps
        // (built above for exactly these matrices, boxes of the kernel's tile rows and columns:
        // the kernel reads only through them, and the copy engine stays inside the described
        // matrices), in type and order: the name is
        // built from the storage types of out and inp, each T side has the weight's type
        // (checked above and by check_linear_t), a null bias is a 64-bit zero pointer, which the
        // kernel tests; sizes checked there too, out for all `splits` partials (grid z). The 64
        // and wgmma kernels exist for T inputs only, which product_tile and `wgmma` require;
        // block size (256 threads for 128 rows) and dynamic shared memory (by name) follow the
        // kernel, the grid its tile (tile rows, tile_n columns).
        // A T view that is not 16-byte aligned is legal: the kernel then stages A with plain
        // loads.
        self.launched(kn, &c.cfg, cost, unsafe { b.launch(c.cfg) })
    }
}

/// K_PER_SPLIT, or ALBERT_CUDA_K_PER_SPLIT where it is a positive multiple of 64 (the split-K
/// chunk, kernels/mma_tile.cuh MMA_SPLIT_K); read once, so every product and the arena agree.
fn k_per_split() -> usize {
    static V: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        let wanted = std::env::var("ALBERT_CUDA_K_PER_SPLIT").ok();
        parse_k_per_split(wanted.as_deref()).unwrap_or_else(|bad| {
            eprintln!(
                "albert: ignoring ALBERT_CUDA_K_PER_SPLIT={bad} (not a positive multiple of 64)"
            );
            K_PER_SPLIT
        })
    })
}

/// The override's value: None or empty = K_PER_SPLIT; Err(text) when it is no positive
/// multiple of 64.
fn parse_k_per_split(v: Option<&str>) -> std::result::Result<usize, String> {
    match v.map(str::trim) {
        None | Some("") => Ok(K_PER_SPLIT),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n > 0 && n % 64 == 0 => Ok(n),
            _ => Err(t.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_per_split_override() {
        assert_eq!(parse_k_per_split(None), Ok(768));
        assert_eq!(parse_k_per_split(Some(" ")), Ok(768));
        assert_eq!(parse_k_per_split(Some("384")), Ok(384));
        assert_eq!(parse_k_per_split(Some("100")), Err("100".into()));
        assert_eq!(parse_k_per_split(Some("0")), Err("0".into()));
        assert_eq!(parse_k_per_split(Some("-64")), Err("-64".into()));
    }
}
