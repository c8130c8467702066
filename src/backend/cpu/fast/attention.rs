//! Attention: out = softmax(q k^T / sqrt(D) + mask) v per (batch row, head), flash style.
//!
//! One rayon task per (batch row, head). It packs that head's K^T and V once (the GEMM's B-panel
//! layout), then walks the queries MR rows at a time: for each block of KB keys the score tile
//! [MR, KB] (12 KiB, in L1) is one row of micro-kernel calls reading Q in place, the online
//! softmax turns it into P in place and rescales the running output and sums, and P times V is a
//! second row of micro-kernel calls with the score tile as A. Keys
//! past the sequence's last real token are never touched (their weight is exactly 0 in the
//! reference too); masked keys inside the sequence get `MASKED` added as in transformers, so a
//! row whose keys are all padding averages them uniformly, as transformers does.
//!
//! Arithmetic is f32 (FMA products, ~1 ulp exp) whatever the weights' dtype.

use std::sync::Mutex;

use rayon::prelude::*;

use super::gemm::pack::{pack_b, pack_b_kn};
use super::gemm::Micro;
use super::norm::{exp_f32, multiversion};
use super::{AlignedBuf, Isa, SendPtr};

/// Keys per block of the online softmax.
const KB: usize = 256;

/// Per-thread scratch for `attention_forward`, sized for sequences up to `s_max` and head size
/// `d`: allocated with the arena, reused by every call.
pub struct AttentionScratch {
    micro: Micro,
    s_max: usize,
    d: usize,
    slots: Vec<Mutex<Slot>>,
}

struct Slot {
    kt: AlignedBuf,     // [ceil(S/NR)][D][NR] K^T of one head
    v: AlignedBuf,      // [ceil(D/NR)][S][NR] V of one head
    scores: AlignedBuf, // [MR][KB]            scores, then P
    o: AlignedBuf,      // [MR][ceil(D/NR)*NR] running output
}

impl AttentionScratch {
    pub fn new(isa: Isa, s_max: usize, d: usize, threads: usize) -> Self {
        let micro = Micro::attention(isa);
        let (mr, nr) = (micro.mr, micro.nr);
        let d_pad = d.div_ceil(nr) * nr;
        let slot = || Slot {
            kt: AlignedBuf::zeros(s_max.div_ceil(nr) * d * nr),
            v: AlignedBuf::zeros(d_pad * s_max),
            scores: AlignedBuf::zeros(mr * KB),
            o: AlignedBuf::zeros(mr * d_pad),
        };
        AttentionScratch {
            micro,
            s_max,
            d,
            slots: (0..threads.max(1)).map(|_| Mutex::new(slot())).collect(),
        }
    }

    pub fn bytes(&self) -> usize {
        self.slots.len() * {
            let s = self.slots[0].lock().unwrap_or_else(|p| p.into_inner());
            s.kt.bytes() + s.v.bytes() + s.scores.bytes() + s.o.bytes()
        }
    }
}

/// out[B, S, A*D] = softmax(q k^T / sqrt(D) + mask) v for every batch row and head. q, k, v hold
/// row r, column c at `x[r * ld + c]` (ld = 3H: slices of the fused QKV output); mask is
/// additive, [B, S] over keys: 0 for a real token, `MASKED` for padding.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    out: &mut [f32], // [B, S, A*D]
    q: &[f32],       // [B, S, ld]
    k: &[f32],       // [B, S, ld]
    v: &[f32],       // [B, S, ld]
    mask: &[f32],    // [B, S]
    b: usize,
    s: usize,
    a: usize,
    d: usize,
    ld: usize,
    scratch: &AttentionScratch,
) {
    let h = a * d;
    assert_eq!(out.len(), b * s * h);
    assert_eq!(mask.len(), b * s);
    assert!(
        s <= scratch.s_max && d == scratch.d,
        "attention scratch too small"
    );
    let last = (b * s - 1) * ld + h;
    assert!(q.len() >= last && k.len() >= last && v.len() >= last);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..b * a).into_par_iter().for_each(|task| {
        let slot = rayon::current_thread_index().unwrap_or(0) % scratch.slots.len();
        let mut slot = scratch.slots[slot]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (bi, head) = (task / a, task % a);
        // SAFETY: this task writes only rows bi*S..(bi+1)*S, columns head*D..(head+1)*D of
        // `out`, which no other task touches; `out` outlives the parallel loop.
        unsafe {
            head_forward(
                out_ptr.get(),
                q,
                k,
                v,
                mask,
                bi,
                head,
                s,
                h,
                d,
                ld,
                scratch.micro,
                &mut slot,
            )
        };
    });
}

