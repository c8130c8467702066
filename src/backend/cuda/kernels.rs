//! The kernel registry: build.rs embeds, for every kernels/*.cu, its PTX per architecture and
//! its self-contained source. A context loads each module once, picking the PTX for its compute
//! capability, and falls back to compiling the source with NVRTC when there is no matching PTX
//! or the driver rejects it (a driver older than the PTX ISA).

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::error::{Error, Result};

/// One kernels/*.cu: its PTX per target (`sm_80`, `sm_90a`) and its source for NVRTC.
pub struct KernelModule {
    pub name: &'static str,
    pub source: &'static str,
    pub ptx: &'static [(&'static str, &'static str)],
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// Every entry point the launchers call, by module. Loading checks each one exists, so a missing
/// kernel is reported when the device opens, naming module and kernel.
const ENTRY_POINTS: &[(&str, &[&str])] = &[
    ("attention", &["attention_forward"]),
    (
        "attention_mma",
        &[
            "attention_forward_mma_bf16",
            "attention_forward_mma_f16",
            "attention_forward_mma_bf16_from_bf16",
            "attention_forward_mma_f16_from_f16",
            "attention_forward_mma_bf16_from_bf16_to_bf16",
            "attention_forward_mma_f16_from_f16_to_f16",
        ],
    ),
    (
        "embeddings",
        &[
            "embeddings_forward_f32",
            "embeddings_forward_bf16",
            "embeddings_forward_f16",
        ],
    ),
    (
        "embeddings_project",
        &["embeddings_project_bf16", "embeddings_project_f16"],
    ),
    ("gather", &["gather_rows"]),
    (
        "layernorm",
        &["layernorm_forward", "residual_layernorm_forward"],
    ),
    (
        "layernorm_t",
        &[
            "residual_layernorm_forward_to_bf16",
            "residual_layernorm_forward_to_f16",
            "round_to_bf16",
            "round_to_f16",
        ],
    ),
    (
        "linear",
        &[
            "linear_forward_f32",
            "linear_forward_bf16",
            "linear_forward_f16",
        ],
    ),
    (
        "linear_mma",
        &[
            "linear_forward_mma_bf16",
            "linear_forward_mma_f16",
            "linear_forward_mma_bf16_to_bf16",
            "linear_forward_mma_f16_to_f16",
            "linear_forward_mma_bf16_from_bf16",
            "linear_forward_mma_f16_from_f16",
            "linear_forward_mma_bf16_from_bf16_to_bf16",
            "linear_forward_mma_f16_from_f16_to_f16",
            "linear_forward_mma64_bf16_from_bf16",
            "linear_forward_mma64_f16_from_f16",
            "linear_forward_mma64_bf16_from_bf16_to_bf16",
            "linear_forward_mma64_f16_from_f16_to_f16",
            "linear_forward_mma_k64_bf16_from_bf16",
            "linear_forward_mma_k64_f16_from_f16",
            "linear_forward_mma_k64_bf16_from_bf16_to_bf16",
            "linear_forward_mma_k64_f16_from_f16_to_f16",
        ],
    ),
    (
        "linear_wgmma",
        &[
            "linear_forward_wgmma_bf16_from_bf16",
            "linear_forward_wgmma_f16_from_f16",
            "linear_forward_wgmma_bf16_from_bf16_to_bf16",
            "linear_forward_wgmma_f16_from_f16_to_f16",
            "linear_forward_wgmma64_bf16_from_bf16",
            "linear_forward_wgmma64_f16_from_f16",
            "linear_forward_wgmma64_bf16_from_bf16_to_bf16",
            "linear_forward_wgmma64_f16_from_f16_to_f16",
            "linear_forward_wgmma_wide_bf16_from_bf16",
            "linear_forward_wgmma_wide_f16_from_f16",
            "linear_forward_wgmma_wide_bf16_from_bf16_to_bf16",
            "linear_forward_wgmma_wide_f16_from_f16_to_f16",
        ],
    ),
];

/// The dynamic shared memory a kernel is launched with, opted in at load where it is above the
/// 48 KB a launch may use without: the T-input tensor-core products (kernels/linear_mma.cu
/// MMA_T_SMEM_BYTES: 4 stages of an A tile and a W tile of 128 rows x 32 k, rows padded to 40;
/// MMA_T_SMEM_BYTES_SMALL: 4 stages of 64 rows x 64 k, rows padded to 72).
pub(super) fn dynamic_smem(entry: &str) -> Option<usize> {
    if entry.starts_with("linear_forward_wgmma64_") {
        Some(WG_SMEM_SMALL)
    } else if entry.starts_with("linear_forward_wgmma_wide_") {
        Some(WG_SMEM_WIDE)
    } else if entry.starts_with("linear_forward_wgmma_") {
        Some(WG_SMEM)
    } else if entry.starts_with("linear_forward_mma64_") {
        Some(MMA_T_SMEM_SMALL)
    } else if entry.starts_with("linear_forward_mma_k64_") {
        Some(MMA_T_SMEM_K64)
    } else {
        (entry.starts_with("linear_forward_mma_") && entry.contains("_from_")).then_some(MMA_T_SMEM)
    }
}

/// kernels/linear_mma.cu MMA_T_SMEM_BYTES and MMA_T_SMEM_BYTES_SMALL.
pub(super) const MMA_T_SMEM: usize = 2 * 4 * 128 * (32 + 8) * 2;
pub(super) const MMA_T_SMEM_SMALL: usize = 2 * 4 * 64 * (64 + 8) * 2;
/// kernels/mma_tile.cuh MMA_T_SMEM_BYTES_K64: 3 stages of 128 rows x 64 k (the ALBERT_CUDA_K64
/// experiment; more than sm_86/89 allow a block, where the kernels are then not loaded).
pub(super) const MMA_T_SMEM_K64: usize = 2 * 3 * 128 * (64 + 8) * 2;

/// kernels/linear_wgmma.cu WG_SMEM_BYTES / WG_SMEM_BYTES_SMALL: 6 stages of a 128-row (64-row)
/// A tile and W tile of 64 k in 128-byte rows, plus 1 KB to align them to 1024 bytes.
pub(super) const WG_SMEM: usize = 6 * (128 + 128) * 64 * 2 + 1024;
pub(super) const WG_SMEM_SMALL: usize = 6 * (64 + 64) * 64 * 2 + 1024;
/// WG_SMEM_BYTES_WIDE: 4 stages of a 128-row A tile and a 256-row W tile.
pub(super) const WG_SMEM_WIDE: usize = 4 * (128 + 256) * 64 * 2 + 1024;

/// Modules built only for sm_90a (wgmma): loaded on compute capability 9.0 from the embedded
/// sm_90a PTX and nowhere else (their other targets' entry points trap). If the driver rejects
/// that PTX the module is left out, not compiled by NVRTC, and the products keep mma.sync.
fn sm90a_only(module: &str) -> bool {
    module == "linear_wgmma"
}

/// Modules that need a minimum compute capability; below it they are not loaded and the
/// launchers use the portable kernels.
fn min_capability(module: &str) -> (i32, i32) {
    match module {
        "linear_mma" | "attention_mma" | "layernorm_t" | "embeddings_project" => (8, 0),
        "linear_wgmma" => (9, 0),
        _ => (0, 0),
    }
}

pub struct Kernels {
    functions: HashMap<&'static str, CudaFunction>,
    /// How the modules were obtained, per module ("ptx sm_90a" or "nvrtc compute_86").
    pub origin: Vec<(&'static str, String)>,
}

impl Kernels {
    /// Loads every module this device can run; `wgmma`: also kernels/linear_wgmma.cu (only
    /// asked for by ALBERT_CUDA_WGMMA=1: the driver JIT-compiles embedded PTX at load, and
    /// ptxas takes ~21 s of CPU for that module here, which an experiment should not cost every
    /// start on a machine without a warm JIT cache).
    pub fn load(ctx: &Arc<CudaContext>, device: &str, cc: (i32, i32), wgmma: bool) -> Result<Self> {
        let mut functions = HashMap::new();
        let mut origin = Vec::new();
        for &(module_name, entries) in ENTRY_POINTS {
            if sm90a_only(module_name) && !wgmma {
                origin.push((
                    module_name,
                    "not loaded (ALBERT_CUDA_WGMMA is not 1)".into(),
                ));
                continue;
            }
            if cc < min_capability(module_name) {
                origin.push((
                    module_name,
                    format!(
                        "not loaded (needs sm_{}{})",
                        min_capability(module_name).0,
                        min_capability(module_name).1
                    ),
                ));
                continue;
            }
            let module = MODULES.iter().find(|m| m.name == module_name).ok_or_else(|| Error::Device {
                device: device.into(),
                msg: format!("kernel module `{module_name}` is not in this build (kernels/{module_name}.cu)"),
            })?;
            let (loaded, how) = if sm90a_only(module_name) {
                match load_sm90a(ctx, module, cc) {
                    Ok(loaded) => loaded,
                    Err(why) => {
                        origin.push((module_name, format!("not loaded ({why})")));
                        continue;
                    }
                }
            } else {
                load_module(ctx, module, device, cc)?
            };
            for &entry in entries {
                let f = loaded.load_function(entry).map_err(|e| Error::Device {
                    device: device.into(),
                    msg: format!(
                        "kernel `{entry}` missing from module `{module_name}` ({how}): {e}"
                    ),
                })?;
                if let Some(bytes) = dynamic_smem(entry) {
                    // Above 48 KB a kernel must opt in. A device that refuses (less shared
                    // memory per block) goes without the kernel: `has` is false, and the
                    // scheduler keeps those activations in f32.
                    let attr =
                        CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
                    if f.set_attribute(attr, bytes as i32).is_err() {
                        continue;
                    }
                }
                functions.insert(entry, f);
            }
            origin.push((module.name, how));
        }
        Ok(Kernels { functions, origin })
    }

