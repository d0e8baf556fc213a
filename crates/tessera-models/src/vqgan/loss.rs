//! taming's `VQLPIPSWithDiscriminator`, the VQGAN's training loss, beside the model it trains.
//!
//! Upstream: `taming/modules/losses/vqperceptual.py` at CompVis/taming-transformers@3ba01b2
//! (`VQLPIPSWithDiscriminator.forward`, `calculate_adaptive_weight`, `hinge_d_loss`,
//! `vanilla_d_loss`); TE-VQGAN (wcshin-git/TE-VQGAN@248f883) uses the same file and adds its
//! orthogonality term to the codebook loss (`taming/modules/vqvae/quantize.py`).
//!
//! Generator (optimizer_idx 0):
//! ```text
//! rec   = |x − x̂| + w_p·LPIPS(x, x̂)          ((x − x̂)² with pixel = "l2")
//! L_nll = mean(rec)
//! g     = −mean(D(x̂))
//! λ     = clamp(‖∇_W L_nll‖ / (‖∇_W g‖ + 1e-4), 0, 1e4)·disc_weight,   W = decoder.conv_out.weight
//! f     = disc_factor if step ≥ disc_start else 0
//! L_G   = L_nll + λ·f·g + codebook_weight·(L_vq + L_ortho)
//! ```
//! Discriminator (optimizer_idx 1): `L_D = f·½(mean relu(1 − D(x)) + mean relu(1 + D(x̂)))`
//! (hinge) or `f·½(mean softplus(−D(x)) + mean softplus(D(x̂)))` (vanilla).
//!
//! Extra terms (`tokenizer::ExtraLoss`, LG-VQ's losses) are added by the training task, the same
//! way for every tokenizer.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

use super::VqOutput;
use crate::disc::PatchGan;
use crate::perceptual::{Backbone, Lpips};

/// The discriminator's loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DiscLoss {
    #[default]
    Hinge,
    Vanilla,
}

/// The pixel term of `L_nll`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelLoss {
    /// `|x − x̂|` (taming, TE-VQGAN).
    #[default]
    L1,
    /// `(x − x̂)²` (VQ-VAE). On sparse images such as MNIST64x64 (mostly black) L1's optimum under
    /// uncertainty is the median, black, and short runs stall there; the squared error does not.
    L2,
}

/// What the discriminator step is shown as fakes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscInput {
    /// Reconstructions by the generator *after* this step's update, as taming (Lightning runs
    /// `training_step` again for the discriminator's optimizer). Computed without gradient in eval
    /// mode, so dropout is off and codebook statistics are not counted twice.
    #[default]
    Recompute,
    /// The reconstructions the generator step was scored on (detached): one forward pass fewer.
    Reuse,
}

/// `[loss]`: taming's `VQLPIPSWithDiscriminator` settings, TE-VQGAN's values (spec §2.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    pub pixel: PixelLoss,
    pub perceptual_weight: f64,
    pub perceptual_backbone: Backbone,
    /// Weights of the perceptual network: `tessera train perceptual` output for `tiny`, or
    /// user-supplied VGG16 + lpips heads for `vgg16` (safetensors, or `.pth` as PyTorch wrote it,
    /// read without running pickled code).
    pub perceptual_weights: Option<PathBuf>,
    /// A second weight file merged into `perceptual_weights`, for VGG16 as users have it: torchvision's
    /// `vgg16-397923af.pth` there and the lpips package's `weights/v0.1/vgg.pth` here.
    pub perceptual_heads: Option<PathBuf>,
    /// Keep taming's Dropout(0.5) in the LPIPS heads active during training (spec §13.3).
    pub perceptual_head_dropout: bool,
    pub disc_weight: f64,
    pub disc_start: i64,
    pub disc_factor: f64,
    pub disc_loss: DiscLoss,
    pub disc_input: DiscInput,
    /// Count the zero-gradient discriminator steps before `disc_start` in its Adam's step count, as
    /// taming does (its first real updates are then ≈ 1.58× larger than a cold start's).
    pub disc_adam_counts_idle_steps: bool,
    pub codebook_weight: f64,
}

impl tessera_core::Validate for LossConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.weight("perceptual_weight", self.perceptual_weight);
        c.weight("disc_weight", self.disc_weight);
        c.weight("disc_factor", self.disc_factor);
        c.weight("codebook_weight", self.codebook_weight);
        c.int(
            "disc_start",
            self.disc_start,
            0,
            i64::MAX,
            "the step the GAN term starts; beyond max_steps = never",
        );
    }
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            pixel: PixelLoss::L1,
            perceptual_weight: 1.0,
            perceptual_backbone: Backbone::Tiny,
            perceptual_weights: None,
            perceptual_heads: None,
            perceptual_head_dropout: false,
            disc_weight: 0.8,
            disc_start: 30_001,
            disc_factor: 1.0,
            disc_loss: DiscLoss::Hinge,
            disc_input: DiscInput::Recompute,
            disc_adam_counts_idle_steps: true,
            codebook_weight: 1.0,
        }
    }
}

impl LossConfig {
    /// `f`: the GAN's factor at `step` (0 before `disc_start`).
    pub fn disc_factor_at(&self, step: i64) -> f64 {
        if step >= self.disc_start {
            self.disc_factor
        } else {
            0.0
        }
    }
}

