//! Opening a CUDA device without ever panicking on a machine that has none: the driver library is
//! probed before any other cudarc call (cudarc panics when libcuda is missing), and every failure
//! becomes an `Error::Device` that says why.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream};

use super::costs::CostLog;
use super::kernels::{Kernels, LoadOptions};
use super::launcher::Launch;
use crate::error::{Error, Result};

pub struct CudaDevice {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub kernels: Kernels,
    pub label: String, // "cuda:0"
    pub name: String,  // "NVIDIA H100 80GB HBM3"
    pub compute_capability: (i32, i32),
    /// Use the tensor-core products for bf16/f16 (default; ALBERT_NO_TENSOR_CORES=1 turns them
    /// off, to compare with the portable kernels).
    pub tensor_cores: bool,
    /// Streaming multiprocessors: the products pick 64x64 tiles when 128x128 ones would not
    /// give every SM a block (linear_t.rs).
    pub sm_count: usize,
    /// Launch with programmatic dependent launch (launcher.rs): ALBERT_CUDA_PDL=1 on a device
    /// whose kernels all wait for their predecessor (`Kernels::wait_for_previous_kernel`).
    /// Off by default until measured on a GPU (notes/gpu.md v1.18).
    pub pdl: bool,
    /// The 128x128 T-input products take k 64 per tile (ALBERT_CUDA_K64=1, an experiment:
    /// notes/gpu.md v1.23); used where those kernels loaded (110 KB of shared memory).
    pub k64: bool,
    /// The T-input products run on wgmma (sm_90a, kernels/linear_wgmma.cu) at every M, so
    /// that results stay batch-invariant: ALBERT_CUDA_WGMMA=1, an experiment until measured on
    /// a GPU (notes/gpu.md v1.24); used where those kernels loaded (compute capability 9.0).
    pub wgmma: bool,
    /// With `wgmma`, the products whose operands a tensor map can describe stage their tiles
    /// by TMA from a producer warp or warpgroup (kernels/linear_tma.cu): ALBERT_CUDA_TMA=1 (which implies
    /// ALBERT_CUDA_WGMMA), an experiment until measured on a GPU (notes/gpu.md v1.29).
    pub tma: bool,
    /// With `tma`, each TMA product launches only as many blocks as fit on the SMs at once, each
    /// taking output tiles in turn (kernels/linear_tma.cu): ALBERT_CUDA_PERSISTENT=1 (which
    /// implies ALBERT_CUDA_TMA), an experiment until measured on a GPU (notes/gpu.md v1.30).
    pub persistent: bool,
    /// With `persistent`, the 128x128 TMA products' two consumer warpgroups take whole output
    /// tiles in turn, one's epilogue under the other's main loop (kernels/linear_tma.cu
    /// PINGPONG): ALBERT_CUDA_PINGPONG=1 (which implies ALBERT_CUDA_PERSISTENT=1; notes/gpu.md
    /// v1.31, an experiment).
    pub pingpong: bool,
    /// The attention output's product and residual LayerNorm as one cluster kernel where the
    /// product is unsplit and takes 128x128 tiles (kernels/linear_mma_ln.cu, sm_90):
    /// ALBERT_CUDA_FUSED_LN=1, an experiment until measured on a GPU (notes/gpu.md v1.33).
    pub fused_ln: bool,
    /// Small batches: the output products' residual LayerNorms in the products' own launch, a
    /// cooperative grid whose blocks of each 64-row group meet at a barrier before they
    /// normalize its rows (kernels/linear_mma_grid_ln.cu, sm_80+), where the whole grid fits on
    /// the SMs at once: ALBERT_CUDA_GRID_LN=1, an experiment until measured on a GPU
    /// (notes/gpu.md v1.34).
    pub grid_ln: bool,
    /// Small batches (M <= 128 tokens): every layer application in one cooperative launch
    /// with the layer's weights resident in shared memory (kernels/layer_resident.cu, where it
    /// loaded and the slabs fit: sm_90): ALBERT_CUDA_RESIDENT=1, an experiment until measured
    /// on a GPU (notes/gpu.md v1.35).
    pub resident_layers: bool,
    /// The device takes cooperative launches (CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH; not
    /// under every MPS or virtualisation setup): `grid_ln` needs them.
    pub cooperative: bool,
    /// Blocks of each persistent kernel resident per SM (the driver's occupancy), by entry name.
    pub(super) resident: Mutex<HashMap<String, u32>>,
    /// The TMA products' tensor maps, encoded once per matrix and box (tma.rs).
    pub(super) maps: Mutex<HashMap<super::tma::MapKey, super::tma::TensorMap>>,
    /// With `wgmma`, 128x256 tiles for products whose grid still fills two waves of them
    /// (ALBERT_CUDA_WGMMA_WIDE=1, an experiment: notes/gpu.md v1.25).
    pub wgmma_wide: bool,
    /// 64x64 products whose grid is at most one block per SM take the 8-stage kernels
    /// (ALBERT_CUDA_DEEP=1, an experiment: notes/gpu.md v1.27); used where they loaded.
    pub deep: bool,
    /// Fill the activation arena with NaN bytes before every pass (ALBERT_CUDA_POISON=1, a
    /// debugging aid: a kernel reading memory its pass did not write then yields NaN).
    pub poison: bool,
    /// Each launch's kernel, grid, FLOPs and bytes while recording (`albert bench
    /// --kernel-costs`).
    pub costs: CostLog,
}

