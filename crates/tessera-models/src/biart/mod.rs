//! BiART: one GPT over caption tokens and image codes that writes images from text (t2i) and
//! text from images (i2t).
//!
//! It joins two designs (spec §1.6, §3, §4.7):
//! - minGPT blocks by default (pre-LN, causal multi-head attention, 4× MLP with GELU, final
//!   LayerNorm, head without bias; taming's stage 2, spec §1.6), or Bi-DALL-E's blocks (GEGLU,
//!   LayerScale, `to_qkv` without bias, its dropout sites, head with bias; spec §3.2) through the
//!   options of [`block`];
//! - L-Verse's **segment embedding**: `x = tok_emb(id) + seg_emb(seg) + pos`, with segment 0 for
//!   the condition and 1 for the generation target (spec §4.7), so the same modality carries a
//!   different segment in each direction;
//! - Bi-directional DALL-E's sequences, logit masks, unique pad tokens, per-layer attention types
//!   and modality-weighted loss (spec §3.1–§3.3).
//!
//! # Vocabulary
//! One table: text ids `[0, Vt)`, then `Lt` pad slots `[Vt, Vt+Lt)` (Bi-DALL-E replaces the
//! `[PAD]` at text position `p` by `Vt+p`, spec §3.1), then image codes `[Vt+Lt, Vt+Lt+K)`. The head
//! scores the whole table; the logit mask leaves text ids at text-predicting positions and image
//! ids at image-predicting positions, so pad slots are never emitted.
//!
//! # Positions
//! Text positions use a learned table indexed 0..Lt in both directions (as Bi-DALL-E's shared
//! `text_pos_emb`, spec §13.4); image positions use Bi-DALL-E's fixed 2-D sinusoid or a learned
//! axial table (row + column), per code grid ([`positions`]).

pub mod block;
mod features;
pub mod masks;
mod positions;
pub mod sample;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use block::{layer_norm, linear, Block, CacheSlot};
pub use block::{layer_scale_init, DropoutSites, FeedForward, KvCache};
pub use masks::{AttnType, Direction, Geometry};
use positions::ImagePos;
pub use positions::{fixed_2d_positions, ImagePositions};

/// Text ids the model relies on: the BPE tokenizer's specials (spec §3.1, `tessera_data::text`).
pub const PAD: i64 = 0;
pub const CLS: i64 = 1;
pub const SEP: i64 = 2;

/// How `[PAD]` text tokens enter the model. Pad keys are hidden from attention in both modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadTokens {
    /// Bi-DALL-E: the pad at text position `p` becomes its own token `Vt + p` (spec §3.1).
    Unique,
    /// One shared `[PAD]` embedding.
    Shared,
}

