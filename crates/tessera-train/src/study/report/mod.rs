//! `report.md` and `report.html` of a study: the comparison table, accuracy per bucket,
//! reconstruction grids, T2I samples and I2T captions side by side (with links to every sample),
//! accuracy, loss and Trans_eq_acc curves, wall times, the exact configs and the machine.
//!
//! The numbers are gathered into a [`View`] ([`tables`] computes them) and drawn by two
//! minijinja templates, `report.html.j2` (auto-escaped) and `report.md.j2`. Images are linked by
//! paths relative to the study directory, so the report opens from there.

mod tables;

pub use tables::{mean_std, metric};

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Result, TrainError};
use crate::metrics::read_series;
use crate::plot::{save_line_plot, PlotSpec};
use crate::study::{run_dirs, StudyResults};
use tables::{bucket_table, fmt, main_table, retrieval_table, verdict, Table, MAIN_ROWS};

const HTML_TEMPLATE: &str = include_str!("report.html.j2");
const MD_TEMPLATE: &str = include_str!("report.md.j2");

/// An image with its caption; `src` is relative to the study folder (`None`: not produced).
#[derive(Serialize)]
struct Figure {
    caption: String,
    src: Option<String>,
}

/// A link to a file of the study.
#[derive(Serialize)]
struct Link {
    label: String,
    href: String,
}

/// A heading over a row of figures, with links to the records behind them.
#[derive(Serialize)]
struct FigureRow {
    heading: String,
    figures: Vec<Figure>,
    links: Vec<Link>,
}

/// A heading over a table.
#[derive(Serialize)]
struct Section {
    heading: String,
    table: Table,
}

/// A config file shown folded.
#[derive(Serialize)]
struct ConfigText {
    summary: String,
    text: String,
}

