//! Autoregressive sampling, with a KV cache (each step feeds one token) or Bi-DALL-E's way
//! (each step re-runs the whole prefix, spec §3.5). Both draw the same random numbers in the same
//! order, so for one seed they give the same tokens.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{Biart, Direction, KvCache, PadTokens, CLS, PAD, SEP};

/// `[sample]`: how logits become tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleConfig {
    /// Logits are divided by it; 0 = greedy (argmax).
    pub temperature: f64,
    /// Keep the k largest logits.
    pub top_k: Option<usize>,
    /// Bi-DALL-E's `top_k(thres)`: keep `max(⌊(1−thres)·V⌋, 1)` logits of the whole V-way vector
    /// (masked ids included in V, as there; spec §3.5). Its evaluation uses 0.9.
    pub filter_thres: Option<f64>,
    /// Nucleus sampling: keep the smallest set of ids whose probability reaches `top_p`.
    pub top_p: Option<f64>,
    /// Use the KV cache (off = recompute the prefix every step, as Bi-DALL-E).
    pub use_cache: bool,
}

impl Default for SampleConfig {
    /// Bi-DALL-E's evaluation setting: T = 1, `filter_thres` 0.9.
    fn default() -> Self {
        Self { temperature: 1.0, top_k: None, filter_thres: Some(0.9), top_p: None, use_cache: true }
    }
}

impl SampleConfig {
    /// Every key's range ([`tessera_core::Validate`]), one problem per line.
    pub fn check(&self) -> Result<(), String> {
        tessera_core::Validate::validate(self)
    }
}

impl tessera_core::Validate for SampleConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        // Above 10^4 every distribution is already uniform, and T must stay a finite f32.
        c.float("temperature", self.temperature, 0.0, 1e4, "0 = greedy");
        if let Some(k) = self.top_k {
            c.int("top_k", k, 1, usize::MAX, "");
        }
        if let Some(t) = self.filter_thres {
            c.unit_open("filter_thres", t, "keep the top (1 − filter_thres) of the vocabulary");
        }
        if let Some(p) = self.top_p {
            c.float_above("top_p", p, 0.0, 1.0, "");
        }
    }
}

/// Keep the `k` largest entries of each row, set the rest to −∞.
///
/// # Shapes
/// `logits: (B, V)` → `(B, V)`
pub fn keep_top_k(logits: &Tensor, k: i64) -> Tensor {
    let k = k.min(logits.size()[1]);
    let (vals, _) = logits.topk(k, -1, true, true);
    let kth = vals.narrow(1, k - 1, 1);
    logits.masked_fill(&logits.lt_tensor(&kth), f64::NEG_INFINITY)
}

/// Keep the smallest prefix of the sorted distribution whose mass reaches `p` (at least one id).
///
/// # Shapes
/// `logits: (B, V)` → `(B, V)`
pub fn keep_top_p(logits: &Tensor, p: f64) -> Tensor {
    let (sorted, order) = logits.sort(-1, true);
    let probs = sorted.softmax(-1, Kind::Float);
    // Mass strictly before each id; an id is dropped when that alone already reaches p.
    let before = probs.cumsum(-1, Kind::Float) - &probs;
    let drop_sorted = before.ge(p);
    let drop = drop_sorted.scatter(-1, &order, &drop_sorted);
    logits.masked_fill(&drop, f64::NEG_INFINITY)
}

/// Filter and sample one token per row.
///
/// # Shapes
/// `logits: (B, V)` → `(B,)` int64
pub fn sample_logits(logits: &Tensor, cfg: &SampleConfig) -> Tensor {
    if cfg.temperature == 0.0 {
        return logits.argmax(-1, false);
    }
    let v = logits.size()[1];
    // A tiny temperature would overflow `logits / T` to ±inf (NaN probabilities): shift each
    // row's maximum to 0 first, so the best token keeps probability 1 in the limit.
    let mut l = if cfg.temperature < 1e-3 {
        (logits - logits.max_dim(-1, true).0) / cfg.temperature
    } else {
        logits / cfg.temperature
    };
    if let Some(t) = cfg.filter_thres {
        l = keep_top_k(&l, (((1.0 - t) * v as f64) as i64).max(1));
    }
    if let Some(k) = cfg.top_k {
        l = keep_top_k(&l, k as i64);
    }
    if let Some(p) = cfg.top_p {
        l = keep_top_p(&l, p);
    }
    l.softmax(-1, Kind::Float).multinomial(1, true).squeeze_dim(1)
}

