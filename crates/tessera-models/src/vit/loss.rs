//! ViT-VQGAN's training loss, as enhancing-transformers computes it
//! (`enhancing/losses/vqperceptual.py`@e1c185d, `VQLPIPSWithDiscriminator`; spec §6.1–6.2):
//!
//! - generator: `L_G = w_l1·mean|x − x̂| + w_l2·mean(x − x̂)² + w_p·mean LPIPS(x, x̂)
//!   + f·w_adv·g(D(x̂)) + w_q·L_VQ`, with `g = mean softplus(−D(x̂))` (vanilla) and `f` = 1 from
//!   `disc_start` on;
//! - discriminator: `L_D = f·½(mean softplus(−D(x)) + mean softplus(D(x̂)))`, plus lazy R1
//!   `γ·every/2 · mean_b ‖∇_x D(x)‖²` every `r1_every` steps.
//!
//! Weights default to the paper's and the public implementations' (L2 1.0, perceptual 0.1,
//! adversarial 0.1, codebook 1.0, R1 γ = 10 every 16). Upstream calls its L1 term "loglaplace"
//! (weight 0.0 in every public config; the paper's notes give 0.1 for a logit-Laplace loss):
//! `loglaplace_weight` is that term, off by default.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::perceptual::{Backbone, Lpips};
use crate::stylegan_disc::{r1_of, StyleDiscriminator};

/// The GAN objective (upstream `disc_loss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// Non-saturating softplus (StyleGAN2).
    #[default]
    Vanilla,
    Hinge,
    /// Upstream's `least_square_d_loss` (labels −1 / +1, generator target 0).
    LeastSquare,
}

impl GanLoss {
    /// The generator's term on fake logits.
    pub fn generator(self, fake: &Tensor) -> Tensor {
        match self {
            GanLoss::Vanilla => (-fake).softplus().mean(Kind::Float),
            GanLoss::Hinge => -fake.mean(Kind::Float),
            // Upstream's least-squares GAN labels fakes −1 and reals +1 for D, and asks G for 0.
            GanLoss::LeastSquare => fake.square().mean(Kind::Float),
        }
    }

    /// The discriminator's loss on real and fake logits.
    pub fn discriminator(self, real: &Tensor, fake: &Tensor) -> Tensor {
        let half = |a: Tensor, b: Tensor| (a.mean(Kind::Float) + b.mean(Kind::Float)) * 0.5;
        match self {
            GanLoss::Vanilla => half((-real).softplus(), fake.softplus()),
            GanLoss::Hinge => half((-real + 1.0).relu(), (fake + 1.0).relu()),
            GanLoss::LeastSquare => half((-real + 1.0).square(), (fake + 1.0).square()),
        }
    }
}

/// `[loss]` of a ViT-VQGAN run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VitLossConfig {
    /// Upstream's "loglaplace" term, `mean |x − x̂|` (0 in the public configs).
    pub loglaplace_weight: f64,
    /// Upstream's "loggaussian" term, `mean (x − x̂)²`.
    pub loggaussian_weight: f64,
    pub perceptual_weight: f64,
    pub perceptual_backbone: Backbone,
    pub perceptual_weights: Option<PathBuf>,
    pub perceptual_heads: Option<PathBuf>,
    pub adversarial_weight: f64,
    pub codebook_weight: f64,
    pub disc_start: i64,
    pub disc_loss: GanLoss,
    pub r1_gamma: f64,
    /// R1 runs on steps that are multiples of this (upstream: batch indices within an epoch).
    pub r1_every: i64,
}

impl Default for VitLossConfig {
    fn default() -> Self {
        VitLossConfig {
            loglaplace_weight: 0.0,
            loggaussian_weight: 1.0,
            perceptual_weight: 0.1,
            perceptual_backbone: Backbone::Vgg16,
            perceptual_weights: None,
            perceptual_heads: None,
            adversarial_weight: 0.1,
            codebook_weight: 1.0,
            disc_start: 0,
            disc_loss: GanLoss::Vanilla,
            r1_gamma: 10.0,
            r1_every: 16,
        }
    }
}

