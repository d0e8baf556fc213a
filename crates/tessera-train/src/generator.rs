//! Training and evaluating BiART (stage 2) on the codes of a trained tokenizer.
//!
//! - The tokenizer run is frozen; its codes for the first `codes.train_images` training images are
//!   computed once and cached in the run (`codes_train.safetensors`).
//! - The caption tokenizer is BPE as Bi-DALL-E (spec §2.6, §3.1), trained on training captions
//!   and saved in the run as `tokenizer.json` (or copied from `text.tokenizer`).
//! - Each step trains both directions: by default one optimiser step on the mean of the t2i and
//!   i2t losses; `directions = "separate"` is Bi-DALL-E's `alternate` (an i2t step, then a t2i
//!   step, each with its own clipping and update, spec §3.3, §13.4); `directions = "t2i"` trains
//!   text→image alone (VIM's class-conditional generation, with `text.drop_caption` for its
//!   unconditional view).
//! - AdamW without weight decay on biases, norms, embeddings and positions (minGPT, spec §1.6),
//!   warm-up + cosine schedule, gradient clipping; the shared loop gives checkpoints, exact
//!   resume, NaN guard, progress and metrics.
//! - Validation logs both losses and the exact T2I (with `eval.classifier`) and I2T accuracy;
//!   the full evaluation is [`crate::gen_eval`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tch::nn::VarStore;
use tch::{Device, Tensor};
use tessera_data::mnist64::Split;
use tessera_data::tensor::{images_to_tensor, tensor_to_images};
use tessera_data::{Batch, DataLoader, Dataset, Subset, TextTokenizer};
use tessera_eval::captions::CaptionScores;
use tessera_eval::generation::{score_i2t, score_t2i};
use tessera_models::biart::sample::SampleConfig;
use tessera_models::biart::{Biart, BiartConfig, Direction};
use tessera_nn::optim::Adam;

pub mod config;

pub use config::*;

use crate::checkpoint;
use crate::classifier::Classifier;
use crate::error::{Result, TrainError};
use crate::frozen::{load_tokenizer, FrozenTokenizer};
use crate::gen_data::{cached_train_codes, caption_tokenizer, encode_dataset};
use crate::metrics::Record;
use crate::runner::Task;
use crate::schedule::lr_at_cycles;
use tessera_models::tokenizer::ImageTokenizer;

/// A BiART run: the model, its optimiser, the frozen tokenizer and the cached codes.
pub struct GeneratorTask {
    pub config: GeneratorRunConfig,
    pub device: Device,
    pub vs: VarStore,
    pub model: Biart,
    /// The frozen tokenizer: only what encoding and decoding need.
    pub tokenizer: FrozenTokenizer,
    pub text: TextTokenizer,
    opt: Adam,
    train_codes: Tensor,
    val_codes: Tensor,
    val_captions: Vec<String>,
    classifier: Option<Classifier>,
    truncated_warned: bool,
}

/// Values of a generator config without meaning, named by their key and range.
fn check_config(config: &GeneratorRunConfig) -> Result<()> {
    tessera_core::Validate::validate(config).map_err(TrainError::Invalid)
}

/// Which parameters get weight decay (minGPT: Linear weights only).
pub fn decays(name: &str) -> bool {
    name.ends_with(".weight")
        && (name.contains(".attn.") || name.contains(".mlp.") || name.starts_with("head."))
}

