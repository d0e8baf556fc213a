//! taming-transformers' autoencoder blocks (spec §1.2) with TE-VQGAN's encoder options (spec §2.4).
//! Field names are the original module names, so state_dict keys match.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use crate::conv::{conv1x1, Conv3x3, PadMode};
use crate::swish;

/// `GroupNorm(32, C, eps=1e-6, affine)` (taming's `Normalize`). taming needs `C` divisible by 32;
/// for the narrower CPU presets (`ch` 16) Tessera uses the largest power of two ≤ 32 that divides
/// `C`, which leaves every taming configuration unchanged.
pub fn normalize(p: &nn::Path, channels: i64) -> nn::GroupNorm {
    nn::group_norm(
        p,
        norm_groups(channels),
        channels,
        nn::GroupNormConfig { eps: 1e-6, ..Default::default() },
    )
}

/// Groups of [`normalize`]: 32, or the largest power of two dividing `channels` below that.
pub fn norm_groups(channels: i64) -> i64 {
    let mut g = 32;
    while channels % g != 0 {
        g /= 2;
    }
    g
}

/// `h = conv1(swish(norm1(x)))`, `h = conv2(dropout(swish(norm2(h))))`, `out = shortcut(x) + h`,
/// shortcut a 1×1 `nin_shortcut` when the width changes.
#[derive(Debug)]
pub struct ResnetBlock {
    norm1: nn::GroupNorm,
    conv1: Conv3x3,
    norm2: nn::GroupNorm,
    conv2: Conv3x3,
    nin_shortcut: Option<nn::Conv2D>,
    dropout: f64,
}

impl ResnetBlock {
    pub fn new(p: &nn::Path, cin: i64, cout: i64, dropout: f64, pad: PadMode) -> Self {
        Self {
            norm1: normalize(&(p / "norm1"), cin),
            conv1: Conv3x3::new(&(p / "conv1"), cin, cout, pad),
            norm2: normalize(&(p / "norm2"), cout),
            conv2: Conv3x3::new(&(p / "conv2"), cout, cout, pad),
            nin_shortcut: (cin != cout).then(|| conv1x1(&(p / "nin_shortcut"), cin, cout)),
            dropout,
        }
    }
}

impl ModuleT for ResnetBlock {
    /// # Shapes
    /// (B, cin, H, W) → (B, cout, H, W)
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.conv1.forward(&swish(&x.apply(&self.norm1)));
        let h = swish(&h.apply(&self.norm2)).dropout(self.dropout, train);
        let h = self.conv2.forward(&h);
        match &self.nin_shortcut {
            Some(s) => x.apply(s) + h,
            None => x + h,
        }
    }
}

/// Single-head spatial self-attention: `w = softmax(qᵀk·C^−½)` over keys, `out = x + proj_out(v·wᵀ)`.
#[derive(Debug)]
pub struct AttnBlock {
    norm: nn::GroupNorm,
    q: nn::Conv2D,
    k: nn::Conv2D,
    v: nn::Conv2D,
    proj_out: nn::Conv2D,
}

impl AttnBlock {
    pub fn new(p: &nn::Path, c: i64) -> Self {
        Self {
            norm: normalize(&(p / "norm"), c),
            q: conv1x1(&(p / "q"), c, c),
            k: conv1x1(&(p / "k"), c, c),
            v: conv1x1(&(p / "v"), c, c),
            proj_out: conv1x1(&(p / "proj_out"), c, c),
        }
    }
}

impl Module for AttnBlock {
    /// # Shapes
    /// (B, C, H, W) → (B, C, H, W)
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("AttnBlock takes (B, C, H, W)");
        let hn = x.apply(&self.norm);
        // (B, 1, HW, C) queries/keys/values: one head over the HW positions.
        let seq = |t: Tensor| t.reshape([b, 1, c, h * w]).transpose(2, 3);
        let (q, k, v) = (seq(hn.apply(&self.q)), seq(hn.apply(&self.k)), seq(hn.apply(&self.v)));
        let att = Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, false, None, false);
        let out = att.transpose(2, 3).reshape([b, c, h, w]);
        x + out.apply(&self.proj_out)
    }
}

/// How the TE-VQGAN encoder halves the resolution (spec §2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DownsamplingMethod {
    /// Pad (0,1,0,1) then conv 3×3 stride 2 (taming).
    #[default]
    StridedConv,
    /// Conv 3×3 stride 1 then BlurPool (filter 5, replicate padding, stride 2).
    Convblurpool,
    /// MaxPool 2×2 stride 2.
    Maxpool,
    /// MaxPool 2×2 stride 1 then BlurPool.
    Maxblurpool,
}