impl Biart {
    /// Vocabulary id to feed back at absolute position `pos` for the sampled id `tok`.
    fn feed_id(&self, dir: Direction, pos: i64, tok: &Tensor) -> Tensor {
        let g = &self.geometry;
        if self.config.pad_tokens == PadTokens::Unique && g.image_index(dir, pos as usize).is_none() {
            let text_pos = match dir {
                Direction::T2i => pos,
                Direction::I2t => pos - g.image_len() as i64,
            };
            let slot = Tensor::full_like(tok, self.config.text_vocab as i64 + text_pos);
            slot.where_self(&tok.eq(PAD), tok)
        } else {
            tok.shallow_clone()
        }
    }

    /// Generate the target of `dir` from its condition.
    ///
    /// - t2i: `cond` = caption ids `(B, Lt)` → codebook indices `(B, Li)`.
    /// - i2t: `cond` = codebook indices `(B, Li)` → caption ids `(B, Lt)`, starting with `[CLS]`;
    ///   everything after the first `[SEP]` is `[PAD]`, and sampling stops once every row has one.
    pub fn generate(&self, dir: Direction, cond: &Tensor, cfg: &SampleConfig) -> Tensor {
        tch::no_grad(|| self.generate_inner(dir, cond, cfg))
    }

    fn generate_inner(&self, dir: Direction, cond: &Tensor, cfg: &SampleConfig) -> Tensor {
        let g = &self.geometry;
        let b = cond.size()[0];
        let dev = cond.device();
        let off = self.config.image_offset();
        let (prefix, keep, n_new) = match dir {
            Direction::T2i => {
                let keep = self.key_keep(dir, cond);
                (self.text_ids(cond, 0), keep, g.image_len() as i64)
            }
            Direction::I2t => {
                let cls = Tensor::full([b, 1], CLS, (Kind::Int64, dev));
                let keep = Tensor::ones([b, g.total() as i64], (Kind::Bool, dev));
                (Tensor::cat(&[&(cond + off), &cls], 1), keep, g.text_len as i64 - 1)
            }
        };
        let mut cache = KvCache::default();
        let mut seq = prefix.shallow_clone();
        let start = prefix.size()[1];
        let mut logits =
            self.forward_from(&prefix, dir, 0, &keep, cfg.use_cache.then_some(&mut cache), false);
        let mut out: Vec<Tensor> = Vec::with_capacity(n_new as usize);
        let mut finished = Tensor::zeros([b], (Kind::Bool, dev));
        for (i, pos) in (0..n_new).zip(start..) {
            let last = logits.select(1, logits.size()[1] - 1);
            let tok = sample_logits(&last, cfg);
            out.push(tok.shallow_clone());
            if dir == Direction::I2t {
                finished = finished.logical_or(&tok.eq(SEP));
                if finished.all().int64_value(&[]) == 1 {
                    break;
                }
            }
            if i + 1 == n_new {
                break;
            }
            let fed = self.feed_id(dir, pos, &tok).unsqueeze(1);
            logits = if cfg.use_cache {
                self.forward_from(&fed, dir, pos, &keep, Some(&mut cache), false)
            } else {
                seq = Tensor::cat(&[&seq, &fed], 1);
                self.forward_from(&seq, dir, 0, &keep, None, false)
            };
        }
        let generated = Tensor::stack(&out, 1);
        match dir {
            Direction::T2i => generated - off,
            Direction::I2t => {
                let cls = Tensor::full([b, 1], CLS, (Kind::Int64, dev));
                let mut text = Tensor::cat(&[cls, generated], 1);
                let pad = g.text_len as i64 - text.size()[1];
                if pad > 0 {
                    text = Tensor::cat(&[text, Tensor::full([b, pad], PAD, (Kind::Int64, dev))], 1);
                }
                // Everything after the first [SEP] becomes [PAD] (spec §3.5).
                let sep = text.eq(SEP).to_kind(Kind::Int64);
                let seps_before = sep.cumsum(1, Kind::Int64) - &sep;
                text.masked_fill(&seps_before.gt(0), PAD)
            }
        }
    }
}
