//! LG-VQ (Liang et al., NeurIPS 2024, arXiv 2405.14206; spec §5): language-guided codebook
//! learning. A frozen text encoder's features supervise a tokenizer's straight-through codes
//! through three losses, on any tokenizer:
//!
//! `L = L_tokenizer + α·L_gsa + β·L_mtp + γ·L_ras`
//!
//! - [`vision::QuantTransformer`] turns the codes into vision tokens `V` (a global token and one
//!   per code);
//! - `L_gsa` aligns the global token with the caption's sentence feature;
//! - `L_mtp`: [`text_decoder::MaskedTextDecoder`] reads `V` and predicts the masked caption tokens
//!   through an MLM head tied to the encoder's token embedding;
//! - `L_ras`: the relations between words match the relations between the codes they pick.
//!
//! Upstream: `taming/models/LG_vqgan.py` and `taming/clip/model.py` of
//! 623851394/LG-VQ-language-guided-codebook-learning@42c3ff1. Parameter names follow upstream
//! under `quant_tf.`, `mask_dec.`, `mlm.`, `wrs.` and `mask_param`.

pub mod losses;
pub mod masking;
pub mod text_decoder;
pub mod vision;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init, Module};
use tch::{Kind, Tensor};

use losses::{CodeProjection, MlmHead};
use text_decoder::MaskedTextDecoder;
pub use text_decoder::PadMask;
use vision::QuantTransformer;

/// `[lg]`: the loss weights and the vision-side sizes. Defaults are LG-VQ's CelebA-HQ / TextCaps
/// configs (`configs_text/cele_lgvqgan.yaml`): α = 0.001, β = 0.01, γ = 0.0001, two layers of one
/// head, dropout 0.1, 30 text tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LgConfig {
    /// α, `nceloss_weight` (global semantic alignment).
    pub gsa_weight: f64,
    /// β, `mskloss_weight` (masked text prediction).
    pub mtp_weight: f64,
    /// γ, `wrsloss_weight` (relationship alignment).
    pub ras_weight: f64,
    /// Layers of both the vision transformer and the text decoder (`mask_transformer_layer`).
    pub layers: usize,
    /// Heads of both (`mask_transformer_head`).
    pub heads: i64,
    /// The decoder's feed-forward width (0 = the text width, as upstream's 512).
    pub ffn_hidden: i64,
    /// The decoder's dropout (`drop_prob`).
    pub dropout: f64,
    /// Caption tokens, cut or padded (`clip_text_truncate_len`).
    pub text_len: usize,
    /// Label smoothing of `L_mtp`.
    pub label_smoothing: f64,
    /// The per-batch masking ratio (spec §5.2).
    pub mask_ratio: masking::MaskRatio,
    /// The decoder's self-attention padding mask (spec §13.6).
    pub pad_mask: PadMask,
    /// The frozen text encoder: a Hugging Face BERT folder (`config.json`, `model.safetensors`,
    /// `tokenizer.json`). Unset: all-MiniLM-L6-v2 from the data cache (`tessera data fetch
    /// --text-encoder`), the stand-in for CLIP ViT-B/32's text tower, whose weights cannot be
    /// fetched here.
    pub encoder: Option<std::path::PathBuf>,
    /// Heads of a CLIP text tower whose width is not a multiple of 64 (OpenAI: width / 64).
    pub encoder_heads: Option<i64>,
}

impl Default for LgConfig {
    fn default() -> Self {
        Self {
            gsa_weight: 0.001,
            mtp_weight: 0.01,
            ras_weight: 0.0001,
            layers: 2,
            heads: 1,
            ffn_hidden: 0,
            dropout: 0.1,
            text_len: 30,
            label_smoothing: 0.1,
            mask_ratio: masking::MaskRatio::default(),
            pad_mask: PadMask::Keys,
            encoder: None,
            encoder_heads: None,
        }
    }
}

impl LgConfig {
    /// Values that make no model, named by their `[lg]` key.
    pub fn check(&self) -> Result<(), String> {
        let weights = [
            ("gsa_weight", self.gsa_weight),
            ("mtp_weight", self.mtp_weight),
            ("ras_weight", self.ras_weight),
        ];
        for (k, w) in weights {
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!("lg.{k} = {w}: a weight ≥ 0"));
            }
        }
        if self.layers == 0 || self.heads < 1 || self.text_len < 2 || self.ffn_hidden < 0 {
            return Err(format!(
                "lg: layers = {}, heads = {}, text_len = {}, ffn_hidden = {}: need ≥ 1, ≥ 1, ≥ 2, ≥ 0",
                self.layers, self.heads, self.text_len, self.ffn_hidden
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) || !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(format!(
                "lg.dropout = {}, lg.label_smoothing = {}: need [0, 1)",
                self.dropout, self.label_smoothing
            ));
        }
        self.mask_ratio.check()
    }
}

/// A caption batch as the LG heads read it.
pub struct TextBatch<'a> {
    /// The encoder's token ids `(B, T)` (int64): `L_mtp`'s targets.
    pub ids: &'a Tensor,
    /// 1 on tokens, 0 on padding, `(B, T)`.
    pub pad: &'a Tensor,
    /// 1 where the token is kept, 0 where it is masked (padding is 0 too), `(B, T)`.
    pub keep: &'a Tensor,
    /// The frozen encoder's token features `(B, T, D)` and sentence feature `(B, D)`.
    pub tokens: &'a Tensor,
    pub sentence: &'a Tensor,
    /// The encoder's token-embedding matrix `(V, D)`.
    pub token_embedding: &'a Tensor,
}

