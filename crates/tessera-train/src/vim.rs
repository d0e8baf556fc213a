//! VIM's evaluation (ViT-VQGAN §4 "Vector-quantized Image Modeling"; spec §9.4) on a generator
//! run trained with `directions = "t2i"` on Fashion-MNIST, whose captions are class words:
//!
//! - **Class-conditional samples**: `samples_per_class` images per class from `[CLS] class [SEP]`,
//!   read back by the Fashion-MNIST classifier ([`crate::article_classifier`]); the accuracy is
//!   the share classified as the class they were drawn for, per class and overall. A grid shows
//!   `grid_per_class` of them per class.
//! - **Linear probe** ([`tessera_eval::probe`]) on three representations of the same images,
//!   `probe_train_images` from the training split and the first `probe_test_images` of the test
//!   set:
//!   - VIM: the output of block `probe_block`, averaged over the 64 image positions, with the
//!     empty caption (the unconditional view; the class is never in the input);
//!   - codes: the tokenizer's codes as a bag (one-hot codes averaged over positions, K-d), the
//!     same pooling over the same tokens;
//!   - pixels: the gray image, flattened.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};
use tessera_data::fashion::{FashionMnist, FASHION_CLASSES};
use tessera_data::mnist::Mnist;
use tessera_data::mnist64::Split;
use tessera_data::tensor::{images_to_tensor, tensor_to_images};
use tessera_data::SourceKind;
use tessera_eval::probe::{linear_probe, ProbeConfig, ProbeResult};
use tessera_models::biart::Direction;
use tessera_models::tokenizer::ImageTokenizer;

use crate::article_classifier::ArticleClassifier;
use crate::error::{Result, TrainError};
use crate::generator::{DirectionSteps, GeneratorTask};

/// Settings of `tessera eval vim`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VimEvalConfig {
    pub samples_per_class: usize,
    pub grid_per_class: usize,
    /// Block whose output the probe reads (1-based; 0 = the middle block, ⌈n_layer/2⌉).
    pub probe_block: usize,
    pub probe_train_images: usize,
    pub probe_test_images: usize,
    pub probe: ProbeConfig,
    pub seed: u64,
}

impl Default for VimEvalConfig {
    fn default() -> Self {
        Self {
            samples_per_class: 100,
            grid_per_class: 10,
            probe_block: 0,
            probe_train_images: 10_000,
            probe_test_images: 10_000,
            probe: ProbeConfig::default(),
            seed: 42,
        }
    }
}

/// One row of the probe comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeRow {
    pub features: String,
    #[serde(flatten)]
    pub result: ProbeResult,
}

/// What `tessera eval vim` measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VimReport {
    pub config: VimEvalConfig,
    /// Share of samples the classifier reads as the class they were drawn for.
    pub class_accuracy: f64,
    pub per_class_accuracy: Vec<(String, f64)>,
    /// The judge's own accuracy on the real Fashion-MNIST test set.
    pub classifier_test_accuracy: f64,
    pub probe_block: usize,
    pub probe: Vec<ProbeRow>,
    pub seconds: f64,
}

/// Refuse runs VIM's evaluation does not apply to, naming what is wrong.
fn check_run(task: &GeneratorTask) -> Result<()> {
    if task.config.data.source != SourceKind::FashionMnist {
        return Err(TrainError::Invalid(format!(
            "eval vim needs a generator trained on data.source = \"fashion-mnist\" (class-word captions); this run's is {:?}",
            task.config.data.source
        )));
    }
    if task.config.directions != DirectionSteps::T2i {
        tracing::warn!("this generator also trains image→text; VIM's probe assumes a text→image model");
    }
    Ok(())
}

/// Draw the class-conditional samples, score them and write `dir/samples_per_class.png`.
fn class_samples(
    task: &mut GeneratorTask,
    clf: &ArticleClassifier,
    cfg: &VimEvalConfig,
    dir: &Path,
) -> Result<Vec<(String, f64)>> {
    let sample_cfg = task.config.sample.clone();
    let bs = task.config.eval.batch_size.max(1);
    tch::manual_seed(cfg.seed as i64);
    let pb = crate::progress_bar("class samples", (cfg.samples_per_class * FASHION_CLASSES.len()) as u64);
    let mut per_class = Vec::new();
    let mut rows = Vec::new();
    for (label, name) in FASHION_CLASSES.iter().enumerate() {
        let (mut right, mut shown) = (0usize, Vec::new());
        for start in (0..cfg.samples_per_class).step_by(bs) {
            let n = bs.min(cfg.samples_per_class - start);
            let images = task.text_to_image(&vec![name.to_string(); n], &sample_cfg)?;
            let images01 = (&images + 1.0) / 2.0;
            right += clf.classify(&images01).into_iter().filter(|&c| c == label).count();
            if shown.len() < cfg.grid_per_class {
                let take = (cfg.grid_per_class - shown.len()).min(n) as i64;
                shown.extend(tensor_to_images(&images.narrow(0, 0, take))?);
            }
            pb.inc(n as u64);
        }
        let acc = right as f64 / cfg.samples_per_class.max(1) as f64;
        rows.push((
            tessera_core::viz::image_grid(&shown, cfg.grid_per_class.max(1), 2),
            format!("{name} {acc:.2}"),
        ));
        per_class.push((name.to_string(), acc));
    }
    pb.finish_and_clear();
    let grid = tessera_core::viz::labelled_rows(&rows, 2, 14);
    let path = dir.join("samples_per_class.png");
    grid.save(&path).map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(per_class)
}