/// `[model]` of a generator run. Defaults are Bi-DALL-E's MNIST64x64 run size (spec §3.2, §3.4)
/// with minGPT blocks, L-Verse's segment embedding and full attention; `feed_forward = "geglu"`,
/// `layer_scale = true`, `qkv_bias = false`, `dropout_sites = "dalle"` and `head_bias = true`
/// give Bi-DALL-E's blocks and head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BiartConfig {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// Width of one attention head (Bi-DALL-E: 64; heads·head_dim need not equal n_embd).
    pub head_dim: usize,
    /// Text vocabulary size; 0 = take it from the run's tokenizer.
    pub text_vocab: usize,
    /// Text tokens per sequence, `[CLS] … [SEP] [PAD]…`.
    pub text_len: usize,
    /// Image codebook size; 0 = take it from the tokenizer run.
    pub image_vocab: usize,
    /// Side of the (first) code grid; 0 = take it from the tokenizer run.
    pub image_side: usize,
    /// Sides of the further square grids that follow the first one in every image's codes
    /// (AugVAE-ML's coarser levels, spec §4.1); empty for one grid. Taken from the tokenizer run.
    pub coarser_sides: Vec<usize>,
    pub image_positions: ImagePositions,
    pub pad_tokens: PadTokens,
    /// Attention types, cycled over the layers (spec §3.2).
    pub attn_types: Vec<AttnType>,
    /// Neighbourhood of `conv_like` layers.
    pub conv_kernel: usize,
    /// Add the segment embedding (L-Verse). Off = Bi-DALL-E, where only order and masks tell the
    /// directions apart.
    pub segment_embedding: bool,
    /// Weight of the target modality's cross-entropy (spec §3.3).
    pub loss_weight: f64,
    pub dropout: f64,
    /// Where `dropout` acts: minGPT's sites or Bi-DALL-E's (see [`DropoutSites`]).
    pub dropout_sites: DropoutSites,
    /// Feed-forward of every block: minGPT's GELU MLP or Bi-DALL-E's GEGLU.
    pub feed_forward: FeedForward,
    /// Feed-forward hidden width as a multiple of `n_embd` (4 in both; GEGLU's first projection
    /// is twice as wide).
    pub ff_mult: usize,
    /// LayerScale: a learned per-channel γ on each branch output, `x += γ ⊙ f(LN(x))`, initialised
    /// by layer index ([`layer_scale_init`]; Bi-DALL-E).
    pub layer_scale: bool,
    /// Bias on the fused q/k/v projection (minGPT: yes; Bi-DALL-E's `to_qkv`: no).
    pub qkv_bias: bool,
    /// Bias on the output head (minGPT: no; Bi-DALL-E's `to_logits` Linear: yes).
    pub head_bias: bool,
}

impl Default for BiartConfig {
    fn default() -> Self {
        Self {
            n_layer: 8,
            n_head: 8,
            n_embd: 256,
            head_dim: 64,
            text_vocab: 0,
            text_len: 50,
            image_vocab: 0,
            image_side: 0,
            coarser_sides: vec![],
            image_positions: ImagePositions::Fixed,
            pad_tokens: PadTokens::Unique,
            attn_types: vec![AttnType::Full],
            conv_kernel: 5,
            segment_embedding: true,
            loss_weight: 7.0,
            dropout: 0.0,
            dropout_sites: DropoutSites::MinGpt,
            feed_forward: FeedForward::GeluMlp,
            ff_mult: 4,
            layer_scale: false,
            qkv_bias: true,
            head_bias: false,
        }
    }
}

impl BiartConfig {
    /// The toy model of `reference/biart_reference.py`'s fixture (tests and `bench --config tiny`):
    /// 4 layers of 16, 2 heads of 8, text 9 ids × 6, image 7 codes on 3×3, one layer of each
    /// attention type, kernel 3.
    pub fn reference_fixture() -> Self {
        Self {
            n_layer: 4,
            n_head: 2,
            n_embd: 16,
            head_dim: 8,
            text_vocab: 9,
            text_len: 6,
            image_vocab: 7,
            image_side: 3,
            attn_types: vec![AttnType::Full, AttnType::AxialRow, AttnType::AxialCol, AttnType::ConvLike],
            conv_kernel: 3,
            ..Self::default()
        }
    }

    /// These settings with Bi-DALL-E's blocks and head (wcshin-git/Bidirectional_DALLE@2f16503,
    /// `dalle_pytorch/transformer.py`): GEGLU feed-forward, LayerScale, `to_qkv` without bias, its
    /// dropout sites and a biased `to_logits`.
    pub fn with_bidalle_blocks(self) -> Self {
        Self {
            feed_forward: FeedForward::Geglu,
            layer_scale: true,
            qkv_bias: false,
            dropout_sites: DropoutSites::Dalle,
            head_bias: true,
            ..self
        }
    }

