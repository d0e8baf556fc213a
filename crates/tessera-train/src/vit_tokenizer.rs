//! Training a ViT-VQGAN tokenizer: the one training loop ([`crate::runner`]) around
//! [`VitTrainer`] (the models, optimisers and step) and the validation sets.
//!
//! - [`config`]: the run's TOML schema.
//! - [`step`]: one training step, as enhancing-transformers takes it.
//! - `import`: enhancing-transformers checkpoints as runs.

mod config;
mod import;
mod step;

pub use config::*;
pub use import::import;
pub use step::VitTrainer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Tensor};
use tessera_data::{Batch, DataLoader, Split};
use tessera_models::vit::VitVq;

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::metrics::Record;
use crate::runner::Task;

/// The run kind of ViT-VQGAN checkpoints.
pub const KIND: &str = "vit-vqgan";

/// A ViT-VQGAN run: its trainer and validation sets.
pub struct VitTask {
    pub trainer: VitTrainer,
    pub device: Device,
    val: DataLoader,
    translated: Option<DataLoader>,
}

impl VitTask {
    /// Build everything; `root` is the data cache (for validation sets).
    pub fn new(config: VitRunConfig, device: Device, root: &Path) -> Result<Self> {
        let trainer = VitTrainer::new(config, device, root)?;
        let c = &trainer.config;
        let (val, translated) = crate::tokenizer_eval::validation_loaders(
            &c.data,
            root,
            c.eval.batch_size,
            c.eval.trans_eq,
            device,
        )?;
        Ok(VitTask { trainer, device, val, translated })
    }

    pub fn config(&self) -> &VitRunConfig {
        &self.trainer.config
    }

    /// Reconstruction and codes `(B, N)` of `x` in eval mode, no gradient.
    pub fn reconstruct(&mut self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let out = tch::no_grad(|| self.trainer.model.forward_t(x, false))?;
        Ok((out.reconstruction, out.quant.indices))
    }

    /// Code↔caption retrieval on `n` validation images, when the run has `[lg]`.
    pub fn lg_retrieval(
        &mut self,
        root: &Path,
        n: usize,
    ) -> Result<Option<tessera_eval::retrieval::RetrievalScores>> {
        let t = &mut self.trainer;
        let Some(lg) = t.extra.find::<crate::lg_term::LgTerm>() else { return Ok(None) };
        let model = &mut t.model;
        crate::lg_term::retrieval(lg, &t.config.data, root, n, |x| Ok(model.encode(x, false)?.quantized))
            .map(Some)
    }

    /// Validation metrics ([`crate::tokenizer_eval::evaluate_loaders`]).
    pub fn evaluate(&mut self) -> Result<Record> {
        let (val, translated) = (self.val.clone(), self.translated.clone());
        let c = &self.trainer.config;
        let (limit, k, side) = (c.eval.val_batches, c.quantizer.num_codes, c.model.latent_side());
        crate::tokenizer_eval::evaluate_loaders(&val, translated.as_ref(), limit, k, side, |x| {
            self.reconstruct(x)
        })
    }
}

impl Task for VitTask {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// See [`VitTrainer::step`].
    fn train_step(&mut self, batches: &[Batch], step: i64) -> Result<Record> {
        let lr = self.trainer.lr_at(step);
        self.trainer.step(batches, step, lr)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.trainer.state()
    }

    fn load_state(&mut self, t: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        self.trainer.load_state(t, path)
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
