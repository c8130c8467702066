//! What the GPU tests share: the albert-base-shaped config, uploads and downloads, the error
//! check, random products, the fused QKV layout, random inputs and bit-for-bit comparison.

pub use crate::common::model_dir;
pub use crate::Ctx;
pub use albert::backend::cpu::reference as cpu;
pub use albert::backend::cuda::weights::{DeviceLinear, DeviceMatrix, DeviceNorm, DeviceView};
pub use albert::backend::cuda::CudaAlbert;
pub use albert::model::activation::Activation;
pub use albert::rng::Rng;
pub use albert::{io, Albert, DType, ForwardOptions, Tensor};
pub use cudarc::driver::CudaSlice;

pub const DTYPES: [DType; 3] = [DType::F32, DType::BF16, DType::F16];

/// albert-base-v2's sizes with 2 layer applications instead of 12: every launch a pass
/// makes (the first application, whose QKV reads the embedding projection's copy, and the
/// shared layer again after it; the other 10 repeat the second's launches) at a sixth of
/// the work, so that the whole-model tests also run on the fake driver (dev/fakecuda).
pub fn base_shaped() -> albert::AlbertConfig {
    albert::AlbertConfig {
        num_hidden_layers: 2,
        ..albert::AlbertConfig::base_v2()
    }
}

/// Rows of 128 tokens that give albert-base's products the tiles 32 rows give them on a
/// 132-SM H100/H200 (128x128, and 128x256 for wgmma wide, in two or more waves): 32 there,
/// proportionally fewer where there are fewer SMs (the fake driver's FAKECUDA_SMS=8 runs
/// these tests at 2 rows: dev/fakecuda).
pub fn large_rows(dev: &Ctx) -> usize {
    (32 * dev.sm_count).div_ceil(132).clamp(2, 32)
}

pub fn up(dev: &Ctx, v: &[f32]) -> CudaSlice<f32> {
    dev.stream.clone_htod(v).unwrap()
}

pub fn up_i32(dev: &Ctx, v: &[i32]) -> CudaSlice<i32> {
    dev.stream.clone_htod(v).unwrap()
}

/// An output buffer full of NaN, so an element the kernel does not write fails the check.
pub fn poisoned(dev: &Ctx, n: usize) -> CudaSlice<f32> {
    up(dev, &vec![f32::NAN; n])
}

/// A bf16/f16 device matrix, widened to f32.
pub fn down_t(dev: &Ctx, m: &DeviceMatrix) -> Vec<f32> {
    let got: Vec<f32> = match m {
        DeviceMatrix::BF16(x) => {
            let v = dev.stream.clone_dtoh(x).unwrap();
            v.iter().map(|e| e.to_f32()).collect()
        }
        DeviceMatrix::F16(x) => {
            let v = dev.stream.clone_dtoh(x).unwrap();
            v.iter().map(|e| e.to_f32()).collect()
        }
        DeviceMatrix::F32(x) => dev.stream.clone_dtoh(x).unwrap(),
    };
    dev.synchronize().unwrap();
    got
}

pub fn down(dev: &Ctx, v: &CudaSlice<f32>) -> Vec<f32> {
    let out = dev.stream.clone_dtoh(v).unwrap();
    dev.synchronize().unwrap();
    out
}

/// Relative Frobenius error, and the worst element, llm.c style; panics past `tol`.
pub fn check(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let (mut num, mut den, mut worst, mut at) = (0f64, 0f64, 0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite(),
            "{what}: element {i} is {g} (not written or overflowed)"
        );
        let d = (*g as f64 - *w as f64).abs();
        num += d * d;
        den += (*w as f64) * (*w as f64);
        if d > worst {
            worst = d;
            at = i;
        }
    }
    let rel = (num / den.max(1e-300)).sqrt();
    assert!(
        rel <= tol,
        "{what}: relative error {rel:.3e} > {tol:.0e}; worst element {at}: {} vs {}",
        got[at],
        want[at]
    );
}

/// A random product in `dtype`: the activation inp [M, K] (f32, in +-2), the weight [N, K]
/// (rounded to dtype), the bias [N], and the CPU reference on inp rounded to dtype, with
/// `act` applied: what a T-activation product must give.
pub struct ProductCase {
    pub inp: Vec<f32>,
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub want: Vec<f32>,
}
pub fn product_case(
    r: &mut Rng,
    dtype: DType,
    (m, k, n): (usize, usize, usize),
    act: Option<Activation>,
) -> ProductCase {
    let inp = r.vec(m * k, 2.0);
    let rounded: Vec<f32> = inp.iter().map(|&x| dtype.round(x)).collect();
    let w: Vec<f32> = r.vec(n * k, 0.1).iter().map(|&x| dtype.round(x)).collect();
    let bias = r.vec(n, 0.5);
    let mut want = vec![0f32; m * n];
    cpu::linear_forward(&mut want, &rounded, &w, Some(&bias), m, k, n, dtype);
    if let Some(a) = act {
        cpu::activation_forward(&mut want, a);
    }
    ProductCase { inp, w, bias, want }
}

