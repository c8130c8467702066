//! `albert bench`: the main job with no files at all.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use albert::bench::{self, BenchRow};
use albert::{Albert, AlbertConfig, Engine, Head};

#[derive(Args)]
pub struct BenchArgs {
    /// Model directory; default: a synthetic albert-base-v2 with seeded random weights.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8])]
    batch: Vec<usize>,
    /// Sequence lengths, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [128usize])]
    seq: Vec<usize>,
    /// Timed iterations per row.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Untimed iterations before timing.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// f32, bf16 or f16 (default: bf16 on the GPU, f32 on the CPU).
    #[arg(long)]
    dtype: Option<String>,
    /// Also time cuBLAS on the encoder's product shapes next to our kernels (GPU only).
    #[arg(long)]
    cublas: bool,
    /// One JSON object per row instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let model = match &args.model {
        Some(dir) => Albert::from_dir(dir, Some(Head::Model))?,
        None => Albert::synthetic(AlbertConfig::base_v2(), Head::Model, 42),
    };
    let params = model.weights.num_params();
    let engine = super::place(model, &args.device, args.dtype.as_deref())?;
    if !args.json {
        let name = args
            .model
            .as_ref()
            .map_or("synthetic albert-base-v2".into(), |d| {
                d.display().to_string()
            });
        println!("{name}: {params} params on {}", engine.describe());
        println!(
            "{:>5} {:>5} {:>6} {:>5} {:>10} {:>10} {:>10} {:>11} {:>8}",
            "batch", "seq", "device", "dtype", "p50 ms", "p90 ms", "seq/s", "tokens/s", "GFLOP/s"
        );
    }
    for &s in &args.seq {
        for &b in &args.batch {
            let row = bench::run(&engine, b, s, args.warmup, args.iters)?;
            print_row(&row, args.json)?;
        }
    }
    if args.cublas {
        cublas_table(&engine, &args)?;
    }
    Ok(())
}

/// Our linear_forward next to cuBLAS on every product shape of the encoder.
#[cfg(feature = "cuda")]
fn cublas_table(engine: &Engine, args: &BenchArgs) -> Result<()> {
    let Engine::Cuda(m) = engine else {
        anyhow::bail!("--cublas needs the model on a GPU (--device cuda)");
    };
    let cfg = &m.config;
    let (e, h, i) = (cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size);
    if !args.json {
        println!("\nproducts vs cuBLAS ({}):", m.dtype);
        println!(
            "{:>12} {:>6} {:>6} {:>6} {:>10} {:>10} {:>7} {:>9} {:>9}",
            "op", "M", "N", "K", "ours us", "cuBLAS us", "ratio", "ours TF/s", "cuBLAS TF/s"
        );
    }
    for &s in &args.seq {
        for &b in &args.batch {
            let rows = b * s;
            let shapes = [
                ("projection", rows, h, e),
                ("q/k/v/out", rows, h, h),
                ("ffn", rows, i, h),
                ("ffn_output", rows, h, i),
            ];
            for (name, mm, n, k) in shapes {
                let t =
                    albert::backend::cuda::cublas::compare_gemm(&m.dev, name, mm, n, k, m.dtype)?;
                if args.json {
                    println!("{}", serde_json::to_string(&t)?);
                } else {
                    println!(
                        "{:>12} {:>6} {:>6} {:>6} {:>10.1} {:>10.1} {:>7.2} {:>9.1} {:>9.1}",
                        t.name,
                        t.m,
                        t.n,
                        t.k,
                        t.ours_us,
                        t.cublas_us,
                        t.ratio,
                        t.ours_tflops,
                        t.cublas_tflops
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn cublas_table(_engine: &Engine, _args: &BenchArgs) -> Result<()> {
    anyhow::bail!("--cublas needs the CUDA backend (this build has no `cuda` feature)")
}

fn print_row(r: &BenchRow, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "{:>5} {:>5} {:>6} {:>5} {:>10.2} {:>10.2} {:>10.2} {:>11.0} {:>8.1}",
            r.batch,
            r.seq,
            r.device,
            r.dtype,
            r.p50_ms,
            r.p90_ms,
            r.seqs_per_s,
            r.tokens_per_s,
            r.gflops
        );
    }
    Ok(())
}
