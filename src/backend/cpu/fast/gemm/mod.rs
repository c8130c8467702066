//! `linear_forward`: out[M, N] = epilogue(inp[M, K] @ W[N, K]^T + bias[N]).
//!
//! W is packed once, at load, into NR-column panels (`PackedWeight`); each call packs A into
//! MR-row panels (in f32, or rounded to bf16 pairs for bf16 weights) in an arena buffer, then
//! rayon runs output tiles (`tiling`: a few per thread, cut to keep weight and input re-reads
//! low: small batches split N only). Inside a tile the K dimension is cut into k-step blocks:
//! for each block, each B panel (24 KiB of it) stays in L1 while the tile's A rows stream
//! past it from L2. The epilogue runs on the tile right after its last K block, while it is in
//! cache: bias, or bias + activation; bias + residual + LayerNorm adds a pass over whole rows
//! (LayerNorm statistics in f64) right after the tiles.
//!
//! Why hand-written and not the `gemm` crate (benches/gemm.rs, README): on this machine the
//! hand-written f32 kernel is ahead at 13 of the encoder's 15 product shapes and level at the
//! other two, and only it packs weights once, fuses the epilogues, sums in blocks (accuracy) and
//! has a bf16 dot-product (`vdpbf16ps`) path, 1.6-2.4x the crate's f32.

pub mod kernels;
pub mod pack;

use rayon::prelude::*;

use super::norm;
use super::{AlignedBuf, Isa, SendPtr};
use crate::dtype::DType;
use crate::model::activation::Activation;
use kernels::KernelFn;

/// Bytes of one B panel's K block: it stays in L1 (32 KiB) while the A rows stream past it. In
/// k-steps: 128 for NR = 48 (f32), 192 for NR = 32 (bf16: fewer passes over C).
const B_BLOCK: usize = 24 * 1024;

/// K block in k-steps for panels of `nr` columns (a multiple of the kernels' sum block).
fn kc_of(nr: usize) -> usize {
    (B_BLOCK / (nr * 4)) / kernels::SUM_BLOCK * kernels::SUM_BLOCK
}
/// Bytes of A one tile streams per K block (half of a 1 MiB L2).
const MAX_A_BLOCK: usize = 512 * 1024;
/// Bytes of one tile's output, which is read back and added to after every K block.
const MAX_C_TILE: usize = 384 * 1024;
/// Aim for this many tiles per rayon thread so that uneven tiles still balance.
const TASKS_PER_THREAD: usize = 4;

/// One micro-kernel and its register-tile geometry.
#[derive(Clone, Copy, Debug)]
pub struct Micro {
    pub isa: Isa,
    /// Operands are bf16 pairs (else f32).
    pub bf16: bool,
    pub mr: usize,
    pub nr: usize,
    pub kernel: KernelFn,
}

impl Micro {
    /// The f32 kernel of the products for `isa`: blocked sums (see `kernels::SUM_BLOCK`).
    pub fn f32(isa: Isa) -> Self {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx512Bf16 => Micro {
                isa,
                bf16: false,
                mr: 4,
                nr: 48,
                kernel: kernels::f32_avx512_blocked::<4>,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Micro {
                isa,
                bf16: false,
                mr: 3,
                nr: 16,
                kernel: kernels::f32_avx2::<3>,
            },
            _ => Micro {
                isa: Isa::Portable,
                bf16: false,
                mr: 4,
                nr: 16,
                kernel: kernels::f32_portable,
            },
        }
    }

    /// The f32 kernel of attention's two products (K = D and K = key block): plain FMA chains
    /// in a 12 x 32 tile, which fits D = 64 and key blocks of 32.
    pub fn attention(isa: Isa) -> Self {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx512Bf16 => Micro {
                isa,
                bf16: false,
                mr: 12,
                nr: 32,
                kernel: kernels::f32_avx512::<12>,
            },
            other => Self::f32(other),
        }
    }

    /// The bf16 kernel for `isa`: `vdpbf16ps` with AVX512_BF16, else widening to f32.
    pub fn bf16(isa: Isa) -> Self {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Bf16 => Micro {
                isa,
                bf16: true,
                mr: 12,
                nr: 32,
                kernel: kernels::bf16_avx512::<12>,
            },
            _ => Micro {
                isa: Isa::Portable,
                bf16: true,
                mr: 4,
                nr: 16,
                kernel: kernels::bf16_portable,
            },
        }
    }

    /// The kernel for weights stored as `dtype` (f32 or bf16).
    pub fn new(isa: Isa, dtype: DType) -> Self {
        match dtype {
            DType::BF16 => Self::bf16(isa),
            _ => Self::f32(isa),
        }
    }

    pub fn name(&self) -> String {
        let ty = if self.bf16 { "bf16" } else { "f32" };
        format!("{} {ty} {}x{}", self.isa.name(), self.mr, self.nr)
    }

    /// Elements of the packed-A buffer for an [m, k] input: none for f32 (A is read in place),
    /// [m][ceil(k / 2)] bf16 pairs for bf16.
    pub fn packed_a_len(&self, m: usize, k: usize) -> usize {
        if self.bf16 {
            m * pack::ksteps(k, true)
        } else {
            0
        }
    }
}

