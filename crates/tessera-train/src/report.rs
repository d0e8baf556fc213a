//! `report.md` and `report.html` of a study: the comparison table (mean ± sample standard
//! deviation over seeds), accuracy per bucket, reconstruction grids, T2I samples and I2T captions
//! side by side, loss and Trans_eq_acc curves, the exact configs, wall times and the machine.
//! Images are linked by paths relative to the study directory, so the report opens from there.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};
use crate::metrics::read_series;
use crate::study::{run_dirs, RunResult, StudyResults};
use tessera_eval::stats::{t_interval, Interval};

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

const MAIN_ROWS: [(&str, &str); 11] = [
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

const BUCKETS: [&str; 6] = ["center", "quad1", "quad2", "quad3", "quad4", "all"];

struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn markdown(&self) -> String {
        let mut s = format!("| {} |\n|{}\n", self.head.join(" | "), "---|".repeat(self.head.len()));
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }
    fn html(&self) -> String {
        let mut s = String::from("<table><tr>");
        for h in &self.head {
            let _ = write!(s, "<th>{}</th>", esc(h));
        }
        s.push_str("</tr>");
        for r in &self.rows {
            s.push_str("<tr>");
            for c in r {
                let _ = write!(s, "<td>{}</td>", esc(c));
            }
            s.push_str("</tr>");
        }
        s.push_str("</table>");
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn fmt(m: f64, s: f64, n: usize) -> String {
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

fn main_table(res: &StudyResults) -> Table {
    let arms = &res.config.arms;
    let mut head = vec!["metric".to_string()];
    head.extend(arms.iter().map(|a| format!("{} (λ_o = {})", a.name, a.ortho_weight)));
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

fn bucket_table(res: &StudyResults, dir: &str, split: &str) -> Table {
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

/// Comparison curves across arms and seeds.
fn plots(res: &StudyResults, out: &Path) -> Result<Vec<(String, PathBuf)>> {
    let dir = out.join("plots");
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let specs: [(&str, &str, bool, &str, &str, bool); 5] = [
        (
            "trans_eq_acc",
            "Trans_eq_acc over tokenizer training (validation)",
            false,
            "val",
            "trans_eq_acc",
            false,
        ),
        (
            "tokenizer_rec_loss",
            "tokenizer reconstruction loss (train, log10)",
            false,
            "train",
            "loss/rec",
            true,
        ),
        (
            "generator_loss",
            "generator loss, both directions (train, log10)",
            true,
            "train",
            "loss/total",
            true,
        ),
        (
            "generator_t2i_acc",
            "T2I accuracy during generator training (validation, exact)",
            true,
            "val",
            "t2i_acc",
            false,
        ),
        (
            "generator_i2t_acc",
            "I2T accuracy during generator training (validation, exact)",
            true,
            "val",
            "i2t_acc",
            false,
        ),
    ];
    let mut made = Vec::new();
    for (stem, title, gen, split, key, log_y) in specs {
        let mut series = Vec::new();
        for s in 0..res.seeds {
            for a in &res.config.arms {
                let (t, g) = run_dirs(out, s, &a.name);
                let pts = read_series(if gen { &g } else { &t }, split, key);
                if !pts.is_empty() {
                    series.push((format!("{} s{s}", a.name), pts));
                }
            }
        }
        if series.is_empty() {
            continue;
        }
        let p = dir.join(format!("{stem}.png"));
        tessera_core::viz::line_plot(title, &series, 720, 360, log_y)
            .save(&p)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", p.display())))?;
        made.push((title.to_string(), PathBuf::from("plots").join(format!("{stem}.png"))));
    }
    Ok(made)
}

fn last_sample(dir: &Path) -> Option<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir.join("samples")).ok()?.filter_map(|e| Some(e.ok()?.path())).collect();
    v.sort();
    v.pop()
}

fn rel(out: &Path, p: &Path) -> String {
    p.strip_prefix(out).unwrap_or(p).display().to_string()
}

/// One sentence per compared metric: is `second − first arm` distinguishable from zero?
fn verdict(res: &StudyResults, key: &str, label: &str) -> Option<String> {
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

fn wall_time(res: &StudyResults) -> String {
    let stages = format!("all stages added up: {:.1} min", res.total_seconds / 60.0);
    match res.wall_seconds {
        Some(s) => format!("Wall time, first stage start to last stage end: {:.1} min ({stages}; on a CPU the arms run in parallel).", s / 60.0),
        None => format!("Time: {stages}."),
    }
}

/// Write `report.md` and `report.html` into `out`.
pub fn write(res: &StudyResults, out: &Path) -> Result<()> {
    let plots = plots(res, out)?;
    let arms = &res.config.arms;
    let m = &res.machine;
    let mut md = String::new();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Tessera: TE-VQGAN study</title><style>\
         body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}\
         td:first-child,th:first-child{text-align:left}img{max-width:100%;image-rendering:pixelated}\
         .row{display:flex;gap:1em}.row figure{flex:1;margin:0}pre{background:#f4f4f4;padding:8px;overflow:auto}\
         </style></head><body>",
    );
    let title = format!(
        "TE-VQGAN study on MNIST64x64 ({} scale, {} seed{})",
        res.scale,
        res.seeds,
        if res.seeds == 1 { "" } else { "s" }
    );
    let _ = writeln!(md, "# {title}\n");
    let _ = write!(html, "<h1>{}</h1>", esc(&title));
    let intro = format!(
        "Every arm uses the same seed, data order, initial weights and budget; only λ_o differs. \
         Machine: {} ({} cores, {} torch threads, {} GiB, device {}). {} \
         The evaluation classifier is trained by Tessera (held-out accuracy: colour {:.3}, digit {:.3}), \
         not Bi-DALL-E's checkpoint.",
        m.cpu,
        m.cores,
        m.torch_threads,
        m.memory_gib,
        m.device,
        wall_time(res),
        res.classifier.colour_accuracy,
        res.classifier.digit_accuracy
    );
    let _ = writeln!(md, "{intro}\n");
    let _ = write!(html, "<p>{}</p>", esc(&intro));

    let t = main_table(res);
    let note = "Arms: mean ± sd over seeds; with one seed, accuracies carry a 95 % bootstrap interval over the evaluated images. Differences: paired 95 % t-interval over seeds.";
    let _ = writeln!(md, "## Comparison\n\n{note}\n\n{}", t.markdown());
    let _ = write!(html, "<h2>Comparison</h2><p>{}</p>{}", esc(note), t.html());
    let verdicts: Vec<String> = if res.seeds < 2 && arms.len() >= 2 {
        vec![format!(
            "With one seed the study cannot tell any {} − {} difference above from seed-to-seed noise; `--seeds 3` gives each a 95 % interval.",
            arms[1].name, arms[0].name
        )]
    } else {
        MAIN_ROWS
            .iter()
            .filter(|(k, _)| *k != "minutes")
            .filter_map(|(k, l)| verdict(res, k, l.trim_end_matches(" (↑)").trim_end_matches(" (↓)")))
            .collect()
    };
    if !verdicts.is_empty() {
        let _ =
            writeln!(md, "{}\n", verdicts.iter().map(|v| format!("- {v}")).collect::<Vec<_>>().join("\n"));
        let _ = write!(
            html,
            "<ul>{}</ul>",
            verdicts.iter().map(|v| format!("<li>{}</li>", esc(v))).collect::<String>()
        );
    }

    for split in &res.config.splits {
        for (dir, name) in [("t2i", "T2I"), ("i2t", "I2T")] {
            let t = bucket_table(res, dir, split.name());
            let h = format!("{name} accuracy per bucket, {}", split.name());
            let _ = writeln!(md, "### {h}\n\n{}", t.markdown());
            let _ = write!(html, "<h3>{}</h3>{}", esc(&h), t.html());
        }
    }

    let figure_row =
        |md: &mut String, html: &mut String, heading: &str, items: Vec<(String, Option<PathBuf>)>| {
            let _ = writeln!(md, "## {heading}\n");
            let _ = write!(html, "<h2>{}</h2><div class=\"row\">", esc(heading));
            for (cap, p) in items {
                match p {
                    Some(p) => {
                        let r = rel(out, &p);
                        let _ = writeln!(md, "**{cap}**\n\n![{cap}]({r})\n");
                        let _ = write!(
                            html,
                            "<figure><img src=\"{}\"><figcaption>{}</figcaption></figure>",
                            esc(&r),
                            esc(&cap)
                        );
                    }
                    None => {
                        let _ = writeln!(md, "**{cap}**: not available\n");
                    }
                }
            }
            html.push_str("</div>");
        };
    figure_row(
        &mut md,
        &mut html,
        "Reconstructions (seed 0; inputs above, reconstructions below)",
        arms.iter().map(|a| (a.name.clone(), last_sample(&run_dirs(out, 0, &a.name).0))).collect(),
    );
    for split in &res.config.splits {
        for (kind, what) in
            [("t2i", "Text→image for the same captions"), ("i2t", "Image→text for the same images")]
        {
            let items = arms
                .iter()
                .map(|a| {
                    let p =
                        run_dirs(out, 0, &a.name).1.join("eval").join(format!("{kind}_{}.png", split.name()));
                    (a.name.clone(), p.is_file().then_some(p))
                })
                .collect();
            figure_row(&mut md, &mut html, &format!("{what} ({}, seed 0)", split.name()), items);
            let links: Vec<(String, String)> = arms
                .iter()
                .map(|a| {
                    let p = run_dirs(out, 0, &a.name)
                        .1
                        .join("eval")
                        .join(format!("{kind}_{}.jsonl", split.name()));
                    (a.name.clone(), rel(out, &p))
                })
                .collect();
            let _ = writeln!(
                md,
                "Every sample with its readings, right or wrong: {}\n",
                links.iter().map(|(a, r)| format!("[{a}]({r})")).collect::<Vec<_>>().join(", ")
            );
            let _ = write!(
                html,
                "<p>Every sample with its readings, right or wrong: {}</p>",
                links
                    .iter()
                    .map(|(a, r)| format!("<a href=\"{}\">{}</a>", esc(r), esc(a)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let _ = writeln!(md, "## Curves\n");
    html.push_str("<h2>Curves</h2>");
    for (title, p) in &plots {
        let _ = writeln!(md, "![{title}]({})\n", p.display());
        let _ = write!(
            html,
            "<figure><img src=\"{}\"><figcaption>{}</figcaption></figure>",
            esc(&p.display().to_string()),
            esc(title)
        );
    }

    let mut wt = Table { head: vec!["stage".into()], rows: Vec::new() };
    wt.head.extend(arms.iter().map(|a| format!("{} (min)", a.name)));
    for stage in ["tokenizer", "generator"] {
        let mut row = vec![format!("{stage} (train + eval)")];
        for a in arms {
            let v: Vec<f64> = res
                .runs
                .iter()
                .filter(|r| r.arm == a.name)
                .filter_map(|r| r.seconds.get(stage).map(|s| s / 60.0))
                .collect();
            let (m, s) = mean_std(&v);
            row.push(fmt(m, s, v.len()));
        }
        wt.rows.push(row);
    }
    let clf = format!(
        "Evaluation classifier: {:.1} min (shared). Total: {:.1} min.",
        res.classifier_seconds / 60.0,
        res.total_seconds / 60.0
    );
    let _ = writeln!(md, "## Wall times\n\n{}\n{clf}\n", wt.markdown());
    let _ = write!(html, "<h2>Wall times</h2>{}<p>{}</p>", wt.html(), esc(&clf));

    let _ = writeln!(md, "## Exact configs (seed 0)\n");
    html.push_str("<h2>Exact configs (seed 0)</h2>");
    for r in res.runs.iter().filter(|r| r.seed == res.config.seed) {
        for (what, text) in [("tokenizer", &r.tokenizer_config), ("generator", &r.generator_config)] {
            let _ = writeln!(
                md,
                "<details><summary>{} {what}</summary>\n\n```toml\n{text}```\n</details>\n",
                r.arm
            );
            let _ = write!(
                html,
                "<details><summary>{} {what}</summary><pre>{}</pre></details>",
                esc(&r.arm),
                esc(text)
            );
        }
    }
    let clf_cfg = tessera_core::config::to_toml(&res.classifier.config);
    let _ = writeln!(md, "<details><summary>classifier</summary>\n\n```toml\n{clf_cfg}```\n</details>\n\nEvery number: `results.json`.");
    let _ = write!(html, "<details><summary>classifier</summary><pre>{}</pre></details><p>Every number: <a href=\"results.json\">results.json</a>.</p></body></html>", esc(&clf_cfg));
    for (name, text) in [("report.md", &md), ("report.html", &html)] {
        let p = out.join(name);
        tessera_core::fsutil::write_atomic(&p, text.as_bytes()).map_err(|e| TrainError::io(&p, e))?;
    }
    Ok(())
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
