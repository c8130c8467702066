//! Micro-kernels: c[rows, cols] (+)= A_panel · B_panel for one MR x NR register tile.
//!
//! Operands are 4-byte elements, one "k-step" each: A row-major [rows][lda] (the activations as
//! they are for f32; rounded to bf16 pairs, still row-major, for bf16), B packed (see `pack.rs`)
//! as a panel [ksteps][NR]. For f32 a k-step is one k and an element is an f32. For bf16 a k-step
//! is a pair of k (2j, 2j+1) and an element is two bf16 in one u32 (k = 2j in the low half), which
//! is what `vdpbf16ps` multiplies pairwise and adds into an f32 lane. A is read in place, one
//! broadcast per row and k-step (MR row streams; with MR = 4 they never collide in L1), so
//! nothing is copied for f32.
//!
//! Each kernel keeps the whole MR x NR tile in registers for the k loop, with enough independent
//! FMA chains to hide the 4-cycle FMA latency on both pipes (AVX-512 products: 4 x 48 with
//! blocked sums, 12 chains + 12 block accumulators; attention and bf16: 12 x 32, 24 chains), then
//! stores it (or adds it to `c` when `accumulate`, for the second and later K blocks). A tile cut
//! by the edge of the matrix goes through a stack buffer; the packed operands are zero-padded, so
//! the kernel itself never branches on the edge.

// Every kernel has the `KernelFn` signature (eight arguments).
#![allow(clippy::too_many_arguments)]

/// The signature every micro-kernel has. `a` points at row 0, k-step 0 of A; `b` at k-step 0 of a
/// B panel. Rows past `rows` re-read row `rows - 1` (their results are discarded).
///
/// # Safety
/// `a[i * lda + s]` is readable for `i < rows`, `s < ksteps` (1 <= rows <= MR); `b` holds
/// `ksteps * NR` elements; `c` is writable at `c[i * ldc + j]` for `i < rows`, `j < cols <= NR`;
/// and the CPU has the kernel's ISA.
pub type KernelFn = unsafe fn(
    ksteps: usize,
    a: *const u32,
    lda: usize,
    rows: usize,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    accumulate: bool,
);

/// Start of row i of A, rows past `rows` clamped to the last one.
#[inline(always)]
fn row_starts<const MR: usize>(a: *const u32, lda: usize, rows: usize) -> [*const u32; MR] {
    std::array::from_fn(|i| a.wrapping_add(i.min(rows - 1) * lda))
}

/// Largest MR x NR of any kernel: the size of the edge buffer.
const MAX_TILE: usize = 16 * 48;

/// k-steps summed into fresh accumulators before they are added to the running sums (the
/// blocked f32 kernels). A sequential f32 FMA chain over K = 48..3072 terms rounds a running sum
/// that grows like sqrt(k) at every step; summing blocks of 8 first cuts that error about
/// sqrt(8)-fold for the cost of one add per 8 FMAs, on the otherwise idle FADD pipes. It is what
/// keeps the 12 layer applications of tiny-albert-groups inside 1e-5 of float64 (plain chains
/// land at 1.2e-5 there).
pub const SUM_BLOCK: usize = 8;

/// An edge tile's stack buffer, not zeroed: every lane that `store_edge` reads was written.
type EdgeBuf = std::mem::MaybeUninit<[f32; MAX_TILE]>;

/// Writes (or adds) the valid `rows x cols` corner of a tile computed into `tmp` [MR][nr].
///
/// # Safety
/// As `KernelFn` for `c`.
#[inline(always)]
unsafe fn store_edge(
    tmp: &[f32],
    nr: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    for i in 0..rows {
        for j in 0..cols {
            // SAFETY: i < rows and j < cols, inside the caller's guarantee.
            let p = unsafe { c.add(i * ldc + j) };
            let v = tmp[i * nr + j];
            // SAFETY: as above.
            unsafe { *p = if accumulate { *p + v } else { v } };
        }
    }
}