/// One (batch row, head).
///
/// # Safety
/// `out` is [B*S, h] and this call may write rows bi*S.., columns head*D.. of it.
#[allow(clippy::too_many_arguments)]
unsafe fn head_forward(
    out: *mut f32,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    bi: usize,
    head: usize,
    s: usize,
    h: usize,
    d: usize,
    ld: usize,
    micro: Micro,
    t: &mut Slot,
) {
    let (mr, nr) = (micro.mr, micro.nr);
    let d_pad = d.div_ceil(nr) * nr;
    let mask = &mask[bi * s..(bi + 1) * s];
    // Keys past the last real token are skipped; a row with no real token keeps them all.
    let len = match mask.iter().rposition(|&m| m == 0.0) {
        Some(last) => last + 1,
        None => s,
    };
    let col = head * d;
    let base = bi * s * ld + col;
    pack_b(t.kt.u32s_mut(), &k[base..], ld, len, d, nr, false);
    pack_b_kn(t.v.u32s_mut(), &v[base..], ld, len, d, nr);
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    let mut m_run = [0f32; 16];
    let mut l_run = [0f32; 16];

    for q0 in (0..s).step_by(mr) {
        let rows = mr.min(s - q0);
        let q_rows = q[base + q0 * ld..].as_ptr() as *const u32;
        m_run[..mr].fill(f32::NEG_INFINITY);
        l_run[..mr].fill(0.0);
        for kb0 in (0..len).step_by(KB) {
            let kbn = KB.min(len - kb0);
            // scores[rows, kbn] = Q K^T
            let sc = t.scores.f32s_mut().as_mut_ptr();
            for pn in kb0 / nr..(kb0 + kbn).div_ceil(nr) {
                let c0 = pn * nr - kb0;
                // SAFETY: Q rows q0..q0+rows have D elements at stride ld from q_rows; the K^T
                // panel holds D k-steps of NR; the score tile is [MR][KB], c0 + cols <= KB.
                unsafe {
                    (micro.kernel)(
                        d,
                        q_rows,
                        ld,
                        rows,
                        t.kt.u32s()[pn * d * nr..].as_ptr(),
                        sc.add(c0),
                        KB,
                        nr.min(kbn - c0),
                        false,
                    )
                };
            }
            // Online softmax, row by row: the scores become P in place.
            for i in 0..rows {
                let srow = &mut t.scores.f32s_mut()[i * KB..i * KB + kbn];
                let m_new = scale_mask_max(srow, &mask[kb0..kb0 + kbn], scale).max(m_run[i]);
                let alpha = exp_f32(m_run[i] - m_new);
                let sum = exp_sum(srow, m_new);
                l_run[i] = l_run[i] * alpha + sum;
                m_run[i] = m_new;
                // The first key block overwrites O (below) instead of scaling it.
                if kb0 > 0 && alpha != 1.0 {
                    t.o.f32s_mut()[i * d_pad..(i + 1) * d_pad]
                        .iter_mut()
                        .for_each(|x| *x *= alpha);
                }
            }
            // O[rows, D] += P V
            let o = t.o.f32s_mut().as_mut_ptr();
            let p = t.scores.u32s().as_ptr();
            for pn in 0..d.div_ceil(nr) {
                // SAFETY: P rows 0..rows have kbn elements at stride KB; the V panel pn holds
                // `len` k-steps of NR from key 0, so kb0.. has kbn; O is [MR][d_pad].
                unsafe {
                    (micro.kernel)(
                        kbn,
                        p,
                        KB,
                        rows,
                        t.v.u32s()[(pn * len + kb0) * nr..].as_ptr(),
                        o.add(pn * nr),
                        d_pad,
                        nr.min(d - pn * nr),
                        kb0 > 0,
                    )
                };
            }
        }
        let o = t.o.f32s();
        for i in 0..rows {
            let inv = 1.0 / l_run[i];
            // SAFETY: row bi*S + q0 + i < B*S, columns col..col+d < h: this task's region.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(out.add((bi * s + q0 + i) * h + col), d) };
            for (x, y) in dst.iter_mut().zip(&o[i * d_pad..i * d_pad + d]) {
                *x = y * inv;
            }
        }
    }
}

multiversion! {
    /// s = s * scale + mask, in place; returns the row maximum (16 lanes, then across).
    fn scale_mask_max_impl(s: &mut [f32], mask: &[f32], scale: f32, max: &mut f32) {
        let mut lanes = [f32::NEG_INFINITY; 16];
        let mut cs = s.chunks_exact_mut(16);
        let mut cm = mask.chunks_exact(16);
        for (x, mk) in (&mut cs).zip(&mut cm) {
            for l in 0..16 {
                x[l] = x[l] * scale + mk[l];
                lanes[l] = if x[l] > lanes[l] { x[l] } else { lanes[l] };
            }
        }
        for (x, mk) in cs.into_remainder().iter_mut().zip(cm.remainder()) {
            *x = *x * scale + mk;
            lanes[0] = lanes[0].max(*x);
        }
        *max = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    }
}

fn scale_mask_max(s: &mut [f32], mask: &[f32], scale: f32) -> f32 {
    let mut m = f32::NEG_INFINITY;
    scale_mask_max_impl(s, mask, scale, &mut m);
    m
}

multiversion! {
    /// s = exp(s - max), in place; returns the sum (16 lanes, then across).
    fn exp_sum_impl(s: &mut [f32], max: f32, sum: &mut f32) {
        let mut lanes = [0f32; 16];
        let mut cs = s.chunks_exact_mut(16);
        for x in &mut cs {
            for l in 0..16 {
                x[l] = exp_f32(x[l] - max);
                lanes[l] += x[l];
            }
        }
        for x in cs.into_remainder() {
            *x = exp_f32(*x - max);
            lanes[0] += *x;
        }
        *sum = lanes.iter().sum();
    }
}

fn exp_sum(s: &mut [f32], max: f32) -> f32 {
    let mut sum = 0.0;
    exp_sum_impl(s, max, &mut sum);
    sum
}
