//! Training a VQGAN / TE-VQGAN tokenizer: the one training loop ([`TokenizerTask`], driven by
//! [`crate::runner`]) around the model ([`tessera_models::vqgan::VqModel`]) and its loss
//! ([`tessera_models::vqgan::loss::VqLpipsLoss`], taming's `VQLPIPSWithDiscriminator`).
//!
//! One step is taming's two optimizer steps (`taming/models/vqgan.py` `VQModel.training_step` at
//! CompVis/taming-transformers@3ba01b2): the autoencoder on `L_G`, then the discriminator on
//! `L_D`. Both optimisers are Adam(0.5, 0.9) at `lr = batch·base_lr` (taming's scaling, one
//! device). Before `disc_start` (f = 0) the discriminator's loss and gradients are zero, so its
//! parameters do not move; but taming still calls its Adam, whose step count then stands at
//! `disc_start` when the GAN starts. Adam's bias corrections `1 − βᵗ` are then ≈ 1, so the first
//! real updates are `(1−β1)/√(1−β2) ≈ 1.58×` the cold-start ones (β = 0.5, 0.9). Tessera counts
//! those idle steps too (`loss.disc_adam_counts_idle_steps = true`, the default); `false` starts
//! the count at the first real step.
//!
//! - [`config`]: the run's TOML schema.
//! - [`import`]: perceptual weights and taming / TE-VQGAN checkpoints from outside.

mod config;
mod import;

pub use config::*;
pub use import::*;

/// The run kind of VQGAN / TE-VQGAN checkpoints.
pub const KIND: &str = "vqgan";

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Tensor};
use tessera_data::{Batch, DataLoader, Split};
use tessera_models::disc::PatchGan;
use tessera_models::tokenizer::{ExtraLoss, LossInputs};
use tessera_models::vqgan::loss::VqLpipsLoss;
use tessera_models::vqgan::VqModel;
use tessera_nn::ema::WeightEma;
use tessera_nn::optim::Adam;

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::metrics::Record;
use crate::runner::Task;
use crate::schedule::lr_at;

/// The models and optimisers of a tokenizer run.
pub struct TokenizerTask {
    pub config: TokenizerRunConfig,
    pub device: Device,
    pub vs: VarStore,
    pub model: VqModel,
    pub(crate) disc_vs: VarStore,
    /// taming's `VQLPIPSWithDiscriminator`; its variables live in `disc_vs` and `_lpips_vs`.
    pub loss: VqLpipsLoss,
    _lpips_vs: Option<VarStore>,
    /// Extra terms of `L_G` ([`ExtraLoss`]: LG-VQ's `[lg]`).
    extra: crate::extra_terms::ExtraTerms,
    opt_ae: Adam,
    opt_d: Adam,
    ema: Option<WeightEma>,
    val: Option<DataLoader>,
    translated: Option<DataLoader>,
}

