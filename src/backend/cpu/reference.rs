//! The reference ops: plain loops written to be read. Every fast CPU op and every CUDA kernel
//! carries the same name and argument order (outputs first, then inputs, then dimensions) and
//! is tested against these.
//!
//! Activations are stored in f32 between ops, as in every fast path; inside an op the arithmetic
//! is f64 and rounds once, at the store. Why: with f32 arithmetic inside the ops (even with FMA)
//! the 12 layer applications of the tiny-albert-groups fixture end 1.0e-5 away from transformers'
//! float64, right at the tolerance, and LayerNorm's f32 statistics were the largest single source
//! (7.1e-6 -> 3.1e-6 when only they move to f64). With f64 inside, every fixture is within 1.4e-6,
//! so the reference is a margin-wide truth for the f32-accumulating fast paths tested against it.
//!
//! Each output element is computed by one thread in a fixed order, so results do not depend on
//! the number of rayon threads or on how the batch is split.

use rayon::prelude::*;

use crate::dtype::DType;
use crate::model::activation::Activation;

/// Additive mask for a padded key: what transformers adds (`torch.finfo(dtype).min`). A score
/// plus this rounds to this value, so a row whose keys are all padded softmaxes to uniform,
/// exactly as in transformers.
pub const MASKED: f32 = f32::MIN;

/// Rows per task in `linear_forward`: a tile of inputs reuses each weight row from L1.
const ROW_TILE: usize = 8;

/// Dot product accumulated in f64 (a product of two f32 is exact in f64), four partial sums so
/// the compiler can vectorise it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut acc = [0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..4 {
            acc[l] += x[l] as f64 * y[l] as f64;
        }
    }
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| *x as f64 * *y as f64)
        .sum();
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// Dot product of f64 vectors with eight partial sums (two vector registers of four).
#[inline]
fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])) + tail
}

/// out[B*S, E] = LayerNorm(word[ids] + token_type[types] + position[s]) over E.
/// Ids are already validated against the tables.
#[allow(clippy::too_many_arguments)]
pub fn embeddings_forward(
    out: &mut [f32],        // [B*S, E]
    input_ids: &[u32],      // [B*S]
    token_type_ids: &[u32], // [B*S]
    word: &[f32],           // [V, E]
    position: &[f32],       // [P, E]
    token_type: &[f32],     // [T, E]
    ln_weight: &[f32],      // [E]
    ln_bias: &[f32],        // [E]
    s: usize,
    e: usize,
    eps: f32,
) {
    out.par_chunks_mut(e).enumerate().for_each(|(row, o)| {
        let (id, ty, pos) = (
            input_ids[row] as usize,
            token_type_ids[row] as usize,
            row % s,
        );
        let w = &word[id * e..(id + 1) * e];
        let t = &token_type[ty * e..(ty + 1) * e];
        let p = &position[pos * e..(pos + 1) * e];
        let x: Vec<f64> = (0..e)
            .map(|c| w[c] as f64 + t[c] as f64 + p[c] as f64)
            .collect();
        layernorm_row(o, &x, ln_weight, ln_bias, eps);
    });
}

/// out[M, N] = inp[M, K] @ weight[N, K]^T + bias[N], with both operands rounded to `operands`
/// first (a no-op for f32): the numerics of a bf16/f16 tensor-core product with f32 output.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward(
    out: &mut [f32],      // [M, N]
    inp: &[f32],          // [M, K]
    weight: &[f32],       // [N, K]
    bias: Option<&[f32]>, // [N]
    m: usize,
    k: usize,
    n: usize,
    operands: DType,
) {
    assert_eq!(out.len(), m * n);
    assert_eq!(inp.len(), m * k);
    assert_eq!(weight.len(), n * k);
    out.par_chunks_mut(ROW_TILE * n)
        .enumerate()
        .for_each(|(tile, o)| {
            let row0 = tile * ROW_TILE;
            let rows = o.len() / n;
            // Widen the input tile once, and each weight row once per tile, so the inner loop is a
            // plain f64 dot product (the conversions would otherwise dominate).
            let x: Vec<f64> = inp[row0 * k..(row0 + rows) * k]
                .iter()
                .map(|&v| operands.round(v) as f64)
                .collect();
            let mut w = vec![0f64; k];
            for j in 0..n {
                for (wide, &v) in w.iter_mut().zip(&weight[j * k..(j + 1) * k]) {
                    *wide = operands.round(v) as f64;
                }
                let b = bias.map_or(0.0, |b| b[j] as f64);
                for r in 0..rows {
                    o[r * n + j] = (dot_f64(&x[r * k..(r + 1) * k], &w) + b) as f32;
                }
            }
        });
}

/// x = act(x), element-wise, in place.
pub fn activation_forward(x: &mut [f32], act: Activation) {
    x.par_iter_mut().for_each(|v| *v = act.apply(*v));
}