/// Everything the templates draw.
#[derive(Serialize)]
struct View {
    title: String,
    intro: String,
    note: String,
    comparison: Table,
    verdicts: Vec<String>,
    buckets: Vec<Section>,
    figure_rows: Vec<FigureRow>,
    curves: Vec<Figure>,
    wall: Table,
    classifier_note: String,
    configs: Vec<ConfigText>,
    classifier_config: String,
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

fn wall_time(res: &StudyResults) -> String {
    let stages = format!("all stages added up: {:.1} min", res.total_seconds / 60.0);
    match res.wall_seconds {
        Some(s) => format!(
            "Wall time, first stage start to last stage end: {:.1} min ({stages}; on a CPU the arms run in parallel).",
            s / 60.0
        ),
        None => format!("Time: {stages}."),
    }
}

/// Comparison curves across arms and seeds: `(stem, title, generator run?, split, key, log y)`.
const CURVES: [(&str, &str, bool, &str, &str, bool); 5] = [
    (
        "trans_eq_acc",
        "Trans_eq_acc over tokenizer training (validation)",
        false,
        "val",
        "trans_eq_acc",
        false,
    ),
    ("tokenizer_rec_loss", "tokenizer reconstruction loss (train)", false, "train", "loss/rec", true),
    ("generator_loss", "generator loss, both directions (train)", true, "train", "loss/total", true),
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

/// Draw the comparison curves into `out/plots/*.svg`.
fn curves(res: &StudyResults, out: &Path) -> Result<Vec<Figure>> {
    let mut made = Vec::new();
    for (stem, title, gen, split, key, log_y) in CURVES {
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
        let file = PathBuf::from("plots").join(format!("{stem}.svg"));
        let spec = PlotSpec { title, x_label: "step", y_label: key, log_y };
        save_line_plot(&out.join(&file), &spec, &series)?;
        made.push(Figure { caption: title.to_string(), src: Some(file.display().to_string()) });
    }
    Ok(made)
}

/// The seed-0 grids of every arm, side by side: reconstructions, then T2I and I2T per split.
fn figure_rows(res: &StudyResults, out: &Path) -> Vec<FigureRow> {
    let arms = &res.config.arms;
    let mut rows = vec![FigureRow {
        heading: "Reconstructions (seed 0; inputs above, reconstructions below)".into(),
        figures: arms
            .iter()
            .map(|a| Figure {
                caption: a.name.clone(),
                src: last_sample(&run_dirs(out, 0, &a.name).0).map(|p| rel(out, &p)),
            })
            .collect(),
        links: Vec::new(),
    }];
    for split in &res.config.splits {
        for (kind, what) in
            [("t2i", "Text→image for the same captions"), ("i2t", "Image→text for the same images")]
        {
            let file = |a: &str, ext: &str| {
                run_dirs(out, 0, a).1.join("eval").join(format!("{kind}_{}.{ext}", split.name()))
            };
            rows.push(FigureRow {
                heading: format!("{what} ({}, seed 0)", split.name()),
                figures: arms
                    .iter()
                    .map(|a| {
                        let p = file(&a.name, "png");
                        Figure { caption: a.name.clone(), src: p.is_file().then(|| rel(out, &p)) }
                    })
                    .collect(),
                links: arms
                    .iter()
                    .map(|a| Link { label: a.name.clone(), href: rel(out, &file(&a.name, "jsonl")) })
                    .collect(),
            });
        }
    }
    rows
}

/// Minutes per stage and arm.
fn wall_table(res: &StudyResults) -> Table {
    let arms = &res.config.arms;
    let mut head = vec!["stage".to_string()];
    head.extend(arms.iter().map(|a| format!("{} (min)", a.name)));
    let rows = ["tokenizer", "generator"]
        .iter()
        .map(|stage| {
            let mut row = vec![format!("{stage} (train + eval)")];
            for a in arms {
                let v: Vec<f64> = res
                    .runs
                    .iter()
                    .filter(|r| r.arm == a.name)
                    .filter_map(|r| r.seconds.get(*stage).map(|s| s / 60.0))
                    .collect();
                let (m, s) = mean_std(&v);
                row.push(fmt(m, s, v.len()));
            }
            row
        })
        .collect();
    Table { head, rows }
}

/// One sentence per difference, or one saying that a single seed cannot tell.
fn verdicts(res: &StudyResults) -> Vec<String> {
    let arms = &res.config.arms;
    if res.seeds < 2 && arms.len() >= 2 {
        return vec![format!(
            "With one seed the study cannot tell any {} − {} difference above from seed-to-seed noise; `--seeds 3` gives each a 95 % interval.",
            arms[1].name, arms[0].name
        )];
    }
    MAIN_ROWS
        .iter()
        .filter(|(k, _)| *k != "minutes")
        .filter_map(|(k, l)| verdict(res, k, l.trim_end_matches(" (↑)").trim_end_matches(" (↓)")))
        .collect()
}

/// "LG-VQ" when an arm has LG-VQ's losses, else "TE-VQGAN".
fn study_name(res: &StudyResults) -> &'static str {
    if res.config.arms.iter().any(|a| a.lg.is_some()) {
        "LG-VQ"
    } else {
        "TE-VQGAN"
    }
}

/// What the arms differ in, and, for an LG-VQ study, which text encoder.
fn design(res: &StudyResults) -> String {
    match res.config.arms.iter().find_map(|a| a.lg.as_ref()) {
        Some(lg) => format!(
            "The arms train the same tokenizer with the same seed, data order, initial weights and budget; \
             only LG-VQ's losses differ (α = {}, β = {}, γ = {}), with the text encoder {}. ",
            lg.gsa_weight,
            lg.mtp_weight,
            lg.ras_weight,
            lg.encoder.as_ref().map_or_else(
                || "all-MiniLM-L6-v2 (a substitute for CLIP ViT-B/32's text tower, whose weights cannot be fetched)".to_string(),
                |d| format!("from {}", d.display())
            )
        ),
        None => "The VQGAN arms use the same seed, data order, initial weights and budget; only λ_o differs \
                 (a ViT-VQGAN arm has its own tokenizer preset and the same generator, classifier and data). "
            .into(),
    }
}

fn intro(res: &StudyResults) -> String {
    let m = &res.machine;
    format!(
        "{}Machine: {} ({} cores, {} torch threads, {} GiB, device {}). {} \
         The evaluation classifier is trained by Tessera (held-out accuracy: colour {:.3}, digit {:.3}), \
         not Bi-DALL-E's checkpoint.",
        design(res),
        m.cpu,
        m.cores,
        m.torch_threads,
        m.memory_gib,
        m.device,
        wall_time(res),
        res.classifier.colour_accuracy,
        res.classifier.digit_accuracy
    )
}

fn view(res: &StudyResults, out: &Path) -> Result<View> {
    let plural = if res.seeds == 1 { "" } else { "s" };
    let retrieval = retrieval_table(res).map(|table| Section {
        heading:
            "Code↔caption retrieval (validation; the LG arm's global image token against the text encoder's \
                  sentence feature; a caption equal to the query's counts as right)"
                .into(),
        table,
    });
    let buckets = retrieval
        .into_iter()
        .chain(res.config.splits.iter().flat_map(|split| {
            [("t2i", "T2I"), ("i2t", "I2T")].map(|(dir, name)| Section {
                heading: format!("{name} accuracy per bucket, {}", split.name()),
                table: bucket_table(res, dir, split.name()),
            })
        }))
        .collect();
    let configs = res
        .runs
        .iter()
        .filter(|r| r.seed == res.config.seed)
        .flat_map(|r| {
            [("tokenizer", &r.tokenizer_config), ("generator", &r.generator_config)]
                .map(|(what, text)| ConfigText { summary: format!("{} {what}", r.arm), text: text.clone() })
        })
        .collect();
    Ok(View {
        title: format!("{} study on MNIST64x64 ({} scale, {} seed{plural})", study_name(res), res.scale, res.seeds),
        intro: intro(res),
        note: "Arms: mean ± sd over seeds; with one seed, accuracies carry a 95 % bootstrap interval over the evaluated images. Differences: paired 95 % t-interval over seeds.".into(),
        comparison: main_table(res),
        verdicts: verdicts(res),
        buckets,
        figure_rows: figure_rows(res, out),
        curves: curves(res, out)?,
        wall: wall_table(res),
        classifier_note: format!(
            "Evaluation classifier: {:.1} min (shared). Total: {:.1} min.",
            res.classifier_seconds / 60.0,
            res.total_seconds / 60.0
        ),
        configs,
        classifier_config: tessera_core::config::to_toml(&res.classifier.config),
    })
}

/// minijinja's formatter, except that HTML text escapes only `& < > "`: paths in `src` and
/// `href` stay readable (`seed0/vqgan/...`, not `seed0&#x2f;vqgan`).
pub(crate) fn escape_html_text(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &minijinja::Value,
) -> std::result::Result<(), minijinja::Error> {
    match value.as_str() {
        Some(text) if state.auto_escape() == minijinja::AutoEscape::Html && !value.is_safe() => {
            let text =
                text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
            Ok(out.write_str(&text)?)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Render both templates with `view`: `(file name, text)`.
fn render(view: &View) -> Result<Vec<(&'static str, String)>> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_formatter(escape_html_text);
    let fail = |e: minijinja::Error| TrainError::Invalid(format!("report template: {e:#}"));
    env.add_template("report.html", HTML_TEMPLATE).map_err(fail)?;
    env.add_template("report.md", MD_TEMPLATE).map_err(fail)?;
    ["report.html", "report.md"]
        .into_iter()
        .map(|name| Ok((name, env.get_template(name).map_err(fail)?.render(view).map_err(fail)?)))
        .collect()
}

/// Write `report.md` and `report.html` (and `plots/*.svg`) into `out`.
pub fn write(res: &StudyResults, out: &Path) -> Result<()> {
    let view = view(res, out)?;
    for (name, text) in render(&view)? {
        let p = out.join(name);
        tessera_core::fsutil::write_atomic(&p, text.as_bytes()).map_err(|e| TrainError::io(&p, e))?;
    }
    Ok(())
}
