//! Scoring a trained generator on MNIST64x64 (spec §9.1), with the evidence a reader needs:
//!
//! - T2I: every ground-truth location of a caption is cropped out of the generated image and read
//!   by the evaluation classifier; each reading is right when (location, colour, digit) is in the
//!   ground truth.
//! - I2T: every segment of the generated caption is parsed as Bi-DALL-E's `MnistLabelParser`
//!   does; it is right when its triple is in the ground truth.
//! - Accuracies per bucket ([`CaptionScores`]), a bootstrap interval over images of the `all`
//!   accuracy, per-sample records (`{t2i,i2t}_{split}.jsonl`) and grids whose lines are marked right
//!   or wrong (`{t2i,i2t}_{split}.png`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};
use tessera_core::viz::{marked_rows, Mark};
use tessera_data::mnist64::{parse_caption, Location, Split, Triple};
use tessera_data::tensor::tensor_to_images;
use tessera_data::{DataLoader, Dataset, LoaderConfig, Subset};
use tessera_eval::captions::{i2t_segment_right, Accuracy, CaptionScores, Counts};
use tessera_eval::stats::{bootstrap_ratio_interval, Interval};

use crate::classifier::Classifier;
use crate::error::{Result, TrainError};
use crate::generator::GeneratorTask;

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
    classifier: &Classifier,
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
            let preds = classifier.classify(&Tensor::stack(&crops, 0));
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

fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut buf = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut buf, r).expect("serializable");
        buf.write_all(b"\n").expect("in memory");
    }
    tessera_core::fsutil::write_atomic(path, &buf).map_err(|e| TrainError::io(path, e))
}

fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    img.save(path).map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))
}

fn interval(items: &[(usize, usize)], seed: u64) -> Option<Interval> {
    bootstrap_ratio_interval(items, BOOTSTRAP_ROUNDS, seed)
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
    let ds = task.config.data.open(split, root)?;
    let sub: Arc<dyn Dataset> = Arc::new(Subset::new(ds, n));
    let images = sub.len();
    let loader = DataLoader::new(sub, LoaderConfig::eval(task.config.eval.batch_size.max(1)), task.device);
    let cfg = task.config.sample.clone();
    let (mut t2i, mut i2t) = (CaptionScores::new(), CaptionScores::new());
    let (mut t2i_recs, mut i2t_recs) = (Vec::new(), Vec::new());
    let (mut t2i_rows, mut i2t_rows) = (Vec::new(), Vec::new());
    tch::manual_seed(task.config.eval.seed as i64);
    let pb = indicatif::ProgressBar::new(images as u64).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "eval {} {{pos}}/{{len}} [{{bar:30}}] eta {{eta}}",
            split.name()
        ))
        .expect("valid"),
    );
    for b in loader.epoch(0) {
        let b = b?;
        let generated = task.text_to_image(&b.captions, &cfg)?;
        let t2i_scored = score_t2i(classifier, &((&generated + 1.0) / 2.0), &b.captions, &mut t2i);
        let said = task.image_to_text(&b.images, &cfg)?;
        let i2t_scored = score_i2t(&b.captions, &said, &mut i2t);
        let want_rows = GRID_ROWS.saturating_sub(t2i_rows.len());
        let (gen_imgs, real_imgs) = if want_rows > 0 {
            (tensor_to_images(&generated)?, tensor_to_images(&b.images)?)
        } else {
            (Vec::new(), Vec::new())
        };
        for (k, ((readings, tc), (segments, ic))) in t2i_scored.into_iter().zip(i2t_scored).enumerate() {
            let index = b.indices[k];
            if k < want_rows {
                let mut marks = vec![Mark::plain(b.captions[k].clone())];
                marks.extend(readings.iter().map(|r| Mark::judged(format!("read {}", r.read), r.right)));
                t2i_rows.push((gen_imgs[k].clone(), marks));
                let mut marks = vec![Mark::plain(format!("said: {}", said[k]))];
                marks.extend(segments.iter().map(|s| Mark::judged(s.parsed.clone(), s.right)));
                i2t_rows.push((real_imgs[k].clone(), marks));
            }
            t2i_recs.push(T2iRecord {
                index,
                caption: b.captions[k].clone(),
                readings,
                exact: tc.exact,
                labels: tc.labels,
            });
            i2t_recs.push(I2tRecord {
                index,
                truth: b.captions[k].clone(),
                generated: said[k].clone(),
                segments,
                exact: ic.exact,
                labels: ic.labels,
            });
        }
        pb.inc(b.indices.len() as u64);
    }
    pb.finish_and_clear();
    if let Some(dir) = samples_dir {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let name = split.name();
        save_png(&marked_rows(&t2i_rows, 2, 96), &dir.join(format!("t2i_{name}.png")))?;
        save_png(&marked_rows(&i2t_rows, 2, 96), &dir.join(format!("i2t_{name}.png")))?;
        write_jsonl(&dir.join(format!("t2i_{name}.jsonl")), &t2i_recs)?;
        write_jsonl(&dir.join(format!("i2t_{name}.jsonl")), &i2t_recs)?;
    }
    let seed = task.config.eval.seed;
    let per_image = |recs: Vec<(usize, usize)>| interval(&recs, seed);
    Ok(SplitScores {
        images,
        t2i: t2i.report(),
        i2t: i2t.report(),
        t2i_ci: per_image(t2i_recs.iter().map(|r| (r.exact, r.labels)).collect()),
        i2t_ci: per_image(i2t_recs.iter().map(|r| (r.exact, r.labels)).collect()),
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
