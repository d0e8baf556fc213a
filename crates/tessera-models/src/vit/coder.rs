//! ViT-VQGAN's encoder and decoder (enhancing-transformers `ViTEncoder`, `ViTDecoder`,
//! `enhancing/modules/stage1/layers.py`@e1c185d; spec §6.2).
//!
//! Encoder: `Conv2d(3, D, k=p, s=p)` → tokens row-major → + fixed 2-D sin-cos positions →
//! transformer. Decoder: + positions → transformer → `(B, D, H/p, W/p)` →
//! `ConvTranspose2d(D, 3, k=p, s=p)`, no output activation.

use tch::nn::{self, Module};
use tch::Tensor;

use super::transformer::Transformer;
use super::StackConfig;

/// MAE-style fixed 2-D sin-cos positions, as enhancing-transformers' `get_2d_sincos_pos_embed`
/// computes them: with `ω_i = 10000^(−i/(D/4))` (float64), token `m = h·gw + w` gets
/// `[sin(w·ω), cos(w·ω), sin(h·ω), cos(h·ω)]`: the first half is the column (upstream names it
/// `emb_h`, but it takes `meshgrid(grid_w, grid_h)[0]`).
///
/// # Shapes
/// returns `(1, gh·gw, dim)`
pub fn sincos_2d(dim: i64, gh: i64, gw: i64) -> Tensor {
    let quarter = (dim / 4) as usize;
    let omega: Vec<f64> = (0..quarter).map(|i| 1.0 / 10000f64.powf(i as f64 / quarter as f64)).collect();
    let mut out = Vec::with_capacity((gh * gw * dim) as usize);
    for h in 0..gh {
        for w in 0..gw {
            for pos in [w as f64, h as f64] {
                out.extend(omega.iter().map(|o| (pos * o).sin() as f32));
                out.extend(omega.iter().map(|o| (pos * o).cos() as f32));
            }
        }
    }
    Tensor::from_slice(&out).view([1, gh * gw, dim])
}

/// Image → tokens.
#[derive(Debug)]
pub struct VitEncoder {
    to_patch: nn::Conv2D,
    pos: Tensor,
    transformer: Transformer,
    patch: i64,
}

impl VitEncoder {
    /// For images of `(h, w)` pixels.
    pub fn new(p: &nn::Path, c: &StackConfig, (h, w): (i64, i64), patch: i64, channels: i64) -> Self {
        let fan = patch * patch;
        let conv = nn::ConvConfig { stride: patch, ..patch_conv_init(channels * fan, c.dim) };
        let to_patch = nn::conv2d(p / "to_patch_embedding" / 0, channels, c.dim, patch, conv);
        let pos = fixed(p, "en_pos_embedding", &sincos_2d(c.dim, h / patch, w / patch));
        VitEncoder { to_patch, pos, transformer: Transformer::new(&(p / "transformer"), c), patch }
    }

    /// # Shapes
    /// `x: (B, C, H, W)` → `(B, (H/p)·(W/p), D)`
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let tokens = self.to_patch.forward(x).flatten(2, -1).transpose(1, 2);
        self.transformer.forward(&(tokens + &self.pos))
    }

    pub fn patch(&self) -> i64 {
        self.patch
    }
}

/// Tokens → image.
#[derive(Debug)]
pub struct VitDecoder {
    pos: Tensor,
    transformer: Transformer,
    to_pixel: nn::ConvTranspose2D,
    grid: (i64, i64),
}

impl VitDecoder {
    /// For images of `(h, w)` pixels.
    pub fn new(p: &nn::Path, c: &StackConfig, (h, w): (i64, i64), patch: i64, channels: i64) -> Self {
        let grid = (h / patch, w / patch);
        let pos = fixed(p, "de_pos_embedding", &sincos_2d(c.dim, grid.0, grid.1));
        let fan = patch * patch;
        let init = patch_conv_init(channels * fan, c.dim);
        let conv = nn::ConvTransposeConfig {
            stride: patch,
            ws_init: init.ws_init,
            bs_init: init.bs_init,
            ..Default::default()
        };
        let to_pixel = nn::conv_transpose2d(p / "to_pixel" / 1, c.dim, channels, patch, conv);
        VitDecoder { pos, transformer: Transformer::new(&(p / "transformer"), c), to_pixel, grid }
    }

    /// # Shapes
    /// `x: (B, gh·gw, D)` → `(B, C, gh·p, gw·p)`
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.transformer.forward(&(x + &self.pos));
        let (b, _, d) = x.size3().expect("(B, N, D) tokens");
        x.transpose(1, 2).reshape([b, d, self.grid.0, self.grid.1]).apply(&self.to_pixel)
    }

    /// `to_pixel.1.weight`, where the adaptive GAN weight would be measured.
    pub fn last_layer(&self) -> &Tensor {
        &self.to_pixel.ws
    }
}

/// A variable that is saved but not trained (upstream: a Parameter with requires_grad=False).
fn fixed(p: &nn::Path, name: &str, value: &Tensor) -> Tensor {
    let mut v = p.zeros_no_train(name, &value.size());
    tch::no_grad(|| v.copy_(value));
    v
}

/// Upstream's `init_weights` for the patch convs (`layers.py`@e1c185d): `xavier_uniform_` on the
/// weight viewed as `(weight.shape[0], -1)`, which for the encoder's Conv2d `(dim, ch, p, p)` and
/// the decoder's ConvTranspose2d `(dim, ch, p, p)` alike means fan-in `ch·p²` and fan-out `dim`
/// (not the 4-D `dim·p²`); the bias keeps PyTorch's default, `U(±1/√(ch·p²))` for both.
fn patch_conv_init(fan_in: i64, fan_out: i64) -> nn::ConvConfig {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    let b = 1.0 / (fan_in as f64).sqrt();
    nn::ConvConfig {
        ws_init: nn::Init::Uniform { lo: -bound, up: bound },
        bs_init: nn::Init::Uniform { lo: -b, up: b },
        ..Default::default()
    }
}