pub(crate) fn trainable(vs: &VarStore) -> Vec<(String, Tensor, bool)> {
    let mut v: Vec<(String, Tensor, bool)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (n, t, true)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

impl TokenizerTask {
    /// Build everything; `root` is the data cache (for validation sets).
    pub fn new(config: TokenizerRunConfig, device: Device, root: &Path) -> Result<Self> {
        config.validate()?;
        // Same seed, same initial weights: runs are reproducible and comparable (λ_o = 0 vs 10).
        tch::manual_seed(config.train.seed as i64);
        let vs = VarStore::new(device);
        let model = VqModel::new(&vs.root(), config.model.clone(), config.quantizer.clone())?;
        let disc_vs = VarStore::new(device);
        let disc = PatchGan::new(&(disc_vs.root() / "loss" / "discriminator"), &config.disc);
        let l = &config.loss;
        let files = l.perceptual_weights.iter().chain(&l.perceptual_heads);
        let (lpips_vs, lpips) = perceptual_net(
            l.perceptual_weight,
            l.perceptual_backbone,
            l.perceptual_head_dropout,
            files,
            device,
        )?;
        let loss = VqLpipsLoss::new(config.loss.clone(), disc, lpips);
        // LG-VQ's heads join the autoencoder's variables (and so its optimiser), as upstream.
        let side = config.model.latent_side();
        let codes = (side * side, config.quantizer.dim);
        let extra =
            crate::extra_terms::ExtraTerms::from_lg(config.lg.as_ref(), &(vs.root() / "lg"), codes, root)?;
        let lr = config.learning_rate();
        let opt_ae = Adam::new(trainable(&vs), lr, config.optim.adam.clone());
        let opt_d = Adam::new(trainable(&disc_vs), lr, config.optim.adam.clone());
        let ema = config
            .optim
            .weight_ema
            .map(|d| WeightEma::new(trainable(&vs).into_iter().map(|(n, t, _)| (n, t)).collect(), d));
        let (val, translated) = crate::tokenizer_eval::validation_loaders(
            &config.data,
            root,
            config.eval.batch_size,
            config.eval.trans_eq,
            device,
        )?;
        let val = Some(val);
        Ok(Self {
            config,
            device,
            vs,
            model,
            disc_vs,
            loss,
            _lpips_vs: lpips_vs,
            extra,
            opt_ae,
            opt_d,
            ema,
            val,
            translated,
        })
    }

    /// Add a term to the generator loss (see [`ExtraLoss`]); LG-VQ's losses join this way.
    pub fn add_loss_term(&mut self, term: Box<dyn ExtraLoss>) {
        self.extra.push(term);
    }

    /// Reconstruction of `x` in eval mode (EMA weights if configured), no gradient.
    pub fn reconstruct(&mut self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        let out = tch::no_grad(|| self.model.forward_t(x, false));
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        let out = out?;
        Ok((out.reconstruction, out.quant.indices))
    }

    /// Code indices of `x` in eval mode (EMA weights if configured), row-major per image.
    ///
    /// # Shapes
    /// `x: (B, 3, H, W)` in `[-1, 1]` → `(B, h·w)` int64
    pub fn encode_codes(&mut self, x: &Tensor) -> Result<Tensor> {
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        let out = tch::no_grad(|| self.model.encode(x, false));
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        Ok(out?.indices.view([x.size()[0], -1]))
    }

    /// Code↔caption retrieval on `n` validation images, when the run has `[lg]` (eval mode, EMA
    /// weights if configured).
    pub fn lg_retrieval(
        &mut self,
        root: &Path,
        n: usize,
    ) -> Result<Option<tessera_eval::retrieval::RetrievalScores>> {
        let Some(lg) = self.extra.find::<crate::lg_term::LgTerm>() else { return Ok(None) };
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        let model = &mut self.model;
        let r = crate::lg_term::retrieval(lg, &self.config.data, root, n, |x| {
            Ok(model.encode(x, false)?.quantized.flatten(2, -1).transpose(1, 2))
        });
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        r.map(Some)
    }

    /// Images in `[-1, 1]` from code indices (eval mode, EMA weights if configured).
    ///
    /// # Shapes
    /// `codes: (B, h·w)` → `(B, 3, H, W)`
    pub fn decode_codes(&mut self, codes: &Tensor) -> Tensor {
        let side = self.config.model.latent_side();
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        let x = tch::no_grad(|| self.model.decode_indices(&codes.view([-1, side, side])).clamp(-1.0, 1.0));
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        x
    }

    /// The generator half of a step: for each of the `k` micro-batches, forward, the losses of
    /// [`Task::train_step`] and backward of `L_G / k` (gradients sum to the mean). Returns the
    /// detached reconstructions when `loss.disc_input = "reuse"` will show them to the
    /// discriminator.
    fn generator_backward(
        &mut self,
        batches: &[Batch],
        step: i64,
        f: f64,
        log: &mut Record,
    ) -> Result<Vec<Tensor>> {
        let k = batches.len() as f64;
        let mut fakes = Vec::new();
        for batch in batches {
            let x = &batch.images;
            let out = self.model.forward_t(x, true)?;
            let parts = self.loss.generator(x, &out, self.model.last_layer(), f);
            let codes = out.quant.quantized.flatten(2, -1).transpose(1, 2);
            let inputs = LossInputs {
                images: x,
                captions: &batch.captions,
                reconstruction: &out.reconstruction,
                codes: &codes,
            };
            let total = self.extra.add_to(parts.total.shallow_clone(), &inputs, step, log, k)?;
            if let Some(g) = &parts.g {
                add_mean(log, "loss/g", finite(step, "g_loss", g)?, k);
            }
            add_mean(log, "loss/total", finite(step, "generator loss", &total)?, k);
            add_mean(log, "loss/rec", finite(step, "nll", &parts.nll)?, k);
            add_mean(log, "loss/q", out.quant.loss.double_value(&[]), k);
            add_mean(log, "loss/commit", out.quant.losses.commitment.double_value(&[]), k);
            add_mean(log, "loss/ortho", out.quant.losses.orthogonal.double_value(&[]), k);
            if let Some(p) = &parts.perceptual {
                add_mean(log, "loss/perceptual", p.double_value(&[]), k);
            }
            add_mean(log, "d_weight", parts.d_weight, k);
            add_mean(log, "perplexity", out.quant.perplexity, k);
            (total / k).backward();
            if f > 0.0 && self.config.loss.disc_input == DiscInput::Reuse {
                fakes.push(out.reconstruction.detach());
            }
        }
        Ok(fakes)
    }

    /// The discriminator half: `L_D / k` backward for each micro-batch, on fakes chosen by
    /// `loss.disc_input` (`fakes` for "reuse"; recomputed by the updated generator otherwise).
    fn discriminator_backward(
        &mut self,
        batches: &[Batch],
        fakes: &[Tensor],
        step: i64,
        f: f64,
        log: &mut Record,
    ) -> Result<()> {
        let k = batches.len() as f64;
        self.opt_d.zero_grad();
        for (i, batch) in batches.iter().enumerate() {
            let x = &batch.images;
            let fake = match self.config.loss.disc_input {
                DiscInput::Reuse => fakes[i].shallow_clone(),
                DiscInput::Recompute => tch::no_grad(|| self.model.forward_t(x, false))?.reconstruction,
            };
            let d_loss = self.loss.discriminator(x, &fake) * f;
            add_mean(log, "loss/disc", finite(step, "discriminator loss", &d_loss)?, k);
            (d_loss / k).backward();
        }
        Ok(())
    }

    /// Validation metrics over `val_batches` of the validation split and the translated set
    /// ([`tessera_eval::reconstruction`]).
    pub fn evaluate(&mut self) -> Result<Record> {
        let val = self.val.clone().expect("validation loader");
        let translated = self.translated.clone();
        let (limit, k) = (self.config.eval.val_batches, self.config.quantizer.num_codes);
        let side = self.config.model.latent_side();
        crate::tokenizer_eval::evaluate_loaders(&val, translated.as_ref(), limit, k, side, |x| {
            self.reconstruct(x)
        })
    }
}

/// Adds `v / k` to `log[key]`: the mean of a logged value over `k` micro-batches.
pub(crate) fn add_mean(log: &mut Record, key: &str, v: f64, k: f64) {
    *log.entry(key.into()).or_insert(0.0) += v / k;
}

pub(crate) fn finite(step: i64, name: &str, t: &Tensor) -> Result<f64> {
    let v = t.double_value(&[]);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(TrainError::NonFinite { step, what: format!("{name} = {v}") })
    }
}

