//! Storage types of the weights and of the matrix-product operands. Activations between ops are
//! always f32 and every sum accumulates in f32 or wider; `DType` says what a matrix product's
//! operands are rounded to (the weights once at load, the activations as they enter the product),
//! which is what tensor cores compute with.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    #[default]
    F32,
    BF16,
    F16,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
        }
    }

    /// `v` rounded to this type (round to nearest even), as f32.
    #[inline]
    pub fn round(self, v: f32) -> f32 {
        match self {
            DType::F32 => v,
            DType::BF16 => half::bf16::from_f32(v).to_f32(),
            DType::F16 => half::f16::from_f32(v).to_f32(),
        }
    }

    pub fn size_of(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::BF16 | DType::F16 => 2,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "f16" | "float16" => Ok(DType::F16),
            other => Err(Error::Input(format!(
                "unknown dtype `{other}` (expected f32, bf16 or f16)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest() {
        assert_eq!(DType::BF16.round(1.0 + 1.0 / 512.0), 1.0); // tie goes to even
        assert_eq!(DType::BF16.round(1.0 + 3.0 / 512.0), 1.0 + 4.0 / 512.0);
        assert_eq!(DType::F16.round(1.0 + 1.0 / 4096.0), 1.0);
        assert_eq!(DType::F32.round(0.1), 0.1);
        assert!("fp8"
            .parse::<DType>()
            .unwrap_err()
            .to_string()
            .contains("fp8"));
    }
}
