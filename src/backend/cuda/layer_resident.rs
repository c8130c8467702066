//! The launcher of the resident layer kernel (kernels/layer_resident.cu, ALBERT_CUDA_RESIDENT=1):
//! every application of the shared layer for a small batch in one cooperative launch, the
//! layer's weights read into shared memory once and kept there. Bit for bit the T path's
//! launches (forward/layer.rs `layer_forward_t`) applied `layers` times.

use cudarc::driver::{DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig};

use super::arena::Arena;
use super::costs::{Cost, Shape};
use super::device::CudaDevice;
use super::launch::cuda_activation_id;
use super::weights::{DeviceLayer, DeviceMatrix};
use crate::dtype::DType;
use crate::error::Result;
use crate::model::config::AlbertConfig;

/// kernels/layer_resident.cu: RL_THREADS, RL_M, RL_NB, RL_KS, RL_MAX_SLOTS, RL_PARTS.
const THREADS: u32 = 128;
const MAX_ROWS: usize = 128;
const SLAB_ROWS: usize = 16;
const MAX_SHARE_K: usize = 768;
const MAX_SLOTS: usize = 7;
const MAX_PARTS: usize = 4;
/// kernels/layer_resident.cu layer_resident_smem(slots): 3 activation stages of 128 rows x 64 k
/// and `slots` slabs of 16 rows x 768 k, rows padded by 8 elements of 2 bytes.
pub(super) const fn layer_resident_smem(slots: usize) -> usize {
    (3 * MAX_ROWS * (64 + 8) + slots * SLAB_ROWS * (MAX_SHARE_K + 8)) * 2
}
/// What the kernels are opted in to at load (kernels.rs `dynamic_smem`): the most slots.
pub(super) const LAYER_RESIDENT_SMEM: usize = layer_resident_smem(MAX_SLOTS);
// The most slots fit sm_90's 227 KB per block (the attention's arrays lie over the stages);
// one more would not.
const _: () =
    assert!(LAYER_RESIDENT_SMEM <= 227 * 1024 && layer_resident_smem(MAX_SLOTS + 1) > 227 * 1024);

/// kernels/layer_resident.cu `LayerResidentArgs<T>`: device addresses, then the sizes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Args {
    weight: [u64; 4],
    bias: [u64; 4],
    ln_w: [u64; 2],
    ln_b: [u64; 2],
    hidden: u64,
    hidden_t: u64,
    qkv: u64,
    ctx: u64,
    parts: u64,
    attn: u64,
    attn_t: u64,
    ffn: u64,
    mask: u64,
    sync: u64,
    b: i32,
    s: i32,
    h: i32,
    i: i32,
    a: i32,
    splits_o: i32,
    splits_f: i32,
    layers: i32,
    act: i32,
    attention_blocks: i32,
    scale: f32,
    eps: f32,
}

// SAFETY: plain integers and floats with the layout of the kernel parameter (22 u64 device
// addresses, 10 i32, 2 f32: 224 bytes, no padding); the driver copies them into the launch's
// parameter space.
unsafe impl DeviceRepr for Args {}
// SAFETY: repr(C), every field an integer or float (any bits valid, zero included), no padding
// (the size test below: 22 x 8 + 12 x 4 = 224 bytes).
unsafe impl bytemuck::Zeroable for Args {}
unsafe impl bytemuck::Pod for Args {}

/// The K share of split z of `splits` (kernels/mma_tile.cuh KShare, 64-k chunks): its k count.
fn share_k(k: usize, splits: usize) -> usize {
    let chunks = k.div_ceil(64);
    (chunks.div_ceil(splits) * 64).min(k.div_ceil(64) * 64)
}

/// The launch's shape: grid blocks and slabs per block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct ResidentPlan {
    pub grid: usize,
    pub slots: usize,
}

