//! ViT-VQGAN (Yu et al., ICLR 2022; spec §6), as enhancing-transformers builds it
//! (`enhancing/modules/stage1/vitvqgan.py`@e1c185d, `ViTVQ`): a ViT encoder over p×p patches,
//! `pre_quant` Linear down to the code width (32), an l2-normalised lookup, `post_quant` Linear
//! back up, and a ViT decoder. Parameter names are its state_dict keys.
//!
//! - [`transformer`]: the pre-norm blocks (tanh feed-forward).
//! - [`coder`]: encoder, decoder and the fixed 2-D sin-cos positions.
//! - [`loss`]: its training loss beside it (StyleGAN2 discriminator, lazy R1).

pub mod coder;
pub mod loss;
pub mod transformer;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;
use tessera_quant::vq::QuantError;
use tessera_quant::{QuantizerOutput, VectorQuantizer, VqConfig};

use coder::{VitDecoder, VitEncoder};

/// One transformer stack (encoder or decoder).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StackConfig {
    pub dim: i64,
    pub depth: i64,
    pub heads: i64,
    pub mlp_dim: i64,
    /// Width of each attention head (upstream default 64).
    pub dim_head: i64,
}

impl Default for StackConfig {
    /// ViT-VQGAN Small: dim 512, 8 blocks, 8 heads, MLP 2048 (spec §6.1; enhancing-transformers'
    /// `imagenet_vitvq_small.yaml`).
    fn default() -> Self {
        StackConfig { dim: 512, depth: 8, heads: 8, mlp_dim: 2048, dim_head: 64 }
    }
}

impl StackConfig {
    /// Base: 768, 12 blocks, 12 heads, MLP 3072.
    pub fn base() -> Self {
        StackConfig { dim: 768, depth: 12, heads: 12, mlp_dim: 3072, dim_head: 64 }
    }
    /// Large (the SL decoder): 1280, 32 blocks, 16 heads, MLP 5120.
    pub fn large() -> Self {
        StackConfig { dim: 1280, depth: 32, heads: 16, mlp_dim: 5120, dim_head: 64 }
    }
}

impl tessera_core::Validate for StackConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.int("dim", self.dim, 4, 16384, "a multiple of 4: the 2-D sin-cos positions take quarters");
        c.rule(self.dim % 4 == 0, "dim", format_args!("= {}: must be a multiple of 4", self.dim));
        c.int("depth", self.depth, 1, 256, "");
        c.int("heads", self.heads, 1, 256, "");
        c.int("mlp_dim", self.mlp_dim, 1, 1 << 16, "");
        c.int("dim_head", self.dim_head, 1, 1024, "");
    }
}

/// `[model]` of a ViT-VQGAN run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VitConfig {
    /// Side of the square images (paper: 256).
    pub resolution: i64,
    /// Side of a patch, and of a code's cell (paper: 8).
    pub patch_size: i64,
    pub in_channels: i64,
    pub encoder: StackConfig,
    pub decoder: StackConfig,
}

impl Default for VitConfig {
    /// ViT-VQGAN-SS at 256×256 (the paper's main tokenizer).
    fn default() -> Self {
        VitConfig {
            resolution: 256,
            patch_size: 8,
            in_channels: 3,
            encoder: StackConfig::default(),
            decoder: StackConfig::default(),
        }
    }
}

impl VitConfig {
    /// Side of the code grid.
    pub fn latent_side(&self) -> i64 {
        self.resolution / self.patch_size
    }
}

impl tessera_core::Validate for VitConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.int("resolution", self.resolution, 1, 4096, "image side");
        c.int("patch_size", self.patch_size, 1, 256, "");
        if self.patch_size > 0 {
            c.rule(
                self.resolution % self.patch_size == 0,
                "resolution",
                format_args!("= {}: must be divisible by patch_size = {}", self.resolution, self.patch_size),
            );
        }
        c.int("in_channels", self.in_channels, 3, 3, "images are RGB");
        c.section("encoder", &self.encoder);
        c.section("decoder", &self.decoder);
    }
}

/// Linear / conv init of enhancing-transformers' `init_weights`: Xavier-uniform weights
/// (`U(±√(6/(fan_in+fan_out)))`), zero bias.
pub(crate) fn xavier(fan_in: i64, fan_out: i64, bias: bool) -> nn::LinearConfig {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::LinearConfig {
        ws_init: nn::Init::Uniform { lo: -bound, up: bound },
        bs_init: Some(nn::Init::Const(0.0)),
        bias,
    }
}

