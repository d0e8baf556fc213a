//! CLIP's text tower (Radford et al. 2021) as LG-VQ runs it (`CLIP.encode_text` in
//! `taming/clip/model.py` of 623851394/LG-VQ-language-guided-codebook-learning@42c3ff1), loaded
//! from a user-supplied OpenAI state dict (`ViT-B-32.pt` names: `token_embedding.weight`,
//! `positional_embedding`, `transformer.resblocks.{i}.…`, `ln_final`, `text_projection`); its
//! weights cannot be fetched here.
//!
//! `x = E[ids] + P[:L]`, pre-LN residual blocks with QuickGELU and a causal mask (−∞ above the
//! diagonal), then `ln_final`. Token features are `ln_final(x)` (LG-VQ's `all_text_features`, not
//! projected); the sentence feature is the end token's row (the largest id, `argmax`) times
//! `text_projection` (LG-VQ's `last_text_feature`).

use std::collections::HashMap;

use tch::nn::{self, Init, Module};
use tch::{Kind, Tensor};

use super::{TextEncoder, TextFeatures};
use crate::lg::vision::ResidualBlock;

/// The sizes of a CLIP text tower, read off its state dict as OpenAI's `build_model` does
/// (`heads = width / 64` unless given).
#[derive(Clone, Debug, PartialEq)]
pub struct ClipTextConfig {
    pub vocab_size: i64,
    pub width: i64,
    pub heads: i64,
    pub layers: usize,
    pub context_length: i64,
    pub embed_dim: i64,
}

impl ClipTextConfig {
    /// From the shapes of `tensors` (OpenAI names), with `heads` when the width is not a
    /// multiple of 64.
    pub fn from_state_dict(tensors: &HashMap<String, Tensor>, heads: Option<i64>) -> Result<Self, String> {
        let shape = |k: &str| tensors.get(k).map(|t| t.size()).ok_or_else(|| format!("missing tensor `{k}`"));
        let tok = shape("token_embedding.weight")?;
        let proj = shape("text_projection")?;
        let pos = shape("positional_embedding")?;
        let layers = (0..)
            .take_while(|i| tensors.contains_key(&format!("transformer.resblocks.{i}.ln_1.weight")))
            .count();
        let width = tok[1];
        let heads = heads.unwrap_or(width / 64);
        if layers == 0 || heads < 1 || width % heads != 0 || proj[0] != width {
            return Err(format!(
                "not a CLIP text tower: width {width}, {layers} blocks, {heads} heads, text_projection {proj:?}"
            ));
        }
        Ok(Self { vocab_size: tok[0], width, heads, layers, context_length: pos[0], embed_dim: proj[1] })
    }
}

/// CLIP's text transformer.
#[derive(Debug)]
pub struct ClipText {
    pub config: ClipTextConfig,
    token_embedding: nn::Embedding,
    positional_embedding: Tensor,
    blocks: Vec<ResidualBlock>,
    ln_final: nn::LayerNorm,
    text_projection: Tensor,
}

impl ClipText {
    pub fn new(p: &nn::Path, config: ClipTextConfig) -> Self {
        let c = &config;
        Self {
            token_embedding: nn::embedding(p / "token_embedding", c.vocab_size, c.width, Default::default()),
            positional_embedding: p.var(
                "positional_embedding",
                &[c.context_length, c.width],
                Init::Const(0.0),
            ),
            blocks: (0..c.layers)
                .map(|i| ResidualBlock::new(p / "transformer" / "resblocks" / i, c.width, c.heads, c.layers))
                .collect(),
            ln_final: nn::layer_norm(p / "ln_final", vec![c.width], Default::default()),
            text_projection: p.var("text_projection", &[c.width, c.embed_dim], Init::Const(0.0)),
            config,
        }
    }

    /// The hidden state after the embeddings and after each block.
    ///
    /// # Shapes
    /// `ids: (B, L)`, `L ≤ context_length` → `layers + 1` tensors `(B, L, W)`
    pub fn hidden_states(&self, ids: &Tensor) -> Vec<Tensor> {
        let l = ids.size()[1];
        let x = self.token_embedding.forward(ids) + self.positional_embedding.narrow(0, 0, l);
        let mask = Tensor::full([l, l], f64::NEG_INFINITY, (Kind::Float, ids.device())).triu(1);
        let mut states = vec![x];
        for b in &self.blocks {
            let next = b.forward(states.last().expect("embeddings"), Some(&mask));
            states.push(next);
        }
        states
    }
}

impl TextEncoder for ClipText {
    fn name(&self) -> String {
        let c = &self.config;
        format!(
            "CLIP text tower ({} layers, width {}, vocab {}; end-token sentence feature)",
            c.layers, c.width, c.vocab_size
        )
    }
    fn dim(&self) -> i64 {
        self.config.width
    }
    fn token_embedding(&self) -> &Tensor {
        &self.token_embedding.ws
    }
    /// The attention mask is not needed: the causal mask already keeps every token from the
    /// padding after it, as in CLIP.
    fn encode(&self, ids: &Tensor, _attention_mask: &Tensor) -> TextFeatures {
        let tokens = self.hidden_states(ids).pop().expect("embeddings").apply(&self.ln_final);
        let eot = ids.argmax(-1, false);
        let b = ids.size()[0];
        let rows = tokens.index(&[Some(Tensor::arange(b, (Kind::Int64, ids.device()))), Some(eot)]);
        TextFeatures { sentence: rows.matmul(&self.text_projection), tokens }
    }
}