/// A weight W [N, K] packed for one micro-kernel: [ceil(N / NR)][ksteps][NR].
#[derive(Clone)]
pub struct PackedWeight {
    pub n: usize,
    pub k: usize,
    pub micro: Micro,
    data: AlignedBuf,
}

impl PackedWeight {
    /// Packs `weight` [n, k] for the `dtype` kernel of `isa` (bf16: rounded to nearest even).
    pub fn new(weight: &[f32], n: usize, k: usize, dtype: DType, isa: Isa) -> Self {
        Self::with_micro(weight, n, k, Micro::new(isa, dtype))
    }

    /// Packs `weight` [n, k] for a given micro-kernel (benches compare kernels this way).
    pub fn with_micro(weight: &[f32], n: usize, k: usize, micro: Micro) -> Self {
        assert_eq!(weight.len(), n * k, "weight is not [{n}, {k}]");
        let ks = pack::ksteps(k, micro.bf16);
        let mut data = AlignedBuf::zeros(n.div_ceil(micro.nr) * ks * micro.nr);
        pack::pack_b(data.u32s_mut(), weight, k, n, k, micro.nr, micro.bf16);
        PackedWeight { n, k, micro, data }
    }

    pub fn bytes(&self) -> usize {
        self.data.bytes()
    }

    pub fn dtype(&self) -> DType {
        if self.micro.bf16 {
            DType::BF16
        } else {
            DType::F32
        }
    }
}

/// What happens to a tile of out = inp W^T + bias after its last K block.
#[derive(Clone, Copy)]
pub enum Epilogue<'a> {
    /// Bias only.
    None,
    /// act(x W^T + b).
    Activation(Activation),
    /// LayerNorm(x W^T + b + residual) * weight + bias over each row (statistics in f64).
    ResidualLayerNorm {
        residual: &'a [f32], // [M, N]
        weight: &'a [f32],   // [N]
        bias: &'a [f32],     // [N]
        eps: f32,
    },
}