/// Anti-aliased stride-2 down-sampling (Zhang 2019), as TE-VQGAN uses it: binomial filter
/// `a = [1, 4, 6, 4, 1]`, `filt = a aᵀ / Σ`, replication padding (2, 2, 2, 2), depthwise conv stride 2.
#[derive(Debug)]
pub struct BlurPool {
    filt: Tensor,
    channels: i64,
}

impl BlurPool {
    pub fn new(channels: i64, device: tch::Device) -> Self {
        let a = Tensor::from_slice(&[1f32, 4., 6., 4., 1.]).to_device(device);
        let f = a.unsqueeze(1).matmul(&a.unsqueeze(0));
        let f = &f / f.sum(Kind::Float);
        Self { filt: f.view([1, 1, 5, 5]).repeat([channels, 1, 1, 1]), channels }
    }
}

impl Module for BlurPool {
    /// # Shapes
    /// (B, C, H, W) → (B, C, ⌈H/2⌉, ⌈W/2⌉)
    fn forward(&self, x: &Tensor) -> Tensor {
        x.pad([2, 2, 2, 2], "replicate", None).conv2d::<Tensor>(
            &self.filt,
            None,
            [2, 2],
            [0, 0],
            [1, 1],
            self.channels,
        )
    }
}

/// The encoder's down-sampler, one of [`DownsamplingMethod`].
#[derive(Debug)]
pub enum Downsample {
    StridedConv { conv: nn::Conv2D, pad_mode: &'static str },
    ConvBlurPool { conv: Conv3x3, blur: BlurPool },
    MaxPool,
    MaxBlurPool { blur: BlurPool },
}

impl Downsample {
    /// `replicate_strided`: TE-VQGAN v2 with replication padding pads the strided conv by
    /// replication. `v2`: the convblurpool conv pads by replication (TE decides this by version
    /// alone). Parameter paths as TE-VQGAN: `conv` (strided) or `module.0` (convblurpool); the blur
    /// filter is a fixed buffer (`module.1.filt` in TE checkpoints), recomputed here.
    pub fn new(p: &nn::Path, c: i64, method: DownsamplingMethod, replicate_strided: bool, v2: bool) -> Self {
        match method {
            DownsamplingMethod::StridedConv => Self::StridedConv {
                conv: nn::conv2d(p / "conv", c, c, 3, nn::ConvConfig { stride: 2, ..Default::default() }),
                pad_mode: if replicate_strided { "replicate" } else { "constant" },
            },
            DownsamplingMethod::Convblurpool => {
                let mode = if v2 { PadMode::Replicate } else { PadMode::Zeros };
                Self::ConvBlurPool {
                    conv: Conv3x3::at(&(p / "module" / "0"), c, c, mode),
                    blur: BlurPool::new(c, p.device()),
                }
            }
            DownsamplingMethod::Maxpool => Self::MaxPool,
            DownsamplingMethod::Maxblurpool => Self::MaxBlurPool { blur: BlurPool::new(c, p.device()) },
        }
    }
}

impl Module for Downsample {
    /// # Shapes
    /// (B, C, H, W) → (B, C, H/2, W/2)
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Self::StridedConv { conv, pad_mode } => {
                let padded = if *pad_mode == "constant" {
                    x.constant_pad_nd([0, 1, 0, 1])
                } else {
                    x.pad([0, 1, 0, 1], pad_mode, None)
                };
                padded.apply(conv)
            }
            Self::ConvBlurPool { conv, blur } => blur.forward(&conv.forward(x)),
            Self::MaxPool => x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
            Self::MaxBlurPool { blur } => blur.forward(&x.max_pool2d([2, 2], [1, 1], [0, 0], [1, 1], false)),
        }
    }
}

/// Nearest ×2 then conv 3×3 (taming `Upsample(with_conv=True)`).
#[derive(Debug)]
pub struct Upsample {
    conv: nn::Conv2D,
}

impl Upsample {
    pub fn new(p: &nn::Path, c: i64) -> Self {
        Self { conv: nn::conv2d(p / "conv", c, c, 3, nn::ConvConfig { padding: 1, ..Default::default() }) }
    }
}

impl Module for Upsample {
    /// # Shapes
    /// (B, C, H, W) → (B, C, 2H, 2W)
    fn forward(&self, x: &Tensor) -> Tensor {
        let (_, _, h, w) = x.size4().expect("Upsample takes (B, C, H, W)");
        x.upsample_nearest2d([2 * h, 2 * w], 2.0, 2.0).apply(&self.conv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_groups_match_taming_where_taming_works() {
        assert_eq!(norm_groups(128), 32);
        assert_eq!(norm_groups(32), 32);
        assert_eq!(norm_groups(16), 16);
        assert_eq!(norm_groups(48), 16);
    }
}
