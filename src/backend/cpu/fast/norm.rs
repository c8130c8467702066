//! LayerNorm and the element-wise epilogues of the fast path.
//!
//! LayerNorm keeps its statistics (and the residual sum) in f64, as the reference does: in f32 it
//! was the largest single error source over the 12 layer applications of tiny-albert-groups. It
//! costs little: a row of H = 768 is a few hundred vector operations.
//!
//! The activations in the FFN epilogue: the GELU family (gelu_new / gelu_pytorch_tanh, gelu_fast,
//! gelu_accurate), relu, silu, quick_gelu and sigmoid are vectorised in f32 through `exp_f32`
//! (about 1 ulp); every other activation (exact-erf gelu, mish, ...) calls the reference
//! `Activation::apply` per element (f64), which is exact and fast enough for the models that use
//! them. Each body is written once and compiled for AVX-512 and AVX2 (`multiversion!`).

use rayon::prelude::*;

use super::Isa;
use crate::model::activation::Activation;

/// The ISA this process runs the element-wise ops with (detected once).
pub(crate) fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(Isa::detect)
}

/// Defines `$name` (dispatching on `isa()`) over an `#[inline(always)]` body compiled three times:
/// for AVX-512, for AVX2+FMA and for the baseline target.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) { body($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) { body($($arg),*) }
            match $crate::backend::cpu::fast::norm::isa() {
                // SAFETY: isa() only reports instruction sets the CPU has.
                #[cfg(target_arch = "x86_64")]
                $crate::backend::cpu::fast::Isa::Avx512
                | $crate::backend::cpu::fast::Isa::Avx512Bf16 => unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::backend::cpu::fast::Isa::Avx2 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

/// e^x in f32, within ~1 ulp (Cephes' expf polynomial); 0 below -87.3 (where e^x is denormal),
/// e^88.3 above 88.3. Branch-free so that loops over it vectorise.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let xc = x.clamp(-87.3, 88.3);
    // n = round(x / ln 2) by the 1.5 * 2^23 trick (no rounding instruction needed).
    let t = xc * std::f32::consts::LOG2_E;
    let big = t + 12_582_912.0;
    let n = big - 12_582_912.0;
    // n as an integer, read from the low mantissa bits of `big` (an `as i32` conversion would
    // not vectorise: its saturating semantics make LLVM extract every lane).
    let ni = big.to_bits() as i32 - 0x4B40_0000;
    let r = xc - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((ni + 127) << 23) as u32);
    if x < -87.3 {
        0.0
    } else {
        e * scale
    }
}

/// x * sigmoid(c x) = x / (1 + e^(-c x)).
#[inline(always)]
fn x_sigmoid(x: f32, c: f32) -> f32 {
    x / (1.0 + exp_f32(-c * x))
}

/// gelu_new: 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = k (x + 0.044715 x^3).
#[inline(always)]
fn gelu_tanh(x: f32, k: f32) -> f32 {
    let u = k * (x + 0.044715 * x * x * x);
    x / (1.0 + exp_f32(-2.0 * u))
}

multiversion! {
    /// row = gelu_tanh(row + bias) with constant `k` (sqrt(2/pi), or gelu_fast's 0.7978845608).
    fn gelu_tanh_row(row: &mut [f32], bias: Option<&[f32]>, k: f32) {
        match bias {
            Some(b) => row.iter_mut().zip(b).for_each(|(v, b)| *v = gelu_tanh(*v + b, k)),
            None => row.iter_mut().for_each(|v| *v = gelu_tanh(*v, k)),
        }
    }
}

multiversion! {
    /// row = (row + bias) * sigmoid(c (row + bias)), or sigmoid itself when `plain_sigmoid`.
    fn sigmoid_row(row: &mut [f32], bias: Option<&[f32]>, c: f32, plain_sigmoid: bool) {
        let f = |x: f32| if plain_sigmoid { 1.0 / (1.0 + exp_f32(-x)) } else { x_sigmoid(x, c) };
        match bias {
            Some(b) => row.iter_mut().zip(b).for_each(|(v, b)| *v = f(*v + b)),
            None => row.iter_mut().for_each(|v| *v = f(*v)),
        }
    }
}

multiversion! {
    fn bias_relu_row(row: &mut [f32], bias: Option<&[f32]>, relu: bool) {
        match bias {
            Some(b) => row.iter_mut().zip(b).for_each(|(v, b)| {
                let x = *v + b;
                *v = if relu { x.max(0.0) } else { x };
            }),
            None if relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            None => {}
        }
    }
}

