//! The fuzz targets of fuzz/ run deterministically in the normal test suite: every seed of each
//! target's corpus, then a few thousand seeded mutations of them (byte flips, interesting bytes,
//! numbers in JSON and safetensors headers swapped for hostile ones, truncation, splicing). The
//! bodies (fuzz/bodies.rs) panic on a crash or a failed check; the allocator below fails the test
//! when any single allocation passes `MAX_ALLOCATION`, which is how a size read from a file and
//! trusted before checking would show.
//!
//! Crashes that libFuzzer found (scripts/fuzz) are kept in fuzz/regressions/<target>/ and run
//! here as seeds. `FUZZ_CASES=N` changes the number of mutated cases per target (default 3000);
//! `cargo test --test fuzz_seeded -- --ignored write_corpus` writes the seeds to fuzz/corpus/.

#[path = "../fuzz/bodies.rs"]
mod bodies;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use albert::model::checkpoint::Checkpoint;
use albert::model::weights::Weights;
use albert::{Albert, Head};

/// Larger than anything the micro models or the tokenizer need (the tokenizer's vocabulary is
/// the biggest at a few MiB), far smaller than what a trusted hostile size would ask for.
const MAX_ALLOCATION: usize = 64 << 20;

struct Watch;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Watch = Watch;

/// SplitMix64, as src/rng.rs (the test must not depend on the library for its own inputs).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "255",
    "65536",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "1e308",
    "-0.5",
    "null",
    "\"x\"",
    "[]",
    "{}",
    "true",
];

