//! The taming VQGAN (spec §1.2) with TE-VQGAN's options (spec §2.4, §2.5).
//!
//! ```text
//! x ─ Encoder ─ quant_conv ─ quantize ─ post_quant_conv ─ Decoder ─ x̂
//! ```
//! Images are (B, 3, H, W) in [-1, 1]; the decoder output is not clamped (as taming).

mod coder;
pub mod loss;

pub use coder::{Decoder, Encoder};

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;
use tessera_nn::blocks::DownsamplingMethod;
use tessera_nn::conv::conv1x1;
use tessera_quant::vq::{QuantError, QuantizerOutput};
use tessera_quant::{VectorQuantizer, VqConfig};

/// TE-VQGAN's encoder `version`: v2 with replication padding pads the strided down-sampling conv
/// by replication too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncoderVersion {
    V1,
    #[default]
    V2,
}

/// Encoder/decoder shape (`ddconfig`). Defaults: TE-VQGAN's `mnist64x64_vqgan.yaml` (spec §2.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VqganConfig {
    pub ch: i64,
    pub ch_mult: Vec<i64>,
    pub num_res_blocks: i64,
    pub attn_resolutions: Vec<i64>,
    pub resolution: i64,
    pub in_channels: i64,
    pub out_ch: i64,
    pub z_channels: i64,
    pub dropout: f64,
    /// TE-VQGAN: replication padding in every encoder 3×3 conv.
    pub use_replicationpad: bool,
    pub downsampling_method: DownsamplingMethod,
    pub version: EncoderVersion,
    /// The attention block in the middle of encoder and decoder (taming: always; L-Verse's AugVAE
    /// with `use_attn = False`: none).
    pub mid_attention: bool,
}

impl Default for VqganConfig {
    fn default() -> Self {
        Self {
            ch: 128,
            ch_mult: vec![1, 2, 2],
            num_res_blocks: 1,
            attn_resolutions: vec![16],
            resolution: 64,
            in_channels: 3,
            out_ch: 3,
            z_channels: 256,
            dropout: 0.0,
            use_replicationpad: true,
            downsampling_method: DownsamplingMethod::StridedConv,
            version: EncoderVersion::V2,
            mid_attention: true,
        }
    }
}

impl tessera_core::Validate for VqganConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        let groups = "a multiple of 8: taming's GroupNorm(32) needs 32, narrower nets use fewer groups";
        c.int("ch", self.ch, 8, 2048, groups);
        c.rule(self.ch % 8 == 0, "ch", format_args!("= {}: must be {groups}", self.ch));
        c.int("ch_mult.len()", self.ch_mult.len(), 1, 8, "levels; the grid shrinks 2× per extra level");
        for (i, m) in self.ch_mult.iter().enumerate() {
            c.int(&format!("ch_mult[{i}]"), *m, 1, 16, "");
        }
        c.int("num_res_blocks", self.num_res_blocks, 1, 16, "");
        c.int("resolution", self.resolution, 1, 4096, "image side");
        c.int("in_channels", self.in_channels, 3, 3, "images are RGB");
        c.int("out_ch", self.out_ch, 3, 3, "images are RGB");
        c.int("z_channels", self.z_channels, 1, 8192, "");
        c.float("dropout", self.dropout, 0.0, 1.0, "");
        for (i, r) in self.attn_resolutions.iter().enumerate() {
            c.int(&format!("attn_resolutions[{i}]"), *r, 1, 4096, "a grid side where attention runs");
        }
        if (1..=8).contains(&self.ch_mult.len()) && self.resolution > 0 {
            let f = self.factor();
            c.rule(
                self.resolution % f == 0,
                "resolution",
                format_args!("= {}: must be divisible by 2^(len(ch_mult) − 1) = {f}", self.resolution),
            );
        }
    }
}

impl VqganConfig {
    /// Down-sampling factor f = 2^(levels − 1).
    pub fn factor(&self) -> i64 {
        1 << (self.ch_mult.len() - 1)
    }
    /// Side of the latent grid.
    pub fn latent_side(&self) -> i64 {
        self.resolution / self.factor()
    }
}

/// The VQGAN: encoder, quantizer and decoder.
#[derive(Debug)]
pub struct VqModel {
    pub config: VqganConfig,
    pub encoder: Encoder,
    pub decoder: Decoder,
    quant_conv: nn::Conv2D,
    post_quant_conv: nn::Conv2D,
    pub quantize: VectorQuantizer,
}

/// A forward pass's results.
#[derive(Debug)]
pub struct VqOutput {
    /// (B, out_ch, H, W), unclamped.
    pub reconstruction: Tensor,
    pub quant: QuantizerOutput,
}

impl VqModel {
    /// `quant.dim` is `embed_dim`, `quant.num_codes` is `n_embed`.
    pub fn new(p: &nn::Path, config: VqganConfig, quant: VqConfig) -> Result<Self, QuantError> {
        let embed_dim = quant.dim;
        Ok(Self {
            encoder: Encoder::new(&(p / "encoder"), &config),
            decoder: Decoder::new(&(p / "decoder"), &config),
            quant_conv: conv1x1(&(p / "quant_conv"), config.z_channels, embed_dim),
            post_quant_conv: conv1x1(&(p / "post_quant_conv"), embed_dim, config.z_channels),
            quantize: VectorQuantizer::new(&(p / "quantize"), quant)?,
            config,
        })
    }

    /// Pre-quantization latents `quant_conv(encoder(x))`.
    ///
    /// # Shapes
    /// (B, 3, H, W) → (B, embed_dim, H/f, W/f)
    pub fn encode_latent(&self, x: &Tensor, train: bool) -> Tensor {
        self.encoder.forward_t(x, train).apply(&self.quant_conv)
    }

    /// Quantized latents and codes.
    pub fn encode(&mut self, x: &Tensor, train: bool) -> Result<QuantizerOutput, QuantError> {
        let z = self.encode_latent(x, train);
        self.quantize.forward_t(&z, train)
    }

    /// # Shapes
    /// (B, embed_dim, h, w) → (B, out_ch, h·f, w·f)
    pub fn decode(&self, z_q: &Tensor, train: bool) -> Tensor {
        self.decoder.forward_t(&z_q.apply(&self.post_quant_conv), train)
    }

    /// Decode code indices (B, h, w).
    pub fn decode_indices(&self, indices: &Tensor) -> Tensor {
        self.decode(&self.quantize.decode_indices(indices), false)
    }

    pub fn forward_t(&mut self, x: &Tensor, train: bool) -> Result<VqOutput, QuantError> {
        let quant = self.encode(x, train)?;
        let reconstruction = self.decode(&quant.quantized, train);
        Ok(VqOutput { reconstruction, quant })
    }

    /// `decoder.conv_out.weight`, where taming measures the adaptive GAN weight.
    pub fn last_layer(&self) -> &Tensor {
        self.decoder.last_layer()
    }
}