impl GeneratorTask {
    /// Build the task for run directory `dir` (where the caption tokenizer and code cache live).
    pub fn new(mut config: GeneratorRunConfig, device: Device, root: &Path, dir: &Path) -> Result<Self> {
        check_config(&config)?;
        // Paths a run stores are relative to the run (see `train`).
        config.tokenizer = tessera_core::fsutil::resolve_in_run(&config.tokenizer, dir);
        config.eval.classifier =
            config.eval.classifier.map(|c| tessera_core::fsutil::resolve_in_run(&c, dir));
        let tok_ckpt = config.tokenizer.join("checkpoints/last.safetensors");
        if !tok_ckpt.exists() {
            return Err(TrainError::Invalid(format!(
                "the generator's tokenizer run {} has no checkpoint ({}); train it first with `tessera train tokenizer --out {}` or set `tokenizer = ...`",
                config.tokenizer.display(),
                tok_ckpt.display(),
                config.tokenizer.display()
            )));
        }
        let mut tokenizer = load_tokenizer(&config.tokenizer, device)?;
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let text = caption_tokenizer(&config, root, dir)?;
        let sizes = (text.vocab_size(), tokenizer.num_codes(), tokenizer.layout().grids);
        fit_to_tokenizers(&mut config.model, sizes, &config.tokenizer)?;
        tch::manual_seed(config.train.seed as i64);
        let vs = VarStore::new(device);
        let model = Biart::new(&vs.root(), config.model.clone()).map_err(TrainError::Invalid)?;
        let mut params: Vec<(String, Tensor, bool)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(n, t)| {
                let d = decays(&n);
                (n, t, d)
            })
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let opt = Adam::new(params, config.optim.learning_rate, config.optim.adam.clone());
        // Codes: cached in the run, checked against the tokenizer on a few images.
        let train_codes = cached_train_codes(&mut tokenizer, &config, root, dir, device)?;
        let val_set = config.data.open(Split::Validation, root)?;
        let n_val = config.eval.loss_images.max(config.eval.i2t_images).max(config.eval.t2i_images);
        let (val_codes, val_captions) =
            encode_dataset(&mut tokenizer, val_set, n_val, config.codes.batch_size, device)?;
        Ok(Self {
            config,
            device,
            vs,
            model,
            tokenizer,
            text,
            opt,
            train_codes,
            val_codes: val_codes.to_device(device),
            val_captions,
            classifier: None,
            truncated_warned: false,
        })
    }

    /// Caption ids, `(B, Lt)`.
    pub fn encode_captions(&mut self, captions: &[String]) -> Result<Tensor> {
        let lt = self.config.model.text_len;
        let mut ids = Vec::with_capacity(captions.len() * lt);
        for c in captions {
            let e = self.text.encode(c, lt)?;
            if e.truncated && !self.truncated_warned {
                tracing::warn!("caption longer than text_len = {lt} tokens was cut: {c:?}");
                self.truncated_warned = true;
            }
            ids.extend(e.ids);
        }
        Ok(Tensor::from_slice(&ids).view([captions.len() as i64, lt as i64]).to_device(self.device))
    }

    /// Images in `[-1, 1]` for captions (t2i), `n` per caption.
    pub fn text_to_image(&mut self, captions: &[String], cfg: &SampleConfig) -> Result<Tensor> {
        let text = self.encode_captions(captions)?;
        let codes = self.model.generate(Direction::T2i, &text, cfg);
        Ok(self.tokenizer.decode(&codes))
    }

    /// Captions for images in `[-1, 1]` (i2t).
    pub fn image_to_text(&mut self, images: &Tensor, cfg: &SampleConfig) -> Result<Vec<String>> {
        let codes = self
            .tokenizer
            .encode(&images.to_device(self.device))
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        self.codes_to_text(&codes, cfg)
    }

    fn codes_to_text(&mut self, codes: &Tensor, cfg: &SampleConfig) -> Result<Vec<String>> {
        let ids = self.model.generate(Direction::I2t, codes, cfg).to_device(Device::Cpu);
        (0..ids.size()[0])
            .map(|i| Ok(self.text.decode(&Vec::<i64>::try_from(ids.get(i)).expect("int64"))?))
            .collect()
    }

    /// Replace each caption by the empty one (`[CLS] [SEP]`) with probability `text.drop_caption`,
    /// drawn from libtorch's generator (seeded per step by the loop, so resume repeats it).
    ///
    /// # Shapes
    /// `text: (B, Lt)` → `(B, Lt)`
    fn drop_captions(&mut self, text: Tensor) -> Result<Tensor> {
        let p = self.config.text.drop_caption;
        if p <= 0.0 {
            return Ok(text);
        }
        let empty = self.encode_captions(&[String::new()])?;
        let b = text.size()[0];
        let drop = Tensor::rand([b, 1], (tch::Kind::Float, self.device)).lt(p);
        Ok(empty.expand_as(&text).where_self(&drop, &text))
    }

    /// Clip, check and apply the gradients accumulated since `zero_grad`; returns their norm.
    fn apply_gradients(&mut self, step: i64, what: &str) -> Result<f64> {
        let norm = if self.config.optim.clip_grad_norm > 0.0 {
            self.opt.clip_grad_norm(self.config.optim.clip_grad_norm)
        } else {
            self.opt.grad_norm()
        };
        if !norm.is_finite() {
            self.opt.zero_grad();
            return Err(TrainError::NonFinite { step, what: format!("{what} gradient") });
        }
        self.opt.step();
        Ok(norm)
    }

    /// How many validation images [`Self::validation_losses`] averages over.
    pub fn validation_loss_images(&self) -> usize {
        self.config.eval.loss_images.min(self.val_captions.len())
    }

    /// Validation losses of both directions on the first `eval.loss_images` validation images
    /// (`loss/{t2i,i2t}` and their targets' `loss/t2i_image`, `loss/i2t_text`).
    pub fn validation_losses(&mut self) -> Result<Record> {
        let n = self.validation_loss_images();
        let mut rec = Record::new();
        if n == 0 {
            return Ok(rec);
        }
        let bs = self.config.eval.batch_size.max(1);
        let mut sums: HashMap<&str, f64> = HashMap::new();
        for start in (0..n).step_by(bs) {
            let m = bs.min(n - start);
            let caps = self.val_captions[start..start + m].to_vec();
            let text = self.encode_captions(&caps)?;
            let codes = self.val_codes.narrow(0, start as i64, m as i64);
            tch::no_grad(|| {
                for &dir in self.config.directions.trained() {
                    let parts = self.model.loss(dir, &text, &codes, false);
                    let w = m as f64 / n as f64;
                    let (t, tgt) = match dir {
                        Direction::T2i => ("loss/t2i", "loss/t2i_image"),
                        Direction::I2t => ("loss/i2t", "loss/i2t_text"),
                    };
                    *sums.entry(t).or_default() += parts.total.double_value(&[]) * w;
                    *sums.entry(tgt).or_default() += parts.target.double_value(&[]) * w;
                }
            });
        }
        for (k, v) in sums {
            rec.insert(k.into(), v);
        }
        Ok(rec)
    }
}