    pub fn get(&self, name: &str) -> &CudaFunction {
        // ENTRY_POINTS lists every name a launcher asks for, and `load` loaded all of them
        // (launchers ask for an optional module's kernels only after `has`).
        &self.functions[name]
    }

    pub fn has(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// Whether every loaded module was built for sm_90 or later, so that each kernel has its
    /// `griddepcontrol.wait` (kernels/common.cuh grid_dependency_enter; compiled out below
    /// sm_90) and may be launched with the programmatic dependent launch attribute.
    pub fn wait_for_previous_kernel(&self) -> bool {
        self.origin.iter().all(|(_, how)| {
            let arch = how
                .strip_prefix("ptx sm_")
                .or_else(|| how.strip_prefix("nvrtc compute_"));
            match arch {
                Some(a) => a
                    .trim_end_matches('a')
                    .parse::<u32>()
                    .is_ok_and(|v| v >= 90),
                None => how.starts_with("not loaded"),
            }
        })
    }
}

/// The PTX target for a compute capability: sm_90a PTX only runs on 9.0 itself; sm_80 PTX is
/// JIT-compiled forward by the driver on 8.x and on 10.x and later.
fn ptx_target(cc: (i32, i32)) -> Option<&'static str> {
    match cc {
        (9, 0) => Some("sm_90a"),
        (major, _) if major >= 8 => Some("sm_80"),
        _ => None,
    }
}

/// An sm90a_only module from its embedded sm_90a PTX, or why not.
fn load_sm90a(
    ctx: &Arc<CudaContext>,
    module: &KernelModule,
    cc: (i32, i32),
) -> std::result::Result<(Arc<cudarc::driver::CudaModule>, String), String> {
    if cc != (9, 0) {
        return Err(format!("needs sm_90a, this is sm_{}{}", cc.0, cc.1));
    }
    let (_, text) = module
        .ptx
        .iter()
        .find(|(t, _)| *t == "sm_90a")
        .ok_or("this build has no sm_90a PTX (ALBERT_CUDA_ARCHS)")?;
    ctx.load_module(Ptx::from_src(*text))
        .map(|m| (m, "ptx sm_90a".to_string()))
        .map_err(|e| format!("embedded sm_90a PTX (from {PTX_BUILT_WITH}) rejected: {e}"))
}

fn load_module(
    ctx: &Arc<CudaContext>,
    module: &KernelModule,
    device: &str,
    cc: (i32, i32),
) -> Result<(Arc<cudarc::driver::CudaModule>, String)> {
    let mut ptx_error = None;
    if let Some(target) = ptx_target(cc) {
        let ptx = module
            .ptx
            .iter()
            .find(|(t, _)| *t == target)
            .or_else(|| module.ptx.iter().find(|(t, _)| *t == "sm_80"));
        if let Some((t, text)) = ptx {
            match ctx.load_module(Ptx::from_src(*text)) {
                Ok(m) => return Ok((m, format!("ptx {t}"))),
                Err(e) => {
                    ptx_error = Some(format!(
                        "embedded {t} PTX (from {PTX_BUILT_WITH}) rejected: {e}"
                    ))
                }
            }
        }
    }
    // NVRTC for this exact device. cuda_bf16.h / cuda_fp16.h come from the toolkit's include
    // directory when CUDA_HOME / CUDA_PATH names one.
    let arch: &'static str = Box::leak(format!("compute_{}{}", cc.0, cc.1).into_boxed_str());
    let include_paths = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|p| format!("{p}/include"))
        .collect();
    let opts = CompileOptions {
        arch: Some(arch),
        include_paths,
        options: vec!["--std=c++17".into()],
        name: Some(format!("{}.cu", module.name)),
        ..Default::default()
    };
    let nvrtc_present = {
        // SAFETY: only tries to dlopen the NVRTC library; no NVRTC call is made before this.
        unsafe { cudarc::nvrtc::sys::is_culib_present() }
    };
    let compiled = match nvrtc_present {
        true => {
            cudarc::nvrtc::compile_ptx_with_opts(module.source, opts).map_err(|e| e.to_string())
        }
        false => Err("the NVRTC library (libnvrtc) is not installed".to_string()),
    };
    let driver = driver_version().map_or("unknown".into(), |v| {
        format!("{}.{}", v / 1000, (v % 1000) / 10)
    });
    match compiled.and_then(|ptx| ctx.load_module(ptx).map_err(|e| e.to_string())) {
        Ok(m) => Ok((m, format!("nvrtc {arch}"))),
        Err(nvrtc_error) => Err(Error::Device {
            device: device.into(),
            msg: format!(
                "cannot load kernel module `{}` on compute capability {}.{} with driver {driver}: {}; NVRTC fallback failed: {nvrtc_error}",
                module.name,
                cc.0,
                cc.1,
                ptx_error.unwrap_or_else(|| "no embedded PTX for this device".into()),
            ),
        }),
    }
}

/// The driver's CUDA version as an integer (13000 = 13.0).
pub fn driver_version() -> Option<i32> {
    let mut v = 0;
    // SAFETY: cuDriverGetVersion writes one int; libcuda is loaded (the caller holds a context).
    let r = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    (r == cudarc::driver::sys::CUresult::CUDA_SUCCESS).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The NVRTC fallback compiles every embedded source (common.cuh inlined) for the two
    /// targets. NVRTC needs no GPU, only libnvrtc (scripts/setup-cuda installs it into .cuda/;
    /// put its lib folder on LD_LIBRARY_PATH); without it the test says so and passes.
    #[test]
    fn pdl_needs_every_module_built_for_sm90() {
        let with = |origins: &[&'static str]| Kernels {
            functions: HashMap::new(),
            origin: origins.iter().map(|&o| ("m", o.to_string())).collect(),
        };
        assert!(
            with(&["ptx sm_90a", "nvrtc compute_90", "nvrtc compute_120"])
                .wait_for_previous_kernel()
        );
        assert!(with(&["ptx sm_90a", "not loaded (needs sm_80)"]).wait_for_previous_kernel());
        assert!(!with(&["ptx sm_90a", "ptx sm_80"]).wait_for_previous_kernel());
        assert!(!with(&["nvrtc compute_86"]).wait_for_previous_kernel());
        assert!(!with(&["something else"]).wait_for_previous_kernel());
    }

    #[test]
    fn embedded_sources_compile_with_nvrtc() {
        // SAFETY: only tries to dlopen libnvrtc.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            eprintln!(
                "skipped: libnvrtc not found (LD_LIBRARY_PATH=.cuda/venv/.../nvidia/cu13/lib)"
            );
            return;
        }
        assert!(!MODULES.is_empty());
        for module in MODULES {
            for arch in ["compute_80", "compute_90"] {
                let opts = CompileOptions {
                    arch: Some(arch),
                    options: vec!["--std=c++17".into()],
                    name: Some(format!("{}.cu", module.name)),
                    ..Default::default()
                };
                let ptx = cudarc::nvrtc::compile_ptx_with_opts(module.source, opts)
                    .unwrap_or_else(|e| panic!("{} for {arch}: {e}", module.name));
                for (m, entries) in ENTRY_POINTS {
                    if *m == module.name {
                        for e in *entries {
                            assert!(
                                ptx.to_src().contains(&format!(".entry {e}(")),
                                "{} lacks {e}",
                                module.name
                            );
                        }
                    }
                }
            }
        }
    }
}
