//! Packing into the layouts of `kernels.rs` (4-byte elements, one k-step each):
//!   B (weights, once at load):  [ceil(N / NR)][ksteps][NR], columns past N zero
//!   A (activations, per call):  row-major [M][ksteps]: the input itself for f32, its rows
//!                               rounded to bf16 pairs for bf16
//! with ksteps = K for f32 and ceil(K / 2) for bf16 pairs.

/// The bf16 bits of `x` (round to nearest even; a NaN stays a NaN), as `half::bf16::from_f32`.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u32 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return (u >> 16) | 0x40;
    }
    (u + 0x7fff + ((u >> 16) & 1)) >> 16
}

/// f32 value of bf16 bits.
#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Two bf16 in one k-step element: k = 2j in the low half, k = 2j + 1 in the high half.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) | (bf16_bits(hi) << 16)
}

/// k-steps of a K-long dot product.
#[inline]
pub fn ksteps(k: usize, bf16: bool) -> usize {
    if bf16 {
        k.div_ceil(2)
    } else {
        k
    }
}

/// Packs B = W^T for W [n, k] (row stride `ld`) into `dst` [ceil(n/nr)][ksteps][nr].
pub fn pack_b(dst: &mut [u32], src: &[f32], ld: usize, n: usize, k: usize, nr: usize, bf16: bool) {
    let ks = ksteps(k, bf16);
    let panels = n.div_ceil(nr);
    assert!(dst.len() >= panels * ks * nr);
    for p in 0..panels {
        let panel = &mut dst[p * ks * nr..(p + 1) * ks * nr];
        for j in 0..nr {
            let col = p * nr + j;
            if col >= n {
                for s in 0..ks {
                    panel[s * nr + j] = 0;
                }
                continue;
            }
            let row = &src[col * ld..col * ld + k];
            if bf16 {
                for s in 0..ks {
                    let hi = row.get(2 * s + 1).copied().unwrap_or(0.0);
                    panel[s * nr + j] = pair(row[2 * s], hi);
                }
            } else {
                for s in 0..ks {
                    panel[s * nr + j] = row[s].to_bits();
                }
            }
        }
    }
}

/// Packs B given as [k, n] row-major (row stride `ld`), f32: the V operand of attention.
pub fn pack_b_kn(dst: &mut [u32], src: &[f32], ld: usize, k: usize, n: usize, nr: usize) {
    let panels = n.div_ceil(nr);
    assert!(dst.len() >= panels * k * nr);
    for p in 0..panels {
        let c0 = p * nr;
        let w = nr.min(n - c0);
        for kk in 0..k {
            let d = &mut dst[(p * k + kk) * nr..(p * k + kk + 1) * nr];
            let s = &src[kk * ld + c0..kk * ld + c0 + w];
            for (o, v) in d.iter_mut().zip(s) {
                *o = v.to_bits();
            }
            d[w..].fill(0);
        }
    }
}

super::super::norm::multiversion! {
    /// One row of A [k] as bf16 pairs [ceil(k / 2)] (the bf16 kernels' A, still row-major).
    pub fn bf16_pairs_row(dst: &mut [u32], src: &[f32]) {
        let full = src.len() / 2;
        for (d, p) in dst[..full].iter_mut().zip(src.chunks_exact(2)) {
            *d = pair(p[0], p[1]);
        }
        if src.len() % 2 == 1 {
            dst[full] = pair(src[src.len() - 1], 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_matches_half() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 512.0,
            -3.3e38,
            1e-40,
            f32::INFINITY,
            0.1,
        ] {
            assert_eq!(
                bf16_bits(x) as u16,
                half::bf16::from_f32(x).to_bits(),
                "{x}"
            );
        }
        assert!(bf16_to_f32(bf16_bits(f32::NAN) as u16).is_nan());
    }

    #[test]
    fn b_panels_hold_the_transpose_zero_padded() {
        let (n, k, nr) = (3, 5, 2);
        let w: Vec<f32> = (0..n * k).map(|i| i as f32).collect();
        let mut dst = vec![9u32; 2 * k * nr];
        pack_b(&mut dst, &w, k, n, k, nr, false);
        // panel 1 holds column 2 (row 2 of W) and a zero column.
        for s in 0..k {
            assert_eq!(f32::from_bits(dst[(k + s) * nr]), w[2 * k + s]);
            assert_eq!(dst[(k + s) * nr + 1], 0);
        }
    }
}
