//! Each fast CPU op at the base-v2 shapes (M = 128 and 1024 token rows), criterion. Throughput
//! is in FLOPs for the products (criterion's "elem/s" reads as FLOP/s) and in rows otherwise.
//!
//!   cargo bench --bench ops

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use albert::backend::cpu::fast::attention::{attention_forward, AttentionScratch};
use albert::backend::cpu::fast::embeddings::{embeddings_forward, Table};
use albert::backend::cpu::fast::gemm::{linear_forward, Epilogue, PackedWeight};
use albert::backend::cpu::fast::norm::residual_layernorm_forward;
use albert::backend::cpu::fast::{AlignedBuf, Isa};
use albert::model::activation::Activation;
use albert::rng::Rng;
use albert::DType;

const H: usize = 768;
const I: usize = 3072;
const E: usize = 128;

fn linear(c: &mut Criterion) {
    let isa = Isa::detect();
    let mut r = Rng::new(1);
    let mut g = c.benchmark_group("linear_forward");
    g.sample_size(10);
    for dtype in [DType::F32, DType::BF16] {
        for m in [128usize, 1024] {
            let shapes = [
                ("qkv", 3 * H, H),
                ("attn_out_ln", H, H),
                ("ffn_gelu", I, H),
                ("ffn_out_ln", H, I),
            ];
            for (name, n, k) in shapes {
                let (inp, w, bias) = (r.vec(m * k, 1.0), r.vec(n * k, 0.03), r.vec(n, 0.1));
                let (residual, lw, lb) = (r.vec(m * n, 1.0), vec![1.0; n], vec![0.0; n]);
                let pw = PackedWeight::new(&w, n, k, dtype, isa);
                let mut pa = AlignedBuf::zeros(pw.micro.packed_a_len(m, k));
                let mut out = vec![0f32; m * n];
                g.throughput(Throughput::Elements((2 * m * n * k) as u64));
                g.bench_function(format!("{dtype}/{name}/m{m}"), |b| {
                    b.iter(|| {
                        let epi = match name {
                            "ffn_gelu" => Epilogue::Activation(Activation::GeluTanh),
                            "qkv" => Epilogue::None,
                            _ => Epilogue::ResidualLayerNorm {
                                residual: &residual,
                                weight: &lw,
                                bias: &lb,
                                eps: 1e-12,
                            },
                        };
                        linear_forward(
                            &mut out,
                            &inp,
                            &pw,
                            Some(&bias),
                            m,
                            k,
                            n,
                            epi,
                            pa.u32s_mut(),
                        )
                    })
                });
            }
        }
    }
    g.finish();
}

fn attention(c: &mut Criterion) {
    let isa = Isa::detect();
    let mut r = Rng::new(2);
    let mut g = c.benchmark_group("attention_forward");
    g.sample_size(10);
    for (b, s) in [(1usize, 128usize), (8, 128), (1, 512)] {
        let qkv = r.vec(b * s * 3 * H, 1.0);
        let mask = vec![0f32; b * s];
        let scratch = AttentionScratch::new(isa, s, 64, rayon::current_num_threads());
        let mut out = vec![0f32; b * s * H];
        g.throughput(Throughput::Elements((4 * b * s * s * H) as u64));
        g.bench_function(format!("b{b}_s{s}"), |bench| {
            bench.iter(|| {
                attention_forward(
                    &mut out,
                    &qkv,
                    &qkv[H..],
                    &qkv[2 * H..],
                    &mask,
                    b,
                    s,
                    12,
                    64,
                    3 * H,
                    &scratch,
                )
            })
        });
    }
    g.finish();
}

fn norms_and_embeddings(c: &mut Criterion) {
    let mut r = Rng::new(3);
    let mut g = c.benchmark_group("rows");
    g.sample_size(20);
    let m = 1024;
    let (x, res) = (r.vec(m * H, 1.0), r.vec(m * H, 1.0));
    let (w, b) = (vec![1.0; H], vec![0.0; H]);
    let mut out = vec![0f32; m * H];
    g.throughput(Throughput::Elements(m as u64));
    g.bench_function("residual_layernorm_forward/m1024", |bench| {
        bench.iter(|| residual_layernorm_forward(&mut out, &x, &res, &w, &b, H, 1e-12))
    });
    let (v, s) = (30000usize, 128usize);
    let (word, pos, ty) = (
        Table::new(r.vec(v * E, 0.05), DType::F32),
        Table::new(r.vec(512 * E, 0.05), DType::F32),
        Table::new(r.vec(2 * E, 0.05), DType::F32),
    );
    let ids: Vec<u32> = (0..m as u32).map(|i| (i * 7919) % v as u32).collect();
    let types = vec![0u32; m];
    let (ew, eb) = (vec![1.0; E], vec![0.0; E]);
    let mut emb = vec![0f32; m * E];
    g.bench_function("embeddings_forward/m1024", |bench| {
        bench.iter(|| {
            embeddings_forward(
                &mut emb, &ids, &types, &word, &pos, &ty, &ew, &eb, s, E, 1e-12,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, linear, attention, norms_and_embeddings);
criterion_main!(benches);