impl Task for GeneratorTask {
    fn kind(&self) -> &'static str {
        "biart"
    }

    /// One step of `L = (CE_cond + 7·CE_target)/8` per direction (spec §9.2): both directions in
    /// one optimizer step (`joint`), or Bi-DALL-E's i2t step then t2i step (`separate`). With
    /// `accumulate` micro-batches each loss is divided by their number before `backward`.
    fn train_step(&mut self, batches: &[Batch], step: i64) -> Result<Record> {
        let o = &self.config.optim;
        let lr = lr_at_cycles(
            o.learning_rate,
            step,
            self.config.train.max_steps,
            o.warmup_steps,
            o.decay,
            o.min_lr_ratio,
            o.restart_cycles,
        );
        self.opt.lr = lr;
        let k = batches.len() as f64;
        let mut inputs = Vec::with_capacity(batches.len());
        for batch in batches {
            let text = self.encode_captions(&batch.captions)?;
            let idx = Tensor::from_slice(&batch.indices.iter().map(|&i| i as i64).collect::<Vec<_>>())
                .to_device(self.device);
            let text = self.drop_captions(text)?;
            inputs.push((text, self.train_codes.index_select(0, &idx)));
        }
        let passes: Vec<Vec<Direction>> = match self.config.directions {
            DirectionSteps::Joint => vec![vec![Direction::T2i, Direction::I2t]],
            DirectionSteps::Separate => vec![vec![Direction::I2t], vec![Direction::T2i]],
            DirectionSteps::T2i => vec![vec![Direction::T2i]],
        };
        let mut rec = Record::new();
        rec.insert("lr".into(), lr);
        let add = |rec: &mut Record, key: String, v: f64| *rec.entry(key).or_insert(0.0) += v / k;
        let joint = passes.len() == 1;
        for dirs in passes {
            self.opt.zero_grad();
            let what = if joint { "generator loss".to_string() } else { format!("{} loss", dirs[0].name()) };
            for (text, codes) in &inputs {
                let totals = dirs.iter().map(|&dir| {
                    let p = self.model.loss(dir, text, codes, true);
                    add(&mut rec, format!("loss/{}", dir.name()), p.total.double_value(&[]));
                    let key = if dir == Direction::T2i { "loss/t2i_image" } else { "loss/i2t_text" };
                    add(&mut rec, key.into(), p.target.double_value(&[]));
                    p.total
                });
                let loss = totals.reduce(|a, b| a + b).expect("at least one direction") / dirs.len() as f64;
                if !loss.double_value(&[]).is_finite() {
                    return Err(TrainError::NonFinite { step, what });
                }
                (loss / k).backward();
            }
            let norm = self.apply_gradients(step, &what)?;
            let key = if joint { "grad_norm".to_string() } else { format!("grad_norm/{}", dirs[0].name()) };
            rec.insert(key, norm);
        }
        let dirs = self.config.directions.trained();
        let total = dirs.iter().map(|d| rec[&format!("loss/{}", d.name())]).sum::<f64>() / dirs.len() as f64;
        rec.insert("loss/total".into(), total);
        Ok(rec)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut v = checkpoint::vars(&self.vs, "model.");
        v.extend(self.opt.state("opt."));
        v
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        checkpoint::restore_vars(&self.vs, "model.", tensors, path)?;
        self.opt
            .load_state("opt.", tensors)
            .map_err(|e| TrainError::Mismatch { path: path.into(), reason: e.to_string() })
    }

    /// Validation losses, and the exact `all` accuracies of I2T (`eval.i2t_images` images) and
    /// T2I (`eval.t2i_images` captions, with the classifier) on validation images; the accuracies
    /// only on MNIST64x64 data, whose captions the parser reads.
    fn validate(&mut self, _step: i64) -> Result<Record> {
        let mut rec = self.validation_losses()?;
        // The accuracies read MNIST64x64 captions; other data is validated on its losses only.
        if !crate::gen_eval::scorable(&self.config.data) {
            return Ok(rec);
        }
        let bs = self.config.eval.batch_size.max(1);
        let cfg = self.config.sample.clone();
        let trains_i2t = self.config.directions.trained().contains(&Direction::I2t);
        let n = if trains_i2t { self.config.eval.i2t_images.min(self.val_captions.len()) } else { 0 };
        if n > 0 {
            tch::manual_seed(self.config.eval.seed as i64);
            let mut scores = CaptionScores::new();
            for start in (0..n).step_by(bs) {
                let m = bs.min(n - start);
                let codes = self.val_codes.narrow(0, start as i64, m as i64);
                let generated = self.codes_to_text(&codes, &cfg)?;
                score_i2t(&self.val_captions[start..start + m], &generated, &mut scores);
            }
            rec.insert("i2t_acc".into(), scores.report()["all"].acc);
        }
        let n = self.config.eval.t2i_images.min(self.val_captions.len());
        // Loaded on first use, so that `generate` and `eval` never need the training-time classifier.
        if let (true, None, Some(dir)) = (n > 0, &self.classifier, &self.config.eval.classifier) {
            self.classifier = Some(Classifier::load(dir, self.device)?);
        }
        if let (true, Some(clf)) = (n > 0, self.classifier.take()) {
            tch::manual_seed(self.config.eval.seed as i64);
            let mut scores = CaptionScores::new();
            let result = (0..n).step_by(bs).try_for_each(|start| {
                let caps = self.val_captions[start..start + bs.min(n - start)].to_vec();
                let images = self.text_to_image(&caps, &cfg)?;
                score_t2i(&|c: &Tensor| clf.classify(c), &((images + 1.0) / 2.0), &caps, &mut scores);
                Ok::<(), TrainError>(())
            });
            self.classifier = Some(clf);
            result?;
            rec.insert("t2i_acc".into(), scores.report()["all"].acc);
        }
        Ok(rec)
    }

    fn sample_grid(&mut self, batch: &Batch) -> Result<image::RgbImage> {
        let n = batch.captions.len().min(4);
        let cfg = self.config.sample.clone();
        tch::manual_seed(self.config.eval.seed as i64);
        let caps = batch.captions[..n].to_vec();
        let gen = tensor_to_images(&self.text_to_image(&caps, &cfg)?)?;
        let mut rows: Vec<(image::RgbImage, String)> =
            gen.into_iter().zip(caps).map(|(img, c)| (img, format!("t2i: {c}"))).collect();
        if self.config.directions.trained().contains(&Direction::I2t) {
            let said = self.image_to_text(&batch.images.narrow(0, 0, n as i64), &cfg)?;
            let real = tensor_to_images(&batch.images.narrow(0, 0, n as i64))?;
            rows.extend(real.into_iter().zip(said).map(|(img, c)| (img, format!("i2t: {c}"))));
        }
        Ok(tessera_core::viz::labelled_rows(&rows, 2, 48))
    }

    fn plots(&self) -> Vec<(&'static str, &'static str, Vec<&'static str>, bool)> {
        vec![
            ("train_losses", "train", vec!["loss/total", "loss/t2i", "loss/i2t"], true),
            ("val_losses", "val", vec!["loss/t2i_image", "loss/i2t_text"], true),
            ("val_accuracy", "val", vec!["t2i_acc", "i2t_acc"], false),
        ]
    }
}

