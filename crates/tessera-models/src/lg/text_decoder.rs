//! LG-VQ's masked text decoder (spec §5.3; `taming/modules/transformer/decoder.py` of
//! 623851394/LG-VQ-language-guided-codebook-learning@42c3ff1, the `Decoder` built by
//! `maskTransformer`). Names are upstream's (`layers.{i}.self_attention.w_q`, `norm1.gamma`, …).
//!
//! Per layer, post-LN, no positional encoding:
//! `x = LN₁(x + drop(SelfAttn(x)))`, `x = LN₂(x + drop(CrossAttn(x, V)))`,
//! `x = LN₃(x + drop(W₂·drop(ReLU(W₁·x))))`, with LayerNorm's ε = 1e-12 and parameters `gamma`,
//! `beta`. Attention is upstream's own: separate `w_q`, `w_k`, `w_v`, `w_concat`, and masked scores
//! set to −10000.
//!
//! The self-attention's padding mask (spec §13.6): upstream builds it as
//! `pad[:, None, :] @ pad[:, None, :]ᵀ`, which is `(B, 1, 1)` (the count of tokens), never 0, so
//! nothing is masked and tokens attend to the (zeroed) padding slots. [`PadMask::Keys`] hides the
//! padding keys, as the code meant; [`PadMask::Reference`] keeps upstream's no-op.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// How the text decoder's self-attention treats padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMask {
    /// Padding keys are hidden from every token (what upstream's comment describes).
    #[default]
    Keys,
    /// LG-VQ's code: the (B, 1, 1) mask that masks nothing.
    Reference,
}

/// upstream's LayerNorm: `γ·(x − μ)/√(σ² + 1e-12) + β`, parameters `gamma` and `beta`.
#[derive(Debug)]
struct GammaBetaNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl GammaBetaNorm {
    fn new(p: nn::Path, d: i64) -> Self {
        Self { gamma: p.var("gamma", &[d], Init::Const(1.0)), beta: p.var("beta", &[d], Init::Const(0.0)) }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let d = self.gamma.size()[0];
        x.layer_norm([d], Some(&self.gamma), Some(&self.beta), 1e-12, false)
    }
}

/// `nn.Linear(i, o)` with the weight drawn from `N(0, std)` and torch's default bias.
fn linear(p: nn::Path, i: i64, o: i64, std: f64) -> nn::Linear {
    let bound = 1.0 / (i as f64).sqrt();
    nn::Linear {
        ws: p.var("weight", &[o, i], Init::Randn { mean: 0.0, stdev: std }),
        bs: Some(p.var("bias", &[o], Init::Uniform { lo: -bound, up: bound })),
    }
}

/// upstream's `MultiHeadAttention`.
#[derive(Debug)]
struct Attention {
    w_q: nn::Linear,
    w_k: nn::Linear,
    w_v: nn::Linear,
    w_concat: nn::Linear,
    heads: i64,
}

impl Attention {
    fn new(p: nn::Path, d: i64, heads: i64) -> Self {
        let std = (d as f64).powf(-0.5);
        Self {
            w_q: linear(&p / "w_q", d, d, std),
            w_k: linear(&p / "w_k", d, d, std),
            w_v: linear(&p / "w_v", d, d, std),
            w_concat: linear(&p / "w_concat", d, d, std),
            heads,
        }
    }

    /// # Shapes
    /// `x: (B, T, D)`, `kv: (B, S, D)`, `keep: (B, 1, 1, S)` (1 = attend) or none → `(B, T, D)`
    fn forward(&self, x: &Tensor, kv: &Tensor, keep: Option<&Tensor>) -> Tensor {
        let (b, t, d) = x.size3().expect("(B, T, D)");
        let s = kv.size()[1];
        let dh = d / self.heads;
        let split = |y: Tensor, n: i64| y.view([b, n, self.heads, dh]).transpose(1, 2);
        let q = split(x.apply(&self.w_q), t);
        let (k, v) = (split(kv.apply(&self.w_k), s), split(kv.apply(&self.w_v), s));
        let mut score = q.matmul(&k.transpose(-1, -2)) / (dh as f64).sqrt();
        if let Some(keep) = keep {
            score = score.masked_fill(&keep.eq(0), -10000.0);
        }
        let y = score.softmax(-1, Kind::Float).matmul(&v);
        y.transpose(1, 2).contiguous().view([b, t, d]).apply(&self.w_concat)
    }
}

#[derive(Debug)]
struct DecoderLayer {
    self_attention: Attention,
    norm1: GammaBetaNorm,
    enc_dec_attention: Attention,
    norm2: GammaBetaNorm,
    linear1: nn::Linear,
    linear2: nn::Linear,
    norm3: GammaBetaNorm,
}

impl DecoderLayer {
    fn new(p: nn::Path, d: i64, hidden: i64, heads: i64) -> Self {
        Self {
            self_attention: Attention::new(&p / "self_attention", d, heads),
            norm1: GammaBetaNorm::new(&p / "norm1", d),
            enc_dec_attention: Attention::new(&p / "enc_dec_attention", d, heads),
            norm2: GammaBetaNorm::new(&p / "norm2", d),
            linear1: linear(&p / "ffn" / "linear1", d, hidden, (hidden as f64).powf(-0.5)),
            linear2: linear(&p / "ffn" / "linear2", hidden, d, (d as f64).powf(-0.5)),
            norm3: GammaBetaNorm::new(&p / "norm3", d),
        }
    }

    fn forward(&self, x: &Tensor, vision: &Tensor, keep: Option<&Tensor>, drop: f64, train: bool) -> Tensor {
        let a = self.self_attention.forward(x, x, keep).dropout(drop, train);
        let x = self.norm1.forward(&(a + x));
        let c = self.enc_dec_attention.forward(&x, vision, None).dropout(drop, train);
        let x = self.norm2.forward(&(c + &x));
        let f = x.apply(&self.linear1).relu().dropout(drop, train).apply(&self.linear2).dropout(drop, train);
        self.norm3.forward(&(f + &x))
    }
}

/// The masked text decoder: text features (masked ones replaced) read the vision tokens.
#[derive(Debug)]
pub struct MaskedTextDecoder {
    layers: Vec<DecoderLayer>,
    dropout: f64,
    pad_mask: PadMask,
}

impl MaskedTextDecoder {
    pub fn new(
        p: &nn::Path,
        d: i64,
        hidden: i64,
        heads: i64,
        layers: usize,
        dropout: f64,
        pad_mask: PadMask,
    ) -> Self {
        Self {
            layers: (0..layers).map(|i| DecoderLayer::new(p / "layers" / i, d, hidden, heads)).collect(),
            dropout,
            pad_mask,
        }
    }

    /// Each layer's output (the last is the decoder's).
    ///
    /// # Shapes
    /// `text: (B, T, D)`, `vision: (B, N + 1, D)`, `pad: (B, T)` (1 = token) → `layers × (B, T, D)`
    pub fn forward_all(&self, text: &Tensor, vision: &Tensor, pad: &Tensor, train: bool) -> Vec<Tensor> {
        let keep = match self.pad_mask {
            PadMask::Keys => Some(pad.view([pad.size()[0], 1, 1, pad.size()[1]])),
            PadMask::Reference => None,
        };
        let mut outs: Vec<Tensor> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let x = outs.last().unwrap_or(text);
            let y = layer.forward(x, vision, keep.as_ref(), self.dropout, train);
            outs.push(y);
        }
        outs
    }
}