    /// Every code grid's side, in sequence order.
    pub fn image_sides(&self) -> Vec<usize> {
        std::iter::once(self.image_side).chain(self.coarser_sides.iter().copied()).collect()
    }
    pub fn geometry(&self) -> Geometry {
        Geometry { text_len: self.text_len, sides: self.image_sides(), kernel: self.conv_kernel }
    }
    /// First image id in the shared table.
    pub fn image_offset(&self) -> i64 {
        (self.text_vocab + self.text_len) as i64
    }
    pub fn vocab_size(&self) -> i64 {
        self.image_offset() + self.image_vocab as i64
    }
    /// A config a model can be built from: every range ([`tessera_core::Validate`]) and the
    /// sizes that come from the tokenizers set.
    pub fn check(&self) -> Result<(), String> {
        tessera_core::Validate::validate(self)?;
        if self.text_vocab < 5 || self.image_vocab == 0 || self.image_side == 0 {
            return Err(
                "[model] text_vocab, image_vocab and image_side must be set (they come from the tokenizers)"
                    .into(),
            );
        }
        Ok(())
    }
}

impl tessera_core::Validate for BiartConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        let from_tok = "0 = taken from the tokenizers";
        c.int("text_vocab", self.text_vocab, 0, 1 << 20, from_tok);
        c.int("image_vocab", self.image_vocab, 0, 1 << 18, from_tok);
        c.int("image_side", self.image_side, 0, 256, from_tok);
        c.int("coarser_sides.len()", self.coarser_sides.len(), 0, 7, "further code grids");
        for (i, s) in self.coarser_sides.iter().enumerate() {
            c.int(&format!("coarser_sides[{i}]"), *s, 1, 256, "");
        }
        c.int("text_len", self.text_len, 2, 4096, "room for [CLS] and [SEP]");
        c.int("n_layer", self.n_layer, 1, 256, "");
        c.int("n_head", self.n_head, 1, 256, "");
        c.int("head_dim", self.head_dim, 1, 1024, "");
        c.int("n_embd", self.n_embd, 1, 16384, "");
        c.int("ff_mult", self.ff_mult, 1, 64, "");
        c.int(
            "attn_types.len()",
            self.attn_types.len(),
            1,
            256,
            "one entry at least; layers cycle through them",
        );
        c.int("conv_kernel", self.conv_kernel, 1, 63, "odd");
        c.rule(self.conv_kernel % 2 == 1, "conv_kernel", format_args!("= {}: must be odd", self.conv_kernel));
        c.weight("loss_weight", self.loss_weight);
        c.float("dropout", self.dropout, 0.0, 1.0, "");
    }
}

/// The two cross-entropies of one direction and their weighted mean (spec §3.3).
#[derive(Debug)]
pub struct LossParts {
    /// `(L_cond + w·L_target)/(1 + w)`.
    pub total: Tensor,
    /// Cross-entropy of the condition's tokens (text in t2i, image in i2t).
    pub condition: Tensor,
    /// Cross-entropy of the target's tokens.
    pub target: Tensor,
}

/// The BiART model. Parameter names: `tok_emb`, `seg_emb`, `text_pos_emb`,
/// `image_pos_{row,col}` (learned positions only), `blocks.{i}.{ln1,attn.qkv,attn.proj,ln2,mlp.fc,mlp.proj}`,
/// `blocks.{i}.{ls1,ls2}` (LayerScale only), `ln_f`, `head`.
#[derive(Debug)]
pub struct Biart {
    pub config: BiartConfig,
    pub geometry: Geometry,
    tok_emb: nn::Embedding,
    seg_emb: Option<nn::Embedding>,
    text_pos: Tensor,
    image_pos: ImagePos,
    blocks: Vec<Block>,
    ln_f: nn::LayerNorm,
    head: nn::Linear,
    /// `(L, L)` allowed-attention masks per (type, direction).
    attn_masks: HashMap<(AttnType, Direction), Tensor>,
    /// `(L, V)` additive logit masks per direction (0 or −∞).
    logit_masks: HashMap<Direction, Tensor>,
    /// `(L,)` segment ids per direction.
    segments: HashMap<Direction, Tensor>,
}

