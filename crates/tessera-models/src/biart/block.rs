//! One BiART transformer layer in either of two styles, chosen by [`BiartConfig`] options:
//!
//! - minGPT (spec §1.6; the defaults): `x += attn(ln1(x)); x += mlp(ln2(x))`, `mlp` =
//!   `Linear(C, m·C) → GELU → Linear(m·C, C)`, q/k/v projection with bias, dropout on the attention
//!   probabilities and on both branch outputs.
//! - Bi-directional DALL-E (spec §3.2; upstream `dalle_pytorch/transformer.py` and `attention.py`
//!   of wcshin-git/Bidirectional_DALLE@2f16503fdeb9a245c1cf9cd2a23466fc6953ecb5):
//!   `x += γ₁ ⊙ attn(ln1(x)); x += γ₂ ⊙ ff(ln2(x))` (`LayerScale(PreNorm(f))`), with
//!   `ff` = `Linear(C, 2·m·C) → GEGLU → Dropout → Linear(m·C, C)`, `GEGLU(a ‖ g) = a ⊙ GELU(g)`,
//!   `to_qkv` without bias, dropout only after the attention's output projection and inside the
//!   feed-forward.
//!
//! The pre-LN placement is the same in both: upstream's `PreNorm` normalises the branch input and
//! `LayerScale` scales the branch output, so only γ is added.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use super::masks::AttnType;
use super::BiartConfig;

/// Feed-forward of every block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedForward {
    /// minGPT: `Linear(C, m·C) → GELU → Linear(m·C, C)`.
    GeluMlp,
    /// Bi-DALL-E: `Linear(C, 2·m·C) → GEGLU → Linear(m·C, C)`, where the first half of the wide
    /// projection is the value and the second half the gate: `a ⊙ GELU(g)` (exact, erf GELU).
    Geglu,
}

/// Where `dropout` is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropoutSites {
    /// minGPT: the embeddings, the attention probabilities, and each branch output (after the
    /// attention projection and after the feed-forward's output projection).
    #[serde(rename = "mingpt")]
    MinGpt,
    /// Bi-DALL-E: after the attention's output projection (`to_out = Linear, Dropout`) and on the
    /// feed-forward's hidden layer (after GELU/GEGLU, before the output projection); none on the
    /// embeddings or the attention probabilities.
    Dalle,
}

/// LayerScale's initial γ for the block at 1-based index `layer` (Touvron et al. 2021,
/// arXiv 2103.17239), as upstream `LayerScale(dim, ind + 1, …)` in `dalle_pytorch/transformer.py`
/// @2f16503: 0.1 for layers 1–18, 1e-5 for 19–24, 1e-6 beyond. The index is the layer's own
/// position, not the model depth, so every layer of an 8-layer model starts at 0.1.
pub fn layer_scale_init(layer: usize) -> f64 {
    match layer {
        0..=18 => 0.1,
        19..=24 => 1e-5,
        _ => 1e-6,
    }
}

pub(super) fn linear(p: nn::Path, i: usize, o: usize, bias: bool) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 },
        bs_init: bias.then_some(nn::Init::Const(0.0)),
        bias,
    };
    nn::linear(p, i as i64, o as i64, cfg)
}

pub(super) fn layer_norm(p: nn::Path, n: usize) -> nn::LayerNorm {
    nn::layer_norm(p, vec![n as i64], Default::default())
}

/// Keys and values of every layer for the positions processed so far, in buffers allocated once
/// for the whole sequence, so each step writes its new rows in place instead of copying the cache.
#[derive(Default)]
pub struct KvCache {
    pub(super) layers: Vec<Option<(Tensor, Tensor)>>,
    pub(super) len: i64,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> i64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One layer's slot in a [`KvCache`]: its buffers, where the new keys go, and the buffer length.
pub(super) struct CacheSlot<'a> {
    pub kv: &'a mut Option<(Tensor, Tensor)>,
    pub start: i64,
    pub capacity: i64,
}

