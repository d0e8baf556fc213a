//! LG-VQ's `quantTransformer` (spec §5.3; `taming/clip/model.py:244-296` of
//! 623851394/LG-VQ-language-guided-codebook-learning@42c3ff1): CLIP's vision transformer without
//! its patch convolution, over the straight-through codes. Names are upstream's.
//!
//! `x = [cls; flatten(quant)ᵀ] + pos`, `x = ln_pre(x)`, then per block (pre-LN, CLIP's
//! `ResidualAttentionBlock`) `x += MHA(ln_1(x))`, `x += c_proj(QuickGELU(c_fc(ln_2(x))))`, and
//! `V = ln_post(x)·proj`. `QuickGELU(x) = x·σ(1.702x)`. The attention is torch's
//! `nn.MultiheadAttention` (`in_proj_weight` = `[W_q; W_k; W_v]`, `out_proj`), without a mask or
//! dropout.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// torch's `nn.MultiheadAttention(width, heads)` with its parameter layout, no mask, no dropout.
#[derive(Debug)]
pub(crate) struct TorchMha {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    heads: i64,
}

impl TorchMha {
    /// CLIP's init: `in_proj_weight ~ N(0, width^-½)`, `out_proj.weight ~ N(0, out_std)`, zero biases.
    pub(crate) fn new(p: nn::Path, width: i64, heads: i64, out_std: f64) -> Self {
        let std = (width as f64).powf(-0.5);
        let out_proj = nn::Linear {
            ws: (&p / "out_proj").var("weight", &[width, width], Init::Randn { mean: 0.0, stdev: out_std }),
            bs: Some((&p / "out_proj").var("bias", &[width], Init::Const(0.0))),
        };
        Self {
            in_proj_weight: p.var(
                "in_proj_weight",
                &[3 * width, width],
                Init::Randn { mean: 0.0, stdev: std },
            ),
            in_proj_bias: p.var("in_proj_bias", &[3 * width], Init::Const(0.0)),
            out_proj,
            heads,
        }
    }

    /// # Shapes
    /// `x: (B, N, W)`, `mask: (N, N)` added to the scores (CLIP's text tower: −∞ above the
    /// diagonal) → `(B, N, W)`
    pub(crate) fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let (b, n, w) = x.size3().expect("(B, N, W)");
        let dh = w / self.heads;
        let qkv = x.linear(&self.in_proj_weight, Some(&self.in_proj_bias));
        let heads = |t: &Tensor| t.view([b, n, self.heads, dh]).transpose(1, 2);
        let parts = qkv.chunk(3, -1);
        let (q, k, v) = (heads(&parts[0]), heads(&parts[1]), heads(&parts[2]));
        let mut scores = q.matmul(&k.transpose(-1, -2)) / (dh as f64).sqrt();
        if let Some(m) = mask {
            scores += m;
        }
        let att = scores.softmax(-1, Kind::Float);
        att.matmul(&v).transpose(1, 2).contiguous().view([b, n, w]).apply(&self.out_proj)
    }
}

fn layer_norm(p: nn::Path, w: i64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![w], Default::default())
}

/// CLIP's `ResidualAttentionBlock` (its vision and text transformers).
#[derive(Debug)]
pub(crate) struct ResidualBlock {
    attn: TorchMha,
    ln_1: nn::LayerNorm,
    c_fc: nn::Linear,
    c_proj: nn::Linear,
    ln_2: nn::LayerNorm,
}

impl ResidualBlock {
    pub(crate) fn new(p: nn::Path, width: i64, heads: i64, layers: usize) -> Self {
        let proj_std = (width as f64).powf(-0.5) * ((2 * layers) as f64).powf(-0.5);
        let fc_std = (2.0 * width as f64).powf(-0.5);
        let linear = |p: nn::Path, i: i64, o: i64, std: f64| {
            let bound = 1.0 / (i as f64).sqrt();
            nn::Linear {
                ws: p.var("weight", &[o, i], Init::Randn { mean: 0.0, stdev: std }),
                bs: Some(p.var("bias", &[o], Init::Uniform { lo: -bound, up: bound })),
            }
        };
        Self {
            attn: TorchMha::new(&p / "attn", width, heads, proj_std),
            ln_1: layer_norm(&p / "ln_1", width),
            c_fc: linear(&p / "mlp" / "c_fc", width, 4 * width, fc_std),
            c_proj: linear(&p / "mlp" / "c_proj", 4 * width, width, proj_std),
            ln_2: layer_norm(&p / "ln_2", width),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let x = x + self.attn.forward(&x.apply(&self.ln_1), mask);
        let h = x.apply(&self.ln_2).apply(&self.c_fc);
        let h = &h * (&h * 1.702).sigmoid();
        &x + h.apply(&self.c_proj)
    }
}

/// The vision tokens of LG-VQ: a global token and one per code.
#[derive(Debug)]
pub struct QuantTransformer {
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: nn::LayerNorm,
    blocks: Vec<ResidualBlock>,
    ln_post: nn::LayerNorm,
    proj: Tensor,
}

impl QuantTransformer {
    /// `codes` positions (`grid²` upstream), code width `width`, output width `out_dim` (the text
    /// encoder's).
    pub fn new(p: &nn::Path, codes: i64, width: i64, layers: usize, heads: i64, out_dim: i64) -> Self {
        let small = Init::Randn { mean: 0.0, stdev: 0.01 };
        Self {
            class_embedding: p.var("class_embedding", &[width], small),
            positional_embedding: p.var("positional_embedding", &[codes + 1, width], small),
            ln_pre: layer_norm(p / "ln_pre", width),
            blocks: (0..layers)
                .map(|i| ResidualBlock::new(p / "transformer" / "resblocks" / i, width, heads, layers))
                .collect(),
            ln_post: layer_norm(p / "ln_post", width),
            proj: p.var("proj", &[width, out_dim], small),
        }
    }

    /// `V`: row 0 is the global image token, rows `1..` the codes in raster order.
    ///
    /// # Shapes
    /// `quant: (B, C, h, w)` with `C = width`, `h·w = codes` → `(B, codes + 1, out_dim)`
    pub fn forward(&self, quant: &Tensor) -> Tensor {
        let (b, c) = (quant.size()[0], quant.size()[1]);
        let x = quant.reshape([b, c, -1]).transpose(1, 2);
        let cls = self.class_embedding.view([1, 1, c]).expand([b, 1, c], false);
        let mut x = (Tensor::cat(&[cls, x], 1) + &self.positional_embedding).apply(&self.ln_pre);
        for block in &self.blocks {
            x = block.forward(&x, None);
        }
        x.apply(&self.ln_post).matmul(&self.proj)
    }
}