/// row = act(row + bias) (no activation: just the bias).
pub fn bias_activation_row(row: &mut [f32], bias: Option<&[f32]>, act: Option<Activation>) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    match act {
        None | Some(Activation::Linear) => bias_relu_row(row, bias, false),
        Some(Activation::Relu) => bias_relu_row(row, bias, true),
        Some(Activation::GeluTanh | Activation::GeluAccurate) => {
            gelu_tanh_row(row, bias, SQRT_2_OVER_PI)
        }
        Some(Activation::GeluFast) => gelu_tanh_row(row, bias, 0.797_884_6),
        Some(Activation::Silu) => sigmoid_row(row, bias, 1.0, false),
        Some(Activation::QuickGelu) => sigmoid_row(row, bias, 1.702, false),
        Some(Activation::Sigmoid) => sigmoid_row(row, bias, 1.0, true),
        Some(other) => {
            bias_relu_row(row, bias, false);
            row.iter_mut().for_each(|v| *v = other.apply(*v));
        }
    }
}

/// x = act(x), element-wise, in place (the MLM head's activation; the FFN's is fused).
pub fn activation_forward(x: &mut [f32], act: Activation) {
    x.par_chunks_mut(4096)
        .for_each(|c| bias_activation_row(c, None, Some(act)));
}

/// x = tanh(x), element-wise, in place (the pooler's activation, [R, H]: computed in f64).
pub fn tanh_forward(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = (*v as f64).tanh() as f32);
}

multiversion! {
    /// row = LayerNorm(row + residual) * weight + bias, sum and statistics in f64.
    pub fn residual_layernorm_row(row: &mut [f32], residual: &[f32], weight: &[f32], bias: &[f32], eps: f32) {
        let c = row.len();
        assert!(residual.len() == c && weight.len() == c && bias.len() == c);
        let x = |i: usize| row[i] as f64 + residual[i] as f64;
        let mut sum = [0f64; 8];
        for i in 0..c {
            sum[i % 8] += x(i);
        }
        let mean = sum.iter().sum::<f64>() / c as f64;
        let mut sq = [0f64; 8];
        for i in 0..c {
            let d = x(i) - mean;
            sq[i % 8] += d * d;
        }
        let var = sq.iter().sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for i in 0..c {
            let xi = row[i] as f64 + residual[i] as f64;
            row[i] = ((xi - mean) * rstd * weight[i] as f64 + bias[i] as f64) as f32;
        }
    }
}

/// out[M, C] = LayerNorm(inp[M, C] + residual[M, C]) * weight + bias (statistics in f64).
pub fn residual_layernorm_forward(
    out: &mut [f32],  // [M, C]
    inp: &[f32],      // [M, C]
    residual: &[f32], // [M, C]
    weight: &[f32],   // [C]
    bias: &[f32],     // [C]
    c: usize,
    eps: f32,
) {
    out.par_chunks_mut(c)
        .zip(inp.par_chunks(c).zip(residual.par_chunks(c)))
        .for_each(|(o, (x, r))| {
            o.copy_from_slice(x);
            residual_layernorm_row(o, r, weight, bias, eps);
        });
}

/// out[M, C] = LayerNorm(inp[M, C]) * weight + bias (statistics in f64).
pub fn layernorm_forward(
    out: &mut [f32], // [M, C]
    inp: &[f32],     // [M, C]
    weight: &[f32],  // [C]
    bias: &[f32],    // [C]
    c: usize,
    eps: f32,
) {
    out.par_chunks_mut(c)
        .zip(inp.par_chunks(c))
        .for_each(|(o, x)| {
            o.copy_from_slice(x);
            layernorm_row(o, weight, bias, eps);
        });
}

multiversion! {
    /// row = LayerNorm(row) * weight + bias, statistics in f64.
    pub fn layernorm_row(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
        let c = row.len();
        let mut sum = [0f64; 8];
        for i in 0..c {
            sum[i % 8] += row[i] as f64;
        }
        let mean = sum.iter().sum::<f64>() / c as f64;
        let mut sq = [0f64; 8];
        for i in 0..c {
            let d = row[i] as f64 - mean;
            sq[i % 8] += d * d;
        }
        let var = sq.iter().sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for i in 0..c {
            row[i] = ((row[i] as f64 - mean) * rstd * weight[i] as f64 + bias[i] as f64) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            assert!(
                ((got - want) / want).abs() < 2.5e-7,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.0137;
        }
        assert_eq!(exp_f32(f32::MIN), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn activations_match_the_reference() {
        use Activation::*;
        for act in [
            GeluTanh,
            GeluFast,
            GeluAccurate,
            Gelu,
            Relu,
            Silu,
            QuickGelu,
            Sigmoid,
            Mish,
        ] {
            let xs: Vec<f32> = (0..2001).map(|i| (i as f32 - 1000.0) / 80.0).collect();
            let mut got = xs.clone();
            bias_activation_row(&mut got, None, Some(act));
            for (x, g) in xs.iter().zip(&got) {
                let want = act.apply(*x);
                let tol = 1e-6 * (1.0 + want.abs());
                assert!((g - want).abs() <= tol, "{act:?}({x}) = {g}, want {want}");
            }
        }
    }
}
