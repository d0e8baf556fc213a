//! Trains Bi-directional DALL-E's evaluation classifier (spec §3.6): ResNet-18 with colour and
//! digit heads, `CE(colour) + CE(digit)`, on 28×28 crops of MNIST64x64 *training* images, and
//! reports its accuracy on crops of the validation split. Bi-DALL-E's own training script and
//! checkpoint could not be obtained, so Tessera trains its own and says so in every report.
//!
//! Files: `classifier.safetensors` (torchvision-style names) and `classifier.json` (config,
//! held-out accuracy).

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tessera_data::mnist64::{Colour, Mnist64, Split};
use tessera_models::classifier::{ClassifierConfig, DigitClassifier};
use tessera_nn::optim::{Adam, AdamConfig};

use crate::error::{Result, TrainError};
use crate::perceptual::digit_crops;

/// Settings of `tessera train classifier`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierRunConfig {
    pub model: ClassifierConfig,
    pub steps: i64,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Held-out crops from the validation split.
    pub val_crops: usize,
    pub seed: u64,
}

impl tessera_core::Validate for ClassifierRunConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        use tessera_core::validate::{MAX_BATCH, MAX_IMAGES, MAX_STEPS};
        c.section("model", &self.model);
        c.int("steps", self.steps, 1, MAX_STEPS, "");
        c.int("batch_size", self.batch_size, 1, MAX_BATCH, "");
        c.float_above("learning_rate", self.learning_rate, 0.0, 10.0, "");
        c.int("val_crops", self.val_crops, 1, MAX_IMAGES, "");
    }
}