impl Biart {
    pub fn new(p: &nn::Path, config: BiartConfig) -> Result<Self, String> {
        config.check()?;
        let c = config.n_embd as i64;
        let emb = |name: &str, n: i64| {
            nn::embedding(
                p / name,
                n,
                c,
                nn::EmbeddingConfig {
                    ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 },
                    ..Default::default()
                },
            )
        };
        let tok_emb = emb("tok_emb", config.vocab_size());
        let seg_emb = config.segment_embedding.then(|| emb("seg_emb", 2));
        let text_pos =
            p.var("text_pos_emb", &[config.text_len as i64, c], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let image_pos = ImagePos::new(p, config.image_positions, &config.image_sides(), config.n_embd);
        let blocks = (0..config.n_layer)
            .map(|i| Block::new(p / "blocks" / i, &config, config.attn_types[i % config.attn_types.len()], i))
            .collect();
        let ln_f = layer_norm(p / "ln_f", config.n_embd);
        let head = linear(p / "head", config.n_embd, config.vocab_size() as usize, config.head_bias);
        let geometry = config.geometry();
        let mut attn_masks = HashMap::new();
        let mut logit_masks = HashMap::new();
        let mut segments = HashMap::new();
        for dir in Direction::BOTH {
            let ids: Vec<i64> = (0..geometry.total()).map(|p| geometry.segment(dir, p)).collect();
            segments.insert(dir, Tensor::from_slice(&ids).to_device(p.device()));
            for kind in config.attn_types.iter().copied() {
                attn_masks
                    .entry((kind, dir))
                    .or_insert_with(|| geometry.attention_mask(kind, dir, p.device()));
            }
            logit_masks.insert(dir, Self::logit_mask(&config, dir).to_device(p.device()));
        }
        Ok(Self {
            config,
            geometry,
            tok_emb,
            seg_emb,
            text_pos,
            image_pos,
            blocks,
            ln_f,
            head,
            attn_masks,
            logit_masks,
            segments,
        })
    }

    /// Which ids position `s` may emit (spec §3.1): before [`Geometry::first_target_output`] the
    /// condition's modality, from it on the target's.
    ///
    /// # Shapes
    /// returns `(L, V)` float, 0 where allowed and −∞ elsewhere
    fn logit_mask(c: &BiartConfig, dir: Direction) -> Tensor {
        let g = c.geometry();
        let (v, off, vt) = (c.vocab_size() as usize, c.image_offset() as usize, c.text_vocab);
        let split = g.first_target_output(dir);
        let mut m = vec![f32::NEG_INFINITY; g.total() * v];
        for s in 0..g.total() {
            let predicts_image = match dir {
                Direction::T2i => s >= split,
                Direction::I2t => s < split,
            };
            let range = if predicts_image { off..v } else { 0..vt };
            m[s * v + range.start..s * v + range.end].fill(0.0);
        }
        Tensor::from_slice(&m).view([g.total() as i64, v as i64])
    }

    /// Allowed ids per position, for tests and callers: `(L, V)` bool.
    pub fn allowed_logits(&self, dir: Direction) -> Tensor {
        self.logit_masks[&dir].isfinite()
    }

    fn positions(&self) -> (Tensor, Tensor) {
        (self.text_pos.shallow_clone(), self.image_pos.embeddings())
    }

    /// Vocabulary ids of raw text ids at text positions `p0..p0+n` (pads → their slot).
    fn text_ids(&self, text: &Tensor, p0: i64) -> Tensor {
        match self.config.pad_tokens {
            PadTokens::Shared => text.shallow_clone(),
            PadTokens::Unique => {
                let n = text.size()[1];
                let slots = Tensor::arange_start(p0, p0 + n, (Kind::Int64, text.device()))
                    + self.config.text_vocab as i64;
                slots.unsqueeze(0).expand_as(text).where_self(&text.eq(PAD), text)
            }
        }
    }