/// Causal multi-head self-attention with a fused qkv projection (bias optional).
#[derive(Debug)]
struct SelfAttention {
    qkv: nn::Linear,
    proj: nn::Linear,
    n_head: i64,
    head_dim: i64,
    dropout: f64,
    prob_dropout: bool,
}

impl SelfAttention {
    fn new(p: nn::Path, c: &BiartConfig) -> Self {
        let inner = c.n_head * c.head_dim;
        Self {
            qkv: linear(&p / "qkv", c.n_embd, 3 * inner, c.qkv_bias),
            proj: linear(&p / "proj", inner, c.n_embd, true),
            n_head: c.n_head as i64,
            head_dim: c.head_dim as i64,
            dropout: c.dropout,
            prob_dropout: c.dropout_sites == DropoutSites::MinGpt,
        }
    }

    /// `dropout(proj(softmax(q·kᵀ/√d + mask)·v))` over the cached keys plus the new ones. The qkv
    /// output is laid out `(3, H, D)` per position, as upstream's `to_qkv(x).chunk(3)` followed by
    /// `'b n (h d) -> b h n d'`.
    ///
    /// # Shapes
    /// `x: (B, t, C)`, `mask: (B, 1, t, T)` bool (T = cached + t), `cache`: `(B, H, T−t, D)` each
    /// → `(B, t, C)`
    fn forward(&self, x: &Tensor, mask: &Tensor, cache: Option<CacheSlot>, train: bool) -> Tensor {
        let (b, t, _) = x.size3().expect("(B, t, C)");
        let qkv = self.qkv.forward(x).view([b, t, 3, self.n_head, self.head_dim]).permute([2, 0, 3, 1, 4]);
        let (q, mut k, mut v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        if let Some(CacheSlot { kv, start, capacity }) = cache {
            let (kb, vb) = kv.get_or_insert_with(|| {
                let shape = [b, self.n_head, capacity, self.head_dim];
                (Tensor::zeros(shape, (k.kind(), k.device())), Tensor::zeros(shape, (v.kind(), v.device())))
            });
            kb.narrow(2, start, t).copy_(&k);
            vb.narrow(2, start, t).copy_(&v);
            k = kb.narrow(2, 0, start + t);
            v = vb.narrow(2, 0, start + t);
        }
        let p = if train && self.prob_dropout { self.dropout } else { 0.0 };
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), p, false, None, false);
        let y = self.proj.forward(&y.transpose(1, 2).contiguous().view([b, t, self.n_head * self.head_dim]));
        y.dropout(self.dropout, train)
    }
}

/// The feed-forward branch: GELU MLP or GEGLU, with the dropout site of [`DropoutSites`].
#[derive(Debug)]
struct Mlp {
    fc: nn::Linear,
    proj: nn::Linear,
    kind: FeedForward,
    dropout: f64,
    sites: DropoutSites,
}

impl Mlp {
    fn new(p: nn::Path, c: &BiartConfig) -> Self {
        let hidden = c.ff_mult * c.n_embd;
        let wide = match c.feed_forward {
            FeedForward::GeluMlp => hidden,
            FeedForward::Geglu => 2 * hidden,
        };
        Self {
            fc: linear(&p / "fc", c.n_embd, wide, true),
            proj: linear(&p / "proj", hidden, c.n_embd, true),
            kind: c.feed_forward,
            dropout: c.dropout,
            sites: c.dropout_sites,
        }
    }

    /// GELU MLP `W₂·GELU(W₁x + b₁) + b₂`, or GEGLU `W₂·(a ⊙ GELU(g)) + b₂` with `[a ‖ g] = W₁x + b₁`.
    ///
    /// # Shapes
    /// `x: (B, t, C)` → `(B, t, C)`; hidden `(B, t, m·C)`
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.fc.forward(x);
        let h = match self.kind {
            FeedForward::GeluMlp => h.gelu("none"),
            FeedForward::Geglu => {
                let half = h.size()[2] / 2;
                h.narrow(2, 0, half) * h.narrow(2, half, half).gelu("none")
            }
        };
        match self.sites {
            DropoutSites::MinGpt => self.proj.forward(&h).dropout(self.dropout, train),
            DropoutSites::Dalle => self.proj.forward(&h.dropout(self.dropout, train)),
        }
    }
}