/// f32, portable: MR = 4, NR = 16; plain arrays the compiler vectorises for any target.
///
/// # Safety
/// As `KernelFn`.
pub unsafe fn f32_portable(
    ksteps: usize,
    a: *const u32,
    lda: usize,
    rows: usize,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    accumulate: bool,
) {
    const MR: usize = 4;
    const NR: usize = 16;
    let ar = row_starts::<MR>(a, lda, rows);
    let mut acc = [[0f32; NR]; MR];
    for k0 in (0..ksteps).step_by(SUM_BLOCK) {
        let mut blk = [[0f32; NR]; MR];
        for ks in k0..(k0 + SUM_BLOCK).min(ksteps) {
            // SAFETY: the caller guarantees ksteps rows of NR (B) and MR (A) elements.
            let bv: &[u32; NR] = unsafe { &*(b.add(ks * NR) as *const [u32; NR]) };
            for (i, row) in blk.iter_mut().enumerate() {
                // SAFETY: row i (clamped) has ksteps elements.
                let ai = f32::from_bits(unsafe { *ar[i].add(ks) });
                for j in 0..NR {
                    row[j] += ai * f32::from_bits(bv[j]);
                }
            }
        }
        for (row, b) in acc.iter_mut().zip(&blk) {
            for j in 0..NR {
                row[j] += b[j];
            }
        }
    }
    let mut tmp = EdgeBuf::uninit();
    let t = tmp.as_mut_ptr() as *mut f32;
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: MR x NR <= MAX_TILE floats.
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), t.add(i * NR), NR) };
    }
    // SAFETY: the MR x NR lanes store_edge reads were written just above; `c` as the caller's.
    unsafe {
        store_edge(
            std::slice::from_raw_parts(t, MR * NR),
            NR,
            c,
            ldc,
            rows,
            cols,
            accumulate,
        )
    };
}

/// bf16 pairs, portable (any CPU without AVX512_BF16): MR = 4, NR = 16. Each pair is widened to
/// f32 (exact) and both products are added in f32, as `vdpbf16ps` does.
///
/// # Safety
/// As `KernelFn`.
pub unsafe fn bf16_portable(
    ksteps: usize,
    a: *const u32,
    lda: usize,
    rows: usize,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    accumulate: bool,
) {
    const MR: usize = 4;
    const NR: usize = 16;
    let lo = |v: u32| f32::from_bits(v << 16);
    let hi = |v: u32| f32::from_bits(v & 0xffff_0000);
    let ar = row_starts::<MR>(a, lda, rows);
    let mut acc = [[0f32; NR]; MR];
    for ks in 0..ksteps {
        // SAFETY: the caller guarantees ksteps rows of NR (B) and MR (A) elements.
        let bv: &[u32; NR] = unsafe { &*(b.add(ks * NR) as *const [u32; NR]) };
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: row i (clamped) has ksteps elements.
            let ap = unsafe { *ar[i].add(ks) };
            let (a0, a1) = (lo(ap), hi(ap));
            for j in 0..NR {
                row[j] += a0 * lo(bv[j]) + a1 * hi(bv[j]);
            }
        }
    }
    let mut tmp = EdgeBuf::uninit();
    let t = tmp.as_mut_ptr() as *mut f32;
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: MR x NR <= MAX_TILE floats.
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), t.add(i * NR), NR) };
    }
    // SAFETY: the MR x NR lanes store_edge reads were written just above; `c` as the caller's.
    unsafe {
        store_edge(
            std::slice::from_raw_parts(t, MR * NR),
            NR,
            c,
            ldc,
            rows,
            cols,
            accumulate,
        )
    };
}

