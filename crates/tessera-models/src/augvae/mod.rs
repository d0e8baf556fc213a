//! L-Verse's AugVAE (Kim et al., CVPR 2022; spec §4), as `latent_verse/models/vqvae.py`@e52ed9f
//! builds it (`AugVAE`, its parent `VQVAE`, `setup_finetune`). Parameter names are its state_dict
//! keys.
//!
//! ```text
//! AugVAE-ML, levels 64/32/16/8 (256 px):
//!   x ─E0─ h0 ─E1─ h1 ─E2─ h2 ─E3─ h3          (each Ej reads the unquantised h(j−1))
//!          │q      │q      │q      │q          q = pre_quant_j, shared EMA codebook
//!          Q0      Q1      Q2      Q3
//!   d = G0(post_0(Q3)); d = G1(cat(post_1(Q2), d)); d = G2(cat(post_2(Q1), d));
//!   x̂ = G3(cat(post_3(Q0), d))                 ("feature-augmented" decoding)
//! AugVAE-SL (single_level = 32): E0, E1, then d = post_0(Q1); d = G2(conn_0(d)); x̂ = G3(conn_1(d))
//! ```
//! All levels share one EMA codebook (`quantizers.0.embedding.*`, updated once per level in
//! order) and the weights, not the biases, of the pre- and post-quant 1×1 convs
//! (`quant_weight_share`). Stage-2 tokens are the levels' grids, row-major, finest first.
//!
//! - [`config`]: the `[model]` section.
//! - [`loss`]: the training loss (reconstruction + LPIPS + commitment, no GAN).
//! - [`shared_conv`]: 1×1 convs that share a weight and keep a bias each.

pub mod config;
pub mod loss;
pub mod shared_conv;

pub use config::{lverse_quantizer, AugVaeConfig};

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};
use tessera_quant::vq::QuantError;
use tessera_quant::{VectorQuantizer, VqConfig};

use crate::tokenizer::{CodeLayout, ImageTokenizer, TokenizerError};
use crate::vqgan::{Decoder, Encoder};
use shared_conv::SharedConv1x1;

/// One quantised level of a forward pass.
#[derive(Debug)]
pub struct LevelCodes {
    /// Index into [`AugVaeConfig::levels`].
    pub level: usize,
    /// (B, D, r, r), straight-through.
    pub quantized: Tensor,
    /// (B, r, r) int64.
    pub indices: Tensor,
    /// β·commitment of this level.
    pub loss: Tensor,
}

/// A forward pass's results.
#[derive(Debug)]
pub struct AugVaeOutput {
    /// (B, 3, H, W), unclamped.
    pub reconstruction: Tensor,
    /// Every quantised level, in level order.
    pub levels: Vec<LevelCodes>,
    /// Σ over quantised levels of β·commitment (`emb_loss`).
    pub loss: Tensor,
}

impl AugVaeOutput {
    /// exp(entropy) of the code histogram over all quantised levels (upstream's `perplexity`).
    pub fn perplexity(&self, num_codes: i64) -> f64 {
        let all = Tensor::cat(&self.levels.iter().map(|l| l.indices.flatten(0, -1)).collect::<Vec<_>>(), 0);
        let counts: Vec<i64> = Vec::try_from(&all.bincount::<Tensor>(None, num_codes)).unwrap_or_default();
        let counts: Vec<u64> = counts.iter().map(|&c| c as u64).collect();
        tessera_quant::stats::perplexity(&counts)
    }
}

/// AugVAE-ML or -SL.
#[derive(Debug)]
pub struct AugVae {
    pub config: AugVaeConfig,
    encoders: Vec<Encoder>,
    pre_quants: SharedConv1x1,
    pub quantizer: VectorQuantizer,
    post_quants: SharedConv1x1,
    decoders: Vec<Decoder>,
    connectors: Vec<nn::Conv2D>,
}

