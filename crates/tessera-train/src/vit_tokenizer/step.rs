//! One ViT-VQGAN training step, as enhancing-transformers takes it
//! (`enhancing/modules/stage1/vitvqgan.py` `ViTVQ.training_step` / `configure_optimizers`@e1c185d,
//! run by PyTorch Lightning 1.5's automatic optimisation with two optimizers):
//!
//! 1. the autoencoder on `L_G` (discriminator frozen), AdamW step;
//! 2. from `disc_start` on, the discriminator on `L_D` (+ lazy R1) on reconstructions recomputed
//!    by the *updated* autoencoder (Lightning calls `training_step` again for the second
//!    optimizer), AdamW step.
//!
//! Both AdamWs cover every trainable parameter (biases, LayerNorm weights and the codebook decay
//! too: upstream passes `parameters()` without groups). `tests/vit_step.rs` checks two steps, R1
//! included, against upstream's own modules and optimizers.

use std::collections::HashMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Tensor};
use tessera_data::Batch;
use tessera_models::stylegan_disc::StyleDiscriminator;
use tessera_models::tokenizer::LossInputs;
use tessera_models::vit::loss::VitLoss;
use tessera_models::vit::VitVq;
use tessera_nn::optim::Adam;

use super::VitRunConfig;
use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::metrics::Record;
use crate::schedule::lr_at;
use crate::tokenizer::{add_mean, finite, perceptual_net, trainable};

/// The models and optimisers of a ViT-VQGAN run: everything a step changes.
pub struct VitTrainer {
    pub config: VitRunConfig,
    pub vs: VarStore,
    pub model: VitVq,
    /// Variables `loss.discriminator.…` (upstream's state_dict names).
    pub disc_vs: VarStore,
    pub loss: VitLoss,
    _lpips_vs: Option<VarStore>,
    /// Extra terms of the autoencoder's loss (LG-VQ's `[lg]`).
    pub(crate) extra: crate::extra_terms::ExtraTerms,
    opt_ae: Adam,
    opt_d: Adam,
}

/// Every parameter decays (upstream's AdamW over `parameters()`).
fn all_decay(vs: &VarStore) -> Vec<(String, Tensor, bool)> {
    trainable(vs).into_iter().map(|(n, t, _)| (n, t, true)).collect()
}

impl VitTrainer {
    /// Build the models (seeded by `train.seed`) and their optimisers; `root` is the data cache
    /// (where `[lg]` finds its text encoder).
    pub fn new(config: VitRunConfig, device: Device, root: &Path) -> Result<Self> {
        config.validate()?;
        tch::manual_seed(config.train.seed as i64);
        let vs = VarStore::new(device);
        let model = VitVq::new(&vs.root(), config.model.clone(), config.quantizer.clone())?;
        let disc_vs = VarStore::new(device);
        let disc = StyleDiscriminator::new(
            &(disc_vs.root() / "loss" / "discriminator"),
            &config.disc,
            config.model.resolution,
        );
        let l = &config.loss;
        let files = l.perceptual_weights.iter().chain(&l.perceptual_heads);
        let (lpips_vs, lpips) =
            perceptual_net(l.perceptual_weight, l.perceptual_backbone, false, files, device)?;
        let loss = VitLoss::new(config.loss.clone(), disc, lpips);
        let n = config.model.resolution / config.model.patch_size;
        let codes = (n * n, config.quantizer.dim);
        let extra =
            crate::extra_terms::ExtraTerms::from_lg(config.lg.as_ref(), &(vs.root() / "lg"), codes, root)?;
        let lr = config.optim.learning_rate;
        let opt_ae = Adam::new(all_decay(&vs), lr, config.optim.adam.clone());
        let opt_d = Adam::new(all_decay(&disc_vs), lr, config.optim.adam.clone());
        Ok(VitTrainer { config, vs, model, disc_vs, loss, _lpips_vs: lpips_vs, extra, opt_ae, opt_d })
    }

    /// The scheduled learning rate at `step` (warm-up, then the configured decay).
    pub fn lr_at(&self, step: i64) -> f64 {
        let o = &self.config.optim;
        lr_at(o.learning_rate, step, self.config.train.max_steps, o.warmup_steps, o.decay, o.min_lr_ratio)
    }

