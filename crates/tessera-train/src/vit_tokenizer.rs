//! Training a ViT-VQGAN tokenizer: the one training loop ([`crate::runner`]) around
//! [`tessera_models::vit::VitVq`] and its loss ([`tessera_models::vit::loss::VitLoss`]).
//!
//! One step is enhancing-transformers' two optimizer steps (`enhancing/modules/stage1/vitvqgan.py`
//! `ViTVQ.training_step`@e1c185d): the autoencoder on `L_G` with the discriminator frozen, then
//! the discriminator on `L_D` (with lazy R1) on reconstructions recomputed by the updated
//! autoencoder, as Lightning runs the second optimizer's step. Both optimisers are AdamW
//! (0.9, 0.99), weight decay 1e-4 on every parameter, at the scheduled learning rate.
//!
//! - [`config`]: the run's TOML schema.

mod config;

pub use config::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Tensor};
use tessera_data::{Batch, DataLoader, Split};
use tessera_models::perceptual::Lpips;
use tessera_models::stylegan_disc::StyleDiscriminator;
use tessera_models::vit::loss::VitLoss;
use tessera_models::vit::VitVq;
use tessera_nn::optim::Adam;

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::metrics::Record;
use crate::runner::Task;
use crate::schedule::lr_at;
use crate::tokenizer::{add_mean, finite, load_perceptual, trainable};

/// The run kind of ViT-VQGAN checkpoints.
pub const KIND: &str = "vit-vqgan";

/// The models and optimisers of a ViT-VQGAN run.
pub struct VitTask {
    pub config: VitRunConfig,
    pub device: Device,
    pub vs: VarStore,
    pub model: VitVq,
    disc_vs: VarStore,
    pub loss: VitLoss,
    _lpips_vs: Option<VarStore>,
    opt_ae: Adam,
    opt_d: Adam,
    val: DataLoader,
    translated: Option<DataLoader>,
}

/// Every parameter decays (upstream's AdamW over `parameters()`).
fn all_decay(vs: &VarStore) -> Vec<(String, Tensor, bool)> {
    trainable(vs).into_iter().map(|(n, t, _)| (n, t, true)).collect()
}

impl VitTask {
    /// Build everything; `root` is the data cache (for validation sets).
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
        let (lpips_vs, lpips) = if config.loss.perceptual_weight > 0.0 {
            let mut pvs = VarStore::new(device);
            let lp = Lpips::new(&pvs.root(), config.loss.perceptual_backbone, false);
            let files: Vec<&Path> = config
                .loss
                .perceptual_weights
                .iter()
                .chain(&config.loss.perceptual_heads)
                .map(|p| p.as_path())
                .collect();
            load_perceptual(&mut pvs, &files)?;
            (Some(pvs), Some(lp))
        } else {
            (None, None)
        };
        let loss = VitLoss::new(config.loss.clone(), disc, lpips);
        let lr = config.optim.learning_rate;
        let opt_ae = Adam::new(all_decay(&vs), lr, config.optim.adam.clone());
        let opt_d = Adam::new(all_decay(&disc_vs), lr, config.optim.adam.clone());
        let (val, translated) = crate::tokenizer_eval::validation_loaders(
            &config.data,
            root,
            config.eval.batch_size,
            config.eval.trans_eq,
            device,
        )?;
        Ok(VitTask {
            config,
            device,
            vs,
            model,
            disc_vs,
            loss,
            _lpips_vs: lpips_vs,
            opt_ae,
            opt_d,
            val,
            translated,
        })
    }

    /// Reconstruction and codes `(B, N)` of `x` in eval mode, no gradient.
    pub fn reconstruct(&mut self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let out = tch::no_grad(|| self.model.forward_t(x, false))?;
        Ok((out.reconstruction, out.quant.indices))
    }

    /// Validation metrics ([`crate::tokenizer_eval::evaluate_loaders`]).
    pub fn evaluate(&mut self) -> Result<Record> {
        let (val, translated) = (self.val.clone(), self.translated.clone());
        let (limit, k) = (self.config.eval.val_batches, self.config.quantizer.num_codes);
        let side = self.config.model.latent_side();
        crate::tokenizer_eval::evaluate_loaders(&val, translated.as_ref(), limit, k, side, |x| {
            self.reconstruct(x)
        })
    }

    fn generator_backward(&mut self, batches: &[Batch], step: i64, log: &mut Record) -> Result<()> {
        let k = batches.len() as f64;
        for batch in batches {
            let x = &batch.images;
            let out = self.model.forward_t(x, true)?;
            let parts = self.loss.generator(x, &out.reconstruction, &out.quant.loss, step);
            add_mean(log, "loss/total", finite(step, "generator loss", &parts.total)?, k);
            add_mean(log, "loss/rec", finite(step, "reconstruction loss", &parts.rec)?, k);
            add_mean(log, "loss/q", out.quant.loss.double_value(&[]), k);
            if let Some(g) = &parts.g {
                add_mean(log, "loss/g", finite(step, "g_loss", g)?, k);
            }
            if let Some(p) = &parts.perceptual {
                add_mean(log, "loss/perceptual", p.double_value(&[]), k);
            }
            add_mean(log, "perplexity", out.quant.perplexity, k);
            (parts.total / k).backward();
        }
        Ok(())
    }

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
}