impl tessera_core::Validate for VitLossConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        for (k, w) in [
            ("loglaplace_weight", self.loglaplace_weight),
            ("loggaussian_weight", self.loggaussian_weight),
            ("perceptual_weight", self.perceptual_weight),
            ("adversarial_weight", self.adversarial_weight),
            ("codebook_weight", self.codebook_weight),
            ("r1_gamma", self.r1_gamma),
        ] {
            c.weight(k, w);
        }
        c.int("disc_start", self.disc_start, 0, i64::MAX, "the step the GAN terms start");
        c.int("r1_every", self.r1_every, 1, 1_000_000, "steps between lazy R1 penalties");
        c.rule(
            self.perceptual_weight == 0.0 || self.perceptual_weights.is_some(),
            "perceptual_weights",
            "perceptual_weight > 0 needs the network's weights (user-supplied VGG16, or `tessera train perceptual`), or set perceptual_weight = 0",
        );
    }
}

/// The terms of one generator loss, for logging.
#[derive(Debug)]
pub struct VitLossParts {
    pub total: Tensor,
    pub rec: Tensor,
    pub perceptual: Option<Tensor>,
    pub g: Option<Tensor>,
}

/// The loss with its discriminator and (optional) perceptual network.
#[derive(Debug)]
pub struct VitLoss {
    pub config: VitLossConfig,
    pub disc: StyleDiscriminator,
    lpips: Option<Lpips>,
}

impl VitLoss {
    pub fn new(config: VitLossConfig, disc: StyleDiscriminator, lpips: Option<Lpips>) -> Self {
        VitLoss { config, disc, lpips }
    }

    /// 1 from `disc_start` on, else 0.
    pub fn disc_factor(&self, step: i64) -> f64 {
        if step >= self.config.disc_start {
            1.0
        } else {
            0.0
        }
    }

    /// # Shapes
    /// `x, xrec: (B, 3, H, W)`, `qloss`: scalar
    pub fn generator(&self, x: &Tensor, xrec: &Tensor, qloss: &Tensor, step: i64) -> VitLossParts {
        let c = &self.config;
        let l2 = (x - xrec).square().mean(Kind::Float) * c.loggaussian_weight;
        let rec = if c.loglaplace_weight > 0.0 {
            l2 + (x - xrec).abs().mean(Kind::Float) * c.loglaplace_weight
        } else {
            l2
        };
        let perceptual = self
            .lpips
            .as_ref()
            .filter(|_| c.perceptual_weight > 0.0)
            .map(|lp| lp.forward_t(x, xrec, false).mean(Kind::Float));
        let nll = match &perceptual {
            Some(p) => &rec + p * c.perceptual_weight,
            None => rec.shallow_clone(),
        };
        let f = self.disc_factor(step);
        let g =
            (f > 0.0 && c.adversarial_weight > 0.0).then(|| c.disc_loss.generator(&self.disc.forward(xrec)));
        let adversarial = match &g {
            Some(g) => nll + g * (f * c.adversarial_weight),
            None => nll,
        };
        let total = adversarial + qloss * c.codebook_weight;
        VitLossParts { total, rec, perceptual, g }
    }

    /// The discriminator's loss at `step` (zero before `disc_start`), and the R1 value when it ran.
    /// With R1, one forward of the real images serves the GAN term and the penalty.
    pub fn discriminator(&self, x: &Tensor, fake: &Tensor, step: i64) -> (Tensor, Option<Tensor>) {
        let c = &self.config;
        let f = self.disc_factor(step);
        let do_r1 = f > 0.0 && step % c.r1_every == 0 && c.r1_gamma > 0.0;
        let real = if do_r1 { x.detach().set_requires_grad(true) } else { x.detach() };
        let logits_real = self.disc.forward(&real);
        let gan = c.disc_loss.discriminator(&logits_real, &self.disc.forward(&fake.detach())) * f;
        if do_r1 {
            let r1 = r1_of(&logits_real, &real);
            let total = &gan + &r1 * (c.r1_gamma * c.r1_every as f64 / 2.0);
            (total, Some(r1))
        } else {
            (gan, None)
        }
    }
}
