//! The numbers of a study's report: the comparison table (mean ± sample standard deviation over
//! seeds, a bootstrap interval over images with one seed, a paired t-interval over seeds for each
//! difference), accuracy per bucket, and one sentence per difference.

use std::fmt::Write as _;

use serde::Serialize;
use tessera_eval::stats::{t_interval, Interval};

use crate::study::{RunResult, StudyResults};

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n;
    let s =
        if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, s)
}

/// A number of one run by key: tokenizer metrics by name, or `t2i|i2t/{split}/{bucket}[/colour|/digit]`.
pub fn metric(r: &RunResult, key: &str) -> Option<f64> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        [dir @ ("t2i" | "i2t"), split, bucket, rest @ ..] => {
            let s = r.generator.get(*split)?;
            let table = if *dir == "t2i" { &s.t2i } else { &s.i2t };
            let a = table.get(*bucket)?;
            Some(match rest {
                [] => a.acc,
                ["colour"] => a.colour_acc,
                ["digit"] => a.digit_acc,
                _ => return None,
            })
        }
        [name] if *name == "minutes" => Some(r.seconds.values().sum::<f64>() / 60.0),
        [name] => r.tokenizer.get(*name).copied(),
        _ => None,
    }
}

pub const MAIN_ROWS: [(&str, &str); 11] = [
    ("trans_eq_acc", "Trans_eq_acc (↑)"),
    ("psnr", "PSNR dB (↑)"),
    ("ssim", "SSIM (↑)"),
    ("usage", "codebook usage (↑)"),
    ("perplexity", "code perplexity"),
    ("dead_codes", "dead codes (↓)"),
    ("t2i/validation/all", "T2I accuracy, validation (↑)"),
    ("t2i/test-unseen/all", "T2I accuracy, test-unseen (↑)"),
    ("i2t/validation/all", "I2T accuracy, validation (↑)"),
    ("i2t/test-unseen/all", "I2T accuracy, test-unseen (↑)"),
    ("minutes", "wall time, min"),
];

pub const BUCKETS: [&str; 6] = ["center", "quad1", "quad2", "quad3", "quad4", "all"];