/// Take the model's sizes from the tokenizers (text vocabulary, codebook, code grids), or check
/// the ones the config sets against them.
fn fit_to_tokenizers(
    m: &mut BiartConfig,
    (vt, k, grids): (usize, usize, Vec<(i64, i64)>),
    tokenizer: &Path,
) -> Result<()> {
    if grids.iter().any(|(h, w)| h != w) {
        return Err(TrainError::Invalid(format!(
            "BiART models square code grids, but the tokenizer {} lays its codes out as {grids:?}",
            tokenizer.display()
        )));
    }
    let sides: Vec<usize> = grids.iter().map(|(h, _)| *h as usize).collect();
    for (name, field, want) in [
        ("text_vocab", &mut m.text_vocab, vt),
        ("image_vocab", &mut m.image_vocab, k),
        ("image_side", &mut m.image_side, sides[0]),
    ] {
        if *field == 0 {
            *field = want;
        } else if *field != want {
            return Err(TrainError::Invalid(format!(
                "[model] {name} = {field} but the tokenizers give {want}; remove the key to take it from them"
            )));
        }
    }
    if m.coarser_sides.is_empty() {
        m.coarser_sides = sides[1..].to_vec();
    } else if m.coarser_sides != sides[1..] {
        return Err(TrainError::Invalid(format!(
            "[model] coarser_sides = {:?} but the tokenizer's grids give {:?}; remove the key to take it from them",
            m.coarser_sides,
            &sides[1..]
        )));
    }
    Ok(())
}

