//! The Fashion-MNIST evaluation classifier of VIM: the ResNet-18 trunk of the MNIST64x64
//! classifier ([`crate::classifier`]) with one 10-way head, trained the same way (Adam 1e-3,
//! batches of 128 28×28 RGB crops in `[0, 1]`, cross-entropy), on the training split's articles,
//! and scored on the 10,000 test images. It reads generated images by resizing them to 32×32 (if
//! they are not) and cutting the centred 28×28 article out, the inverse of
//! [`tessera_data::fashion`]'s padding.
//!
//! Files: `classifier.safetensors` and `classifier.json` (config, test accuracy, `kind`).

use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tessera_data::fashion::{FashionMnist, FASHION_VALIDATION};
use tessera_data::mnist::MnistSplit;
use tessera_models::classifier::LabelClassifier;

use crate::classifier::ClassifierRunConfig;
use crate::error::{Result, TrainError};

/// Written beside the weights; `kind` tells it from the MNIST64x64 classifier's report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArticleClassifierReport {
    pub kind: String,
    pub config: ClassifierRunConfig,
    /// On the Fashion-MNIST test set (`config.val_crops` images of it).
    pub test_accuracy: f64,
    pub seconds: f64,
    pub note: String,
}

const KIND: &str = "fashion-mnist";

/// Articles `idx` of `split` as `(B, 3, 28, 28)` in `[0, 1]` and their labels `(B,)`.
fn articles(split: &MnistSplit, idx: &[usize]) -> (Tensor, Tensor) {
    let mut pixels = Vec::with_capacity(idx.len() * 784);
    for &i in idx {
        pixels.extend_from_slice(split.image(i));
    }
    let x = Tensor::from_slice(&pixels).view([idx.len() as i64, 1, 28, 28]).to_kind(Kind::Float) / 255.0;
    let y: Vec<i64> = idx.iter().map(|&i| i64::from(split.label(i))).collect();
    (x.repeat([1, 3, 1, 1]), Tensor::from_slice(&y))
}

/// A trained article classifier.
pub struct ArticleClassifier {
    _vs: VarStore,
    net: LabelClassifier,
    device: Device,
    pub report: ArticleClassifierReport,
}

impl ArticleClassifier {
    /// Load `dir/classifier.{json,safetensors}` written by [`train_article_classifier`].
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let json = dir.join("classifier.json");
        let text = std::fs::read_to_string(&json).map_err(|e| {
            TrainError::Invalid(format!(
                "no Fashion-MNIST classifier at {} ({e}); train one with `tessera train classifier --fashion --out {}`",
                dir.display(),
                dir.display()
            ))
        })?;
        let report: ArticleClassifierReport = serde_json::from_str(&text).map_err(|e| {
            TrainError::Invalid(format!("{}: not a Fashion-MNIST classifier report ({e})", json.display()))
        })?;
        if report.kind != KIND {
            return Err(TrainError::Invalid(format!(
                "{}: kind {:?}, not {KIND:?}",
                json.display(),
                report.kind
            )));
        }
        let mut vs = VarStore::new(device);
        let net = LabelClassifier::new(&vs.root(), &report.config.model, 10);
        crate::classifier::read_weights(&mut vs, dir)?;
        Ok(Self { _vs: vs, net, device, report })
    }

    /// The class of each image.
    ///
    /// # Shapes
    /// `images: (B, 3, S, S)` in `[0, 1]`, any `S` → B labels
    pub fn classify(&self, images: &Tensor) -> Vec<usize> {
        let x = images.to_device(self.device).to_kind(Kind::Float);
        let x = if x.size()[2] == 32 && x.size()[3] == 32 {
            x
        } else {
            x.upsample_bilinear2d([32, 32], false, None, None)
        };
        let crops = x.narrow(2, 2, 28).narrow(3, 2, 28);
        let logits = tch::no_grad(|| self.net.forward_t(&crops, false));
        let v: Vec<i64> = Vec::try_from(logits.argmax(1, false).to_device(Device::Cpu)).expect("int64");
        v.into_iter().map(|c| c as usize).collect()
    }
}

/// Train on the Fashion-MNIST training split in the data cache under `root` for `cfg.steps`
/// batches, score on the test set, and write `dir/classifier.{safetensors,json}`.
pub fn train_article_classifier(
    root: &Path,
    cfg: &ClassifierRunConfig,
    device: Device,
    dir: &Path,
) -> Result<ArticleClassifierReport> {
    tessera_core::validate::validate_section("classifier", cfg).map_err(TrainError::Invalid)?;
    let data = FashionMnist::load(root)?;
    let start = std::time::Instant::now();
    tch::manual_seed(cfg.seed as i64);
    let vs = VarStore::new(device);
    let net = LabelClassifier::new(&vs.root(), &cfg.model, 10);
    // The training split: all but the last FASHION_VALIDATION images, reshuffled every epoch.
    let n_train = data.train.len().saturating_sub(FASHION_VALIDATION).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = Vec::new();
    crate::classifier::fit(&vs, cfg, |_| {
        let mut idx = Vec::with_capacity(cfg.batch_size);
        while idx.len() < cfg.batch_size {
            if order.is_empty() {
                order = (0..n_train).collect();
                order.shuffle(&mut rng);
            }
            idx.push(order.pop().expect("refilled"));
        }
        let (x, y) = articles(&data.train, &idx);
        Ok(net.forward_t(&x.to_device(device), true).cross_entropy_for_logits(&y.to_device(device)))
    })?;
    let n_test = cfg.val_crops.min(data.test.len());
    let mut right = 0usize;
    for s in (0..n_test).step_by(500) {
        let idx: Vec<usize> = (s..(s + 500).min(n_test)).collect();
        let (x, y) = articles(&data.test, &idx);
        let logits = tch::no_grad(|| net.forward_t(&x.to_device(device), false));
        right += logits.argmax(1, false).eq_tensor(&y.to_device(device)).sum(Kind::Int64).int64_value(&[])
            as usize;
    }
    let report = ArticleClassifierReport {
        kind: KIND.into(),
        config: cfg.clone(),
        test_accuracy: right as f64 / n_test.max(1) as f64,
        seconds: start.elapsed().as_secs_f64(),
        note: format!(
            "Tessera-trained ResNet-18 trunk + 10-way head; accuracy on {n_test} Fashion-MNIST test images"
        ),
    };
    crate::classifier::save(&vs, &report, dir)?;
    Ok(report)
}