/// One random change to `data`; `others` are the target's seeds (for splicing).
fn mutate(data: &mut Vec<u8>, others: &[Vec<u8>], r: &mut Rng) {
    let n = data.len();
    match r.below(9) {
        0 if n > 0 => {
            let i = r.below(n);
            data[i] ^= 1 << r.below(8);
        }
        1 if n > 0 => {
            let i = r.below(n);
            data[i] = [0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b',', b'9'][r.below(9)];
        }
        2 => data.truncate(r.below(n + 1)),
        3 if n > 0 => {
            let (i, len) = (r.below(n), 1 + r.below(16));
            data.drain(i..(i + len).min(n));
        }
        4 => {
            let i = r.below(n + 1);
            let extra: Vec<u8> = (0..1 + r.below(8)).map(|_| r.next() as u8).collect();
            data.splice(i..i, extra);
        }
        5 | 6 => replace_number(data, r),
        7 if !others.is_empty() => {
            let other = &others[r.below(others.len())];
            let cut = r.below(n + 1);
            let from = r.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        _ => {
            // The 8-byte little-endian header length of a safetensors file.
            if n >= 8 {
                let v = [0u64, 1, 7, u64::MAX, 1 << 40, r.next() % 4096][r.below(6)];
                data[..8].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// Swaps one run of ASCII digits (a JSON number, a safetensors shape or offset) for a hostile
/// value.
fn replace_number(data: &mut Vec<u8>, r: &mut Rng) {
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let start = starts[r.below(starts.len())];
    let end = (start..data.len())
        .find(|&i| !data[i].is_ascii_digit())
        .unwrap_or(data.len());
    let new = NUMBERS[r.below(NUMBERS.len())].as_bytes().to_vec();
    data.splice(start..end, new);
}

fn cases() -> usize {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// Runs `body` on every seed, then on `cases()` mutations; fails on any oversized allocation.
fn run(name: &str, mut seeds: Vec<Vec<u8>>, body: fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    seeds.extend(regressions(name));
    let mut r = Rng(0x5EED ^ name.len() as u64);
    for s in &seeds {
        body(s);
    }
    for case in 0..cases() {
        let mut data = seeds[r.below(seeds.len())].clone();
        for _ in 0..1 + r.below(4) {
            mutate(&mut data, &seeds, &mut r);
        }
        body(&data);
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            largest <= MAX_ALLOCATION,
            "{name}: case {case} made an allocation of {largest} bytes"
        );
    }
    eprintln!(
        "{name}: {} seeds + {} mutated cases, largest allocation {} KiB",
        seeds.len(),
        cases(),
        LARGEST.load(Ordering::Relaxed) >> 10
    );
}

/// Every input a fuzzer once failed on (fuzz/regressions/<target>/), fixed since: each runs as a
/// seed, so the failure cannot come back unnoticed.
fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

// --- seed corpora, from ../shared and the micro model ----------------------------------------

/// A nano checkpoint of every head, each with its JSON header padded with spaces (which the
/// format allows) to a file length that makes the target load it with its own head.
fn checkpoint_seeds() -> Vec<Vec<u8>> {
    Head::ALL
        .iter()
        .enumerate()
        .map(|(k, &h)| {
            let model = Albert::synthetic(bodies::nano_config().clone(), h, 3);
            let mut bytes = model.to_safetensors().expect("nano checkpoint");
            let pad = (k + Head::ALL.len() - bytes.len() % Head::ALL.len()) % Head::ALL.len();
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            bytes.splice(8 + n..8 + n, std::iter::repeat_n(b' ', pad));
            bytes[..8].copy_from_slice(&((n + pad) as u64).to_le_bytes());
            // The seed loads, with the head the target will pick for it.
            let ckpt = Checkpoint::from_bytes("seed", bytes.clone()).expect("seed parses");
            let picked = bodies::HEADS[bytes.len() % bodies::HEADS.len()];
            assert_eq!(picked, h);
            Weights::load(&ckpt, bodies::nano_config(), h).expect("seed loads");
            bytes
        })
        .collect()
}

fn config_seeds() -> Vec<Vec<u8>> {
    let models = bodies::shared().join("models");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&models)
        .expect("../shared/models")
        .filter_map(|e| std::fs::read(e.ok()?.path().join("config.json")).ok())
        .collect();
    seeds.sort();
    seeds.push(bodies::MICRO_CONFIG.as_bytes().to_vec());
    // The micro config shrunk further, so that mutations of it are run, not only parsed.
    let tiny = bodies::MICRO_CONFIG
        .replace("\"vocab_size\": 40", "\"vocab_size\": 12")
        .replace(
            "\"max_position_embeddings\": 16",
            "\"max_position_embeddings\": 6",
        );
    seeds.push(tiny.into_bytes());
    seeds
}

fn index_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"metadata": {"total_size": 96}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}"#.to_vec(),
        br#"{"weight_map": {"x": "model.safetensors"}}"#.to_vec(),
    ]
}

fn tokenizer_seeds() -> Vec<Vec<u8>> {
    let path = bodies::shared().join("albert-tokenizer/cases.json");
    let text = std::fs::read_to_string(&path).expect("cases.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("cases.json is JSON");
    let mut seeds = Vec::new();
    for (i, case) in json["cases"].as_array().expect("cases").iter().enumerate() {
        let mut s = vec![(i * 37) as u8, 6 + (i as u8 % 20)];
        s.extend_from_slice(case["text"].as_str().unwrap_or("").as_bytes());
        if let Some(p) = case["text_pair"].as_str() {
            s.push(0x1f);
            s.extend_from_slice(p.as_bytes());
        }
        seeds.push(s);
    }
    seeds.push(
        [0x44, 5]
            .iter()
            .chain("héllo wörld 東京 \u{1F600} [MASK] <pad>".as_bytes())
            .copied()
            .collect(),
    );
    seeds
}

fn forward_seeds() -> Vec<Vec<u8>> {
    (0u8..14)
        .map(|k| {
            let mut s = vec![k, 3 + 2 * k, k.wrapping_mul(37) | 0x60];
            s.extend((0..120u8).map(|i| i.wrapping_mul(k + 1) % 40));
            s
        })
        .collect()
}

#[test]
fn fuzz_checkpoint() {
    run("checkpoint", checkpoint_seeds(), bodies::checkpoint);
}

#[test]
fn fuzz_config() {
    run("config", config_seeds(), bodies::config);
}

#[test]
fn fuzz_index() {
    run("index", index_seeds(), bodies::index);
}

#[test]
fn fuzz_tokenizer() {
    run("tokenizer", tokenizer_seeds(), bodies::tokenize);
}

#[test]
fn fuzz_forward() {
    run("forward", forward_seeds(), bodies::forward);
}

/// Writes every target's seeds to fuzz/corpus/<target>/ for `cargo fuzz run`.
#[test]
#[ignore = "writes files; run by scripts/fuzz"]
fn write_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let all = [
        ("checkpoint", checkpoint_seeds()),
        ("config", config_seeds()),
        ("index", index_seeds()),
        ("tokenizer", tokenizer_seeds()),
        ("forward", forward_seeds()),
    ];
    for (target, seeds) in all {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), s).unwrap();
        }
    }
}