    /// One step at learning rate `lr` over `batches` (gradient accumulation: each batch's loss
    /// is divided by their number).
    pub fn step(&mut self, batches: &[Batch], step: i64, lr: f64) -> Result<Record> {
        self.opt_ae.lr = lr;
        self.opt_d.lr = lr;
        let mut log = Record::new();
        self.opt_ae.zero_grad();
        self.disc_vs.freeze();
        let g = self.generator_backward(batches, step, &mut log);
        self.disc_vs.unfreeze();
        g?;
        log.insert("usage_window".into(), self.model.quantizer.stats.window_usage());
        log.insert("lr".into(), lr);
        self.opt_ae.step();
        if self.loss.disc_factor(step) > 0.0 {
            self.discriminator_backward(batches, step, &mut log)?;
            self.opt_d.step();
        }
        Ok(log)
    }

    fn generator_backward(&mut self, batches: &[Batch], step: i64, log: &mut Record) -> Result<()> {
        let k = batches.len() as f64;
        for batch in batches {
            let x = &batch.images;
            let out = self.model.forward_t(x, true)?;
            let parts = self.loss.generator(x, &out.reconstruction, &out.quant.loss, step);
            let inputs = LossInputs {
                images: x,
                captions: &batch.captions,
                reconstruction: &out.reconstruction,
                codes: &out.quant.quantized,
            };
            let total = self.extra.add_to(parts.total.shallow_clone(), &inputs, step, log, k)?;
            add_mean(log, "loss/total", finite(step, "generator loss", &total)?, k);
            add_mean(log, "loss/rec", finite(step, "reconstruction loss", &parts.rec)?, k);
            add_mean(log, "loss/q", out.quant.loss.double_value(&[]), k);
            if let Some(g) = &parts.g {
                add_mean(log, "loss/g", finite(step, "g_loss", g)?, k);
            }
            if let Some(p) = &parts.perceptual {
                add_mean(log, "loss/perceptual", p.double_value(&[]), k);
            }
            add_mean(log, "perplexity", out.quant.perplexity, k);
            (total / k).backward();
        }
        Ok(())
    }

    /// The reconstructions come from the updated autoencoder, in eval mode (upstream runs it in
    /// train mode, which differs only in codebook-usage bookkeeping) and without a graph (its
    /// loss detaches them).
    fn discriminator_backward(&mut self, batches: &[Batch], step: i64, log: &mut Record) -> Result<()> {
        let k = batches.len() as f64;
        self.opt_d.zero_grad();
        for batch in batches {
            let x = &batch.images;
            let fake = tch::no_grad(|| self.model.forward_t(x, false))?.reconstruction;
            let (d_loss, r1) = self.loss.discriminator(x, &fake, step);
            add_mean(log, "loss/disc", finite(step, "discriminator loss", &d_loss)?, k);
            if let Some(r1) = r1 {
                add_mean(log, "r1", r1.double_value(&[]), k);
            }
            (d_loss / k).backward();
        }
        Ok(())
    }

    /// Everything a checkpoint holds: `model.…`, `disc.…` and both optimisers' moments.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut s = checkpoint::vars(&self.vs, "model.");
        s.extend(checkpoint::vars(&self.disc_vs, "disc."));
        s.extend(self.opt_ae.state("opt_ae"));
        s.extend(self.opt_d.state("opt_d"));
        s
    }

    /// Restore [`Self::state`] from a checkpoint at `path`.
    pub fn load_state(&mut self, t: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        checkpoint::restore_vars(&self.vs, "model.", t, path)?;
        checkpoint::restore_vars(&self.disc_vs, "disc.", t, path)?;
        let mismatch = |e: tessera_nn::optim::OptimError| TrainError::Mismatch {
            path: path.into(),
            reason: e.to_string(),
        };
        self.opt_ae.load_state("opt_ae", t).map_err(mismatch)?;
        self.opt_d.load_state("opt_d", t).map_err(mismatch)
    }
}
