//! Evaluation metrics.
//!
//! - [`image`]: PSNR and SSIM on images in [0, 1].
//! - [`equivariance`]: TE-VQGAN's `Trans_eq_acc` (spec §2.7) and its generalisation to any shift
//!   that is a multiple of the down-sampling factor.

pub mod equivariance;
pub mod image;
