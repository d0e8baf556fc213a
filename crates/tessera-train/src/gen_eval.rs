//! Scoring a trained BiART run on MNIST64x64: [`tessera_eval::generation`] driven by the run's
//! sampler and the evaluation classifier. Only MNIST64x64 data has captions the scorer can read.

use std::path::Path;

use tch::Tensor;
use tessera_data::mnist64::Split;
use tessera_data::{DataConfig, SourceKind};
pub use tessera_eval::generation::{triple_text, I2tRecord, Reading, Segment, SplitScores, T2iRecord};
use tessera_eval::generation::{SplitEval, TextImageModel};
use tessera_models::biart::sample::SampleConfig;

use crate::classifier::Classifier;
use crate::error::{Result, TrainError};
use crate::generator::GeneratorTask;

/// Whether the data has captions the T2I/I2T scorer reads (MNIST64x64's location, colour, digit).
pub fn scorable(data: &DataConfig) -> bool {
    data.source == SourceKind::Mnist64
}

/// T2I and I2T accuracy read MNIST64x64 captions (location, colour, digit): refuse other data.
pub fn require_mnist64(data: &DataConfig) -> Result<()> {
    if scorable(data) {
        Ok(())
    } else {
        Err(TrainError::Invalid(format!(
            "T2I/I2T accuracy reads MNIST64x64 captions (location, colour, digit) and data.source = {:?} has none; \
             sample with `tessera generate` instead",
            data.source
        )))
    }
}

/// A generator run with its sampling settings, as the scorer sees it.
struct Sampler<'a> {
    task: &'a mut GeneratorTask,
    cfg: SampleConfig,
}

impl TextImageModel for Sampler<'_> {
    type Error = TrainError;

    fn text_to_image(&mut self, captions: &[String]) -> Result<Tensor> {
        self.task.text_to_image(captions, &self.cfg)
    }

    fn image_to_text(&mut self, images: &Tensor) -> Result<Vec<String>> {
        self.task.image_to_text(images, &self.cfg)
    }
}

/// Evaluate on the first `n` images of `split` (spec §9.1). With `samples_dir`, writes
/// `t2i_{split}.{png,jsonl}` and `i2t_{split}.{png,jsonl}` there: every sample in the JSONL, the
/// first eight in the grids, each reading or segment marked right or wrong.
pub fn evaluate_split(
    task: &mut GeneratorTask,
    classifier: &Classifier,
    split: Split,
    n: usize,
    root: &Path,
    samples_dir: Option<&Path>,
) -> Result<SplitScores> {
    require_mnist64(&task.config.data)?;
    let data = task.config.data.open(split, root)?;
    let how = SplitEval {
        name: split.name(),
        batch_size: task.config.eval.batch_size,
        device: task.device,
        seed: task.config.eval.seed,
        samples_dir,
    };
    let read = |crops: &Tensor| classifier.classify(crops);
    let mut model = Sampler { cfg: task.config.sample.clone(), task };
    tessera_eval::generation::evaluate_split(&mut model, &read, data, n, &how)
}