impl Task for TokenizerTask {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// taming's two optimizer steps (spec §1.4, §1.5) on one batch or on `accumulate`
    /// micro-batches, each loss divided by their number so that the summed gradients are a mean:
    ///
    /// - generator: `L = L_nll + λ·f·g + codebook_weight·(L_vq + L_ortho)`, with
    ///   `L_nll = mean(|x − x̂| + w_p·P(x, x̂))` (`(x − x̂)²` with `loss.pixel = "l2"`), `g = −mean(D(x̂))` and the adaptive weight
    ///   `λ = clamp(‖∇_W L_nll‖ / (‖∇_W g‖ + 1e-4), 0, 1e4)·disc_weight` on the last decoder layer
    ///   `W`, per micro-batch; `f = disc_factor` from `disc_start` on, else 0;
    /// - discriminator (when `f > 0`): `L_D = f·½(mean relu(1 − D(x)) + mean relu(1 + D(x̂)))`
    ///   (hinge) on reconstructions chosen by `loss.disc_input`.
    fn train_step(&mut self, batches: &[Batch], step: i64) -> Result<Record> {
        let cfg = &self.config;
        let lr = lr_at(
            cfg.learning_rate(),
            step,
            cfg.train.max_steps,
            cfg.optim.warmup_steps,
            cfg.optim.decay,
            cfg.optim.min_lr_ratio,
        );
        let f = cfg.loss.disc_factor_at(step);
        let clip = cfg.optim.clip_grad_norm;
        self.opt_ae.lr = lr;
        self.opt_d.lr = lr;
        let mut log = Record::new();
        self.opt_ae.zero_grad();
        // The discriminator is frozen during the generator step (Lightning's `toggle_optimizer`):
        // `g` still back-propagates through it to x̂, but no gradient is computed for its weights.
        self.disc_vs.freeze();
        let fakes = self.generator_backward(batches, step, f, &mut log);
        self.disc_vs.unfreeze();
        let fakes = fakes?;
        log.insert("usage_window".into(), self.model.quantize.stats.window_usage());
        log.insert("lr".into(), lr);
        if let Some(c) = clip {
            log.insert("grad_norm".into(), self.opt_ae.clip_grad_norm(c));
        }
        self.opt_ae.step();
        if let Some(e) = &mut self.ema {
            e.update();
        }
        if f > 0.0 {
            self.discriminator_backward(batches, &fakes, step, f, &mut log)?;
            self.opt_d.step();
        } else if self.config.loss.disc_adam_counts_idle_steps {
            // taming's zero-gradient step: moments stay 0, parameters stay put, the count grows.
            self.opt_d.step += 1;
        }
        Ok(log)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut s = checkpoint::vars(&self.vs, "model.");
        s.extend(checkpoint::vars(&self.disc_vs, "disc."));
        s.extend(self.opt_ae.state("opt_ae"));
        s.extend(self.opt_d.state("opt_d"));
        if let Some(e) = &self.ema {
            s.extend(e.state("ema"));
        }
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
        self.opt_d.load_state("opt_d", t).map_err(mismatch)?;
        if let Some(e) = &mut self.ema {
            e.load_state("ema", t);
        }
        Ok(())
    }

