//! The LPIPS distance (Zhang et al. 2018) as taming uses it (spec §1.4), with a pluggable backbone:
//!
//! ```text
//! x̃ = (x − shift)/scale                     shift = (−.030, −.088, −.188), scale = (.458, .448, .450)
//! f̂ˡ = fˡ(x̃) / (‖fˡ(x̃)‖_channels + 1e-10)   unit-normalised features at each tap l
//! d(x, y) = Σ_l mean_hw( linˡ((f̂ˡ(x) − f̂ˡ(y))²) )
//! ```
//! `linˡ` is a 1×1 conv to one channel without bias (the learned LPIPS heads, or uniform
//! `1/C` heads = the channel mean). Inputs in [-1, 1]; output (B, 1, 1, 1).
//!
//! Backbones:
//! - [`Backbone::Vgg16`]: ImageNet VGG16 `features` (relu1_2 … relu5_3), weights **supplied by the
//!   user** (none can be fetched here) as a safetensors file with torchvision's key names
//!   (`features.0.weight` …), heads from the `lpips` package's `vgg.pth` (`lin0.model.1.weight` …).
//! - [`Backbone::Tiny`]: a small in-domain network Tessera trains itself on MNIST-like data. Its
//!   values are **not LPIPS** and are labelled "in-domain perceptual (substitute)" wherever reported.
//!
//! Taming's LPIPS keeps `Dropout(0.5)` active in the heads during training (spec §13.3, inferred);
//! Tessera's default is no dropout, `head_dropout = true` reproduces the original.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Which feature network LPIPS reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Backbone {
    /// ImageNet VGG16 (user-supplied weights).
    Vgg16,
    /// Tessera's in-domain substitute.
    #[default]
    Tiny,
}

impl Backbone {
    /// How reports name the distance.
    pub fn label(self) -> &'static str {
        match self {
            Backbone::Vgg16 => "LPIPS (VGG16)",
            Backbone::Tiny => "in-domain perceptual (substitute, not LPIPS)",
        }
    }
}

/// A conv stack with taps: (layer, relu) sequence, `taps` are indices after which features are read.
#[derive(Debug)]
pub struct FeatureNet {
    layers: Vec<FeatureLayer>,
    taps: Vec<usize>,
    pub channels: Vec<i64>,
}

#[derive(Debug)]
enum FeatureLayer {
    Conv(nn::Conv2D),
    Relu,
    MaxPool,
}

impl FeatureNet {
    /// `spec`: per layer, `Some(out_channels)` for a 3×3 conv (padding 1), `None` for 2×2 max-pool;
    /// each conv is followed by a ReLU. Module indices follow torchvision's `features` Sequential.
    fn build(p: &nn::Path, spec: &[Option<i64>], tap_convs: &[usize]) -> Self {
        let f = p / "features";
        let (mut layers, mut taps, mut channels) = (Vec::new(), Vec::new(), Vec::new());
        let mut cin = 3;
        for (k, s) in spec.iter().enumerate() {
            match s {
                Some(cout) => {
                    let idx = layers.len();
                    layers.push(FeatureLayer::Conv(nn::conv2d(
                        &f / idx,
                        cin,
                        *cout,
                        3,
                        nn::ConvConfig { padding: 1, ..Default::default() },
                    )));
                    layers.push(FeatureLayer::Relu);
                    cin = *cout;
                    if tap_convs.contains(&k) {
                        taps.push(layers.len() - 1);
                        channels.push(cin);
                    }
                }
                None => layers.push(FeatureLayer::MaxPool),
            }
        }
        Self { layers, taps, channels }
    }

    /// VGG16 `features[:30]`, taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
    pub fn vgg16(p: &nn::Path) -> Self {
        let m = None;
        let spec = [
            Some(64),
            Some(64),
            m,
            Some(128),
            Some(128),
            m,
            Some(256),
            Some(256),
            Some(256),
            m,
            Some(512),
            Some(512),
            Some(512),
            m,
            Some(512),
            Some(512),
            Some(512),
        ];
        Self::build(p, &spec, &[1, 4, 8, 12, 16])
    }

    /// Tessera's in-domain network: conv32, conv32 | pool, conv64, conv64 | pool, conv128 |.
    pub fn tiny(p: &nn::Path) -> Self {
        let spec = [Some(32), Some(32), None, Some(64), Some(64), None, Some(128)];
        Self::build(p, &spec, &[1, 4, 6])
    }

    /// Features at each tap.
    pub fn features(&self, x: &Tensor) -> Vec<Tensor> {
        let mut h = x.shallow_clone();
        let mut out = Vec::with_capacity(self.taps.len());
        for (i, l) in self.layers.iter().enumerate() {
            h = match l {
                FeatureLayer::Conv(c) => h.apply(c),
                FeatureLayer::Relu => h.relu(),
                FeatureLayer::MaxPool => h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
            };
            if self.taps.contains(&i) {
                out.push(h.shallow_clone());
            }
        }
        out
    }
}

/// The LPIPS distance over a feature network.
#[derive(Debug)]
pub struct Lpips {
    pub backbone: Backbone,
    pub net: FeatureNet,
    lins: Vec<nn::Conv2D>,
    head_dropout: bool,
    shift: Tensor,
    scale: Tensor,
}

impl Lpips {
    /// Network under `p / "net"`, heads under `lin{i}.model.1` with dropout or `lin{i}.model.0`
    /// without (taming's `NetLinLayer` Sequential), initialised uniform `1/C` (the channel mean)
    /// until learned heads are loaded.
    pub fn new(p: &nn::Path, backbone: Backbone, head_dropout: bool) -> Self {
        let net = match backbone {
            Backbone::Vgg16 => FeatureNet::vgg16(&(p / "net")),
            Backbone::Tiny => FeatureNet::tiny(&(p / "net")),
        };
        let lins = net
            .channels
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let cfg = nn::ConvConfig {
                    bias: false,
                    ws_init: nn::Init::Const(1.0 / c as f64),
                    ..Default::default()
                };
                let slot = if head_dropout { "1" } else { "0" };
                nn::conv2d(p / format!("lin{i}") / "model" / slot, c, 1, 1, cfg)
            })
            .collect();
        let dev = p.device();
        let shift = Tensor::from_slice(&[-0.030f32, -0.088, -0.188]).view([1, 3, 1, 1]).to_device(dev);
        let scale = Tensor::from_slice(&[0.458f32, 0.448, 0.450]).view([1, 3, 1, 1]).to_device(dev);
        Self { backbone, net, lins, head_dropout, shift, scale }
    }

    /// # Shapes
    /// x, y: (B, 3, H, W) in [-1, 1] → (B, 1, 1, 1)
    pub fn forward_t(&self, x: &Tensor, y: &Tensor, train: bool) -> Tensor {
        let fx = self.net.features(&((x - &self.shift) / &self.scale));
        let fy = self.net.features(&((y - &self.shift) / &self.scale));
        let unit = |f: &Tensor| f / (f.square().sum_dim_intlist(1, true, Kind::Float).sqrt() + 1e-10);
        let mut total: Option<Tensor> = None;
        for ((a, b), lin) in fx.iter().zip(&fy).zip(&self.lins) {
            let d = (unit(a) - unit(b)).square();
            let d = if self.head_dropout { d.dropout(0.5, train) } else { d };
            let v = lin.forward(&d).mean_dim(&[2i64, 3][..], true, Kind::Float);
            total = Some(match total {
                Some(t) => t + v,
                None => v,
            });
        }
        total.expect("at least one tap")
    }
}
