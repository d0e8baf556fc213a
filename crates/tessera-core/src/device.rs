//! Device selection shared by every command: `cpu`, `cuda`, `cuda:N` or `auto`.

use std::fmt;
use std::str::FromStr;

use tch::Device;

/// What the user asked for with `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceArg {
    Cpu,
    /// A CUDA device by ordinal (`cuda` means `cuda:0`).
    Cuda(usize),
    /// CUDA device 0 if libtorch sees one, else the CPU.
    #[default]
    Auto,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("unknown device `{0}`: expected cpu, cuda, cuda:N or auto")]
    Unknown(String),
    #[error(
        "--device {requested} was asked for, but libtorch sees {available} CUDA device(s) on this \
         machine; use --device cpu (or auto), or run on a machine with an NVIDIA GPU and driver"
    )]
    CudaUnavailable { requested: String, available: usize },
}

impl FromStr for DeviceArg {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::Unknown(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Auto => write!(f, "auto"),
        }
    }
}

impl DeviceArg {
    /// Resolve against what libtorch sees on this machine.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        self.resolve_with(tch::Cuda::device_count() as usize)
    }

    /// Resolve given a CUDA device count (separated out so it can be tested without a GPU).
    pub fn resolve_with(self, cuda_devices: usize) -> Result<Device, DeviceError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto if cuda_devices > 0 => Ok(Device::Cuda(0)),
            Self::Auto => Ok(Device::Cpu),
            Self::Cuda(n) if n < cuda_devices => Ok(Device::Cuda(n)),
            Self::Cuda(_) => {
                Err(DeviceError::CudaUnavailable { requested: self.to_string(), available: cuda_devices })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!("cpu".parse(), Ok(DeviceArg::Cpu));
        assert_eq!("CUDA".parse(), Ok(DeviceArg::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceArg::Cuda(3)));
        assert_eq!("auto".parse(), Ok(DeviceArg::Auto));
        assert!(matches!("tpu".parse::<DeviceArg>(), Err(DeviceError::Unknown(_))));
        assert!(matches!("cuda:x".parse::<DeviceArg>(), Err(DeviceError::Unknown(_))));
    }

    #[test]
    fn cuda_without_gpu_is_a_clear_error() {
        let err = DeviceArg::Cuda(0).resolve_with(0).unwrap_err();
        assert!(err.to_string().contains("--device cpu"), "{err}");
        assert_eq!(DeviceArg::Cuda(1).resolve_with(2), Ok(Device::Cuda(1)));
        assert!(DeviceArg::Cuda(2).resolve_with(2).is_err());
    }

    #[test]
    fn auto_falls_back_to_cpu() {
        assert_eq!(DeviceArg::Auto.resolve_with(0), Ok(Device::Cpu));
        assert_eq!(DeviceArg::Auto.resolve_with(1), Ok(Device::Cuda(0)));
    }

    #[test]
    fn resolve_on_this_machine_matches_libtorch() {
        let n = tch::Cuda::device_count() as usize;
        assert_eq!(DeviceArg::Cuda(0).resolve().is_ok(), n > 0);
    }
}