impl AugVae {
    /// `quant.dim` is `codebook_dim`; the quantizer is L-Verse's EMA one in the presets.
    pub fn new(p: &nn::Path, config: AugVaeConfig, quant: VqConfig) -> Result<Self, QuantError> {
        let l = config.levels.len();
        let (z, d) = (config.z_channels, quant.dim);
        let kept = config.kept_level();
        let n_enc = kept.map_or(l, |k| k + 1);
        let encoders = (0..n_enc).map(|j| Encoder::new(&(p / "encoders" / j), &config.encoder(j))).collect();
        // SL keeps the ML decoders L−1−k .. L−1, renumbered from 0 as upstream's `del` does.
        let first_dec = kept.map_or(0, |k| l - 1 - k);
        let decoders = (first_dec..l)
            .enumerate()
            .map(|(i, ml)| Decoder::new(&(p / "decoders" / i), &config.decoder(ml)))
            .collect();
        let connectors = match kept {
            Some(k) => {
                (0..=k).map(|i| tessera_nn::conv::conv1x1(&(p / "connectors" / i), z, 2 * z)).collect()
            }
            None => vec![],
        };
        Ok(Self {
            encoders,
            pre_quants: SharedConv1x1::new(&(p / "pre_quants"), z, d, n_enc),
            quantizer: VectorQuantizer::new(&(p / "quantizers" / 0), quant)?,
            post_quants: SharedConv1x1::new(&(p / "post_quants"), d, z, if kept.is_some() { 1 } else { l }),
            decoders,
            connectors,
            config,
        })
    }

    /// Whether level `j`'s encoder output is quantised in the forward pass.
    fn quantises(&self, j: usize) -> bool {
        match self.config.kept_level() {
            None => true,
            Some(k) => j == k || self.config.quantize_all_kept_levels,
        }
    }

    /// Encode and quantise (`encode`). In training the shared EMA codebook moves once per
    /// quantised level, in level order.
    ///
    /// # Shapes
    /// (B, 3, R, R) → per quantised level j: (B, D, levels[j], levels[j])
    pub fn encode_levels(
        &mut self,
        x: &Tensor,
        train: bool,
    ) -> Result<(Vec<LevelCodes>, Tensor), QuantError> {
        let mut h = x.shallow_clone();
        let mut levels = Vec::new();
        for j in 0..self.encoders.len() {
            h = self.encoders[j].forward_t(&h, train);
            if self.quantises(j) {
                let out = self.quantizer.forward_t(&self.pre_quants.forward(&h, j), train)?;
                levels.push(LevelCodes {
                    level: j,
                    quantized: out.quantized,
                    indices: out.indices,
                    loss: out.loss,
                });
            }
        }
        let loss = levels
            .iter()
            .map(|l| l.loss.shallow_clone())
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| Tensor::zeros([], (Kind::Float, x.device())));
        Ok((levels, loss))
    }

    /// Decode quantised features, finest first as [`AugVae::encode_levels`] returns them (`decode`).
    /// ML needs every level; SL the kept one.
    ///
    /// # Shapes
    /// per level j: (B, D, levels[j], levels[j]) → (B, 3, R, R)
    pub fn decode_levels(&self, quants: &[&Tensor], train: bool) -> Tensor {
        if self.config.kept_level().is_some() {
            let mut d = self.post_quants.forward(quants[quants.len() - 1], 0);
            for (g, conn) in self.decoders.iter().zip(&self.connectors) {
                d = g.forward_t(&d.apply(conn), train);
            }
            return d;
        }
        let l = quants.len();
        let mut d: Option<Tensor> = None;
        for (i, g) in self.decoders.iter().enumerate() {
            let q = self.post_quants.forward(quants[l - 1 - i], i);
            let input = match d {
                Some(prev) => Tensor::cat(&[q, prev], 1),
                None => q,
            };
            d = Some(g.forward_t(&input, train));
        }
        d.expect("an AugVAE has at least one decoder")
    }

    /// # Shapes
    /// (B, 3, R, R) → reconstruction (B, 3, R, R)
    pub fn forward_t(&mut self, x: &Tensor, train: bool) -> Result<AugVaeOutput, QuantError> {
        let (levels, loss) = self.encode_levels(x, train)?;
        let decoded: Vec<&Tensor> = match self.config.kept_level() {
            Some(k) => levels.iter().filter(|l| l.level == k).map(|l| &l.quantized).collect(),
            None => levels.iter().map(|l| &l.quantized).collect(),
        };
        let reconstruction = self.decode_levels(&decoded, train);
        Ok(AugVaeOutput { reconstruction, levels, loss })
    }

    /// Stage-2 codes of a forward pass: the token levels' indices, row-major, finest first
    /// (`get_codebook_indices`).
    ///
    /// # Shapes
    /// → (B, Σ r²) int64
    pub fn codes(&self, out: &AugVaeOutput) -> Tensor {
        let want = self.config.code_levels();
        let parts: Vec<Tensor> =
            out.levels.iter().filter(|l| want.contains(&l.level)).map(|l| l.indices.flatten(1, -1)).collect();
        Tensor::cat(&parts, 1)
    }

    /// Images from stage-2 codes (`decode(seq, feed_seq=True)`).
    ///
    /// # Shapes
    /// (B, Σ r²) → (B, 3, R, R)
    pub fn decode_codes(&self, codes: &Tensor) -> Tensor {
        let b = codes.size()[0];
        let mut at = 0;
        let mut quants = vec![];
        for j in self.config.code_levels() {
            let r = self.config.levels[j];
            let idx = codes.narrow(1, at, r * r).reshape([b, r, r]);
            quants.push(self.quantizer.decode_indices(&idx));
            at += r * r;
        }
        self.decode_levels(&quants.iter().collect::<Vec<_>>(), false)
    }

    /// `decoders[-1].conv_out.weight`.
    pub fn last_layer(&self) -> &Tensor {
        self.decoders[self.decoders.len() - 1].last_layer()
    }
}

