//! What an evaluation of a split leaves behind: per-sample JSONL records and grids whose lines are
//! marked right or wrong.

use std::io::Write;
use std::path::Path;

use image::RgbImage;
use serde::Serialize;
use tessera_core::viz::{marked_rows, Mark};

use super::{EvalError, I2tRecord, Reading, Segment, T2iRecord};
use crate::captions::{CaptionScores, Counts};

/// Scores, records and grid rows gathered over a split.
#[derive(Default)]
pub(super) struct Collected {
    pub t2i: CaptionScores,
    pub i2t: CaptionScores,
    pub t2i_recs: Vec<T2iRecord>,
    pub i2t_recs: Vec<I2tRecord>,
    pub t2i_rows: Vec<(RgbImage, Vec<Mark>)>,
    pub i2t_rows: Vec<(RgbImage, Vec<Mark>)>,
}

impl Collected {
    /// One sample: its records, and its grid rows when `pictures` (generated, real) are given.
    pub fn add(
        &mut self,
        index: usize,
        caption: &str,
        said: &str,
        (readings, tc): (Vec<Reading>, Counts),
        (segments, ic): (Vec<Segment>, Counts),
        pictures: Option<(&RgbImage, &RgbImage)>,
    ) {
        if let Some((generated, real)) = pictures {
            let mut marks = vec![Mark::plain(caption)];
            marks.extend(readings.iter().map(|r| Mark::judged(format!("read {}", r.read), r.right)));
            self.t2i_rows.push((generated.clone(), marks));
            let mut marks = vec![Mark::plain(format!("said: {said}"))];
            marks.extend(segments.iter().map(|s| Mark::judged(s.parsed.clone(), s.right)));
            self.i2t_rows.push((real.clone(), marks));
        }
        self.t2i_recs.push(T2iRecord {
            index,
            caption: caption.to_string(),
            readings,
            exact: tc.exact,
            labels: tc.labels,
        });
        self.i2t_recs.push(I2tRecord {
            index,
            truth: caption.to_string(),
            generated: said.to_string(),
            segments,
            exact: ic.exact,
            labels: ic.labels,
        });
    }

    /// `t2i_{name}.{png,jsonl}` and `i2t_{name}.{png,jsonl}` in `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(), EvalError> {
        std::fs::create_dir_all(dir).map_err(|e| output_error(dir, e))?;
        save_png(&marked_rows(&self.t2i_rows, 2, 96), &dir.join(format!("t2i_{name}.png")))?;
        save_png(&marked_rows(&self.i2t_rows, 2, 96), &dir.join(format!("i2t_{name}.png")))?;
        write_jsonl(&dir.join(format!("t2i_{name}.jsonl")), &self.t2i_recs)?;
        write_jsonl(&dir.join(format!("i2t_{name}.jsonl")), &self.i2t_recs)
    }
}

/// A progress bar over the `len` images of split `name`.
pub(super) fn progress(name: &str, len: usize) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(&format!(
        "eval {name} {{pos}}/{{len}} [{{bar:30}}] eta {{eta}}"
    ))
    .expect("valid template");
    indicatif::ProgressBar::new(len as u64).with_style(style)
}

fn output_error(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Output { path: path.into(), reason: e.to_string() }
}

fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), EvalError> {
    let mut buf = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut buf, r).expect("serializable");
        buf.write_all(b"\n").expect("in memory");
    }
    tessera_core::fsutil::write_atomic(path, &buf).map_err(|e| output_error(path, e))
}

fn save_png(img: &RgbImage, path: &Path) -> Result<(), EvalError> {
    img.save(path).map_err(|e| output_error(path, e))
}