impl CudaDevice {
    /// Whether the resident layer kernel takes `cfg`'s encoder on `m` tokens with weights of
    /// `dtype` and the output products in `splits` = (attention, FFN) partials: where
    /// ALBERT_CUDA_RESIDENT=1, cooperative launches, the kernel loaded (sm_80+ with room for
    /// its shared memory: sm_90), M <= 128, heads of 64, H <= 768, every K share <= 768 k, at
    /// most 4 partials, one layer group of one layer, and the slabs spread over one block per
    /// SM at most 7 to a block (the driver's occupancy asked for that shared memory).
    pub(super) fn resident_plan(
        &self,
        cfg: &AlbertConfig,
        dtype: DType,
        m: usize,
        (splits_o, splits_f): (usize, usize),
    ) -> Option<ResidentPlan> {
        let (h, i, a) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_attention_heads,
        );
        let kn = format!("layer_resident_{}", dtype.name());
        let shapes = (1..=MAX_ROWS).contains(&m)
            && cfg.head_size() == 64
            && h == 64 * a
            && h <= MAX_SHARE_K
            && i >= 8
            && i.is_multiple_of(8)
            && (1..=MAX_PARTS).contains(&splits_o)
            && (1..=MAX_PARTS).contains(&splits_f)
            && share_k(h, splits_o) <= MAX_SHARE_K
            && share_k(i, splits_f) <= MAX_SHARE_K
            && cfg.num_hidden_groups == 1
            && cfg.inner_group_num == 1;
        if !(self.resident_layers && self.cooperative && shapes && self.kernels.has(&kn)) {
            return None;
        }
        let hb = h.div_ceil(SLAB_ROWS);
        let slabs =
            (3 * h).div_ceil(SLAB_ROWS) + hb * splits_o + i.div_ceil(SLAB_ROWS) + hb * splits_f;
        let grid = self.sm_count;
        let slots = slabs.div_ceil(grid.max(1));
        if grid == 0 || slots > MAX_SLOTS {
            return None;
        }
        let per_sm = self
            .kernels
            .get(&kn)
            .occupancy_max_active_blocks_per_multiprocessor(
                THREADS,
                layer_resident_smem(slots),
                None,
            )
            .unwrap_or(0);
        (per_sm >= 1).then_some(ResidentPlan { grid, slots })
    }

    /// `layers` applications of `w` to `ar.hidden` (and its T copy) on `rows` sequences of `s`
    /// tokens, in one cooperative launch of `plan` (from `resident_plan`): `ar.hidden` and the
    /// T copy end as `layer_forward_t` leaves them after as many applications; qkv, ctx, the
    /// partials, attn and ffn are its scratch as theirs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn layer_resident(
        &self,
        ar: &mut Arena,
        w: &DeviceLayer,
        cfg: &AlbertConfig,
        (rows, s): (usize, usize),
        (splits_o, splits_f): (usize, usize),
        plan: ResidentPlan,
    ) -> Result<()> {
        let (h, i, a) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_attention_heads,
        );
        let (m, layers) = (rows * s, cfg.num_hidden_layers);
        let dtype = w.qkv.weight.dtype();
        let kn = format!("layer_resident_{}", dtype.name());
        let kn = kn.as_str();
        let st = &self.stream;
        let t = ar.t.as_mut();
        let t = match t {
            Some(t) => t,
            None => return Err(self.err(kn, "the arena has no T copies")),
        };
        // Every T operand of the weight's type, every buffer as large as the pass touches.
        let t_ok = |x: &DeviceMatrix, n: usize| x.dtype() == dtype && x.len() >= n;
        let mats = [
            (&w.qkv.weight, 3 * h * h),
            (&w.attn_output.weight, h * h),
            (&w.ffn.weight, i * h),
            (&w.ffn_output.weight, h * i),
        ];
        self.check(kn, matches!(dtype, DType::BF16 | DType::F16), || {
            format!("weights of {}: bf16 or f16 only", dtype.name())
        })?;
        self.check(kn, mats.iter().all(|(x, n)| t_ok(x, *n)), || {
            "a weight is not of the layer's type or not its [N, K]".to_string()
        })?;
        let acts = [
            (&t.hidden, m * h),
            (&t.ctx, m * h),
            (&t.attn, m * h),
            (&ar.qkv, 3 * m * h),
            (&ar.ffn, m * i),
        ];
        self.check(kn, acts.iter().all(|(x, n)| t_ok(x, *n)), || {
            format!(
                "a T activation is not {} or smaller than the pass (M = {m})",
                dtype.name()
            )
        })?;
        let parts = splits_o.max(splits_f);
        self.check(
            kn,
            ar.hidden.len() >= m * h
                && ar.attn.len() >= m * h
                && ar.proj.len() >= parts * m * h
                && ar.mask.len() >= m
                && ar.row_sync.len() >= 2,
            || format!("an f32 buffer of the arena is smaller than the pass (M = {m}, {parts} partials)"),
        )?;
        let addr = |x: &DeviceMatrix| x.device_addr(st);
        let args = Args {
            weight: mats.map(|(x, _)| addr(x)),
            bias: [
                &w.qkv.bias,
                &w.attn_output.bias,
                &w.ffn.bias,
                &w.ffn_output.bias,
            ]
            .map(|b| b.device_ptr(st).0),
            ln_w: [&w.attn_norm.weight, &w.output_norm.weight].map(|x| x.device_ptr(st).0),
            ln_b: [&w.attn_norm.bias, &w.output_norm.bias].map(|x| x.device_ptr(st).0),
            hidden: ar.hidden.device_ptr_mut(st).0,
            hidden_t: addr(&t.hidden),
            qkv: addr(&ar.qkv),
            ctx: addr(&t.ctx),
            parts: ar.proj.device_ptr_mut(st).0,
            attn: ar.attn.device_ptr_mut(st).0,
            attn_t: addr(&t.attn),
            ffn: addr(&ar.ffn),
            mask: ar.mask.device_ptr(st).0,
            sync: ar.row_sync.device_ptr_mut(st).0,
            b: rows as i32,
            s: s as i32,
            h: h as i32,
            i: i as i32,
            a: a as i32,
            splits_o: splits_o as i32,
            splits_f: splits_f as i32,
            layers: layers as i32,
            act: cuda_activation_id(Some(cfg.hidden_act)),
            attention_blocks: plan.grid as i32,
            scale: (1.0 / (cfg.head_size() as f64).sqrt()) as f32,
            eps: cfg.layer_norm_eps,
        };
        let cfg_l = LaunchConfig {
            grid_dim: (plan.grid as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: layer_resident_smem(plan.slots) as u32,
        };
        let size = dtype.size_of();
        let per_layer =
            2.0 * (m * h) as f64 * (3 * h + h + 2 * i) as f64 + 4.0 * (m * s * h) as f64;
        let cost = Cost {
            flops: per_layer * layers as f64,
            // The layer's weights read once, the input's f32 and T copies read, written back.
            bytes: ((4 * h * h + 2 * h * i) * size + 2 * m * h * (4 + size) + m * 4) as f64,
            shape: Shape::Encoder { m, layers },
        };
        let f = self.kernels.get(kn);
        let mut b = self.cooperative_launcher(f);
        b.arg_struct(&args);
        // SAFETY: `Args` is layer_resident_{bf16,f16}'s one parameter (LayerResidentArgs<T>,
        // kernels/layer_resident.cu) in layout; every address is a live buffer of the arena or
        // the layer, of the kernel's T where it reads T (checked above) and at least as large
        // as the pass touches (checked above: [M, 3H], [M, H], [M, I], the partials, two barrier
        // words); the grid is `resident_plan`'s (its slabs fit the slots, the driver's occupancy
        // holds one block per SM with that shared memory), launched cooperatively: all resident,
        // or refused, so the grid barrier's spin ends. Everything runs on this one stream, so
        // the addresses taken without cudarc's event guards are ordered by the stream.
        self.launched(kn, &cfg_l, cost, unsafe { b.launch(cfg_l) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_have_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<Args>(), 224);
        assert_eq!(std::mem::align_of::<Args>(), 8);
    }

    #[test]
    fn shares_follow_kshare() {
        assert_eq!(share_k(768, 1), 768);
        assert_eq!(share_k(3072, 4), 768);
        assert_eq!(share_k(3072, 3), 1024);
        assert_eq!(share_k(264, 2), 192); // 5 chunks: 3 + 2
        assert_eq!(share_k(100, 1), 128);
    }
}
