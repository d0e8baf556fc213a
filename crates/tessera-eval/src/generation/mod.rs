//! Scoring a text↔image generator on MNIST64x64 (spec §9.1), with the evidence a reader needs.
//! Bi-directional DALL-E's protocol: `eval_t2i.py` / `eval_i2t.py` with `parser.py`
//! (wcshin-git/Bidirectional_DALLE); the model and the classifier come in as a trait and a closure.
//!
//! - T2I: every ground-truth location of a caption is cropped out of the generated image and read
//!   by the evaluation classifier; each reading is right when (location, colour, digit) is in the
//!   ground truth.
//! - I2T: every segment of the generated caption is parsed as Bi-DALL-E's `MnistLabelParser`
//!   does; it is right when its triple is in the ground truth.
//! - Accuracies per bucket ([`CaptionScores`]), a bootstrap interval over images of the `all`
//!   accuracy, per-sample records (`{t2i,i2t}_{split}.jsonl`) and grids whose lines are marked right
//!   or wrong (`{t2i,i2t}_{split}.png`).

mod output;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};
use tessera_data::mnist64::{parse_caption, Colour, Location, Triple};
use tessera_data::tensor::tensor_to_images;
use tessera_data::{DataError, DataLoader, Dataset, LoaderConfig, Subset};

use crate::captions::{i2t_segment_right, Accuracy, CaptionScores, Counts};
use crate::stats::{bootstrap_ratio_interval, Interval};

/// What scoring a generator can fail on, besides the generator itself.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{path}: {reason}")]
    Output { path: PathBuf, reason: String },
}

/// A model that writes images from captions and captions from images (BiART), as scored here.
pub trait TextImageModel {
    type Error: From<EvalError>;
    /// Images in `[-1, 1]`, one per caption: `(B, 3, H, W)`.
    fn text_to_image(&mut self, captions: &[String]) -> Result<Tensor, Self::Error>;
    /// One caption per image of `images` `(B, 3, H, W)` in `[-1, 1]`.
    fn image_to_text(&mut self, images: &Tensor) -> Result<Vec<String>, Self::Error>;
}

/// The evaluation classifier: colour and digit of each `(B, 3, 28, 28)` crop in `[0, 1]`.
pub type DigitReader<'a> = &'a dyn Fn(&Tensor) -> Vec<(Colour, u8)>;

/// Bootstrap resamples of the per-image intervals.
const BOOTSTRAP_ROUNDS: usize = 2000;
/// Samples drawn in each grid.
const GRID_ROWS: usize = 8;

/// T2I and I2T accuracy on one split.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SplitScores {
    pub images: usize,
    pub t2i: BTreeMap<String, Accuracy>,
    pub i2t: BTreeMap<String, Accuracy>,
    /// 95 % bootstrap interval over images of `t2i["all"].acc`.
    #[serde(default)]
    pub t2i_ci: Option<Interval>,
    /// 95 % bootstrap interval over images of `i2t["all"].acc`.
    #[serde(default)]
    pub i2t_ci: Option<Interval>,
}

/// The classifier's reading at one named location of a generated image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub location: String,
    pub wanted: String,
    pub read: String,
    pub right: bool,
}

/// One text→image sample.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct T2iRecord {
    pub index: usize,
    pub caption: String,
    pub readings: Vec<Reading>,
    pub exact: usize,
    pub labels: usize,
}

/// One segment of a generated caption.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub parsed: String,
    pub right: bool,
}

/// One image→text sample.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct I2tRecord {
    pub index: usize,
    pub truth: String,
    pub generated: String,
    pub segments: Vec<Segment>,
    pub exact: usize,
    pub labels: usize,
}

fn location_name(l: Location) -> &'static str {
    l.phrase(false).unwrap_or("centre")
}

/// `"upper left red 3"`, with `?` for a missing colour or digit.
pub fn triple_text(t: &Triple) -> String {
    let colour = t.colour.map_or("?", |c| c.name());
    let digit = t.digit.map_or_else(|| "?".to_string(), |d| d.to_string());
    format!("{} {colour} {digit}", location_name(t.location))
}

/// Read every ground-truth location of each caption in the generated images and score them.
///
/// # Shapes
/// `images01: (B, 3, 64, 64)` in `[0, 1]`, one per caption.
pub fn score_t2i(
    read: DigitReader,
    images01: &Tensor,
    captions: &[String],
    scores: &mut CaptionScores,
) -> Vec<(Vec<Reading>, Counts)> {
    let images01 = images01.to_device(Device::Cpu);
    captions
        .iter()
        .enumerate()
        .map(|(i, caption)| {
            let gt = parse_caption(caption);
            if gt.is_empty() {
                return (Vec::new(), Counts::default());
            }
            let crops: Vec<Tensor> = gt
                .iter()
                .map(|t| {
                    let (r, c) = t.location.origin();
                    images01.get(i as i64).narrow(1, r as i64, 28).narrow(2, c as i64, 28)
                })
                .collect();
            let preds = read(&Tensor::stack(&crops, 0));
            let counts = scores.add_t2i(&gt, &preds);
            let readings = gt
                .iter()
                .zip(&preds)
                .map(|(g, &(colour, digit))| {
                    let read = Triple { location: g.location, colour: Some(colour), digit: Some(digit) };
                    Reading {
                        location: location_name(g.location).into(),
                        wanted: triple_text(g),
                        read: triple_text(&read),
                        right: gt.contains(&read),
                    }
                })
                .collect();
            (readings, counts)
        })
        .collect()
}

