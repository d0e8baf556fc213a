//! Training an AugVAE tokenizer (L-Verse, spec §4): the one training loop ([`crate::runner`])
//! around [`AugVaeTrainer`] (model, optimiser, plateau schedule and step) and the validation sets.
//! AugVAE-SL runs start from an AugVAE-ML run ([`init_from_ml`], L-Verse's `setup_finetune`).
//!
//! - [`config`]: the run's TOML schema.
//! - [`step`]: one training step, as L-Verse takes it.

mod config;
mod step;

pub use config::*;
pub use step::AugVaeTrainer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Tensor};
use tessera_data::{Batch, DataLoader, Split};
use tessera_models::augvae::{sl_name_of_ml, AugVae};
use tessera_models::tokenizer::ImageTokenizer;

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::metrics::Record;
use crate::runner::{Meta, Task};

/// The run kind of AugVAE checkpoints (ML and SL).
pub const KIND: &str = "augvae";

/// An AugVAE run: its trainer and validation sets.
pub struct AugVaeTask {
    pub trainer: AugVaeTrainer,
    pub device: Device,
    val: DataLoader,
    translated: Option<DataLoader>,
}

impl AugVaeTask {
    /// Build everything; `root` is the data cache (for validation sets).
    pub fn new(config: AugVaeRunConfig, device: Device, root: &Path) -> Result<Self> {
        let trainer = AugVaeTrainer::new(config, device, root)?;
        let c = &trainer.config;
        // Trans_eq_acc compares one grid's codes; a multi-level model has several.
        let trans_eq = c.eval.trans_eq && c.model.code_levels().len() == 1;
        let (val, translated) =
            crate::tokenizer_eval::validation_loaders(&c.data, root, c.eval.batch_size, trans_eq, device)?;
        Ok(AugVaeTask { trainer, device, val, translated })
    }

    pub fn config(&self) -> &AugVaeRunConfig {
        &self.trainer.config
    }

    /// Reconstruction and stage-2 codes `(B, N)` of `x` in eval mode, no gradient.
    pub fn reconstruct(&mut self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let m = &mut self.trainer.model;
        let out = tch::no_grad(|| m.forward_t(x, false))?;
        let codes = m.codes(&out);
        Ok((out.reconstruction, codes))
    }

    /// Code↔caption retrieval on `n` validation images (the decoded level's codes), when the run
    /// has `[lg]`.
    pub fn lg_retrieval(
        &mut self,
        root: &Path,
        n: usize,
    ) -> Result<Option<tessera_eval::retrieval::RetrievalScores>> {
        let t = &mut self.trainer;
        let Some(lg) = t.extra.find::<crate::lg_term::LgTerm>() else { return Ok(None) };
        let model = &mut t.model;
        let side = model.layout().grids[0].0;
        crate::lg_term::retrieval(lg, &t.config.data, root, n, |x| {
            let out = model.forward_t(x, false)?;
            let level = out.levels.iter().find(|l| l.indices.size()[1] == side).expect("the decoded level");
            Ok(level.quantized.flatten(2, -1).transpose(1, 2))
        })
        .map(Some)
    }

    /// Validation metrics ([`crate::tokenizer_eval::evaluate_loaders`]); usage counts every code
    /// of every level.
    pub fn evaluate(&mut self) -> Result<Record> {
        let (val, translated) = (self.val.clone(), self.translated.clone());
        let c = &self.trainer.config;
        let (limit, k) = (c.eval.val_batches, c.quantizer.num_codes);
        let side = self.trainer.model.layout().grids[0].0;
        crate::tokenizer_eval::evaluate_loaders(&val, translated.as_ref(), limit, k, side, |x| {
            self.reconstruct(x)
        })
    }
}

impl Task for AugVaeTask {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// See [`AugVaeTrainer::step`].
    fn train_step(&mut self, batches: &[Batch], step: i64) -> Result<Record> {
        let lr = self.trainer.lr();
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
            ("lr", "train", vec!["lr"], true),
            ("val_quality", "val", vec!["psnr"], false),
            ("val_codes", "val", vec!["usage", "trans_eq_acc", "ssim"], false),
        ]
    }
}