    /// The full sequence of vocabulary ids for `dir`.
    ///
    /// # Shapes
    /// `text: (B, Lt)` raw BPE ids, `codes: (B, Li)` codebook indices → `(B, L)`
    pub fn sequence(&self, dir: Direction, text: &Tensor, codes: &Tensor) -> Tensor {
        let t = self.text_ids(text, 0);
        let i = codes + self.config.image_offset();
        match dir {
            Direction::T2i => Tensor::cat(&[t, i], 1),
            Direction::I2t => Tensor::cat(&[i, t], 1),
        }
    }

    /// Key-padding keep-mask for `dir` given the text (`[PAD]` keys hidden).
    ///
    /// # Shapes
    /// `text: (B, Lt)` → `(B, L)` bool
    pub fn key_keep(&self, dir: Direction, text: &Tensor) -> Tensor {
        let b = text.size()[0];
        let ones = Tensor::ones([b, self.geometry.image_len() as i64], (Kind::Bool, text.device()));
        let t = text.ne(PAD);
        match dir {
            Direction::T2i => Tensor::cat(&[t, ones], 1),
            Direction::I2t => Tensor::cat(&[ones, t], 1),
        }
    }

    /// Embeddings of `ids` at absolute positions `p0..p0+t`.
    fn embed(&self, ids: &Tensor, dir: Direction, p0: i64) -> Tensor {
        let t = ids.size()[1];
        let (text_pos, image_pos) = self.positions();
        let (first, second) = match dir {
            Direction::T2i => (text_pos, image_pos),
            Direction::I2t => (image_pos, text_pos),
        };
        // Rows p0..p0+t of [first ; second], without building the whole table every step.
        let c = first.size()[0];
        let pos = if p0 + t <= c {
            first.narrow(0, p0, t)
        } else if p0 >= c {
            second.narrow(0, p0 - c, t)
        } else {
            Tensor::cat(&[first.narrow(0, p0, c - p0), second.narrow(0, 0, p0 + t - c)], 0)
        };
        let mut x = self.tok_emb.forward(ids) + pos.unsqueeze(0);
        if let Some(seg) = &self.seg_emb {
            x += seg.forward(&self.segments[&dir].narrow(0, p0, t)).unsqueeze(0);
        }
        x
    }

