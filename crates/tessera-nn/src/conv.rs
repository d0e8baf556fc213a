//! 3×3 convolutions with the padding modes of taming and TE-VQGAN (spec §1.2, §2.4).
//!
//! TE-VQGAN's replication padding is `nn.Sequential(ReplicationPad2d(1), Conv2d(padding=0))`, so the
//! original parameters live under `<name>.1.weight`; [`Conv3x3`] uses the same path so imported
//! checkpoints map one to one.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

/// How a 3×3 convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PadMode {
    /// `Conv2d(padding=1)` (taming).
    #[default]
    Zeros,
    /// `ReplicationPad2d(1)` then `Conv2d(padding=0)` (TE-VQGAN encoder).
    Replicate,
}

/// A stride-1, 3×3 convolution that keeps the spatial size.
#[derive(Debug)]
pub struct Conv3x3 {
    conv: nn::Conv2D,
    mode: PadMode,
}

impl Conv3x3 {
    /// Parameters at `p.weight` (zeros) or `p.1.weight` (replicate, TE-VQGAN's
    /// `Sequential(ReplicationPad2d(1), Conv2d)`).
    pub fn new(p: &nn::Path, cin: i64, cout: i64, mode: PadMode) -> Self {
        match mode {
            PadMode::Zeros => Self::at(p, cin, cout, mode),
            PadMode::Replicate => Self::at(&(p / "1"), cin, cout, mode),
        }
    }

    /// Parameters at `p.weight` whatever the padding (a `Conv2d(padding_mode=…)`).
    pub fn at(p: &nn::Path, cin: i64, cout: i64, mode: PadMode) -> Self {
        let padding = if mode == PadMode::Zeros { 1 } else { 0 };
        Self { conv: nn::conv2d(p, cin, cout, 3, nn::ConvConfig { padding, ..Default::default() }), mode }
    }
}

impl Module for Conv3x3 {
    /// # Shapes
    /// (B, cin, H, W) → (B, cout, H, W)
    fn forward(&self, x: &Tensor) -> Tensor {
        match self.mode {
            PadMode::Zeros => self.conv.forward(x),
            PadMode::Replicate => self.conv.forward(&x.pad([1, 1, 1, 1], "replicate", None)),
        }
    }
}

/// A 1×1 convolution.
pub fn conv1x1(p: &nn::Path, cin: i64, cout: i64) -> nn::Conv2D {
    nn::conv2d(p, cin, cout, 1, Default::default())
}