impl Task for VitTask {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// The autoencoder step on `L_G` (discriminator frozen), then, from `disc_start` on, the
    /// discriminator step on `L_D` (+ R1 every `r1_every` steps); see [`VitLoss`].
    fn train_step(&mut self, batches: &[Batch], step: i64) -> Result<Record> {
        let o = &self.config.optim;
        let lr = lr_at(
            o.learning_rate,
            step,
            self.config.train.max_steps,
            o.warmup_steps,
            o.decay,
            o.min_lr_ratio,
        );
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

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut s = checkpoint::vars(&self.vs, "model.");
        s.extend(checkpoint::vars(&self.disc_vs, "disc."));
        s.extend(self.opt_ae.state("opt_ae"));
        s.extend(self.opt_d.state("opt_d"));
        s
    }

    fn load_state(&mut self, t: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        checkpoint::restore_vars(&self.vs, "model.", t, path)?;
        checkpoint::restore_vars(&self.disc_vs, "disc.", t, path)?;
        let mismatch = |e: tessera_nn::optim::OptimError| TrainError::Mismatch {
            path: path.into(),
            reason: e.to_string(),
        };
        self.opt_ae.load_state("opt_ae", t).map_err(mismatch)?;
        self.opt_d.load_state("opt_d", t).map_err(mismatch)
    }

    fn validate(&mut self, _step: i64) -> Result<Record> {
        self.evaluate()
    }

    fn sample_grid(&mut self, batch: &Batch) -> Result<image::RgbImage> {
        crate::tokenizer::reconstruction_grid(batch, |x| self.reconstruct(x))
    }

    fn plots(&self) -> Vec<(&'static str, &'static str, Vec<&'static str>, bool)> {
        vec![
            ("train_losses", "train", vec!["loss/total", "loss/rec", "loss/q", "loss/perceptual"], true),
            ("gan", "train", vec!["loss/g", "loss/disc", "r1"], false),
            ("val_quality", "val", vec!["psnr"], false),
            ("val_codes", "val", vec!["usage", "trans_eq_acc", "ssim"], false),
        ]
    }
}

/// Train a ViT-VQGAN into `dir`.
pub fn train(
    config: VitRunConfig,
    device: Device,
    root: &Path,
    dir: &Path,
    resume: bool,
) -> Result<(VitTask, crate::runner::Summary)> {
    let config = perceptual_paths(config, |p| tessera_core::fsutil::resolve_in_run(p, dir));
    let mut task = VitTask::new(config.clone(), device, root)?;
    let stored = perceptual_paths(config.clone(), |p| tessera_core::fsutil::relative_to(p, dir));
    let toml = tessera_core::config::to_toml(&stored);
    let loader = DataLoader::new(config.data.open(Split::Train, root)?, config.data.loader.clone(), device);
    let summary = crate::runner::run(&mut task, &loader, &config.train, dir, &toml, resume)?;
    Ok((task, summary))
}

fn perceptual_paths(mut config: VitRunConfig, f: impl Fn(&Path) -> PathBuf) -> VitRunConfig {
    crate::tokenizer::map_paths([&mut config.loss.perceptual_weights, &mut config.loss.perceptual_heads], f);
    config
}

/// The model of a ViT-VQGAN run, for inference (`model.` variables of its last checkpoint).
pub fn load_model(
    ck: &checkpoint::Checkpoint<crate::runner::Meta>,
    device: Device,
) -> Result<(VarStore, VitVq)> {
    let config: VitRunConfig =
        tessera_core::config::load_str(&ck.meta.config, &[], &ck.path.display().to_string())
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let vs = VarStore::new(device);
    let model = VitVq::new(&vs.root(), config.model, config.quantizer)?;
    checkpoint::restore_vars(&vs, "model.", &ck.tensors, &ck.path)?;
    Ok((vs, model))
}
