//! Soak run: one model and one tokenizer shared by N threads serving M requests in all (text in,
//! tokenize, forward, top token out), as a service would. Reports throughput, p50/p99 latency
//! and resident memory at the start, after the first 1,000 requests and after the last; fails
//! (exit 1) when memory grows by 5% or more from the first 1,000 requests to the last.
//!
//!   cargo run --release --example soak -- [MODEL_DIR] [--requests 10000] [--threads 8]
//!       [--device cpu|cpu-reference|auto|cuda] [--dtype f32|bf16]
//!
//! MODEL_DIR defaults to ../shared/models/base-v2-random-mlm (an AlbertForMaskedLM).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use albert::backend::DeviceRequest;
use albert::{Albert, DType, EncodeOptions, Engine, Tokenizer};

#[derive(Parser)]
struct Args {
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    #[arg(long, default_value_t = 8)]
    threads: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long)]
    dtype: Option<String>,
}

const TEXTS: &[&str] = &[
    "The capital of France is [MASK].",
    "ALBERT shares the weights of one layer across all of its layers, which makes it small.",
    "Hello.",
    "She moved from Warsaw to Paris in 1891 and studied physics at the Sorbonne, where she met \
     Pierre, with whom she later shared a Nobel prize for their work on radioactivity.",
    "Tokyo is a [MASK] city.",
    "What time is it?",
    "Rust services embed the engine and call it from many threads at once, each with its own \
     request, and expect the same answer as a request run alone.",
];

/// Resident memory now (VmRSS), bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = args.model.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/models/base-v2-random-mlm")
    });
    let model = Albert::from_dir(&dir, None).with_context(|| dir.display().to_string())?;
    let tok = Tokenizer::from_dir(&dir)?;
    let device: DeviceRequest = args.device.parse()?;
    let dtype = args.dtype.as_deref().map(str::parse::<DType>).transpose()?;
    let (engine, notice) = Engine::new(model, device, dtype)?;
    if let Some(n) = notice {
        eprintln!("soak: {n}");
    }
    let (n, threads) = (args.requests, args.threads.max(1));
    if n < 2000 {
        bail!("--requests must be at least 2000 (the first and last 1,000 are compared)");
    }

    let rss_start = rss_bytes();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let rss_first = Mutex::new(0u64); // after the first 1,000 requests
    let latencies = Mutex::new(vec![Duration::ZERO; n]);
    let wall = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        let text = TEXTS[i % TEXTS.len()];
                        let t = Instant::now();
                        let enc = tok.encode(text, None, &EncodeOptions::default())?;
                        let inputs = Tokenizer::to_inputs(&[enc])?;
                        let out = engine.forward(&inputs, Default::default())?;
                        let logits = out.get("logits").context("no logits")?;
                        let top = logits
                            .data
                            .iter()
                            .enumerate()
                            .max_by(|a, b| a.1.total_cmp(b.1))
                            .map(|(k, _)| k);
                        std::hint::black_box(top);
                        latencies.lock().unwrap()[i] = t.elapsed();
                        if done.fetch_add(1, Ordering::Relaxed) + 1 == 1000 {
                            *rss_first.lock().unwrap() = rss_bytes();
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a worker panicked")?;
        }
        Ok(())
    })?;
    let wall = wall.elapsed();
    let rss_end = rss_bytes();
    let rss_first = *rss_first.lock().unwrap();
    let mut lat = latencies.into_inner().unwrap();
    lat.sort();
    let pct = |p: f64| lat[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1e3;
    let growth = (rss_end as f64 - rss_first as f64) / rss_first as f64 * 100.0;
    println!(
        "soak: {} on {}, {n} requests from {threads} threads",
        dir.display(),
        engine.describe()
    );
    println!("| requests/s | p50 ms | p99 ms | RSS start MiB | RSS after 1,000 MiB | RSS end MiB | growth |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {growth:+.2}% |",
        n as f64 / wall.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        mib(rss_start),
        mib(rss_first),
        mib(rss_end),
    );
    if growth >= 5.0 {
        bail!("resident memory grew by {growth:.2}% from the first 1,000 requests to the end");
    }
    Ok(())
}
