//! `albert bench`: latency and throughput of the encoder (embeddings, projection and every layer
//! application: the part all heads share) on seeded random inputs, with achieved GFLOP/s and the
//! process's peak resident memory (VmHWM) next to the engine's weight and activation bytes.

use std::time::Instant;

use serde::Serialize;

use crate::engine::Engine;
use crate::error::Result;
use crate::inputs::Inputs;
use crate::limits::Limits;
use crate::model::config::AlbertConfig;
use crate::rng::Rng;

#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    pub batch: usize,
    pub seq: usize,
    pub device: String,
    pub dtype: String,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub seqs_per_s: f64,
    pub tokens_per_s: f64,
    pub gflops: f64,
    pub iters: usize,
    /// Peak resident memory of the process so far (VmHWM), MiB; 0 where /proc is missing.
    pub peak_rss_mib: f64,
    /// Bytes the engine holds for weights and for activations (its arena), MiB; 0 if unknown.
    pub weights_mib: f64,
    pub activations_mib: f64,
    /// On a GPU: whether the encoder ran as CUDA graphs ("on (N captured, M replays)", or
    /// "off (why)": ALBERT_CUDA_GRAPHS=0, or the CUDA error that turned them off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_graphs: Option<String>,
    /// On a GPU: whether kernels launched with programmatic dependent launch (ALBERT_CUDA_PDL=1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_pdl: Option<bool>,
    /// On a GPU: whether the attention output may fuse with its LayerNorm
    /// (ALBERT_CUDA_FUSED_LN=1 where the sm_90 kernel loaded; taken at large batches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_fused_ln: Option<bool>,
    /// On a GPU: whether the output products may take their LayerNorms in a cooperative kernel
    /// (ALBERT_CUDA_GRID_LN=1 where the kernel loaded; taken where the grid fits the SMs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_grid_ln: Option<bool>,
    /// On a GPU: whether this batch's layer applications ran as one resident launch
    /// (ALBERT_CUDA_RESIDENT=1 where the kernel loaded, at most 128 tokens, the slabs fit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_resident: Option<bool>,
    /// On a GPU: the kernels of the encoder's products ("wgmma", "mma.sync k64", "mma.sync",
    /// "portable"), so that an ALBERT_CUDA_WGMMA=1 run says whether it really used wgmma.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_products: Option<&'static str>,
}

/// The process's peak resident set (VmHWM in /proc/self/status), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// FLOPs of one encoder pass over `b` sequences of `s` tokens (a multiply-add counts 2).
pub fn encoder_flops(cfg: &AlbertConfig, b: usize, s: usize) -> f64 {
    let (m, e, h, i) = (
        (b * s) as f64,
        cfg.embedding_size as f64,
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
    );
    let projection = 2.0 * m * e * h;
    let qkv_out = 4.0 * 2.0 * m * h * h;
    let scores_and_mix = 2.0 * 2.0 * m * s as f64 * h;
    let ffn = 2.0 * 2.0 * m * h * i;
    let layer_calls = (cfg.num_hidden_layers * cfg.inner_group_num) as f64;
    projection + layer_calls * (qkv_out + scores_and_mix + ffn)
}

/// The seed of the inputs every bench row times (`albert bench --export` writes the same).
pub const INPUT_SEED: u64 = 0x5eed;

/// Random token ids (not special, below the vocabulary), no padding.
pub fn random_inputs(cfg: &AlbertConfig, b: usize, s: usize, seed: u64) -> Result<Inputs> {
    let mut r = Rng::new(seed);
    let low = 5.min(cfg.vocab_size - 1) as u64;
    let ids = (0..b * s)
        .map(|_| (low + r.below(cfg.vocab_size as u64 - low)) as i64)
        .collect();
    Inputs::new(ids, None, None, &[b, s])
}

/// Times `iters` encoder passes after `warmup` untimed ones.
/// The host clock is read after the engine has finished (the GPU engine synchronises).
pub fn run(engine: &Engine, b: usize, s: usize, warmup: usize, iters: usize) -> Result<BenchRow> {
    let cfg = engine.config();
    let inputs = random_inputs(cfg, b, s, INPUT_SEED)?;
    inputs.validate(
        cfg,
        &Limits {
            max_tokens: usize::MAX,
        },
    )?;
    for _ in 0..warmup {
        engine.encode_only(&inputs)?;
    }
    let mut times = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        engine.encode_only(&inputs)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let p50 = pct(0.5);
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    Ok(BenchRow {
        batch: b,
        seq: s,
        device: engine.device(),
        dtype: engine.dtype().name().into(),
        p50_ms: p50 * 1e3,
        p90_ms: pct(0.9) * 1e3,
        seqs_per_s: b as f64 / p50,
        tokens_per_s: (b * s) as f64 / p50,
        gflops: encoder_flops(cfg, b, s) / p50 / 1e9,
        iters: times.len(),
        peak_rss_mib: peak_rss_bytes().map_or(0.0, |b| b as f64 / (1024.0 * 1024.0)),
        weights_mib: mib(engine.weight_bytes()),
        activations_mib: mib(engine.activation_bytes()),
        cuda_graphs: engine.graph_status(),
        cuda_pdl: engine.pdl(),
        cuda_fused_ln: engine.fused_ln(),
        cuda_grid_ln: engine.grid_ln(),
        cuda_resident: engine.resident_taken(b * s),
        cuda_products: engine.products(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let b = peak_rss_bytes().expect("VmHWM");
            assert!(b > 1 << 20, "{b}");
        }
    }

    #[test]
    fn base_v2_flops_match_the_published_estimate() {
        // albert-base at b32/s128: 0.72 TFLOP (22.4 GFLOP per 128-token sequence).
        let f = encoder_flops(&AlbertConfig::base_v2(), 32, 128);
        assert!((f / 1e12 - 0.717).abs() < 0.01, "{f}");
    }
}
