//! Backends. `cpu::reference` holds the readable reference ops that everything else is tested
//! against; `cuda` runs the same ops as kernels (feature `cuda`, on by default).

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;

use crate::error::{Error, Result};

/// Where the user asked the model to run: `auto`, `cpu` (the fast path), `cpu-reference`,
/// `cuda` or `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    CpuReference,
    Cuda(usize),
}

impl std::str::FromStr for DeviceRequest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Device {
            device: s.into(),
            msg: "expected auto, cpu, cpu-reference, cuda or cuda:N".into(),
        };
        Ok(match s {
            "auto" => DeviceRequest::Auto,
            "cpu" => DeviceRequest::Cpu,
            "cpu-reference" | "cpu-ref" => DeviceRequest::CpuReference,
            "cuda" => DeviceRequest::Cuda(0),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => DeviceRequest::Cuda(n.parse().map_err(|_| bad())?),
                None => return Err(bad()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!(
            "cuda:1".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(1)
        );
        assert_eq!("cpu".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cpu);
        assert_eq!(
            "cpu-reference".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::CpuReference
        );
        assert!("tpu"
            .parse::<DeviceRequest>()
            .unwrap_err()
            .to_string()
            .contains("tpu"));
    }
}