/// q, k, v ([rows, H] each) side by side in one [rows, 3H] buffer: the fused QKV layout.
pub fn fuse_qkv(q: &[f32], k: &[f32], v: &[f32], h: usize) -> Vec<f32> {
    q.chunks(h)
        .zip(k.chunks(h))
        .zip(v.chunks(h))
        .flat_map(|((a, b), c)| a.iter().chain(b).chain(c).copied())
        .collect()
}

/// Runs dev.attention_forward_with on q, k, v laid out as the fused QKV product writes them.
#[allow(clippy::too_many_arguments)]
pub fn attention_on_device(
    dev: &Ctx,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    (b, s, a, d): (usize, usize, usize, usize),
    operands: DType,
    mma: bool,
) -> Vec<f32> {
    let h = a * d;
    let qkv = up(dev, &fuse_qkv(q, k, v, h));
    let mut out = poisoned(dev, b * s * h);
    dev.attention_forward_with(
        &mut out,
        &DeviceView::F32(qkv.slice(..)),
        &DeviceView::F32(qkv.slice(h..)),
        &DeviceView::F32(qkv.slice(2 * h..)),
        &up(dev, mask),
        b,
        s,
        a,
        d,
        3 * h,
        operands,
        mma,
    )
    .unwrap();
    down(dev, &out)
}

/// Batch rows, cycling: unpadded; padded after s/2 + 1 tokens; fully padded (uniform); one
/// real token; a masked run of 70 keys before the real ones, then padding (for s > 80).
pub fn attention_mask(b: usize, s: usize) -> Vec<f32> {
    (0..b * s)
        .map(|i| match ((i / s) % 5, i % s) {
            (0, _) => 0.0,
            (1, j) if j <= s / 2 => 0.0,
            (3, 0) => 0.0,
            (4, j) if (70..s - s / 8).contains(&j) => 0.0,
            _ => cpu::MASKED,
        })
        .collect()
}

/// Random ids, token types and a padded mask (each row's length drawn in [1, S]), so a
/// stale input buffer (ids, types or mask) shows in the outputs.
pub fn random_inputs(r: &mut Rng, rows: usize, s: usize, vocab: usize) -> albert::Inputs {
    let n = rows * s;
    let ids = (0..n)
        .map(|_| 5 + r.below(vocab as u64 - 5) as i64)
        .collect();
    let types = (0..n).map(|_| r.below(2) as i64).collect();
    let mut mask = vec![0i64; n];
    for row in mask.chunks_mut(s) {
        let len = 1 + r.below(s as u64) as usize;
        row[..len].fill(1);
    }
    albert::Inputs::new(ids, Some(mask), Some(types), &[rows, s]).unwrap()
}

/// Three passes of `engine` on `inputs` (the warm-up, the CUDA graph's capture and a replay),
/// each bit for bit `want`; `what` names the case, and the pass is appended to it.
pub fn same_bits_each_pass(
    what: &str,
    engine: &CudaAlbert,
    inputs: &albert::Inputs,
    want: &albert::Outputs,
) {
    for pass in ["warm-up", "capture", "replay"] {
        let got = engine.forward(inputs, ForwardOptions::default()).unwrap();
        same_bits(&format!("{what} {pass}"), &got, want);
    }
}

/// Every output of `got` bit for bit equal to `want`'s.
pub fn same_bits(what: &str, got: &albert::Outputs, want: &albert::Outputs) {
    assert_eq!(got.tensors.len(), want.tensors.len(), "{what}: outputs");
    for (n, w) in &want.tensors {
        let g: &Tensor = got.get(n).unwrap();
        assert_eq!(g.shape, w.shape, "{what}: {n} shape");
        let differ = g
            .data
            .iter()
            .zip(&w.data)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(
            differ.is_none(),
            "{what}: {n}[{}] = {} in the reference run (`want`), {} in this one",
            differ.unwrap(),
            w.data[differ.unwrap()],
            g.data[differ.unwrap()]
        );
    }
}

pub fn mlm_model() -> Albert {
    Albert::from_dir(&model_dir("tiny-albert-mlm"), None).unwrap()
}