    fn validate(&mut self, _step: i64) -> Result<Record> {
        self.evaluate()
    }

    fn sample_grid(&mut self, batch: &Batch) -> Result<image::RgbImage> {
        reconstruction_grid(batch, |x| self.reconstruct(x))
    }

    fn plots(&self) -> Vec<(&'static str, &'static str, Vec<&'static str>, bool)> {
        vec![
            ("train_losses", "train", vec!["loss/total", "loss/rec", "loss/q", "loss/perceptual"], true),
            ("gan", "train", vec!["loss/g", "loss/disc"], false),
            ("val_quality", "val", vec!["psnr"], false),
            ("val_codes", "val", vec!["usage", "trans_eq_acc", "ssim"], false),
        ]
    }
}

/// Train a tokenizer into `dir`.
pub fn train(
    config: TokenizerRunConfig,
    device: Device,
    root: &Path,
    dir: &Path,
    resume: bool,
) -> Result<(TokenizerTask, crate::runner::Summary)> {
    // Perceptual weights named relative to the run (as a stored config names them) resolve there.
    let config = perceptual_paths(config, |p| tessera_core::fsutil::resolve_in_run(p, dir));
    // The task first: it validates the config before a loader is built from it.
    let mut task = TokenizerTask::new(config.clone(), device, root)?;
    // The stored config names them relative to the run, so that runs can move with their weights.
    let stored = perceptual_paths(config.clone(), |p| tessera_core::fsutil::relative_to(p, dir));
    let toml = tessera_core::config::to_toml(&stored);
    let train_set = config.data.open(Split::Train, root)?;
    let loader = DataLoader::new(train_set, config.data.loader.clone(), device);
    let summary = crate::runner::run(&mut task, &loader, &config.train, dir, &toml, resume)?;
    Ok((task, summary))
}

/// `config` with `f` applied to the perceptual network's weight paths.
fn perceptual_paths(mut config: TokenizerRunConfig, f: impl Fn(&Path) -> PathBuf) -> TokenizerRunConfig {
    map_paths([&mut config.loss.perceptual_weights, &mut config.loss.perceptual_heads], f);
    config
}

/// Apply `f` to each path that is set (a run's stored paths: resolved in it, or made relative).
pub(crate) fn map_paths<const N: usize>(paths: [&mut Option<PathBuf>; N], f: impl Fn(&Path) -> PathBuf) {
    for p in paths {
        *p = p.as_deref().map(&f);
    }
}

/// Up to 8 images of `batch` above their reconstructions.
pub(crate) fn reconstruction_grid(
    batch: &Batch,
    reconstruct: impl FnOnce(&Tensor) -> Result<(Tensor, Tensor)>,
) -> Result<image::RgbImage> {
    let n = batch.images.size()[0].min(8);
    let x = batch.images.narrow(0, 0, n);
    let (xr, _) = reconstruct(&x)?;
    let mut imgs = tessera_data::tensor::tensor_to_images(&x)?;
    imgs.extend(tessera_data::tensor::tensor_to_images(&xr)?);
    Ok(tessera_core::viz::image_grid(&imgs, n as usize, 2))
}

/// Rebuild a trained tokenizer from its run directory (config + last checkpoint).
pub fn load_run(dir: &Path, device: Device, root: &Path) -> Result<TokenizerTask> {
    let ckpt = dir.join("checkpoints/last.safetensors");
    let ck: checkpoint::Checkpoint<crate::runner::Meta> = checkpoint::load(&ckpt)?;
    if ck.meta.kind != KIND {
        let reason = format!("it is a `{}` run, not a VQGAN tokenizer", ck.meta.kind);
        return Err(TrainError::Mismatch { path: ckpt, reason });
    }
    let config: TokenizerRunConfig =
        tessera_core::config::load_str(&ck.meta.config, &[], &ckpt.display().to_string())
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let config = perceptual_paths(config, |p| tessera_core::fsutil::resolve_in_run(p, dir));
    let mut task = TokenizerTask::new(config, device, root)?;
    task.load_state(&ck.tensors, &ckpt)?;
    Ok(task)
}

#[cfg(test)]
mod tests;
