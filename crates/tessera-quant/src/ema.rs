//! The EMA codebook update of L-Verse's `EmbeddingEMA` (spec §4.2), as a pure function of the
//! state so it can be tested against the formula.
//!
//! ```text
//! cs ← decay·cs + (1−decay)·Σ onehot
//! ea ← decay·ea + (1−decay)·onehotᵀ z
//! n  = Σ cs
//! cs_s = (cs + ε) / (n + K·ε) · n          (Laplace smoothing)
//! E  ← ea / cs_s
//! ```

use tch::{Kind, Tensor};

/// EMA state after one update.
pub struct EmaState {
    pub cluster_size: Tensor,
    pub embed_avg: Tensor,
    pub weight: Tensor,
}

/// One EMA step.
///
/// # Shapes
/// `z`: (N, D), `indices`: (N,), `cluster_size`: (K,), `embed_avg`: (K, D)
pub fn ema_step(
    z: &Tensor,
    indices: &Tensor,
    cluster_size: &Tensor,
    embed_avg: &Tensor,
    decay: f64,
    eps: f64,
) -> EmaState {
    tch::no_grad(|| {
        let k = cluster_size.size()[0];
        let counts = indices.bincount::<Tensor>(None, k).to_kind(Kind::Float);
        let embed_sum = Tensor::zeros_like(embed_avg).index_add(0, indices, &z.to_kind(Kind::Float));
        let cs = cluster_size * decay + counts * (1.0 - decay);
        let ea = embed_avg * decay + embed_sum * (1.0 - decay);
        let n = cs.sum(Kind::Float);
        let smoothed = (&cs + eps) / (&n + k as f64 * eps) * &n;
        let weight = &ea / smoothed.unsqueeze(1);
        EmaState { cluster_size: cs, embed_avg: ea, weight }
    })
}
