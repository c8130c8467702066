//! The kernel registry: build.rs embeds, for every kernels/*.cu, its cubin and PTX per
//! architecture and its self-contained source. A context loads each module once: the cubin built
//! for its compute capability (machine code: nothing to compile), else the PTX, which the driver
//! JIT-compiles (ptxas needs ~15 s of CPU for linear_mma.cu: seconds at every start where the
//! driver's JIT cache is cold, as in a fresh container), else the source compiled with NVRTC
//! (a driver that rejects both, e.g. one older than the toolkit).

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::error::{Error, Result};

/// One kernels/*.cu: its cubin and PTX per target (`sm_80`, `sm_90a`) and its source for NVRTC.
pub struct KernelModule {
    pub name: &'static str,
    pub source: &'static str,
    pub cubin: &'static [(&'static str, &'static [u8])],
    /// zlib-compressed (build.rs): `ptx_text` inflates one.
    pub ptx: &'static [(&'static str, &'static [u8])],
}

impl KernelModule {
    /// The PTX for `target`, inflated; None where this build has none, Err if it is corrupt.
    pub fn ptx_text(&self, target: &str) -> Option<std::result::Result<String, String>> {
        let (_, packed) = self.ptx.iter().find(|(t, _)| *t == target)?;
        Some(
            miniz_oxide::inflate::decompress_to_vec_zlib(packed)
                .map_err(|e| format!("{e:?}"))
                .and_then(|bytes| String::from_utf8(bytes).map_err(|e| e.to_string()))
                .map_err(|e| format!("embedded {target} PTX of `{}` unreadable: {e}", self.name)),
        )
    }
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
            "linear_forward_mma64_deep_bf16_from_bf16",
            "linear_forward_mma64_deep_f16_from_f16",
            "linear_forward_mma64_deep_bf16_from_bf16_to_bf16",
            "linear_forward_mma64_deep_f16_from_f16_to_f16",
        ],
    ),
    (
        "linear_mma_ln",
        &[
            "linear_forward_mma_ln_bf16_from_bf16",
            "linear_forward_mma_ln_f16_from_f16",
        ],
    ),
    (
        "layer_resident",
        &["layer_resident_bf16", "layer_resident_f16"],
    ),
    (
        "linear_mma_grid_ln",
        &[
            "linear_forward_mma64_ln_bf16_from_bf16",
            "linear_forward_mma64_ln_f16_from_f16",
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
    (
        "linear_tma",
        &[
            "linear_forward_wgmma_tma_bf16_from_bf16",
            "linear_forward_wgmma_tma_f16_from_f16",
            "linear_forward_wgmma_tma_bf16_from_bf16_to_bf16",
            "linear_forward_wgmma_tma_f16_from_f16_to_f16",
            "linear_forward_wgmma64_tma_bf16_from_bf16",
            "linear_forward_wgmma64_tma_f16_from_f16",
            "linear_forward_wgmma64_tma_bf16_from_bf16_to_bf16",
            "linear_forward_wgmma64_tma_f16_from_f16_to_f16",
            "linear_forward_wgmma_wide_tma_bf16_from_bf16",
            "linear_forward_wgmma_wide_tma_f16_from_f16",
            "linear_forward_wgmma_wide_tma_bf16_from_bf16_to_bf16",
            "linear_forward_wgmma_wide_tma_f16_from_f16_to_f16",
            "linear_forward_wgmma_pingpong_tma_bf16_from_bf16",
            "linear_forward_wgmma_pingpong_tma_f16_from_f16",
            "linear_forward_wgmma_pingpong_tma_bf16_from_bf16_to_bf16",
            "linear_forward_wgmma_pingpong_tma_f16_from_f16_to_f16",
        ],
    ),
];

/// The dynamic shared memory a kernel is launched with, opted in at load where it is above the
/// 48 KB a launch may use without: the T-input tensor-core products (kernels/linear_mma.cu
/// MMA_T_SMEM_BYTES: 4 stages of an A tile and a W tile of 128 rows x 32 k, rows padded to 40;
/// MMA_T_SMEM_BYTES_SMALL: 4 stages of 64 rows x 64 k, rows padded to 72), and the resident
/// layer kernel's most slabs (layer_resident.rs).
pub(super) fn dynamic_smem(entry: &str) -> Option<usize> {
    if entry.starts_with("linear_forward_wgmma_wide_tma_") {
        Some(WG_TMA_SMEM_WIDE)
    } else if entry.starts_with("linear_forward_wgmma_pingpong_tma_") {
        Some(WG_TMA_SMEM)
    } else if entry.starts_with("linear_forward_wgmma64_tma_") {
        Some(WG_TMA_SMEM_SMALL)
    } else if entry.starts_with("linear_forward_wgmma_tma_") {
        Some(WG_TMA_SMEM)
    } else if entry.starts_with("linear_forward_wgmma64_") {
        Some(WG_SMEM_SMALL)
    } else if entry.starts_with("linear_forward_wgmma_wide_") {
        Some(WG_SMEM_WIDE)
    } else if entry.starts_with("linear_forward_wgmma_") {
        Some(WG_SMEM)
    } else if entry.starts_with("layer_resident_") {
        Some(super::layer_resident::LAYER_RESIDENT_SMEM)
    } else if entry.starts_with("linear_forward_mma_ln_") {
        Some(MMA_T_SMEM)
    } else if entry.starts_with("linear_forward_mma64_deep_") {
        Some(MMA_T_SMEM_DEEP)
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
/// kernels/mma_tile.cuh MMA_T_SMEM_BYTES_DEEP: 8 stages of 64 rows x 64 k (the ALBERT_CUDA_DEEP
/// experiment; sm_80/90 only, as the k-64 tiles).
pub(super) const MMA_T_SMEM_DEEP: usize = 2 * 8 * 64 * (64 + 8) * 2;

/// kernels/linear_wgmma.cu WG_SMEM_BYTES / WG_SMEM_BYTES_SMALL: 6 stages of a 128-row (64-row)
/// A tile and W tile of 64 k in 128-byte rows, plus 1 KB to align them to 1024 bytes.
pub(super) const WG_SMEM: usize = 6 * (128 + 128) * 64 * 2 + 1024;
pub(super) const WG_SMEM_SMALL: usize = 6 * (64 + 64) * 64 * 2 + 1024;
/// WG_SMEM_BYTES_WIDE: 4 stages of a 128-row A tile and a 256-row W tile.
pub(super) const WG_SMEM_WIDE: usize = 4 * (128 + 256) * 64 * 2 + 1024;

/// kernels/linear_tma.cu WG_TMA_SMEM_BYTES{,_SMALL,_WIDE}: the same stages, then their
/// mbarriers (2 per stage, and the ping-pong kernels' 2 turns) in 128 bytes. The ping-pong
/// kernels (WG_TMA_SMEM_BYTES_PINGPONG) take the 128x128 stages: WG_TMA_SMEM.
pub(super) const WG_TMA_SMEM: usize = WG_SMEM + 128;
pub(super) const WG_TMA_SMEM_SMALL: usize = WG_SMEM_SMALL + 128;
pub(super) const WG_TMA_SMEM_WIDE: usize = WG_SMEM_WIDE + 128;

/// Modules built only for sm_90a (wgmma): loaded on compute capability 9.0 from the embedded
/// sm_90a PTX and nowhere else (their other targets' entry points trap). If the driver rejects
/// that PTX the module is left out, not compiled by NVRTC, and the products keep mma.sync.
fn sm90a_only(module: &str) -> bool {
    module == "linear_wgmma" || module == "linear_tma"
}

/// Modules that need a minimum compute capability; below it they are not loaded and the
/// launchers use the portable kernels.
fn min_capability(module: &str) -> (i32, i32) {
    match module {
        "linear_mma" | "attention_mma" | "layernorm_t" | "embeddings_project"
        | "linear_mma_grid_ln" | "layer_resident" => (8, 0),
        "linear_wgmma" | "linear_tma" | "linear_mma_ln" => (9, 0),
        _ => (0, 0),
    }
}

pub struct Kernels {
    functions: HashMap<&'static str, CudaFunction>,
    /// How the modules were obtained, per module ("cubin sm_90a", "ptx sm_80", "nvrtc
    /// compute_86", "not loaded (why)").
    pub origin: Vec<(&'static str, String)>,
}

/// What `Kernels::load` loads.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Also kernels/linear_wgmma.cu and linear_tma.cu (ALBERT_CUDA_WGMMA=1, ALBERT_CUDA_TMA=1 or
    /// ALBERT_CUDA_PERSISTENT=1).
    pub wgmma: bool,
    /// Skip the cubins and JIT-compile the PTX (ALBERT_CUDA_PTX=1): the PTX carries line
    /// numbers for a profiler's source view, and it measures what the cubins save at start-up.
    pub ptx_only: bool,
}

impl Kernels {
    /// Loads every module this device can run (kernels/linear_wgmma.cu only with `opts.wgmma`:
    /// an experiment, off by default until a GPU has run it).
    pub fn load(
        ctx: &Arc<CudaContext>,
        device: &str,
        cc: (i32, i32),
        opts: LoadOptions,
    ) -> Result<Self> {
        let mut functions = HashMap::new();
        let mut origin = Vec::new();
        for &(module_name, entries) in ENTRY_POINTS {
            if sm90a_only(module_name) && !opts.wgmma {
                origin.push((
                    module_name,
                    "not loaded (none of ALBERT_CUDA_WGMMA, _TMA, _PERSISTENT is 1)".into(),
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
                match load_sm90a(ctx, module, cc, opts.ptx_only) {
                    Ok(loaded) => loaded,
                    Err(why) => {
                        origin.push((module_name, format!("not loaded ({why})")));
                        continue;
                    }
                }
            } else {
                load_module(ctx, module, device, cc, opts.ptx_only)?
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
                .strip_prefix("cubin sm_")
                .or_else(|| how.strip_prefix("ptx sm_"))
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

/// The cubin among `targets` ("sm_80", "sm_90a", ...) that runs on compute capability `cc`: one
/// with an `a` suffix runs on exactly its capability, one without on its major version from its
/// minor up (sm_80 on 8.0-8.9). The exact `a` build first, then the highest minor.
fn cubin_target<'a>(cc: (i32, i32), targets: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let runs = |t: &str| -> Option<(bool, i32)> {
        let digits = t.strip_prefix("sm_")?;
        let (digits, specific) = match digits.strip_suffix('a') {
            Some(d) => (d, true),
            None => (digits, false),
        };
        let value: i32 = digits.parse().ok()?;
        let (major, minor) = (value / 10, value % 10);
        let fits = if specific {
            (major, minor) == cc
        } else {
            major == cc.0 && minor <= cc.1
        };
        fits.then_some((specific, minor))
    };
    targets
        .filter_map(|t| runs(t).map(|rank| (rank, t)))
        .max_by_key(|&(rank, _)| rank)
        .map(|(_, t)| t)
}

/// `module`'s cubin for `cc` as loaded by the driver; None where there is none for this device
/// (or `ptx_only`), Some(Err) where the driver rejected it.
fn load_cubin(
    ctx: &Arc<CudaContext>,
    module: &KernelModule,
    cc: (i32, i32),
    ptx_only: bool,
) -> Option<std::result::Result<(Arc<cudarc::driver::CudaModule>, String), String>> {
    if ptx_only {
        return None;
    }
    let target = cubin_target(cc, module.cubin.iter().map(|(t, _)| *t))?;
    let (_, image) = module.cubin.iter().find(|(t, _)| *t == target)?;
    // The copy: include_bytes! data has no alignment, the driver reads an ELF image.
    Some(
        ctx.load_module(Ptx::from_binary(image.to_vec()))
            .map(|m| (m, format!("cubin {target}")))
            .map_err(|e| format!("embedded {target} cubin (from {PTX_BUILT_WITH}) rejected: {e}")),
    )
}

/// An sm90a_only module from its embedded sm_90a cubin or PTX, or why not.
fn load_sm90a(
    ctx: &Arc<CudaContext>,
    module: &KernelModule,
    cc: (i32, i32),
    ptx_only: bool,
) -> std::result::Result<(Arc<cudarc::driver::CudaModule>, String), String> {
    if cc != (9, 0) {
        return Err(format!("needs sm_90a, this is sm_{}{}", cc.0, cc.1));
    }
    let cubin_error = match load_cubin(ctx, module, cc, ptx_only) {
        Some(Ok(loaded)) => return Ok(loaded),
        Some(Err(e)) => format!("{e}; "),
        None => String::new(),
    };
    let text = module
        .ptx_text("sm_90a")
        .ok_or_else(|| format!("{cubin_error}this build has no sm_90a PTX (ALBERT_CUDA_ARCHS)"))?
        .map_err(|e| format!("{cubin_error}{e}"))?;
    ctx.load_module(Ptx::from_src(text))
        .map(|m| (m, "ptx sm_90a".to_string()))
        .map_err(|e| {
            format!("{cubin_error}embedded sm_90a PTX (from {PTX_BUILT_WITH}) rejected: {e}")
        })
}

fn load_module(
    ctx: &Arc<CudaContext>,
    module: &KernelModule,
    device: &str,
    cc: (i32, i32),
    ptx_only: bool,
) -> Result<(Arc<cudarc::driver::CudaModule>, String)> {
    let mut rejected = Vec::new();
    match load_cubin(ctx, module, cc, ptx_only) {
        Some(Ok(loaded)) => return Ok(loaded),
        Some(Err(e)) => rejected.push(e),
        None => {}
    }
    if let Some(target) = ptx_target(cc) {
        let ptx = [target, "sm_80"]
            .into_iter()
            .find_map(|t| module.ptx_text(t).map(|text| (t, text)));
        match ptx {
            Some((t, Ok(text))) => match ctx.load_module(Ptx::from_src(text)) {
                Ok(m) => return Ok((m, format!("ptx {t}"))),
                Err(e) => rejected.push(format!(
                    "embedded {t} PTX (from {PTX_BUILT_WITH}) rejected: {e}"
                )),
            },
            Some((_, Err(e))) => rejected.push(e),
            None => {}
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
                if rejected.is_empty() {
                    "no embedded cubin or PTX for this device".into()
                } else {
                    rejected.join("; ")
                },
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
        assert!(with(&["cubin sm_90a", "ptx sm_90a"]).wait_for_previous_kernel());
        assert!(!with(&["cubin sm_90a", "cubin sm_80"]).wait_for_previous_kernel());
        assert!(!with(&["nvrtc compute_86"]).wait_for_previous_kernel());
        assert!(!with(&["something else"]).wait_for_previous_kernel());
    }

    #[test]
    fn cubin_for_each_compute_capability() {
        let built = ["sm_80", "sm_90a"];
        let pick = |cc| cubin_target(cc, built.iter().copied());
        assert_eq!(pick((8, 0)), Some("sm_80"));
        assert_eq!(pick((8, 6)), Some("sm_80"));
        assert_eq!(pick((8, 9)), Some("sm_80"));
        assert_eq!(pick((9, 0)), Some("sm_90a"));
        // No machine code runs there: the PTX is JIT-compiled.
        assert_eq!(pick((7, 5)), None);
        assert_eq!(pick((10, 0)), None);
        assert_eq!(pick((12, 0)), None);
        let more = ["sm_80", "sm_86", "sm_90", "sm_90a", "sm_100a", "sm_120"];
        let pick = |cc| cubin_target(cc, more.iter().copied());
        assert_eq!(pick((8, 6)), Some("sm_86"));
        assert_eq!(pick((8, 9)), Some("sm_86"));
        assert_eq!(pick((8, 0)), Some("sm_80"));
        assert_eq!(pick((9, 0)), Some("sm_90a"));
        assert_eq!(pick((10, 0)), Some("sm_100a"));
        assert_eq!(pick((10, 3)), None);
        assert_eq!(pick((12, 1)), Some("sm_120"));
        assert_eq!(cubin_target((9, 0), ["sm_90"].into_iter()), Some("sm_90"));
        assert_eq!(
            cubin_target((9, 0), ["junk", "sm_", "sm_9x"].into_iter()),
            None
        );
    }

    /// Every module built to PTX was built to a cubin for the same targets; each PTX inflates
    /// and each cubin is a CUDA ELF image for its architecture, both holding every entry point
    /// the launchers ask for.
    #[test]
    fn embedded_cubins_hold_every_entry_point() {
        if MODULES.iter().all(|m| m.ptx.is_empty()) {
            eprintln!(
                "skipped: this build embedded no PTX or cubins (no nvcc: scripts/setup-cuda)"
            );
            return;
        }
        for module in MODULES {
            let ptx_targets: Vec<_> = module.ptx.iter().map(|(t, _)| *t).collect();
            let cubin_targets: Vec<_> = module.cubin.iter().map(|(t, _)| *t).collect();
            assert_eq!(cubin_targets, ptx_targets, "{}: cubins vs PTX", module.name);
            let entries = ENTRY_POINTS
                .iter()
                .find(|(m, _)| *m == module.name)
                .map_or(&[][..], |(_, e)| *e);
            for target in &ptx_targets {
                let text = module.ptx_text(target).unwrap().unwrap();
                for entry in entries {
                    assert!(
                        text.contains(&format!(".entry {entry}(")),
                        "{}.{target}.ptx lacks {entry}",
                        module.name
                    );
                }
            }
            for (target, image) in module.cubin {
                let what = format!("{}.{target}.cubin", module.name);
                assert!(
                    image.len() > 64 && image.starts_with(b"\x7fELF"),
                    "{what}: not ELF"
                );
                let machine = u16::from_le_bytes([image[18], image[19]]);
                assert_eq!(machine, 190, "{what}: not a CUDA image (EM_CUDA)");
                // CUDA ELF ABI version 8 (nvcc 12.8 on) keeps the SM number in e_flags bits 8-15.
                if image[8] == 8 {
                    let flags = u32::from_le_bytes([image[48], image[49], image[50], image[51]]);
                    let sm: u32 = target[3..].trim_end_matches('a').parse().unwrap();
                    assert_eq!((flags >> 8) & 0xff, sm, "{what}: e_flags {flags:#x}");
                }
                for entry in entries {
                    let section = format!(".text.{entry}\0");
                    assert!(
                        image
                            .windows(section.len())
                            .any(|w| w == section.as_bytes()),
                        "{what} lacks {entry}"
                    );
                }
            }
        }
    }

    /// linear_wgmma's sm_90a builds hold the wgmma kernels, not the trap stubs every other target
    /// gets (kernels/wgmma.cuh HAVE_WGMMA: an sm_90 pass instead of sm_90a would compile the
    /// stubs without a word): the PTX has the instruction, and the cubin is ~100 times the size of
    /// the stubs' sm_80 one (2.3 MB against 24 KB with nvcc 13.0; checked: more than 20 times).
    #[test]
    fn sm90a_builds_hold_wgmma() {
        let Some(module) = MODULES.iter().find(|m| m.name == "linear_wgmma") else {
            panic!("kernels/linear_wgmma.cu is not in the registry");
        };
        let get = |list: &[(&'static str, &'static [u8])], t: &str| {
            list.iter().find(|(x, _)| *x == t).map(|(_, b)| b.len())
        };
        let ptx = |t: &str| module.ptx_text(t).map(|p| p.unwrap());
        let (Some(sm90a), Some(sm80)) = (ptx("sm_90a"), ptx("sm_80")) else {
            eprintln!(
                "skipped: this build has no sm_80 and sm_90a PTX (no nvcc, or ALBERT_CUDA_ARCHS)"
            );
            return;
        };
        assert!(
            sm90a.contains("wgmma.mma_async"),
            "sm_90a PTX without wgmma"
        );
        assert!(!sm80.contains("wgmma.mma_async"), "sm_80 PTX with wgmma");
        let (big, small) = (get(module.cubin, "sm_90a"), get(module.cubin, "sm_80"));
        let (Some(big), Some(small)) = (big, small) else {
            panic!("PTX but no cubins for linear_wgmma");
        };
        assert!(
            big > 20 * small,
            "sm_90a cubin {big} B, sm_80 (stubs) {small} B"
        );
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