/// Pre-LN transformer block, with optional LayerScale:
/// `x += γ₁ ⊙ attn(ln1(x)); x += γ₂ ⊙ mlp(ln2(x))` (γ = 1 without LayerScale).
/// Parameter names: `ln1`, `attn.qkv`, `attn.proj`, `ln2`, `mlp.fc`, `mlp.proj`, and with
/// LayerScale `ls1`, `ls2` (each `(C,)`, upstream's `(1, 1, C)` `scale`).
#[derive(Debug)]
pub(super) struct Block {
    ln1: nn::LayerNorm,
    attn: SelfAttention,
    ln2: nn::LayerNorm,
    mlp: Mlp,
    scales: Option<(Tensor, Tensor)>,
    pub kind: AttnType,
}

impl Block {
    /// Block number `index` (0-based; LayerScale's γ starts at [`layer_scale_init`]`(index + 1)`).
    pub fn new(p: nn::Path, c: &BiartConfig, kind: AttnType, index: usize) -> Self {
        let scales = c.layer_scale.then(|| {
            let init = nn::Init::Const(layer_scale_init(index + 1));
            (p.var("ls1", &[c.n_embd as i64], init), p.var("ls2", &[c.n_embd as i64], init))
        });
        Self {
            ln1: layer_norm(&p / "ln1", c.n_embd),
            attn: SelfAttention::new(&p / "attn", c),
            ln2: layer_norm(&p / "ln2", c.n_embd),
            mlp: Mlp::new(&p / "mlp", c),
            scales,
            kind,
        }
    }