/// The three losses (unweighted) and their weighted sum, with what tests and logs read.
#[derive(Debug)]
pub struct LgLosses {
    pub gsa: Tensor,
    pub mtp: Tensor,
    pub ras: Tensor,
    /// `α·L_gsa + β·L_mtp + γ·L_ras`.
    pub total: Tensor,
    /// `V (B, N + 1, D)`, the decoder's layers' outputs and `L_ras`'s parts.
    pub vision: Tensor,
    pub decoder: Vec<Tensor>,
    pub relation: losses::Relation,
}

/// The trainable LG-VQ modules of one tokenizer.
#[derive(Debug)]
pub struct LgHeads {
    pub config: LgConfig,
    quant_tf: QuantTransformer,
    decoder: MaskedTextDecoder,
    mask_param: Tensor,
    mlm: MlmHead,
    wrs: CodeProjection,
}

impl LgHeads {
    /// Heads for `codes` code positions of `code_dim` channels and a text encoder of width
    /// `text_dim` and vocabulary `vocab`.
    pub fn new(p: &nn::Path, config: LgConfig, codes: i64, code_dim: i64, text_dim: i64, vocab: i64) -> Self {
        let c = &config;
        let hidden = if c.ffn_hidden > 0 { c.ffn_hidden } else { text_dim };
        Self {
            quant_tf: QuantTransformer::new(&(p / "quant_tf"), codes, code_dim, c.layers, c.heads, text_dim),
            decoder: MaskedTextDecoder::new(
                &(p / "mask_dec"),
                text_dim,
                hidden,
                c.heads,
                c.layers,
                c.dropout,
                c.pad_mask,
            ),
            mask_param: p.var(
                "mask_param",
                &[1, c.text_len as i64, text_dim],
                Init::Randn { mean: 0.0, stdev: 0.01 },
            ),
            mlm: MlmHead::new(&(p / "mlm"), text_dim, vocab),
            wrs: CodeProjection::new(&(p / "wrs"), code_dim, text_dim),
            config,
        }
    }

    /// The MLM logits of every position of the decoder's output (`(B, T, D)` → `(B, T, V)`).
    pub fn mlm_logits(&self, decoded: &Tensor, token_embedding: &Tensor) -> Tensor {
        self.mlm.forward(decoded, token_embedding)
    }

    /// The global image token `V₀` of each image (the feature `L_gsa` aligns with the caption).
    ///
    /// # Shapes
    /// `quant: (B, C, h, w)` → `(B, D)`
    pub fn global_token(&self, quant: &Tensor) -> Tensor {
        self.quant_tf.forward(quant).select(1, 0)
    }

    /// The three losses of a batch (`text_supervise`, `LG_vqgan.py:244-253`). `train` turns the
    /// decoder's dropout on.
    ///
    /// # Shapes
    /// `quant: (B, C, h, w)`, the straight-through codes (gradients reach the encoder through it,
    /// never the codebook); `text`: see [`TextBatch`], with `T = text_len` → scalars
    pub fn losses(&self, quant: &Tensor, text: &TextBatch, train: bool) -> LgLosses {
        let c = &self.config;
        let vision = self.quant_tf.forward(quant);
        let gsa = losses::global_alignment(&vision.select(1, 0), text.sentence).mean(Kind::Float);
        // Masked positions (padding included) take the position's learned vector; padding is zeroed.
        let pad = text.pad.to_kind(Kind::Float);
        let masked_in = text.tokens.where_self(&text.keep.unsqueeze(-1).ne(0), &self.mask_param);
        let decoder = self.decoder.forward_all(&(masked_in * pad.unsqueeze(-1)), &vision, &pad, train);
        // Only the masked tokens enter L_mtp, so only their logits are computed (upstream computes
        // all B·T rows of the vocabulary-wide product and weights the others by 0: the same loss
        // and gradients, at about a quarter of the cost).
        let predicted = text.keep.eq(0).logical_and(&text.pad.ne(0));
        let rows = predicted.flatten(0, -1).nonzero().squeeze_dim(-1);
        let h = decoder.last().expect("at least one layer").flatten(0, 1).index_select(0, &rows);
        let logits = self.mlm.forward(&h.unsqueeze(0), text.token_embedding);
        let targets = text.ids.flatten(0, -1).index_select(0, &rows).unsqueeze(0);
        let (_, mtp) = losses::masked_prediction(&logits, &targets, &targets.ones_like(), c.label_smoothing);
        let (b, ch) = (quant.size()[0], quant.size()[1]);
        let projected = self.wrs.forward(&quant.reshape([b, ch, -1]).transpose(1, 2));
        let relation = losses::relationship_alignment(
            &projected,
            &vision.narrow(1, 1, vision.size()[1] - 1),
            text.tokens,
            &pad,
        );
        let total = &gsa * c.gsa_weight + &mtp * c.mtp_weight + &relation.loss * c.ras_weight;
        LgLosses { ras: relation.loss.shallow_clone(), gsa, mtp, total, vision, decoder, relation }
    }
}
