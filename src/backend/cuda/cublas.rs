//! The cuBLAS baseline, only for benchmarks: times cuBLAS on the encoder's product shapes next to
//! our product (T activations in and out where the engine keeps them, else linear_forward), with
//! CUDA events on one stream. Nothing in the engine calls cuBLAS.
//!
//! Row-major out[M, N] = inp[M, K] W[N, K]^T is, in cuBLAS's column-major terms,
//! out^T[N, M] = W^T^T[N, K] inp^T[K, M]: gemm(T, N, m = N, n = M, k = K, A = W, B = inp).
//! cuBLAS computes bf16/f16 products with bf16/f16 inputs and outputs (f32 accumulation); ours
//! reads f32 activations and writes f32: the comparison is of the same shapes and FLOPs, with
//! cuBLAS moving fewer activation bytes.

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{sys::CUevent_flags, CudaSlice};
use half::{bf16, f16};
use serde::Serialize;

use super::device::CudaDevice;
use super::weights::DeviceMatrix;
use crate::dtype::DType;
use crate::error::Result;
use crate::rng::Rng;

#[derive(Clone, Debug, Serialize)]
pub struct GemmTiming {
    pub name: &'static str,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub dtype: DType,
    /// Split-K partials our product wrote (f32, reduced by the LayerNorm that follows in the
    /// engine, not timed here); 1: one output in the activations' type.
    pub splits: usize,
    pub ours_us: f64,
    pub cublas_us: f64,
    /// ours / cuBLAS time: below 1 is faster than cuBLAS.
    pub ratio: f64,
    pub ours_tflops: f64,
    pub cublas_tflops: f64,
}

/// Median microseconds of `iters` runs of `f`, timed with events after `warmup` runs.
fn time_us(
    dev: &CudaDevice,
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let ev = |e| dev.err("event", e);
        let start = dev
            .stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(ev)?;
        f()?;
        let end = dev
            .stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(ev)?;
        times.push(start.elapsed_ms(&end).map_err(ev)? as f64 * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times one product shape [M, K] x [N, K]^T in `dtype`, ours and cuBLAS's, on random data.
/// `splits` > 1: ours as the engine runs a product that feeds a LayerNorm, split over K into
/// f32 partial sums (`CudaDevice::linear_forward_split`).
pub fn compare_gemm(
    dev: &CudaDevice,
    name: &'static str,
    (m, n, k): (usize, usize, usize),
    dtype: DType,
    splits: usize,
) -> Result<GemmTiming> {
    let mut rng = Rng::new(7);
    let inp_host = rng.vec(m * k, 1.0);
    let w_host = rng.vec(n * k, 0.05);
    let s = &dev.stream;
    let up = |e| dev.err("upload", e);
    let inp = s.clone_htod(&inp_host).map_err(up)?;
    let weight = DeviceMatrix::upload(dev, &w_host, dtype)?;
    let mut out = s.alloc_zeros::<f32>(m * n).map_err(up)?;
    let (warmup, iters) = (3, 20);
    // Ours as the scheduler runs it: with T activations in and out where the engine keeps
    // them (every encoder product in bf16/f16 on sm_80+), the same bytes as cuBLAS's bf16/f16
    // product; else f32 activations.
    let t_kernel = format!("linear_forward_mma_{0}_from_{0}_to_{0}", dtype.name());
    let keeps_t = dtype != DType::F32 && dev.linear_keeps_t(dtype) && dev.kernels.has(&t_kernel);
    let splits = if keeps_t { splits.max(1) } else { 1 };
    let ours = match keeps_t {
        true if splits > 1 => {
            let a_t = DeviceMatrix::upload(dev, &inp_host, dtype)?;
            let mut parts = s.alloc_zeros::<f32>(splits * m * n).map_err(up)?;
            time_us(dev, warmup, iters, || {
                let a = a_t.view(..);
                dev.linear_forward_split(&mut parts, &a, &weight, None, m, k, n, splits)
            })?
        }
        true => {
            let a_t = DeviceMatrix::upload(dev, &inp_host, dtype)?;
            let mut out_t = DeviceMatrix::zeros(dev, m * n, dtype)?;
            time_us(dev, warmup, iters, || {
                let a = a_t.view(..);
                dev.linear_forward_t((&mut out_t).into(), &a, &weight, None, m, k, n, None)
            })?
        }
        false => time_us(dev, warmup, iters, || {
            dev.linear_forward(&mut out, &inp, &weight, None, m, k, n, None)
        })?,
    };

    let blas = CudaBlas::new(s.clone()).map_err(|e| dev.err("cuBLAS handle", e))?;
    let cfg = |alpha, beta| row_major_config(m, n, k, alpha, beta);
    let cfg16 = |alpha, beta| row_major_config(m, n, k, alpha, beta);
    let gemm_err = |e| dev.err("cuBLAS gemm", e);
    let cfgb = |alpha, beta| row_major_config(m, n, k, alpha, beta);
    let cublas = match (&weight, dtype) {
        (DeviceMatrix::F32(w), _) => time_us(dev, warmup, iters, || {
            // SAFETY: w is [N, K], inp [M, K], out [M, N], as the config says.
            unsafe { blas.gemm(cfg(1.0f32, 0.0f32), w, &inp, &mut out) }.map_err(gemm_err)
        })?,
        (DeviceMatrix::BF16(w), _) => {
            let a: Vec<bf16> = inp_host.iter().map(|&x| bf16::from_f32(x)).collect();
            let a: CudaSlice<bf16> = s.clone_htod(&a).map_err(up)?;
            let mut c = s.alloc_zeros::<bf16>(m * n).map_err(up)?;
            time_us(dev, warmup, iters, || {
                // SAFETY: as above, in bf16.
                unsafe { blas.gemm(cfgb(bf16::ONE, bf16::ZERO), w, &a, &mut c) }.map_err(gemm_err)
            })?
        }
        (DeviceMatrix::F16(w), _) => {
            let a: Vec<f16> = inp_host.iter().map(|&x| f16::from_f32(x)).collect();
            let a: CudaSlice<f16> = s.clone_htod(&a).map_err(up)?;
            let mut c = s.alloc_zeros::<f16>(m * n).map_err(up)?;
            time_us(dev, warmup, iters, || {
                // SAFETY: as above, in f16.
                unsafe { blas.gemm(cfg16(f16::ONE, f16::ZERO), w, &a, &mut c) }.map_err(gemm_err)
            })?
        }
    };
    let flops = 2.0 * (m * n * k) as f64;
    Ok(GemmTiming {
        name,
        m,
        n,
        k,
        dtype,
        splits,
        ours_us: ours,
        cublas_us: cublas,
        ratio: ours / cublas,
        ours_tflops: flops / ours / 1e6,
        cublas_tflops: flops / cublas / 1e6,
    })
}

/// out[M, N] = inp[M, K] W[N, K]^T for row-major buffers (see the module note).
fn row_major_config<T>(m: usize, n: usize, k: usize, alpha: T, beta: T) -> GemmConfig<T> {
    GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_T,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha,
        lda: k as i32,
        ldb: k as i32,
        beta,
        ldc: n as i32,
    }
}