impl Default for ClassifierRunConfig {
    fn default() -> Self {
        Self {
            model: ClassifierConfig::default(),
            steps: 1000,
            batch_size: 128,
            learning_rate: 1e-3,
            val_crops: 2000,
            seed: 7,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassifierReport {
    pub config: ClassifierRunConfig,
    pub colour_accuracy: f64,
    pub digit_accuracy: f64,
    pub seconds: f64,
    pub note: String,
}

/// A trained classifier ready to score crops.
pub struct Classifier {
    _vs: VarStore,
    net: DigitClassifier,
    device: Device,
}

impl Classifier {
    /// Load `dir/classifier.safetensors` (config from `dir/classifier.json`).
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let json = dir.join("classifier.json");
        let text = std::fs::read_to_string(&json).map_err(|e| {
            TrainError::Invalid(format!(
                "no evaluation classifier at {} ({e}); train one with `tessera train classifier --out {}`",
                dir.display(),
                dir.display()
            ))
        })?;
        let report: ClassifierReport = serde_json::from_str(&text)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", json.display())))?;
        let mut vs = VarStore::new(device);
        let net = DigitClassifier::new(&vs.root(), &report.config.model);
        read_weights(&mut vs, dir)?;
        Ok(Self { _vs: vs, net, device })
    }

    /// Colour and digit of each crop.
    ///
    /// # Shapes
    /// `crops: (B, 3, 28, 28)` in `[0, 1]` → B predictions
    pub fn classify(&self, crops: &Tensor) -> Vec<(Colour, u8)> {
        let out = tch::no_grad(|| self.net.forward_t(&crops.to_device(self.device), false));
        let c: Vec<i64> = Vec::try_from(out.colour.argmax(1, false).to_device(Device::Cpu)).expect("int64");
        let d: Vec<i64> = Vec::try_from(out.digit.argmax(1, false).to_device(Device::Cpu)).expect("int64");
        c.into_iter()
            .zip(d)
            .map(|(c, d)| (Colour::from_id(c as usize).expect("4 colour logits"), d as u8))
            .collect()
    }
}

/// Train for `cfg.steps` batches and write `dir/classifier.{safetensors,json}`.
pub fn train_classifier(
    g: Arc<Mnist64>,
    cfg: &ClassifierRunConfig,
    device: Device,
    dir: &Path,
) -> Result<ClassifierReport> {
    tessera_core::validate::validate_section("classifier", cfg).map_err(TrainError::Invalid)?;
    let start = std::time::Instant::now();
    tch::manual_seed(cfg.seed as i64);
    let vs = VarStore::new(device);
    let net = DigitClassifier::new(&vs.root(), &cfg.model);
    let to01 = |x: &Tensor| ((x + 1.0) / 2.0).to_device(device);
    fit(&vs, cfg, |step| {
        let (x, d, c) =
            digit_crops(&g, Split::Train, step as usize * cfg.batch_size, cfg.batch_size, cfg.seed)?;
        let out = net.forward_t(&to01(&x), true);
        Ok(out.colour.cross_entropy_for_logits(&c.to_device(device))
            + out.digit.cross_entropy_for_logits(&d.to_device(device)))
    })?;
    let (mut right_c, mut right_d) = (0usize, 0usize);
    let mut done = 0;
    while done < cfg.val_crops {
        let n = (cfg.val_crops - done).min(500);
        let (x, d, c) = digit_crops(&g, Split::Validation, done, n, cfg.seed)?;
        let out = tch::no_grad(|| net.forward_t(&to01(&x), false));
        let hits = |l: &Tensor, y: &Tensor| {
            l.argmax(1, false).eq_tensor(&y.to_device(device)).sum(Kind::Int64).int64_value(&[]) as usize
        };
        right_c += hits(&out.colour, &c);
        right_d += hits(&out.digit, &d);
        done += n;
    }
    let report = ClassifierReport {
        config: cfg.clone(),
        colour_accuracy: right_c as f64 / cfg.val_crops.max(1) as f64,
        digit_accuracy: right_d as f64 / cfg.val_crops.max(1) as f64,
        seconds: start.elapsed().as_secs_f64(),
        note: "Tessera-trained ResNet-18 (Bi-DALL-E's classifier checkpoint is not obtainable); accuracy on held-out validation crops".into(),
    };
    save(&vs, &report, dir)?;
    Ok(report)
}

/// Adam (PyTorch defaults, no decay) over every trainable variable of `vs` for `cfg.steps`
/// steps of `loss(step)`, with a progress bar; a non-finite loss stops with an error. Shared by
/// the evaluation classifiers.
pub(crate) fn fit(
    vs: &VarStore,
    cfg: &ClassifierRunConfig,
    mut loss: impl FnMut(i64) -> Result<Tensor>,
) -> Result<()> {
    let mut params: Vec<(String, Tensor, bool)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (n, t, false)).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = Adam::new(
        params,
        cfg.learning_rate,
        AdamConfig { beta1: 0.9, beta2: 0.999, ..AdamConfig::default() },
    );
    let pb = crate::progress_bar("classifier", cfg.steps as u64);
    for step in 0..cfg.steps {
        let loss = loss(step)?;
        let l = loss.double_value(&[]);
        if !l.is_finite() {
            return Err(TrainError::NonFinite { step, what: "classifier loss".into() });
        }
        opt.zero_grad();
        loss.backward();
        opt.step();
        if step % 20 == 0 {
            pb.set_message(format!("loss {l:.4}"));
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(())
}

/// Write `dir/classifier.safetensors` (the variables of `vs`) and `dir/classifier.json`
/// (`report`), each atomically.
pub(crate) fn save(vs: &VarStore, report: &impl Serialize, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let tmp = dir.join(".classifier.safetensors.tmp");
    Tensor::write_safetensors(&crate::checkpoint::vars(vs, ""), &tmp)?;
    std::fs::rename(&tmp, dir.join("classifier.safetensors")).map_err(|e| TrainError::io(dir, e))?;
    let json = serde_json::to_string_pretty(report).expect("report serializes");
    tessera_core::fsutil::write_atomic(&dir.join("classifier.json"), json.as_bytes())
        .map_err(|e| TrainError::io(dir, e))
}

/// Load `dir/classifier.safetensors` into `vs` (every variable, checked by name and shape) and
/// freeze it.
pub(crate) fn read_weights(vs: &mut VarStore, dir: &Path) -> Result<()> {
    let path = dir.join("classifier.safetensors");
    let tensors = Tensor::read_safetensors(&path)
        .map_err(|e| TrainError::BadCheckpoint { path: path.clone(), reason: e.to_string() })?;
    crate::checkpoint::restore_vars(vs, "", &tensors.into_iter().collect(), &path)?;
    vs.freeze();
    Ok(())
}
