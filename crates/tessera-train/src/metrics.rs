//! Metrics as JSON lines (`metrics.jsonl`: `{"step", "split", name: value, …}`), kept in memory
//! too, and drawn as SVG plots ([`crate::plot`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

/// One record.
pub type Record = BTreeMap<String, f64>;

pub struct MetricsLog {
    path: PathBuf,
    /// (step, split, values)
    pub history: Vec<(i64, String, Record)>,
}

impl MetricsLog {
    /// Open (appending) `dir/metrics.jsonl`; earlier records are read back, except any at or after
    /// `from_step` (a resumed run rewrites those).
    pub fn open(dir: &Path, from_step: i64) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let mut history = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                let step = v["step"].as_i64().unwrap_or(0);
                if step >= from_step {
                    continue;
                }
                let split = v["split"].as_str().unwrap_or("train").to_string();
                let rec = v
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .filter_map(|(k, x)| x.as_f64().filter(|_| k != "step").map(|x| (k.clone(), x)))
                            .collect()
                    })
                    .unwrap_or_default();
                history.push((step, split, rec));
            }
        }
        let log = Self { path, history };
        log.rewrite()?;
        Ok(log)
    }

    fn rewrite(&self) -> Result<()> {
        let mut text = String::new();
        for (step, split, rec) in &self.history {
            text.push_str(&Self::line(*step, split, rec));
        }
        tessera_core::fsutil::write_atomic(&self.path, text.as_bytes())
            .map_err(|e| TrainError::io(&self.path, e))
    }

    fn line(step: i64, split: &str, rec: &Record) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert("step".into(), step.into());
        obj.insert("split".into(), split.into());
        for (k, v) in rec {
            obj.insert(k.clone(), serde_json::Value::from(*v));
        }
        let mut s = serde_json::Value::Object(obj).to_string();
        s.push('\n');
        s
    }

    pub fn write(&mut self, step: i64, split: &str, rec: Record) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        f.write_all(Self::line(step, split, &rec).as_bytes()).map_err(|e| TrainError::io(&self.path, e))?;
        self.history.push((step, split.to_string(), rec));
        Ok(())
    }

    /// (step, value) of `key` in `split`.
    pub fn series(&self, split: &str, key: &str) -> Vec<(f64, f64)> {
        self.history
            .iter()
            .filter(|(_, s, _)| s == split)
            .filter_map(|(step, _, r)| r.get(key).map(|v| (*step as f64, *v)))
            .collect()
    }

    /// Plot `keys` of `split` to `file`.
    pub fn plot(&self, file: &Path, title: &str, split: &str, keys: &[&str], log_y: bool) -> Result<()> {
        let series: Vec<crate::plot::Series> = keys
            .iter()
            .map(|k| (k.to_string(), self.series(split, k)))
            .filter(|(_, s)| !s.is_empty())
            .collect();
        let spec = crate::plot::PlotSpec { title, x_label: "step", y_label: split, log_y };
        crate::plot::save_line_plot(file, &spec, &series)
    }
}

/// `(step, value)` of `key` in `split` from a run's `metrics.jsonl`, read-only (empty if absent).
pub fn read_series(dir: &Path, split: &str, key: &str) -> Vec<(f64, f64)> {
    let Ok(text) = std::fs::read_to_string(dir.join("metrics.jsonl")) else { return Vec::new() };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["split"].as_str() == Some(split))
        .filter_map(|v| Some((v["step"].as_f64()?, v[key].as_f64()?)))
        .collect()
}
