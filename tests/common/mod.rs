//! Helpers shared by the integration tests: where ../shared is, and how far two outputs are.
#![allow(dead_code)]

use std::path::PathBuf;

use albert::Tensor;

/// ../shared beside the project root; the tests cannot run without it, so say where it should be.
pub fn shared() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    assert!(
        p.join("models").is_dir(),
        "reference data not found at {}",
        p.display()
    );
    p
}

pub fn model_dir(name: &str) -> PathBuf {
    shared().join("models").join(name)
}

pub fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(shared().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Relative Frobenius error ||got - want|| / ||want|| over the rows whose mask is 1. `mask` has
/// one value per leading position (per token for [R, S, ...] tensors); `None` compares all.
pub fn rel_error(got: &Tensor, want: &Tensor, mask: Option<&[i64]>) -> f64 {
    assert_eq!(got.shape, want.shape, "shapes differ");
    let n = got.data.len();
    let inner = match mask {
        Some(m) => n / m.len(),
        None => n,
    };
    let (mut num, mut den) = (0f64, 0f64);
    for (i, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
        if mask.is_some_and(|m| m[i / inner] == 0) {
            continue;
        }
        assert!(g.is_finite(), "non-finite output at {i}");
        num += (*g as f64 - *w as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    assert!(
        den > 0.0,
        "reference is all zeros over the compared positions"
    );
    (num / den).sqrt()
}