/// The three representations of `count` images of `split` (VIM block features, bag of codes,
/// pixels) and their labels.
fn probe_features(
    task: &mut GeneratorTask,
    files: &Arc<Mnist>,
    split: Split,
    count: usize,
    block: usize,
) -> Result<([Tensor; 3], Tensor)> {
    let size = task.config.data.image_size;
    let data = FashionMnist::split(files, split, size)?;
    let count = count.min(tessera_data::Dataset::len(&data));
    let empty = task.encode_captions(&[String::new()])?;
    let k = task.tokenizer.num_codes() as i64;
    let bs = task.config.eval.batch_size.max(1);
    let (mut vim, mut bags, mut pixels, mut labels) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let pb = crate::progress_bar(&format!("probe features ({})", split.name()), count as u64);
    for start in (0..count).step_by(bs) {
        let idx: Vec<usize> = (start..(start + bs).min(count)).collect();
        let imgs: Vec<image::RgbImage> = idx.iter().map(|&i| data.image(i)).collect();
        labels.extend(idx.iter().map(|&i| data.label(i) as i64));
        let x = images_to_tensor(&imgs)?.to_device(task.device);
        let codes = task.tokenizer.encode(&x).map_err(|e| TrainError::Invalid(format!("encoding: {e}")))?;
        let codes = codes.view([idx.len() as i64, -1]);
        let text = empty.expand([idx.len() as i64, empty.size()[1]], false);
        vim.push(
            tch::no_grad(|| task.model.image_features(Direction::T2i, &text, &codes, block))
                .to_device(Device::Cpu),
        );
        bags.push(
            codes.one_hot(k).to_kind(Kind::Float).mean_dim(1, false, Kind::Float).to_device(Device::Cpu),
        );
        pixels.push(x.select(1, 0).flatten(1, -1).to_device(Device::Cpu));
        pb.inc(idx.len() as u64);
    }
    pb.finish_and_clear();
    Ok(([Tensor::cat(&vim, 0), Tensor::cat(&bags, 0), Tensor::cat(&pixels, 0)], Tensor::from_slice(&labels)))
}

/// Run VIM's evaluation on a trained generator and write `dir/vim.json` and
/// `dir/samples_per_class.png`.
pub fn evaluate_vim(
    task: &mut GeneratorTask,
    classifier: &Path,
    root: &Path,
    cfg: &VimEvalConfig,
    dir: &Path,
) -> Result<VimReport> {
    tessera_core::validate::validate_section("probe", &cfg.probe).map_err(TrainError::Invalid)?;
    check_run(task)?;
    let n_layer = task.config.model.n_layer;
    let block = if cfg.probe_block == 0 { n_layer.div_ceil(2) } else { cfg.probe_block };
    if block > n_layer {
        return Err(TrainError::Invalid(format!(
            "probe_block = {block}, but the model has {n_layer} blocks"
        )));
    }
    let start = std::time::Instant::now();
    let clf = ArticleClassifier::load(classifier, task.device)?;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let per_class = class_samples(task, &clf, cfg, dir)?;
    let class_accuracy = per_class.iter().map(|(_, a)| a).sum::<f64>() / per_class.len() as f64;
    // Read once for both splits (the IDX files are gzip-compressed).
    let files = FashionMnist::load(root)?;
    let (train, ytr) = probe_features(task, &files, Split::Train, cfg.probe_train_images, block)?;
    let (test, yte) = probe_features(task, &files, Split::Test, cfg.probe_test_images, block)?;
    let names = [format!("VIM block {block} (avg-pooled)"), "codes (bag of codes)".into(), "pixels".into()];
    let mut probe = Vec::new();
    for ((name, xtr), xte) in names.into_iter().zip(&train).zip(&test) {
        let result = linear_probe(xtr, &ytr, xte, &yte, 10, &cfg.probe).map_err(TrainError::Invalid)?;
        tracing::info!("probe on {name}: test accuracy {:.4}", result.test_accuracy);
        probe.push(ProbeRow { features: name, result });
    }
    let report = VimReport {
        config: cfg.clone(),
        class_accuracy,
        per_class_accuracy: per_class,
        classifier_test_accuracy: clf.report.test_accuracy,
        probe_block: block,
        probe,
        seconds: start.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&report).expect("report serializes");
    tessera_core::fsutil::write_atomic(&dir.join("vim.json"), json.as_bytes())
        .map_err(|e| TrainError::io(dir, e))?;
    Ok(report)
}