/// A table as the templates draw it: a header row and rows of cells.
#[derive(Serialize)]
pub struct Table {
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

pub fn fmt(m: f64, s: f64, n: usize) -> String {
    fmt_with(m, s, n, false)
}

/// `mean ± sd` (sd only for several seeds), with a sign for differences.
fn fmt_with(m: f64, s: f64, n: usize, signed: bool) -> String {
    if !m.is_finite() {
        return "–".into();
    }
    let d = if m.abs() >= 10.0 { 2 } else { 4 };
    let mean = if signed { format!("{m:+.d$}") } else { format!("{m:.d$}") };
    if n > 1 {
        format!("{mean} ± {s:.d$}")
    } else {
        mean
    }
}

fn arm_values(res: &StudyResults, arm: &str, key: &str) -> Vec<f64> {
    res.runs.iter().filter(|r| r.arm == arm).filter_map(|r| metric(r, key)).collect()
}

/// Paired differences (second arm − first arm) over seeds.
fn paired(res: &StudyResults, key: &str) -> Vec<f64> {
    let arms = &res.config.arms;
    if arms.len() < 2 {
        return Vec::new();
    }
    res.runs
        .iter()
        .filter(|r| r.arm == arms[1].name)
        .filter_map(|b| {
            let a = res.runs.iter().find(|a| a.arm == arms[0].name && a.seed == b.seed)?;
            Some(metric(b, key)? - metric(a, key)?)
        })
        .collect()
}

/// The bootstrap interval over images of an `all` accuracy (`t2i|i2t/{split}/all`).
fn metric_interval(r: &RunResult, key: &str) -> Option<Interval> {
    match key.split('/').collect::<Vec<_>>().as_slice() {
        [dir @ ("t2i" | "i2t"), split, "all"] => {
            let s = r.generator.get(*split)?;
            if *dir == "t2i" {
                s.t2i_ci
            } else {
                s.i2t_ci
            }
        }
        _ => None,
    }
}

/// The paired 95 % t-interval over seeds of `second arm − first arm`.
fn paired_interval(res: &StudyResults, key: &str) -> Option<Interval> {
    t_interval(&paired(res, key))
}

fn digits(m: f64) -> usize {
    if m.abs() >= 10.0 {
        2
    } else {
        4
    }
}

pub fn main_table(res: &StudyResults) -> Table {
    let arms = &res.config.arms;
    let mut head = vec!["metric".to_string()];
    head.extend(arms.iter().map(|a| {
        let kind = match a.kind {
            crate::study::ArmKind::Vqgan => format!("{} (λ_o = {}", a.name, a.ortho_weight),
            crate::study::ArmKind::VitVqgan => format!("{} (ViT-VQGAN", a.name),
            crate::study::ArmKind::AugvaeSl => format!("{} (AugVAE-SL", a.name),
        };
        format!("{kind}{})", if a.lg.is_some() { ", LG" } else { "" })
    }));
    if arms.len() >= 2 {
        head.push(format!("{} − {} (95 % CI over seeds)", arms[1].name, arms[0].name));
    }
    let rows = MAIN_ROWS
        .iter()
        .map(|(key, label)| {
            let mut row = vec![label.to_string()];
            for a in arms {
                let v = arm_values(res, &a.name, key);
                let (m, s) = mean_std(&v);
                let mut cell = fmt(m, s, v.len());
                let runs: Vec<&RunResult> = res.runs.iter().filter(|r| r.arm == a.name).collect();
                if let Some(iv) =
                    runs.as_slice().first().filter(|_| runs.len() == 1).and_then(|r| metric_interval(r, key))
                {
                    let _ = write!(cell, " [{:.3}, {:.3}]", iv.lo, iv.hi);
                }
                row.push(cell);
            }
            if arms.len() >= 2 {
                let d = paired(res, key);
                let cell = match (d.len(), paired_interval(res, key)) {
                    (0, _) => "–".to_string(),
                    (_, Some(iv)) => {
                        let p = digits(iv.mean);
                        format!("{:+.p$} [{:+.p$}, {:+.p$}]", iv.mean, iv.lo, iv.hi)
                    }
                    _ => format!("{:+.p$} (1 seed: no interval)", d[0], p = digits(d[0])),
                };
                row.push(cell);
            }
            row
        })
        .collect();
    Table { head, rows }
}

pub fn bucket_table(res: &StudyResults, dir: &str, split: &str) -> Table {
    let mut head = vec!["bucket".to_string()];
    for a in &res.config.arms {
        head.extend([format!("{} acc", a.name), format!("{} colour", a.name), format!("{} digit", a.name)]);
    }
    let rows = BUCKETS
        .iter()
        .map(|b| {
            let mut row = vec![b.to_string()];
            for a in &res.config.arms {
                for suffix in ["", "/colour", "/digit"] {
                    let v = arm_values(res, &a.name, &format!("{dir}/{split}/{b}{suffix}"));
                    let (m, s) = mean_std(&v);
                    row.push(fmt(m, s, v.len()));
                }
            }
            row
        })
        .collect();
    Table { head, rows }
}

/// One sentence per compared metric: is `second − first arm` distinguishable from zero?
pub fn verdict(res: &StudyResults, key: &str, label: &str) -> Option<String> {
    let d = paired(res, key);
    let arms = &res.config.arms;
    if d.is_empty() || arms.len() < 2 {
        return None;
    }
    Some(match paired_interval(res, key) {
        Some(iv) => iv.verdict(label, &arms[1].name, &arms[0].name),
        None => format!(
            "{label}: {} − {} = {:+.4} on one seed; with one seed the study cannot tell a difference from seed-to-seed noise (run --seeds 3 for an interval).",
            arms[1].name, arms[0].name, d[0]
        ),
    })
}

/// Code↔caption retrieval per run (arms with `lg`; the others have no global image token):
/// recall@1 and @5 in both directions with their 95 % bootstrap intervals over queries.
pub fn retrieval_table(res: &StudyResults) -> Option<Table> {
    let runs: Vec<&RunResult> = res.runs.iter().filter(|r| r.retrieval.is_some()).collect();
    let first = runs.first()?.retrieval.as_ref()?;
    let head = ["arm (seed)", "image→text R@1", "R@5", "text→image R@1", "R@5"].map(String::from).to_vec();
    let ci = |i: &Interval| format!("{:.3} [{:.3}, {:.3}]", i.mean, i.lo, i.hi);
    let mut rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let s = r.retrieval.as_ref().expect("filtered");
            let (a, b) = (&s.image_to_text, &s.text_to_image);
            vec![format!("{} ({})", r.arm, r.seed), ci(&a.at1), ci(&a.at5), ci(&b.at1), ci(&b.at5)]
        })
        .collect();
    let chance = first.chance_at1;
    rows.push(vec![
        format!("chance ({} images)", first.gallery),
        format!("{chance:.3}"),
        format!("≈ {:.3}", (5.0 * chance).min(1.0)),
        format!("{chance:.3}"),
        format!("≈ {:.3}", (5.0 * chance).min(1.0)),
    ]);
    Some(Table { head, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(psnr: &[(f64, f64)]) -> StudyResults {
        let mut runs = Vec::new();
        for (s, (vq, te)) in psnr.iter().enumerate() {
            for (arm, v) in [("vqgan", vq), ("te-vqgan", te)] {
                let mut r = RunResult { seed: s as u64, arm: arm.into(), ..Default::default() };
                r.tokenizer.insert("psnr".into(), *v);
                runs.push(r);
            }
        }
        StudyResults {
            scale: "test".into(),
            seeds: psnr.len(),
            config: crate::study::StudyConfig::default(),
            machine: crate::study::Machine::detect(tch::Device::Cpu),
            classifier: crate::classifier::ClassifierReport {
                config: Default::default(),
                colour_accuracy: 1.0,
                digit_accuracy: 0.98,
                seconds: 1.0,
                note: String::new(),
            },
            classifier_seconds: 1.0,
            runs,
            total_seconds: 1.0,
            wall_seconds: None,
        }
    }

    #[test]
    fn differences_get_a_paired_interval_and_a_sentence() {
        // TE − VQGAN = +1.0, +1.1, +0.9 dB: clearly above zero.
        let clear = study(&[(20.0, 21.0), (22.0, 23.1), (21.0, 21.9)]);
        let v = verdict(&clear, "psnr", "PSNR").unwrap();
        assert!(v.contains("te-vqgan is higher than vqgan") && v.contains("excludes 0"), "{v}");
        let row = &main_table(&clear).rows[1];
        assert!(row[3].starts_with("+1.0000 [+0.75"), "{row:?}");
        // +1, −1, +0.5: noise.
        let noisy = study(&[(20.0, 21.0), (22.0, 21.0), (21.0, 21.5)]);
        assert!(verdict(&noisy, "psnr", "PSNR").unwrap().contains("cannot be told apart"));
        // One seed: no interval, and the report says it cannot tell.
        let one = study(&[(20.0, 21.0)]);
        assert!(verdict(&one, "psnr", "PSNR").unwrap().contains("cannot tell"));
        assert!(main_table(&one).rows[1][3].contains("1 seed"));
    }

    #[test]
    fn mean_and_sample_sd() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[7.0]), (7.0, 0.0));
        assert_eq!(fmt_with(0.042, 0.0, 1, true), "+0.0420");
        assert_eq!(fmt_with(-32.69, 1.5, 3, true), "-32.69 ± 1.50");
        assert_eq!(fmt(0.5, 0.1, 2), "0.5000 ± 0.1000");
    }
}
