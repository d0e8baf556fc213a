//! One AugVAE training step, as L-Verse takes it (`latent_verse/models/vqvae.py`
//! `training_step` / `configure_optimizers`@e52ed9f under PyTorch Lightning): forward (the shared
//! EMA codebook moves once per quantised level), `L = rec (+ 0.1·LPIPS) + Σ β·commitment`, one
//! AdamW step over every trainable parameter; ReduceLROnPlateau on the training loss.
//! `tests/augvae_upstream.rs` checks two steps against upstream's own modules and optimizer.

use std::collections::HashMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Tensor};
use tessera_data::Batch;
use tessera_models::augvae::loss::AugVaeLoss;
use tessera_models::augvae::AugVae;
use tessera_models::tokenizer::{ImageTokenizer, LossInputs};
use tessera_nn::optim::Adam;

use super::AugVaeRunConfig;
use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::metrics::Record;
use crate::plateau::Plateau;
use crate::tokenizer::{add_mean, finite, perceptual_net, trainable};

/// The model, optimiser and schedule of an AugVAE run: everything a step changes.
pub struct AugVaeTrainer {
    pub config: AugVaeRunConfig,
    pub vs: VarStore,
    pub model: AugVae,
    pub loss: AugVaeLoss,
    _lpips_vs: Option<VarStore>,
    /// Extra terms of the loss (LG-VQ's `[lg]`, on the decoded level's codes).
    pub(crate) extra: crate::extra_terms::ExtraTerms,
    opt: Adam,
    /// The plateau scheduler, and the sum and count of total losses since its last check.
    plateau: Option<(Plateau, f64, f64)>,
}

impl AugVaeTrainer {
    /// Build the model (seeded by `train.seed`) and its optimiser; `root` is the data cache
    /// (where `[lg]` finds its text encoder).
    pub fn new(config: AugVaeRunConfig, device: Device, root: &Path) -> Result<Self> {
        config.validate()?;
        tch::manual_seed(config.train.seed as i64);
        let vs = VarStore::new(device);
        let model = AugVae::new(&vs.root(), config.model.clone(), config.quantizer.clone())?;
        let l = &config.loss;
        let weight = if l.loss_type.uses_lpips() { l.perceptual_weight } else { 0.0 };
        let files = l.perceptual_weights.iter().chain(&l.perceptual_heads);
        let (lpips_vs, lpips) = perceptual_net(weight, l.perceptual_backbone, false, files, device)?;
        let loss = AugVaeLoss::new(config.loss.clone(), lpips);
        let side = model.layout().grids[0].0;
        let codes = (side * side, config.quantizer.dim);
        let extra =
            crate::extra_terms::ExtraTerms::from_lg(config.lg.as_ref(), &(vs.root() / "lg"), codes, root)?;
        // Upstream's AdamW over `get_trainable_params()`: every parameter decays.
        let params = trainable(&vs).into_iter().map(|(n, t, _)| (n, t, true)).collect();
        let lr = config.effective_lr();
        let opt = Adam::new(params, lr, config.optim.adam.clone());
        let plateau = config.optim.plateau.as_ref().map(|_| (Plateau::new(lr), 0.0, 0.0));
        Ok(AugVaeTrainer { config, vs, model, loss, _lpips_vs: lpips_vs, extra, opt, plateau })
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.plateau.as_ref().map_or(self.config.effective_lr(), |(p, _, _)| p.lr)
    }

    /// One step at learning rate `lr` over `batches` (each batch's loss divided by their
    /// number), then the plateau scheduler's bookkeeping for `step`.
    pub fn step(&mut self, batches: &[Batch], step: i64, lr: f64) -> Result<Record> {
        self.opt.lr = lr;
        self.opt.zero_grad();
        let mut log = Record::new();
        let k = batches.len() as f64;
        let num_codes = self.config.quantizer.num_codes;
        for batch in batches {
            let x = &batch.images;
            let out = self.model.forward_t(x, true)?;
            let parts = self.loss.forward(x, &out.reconstruction, &out.loss);
            let total = if self.extra.is_empty() {
                parts.total.shallow_clone()
            } else {
                // The decoded level: the finest grid of the layout.
                let side = self.model.layout().grids[0].0;
                let level =
                    out.levels.iter().find(|l| l.indices.size()[1] == side).expect("the decoded level");
                let codes = level.quantized.flatten(2, -1).transpose(1, 2);
                let inputs = LossInputs {
                    images: x,
                    captions: &batch.captions,
                    reconstruction: &out.reconstruction,
                    codes: &codes,
                };
                self.extra.add_to(parts.total.shallow_clone(), &inputs, step, &mut log, k)?
            };
            add_mean(&mut log, "loss/total", finite(step, "total loss", &total)?, k);
            add_mean(&mut log, "loss/rec", parts.rec.double_value(&[]), k);
            add_mean(&mut log, "loss/q", out.loss.double_value(&[]), k);
            if let Some(p) = &parts.perceptual {
                add_mean(&mut log, "loss/perceptual", p.double_value(&[]), k);
            }
            add_mean(&mut log, "perplexity", out.perplexity(num_codes), k);
            (total / k).backward();
        }
        self.opt.step();
        log.insert("lr".into(), lr);
        log.insert("usage_window".into(), self.model.quantizer.stats.window_usage());
        if let (Some((p, sum, n)), Some(c)) = (self.plateau.as_mut(), self.config.optim.plateau.as_ref()) {
            *sum += log["loss/total"];
            *n += 1.0;
            if (step + 1) % c.every_steps == 0 {
                if p.observe(*sum / *n, c) {
                    tracing::info!("step {step}: training loss on a plateau, learning rate now {:.3e}", p.lr);
                }
                (*sum, *n) = (0.0, 0.0);
            }
        }
        Ok(log)
    }

    /// Everything a checkpoint holds: `model.…`, the optimiser's moments and the scheduler.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut s = checkpoint::vars(&self.vs, "model.");
        s.extend(self.opt.state("opt"));
        if let Some((p, sum, n)) = &self.plateau {
            s.push(("plateau.state".into(), p.to_tensor()));
            s.push(("plateau.window".into(), Tensor::from_slice(&[*sum, *n])));
        }
        s
    }

    /// Restore [`Self::state`] from a checkpoint at `path`.
    pub fn load_state(&mut self, t: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        checkpoint::restore_vars(&self.vs, "model.", t, path)?;
        let mismatch = |reason: String| TrainError::Mismatch { path: path.into(), reason };
        self.opt.load_state("opt", t).map_err(|e| mismatch(e.to_string()))?;
        if let Some((p, sum, n)) = self.plateau.as_mut() {
            let state = t.get("plateau.state").and_then(Plateau::from_tensor);
            let window = t.get("plateau.window").and_then(|w| Vec::<f64>::try_from(w).ok());
            match (state, window.as_deref()) {
                (Some(s), Some([a, b])) => (*p, *sum, *n) = (s, *a, *b),
                _ => {
                    return Err(mismatch(
                        "it has no plateau-scheduler state (plateau.state, plateau.window)".into(),
                    ))
                }
            }
        }
        Ok(())
    }
}
