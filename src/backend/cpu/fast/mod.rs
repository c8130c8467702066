//! The fast CPU path: the ops of `reference.rs`, same names and argument order, built for speed.
//!
//! - `gemm`: `linear_forward` over weights packed once at load into column panels, A packed per
//!   call, micro-kernels picked at run time (AVX-512 f32, AVX-512 BF16 `vdpbf16ps`, AVX2+FMA,
//!   portable), K blocked, rayon over output tiles, fused epilogues (bias, bias + activation,
//!   bias + residual + LayerNorm).
//! - `attention`: one task per (batch row, head), online softmax over key blocks, the score tile
//!   in L1, keys past each sequence's last real token skipped; its two products reuse the GEMM
//!   micro-kernel.
//! - `norm`: LayerNorm with f64 statistics (the largest error source when done in f32), and the
//!   vectorised activations.
//! - `embeddings`: gather + LayerNorm (the E -> H projection is a `linear_forward`).
//! - `model`: `FastAlbert`, the scheduler (fused [3H, H] QKV weight) and the activation arena.
//!
//! Numerics: products accumulate in f32 with FMA (one accumulator per output, K blocked, so each
//! output is a sum of blocked partial sums); LayerNorm statistics in f64; softmax and GELU in f32
//! with ~1 ulp exp. Every fixture stays within 1e-5 of transformers' float64 (tests/golden.rs).

pub mod attention;
pub mod embeddings;
pub mod gemm;
pub mod heads;
pub mod model;
pub mod norm;

pub use model::FastAlbert;

/// The instruction sets the micro-kernels are written for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust (whatever the compiler vectorises for the baseline target).
    Portable,
    /// AVX2 + FMA, 256-bit.
    Avx2,
    /// AVX-512F (+BW/VL), 512-bit, f32 only.
    Avx512,
    /// AVX-512 with AVX512_BF16: `vdpbf16ps` for bf16 weights.
    Avx512Bf16,
}

impl Isa {
    /// The best instruction set of this CPU, capped by `$ALBERT_CPU_ISA` (portable, avx2, avx512,
    /// avx512bf16) when set: the way to run the fallbacks on a machine that has more.
    pub fn detect() -> Isa {
        let best = Self::best_supported();
        let cap = std::env::var("ALBERT_CPU_ISA")
            .ok()
            .and_then(|v| Self::from_name(&v));
        cap.map_or(best, |c| c.min(best))
    }

    /// Every instruction set this CPU can run (for tests that check each kernel).
    pub fn available() -> Vec<Isa> {
        let best = Self::best_supported();
        [Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16]
            .into_iter()
            .filter(|i| *i <= best)
            .collect()
    }

    pub fn from_name(name: &str) -> Option<Isa> {
        Some(match name {
            "portable" => Isa::Portable,
            "avx2" => Isa::Avx2,
            "avx512" => Isa::Avx512,
            "avx512bf16" => Isa::Avx512Bf16,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Bf16 => "avx512bf16",
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn best_supported() -> Isa {
        let avx512 = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl");
        if avx512 && is_x86_feature_detected!("avx512bf16") {
            Isa::Avx512Bf16
        } else if avx512 {
            Isa::Avx512
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn best_supported() -> Isa {
        Isa::Portable
    }
}

/// A raw pointer that rayon tasks may share: each task writes a region no other task touches,
/// which the caller states at every use.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);

// SAFETY: the pointer is only dereferenced by tasks that write disjoint regions of a buffer that
// outlives the parallel loop (stated at each use).
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above; shared references to the wrapper only copy the address.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    #[inline]
    pub fn get(self) -> *mut T {
        self.0
    }
}

/// A buffer of 4-byte elements whose start is 64-byte aligned (a cache line, a zmm), so that
/// packed panels and activation rows never split a vector load across two lines.
#[derive(Clone, Default)]
pub struct AlignedBuf {
    raw: Vec<u32>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn zeros(len: usize) -> Self {
        let raw = vec![0u32; len + 16];
        let off = raw.as_ptr().align_offset(64).min(16);
        AlignedBuf { raw, off, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn u32s(&self) -> &[u32] {
        &self.raw[self.off..self.off + self.len]
    }

    pub fn u32s_mut(&mut self) -> &mut [u32] {
        &mut self.raw[self.off..self.off + self.len]
    }

    pub fn f32s(&self) -> &[f32] {
        bytemuck::cast_slice(self.u32s())
    }

    pub fn f32s_mut(&mut self) -> &mut [f32] {
        bytemuck::cast_slice_mut(self.u32s_mut())
    }

    /// Bytes held (for memory accounting).
    pub fn bytes(&self) -> usize {
        self.raw.len() * 4
    }
}
