//! The PatchGAN discriminator of pix2pix as taming uses it (`NLayerDiscriminator`, spec §1.4):
//!
//! ```text
//! Conv4×4 s2 p1 (in → ndf), LeakyReLU 0.2
//! for n = 1..L−1: Conv4×4 s2 p1 (ndf·min(2ⁿ⁻¹,8) → ndf·min(2ⁿ,8), no bias), BatchNorm, LeakyReLU 0.2
//! Conv4×4 s1 p1 (→ ndf·min(2ᴸ,8), no bias), BatchNorm, LeakyReLU 0.2
//! Conv4×4 s1 p1 (→ 1)
//! ```
//! Parameters under `main.<index>` as the original `nn.Sequential`. Init: conv N(0, 0.02),
//! BatchNorm weight N(1, 0.02), bias 0.

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscConfig {
    pub in_channels: i64,
    pub ndf: i64,
    pub n_layers: i64,
}

impl tessera_core::Validate for DiscConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.int("in_channels", self.in_channels, 3, 3, "images are RGB");
        c.int("ndf", self.ndf, 1, 2048, "");
        c.int("n_layers", self.n_layers, 1, 8, "strided layers; the image must stay ≥ 3 px after them");
    }
}

impl Default for DiscConfig {
    fn default() -> Self {
        Self { in_channels: 3, ndf: 64, n_layers: 3 }
    }
}

#[derive(Debug)]
enum Layer {
    Conv(nn::Conv2D),
    Norm(nn::BatchNorm),
    LeakyRelu,
}

#[derive(Debug)]
pub struct PatchGan {
    layers: Vec<Layer>,
}

impl PatchGan {
    pub fn new(p: &nn::Path, c: &DiscConfig) -> Self {
        let main = p / "main";
        let mut layers = Vec::new();
        let conv = |idx: usize, i: i64, o: i64, stride: i64, bias: bool| {
            let cfg = nn::ConvConfig {
                stride,
                padding: 1,
                bias,
                ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 },
                bs_init: nn::Init::Const(0.0),
                ..Default::default()
            };
            Layer::Conv(nn::conv2d(&main / idx, i, o, 4, cfg))
        };
        let norm = |idx: usize, c: i64| {
            let cfg = nn::BatchNormConfig {
                ws_init: nn::Init::Randn { mean: 1.0, stdev: 0.02 },
                bs_init: nn::Init::Const(0.0),
                ..Default::default()
            };
            Layer::Norm(nn::batch_norm2d(&main / idx, c, cfg))
        };
        layers.push(conv(0, c.in_channels, c.ndf, 2, true));
        layers.push(Layer::LeakyRelu);
        let mut mult = 1;
        for n in 1..=c.n_layers {
            let prev = mult;
            mult = (1 << n).min(8);
            let stride = if n < c.n_layers { 2 } else { 1 };
            let idx = layers.len();
            layers.push(conv(idx, c.ndf * prev, c.ndf * mult, stride, false));
            layers.push(norm(idx + 1, c.ndf * mult));
            layers.push(Layer::LeakyRelu);
        }
        let idx = layers.len();
        layers.push(conv(idx, c.ndf * mult, 1, 1, true));
        Self { layers }
    }
}

impl ModuleT for PatchGan {
    /// # Shapes
    /// (B, 3, H, W) → (B, 1, H', W') patch logits (30×30 for 256², n_layers 3)
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for l in &self.layers {
            h = match l {
                Layer::Conv(c) => h.apply(c),
                Layer::Norm(b) => b.forward_t(&h, train),
                Layer::LeakyRelu => h.maximum(&(&h * 0.2)),
            };
        }
        h
    }
}