/// Why CUDA cannot be used here, or `Ok` with the number of devices.
pub fn probe() -> std::result::Result<usize, String> {
    // SAFETY: only tries to dlopen libcuda; must come before any other cudarc driver call.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda) found".into());
    }
    match CudaContext::device_count() {
        Ok(0) => Err("the CUDA driver reports no device".into()),
        Ok(n) => Ok(n as usize),
        Err(e) => Err(format!("the CUDA driver failed to initialise: {e}")),
    }
}

impl CudaDevice {
    pub fn open(ordinal: usize) -> Result<Self> {
        let label = format!("cuda:{ordinal}");
        let fail = |msg: String| Error::Device {
            device: label.clone(),
            msg,
        };
        let count = probe().map_err(fail)?;
        if ordinal >= count {
            return Err(fail(format!(
                "there are {count} CUDA device(s), numbered from 0"
            )));
        }
        let ctx =
            CudaContext::new(ordinal).map_err(|e| fail(format!("cannot create a context: {e}")))?;
        // SAFETY: cudarc's event tracking orders uses of one buffer across streams. Every buffer
        // of this device is allocated, used and freed on `stream` alone, in program order, so
        // there is nothing to order; and the tracking would make each launch wait on events
        // recorded before a CUDA graph capture began, which breaks the capture (graphs.rs).
        // Called before any buffer is allocated, so none carries events.
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let compute_capability = ctx.compute_capability().map_err(|e| fail(e.to_string()))?;
        let pingpong = std::env::var("ALBERT_CUDA_PINGPONG").is_ok_and(|v| v == "1");
        let persistent =
            pingpong || std::env::var("ALBERT_CUDA_PERSISTENT").is_ok_and(|v| v == "1");
        let tma = persistent || std::env::var("ALBERT_CUDA_TMA").is_ok_and(|v| v == "1");
        let wgmma = tma || std::env::var("ALBERT_CUDA_WGMMA").is_ok_and(|v| v == "1");
        let load = LoadOptions {
            wgmma,
            ptx_only: std::env::var("ALBERT_CUDA_PTX").is_ok_and(|v| v == "1"),
        };
        let kernels = Kernels::load(&ctx, &label, compute_capability, load)?;
        // The engine's own non-blocking stream: the legacy default stream cannot be captured
        // into a CUDA graph, and a non-blocking one does not wait on other work in the context.
        let stream = ctx
            .new_stream()
            .map_err(|e| fail(format!("cannot create a stream: {e}")))?;
        let tensor_cores = std::env::var_os("ALBERT_NO_TENSOR_CORES").is_none();
        let sm_count = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| fail(format!("cannot read the SM count: {e}")))?
            .max(1) as usize;
        let pdl = std::env::var("ALBERT_CUDA_PDL").is_ok_and(|v| v == "1")
            && kernels.wait_for_previous_kernel();
        let k64 = std::env::var("ALBERT_CUDA_K64").is_ok_and(|v| v == "1");
        let deep = std::env::var("ALBERT_CUDA_DEEP").is_ok_and(|v| v == "1");
        let wgmma_wide = std::env::var("ALBERT_CUDA_WGMMA_WIDE").is_ok_and(|v| v == "1");
        let poison = std::env::var("ALBERT_CUDA_POISON").is_ok_and(|v| v == "1");
        let fused_ln = std::env::var("ALBERT_CUDA_FUSED_LN").is_ok_and(|v| v == "1");
        let grid_ln = std::env::var("ALBERT_CUDA_GRID_LN").is_ok_and(|v| v == "1");
        let resident_layers = std::env::var("ALBERT_CUDA_RESIDENT").is_ok_and(|v| v == "1");
        let cooperative = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH)
            .is_ok_and(|v| v == 1);
        Ok(CudaDevice {
            ctx,
            stream,
            kernels,
            label,
            name,
            compute_capability,
            tensor_cores,
            sm_count,
            pdl,
            k64,
            deep,
            wgmma,
            tma,
            persistent,
            pingpong,
            fused_ln,
            grid_ln,
            resident_layers,
            cooperative,
            resident: Mutex::default(),
            maps: Mutex::default(),
            wgmma_wide,
            poison,
            costs: CostLog::default(),
        })
    }

    /// A driver error as an `Error::Device` naming this device and what was being done.
    pub fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Device {
            device: self.label.clone(),
            msg: format!("{what}: {e}"),
        }
    }

    /// A launch of `f` on this device's stream (launcher.rs), with PDL when `self.pdl`.
    pub(super) fn launcher<'a>(&'a self, f: &'a CudaFunction) -> Launch<'a> {
        Launch::new(f, &self.stream, self.pdl)
    }

    /// The same in clusters of `cluster_x` blocks along x (sm_90).
    pub(super) fn cluster_launcher<'a>(
        &'a self,
        f: &'a CudaFunction,
        cluster_x: u32,
    ) -> Launch<'a> {
        Launch::cluster(f, &self.stream, self.pdl, cluster_x)
    }

    /// A cooperative launch of `f` on this device's stream (every block resident at once).
    pub(super) fn cooperative_launcher<'a>(&'a self, f: &'a CudaFunction) -> Launch<'a> {
        Launch::cooperative(f, &self.stream)
    }

    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| self.err("synchronize", e))
    }
}
