//! The CPU backend: `reference` (readable, f64 inside each op: the truth everything is tested
//! against) and `fast` (rayon + SIMD, the default for `--device cpu`).

pub mod fast;
pub mod reference;
