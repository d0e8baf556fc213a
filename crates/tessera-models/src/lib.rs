//! Tessera's models.
//!
//! - [`vqgan`]: taming-transformers' VQGAN (spec §1.2) with TE-VQGAN's encoder options (spec §2.4);
//!   parameter names are taming's state_dict keys.
//! - [`vit`]: ViT-VQGAN (spec §6) as enhancing-transformers builds it; parameter names are its
//!   state_dict keys.
//! - [`augvae`]: L-Verse's AugVAE-ML and -SL (spec §4) as L-Verse builds it; parameter names are
//!   its state_dict keys.
//! - [`lg`]: LG-VQ's language-guided losses (spec §5), attachable to any tokenizer's codes.
//! - [`text_encoder`]: frozen pretrained text encoders (a BERT with Hugging Face's names, for
//!   all-MiniLM-L6-v2), LG-VQ's text side.
//! - [`tokenizer`]: the [`tokenizer::ImageTokenizer`] interface every image tokenizer implements.
//! - [`stylegan_disc`]: the StyleGAN2 discriminator and lazy R1 of ViT-VQGAN (spec §6).
//! - [`disc`]: the PatchGAN discriminator (spec §1.4).
//! - [`perceptual`]: the LPIPS distance with pluggable backbones (spec §1.4): ImageNet VGG16 from
//!   user-supplied weights, or an in-domain network Tessera trains (labelled as a substitute).

pub mod augvae;
pub mod biart;
pub mod classifier;
pub mod disc;
pub mod lg;
pub mod perceptual;
pub mod stylegan_disc;
pub mod text_encoder;
pub mod tokenizer;
pub mod vit;
pub mod vqgan;