/// The name in the AugVAE-SL model `sl` of the AugVAE-ML variable `ml_name`, or `None` where
/// `setup_finetune` drops it (spec §4.3): encoders past the kept level, decoders before it (the
/// rest renumbered from 0), the biases of pre-quant convs past the kept encoders and of every
/// post-quant conv but the first.
pub fn sl_name_of_ml(sl: &AugVaeConfig, ml_name: &str) -> Option<String> {
    let k = sl.kept_level()?;
    let l = sl.levels.len();
    let mut parts = ml_name.splitn(3, '.');
    let (group, index, rest) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
    let i: usize = index.parse().ok()?;
    let keep = match group {
        "encoders" => (i <= k).then_some(i),
        "decoders" => (i + 1 + k >= l).then(|| i + 1 + k - l),
        "pre_quants" => (i <= k).then_some(i),
        "post_quants" | "quantizers" => (i == 0).then_some(0),
        _ => None,
    }?;
    Some(format!("{group}.{keep}.{rest}"))
}

impl ImageTokenizer for AugVae {
    fn kind(&self) -> &'static str {
        "augvae"
    }

    fn num_codes(&self) -> usize {
        self.quantizer.config.num_codes as usize
    }

    fn layout(&self) -> CodeLayout {
        let grids = self
            .config
            .code_levels()
            .iter()
            .map(|&j| (self.config.levels[j], self.config.levels[j]))
            .collect();
        CodeLayout { grids }
    }

    fn resolution(&self) -> i64 {
        self.config.resolution
    }

    fn encode(&mut self, images: &Tensor) -> Result<Tensor, TokenizerError> {
        crate::tokenizer::check_images(images, self.config.resolution)?;
        let out =
            tch::no_grad(|| self.forward_t(images, false)).map_err(|e| TokenizerError(e.to_string()))?;
        Ok(self.codes(&out))
    }

    fn decode(&mut self, codes: &Tensor) -> Tensor {
        tch::no_grad(|| self.decode_codes(codes).clamp(-1.0, 1.0))
    }
}