/// out[M, N] = epilogue(inp[M, K] @ W[N, K]^T + bias[N]). `packed_a` is scratch of at least
/// `weight.micro.packed_a_len(m, k)` elements (the arena's).
#[allow(clippy::too_many_arguments)]
pub fn linear_forward(
    out: &mut [f32],       // [M, N]
    inp: &[f32],           // [M, K]
    weight: &PackedWeight, // [N, K] packed
    bias: Option<&[f32]>,  // [N]
    m: usize,
    k: usize,
    n: usize,
    epilogue: Epilogue,
    packed_a: &mut [u32],
) {
    assert_eq!((weight.n, weight.k), (n, k), "packed weight shape");
    assert_eq!(out.len(), m * n);
    assert_eq!(inp.len(), m * k);
    if let Some(b) = bias {
        assert_eq!(b.len(), n);
    }
    if let Epilogue::ResidualLayerNorm { residual, .. } = epilogue {
        assert_eq!(residual.len(), m * n);
    }
    if m == 0 || n == 0 {
        return;
    }
    let mi = weight.micro;
    let (mr, nr) = (mi.mr, mi.nr);
    let ks = pack::ksteps(k, mi.bf16);
    let (mp, np) = (m.div_ceil(mr), n.div_ceil(nr));
    // A, row-major, `lda` elements per row: the input itself (f32), or its rows as bf16 pairs.
    let (a_ptr, lda) = if mi.bf16 {
        let a_len = m * ks;
        assert!(packed_a.len() >= a_len, "packed-A scratch too small");
        packed_a[..a_len]
            .par_chunks_mut(ks.max(1) * 16)
            .zip(inp.par_chunks(k.max(1) * 16))
            .for_each(|(dst, src)| {
                for (d, s) in dst.chunks_mut(ks).zip(src.chunks(k)) {
                    pack::bf16_pairs_row(d, s);
                }
            });
        (packed_a.as_ptr(), ks)
    } else {
        (inp.as_ptr() as *const u32, k)
    };
    let a_ptr = SendPtr(a_ptr as *mut u32);
    let (tm, tn, mcp, ncp) = tiling(mp, np, ks, mr, nr);
    let b_data = weight.data.u32s();
    let out_ptr = SendPtr(out.as_mut_ptr());

    (0..tm * tn).into_par_iter().for_each(|t| {
        let (pm0, pn0) = ((t / tn) * mcp, (t % tn) * ncp);
        let (pm1, pn1) = ((pm0 + mcp).min(mp), (pn0 + ncp).min(np));
        let out = out_ptr.get();
        let kc_max = kc_of(nr);
        for kb in (0..ks).step_by(kc_max) {
            let kc = kc_max.min(ks - kb);
            for pn in pn0..pn1 {
                let c0 = pn * nr;
                let cols = nr.min(n - c0);
                let b = b_data[(pn * ks + kb) * nr..].as_ptr();
                for pm in pm0..pm1 {
                    let r0 = pm * mr;
                    let rows = mr.min(m - r0);
                    // SAFETY: rows r0..r0+rows of A have ks >= kb + kc k-steps from `a`; the B
                    // panel holds ks k-steps of NR; out[r0.., c0..] is inside `out` for rows x
                    // cols, and only this tile writes rows pm0..pm1, columns pn0..pn1; the
                    // kernel's ISA was detected when `weight` was packed.
                    unsafe {
                        let a = a_ptr.get().add(r0 * lda + kb);
                        let c = out.add(r0 * n + c0);
                        (mi.kernel)(kc, a, lda, rows, b, c, n, cols, kb > 0)
                    };
                }
            }
        }
        let (r0, r1) = (pm0 * mr, (pm1 * mr).min(m));
        let (c0, c1) = (pn0 * nr, (pn1 * nr).min(n));
        for r in r0..r1 {
            // SAFETY: row r, columns c0..c1 belong to this tile alone (see above).
            let row = unsafe { std::slice::from_raw_parts_mut(out.add(r * n + c0), c1 - c0) };
            if ks == 0 {
                row.fill(0.0);
            }
            let bias = bias.map(|b| &b[c0..c1]);
            match epilogue {
                Epilogue::Activation(act) => norm::bias_activation_row(row, bias, Some(act)),
                _ => norm::bias_activation_row(row, bias, None),
            }
        }
    });
    // LayerNorm needs whole rows, which tiles cut only where that keeps weight traffic down:
    // a second pass over the rows, right after, while they are in L2/L3.
    if let Epilogue::ResidualLayerNorm {
        residual,
        weight,
        bias,
        eps,
    } = epilogue
    {
        // At least 32 rows per task: a row is ~0.2 us, a task hand-off several.
        out.par_chunks_mut(n)
            .zip(residual.par_chunks(n))
            .with_min_len(32)
            .for_each(|(row, res)| norm::residual_layernorm_row(row, res, weight, bias, eps));
    }
}

/// Output tiles (tm x tn tiles of mcp x ncp register tiles) for an [mp x MR, np x NR] product:
/// at least TASKS_PER_THREAD tiles per thread, a tile's C block small enough to stay in L2
/// between K blocks and its A block per K block within half of L2, and among those the cut with
/// the fewest operand re-reads, tm * |W| + tn * |A| (a tile row re-reads the whole weight, a tile
/// column the whole input): small batches split N only, large ones both.
fn tiling(mp: usize, np: usize, ks: usize, mr: usize, nr: usize) -> (usize, usize, usize, usize) {
    let tasks = TASKS_PER_THREAD * rayon::current_num_threads().max(1);
    let (a_bytes, w_bytes) = ((mp * mr * ks) as f64, (np * nr * ks) as f64);
    let mut best = (
        f64::INFINITY,
        mp.min(tasks),
        tasks.div_ceil(mp.min(tasks)).min(np),
    );
    for tm in 1..=mp.min(64) {
        let rows = mp.div_ceil(tm) * mr;
        if rows * kc_of(nr).min(ks.max(1)) * 4 > MAX_A_BLOCK && tm < mp {
            continue;
        }
        let max_cols = (MAX_C_TILE / (rows * 4)).max(nr);
        let tn_min = np.div_ceil((max_cols / nr).max(1));
        let tn = tasks.div_ceil(tm).max(tn_min).min(np);
        let cost = tm as f64 * w_bytes + tn as f64 * a_bytes;
        // Too few tiles to keep every thread busy counts as much as re-reading everything.
        let short = if tm * tn < tasks {
            w_bytes + a_bytes
        } else {
            0.0
        };
        if cost + short < best.0 {
            best = (cost + short, tm, tn);
        }
    }
    let (mcp, ncp) = (mp.div_ceil(best.1), np.div_ceil(best.2));
    (mp.div_ceil(mcp), np.div_ceil(ncp), mcp, ncp)
}
