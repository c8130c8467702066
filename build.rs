//! Compiles kernels/*.cu to PTX for each target architecture and writes a registry module
//! (OUT_DIR/kernels.rs) that embeds the PTX and the self-contained source of every module.
//!
//! nvcc is looked up in order: $NVCC, $CUDA_HOME/bin, $CUDA_PATH/bin, PATH, then the pinned
//! toolchain that scripts/setup-cuda installs into .cuda/ (its path is in .cuda/home).
//! Architectures: sm_80 and sm_90a, or $ALBERT_CUDA_ARCHS (comma-separated, e.g. "80,90a").
//!
//! Without nvcc, or when nvcc fails, the build still succeeds: it embeds the sources only, prints
//! one cargo:warning, and the engine compiles them with NVRTC when a GPU is first used. A kernel
//! that does not compile is caught by scripts/check-kernels in CI, not here, so a machine with
//! a broken CUDA install can still build and run on the CPU.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_ARCHS: &[&str] = &["80", "90a"];

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=.cuda/home");
    for var in ["NVCC", "CUDA_HOME", "CUDA_PATH", "ALBERT_CUDA_ARCHS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let registry = out_dir.join("kernels.rs");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        write(
            &registry,
            "pub static MODULES: &[KernelModule] = &[];\npub const PTX_BUILT_WITH: &str = \"\";\n",
        );
        return;
    }

    let kernels = Path::new("kernels");
    let mut sources: Vec<PathBuf> = fs::read_dir(kernels)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    sources.retain(|p| p.extension().is_some_and(|e| e == "cu"));
    sources.sort();

    let archs: Vec<String> = match env::var("ALBERT_CUDA_ARCHS") {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|a| a.trim().trim_start_matches("sm_").to_string())
            .collect(),
        _ => DEFAULT_ARCHS.iter().map(|a| a.to_string()).collect(),
    };
    let nvcc = find_nvcc();
    let version = nvcc.as_ref().and_then(|n| nvcc_version(n));
    let mut problems = Vec::new();
    if nvcc.is_none() {
        problems.push(
            "nvcc not found ($NVCC, $CUDA_HOME, $CUDA_PATH, PATH, .cuda/ from scripts/setup-cuda)"
                .to_string(),
        );
    }

    let mut modules = String::new();
    for src in &sources {
        let name = src.file_stem().unwrap().to_string_lossy().into_owned();
        // The NVRTC source: its kernels/*.cuh headers inlined, so it compiles with no include path.
        let text = fs::read_to_string(src).unwrap_or_default();
        let inlined = inline_headers(kernels, &text, &mut Vec::new());
        let inlined_path = out_dir.join(format!("{name}.cu"));
        write(&inlined_path, &inlined);

        let mut ptx_entries = String::new();
        if let Some(nvcc) = &nvcc {
            for arch in &archs {
                let ptx_path = out_dir.join(format!("{name}.sm_{arch}.ptx"));
                match compile_ptx(nvcc, src, arch, &ptx_path) {
                    Ok(()) => {
                        let _ = write!(
                            ptx_entries,
                            "(\"sm_{arch}\", include_str!({:?})), ",
                            ptx_path
                        );
                    }
                    Err(e) => problems.push(format!("{} for sm_{arch}: {e}", src.display())),
                }
            }
        }
        let _ = writeln!(
            modules,
            "    KernelModule {{ name: {name:?}, source: include_str!({inlined_path:?}), ptx: &[{ptx_entries}] }},"
        );
    }
    let mut text = format!("pub static MODULES: &[KernelModule] = &[\n{modules}];\n");
    let _ = writeln!(
        text,
        "pub const PTX_BUILT_WITH: &str = {:?};",
        version.unwrap_or_default()
    );
    write(&registry, &text);

    if !problems.is_empty() {
        println!(
            "cargo:warning=CUDA kernels not precompiled ({}); they will be compiled with NVRTC at run time",
            problems.join("; ").replace('\n', " ")
        );
    }
}

/// `text` with every `#include "X.cuh"` line replaced by kernels/X.cuh, itself inlined; a header
/// already inlined becomes an empty line (what its `#pragma once` would do).
fn inline_headers(kernels: &Path, text: &str, seen: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let header = line
            .trim()
            .strip_prefix("#include \"")
            .and_then(|rest| rest.strip_suffix('"'))
            .filter(|h| h.ends_with(".cuh"));
        match header {
            Some(h) if seen.iter().any(|s| s == h) => {}
            Some(h) => {
                seen.push(h.to_string());
                let body = fs::read_to_string(kernels.join(h)).unwrap_or_default();
                out.push_str(&inline_headers(kernels, &body, seen));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn write(path: &Path, text: &str) {
    // Only rewrite on change, so cargo does not recompile the crate needlessly.
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        if let Err(e) = fs::write(path, text) {
            println!("cargo:warning=could not write {}: {e}", path.display());
        }
    }
}

fn find_nvcc() -> Option<PathBuf> {
    let exe = if cfg!(windows) { "nvcc.exe" } else { "nvcc" };
    let mut candidates = Vec::new();
    if let Some(p) = env::var_os("NVCC") {
        candidates.push(PathBuf::from(p));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(p) = env::var_os(var) {
            candidates.push(PathBuf::from(p).join("bin").join(exe));
        }
    }
    if let Some(path) = env::var_os("PATH") {
        candidates.extend(env::split_paths(&path).map(|d| d.join(exe)));
    }
    if let Ok(home) = fs::read_to_string(".cuda/home") {
        candidates.push(PathBuf::from(home.trim()).join("bin").join(exe));
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn nvcc_version(nvcc: &Path) -> Option<String> {
    let out = Command::new(nvcc).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("release"))
        .map(|l| l.trim().to_string())
}

fn compile_ptx(nvcc: &Path, src: &Path, arch: &str, out: &Path) -> Result<(), String> {
    let output = Command::new(nvcc)
        .args(["--ptx", "-O3", "-std=c++17", "-lineinfo"])
        .arg(format!("-arch=compute_{arch}"))
        .arg("-Ikernels")
        .arg("-o")
        .arg(out)
        .arg(src)
        .output()
        .map_err(|e| format!("could not run {}: {e}", nvcc.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&output.stderr);
        Err(err.lines().take(3).collect::<Vec<_>>().join(" "))
    }
}
