//! Vector quantizers: the codebook library every Tessera tokenizer uses.
//!
//! - [`VectorQuantizer`]: nearest-code lookup with a straight-through estimator and every
//!   codebook technique the seed systems use (spec §1.3, §2.2, §2.3, §4.2, §6.2, §7.1): Euclidean or
//!   cosine distance, factorized low-dimensional codes, both β placements, gradient or EMA
//!   updates, uniform / normal / k-means initialisation, dead-code revival and TE-VQGAN's
//!   orthogonality regulariser; [`cvq`] adds CVQ-VAE's online re-initialisation and contrastive
//!   term (LG-CVQ).
//! - [`ResidualVq`]: quantizers applied to successive residuals (SoundStream, spec §7.2).
//! - [`Fsq`]: finite scalar quantization with mixed-radix indices (spec §7.2).
//! - [`CodebookStats`]: perplexity, usage over a sliding window and an epoch, dead codes.
//!
//! Codebook math runs in f32 whatever the model's precision.

pub mod config;
pub mod cvq;
pub mod distance;
pub mod ema;
pub mod fsq;
pub mod kmeans;
pub mod ortho;
pub mod residual;
pub mod stats;
pub mod vq;

pub use config::{
    BetaPlacement, CodebookInit, CodebookUpdate, Distance, OrthoConfig, StraightThrough, VqConfig,
};
pub use fsq::{Fsq, FsqConfig};
pub use residual::{ResidualVq, ResidualVqConfig};
pub use stats::CodebookStats;
pub use vq::{QuantizerOutput, VectorQuantizer, VqLosses};

/// `x / max(‖x‖₂, 1e-12)` along the last dimension (PyTorch's `F.normalize`).
pub fn l2_normalize(x: &tch::Tensor) -> tch::Tensor {
    let norm = x.square().sum_dim_intlist(-1, true, x.kind()).sqrt().clamp_min(1e-12);
    x / norm
}