#[cfg(target_arch = "x86_64")]
pub use x86::*;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{store_edge, EdgeBuf, SUM_BLOCK};
    use std::arch::x86_64::*;

    /// f32, AVX-512: MR x 32 (two zmm per row), MR <= 16.
    ///
    /// # Safety
    /// As `KernelFn`, and the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn f32_avx512<const MR: usize>(
        ksteps: usize,
        a: *const u32,
        lda: usize,
        rows: usize,
        b: *const u32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    ) {
        const NR: usize = 32;
        let ar = super::row_starts::<MR>(a, lda, rows).map(|p| p as *const f32);
        let mut bp = b as *const f32;
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for ks in 0..ksteps {
            // SAFETY: the caller guarantees ksteps k-steps of NR (B) and of each (clamped) row.
            unsafe {
                let b0 = _mm512_loadu_ps(bp);
                let b1 = _mm512_loadu_ps(bp.add(16));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*ar[i].add(ks));
                    row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
                }
                bp = bp.add(NR);
            }
        }
        // SAFETY: forwarded from the caller (c rows/cols in range).
        unsafe { store_zmm::<MR, 2>(&acc, c, ldc, rows, cols, accumulate) };
    }

    /// f32, AVX-512, blocked sums: MR x 48 (three zmm per row), 2 x 3 x MR accumulators (MR = 4:
    /// 12 FMA chains, 24 zmm). The products' kernel.
    ///
    /// # Safety
    /// As `KernelFn`, and the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn f32_avx512_blocked<const MR: usize>(
        ksteps: usize,
        a: *const u32,
        lda: usize,
        rows: usize,
        b: *const u32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    ) {
        const NR: usize = 48;
        let ar = super::row_starts::<MR>(a, lda, rows).map(|p| p as *const f32);
        let b = b as *const f32;
        let mut run = [[_mm512_setzero_ps(); 3]; MR];
        let mut k0 = 0;
        while k0 < ksteps {
            let k1 = (k0 + SUM_BLOCK).min(ksteps);
            let mut blk = [[_mm512_setzero_ps(); 3]; MR];
            // One k-step: 3 B loads, MR broadcasts, 3 MR FMAs.
            let step = |blk: &mut [[__m512; 3]; MR], ks: usize| {
                // SAFETY: the caller guarantees ksteps k-steps of NR (B) and of each row.
                unsafe {
                    let bp = b.add(ks * NR);
                    let b0 = _mm512_loadu_ps(bp);
                    let b1 = _mm512_loadu_ps(bp.add(16));
                    let b2 = _mm512_loadu_ps(bp.add(32));
                    for (i, row) in blk.iter_mut().enumerate() {
                        let ai = _mm512_set1_ps(*ar[i].add(ks));
                        row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                        row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
                        row[2] = _mm512_fmadd_ps(ai, b2, row[2]);
                    }
                }
            };
            if k1 - k0 == SUM_BLOCK {
                // A whole block: a fixed trip count, unrolled with constant offsets.
                for j in 0..SUM_BLOCK {
                    step(&mut blk, k0 + j);
                }
            } else {
                for ks in k0..k1 {
                    step(&mut blk, ks);
                }
            }
            for (r, bl) in run.iter_mut().zip(&blk) {
                for j in 0..3 {
                    r[j] = _mm512_add_ps(r[j], bl[j]);
                }
            }
            k0 = k1;
        }
        // SAFETY: forwarded from the caller.
        unsafe { store_zmm::<MR, 3>(&run, c, ldc, rows, cols, accumulate) };
    }

    /// bf16 pairs, AVX512_BF16: MR x 32 with `vdpbf16ps` (two k per instruction).
    ///
    /// # Safety
    /// As `KernelFn`, and the CPU has AVX-512F and AVX512_BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn bf16_avx512<const MR: usize>(
        ksteps: usize,
        a: *const u32,
        lda: usize,
        rows: usize,
        b: *const u32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    ) {
        const NR: usize = 32;
        let ar = super::row_starts::<MR>(a, lda, rows);
        let mut bp = b;
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for ks in 0..ksteps {
            // SAFETY: the caller guarantees ksteps k-steps of NR (B) and MR (A) elements; the
            // transmutes reinterpret 512 bits of bf16 pairs as the __m512bh the instruction takes.
            unsafe {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp as *const __m512i));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(bp.add(16) as *const __m512i));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*ar[i].add(ks) as i32));
                    row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
                    row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
                }
                bp = bp.add(NR);
            }
        }
        // SAFETY: forwarded from the caller.
        unsafe { store_zmm::<MR, 2>(&acc, c, ldc, rows, cols, accumulate) };
    }

    /// Stores an MR x 16W zmm tile: straight to `c` when whole, through a buffer at an edge.
    #[target_feature(enable = "avx512f")]
    unsafe fn store_zmm<const MR: usize, const W: usize>(
        acc: &[[__m512; W]; MR],
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let nr = 16 * W;
        if rows == MR && cols == nr {
            for (i, row) in acc.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    // SAFETY: a whole tile: MR rows and nr columns are inside `c`.
                    unsafe {
                        let p = c.add(i * ldc + 16 * j);
                        let v = if accumulate {
                            _mm512_add_ps(*v, _mm512_loadu_ps(p))
                        } else {
                            *v
                        };
                        _mm512_storeu_ps(p, v);
                    }
                }
            }
        } else {
            let mut tmp = EdgeBuf::uninit();
            let t = tmp.as_mut_ptr() as *mut f32;
            for (i, row) in acc.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    // SAFETY: MR x nr <= MAX_TILE floats.
                    unsafe { _mm512_storeu_ps(t.add(i * nr + 16 * j), *v) };
                }
            }
            // SAFETY: all MR x nr lanes were written just above; `c` as the caller's.
            let tmp = unsafe { std::slice::from_raw_parts(t, MR * nr) };
            // SAFETY: forwarded from the caller.
            unsafe { store_edge(tmp, nr, c, ldc, rows, cols, accumulate) };
        }
    }

    /// f32, AVX2 + FMA, blocked sums: MR x 16 (two ymm per row; MR = 3: 12 of 16 ymm).
    ///
    /// # Safety
    /// As `KernelFn`, and the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f32_avx2<const MR: usize>(
        ksteps: usize,
        a: *const u32,
        lda: usize,
        rows: usize,
        b: *const u32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    ) {
        const NR: usize = 16;
        let ar = super::row_starts::<MR>(a, lda, rows).map(|p| p as *const f32);
        let b = b as *const f32;
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let mut k0 = 0;
        while k0 < ksteps {
            let k1 = (k0 + SUM_BLOCK).min(ksteps);
            let mut blk = [[_mm256_setzero_ps(); 2]; MR];
            for ks in k0..k1 {
                // SAFETY: the caller guarantees ksteps k-steps of NR (B) and MR (A) elements.
                unsafe {
                    let b0 = _mm256_loadu_ps(b.add(ks * NR));
                    let b1 = _mm256_loadu_ps(b.add(ks * NR + 8));
                    for (i, row) in blk.iter_mut().enumerate() {
                        let ai = _mm256_set1_ps(*ar[i].add(ks));
                        row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                        row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
                    }
                }
            }
            for (r, bl) in acc.iter_mut().zip(&blk) {
                r[0] = _mm256_add_ps(r[0], bl[0]);
                r[1] = _mm256_add_ps(r[1], bl[1]);
            }
            k0 = k1;
        }
        if rows == MR && cols == NR {
            for (i, row) in acc.iter().enumerate() {
                // SAFETY: a whole tile is inside `c`.
                unsafe {
                    let p = c.add(i * ldc);
                    let (mut v0, mut v1) = (row[0], row[1]);
                    if accumulate {
                        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(p));
                        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(p.add(8)));
                    }
                    _mm256_storeu_ps(p, v0);
                    _mm256_storeu_ps(p.add(8), v1);
                }
            }
        } else {
            let mut tmp = EdgeBuf::uninit();
            let t = tmp.as_mut_ptr() as *mut f32;
            for (i, row) in acc.iter().enumerate() {
                // SAFETY: MR x NR <= MAX_TILE floats.
                unsafe {
                    _mm256_storeu_ps(t.add(i * NR), row[0]);
                    _mm256_storeu_ps(t.add(i * NR + 8), row[1]);
                }
            }
            // SAFETY: all MR x NR lanes were written just above; `c` as the caller's.
            let tmp = unsafe { std::slice::from_raw_parts(t, MR * NR) };
            // SAFETY: forwarded from the caller.
            unsafe { store_edge(tmp, NR, c, ldc, rows, cols, accumulate) };
        }
    }
}