/// Parse and score generated captions against the true ones.
pub fn score_i2t(
    truths: &[String],
    generated: &[String],
    scores: &mut CaptionScores,
) -> Vec<(Vec<Segment>, Counts)> {
    truths
        .iter()
        .zip(generated)
        .map(|(truth, g)| {
            let gt = parse_caption(truth);
            let parsed = parse_caption(g);
            let counts = scores.add_i2t(&gt, &parsed);
            let segs = parsed
                .iter()
                .map(|p| Segment { parsed: triple_text(p), right: i2t_segment_right(&gt, p) })
                .collect();
            (segs, counts)
        })
        .collect()
}

fn interval(items: &[(usize, usize)], seed: u64) -> Option<Interval> {
    bootstrap_ratio_interval(items, BOOTSTRAP_ROUNDS, seed)
}

/// Where and how to score one split.
pub struct SplitEval<'a> {
    /// The split's name, for file names and the progress bar.
    pub name: &'a str,
    pub batch_size: usize,
    pub device: Device,
    /// Seeds the sampling (`tch::manual_seed`) and the bootstrap.
    pub seed: u64,
    /// Where `t2i_{name}.{png,jsonl}` and `i2t_{name}.{png,jsonl}` go, if anywhere.
    pub samples_dir: Option<&'a Path>,
}

/// Evaluate on the first `n` images of `data` (spec §9.1, MNIST64x64 captions). With
/// `samples_dir`, writes every sample to JSONL and the first eight to grids, each reading or
/// segment marked right or wrong.
pub fn evaluate_split<M: TextImageModel>(
    model: &mut M,
    read: DigitReader,
    data: Arc<dyn Dataset>,
    n: usize,
    how: &SplitEval,
) -> Result<SplitScores, M::Error> {
    let sub: Arc<dyn Dataset> = Arc::new(Subset::new(data, n));
    let images = sub.len();
    let loader = DataLoader::new(sub, LoaderConfig::eval(how.batch_size.max(1)), how.device);
    let mut out = output::Collected::default();
    tch::manual_seed(how.seed as i64);
    let pb = output::progress(how.name, images);
    for b in loader.epoch(0) {
        let b = b.map_err(EvalError::from)?;
        let generated = model.text_to_image(&b.captions)?;
        let t2i_scored = score_t2i(read, &((&generated + 1.0) / 2.0), &b.captions, &mut out.t2i);
        let said = model.image_to_text(&b.images)?;
        let i2t_scored = score_i2t(&b.captions, &said, &mut out.i2t);
        let want_rows = GRID_ROWS.saturating_sub(out.t2i_rows.len());
        let pictures = if want_rows > 0 {
            let gen = tensor_to_images(&generated).map_err(EvalError::from)?;
            Some((gen, tensor_to_images(&b.images).map_err(EvalError::from)?))
        } else {
            None
        };
        for (k, (t2i, i2t)) in t2i_scored.into_iter().zip(i2t_scored).enumerate() {
            let pics = pictures.as_ref().filter(|_| k < want_rows).map(|(g, r)| (&g[k], &r[k]));
            out.add(b.indices[k], &b.captions[k], &said[k], t2i, i2t, pics);
        }
        pb.inc(b.indices.len() as u64);
    }
    pb.finish_and_clear();
    if let Some(dir) = how.samples_dir {
        out.write(dir, how.name)?;
    }
    let per_image = |recs: Vec<(usize, usize)>| interval(&recs, how.seed);
    Ok(SplitScores {
        images,
        t2i_ci: per_image(out.t2i_recs.iter().map(|r| (r.exact, r.labels)).collect()),
        i2t_ci: per_image(out.i2t_recs.iter().map(|r| (r.exact, r.labels)).collect()),
        t2i: out.t2i.report(),
        i2t: out.i2t.report(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i2t_segments_are_marked_one_by_one() {
        let mut s = CaptionScores::new();
        let out = score_i2t(
            &["upper left red 3, lower right blue 7".to_string()],
            &["upper left red 3, lower right green 7".to_string()],
            &mut s,
        );
        let (segs, counts) = &out[0];
        assert_eq!(
            segs,
            &vec![
                Segment { parsed: "upper left red 3".into(), right: true },
                Segment { parsed: "lower right green 7".into(), right: false },
            ]
        );
        assert_eq!((counts.exact, counts.labels), (1, 2));
    }

    #[test]
    fn triple_text_names_missing_parts() {
        let t = tessera_data::mnist64::parse_segment("this is 4");
        assert_eq!(triple_text(&t), "centre ? 4");
    }
}
