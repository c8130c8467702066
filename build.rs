//! Compiles kernels/*.cu, for each target architecture, to a cubin (machine code: the engine
//! loads it with no JIT) and to PTX (for devices no cubin runs on), and writes a registry module
//! (OUT_DIR/kernels.rs) that embeds both and the self-contained source of every module.
//!
//! nvcc is looked up in order: $NVCC, $CUDA_HOME/bin, $CUDA_PATH/bin, PATH, then the pinned
//! toolchain that scripts/setup-cuda installs into .cuda/ (its path is in .cuda/home).
//! Architectures: sm_80 and sm_90a, or $ALBERT_CUDA_ARCHS (comma-separated, e.g. "80,90a").
//! The compilations run in parallel (cargo's NUM_JOBS), and one whose inputs (the module's source
//! with its headers, the flags, nvcc's version) are those of the last build is not run again, so
//! editing one kernel file recompiles that module only.
//!
//! Without nvcc, or when nvcc fails, the build still succeeds: it embeds what compiled and the
//! sources, prints one cargo:warning, and the engine compiles a source with NVRTC when a GPU has
//! neither cubin nor PTX for it. A kernel that does not compile is caught by
//! scripts/check-kernels in CI, not here, so a machine with a broken CUDA install can still build
//! and run on the CPU.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

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

    // The NVRTC source of each module: its kernels/*.cuh headers inlined, so it compiles with no
    // include path; also what decides whether a compilation's inputs changed.
    let mut inlined = Vec::new();
    for src in &sources {
        let name = src.file_stem().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(src).unwrap_or_default();
        let inlined_text = inline_headers(kernels, &text, &mut Vec::new());
        let inlined_path = out_dir.join(format!("{name}.cu"));
        write(&inlined_path, &inlined_text);
        inlined.push((name, inlined_path, inlined_text));
    }

    let mut jobs = Vec::new();
    if let Some(nvcc) = &nvcc {
        for (src, (name, _, text)) in sources.iter().zip(&inlined) {
            for arch in &archs {
                for kind in [Output::Cubin, Output::Ptx] {
                    jobs.push(Job {
                        nvcc,
                        src,
                        text,
                        arch,
                        kind,
                        out: out_dir.join(format!("{name}.sm_{arch}.{}", kind.extension())),
                        version: version.as_deref().unwrap_or_default(),
                    });
                }
            }
        }
    }
    // Longest first, so the two threads do not end on linear_mma.cu and linear_wgmma.cu alone.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.text.len()));
    let failed = run_jobs(&jobs);

    let mut modules = String::new();
    for (src, (name, inlined_path, _)) in sources.iter().zip(&inlined) {
        let (mut cubin_entries, mut ptx_entries) = (String::new(), String::new());
        for job in jobs.iter().filter(|j| j.src == src) {
            let arch = job.arch;
            if let Some((_, e)) = failed.iter().find(|(out, _)| *out == job.out) {
                problems.push(format!("{} for sm_{arch}: {e}", src.display()));
                continue;
            }
            let list = match job.kind {
                Output::Cubin => &mut cubin_entries,
                Output::Ptx => &mut ptx_entries,
            };
            let _ = write!(
                list,
                "(\"sm_{arch}\", include_bytes!({:?}) as &[u8]), ",
                job.embedded()
            );
        }
        let _ = writeln!(
            modules,
            "    KernelModule {{ name: {name:?}, source: include_str!({inlined_path:?}), cubin: &[{cubin_entries}], ptx: &[{ptx_entries}] }},"
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
            "cargo:warning=CUDA kernels not (all) precompiled ({}); what is missing is compiled from PTX or with NVRTC at run time",
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

#[derive(Clone, Copy, PartialEq)]
enum Output {
    /// Machine code for exactly `arch` (and, without an `a` suffix, later minor versions).
    Cubin,
    /// PTX, which the driver JIT-compiles for any later device.
    Ptx,
}

impl Output {
    fn extension(self) -> &'static str {
        match self {
            Output::Cubin => "cubin",
            Output::Ptx => "ptx",
        }
    }
}

/// One nvcc run: `src` (whose inlined text is `text`) to `out` for `arch`.
struct Job<'a> {
    nvcc: &'a Path,
    src: &'a Path,
    text: &'a str,
    arch: &'a str,
    kind: Output,
    out: PathBuf,
    version: &'a str,
}

impl Job<'_> {
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["-O3", "-std=c++17", "-Ikernels"].map(String::from).into();
        match self.kind {
            // No -lineinfo for the cubin: it would carry the whole PTX text as debug data (9 MB
            // instead of 2.4 MB for linear_mma.cu); set ALBERT_CUDA_PTX=1 at run time for line
            // numbers in a profiler (the PTX has them).
            Output::Cubin => args.extend(["-cubin".into(), format!("-arch=sm_{}", self.arch)]),
            Output::Ptx => args.extend([
                "--ptx".into(),
                "-lineinfo".into(),
                format!("-arch=compute_{}", self.arch),
            ]),
        }
        args
    }

    /// Everything the output depends on: written beside it, compared before the next build.
    fn key(&self) -> String {
        format!("{}\n{:?}\n{}", self.version, self.args(), self.text)
    }

    /// The file the registry embeds: the cubin, or the PTX compressed (zlib).
    fn embedded(&self) -> PathBuf {
        match self.kind {
            Output::Cubin => self.out.clone(),
            Output::Ptx => self.out.with_extension("ptx.z"),
        }
    }

    fn run(&self) -> Result<(), String> {
        let key_path = self
            .out
            .with_extension(format!("{}.key", self.kind.extension()));
        let key = self.key();
        if self.out.is_file()
            && self.embedded().is_file()
            && fs::read_to_string(&key_path).ok().as_deref() == Some(&key)
        {
            return Ok(());
        }
        let _ = fs::remove_file(&key_path);
        let output = Command::new(self.nvcc)
            .args(self.args())
            .arg("-o")
            .arg(&self.out)
            .arg(self.src)
            .output()
            .map_err(|e| format!("could not run {}: {e}", self.nvcc.display()))?;
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            return Err(err.lines().take(3).collect::<Vec<_>>().join(" "));
        }
        if self.kind == Output::Ptx {
            let text = fs::read(&self.out).map_err(|e| format!("reading the PTX: {e}"))?;
            let packed = miniz_oxide::deflate::compress_to_vec_zlib(&text, 6);
            fs::write(self.embedded(), packed).map_err(|e| format!("writing the PTX: {e}"))?;
        }
        let _ = fs::write(&key_path, key);
        Ok(())
    }
}

/// Runs the jobs on cargo's NUM_JOBS threads (ptxas is single-threaded and linear_mma.cu alone
/// takes it ~15 s); returns each failed job's output path and error.
fn run_jobs(jobs: &[Job]) -> Vec<(PathBuf, String)> {
    let threads = env::var("NUM_JOBS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let (Err(e), Ok(mut failed)) = (job.run(), failed.lock()) {
                        failed.push((job.out.clone(), e));
                    }
                }
            });
        }
    });
    failed.into_inner().unwrap_or_default()
}
