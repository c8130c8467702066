//! Backends. `cpu::reference` holds the readable reference ops that everything else is tested
//! against.

pub mod cpu;

use crate::error::{Error, Result};

/// Where the user asked the model to run: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda(usize),
}

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
}

impl std::str::FromStr for DeviceRequest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Device {
            device: s.into(),
            msg: "expected auto, cpu, cuda or cuda:N".into(),
        };
        Ok(match s {
            "auto" => DeviceRequest::Auto,
            "cpu" => DeviceRequest::Cpu,
            "cuda" => DeviceRequest::Cuda(0),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => DeviceRequest::Cuda(n.parse().map_err(|_| bad())?),
                None => return Err(bad()),
            },
        })
    }
}

impl DeviceRequest {
    /// The device to run on, and for `auto` a one-line notice saying why it is not the GPU.
    pub fn resolve(self) -> Result<(Device, Option<String>)> {
        match self {
            DeviceRequest::Cpu => Ok((Device::Cpu, None)),
            DeviceRequest::Auto => Ok((
                Device::Cpu,
                Some("running on the CPU: this build has no CUDA backend".into()),
            )),
            DeviceRequest::Cuda(n) => Err(Error::Device {
                device: format!("cuda:{n}"),
                msg: "this build of albert has no CUDA backend; use --device cpu".into(),
            }),
        }
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
        assert!("tpu"
            .parse::<DeviceRequest>()
            .unwrap_err()
            .to_string()
            .contains("tpu"));
        assert!(DeviceRequest::Cuda(0).resolve().is_err());
    }
}
