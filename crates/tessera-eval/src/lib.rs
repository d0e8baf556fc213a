//! Evaluation metrics.
//!
//! - [`image`]: PSNR and SSIM on images in [0, 1].
//! - [`equivariance`]: TE-VQGAN's `Trans_eq_acc` (spec §2.7) and its generalisation to any shift
//!   that is a multiple of the down-sampling factor.
//! - [`captions`]: Bi-directional DALL-E's text→image and image→text accuracy on MNIST64x64,
//!   bucketed by the number of digits (spec §9.1).
//! - [`reconstruction`]: a tokenizer's PSNR, SSIM, L1, codebook usage, perplexity, dead codes and
//!   `Trans_eq_acc` over a validation set.
//! - [`generation`]: scoring a text↔image generator on MNIST64x64 (T2I with the evaluation
//!   classifier, I2T with the caption parser), with per-sample records and marked grids.
//! - [`probe`]: a logistic-regression linear probe on frozen features.
//! - [`stats`]: paired t-intervals over seeds and bootstrap intervals over images.

pub mod captions;
pub mod equivariance;
pub mod generation;
pub mod image;
pub mod probe;
pub mod reconstruction;
pub mod retrieval;
pub mod stats;
