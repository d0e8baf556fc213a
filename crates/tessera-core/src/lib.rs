//! Shared plumbing for every Tessera crate.
//!
//! - [`device`]: `--device cpu|cuda|auto` turned into a [`tch::Device`], with a clear error when
//!   CUDA is asked for and absent.
//! - [`config`]: TOML files mapped to serde structs, `--set a.b=c` overrides, unknown keys rejected.
//! - [`validate`]: each config key's allowed range, checked when a config is resolved.
//! - [`fsutil`]: atomic file writes (write to a temporary file, then rename).
//! - [`viz`]: image grids with text labels, written as PNG.

pub mod config;
pub mod device;
pub mod fsutil;
pub mod validate;
pub mod viz;

pub use config::{ConfigError, ConfigSource};
pub use device::DeviceArg;
pub use validate::{Check, Validate};