/// x = tanh(x), element-wise, in place (the pooler's activation).
pub fn tanh_forward(x: &mut [f32]) {
    x.par_iter_mut().for_each(|v| *v = v.tanh());
}

/// out[M, C] = LayerNorm(inp[M, C]) * weight + bias
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
            let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            layernorm_row(o, &x, weight, bias, eps);
        });
}

/// out[M, C] = LayerNorm(inp[M, C] + residual[M, C]): the "add & norm" after attention and FFN.
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
            let sum: Vec<f64> = x
                .iter()
                .zip(r)
                .map(|(a, b)| *a as f64 + *b as f64)
                .collect();
            layernorm_row(o, &sum, weight, bias, eps);
        });
}

/// out = LayerNorm(x) * weight + bias for one row, statistics in f64: mean, then the variance of
/// the centred values (biased, as torch computes it).
pub fn layernorm_row(out: &mut [f32], x: &[f64], weight: &[f32], bias: &[f32], eps: f32) {
    let c = x.len() as f64;
    let mean = x.iter().sum::<f64>() / c;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / c;
    let rstd = 1.0 / (var + eps as f64).sqrt();
    for i in 0..x.len() {
        out[i] = ((x[i] - mean) * rstd * weight[i] as f64 + bias[i] as f64) as f32;
    }
}

/// out[B, S, A*D] = softmax(q k^T / sqrt(D) + mask) v for every batch row and head.
/// q, k, v are [B, S, A*D] (head h at columns h*D..(h+1)*D); mask is additive, [B, S] over keys:
/// 0 for a real token, `MASKED` for padding.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    out: &mut [f32], // [B, S, A*D]
    q: &[f32],       // [B, S, A*D]
    k: &[f32],       // [B, S, A*D]
    v: &[f32],       // [B, S, A*D]
    mask: &[f32],    // [B, S]
    b: usize,
    s: usize,
    a: usize,
    d: usize,
) {
    let h = a * d;
    assert_eq!(out.len(), b * s * h);
    let scale = 1.0 / (d as f64).sqrt();
    // One task per (batch row, query position): it writes every head of that output row.
    out.par_chunks_mut(h).enumerate().for_each(|(row, o)| {
        let bi = row / s;
        let mut scores = vec![0f64; s];
        let mut acc = vec![0f64; d];
        for head in 0..a {
            let col = head * d;
            let qi = &q[row * h + col..row * h + col + d];
            for (j, score) in scores.iter_mut().enumerate() {
                let kj = &k[(bi * s + j) * h + col..(bi * s + j) * h + col + d];
                *score = dot(qi, kj) * scale + mask[bi * s + j] as f64;
            }
            softmax_row(&mut scores);
            acc.fill(0.0);
            for (j, p) in scores.iter().enumerate() {
                let vj = &v[(bi * s + j) * h + col..(bi * s + j) * h + col + d];
                for c in 0..d {
                    acc[c] += p * vj[c] as f64;
                }
            }
            for c in 0..d {
                o[col + c] = acc[c] as f32;
            }
        }
    });
}

/// Softmax of one row in place, max-subtracted.
pub fn softmax_row(x: &mut [f64]) {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_f64_on_odd_lengths() {
        for len in [0usize, 1, 7, 8, 9, 31, 768] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0)
                .collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!(
                (dot(&a, &b) - want).abs() <= 1e-12 * (1.0 + want.abs()),
                "len {len}"
            );
        }
    }

    #[test]
    fn linear_tiles_cover_ragged_rows() {
        // 11 rows is not a multiple of ROW_TILE: the last tile is short.
        let (m, k, n) = (11, 5, 3);
        let inp: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5).collect();
        let w: Vec<f32> = (0..n * k).map(|i| 1.0 - i as f32 * 0.25).collect();
        let bias = [1.0, -2.0, 0.5];
        let mut out = vec![0.0; m * n];
        linear_forward(&mut out, &inp, &w, Some(&bias), m, k, n, DType::F32);
        for r in 0..m {
            for j in 0..n {
                let want: f32 =
                    (0..k).map(|c| inp[r * k + c] * w[j * k + c]).sum::<f32>() + bias[j];
                assert!((out[r * n + j] - want).abs() < 1e-4, "row {r} col {j}");
            }
        }
    }

    #[test]
    fn fully_masked_row_is_uniform_like_transformers() {
        // transformers adds finfo.min to f32 scores; the sums round to finfo.min itself.
        let mut x = [(3.0 + MASKED) as f64, (-7.0 + MASKED) as f64, MASKED as f64];
        softmax_row(&mut x);
        assert!(x.iter().all(|p| (p - 1.0 / 3.0).abs() < 1e-12), "{x:?}");
    }

    #[test]
    fn layernorm_normalises() {
        let mut x = [0f32; 4];
        layernorm_row(&mut x, &[1.0, 2.0, 3.0, 4.0], &[1.0; 4], &[0.0; 4], 1e-12);
        let mean: f32 = x.iter().sum::<f32>() / 4.0;
        let var: f32 = x.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }
}
