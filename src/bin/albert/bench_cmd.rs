//! `albert bench`: the main job with no files at all.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use albert::bench::{self, BenchRow};
use albert::{Albert, AlbertConfig, Head};

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
    /// One JSON object per row instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    super::resolve_device(&args.device)?;
    let model = match &args.model {
        Some(dir) => Albert::from_dir(dir, Some(Head::Model))?,
        None => Albert::synthetic(AlbertConfig::base_v2(), Head::Model, 42),
    };
    if !args.json {
        let name = args
            .model
            .as_ref()
            .map_or("synthetic albert-base-v2".into(), |d| {
                d.display().to_string()
            });
        println!(
            "{name}: {} params, {} threads",
            model.weights.num_params(),
            rayon::current_num_threads()
        );
        println!(
            "{:>5} {:>5} {:>6} {:>5} {:>10} {:>10} {:>10} {:>11} {:>8}",
            "batch", "seq", "device", "dtype", "p50 ms", "p90 ms", "seq/s", "tokens/s", "GFLOP/s"
        );
    }
    for &s in &args.seq {
        for &b in &args.batch {
            let row = bench::run(&model, b, s, args.warmup, args.iters)?;
            print_row(&row, args.json)?;
        }
    }
    Ok(())
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