/// The generator loss and its parts (scalars), for the log.
pub struct GeneratorLoss {
    /// `L_G`, to back-propagate.
    pub total: Tensor,
    /// `L_nll`.
    pub nll: Tensor,
    /// `mean(LPIPS)` when the perceptual term is on.
    pub perceptual: Option<Tensor>,
    /// `g = −mean(D(x̂))` when the GAN is on (`f > 0`).
    pub g: Option<Tensor>,
    /// The adaptive weight `λ` (0 while the GAN is off).
    pub d_weight: f64,
}

/// taming's `VQLPIPSWithDiscriminator`: the discriminator and the perceptual distance. The variables live in the caller's VarStores (the task checkpoints and freezes them).
pub struct VqLpipsLoss {
    pub config: LossConfig,
    pub disc: PatchGan,
    lpips: Option<Lpips>,
}

impl VqLpipsLoss {
    /// `lpips` is required when `config.perceptual_weight > 0`.
    pub fn new(config: LossConfig, disc: PatchGan, lpips: Option<Lpips>) -> Self {
        Self { config, disc, lpips }
    }

    /// `L_G` of one batch (see the module docs), with the GAN factor `f`.
    ///
    /// # Shapes
    /// `x`, `out.reconstruction`: `(B, 3, H, W)`; `last_layer`: the decoder's last weight.
    pub fn generator(&self, x: &Tensor, out: &VqOutput, last_layer: &Tensor, f: f64) -> GeneratorLoss {
        let cfg = &self.config;
        let xr = &out.reconstruction;
        let pixel = match cfg.pixel {
            PixelLoss::L1 => (x - xr).abs(),
            PixelLoss::L2 => (x - xr).square(),
        };
        let (rec, perceptual) = match &self.lpips {
            Some(lp) => {
                let p = lp.forward_t(x, xr, true);
                (pixel + &p * cfg.perceptual_weight, Some(p.mean(Kind::Float)))
            }
            None => (pixel, None),
        };
        let nll = rec.mean(Kind::Float);
        let (g_term, g, d_weight) = if f > 0.0 {
            let g = -self.disc.forward_t(xr, true).mean(Kind::Float);
            let w = adaptive_weight(&nll, &g, last_layer) * cfg.disc_weight;
            (Some(&g * (w * f)), Some(g), w)
        } else {
            (None, None, 0.0)
        };
        let with_gan = match g_term {
            Some(t) => &nll + t,
            None => nll.shallow_clone(),
        };
        let total = with_gan + &out.quant.loss * cfg.codebook_weight;
        GeneratorLoss { total, nll, perceptual, g, d_weight }
    }

    /// `L_D` of one batch before the factor `f` (hinge or vanilla).
    ///
    /// # Shapes
    /// `real`, `fake`: `(B, 3, H, W)` → scalar
    pub fn discriminator(&self, real: &Tensor, fake: &Tensor) -> Tensor {
        let real = self.disc.forward_t(&real.detach(), true);
        let fake = self.disc.forward_t(fake, true);
        d_loss(self.config.disc_loss, &real, &fake)
    }
}

/// taming's `hinge_d_loss` / `vanilla_d_loss` on the discriminator's logits.
pub fn d_loss(kind: DiscLoss, real: &Tensor, fake: &Tensor) -> Tensor {
    match kind {
        DiscLoss::Hinge => {
            ((-real + 1.0).relu().mean(Kind::Float) + (fake + 1.0).relu().mean(Kind::Float)) * 0.5
        }
        DiscLoss::Vanilla => ((-real).softplus().mean(Kind::Float) + fake.softplus().mean(Kind::Float)) * 0.5,
    }
}

/// taming's `calculate_adaptive_weight` before `disc_weight`:
/// `clamp(‖∇_W L_nll‖ / (‖∇_W g‖ + 1e-4), 0, 1e4)`.
pub fn adaptive_weight(nll: &Tensor, g: &Tensor, last_layer: &Tensor) -> f64 {
    let gn = Tensor::run_backward(&[nll], &[last_layer], true, false)[0].norm().double_value(&[]);
    let gg = Tensor::run_backward(&[g], &[last_layer], true, false)[0].norm().double_value(&[]);
    (gn / (gg + 1e-4)).clamp(0.0, 1e4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hinge_and_vanilla_d_losses_are_taming_s() {
        let real = Tensor::from_slice(&[2.0f32, 0.0]);
        let fake = Tensor::from_slice(&[-2.0f32, 0.5]);
        // hinge: ½(mean(relu(1 − [2, 0])) + mean(relu(1 + [−2, 0.5]))) = ½(0.5 + 0.75)
        let h = d_loss(DiscLoss::Hinge, &real, &fake).double_value(&[]);
        assert!((h - 0.625).abs() < 1e-6, "{h}");
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let want = 0.5 * ((sp(-2.0) + sp(0.0)) / 2.0 + (sp(-2.0) + sp(0.5)) / 2.0);
        let v = d_loss(DiscLoss::Vanilla, &real, &fake).double_value(&[]);
        assert!((v - want).abs() < 1e-6, "{v} vs {want}");
    }

    #[test]
    fn adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer() {
        let w = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let nll = (&w * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float); // ∇ = (3, 4), norm 5
        let g = (&w * Tensor::from_slice(&[0.6f32, 0.8])).sum(Kind::Float); // ∇ norm 1
        let lam = adaptive_weight(&nll, &g, &w);
        assert!((lam - 5.0 / (1.0 + 1e-4)).abs() < 1e-4, "{lam}");
        let tiny = (&w * 0.0).sum(Kind::Float);
        assert_eq!(adaptive_weight(&nll, &tiny, &w), 1e4, "clamped at 1e4");
    }
}