    /// Logits for the tokens `ids` at absolute positions `p0..p0+t`, attending to the cache (if
    /// any) and to each other. With a cache, `p0` must equal the cache length.
    ///
    /// # Shapes
    /// `ids: (B, t)` vocabulary ids, `keep: (B, L)` bool → `(B, t, V)` masked logits
    pub fn forward_from(
        &self,
        ids: &Tensor,
        dir: Direction,
        p0: i64,
        keep: &Tensor,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor {
        let x = self.embed(ids, dir, p0);
        let x = match self.config.dropout_sites {
            DropoutSites::MinGpt => x.dropout(self.config.dropout, train),
            DropoutSites::Dalle => x,
        };
        let x = self.run_blocks(x, dir, p0, keep, cache, train);
        let logits = self.head.forward(&self.ln_f.forward(&x));
        logits + self.logit_masks[&dir].narrow(0, p0, ids.size()[1]).unsqueeze(0)
    }

    /// The transformer layers alone on hidden states of the whole sequence from position 0, with
    /// the model's attention masks for `dir` and the key-padding mask `keep`: what upstream's
    /// `Transformer(x, mask=keep, task=dir)` computes (no embeddings, no final LayerNorm or head).
    ///
    /// # Shapes
    /// `x: (B, t, C)` with `t ≤ L`, `keep: (B, L)` bool → `(B, t, C)`
    pub fn blocks_forward(&self, x: &Tensor, dir: Direction, keep: &Tensor, train: bool) -> Tensor {
        self.run_blocks(x.shallow_clone(), dir, 0, keep, None, train)
    }

    /// The attention mask of a `kind` layer for queries `p0..p0+t` under `dir`: the layer's
    /// connectivity and the key-padding mask `keep`.
    ///
    /// # Shapes
    /// `keep: (B, L)` bool → `(B, 1, t, p0+t)` bool
    fn block_mask(&self, kind: AttnType, dir: Direction, p0: i64, t: i64, keep: &Tensor) -> Tensor {
        let end = p0 + t;
        let keys = keep.narrow(1, 0, end).unsqueeze(1).unsqueeze(1);
        let m = self.attn_masks[&(kind, dir)].narrow(0, p0, t).narrow(1, 0, end);
        m.unsqueeze(0).unsqueeze(0).logical_and(&keys)
    }

    /// Every block on hidden states at absolute positions `p0..p0+t`, filling the cache if given.
    ///
    /// # Shapes
    /// `x: (B, t, C)`, `keep: (B, L)` bool → `(B, t, C)`
    fn run_blocks(
        &self,
        mut x: Tensor,
        dir: Direction,
        p0: i64,
        keep: &Tensor,
        mut cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor {
        let t = x.size()[1];
        let end = p0 + t;
        assert!(
            end <= self.geometry.total() as i64,
            "sequence longer than the model's {}",
            self.geometry.total()
        );
        if let Some(c) = cache.as_deref_mut() {
            assert_eq!(c.len(), p0, "KV cache holds {} positions, the new tokens start at {p0}", c.len());
            c.layers.resize_with(self.blocks.len(), || None);
            if p0 == 0 {
                c.layers.iter_mut().for_each(|l| *l = None);
            }
        }
        let mut masks: HashMap<AttnType, Tensor> = HashMap::new();
        for (i, block) in self.blocks.iter().enumerate() {
            let mask =
                masks.entry(block.kind).or_insert_with(|| self.block_mask(block.kind, dir, p0, t, keep));
            let capacity = self.geometry.total() as i64;
            let slot = cache.as_deref_mut().map(|c| CacheSlot { kv: &mut c.layers[i], start: p0, capacity });
            x = block.forward(&x, mask, slot, train);
        }
        if let Some(c) = cache {
            c.len = end;
        }
        x
    }

    /// Weighted cross-entropy of one direction (spec §3.3):
    /// `L = (CE_condition + w·CE_target)/(1 + w)`, text `[PAD]` targets ignored. Input is the
    /// sequence without its last token; position `s` predicts token `s+1`.
    ///
    /// # Shapes
    /// `text: (B, Lt)`, `codes: (B, Li)`
    pub fn loss(&self, dir: Direction, text: &Tensor, codes: &Tensor, train: bool) -> LossParts {
        let seq = self.sequence(dir, text, codes);
        let l = seq.size()[1];
        let input = seq.narrow(1, 0, l - 1);
        let keep = self.key_keep(dir, text);
        let logits = self.forward_from(&input, dir, 0, &keep, None, train);
        let text_t = text.masked_fill(&text.eq(PAD), -100);
        let img_t = codes + self.config.image_offset();
        let targets = match dir {
            Direction::T2i => Tensor::cat(&[text_t.narrow(1, 1, text.size()[1] - 1), img_t], 1),
            Direction::I2t => Tensor::cat(&[img_t.narrow(1, 1, codes.size()[1] - 1), text_t], 1),
        };
        let split = self.geometry.first_target_output(dir) as i64;
        let v = self.config.vocab_size();
        let ce = |from: i64, n: i64| {
            logits.narrow(1, from, n).reshape([-1, v]).cross_entropy_loss::<Tensor>(
                &targets.narrow(1, from, n).reshape([-1]),
                None,
                tch::Reduction::Mean,
                -100,
                0.0,
            )
        };
        let condition = ce(0, split);
        let target = ce(split, l - 1 - split);
        let w = self.config.loss_weight;
        let total = (&condition + &target * w) / (1.0 + w);
        LossParts { total, condition, target }
    }
}

#[cfg(test)]
mod tests;