/// Train a generator into `dir`.
pub fn train(
    config: GeneratorRunConfig,
    device: Device,
    root: &Path,
    dir: &Path,
    resume: bool,
) -> Result<(GeneratorTask, crate::runner::Summary)> {
    // Locked before the task is built: building it writes the caption tokenizer and code cache.
    let lock = crate::runner::lock_run(dir)?;
    let mut task = GeneratorTask::new(config, device, root, dir)?;
    // The stored config names the tokenizer and classifier relative to the run, so that a run
    // used from another directory, or moved together with them, still finds them.
    let mut stored = task.config.clone();
    stored.tokenizer = tessera_core::fsutil::relative_to(&stored.tokenizer, dir);
    stored.eval.classifier = stored.eval.classifier.map(|c| tessera_core::fsutil::relative_to(&c, dir));
    let toml = tessera_core::config::to_toml(&stored);
    let train_set: Arc<dyn Dataset> =
        Arc::new(Subset::new(task.config.data.open(Split::Train, root)?, task.config.codes.train_images));
    let loader = DataLoader::new(train_set, task.config.data.loader.clone(), device);
    let cfg = task.config.train.clone();
    let summary = crate::runner::run_locked(&mut task, &loader, &cfg, &lock, &toml, resume)?;
    Ok((task, summary))
}

/// Rebuild a trained generator from its run directory.
pub fn load_run(dir: &Path, device: Device, root: &Path) -> Result<GeneratorTask> {
    let ckpt = dir.join("checkpoints/last.safetensors");
    let ck: checkpoint::Checkpoint<crate::runner::Meta> = checkpoint::load(&ckpt)?;
    if ck.meta.kind != "biart" {
        return Err(TrainError::Mismatch {
            path: ckpt,
            reason: format!("it is a {} run, not a generator", ck.meta.kind),
        });
    }
    let config: GeneratorRunConfig =
        tessera_core::config::load_str(&ck.meta.config, &[], &ckpt.display().to_string())
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let mut task = GeneratorTask::new(config, device, root, dir)?;
    task.load_state(&ck.tensors, &ckpt)?;
    Ok(task)
}

/// Check an image file for `generate i2t`: RGB of the tokenizer's resolution, as a `(1, 3, H, W)`
/// tensor in `[-1, 1]`.
pub fn load_image_for(task: &GeneratorTask, path: &Path) -> Result<Tensor> {
    let unreadable = |e: tessera_data::DataError| TrainError::Invalid(format!("cannot read image ({e})"));
    // The size is checked from the header, before decoding: a huge file costs nothing.
    let (w, h) = tessera_data::image_file::dimensions(path).map_err(unreadable)?;
    let r = task.tokenizer.resolution() as u32;
    if w != r || h != r {
        return Err(TrainError::Invalid(format!(
            "{} is {w}×{h}, but this generator's tokenizer takes {r}×{r} images",
            path.display()
        )));
    }
    let img =
        tessera_data::image_file::decode_checked(path, u64::from(r) * u64::from(r)).map_err(unreadable)?;
    // As `encode`: an alpha channel is refused rather than silently dropped.
    let channels = img.color().channel_count();
    if channels == 2 || channels == 4 {
        return Err(TrainError::Invalid(format!(
            "{} has {channels} channels (with alpha); the tokenizer takes RGB or gray images: drop the alpha channel first",
            path.display()
        )));
    }
    Ok(images_to_tensor(&[img.to_rgb8()])?.to_device(task.device))
}
