//! The least each launch must do, for the per-kernel floors of notes/gpu.md: every launcher
//! states its launch's FLOPs (a multiply-add = 2) and the bytes it must move once (its inputs
//! read, its outputs written, a weight counted once though it then stays in L2). While a
//! `CostLog` records (`albert bench --kernel-costs`, one eager pass), each launch is logged with
//! its kernel, grid and block; scripts/ncu_table.py sets ncu's time for the same launch beside
//! it: floor = max(FLOPs / peak, bytes / bandwidth), and the kernel's fraction of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use cudarc::driver::LaunchConfig;
use serde::Serialize;

/// What one launch must do at least, and on what shape (named in the log, so that a table can
/// tell the QKV product from the FFN-in one).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    pub flops: f64,
    pub bytes: f64,
    pub shape: Shape,
}

/// A launch's problem size, kept as numbers (formatted only when the log records).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Shape {
    #[default]
    Unknown,
    /// [M, K] x [N, K]^T in `splits` partials.
    Product {
        m: usize,
        k: usize,
        n: usize,
        splits: usize,
    },
    /// B sequences of S tokens, A heads of D.
    Attention {
        b: usize,
        s: usize,
        a: usize,
        d: usize,
    },
    /// `layers` applications of the layer to M tokens in one launch (layer_resident.rs).
    Encoder { m: usize, layers: usize },
    /// `rows` rows of `cols` (a LayerNorm over `parts` partial inputs, embeddings, gathers).
    Rows {
        rows: usize,
        cols: usize,
        parts: usize,
    },
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Shape::Unknown => write!(f, "-"),
            Shape::Product { m, k, n, splits: 1 } => write!(f, "{m}x{k}x{n}"),
            Shape::Product { m, k, n, splits } => write!(f, "{m}x{k}x{n}/{splits}"),
            Shape::Attention { b, s, a, d } => write!(f, "b{b} s{s} {a}x{d}"),
            Shape::Encoder { m, layers } => write!(f, "{m} x{layers} layers"),
            Shape::Rows {
                rows,
                cols,
                parts: 1,
            } => write!(f, "{rows}x{cols}"),
            Shape::Rows { rows, cols, parts } => write!(f, "{rows}x{cols} +{parts}"),
        }
    }
}

impl Cost {
    /// out[splits, M, N] = inp[M, K] @ weight[N, K]^T + bias[N]; element sizes in bytes of the
    /// input, the weight and the output (f32 partials: 4).
    pub fn product(
        (m, k, n): (usize, usize, usize),
        (inp, weight, out): (usize, usize, usize),
        splits: usize,
    ) -> Cost {
        Cost {
            flops: 2.0 * (m * n) as f64 * k as f64,
            bytes: (m * k * inp + n * k * weight + n * 4 + splits * m * n * out) as f64,
            shape: Shape::Product { m, k, n, splits },
        }
    }

    /// A product with the residual LayerNorm in its epilogue (linear_mma_ln.cu, or in
    /// `splits` k shares linear_mma_grid_ln.cu): the product's operands read, the residual
    /// read, the f32 output and its T copy (`t` bytes) written (the pre-LayerNorm values or
    /// partials pass through L2 between the blocks).
    pub fn product_layernorm(
        (m, k, n): (usize, usize, usize),
        (inp, weight, t): (usize, usize, usize),
        splits: usize,
    ) -> Cost {
        Cost {
            flops: 2.0 * (m * n) as f64 * k as f64,
            bytes: (m * k * inp + n * k * weight + 3 * n * 4 + m * n * (4 + 4 + t)) as f64,
            shape: Shape::Product { m, k, n, splits },
        }
    }

    /// Attention of B sequences of S tokens, A heads of D: q k^T and p v (4 B A S^2 D FLOPs,
    /// every key kept), q, k, v and the mask read, the context written.
    pub fn attention(
        (b, s, a, d): (usize, usize, usize, usize),
        (inp, out): (usize, usize),
    ) -> Cost {
        let tokens = (b * s) as f64;
        let h = (a * d) as f64;
        Cost {
            flops: 4.0 * tokens * s as f64 * h,
            bytes: tokens * (h * (3 * inp + out) as f64 + 4.0),
            shape: Shape::Attention { b, s, a, d },
        }
    }

