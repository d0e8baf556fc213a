//! CVQ-VAE's online codebook re-initialisation and contrastive term (Zheng & Vedaldi, ICCV 2023),
//! LG-CVQ's quantizer (spec §5.4): `CVQVectorQuantiser` in `taming/modules/vqvae/quantize.py:3550-3673`
//! of 623851394/LG-VQ-language-guided-codebook-learning@42c3ff1.
//!
//! In training, after the usual loss (with the codebook before this step's change):
//! - `p_k ← 0.99·p_k + 0.01·(n_k / N)`, the usage EMA;
//! - each code `k` draws an anchor from the batch (`probrandom`: row `i` with probability
//!   `softmax_i(d_ik)`; `closest`: the nearest row), with `d = −‖sg z‖² − ‖e‖² + 2·sg(z)·eᵀ`;
//! - `α_k = exp(−p_k·K·10/(1 − 0.99) − 1e-3)` and `e_k ← (1 − α_k)·e_k + α_k·anchor_k`: rarely used
//!   codes move to the features, used ones barely move (every code moves a little);
//! - contrastive term: per code, the mean of its `max(1, ⌊N/K⌋)` nearest rows against its `⌊N/2⌋`
//!   farthest, `CE([pos; neg]/0.07, 0)`, added to the loss (it trains the codebook only, `z` is
//!   detached in `d`).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Where each code's anchor comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Anchor {
    /// One batch vector per code, drawn with probability `softmax(d)` over the batch (CVQ-VAE's
    /// `probrandom`, LG-CVQ's setting).
    #[default]
    Probrandom,
    /// The batch vector nearest to each code (`closest`).
    Closest,
}

/// `[quantizer.online_reinit]`: CVQ-VAE's online re-initialisation. Defaults are LG-CVQ's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnlineReinit {
    /// The usage EMA's decay (0.99).
    pub decay: f64,
    pub anchor: Anchor,
    /// Add the contrastive term to the loss.
    pub contrastive: bool,
    /// Its temperature (0.07).
    pub temperature: f64,
}

impl Default for OnlineReinit {
    fn default() -> Self {
        Self { decay: 0.99, anchor: Anchor::Probrandom, contrastive: true, temperature: 0.07 }
    }
}

/// `d = −‖z‖² − ‖e‖² + 2·z·eᵀ`, the negative squared distances (upstream's `d`).
///
/// # Shapes
/// `z: (N, D)`, `codebook: (K, D)` → `(N, K)`
pub fn neg_sq_distance(z: &Tensor, codebook: &Tensor) -> Tensor {
    let zz = z.square().sum_dim_intlist(1, true, Kind::Float);
    let ee = codebook.square().sum_dim_intlist(1, false, Kind::Float);
    -zz - ee + z.matmul(&codebook.transpose(0, 1)) * 2.0
}

/// Each code's anchor row of the batch.
///
/// # Shapes
/// `d: (N, K)` → `(K,)` int64
pub fn sample_anchors(d: &Tensor, anchor: Anchor) -> Tensor {
    match anchor {
        Anchor::Probrandom => d.transpose(0, 1).softmax(1, Kind::Float).multinomial(1, false).view([-1]),
        Anchor::Closest => d.argmax(0, false),
    }
}

/// The contrastive term (upstream `:3648-3654`).
///
/// # Shapes
/// `d: (N, K)` → scalar
pub fn contrastive_loss(d: &Tensor, temperature: f64) -> Tensor {
    let (n, k) = (d.size()[0], d.size()[1]);
    let sorted = d.sort(0, false).0;
    let n_pos = (n / k).max(1);
    let pos = sorted.narrow(0, n - n_pos, n_pos).mean_dim(0, true, Kind::Float);
    let neg = sorted.narrow(0, 0, n / 2);
    let logits = Tensor::cat(&[pos, neg], 0).transpose(0, 1) / temperature;
    let target = Tensor::zeros([k], (Kind::Int64, d.device()));
    logits.cross_entropy_for_logits(&target)
}

/// The re-initialisation (upstream `:3627-3644`), in place and without gradients: the usage EMA
/// from this batch's `counts` of `N` vectors, then every code pulled toward its anchor row of `z`.
/// Returns the pull `α (K,)`.
///
/// # Shapes
/// `codebook: (K, D)`, `usage: (K,)`, `counts: (K,)`, `z: (N, D)`, `anchors: (K,)` int64
pub fn reinit(
    codebook: &mut Tensor,
    usage: &mut Tensor,
    counts: &Tensor,
    z: &Tensor,
    anchors: &Tensor,
    decay: f64,
) -> Tensor {
    tch::no_grad(|| {
        let n = z.size()[0] as f64;
        let k = codebook.size()[0] as f64;
        let avg = counts.to_kind(Kind::Float) / n;
        let next = &*usage * decay + avg * (1.0 - decay);
        usage.copy_(&next);
        let alpha = (&*usage * (-k * 10.0 / (1.0 - decay)) - 1e-3).exp().unsqueeze(1);
        let anchor = z.index_select(0, anchors);
        let moved = &*codebook * (1.0 - &alpha) + anchor * &alpha;
        codebook.copy_(&moved);
        alpha.squeeze_dim(1)
    })
}