    /// # Shapes
    /// `x: (B, t, C)`, `mask: (B, 1, t, T)` bool → `(B, t, C)`
    pub fn forward(&self, x: &Tensor, mask: &Tensor, cache: Option<CacheSlot>, train: bool) -> Tensor {
        let a = self.attn.forward(&self.ln1.forward(x), mask, cache, train);
        let x = match &self.scales {
            Some((g1, _)) => x + a * g1,
            None => x + a,
        };
        let f = self.mlp.forward(&self.ln2.forward(&x), train);
        match &self.scales {
            Some((_, g2)) => &x + f * g2,
            None => &x + f,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::rng_lock;
    use super::super::{Biart, BiartConfig, Direction};
    use super::*;
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    fn dalle(c: BiartConfig) -> BiartConfig {
        c.with_bidalle_blocks()
    }

    /// Every parameter's shape, by name.
    fn shapes(c: BiartConfig) -> std::collections::HashMap<String, Vec<i64>> {
        let vs = VarStore::new(Device::Cpu);
        Biart::new(&vs.root(), c).unwrap();
        vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect()
    }

    #[test]
    fn options_change_exactly_the_parameters_they_name() {
        let _rng = rng_lock();
        let base = BiartConfig::reference_fixture();
        let mingpt = shapes(base.clone());
        assert_eq!(mingpt["blocks.0.attn.qkv.bias"], [48]);
        assert_eq!(mingpt["blocks.0.mlp.fc.weight"], [64, 16]);
        assert!(!mingpt.contains_key("blocks.0.ls1") && !mingpt.contains_key("head.bias"));

        let d = shapes(dalle(base.clone()));
        // GEGLU: the first projection is twice the hidden width; the second reads the hidden width.
        assert_eq!(d["blocks.3.mlp.fc.weight"], [128, 16]);
        assert_eq!(d["blocks.3.mlp.fc.bias"], [128]);
        assert_eq!(d["blocks.3.mlp.proj.weight"], [16, 64]);
        assert_eq!(d["blocks.3.ls1"], [16]);
        assert_eq!(d["blocks.3.ls2"], [16]);
        assert_eq!(d["head.bias"], [22]);
        assert!(!d.contains_key("blocks.0.attn.qkv.bias"));
        // Two LayerScale vectors per block plus the head bias, minus one qkv bias per block.
        assert_eq!(d.len(), mingpt.len() + 4 * 2 + 1 - 4);
        let wide = shapes(BiartConfig { ff_mult: 2, ..dalle(base) });
        assert_eq!(wide["blocks.0.mlp.fc.weight"], [64, 16]);
        assert_eq!(wide["blocks.0.mlp.proj.weight"], [16, 32]);
    }

    /// With `dropout = 1` in training, minGPT's sites zero both branch outputs (each block is the
    /// identity), while Bi-DALL-E's sites zero the attention output and the feed-forward's hidden
    /// layer, so each block adds `γ₂ ⊙ b₂` (the output projection's bias, scaled).
    #[test]
    fn dropout_sites_are_where_the_option_says() {
        let _rng = rng_lock();
        let x = Tensor::randn([2, 15, 16], (Kind::Float, Device::Cpu));
        let text = Tensor::from_slice(&[1i64, 5, 6, 2, 0, 0, 1, 7, 8, 5, 6, 2]).view([2, 6]);
        for sites in [DropoutSites::MinGpt, DropoutSites::Dalle] {
            let vs = VarStore::new(Device::Cpu);
            let cfg =
                BiartConfig { dropout: 1.0, dropout_sites: sites, ..dalle(BiartConfig::reference_fixture()) };
            let m = Biart::new(&vs.root(), cfg).unwrap();
            tch::no_grad(|| {
                for (name, mut v) in vs.variables() {
                    if name.ends_with("mlp.proj.bias") {
                        let _ = v.fill_(0.5);
                    }
                }
            });
            let keep = m.key_keep(Direction::T2i, &text);
            let y = tch::no_grad(|| m.blocks_forward(&x, Direction::T2i, &keep, true));
            let added = match sites {
                DropoutSites::MinGpt => 0.0,
                DropoutSites::Dalle => 4.0 * 0.1 * 0.5,
            };
            let err = (y - &x - added).abs().max().double_value(&[]);
            assert!(err < 1e-5, "{sites:?}: {err}");
            // Out of training nothing is dropped and the blocks do change x.
            let y = tch::no_grad(|| m.blocks_forward(&x, Direction::T2i, &keep, false));
            assert!((y - &x - added).abs().max().double_value(&[]) > 1e-3, "{sites:?}");
        }
    }

    #[test]
    fn layer_scale_multiplies_each_branch() {
        let _rng = rng_lock();
        // γ = 0 turns every block into the identity; γ = 1 equals the model without LayerScale.
        let x = Tensor::randn([1, 15, 16], (Kind::Float, Device::Cpu));
        let keep = Tensor::ones([1, 15], (Kind::Bool, Device::Cpu));
        let plain_vs = VarStore::new(Device::Cpu);
        let plain = Biart::new(&plain_vs.root(), BiartConfig::reference_fixture()).unwrap();
        let scaled_vs = VarStore::new(Device::Cpu);
        let cfg = BiartConfig { layer_scale: true, ..BiartConfig::reference_fixture() };
        let scaled = Biart::new(&scaled_vs.root(), cfg).unwrap();
        let set_scales = |vs: &VarStore, value: f64| {
            tch::no_grad(|| {
                for (name, mut v) in vs.variables() {
                    if name.ends_with(".ls1") || name.ends_with(".ls2") {
                        let _ = v.fill_(value);
                    }
                }
            })
        };
        tch::no_grad(|| {
            let from = plain_vs.variables();
            for (name, mut v) in scaled_vs.variables() {
                if let Some(src) = from.get(&name) {
                    v.copy_(src);
                }
            }
        });
        let run = |m: &Biart| tch::no_grad(|| m.blocks_forward(&x, Direction::I2t, &keep, false));
        set_scales(&scaled_vs, 1.0);
        let diff = (run(&scaled) - run(&plain)).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "γ = 1: {diff}");
        set_scales(&scaled_vs, 0.0);
        assert_eq!((run(&scaled) - &x).abs().max().double_value(&[]), 0.0);
    }
}