/// The ViT-VQGAN tokenizer.
#[derive(Debug)]
pub struct VitVq {
    pub config: VitConfig,
    pub encoder: VitEncoder,
    pub decoder: VitDecoder,
    pre_quant: nn::Linear,
    post_quant: nn::Linear,
    pub quantizer: VectorQuantizer,
}

/// A forward pass's results.
#[derive(Debug)]
pub struct VitOutput {
    /// (B, 3, H, W), unbounded.
    pub reconstruction: Tensor,
    pub quant: QuantizerOutput,
}

impl VitVq {
    /// `quant.dim` is the code width (`embed_dim`, 32 in the paper).
    pub fn new(p: &nn::Path, config: VitConfig, quant: VqConfig) -> Result<Self, QuantError> {
        let (r, patch, ch) = (config.resolution, config.patch_size, config.in_channels);
        let (e, d) = (config.encoder.dim, config.decoder.dim);
        Ok(VitVq {
            encoder: VitEncoder::new(&(p / "encoder"), &config.encoder, (r, r), patch, ch),
            decoder: VitDecoder::new(&(p / "decoder"), &config.decoder, (r, r), patch, ch),
            pre_quant: nn::linear(p / "pre_quant", e, quant.dim, xavier(e, quant.dim, true)),
            post_quant: nn::linear(p / "post_quant", quant.dim, d, xavier(quant.dim, d, true)),
            quantizer: VectorQuantizer::new(&(p / "quantizer"), quant)?,
            config,
        })
    }

    /// Pre-quantization latents `pre_quant(encoder(x))`.
    ///
    /// # Shapes
    /// `(B, 3, R, R)` → `(B, (R/p)², embed_dim)`
    pub fn encode_latent(&self, x: &Tensor) -> Tensor {
        self.pre_quant.forward(&self.encoder.forward(x))
    }

    /// Quantized latents and codes `(B, (R/p)²)`.
    pub fn encode(&mut self, x: &Tensor, train: bool) -> Result<QuantizerOutput, QuantError> {
        let z = self.encode_latent(x);
        self.quantizer.forward_t(&z, train)
    }

    /// # Shapes
    /// `(B, N, embed_dim)` → `(B, 3, R, R)`
    pub fn decode(&self, z_q: &Tensor) -> Tensor {
        self.decoder.forward(&self.post_quant.forward(z_q))
    }

    /// Decode code indices `(B, N)` (upstream `decode_codes`: normalised codes).
    pub fn decode_indices(&self, indices: &Tensor) -> Tensor {
        self.decode(&self.quantizer.decode_indices(indices))
    }

    pub fn forward_t(&mut self, x: &Tensor, train: bool) -> Result<VitOutput, QuantError> {
        let quant = self.encode(x, train)?;
        let reconstruction = self.decode(&quant.quantized);
        Ok(VitOutput { reconstruction, quant })
    }

    /// `decoder.to_pixel.1.weight`.
    pub fn last_layer(&self) -> &Tensor {
        self.decoder.last_layer()
    }
}

impl crate::tokenizer::ImageTokenizer for VitVq {
    fn kind(&self) -> &'static str {
        "vit-vqgan"
    }

    fn num_codes(&self) -> usize {
        self.quantizer.config.num_codes as usize
    }

    fn layout(&self) -> crate::tokenizer::CodeLayout {
        crate::tokenizer::CodeLayout::square(self.config.latent_side())
    }

    fn resolution(&self) -> i64 {
        self.config.resolution
    }

    fn encode(&mut self, images: &Tensor) -> Result<Tensor, crate::tokenizer::TokenizerError> {
        let b = crate::tokenizer::check_images(images, self.config.resolution)?;
        let out = tch::no_grad(|| VitVq::encode(self, images, false));
        Ok(out.map_err(|e| crate::tokenizer::TokenizerError(e.to_string()))?.indices.view([b, -1]))
    }

    fn decode(&mut self, codes: &Tensor) -> Tensor {
        tch::no_grad(|| self.decode_indices(codes).clamp(-1.0, 1.0))
    }
}