    /// A launch that only moves `bytes` (its arithmetic is a few operations per element) over
    /// `rows` rows of `cols` (`parts` inputs added).
    pub fn moves(bytes: usize, (rows, cols, parts): (usize, usize, usize)) -> Cost {
        Cost {
            flops: 0.0,
            bytes: bytes as f64,
            shape: Shape::Rows { rows, cols, parts },
        }
    }
}

/// One launch as recorded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LaunchCost {
    pub kernel: String,
    /// `Shape`'s text: "4096x768x2304" (M x K x N, "/4" in 4 split-K partials), "b32 s128
    /// 12x64" (attention), "4096x768 +4" (rows x columns, partial inputs added).
    pub shape: String,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub flops: f64,
    pub bytes: f64,
}

/// The launches made while recording; off (and one relaxed load per launch) otherwise.
#[derive(Default)]
pub struct CostLog {
    on: AtomicBool,
    launches: Mutex<Vec<LaunchCost>>,
}

impl CostLog {
    /// Starts recording (and forgets what an earlier recording left).
    pub fn start(&self) {
        if let Ok(mut l) = self.launches.lock() {
            l.clear();
        }
        self.on.store(true, Ordering::Relaxed);
    }

    /// Stops recording and returns the launches since `start`, in launch order.
    pub fn take(&self) -> Vec<LaunchCost> {
        self.on.store(false, Ordering::Relaxed);
        self.launches
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    pub fn recording(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    pub(super) fn record(&self, kernel: &str, cfg: &LaunchConfig, cost: Cost) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut l) = self.launches.lock() {
            let (g, b) = (cfg.grid_dim, cfg.block_dim);
            l.push(LaunchCost {
                kernel: kernel.into(),
                shape: cost.shape.to_string(),
                grid: [g.0, g.1, g.2],
                block: [b.0, b.1, b.2],
                flops: cost.flops,
                bytes: cost.bytes,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn albert_base_b32_floors() {
        // QKV at b32/s128: [4096, 768] x [2304, 768]^T, bf16 in and out.
        let qkv = Cost::product((4096, 768, 2304), (2, 2, 2), 1);
        assert_eq!(qkv.flops, 2.0 * 4096.0 * 768.0 * 2304.0);
        assert_eq!(
            qkv.bytes,
            (4096 * 768 * 2 + 2304 * 768 * 2 + 2304 * 4 + 4096 * 2304 * 2) as f64
        );
        // 18.4 us at 788 TFLOP/s (notes/gpu.md).
        assert!((qkv.flops / 788e12 * 1e6 - 18.4).abs() < 0.05);
        // FFN output split in 4 f32 partials.
        let out = Cost::product((4096, 3072, 768), (2, 2, 4), 4);
        assert_eq!(
            out.bytes,
            (4096 * 3072 * 2 + 768 * 3072 * 2 + 768 * 4 + 4 * 4096 * 768 * 4) as f64
        );
        // Attention: 12 heads of 64 over 32 x 128 tokens, 5.9 us of bf16 products at 788.
        let att = Cost::attention((32, 128, 12, 64), (2, 2));
        assert_eq!(att.flops, 4.0 * 4096.0 * 128.0 * 768.0);
        assert!((att.flops / 788e12 * 1e6 - 2.0).abs() < 0.1);
        assert_eq!(att.bytes, 4096.0 * (768.0 * 8.0 + 4.0));
        assert_eq!(qkv.shape.to_string(), "4096x768x2304");
        assert_eq!(out.shape.to_string(), "4096x3072x768/4");
        assert_eq!(att.shape.to_string(), "b32 s128 12x64");
        assert_eq!(
            Cost::moves(0, (4096, 768, 4)).shape.to_string(),
            "4096x768 +4"
        );
    }

    #[test]
    fn the_log_records_only_while_on() {
        let log = CostLog::default();
        let cfg = LaunchConfig {
            grid_dim: (3, 2, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        log.record("before", &cfg, Cost::moves(8, (1, 2, 1)));
        log.start();
        log.record("k", &cfg, Cost::moves(16, (4, 1, 1)));
        let got = log.take();
        log.record("after", &cfg, Cost::moves(8, (1, 2, 1)));
        assert_eq!(
            got,
            vec![LaunchCost {
                kernel: "k".into(),
                shape: "4x1".into(),
                grid: [3, 2, 1],
                block: [128, 1, 1],
                flops: 0.0,
                bytes: 16.0
            }]
        );
        assert!(log.take().is_empty());
    }
}