/// Start the AugVAE-SL model of `trainer` from the AugVAE-ML run `dir` (its last checkpoint):
/// the encoders down to the kept level, the decoders from it up, the shared codebook and
/// pre/post-quant convs; the connectors keep their fresh initialisation (spec §4.3). Returns how
/// many tensors were copied.
pub fn init_from_ml(trainer: &mut AugVaeTrainer, dir: &Path) -> Result<usize> {
    let path = dir.join("checkpoints/last.safetensors");
    let ck: checkpoint::Checkpoint<Meta> = checkpoint::load(&path)?;
    let not_ml = |why: String| TrainError::Mismatch {
        path: path.clone(),
        reason: format!("init_from must be an AugVAE-ML run: {why}"),
    };
    if ck.meta.kind != KIND {
        return Err(not_ml(format!("it is a `{}` run", ck.meta.kind)));
    }
    let ml: AugVaeRunConfig =
        tessera_core::config::load_str(&ck.meta.config, &[], &path.display().to_string())
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let sl = &trainer.config;
    if let Some(s) = ml.model.single_level {
        return Err(not_ml(format!("it is an AugVAE-SL run (single_level = {s})")));
    }
    let base = tessera_models::augvae::AugVaeConfig {
        single_level: None,
        quantize_all_kept_levels: false,
        ..sl.model.clone()
    };
    if ml.model != base {
        return Err(not_ml(format!("its [model] differs beyond single_level: {:?} vs {:?}", ml.model, base)));
    }
    if (ml.quantizer.num_codes, ml.quantizer.dim) != (sl.quantizer.num_codes, sl.quantizer.dim) {
        return Err(not_ml(format!(
            "its codebook is {} × {}, this run's {} × {}",
            ml.quantizer.num_codes, ml.quantizer.dim, sl.quantizer.num_codes, sl.quantizer.dim
        )));
    }
    let vars = trainer.vs.variables();
    let mut copied = 0;
    tch::no_grad(|| {
        for (key, t) in &ck.tensors {
            let Some(name) = key.strip_prefix("model.").and_then(|n| sl_name_of_ml(&sl.model, n)) else {
                continue;
            };
            if let Some(v) = vars.get(&name) {
                v.shallow_clone().copy_(t);
                copied += 1;
            }
        }
    });
    Ok(copied)
}

/// Train an AugVAE into `dir` (an SL run starts from `init_from` unless it resumes).
pub fn train(
    config: AugVaeRunConfig,
    device: Device,
    root: &Path,
    dir: &Path,
    resume: bool,
) -> Result<(AugVaeTask, crate::runner::Summary)> {
    let config = run_paths(config, |p| tessera_core::fsutil::resolve_in_run(p, dir));
    let mut task = AugVaeTask::new(config.clone(), device, root)?;
    if let (Some(from), false) = (&config.init_from, resume) {
        let n = init_from_ml(&mut task.trainer, from)?;
        tracing::info!("AugVAE-SL: {n} tensors from the AugVAE-ML run {}", from.display());
    }
    let stored = run_paths(config.clone(), |p| tessera_core::fsutil::relative_to(p, dir));
    let toml = tessera_core::config::to_toml(&stored);
    let loader = DataLoader::new(config.data.open(Split::Train, root)?, config.data.loader.clone(), device);
    let summary = crate::runner::run(&mut task, &loader, &config.train, dir, &toml, resume)?;
    Ok((task, summary))
}

fn run_paths(mut config: AugVaeRunConfig, f: impl Fn(&Path) -> PathBuf) -> AugVaeRunConfig {
    crate::tokenizer::map_paths(
        [&mut config.loss.perceptual_weights, &mut config.loss.perceptual_heads, &mut config.init_from],
        f,
    );
    config
}

/// The model of an AugVAE run, for inference (`model.` variables of its last checkpoint).
pub fn load_model(ck: &checkpoint::Checkpoint<Meta>, device: Device) -> Result<(VarStore, AugVae)> {
    let config: AugVaeRunConfig =
        tessera_core::config::load_str(&ck.meta.config, &[], &ck.path.display().to_string())
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let vs = VarStore::new(device);
    let model = AugVae::new(&vs.root(), config.model, config.quantizer)?;
    checkpoint::restore_vars(&vs, "model.", &ck.tensors, &ck.path)?;
    Ok((vs, model))
}
