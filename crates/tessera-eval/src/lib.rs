//! Evaluation metrics.
//!
//! - [`image`]: PSNR and SSIM on images in [0, 1].
//! - [`equivariance`]: TE-VQGAN's `Trans_eq_acc` (spec §2.7) and its generalisation to any shift
//!   that is a multiple of the down-sampling factor.
//! - [`captions`]: Bi-directional DALL-E's text→image and image→text accuracy on MNIST64x64,
//!   bucketed by the number of digits (spec §9.1).
//! - [`stats`]: paired t-intervals over seeds and bootstrap intervals over images.

pub mod captions;
pub mod equivariance;
pub mod image;
pub mod stats;
