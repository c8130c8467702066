//! The whole encoder on the synthetic albert-base-v2 (`Albert::synthetic(base_v2, Model, 42)`,
//! what `albert bench` runs), fast CPU path, f32 and bf16: b1/s128, b8/s128, b1/s512.
//!
//!   cargo bench --bench forward

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use albert::backend::cpu::fast::FastAlbert;
use albert::bench::{encoder_flops, random_inputs, INPUT_SEED};
use albert::{Albert, AlbertConfig, DType, Head};

fn forward(c: &mut Criterion) {
    let cfg = AlbertConfig::base_v2();
    for dtype in [DType::F32, DType::BF16] {
        let model = Albert::synthetic(cfg.clone(), Head::Model, 42);
        let fast = FastAlbert::new(model, dtype).unwrap();
        let mut g = c.benchmark_group(format!("encoder_{dtype}"));
        g.sample_size(10);
        for (b, s) in [(1usize, 128usize), (8, 128), (1, 512)] {
            let inputs = random_inputs(&cfg, b, s, INPUT_SEED).unwrap();
            // Elements = FLOPs, so criterion's "elem/s" reads as FLOP/s.
            g.throughput(Throughput::Elements(encoder_flops(&cfg, b, s) as u64));
            g.bench_function(format!("b{b}_s{s}"), |bench| {
                bench.iter(|| fast.encode_only(&inputs).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
