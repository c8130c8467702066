//! Our products next to the `gemm` crate at every product shape of the base-v2 encoder, 2
//! threads: GFLOP/s of out[M, N] = inp[M, K] W[N, K]^T (+ bias for ours; the crate gets no bias).
//!
//!   cargo bench --bench gemm            (ALBERT_GEMM_ITERS=20 for more iterations)
//!
//! Rows: `ours f32` is the shipped kernel (blocked sums, 4 x 48), `ours f32 plain` the 12 x 32
//! FMA-chain kernel (faster, but 1.2e-5 off on tiny-albert-groups), `ours bf16` the vdpbf16ps
//! kernel, `gemm crate` gemm 0.19 (packs both operands on every call; f32).

use std::time::Instant;

use albert::backend::cpu::fast::gemm::{linear_forward, Epilogue, Micro, PackedWeight};
use albert::backend::cpu::fast::{AlignedBuf, Isa};
use albert::rng::Rng;

fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let iters: usize = std::env::var("ALBERT_GEMM_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let isa = Isa::detect();
    let mut r = Rng::new(7);
    println!(
        "{} rayon threads, {}; GFLOP/s, median of {iters}",
        rayon::current_num_threads(),
        isa.name()
    );
    println!(
        "{:>10} {:>5} {:>5} {:>5} {:>9} {:>9} {:>9} {:>10}",
        "op", "M", "N", "K", "ours f32", "f32 plain", "ours bf16", "gemm crate"
    );
    let shapes = [
        ("projection", 768, 128),
        ("qkv", 2304, 768),
        ("attn out", 768, 768),
        ("ffn", 3072, 768),
        ("ffn out", 768, 3072),
    ];
    for m in [128usize, 512, 1024] {
        for (name, n, k) in shapes {
            let inp = r.vec(m * k, 1.0);
            let w = r.vec(n * k, 0.05);
            let bias = r.vec(n, 0.1);
            let mut out = vec![0f32; m * n];
            let flops = 2.0 * (m * n * k) as f64;
            let mut ours = |micro: Micro| {
                let pw = PackedWeight::with_micro(&w, n, k, micro);
                let mut pa = AlignedBuf::zeros(micro.packed_a_len(m, k));
                let t = time(iters, || {
                    linear_forward(
                        &mut out,
                        &inp,
                        &pw,
                        Some(&bias),
                        m,
                        k,
                        n,
                        Epilogue::None,
                        pa.u32s_mut(),
                    )
                });
                flops / t / 1e9
            };
            let f32_blocked = ours(Micro::f32(isa));
            let f32_plain = ours(Micro::attention(isa));
            let bf16 = ours(Micro::bf16(isa));
            let threads = rayon::current_num_threads();
            let crate_t = time(iters, || {
                // SAFETY: every pointer and stride describes a live buffer of the given shape:
                // dst [m, n] row-major, lhs [m, k] row-major, rhs = W^T viewed as [k, n] with
                // column stride k.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        out.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        inp.as_ptr(),
                        1,
                        k as isize,
                        w.as_ptr(),
                        k as isize,
                        1,
                        0.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(threads),
                    )
                }
            });
            println!(
                "{name:>10} {m:>5} {n:>5} {k:>5} {f32_blocked:>9.1} {f32_plain:>9.1} {bf16:>9.1} {:>10.1}",
                flops / crate_t / 1e9
            );
        }
    }
}
