//! `tessera eval captions`: a generator run on free-text captions (Tux Paint's stamps, a caption
//! folder) shown rather than parsed. MNIST64x64 captions have a grammar the T2I/I2T scorer reads
//! ([`crate::gen_eval`]); "A blackbird." has none, so the report gives what can be measured without
//! one and lets a person judge the rest:
//!
//! - the frozen tokenizer's reconstruction on the validation split (PSNR, SSIM, usage, …);
//! - the validation losses of both directions (cross-entropy per token, teacher-forced);
//! - how often the greedy caption of a validation image is one of its own captions (ignoring case
//!   and punctuation);
//! - for the first images: the image, its reconstruction, its captions, the greedy caption and a
//!   few sampled ones; for their captions, a few sampled images.
//!
//! It writes `report.html` (a minijinja template, auto-escaped), `report.json` with every number
//! and caption, the PNGs the page shows, and copies of the run's loss curves.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use tessera_data::tensor::{images_to_tensor, tensor_to_images};
use tessera_data::{DataLoader, Dataset, LoaderConfig, Split};
use tessera_models::biart::sample::SampleConfig;
use tessera_models::tokenizer::ImageTokenizer;

use crate::error::{Result, TrainError};
use crate::generator::GeneratorTask;

const HTML_TEMPLATE: &str = include_str!("report.html.j2");

/// How much to show. The defaults make a page that reads in a minute.
#[derive(Clone, Debug)]
pub struct CaptionReportOptions {
    /// Validation images shown (with their captions, and images drawn from those captions).
    pub images: usize,
    /// Sampled captions per shown image (besides the greedy one).
    pub captions_per_image: usize,
    /// Sampled images per shown caption.
    pub images_per_caption: usize,
    /// Validation images whose greedy caption is compared with their own (0 = all).
    pub match_images: usize,
    /// Seed of every sampled caption and image.
    pub seed: u64,
}

impl Default for CaptionReportOptions {
    fn default() -> Self {
        Self { images: 8, captions_per_image: 3, images_per_caption: 4, match_images: 0, seed: 0 }
    }
}

impl CaptionReportOptions {
    fn check(&self) -> Result<()> {
        let mut bad = Vec::new();
        for (name, v) in [
            ("images", self.images),
            ("captions per image", self.captions_per_image),
            ("images per caption", self.images_per_caption),
        ] {
            if !(1..=256).contains(&v) {
                bad.push(format!("{name} = {v} (1 to 256)"));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(TrainError::Invalid(format!("caption report: {}", bad.join(", "))))
        }
    }
}

/// One shown validation image and what the generator says about it.
#[derive(Debug, Serialize)]
pub struct ImageCaptions {
    /// Its index in the validation split.
    pub index: usize,
    /// Its own captions.
    pub truth: Vec<String>,
    /// The most likely caption (temperature 0).
    pub greedy: String,
    /// Captions drawn with the run's `[sample]` settings.
    pub sampled: Vec<String>,
    /// The image and its reconstruction by the frozen tokenizer (PNG files beside the report).
    pub image: String,
    pub reconstruction: String,
}

/// A shown caption and the images drawn from it (one PNG row beside the report).
#[derive(Debug, Serialize)]
pub struct CaptionImages {
    pub caption: String,
    pub images: String,
}

/// Everything the report shows.
#[derive(Debug, Serialize)]
pub struct CaptionReport {
    pub run: String,
    pub data: String,
    pub validation_images: usize,
    /// The tokenizer's reconstruction and codebook metrics on the whole validation split.
    pub tokenizer: BTreeMap<String, f64>,
    /// Validation losses (`loss/i2t_text`: the caption's cross-entropy per token given the image).
    pub losses: BTreeMap<String, f64>,
    pub loss_images: usize,
    /// The fraction of `match_images` validation images whose greedy caption is one of theirs.
    pub greedy_match: f64,
    pub match_images: usize,
    pub i2t: Vec<ImageCaptions>,
    pub t2i: Vec<CaptionImages>,
    pub sample: SampleConfig,
    pub seed: u64,
}

/// A caption compared without case, punctuation or spacing ("A blackbird." = "a blackbird").
pub fn normalise_caption(c: &str) -> String {
    c.split(|ch: char| !ch.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first `n` validation samples (image and captions), in split order.
fn validation_samples(data: &Arc<dyn Dataset>, n: usize) -> Result<Vec<tessera_data::Sample>> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    (0..n.min(data.len())).map(|i| data.get(i, &mut rng).map_err(TrainError::from)).collect()
}

/// The tokenizer's validation metrics, through the loop every tokenizer run validates with.
fn tokenizer_metrics(task: &mut GeneratorTask, data: &Arc<dyn Dataset>) -> Result<BTreeMap<String, f64>> {
    let val =
        DataLoader::new(data.clone(), LoaderConfig::eval(task.config.eval.batch_size.max(1)), task.device);
    let (k, side) = (task.tokenizer.num_codes() as i64, task.tokenizer.layout().grids[0].0);
    let tok = &mut task.tokenizer;
    let rec = crate::tokenizer_eval::evaluate_loaders(&val, None, 0, k, side, |x| {
        let codes = tok.encode(x)?;
        Ok((tok.decode(&codes), codes))
    })?;
    Ok(rec.into_iter().collect())
}

/// Captions for `images`, `k` per image (in image order), generated in batches of
/// `eval.batch_size` so that any `--images`/`--captions` fits in memory.
fn captions_for(
    task: &mut GeneratorTask,
    images: &[&image::RgbImage],
    k: usize,
    cfg: &SampleConfig,
) -> Result<Vec<String>> {
    let repeated: Vec<image::RgbImage> =
        images.iter().flat_map(|img| std::iter::repeat_n((*img).clone(), k)).collect();
    let mut said = Vec::with_capacity(repeated.len());
    for chunk in repeated.chunks(task.config.eval.batch_size.max(1)) {
        said.extend(task.image_to_text(&images_to_tensor(chunk)?, cfg)?);
    }
    Ok(said)
}

/// The fraction of `samples` whose caption in `said` is one of their own.
fn match_fraction(samples: &[tessera_data::Sample], said: &[String]) -> f64 {
    let own = |s: &tessera_data::Sample, c: &String| {
        s.captions.iter().any(|t| normalise_caption(t) == normalise_caption(c))
    };
    let hits = samples.iter().zip(said).filter(|(s, c)| own(s, c)).count();
    hits as f64 / samples.len().max(1) as f64
}

/// Save `img` as `out/name` and return `name`.
fn save_png(img: &image::RgbImage, out: &Path, name: &str) -> Result<String> {
    let p = out.join(name);
    img.save(&p).map_err(|e| TrainError::Invalid(format!("writing {}: {e}", p.display())))?;
    Ok(name.to_string())
}

/// The shown images: the image, its reconstruction, its captions (`greedy`, one per image, and
/// sampled ones).
fn describe_images(
    task: &mut GeneratorTask,
    shown: &[tessera_data::Sample],
    greedy: &[String],
    opts: &CaptionReportOptions,
    out: &Path,
) -> Result<Vec<ImageCaptions>> {
    let images: Vec<&image::RgbImage> = shown.iter().map(|s| &s.image).collect();
    let mut recon = Vec::with_capacity(shown.len());
    for chunk in shown.chunks(task.config.eval.batch_size.max(1)) {
        let owned: Vec<_> = chunk.iter().map(|s| s.image.clone()).collect();
        let x = images_to_tensor(&owned)?.to_device(task.device);
        let codes = task.tokenizer.encode(&x).map_err(|e| TrainError::Invalid(e.to_string()))?;
        recon.extend(tensor_to_images(&task.tokenizer.decode(&codes))?);
    }
    let k = opts.captions_per_image;
    tch::manual_seed(opts.seed as i64);
    let cfg = task.config.sample.clone();
    let sampled = captions_for(task, &images, k, &cfg)?;
    let mut rows = Vec::with_capacity(shown.len());
    for (i, s) in shown.iter().enumerate() {
        rows.push(ImageCaptions {
            index: i,
            truth: s.captions.clone(),
            greedy: greedy[i].clone(),
            sampled: sampled[i * k..(i + 1) * k].to_vec(),
            image: save_png(&s.image, out, &format!("val_{i:03}.png"))?,
            reconstruction: save_png(&recon[i], out, &format!("val_{i:03}_recon.png"))?,
        });
    }
    Ok(rows)
}

/// Images drawn from the first caption of each shown image, one PNG row per caption.
fn draw_captions(
    task: &mut GeneratorTask,
    shown: &[tessera_data::Sample],
    opts: &CaptionReportOptions,
    out: &Path,
) -> Result<Vec<CaptionImages>> {
    let m = opts.images_per_caption;
    let per_batch = (task.config.eval.batch_size.max(1) / m).max(1);
    let cfg = task.config.sample.clone();
    tch::manual_seed(opts.seed as i64 + 1);
    let mut rows = Vec::with_capacity(shown.len());
    for (chunk_no, chunk) in shown.chunks(per_batch).enumerate() {
        let caps: Vec<String> =
            chunk.iter().map(|s| s.captions.first().cloned().unwrap_or_default()).collect();
        let repeated: Vec<String> = caps.iter().flat_map(|c| std::iter::repeat_n(c.clone(), m)).collect();
        let drawn = tensor_to_images(&task.text_to_image(&repeated, &cfg)?)?;
        for (j, (imgs, caption)) in drawn.chunks(m).zip(caps).enumerate() {
            let row = tessera_core::viz::image_grid(imgs, m, 2);
            let name = save_png(&row, out, &format!("t2i_{:03}.png", chunk_no * per_batch + j))?;
            rows.push(CaptionImages { caption, images: name });
        }
    }
    Ok(rows)
}

/// Build the report of generator `task` (its run at `run`) into `out`.
pub fn write_report(
    task: &mut GeneratorTask,
    run: &Path,
    root: &Path,
    out: &Path,
    opts: &CaptionReportOptions,
) -> Result<CaptionReport> {
    opts.check()?;
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let data = task.config.data.open(Split::Validation, root)?;
    if data.is_empty() {
        return Err(TrainError::Invalid(format!("the validation split of {} is empty", data.describe())));
    }
    let tokenizer = tch::no_grad(|| tokenizer_metrics(task, &data))?;
    let losses: BTreeMap<String, f64> = task.validation_losses()?.into_iter().collect();
    let match_n = if opts.match_images == 0 { data.len() } else { opts.match_images.min(data.len()) };
    let samples = validation_samples(&data, match_n.max(opts.images))?;
    // One greedy caption per sample: the match fraction reads the first `match_n`, the page the
    // first `images`.
    let greedy_cfg = SampleConfig { temperature: 0.0, ..task.config.sample.clone() };
    let images: Vec<&image::RgbImage> = samples.iter().map(|s| &s.image).collect();
    let greedy = tch::no_grad(|| captions_for(task, &images, 1, &greedy_cfg))?;
    let greedy_match = match_fraction(&samples[..match_n], &greedy[..match_n]);
    let shown = &samples[..opts.images.min(samples.len())];
    let i2t = tch::no_grad(|| describe_images(task, shown, &greedy, opts, out))?;
    let t2i = tch::no_grad(|| draw_captions(task, shown, opts, out))?;
    for plot in ["val_losses.svg", "train_losses.svg"] {
        let from = run.join("plots").join(plot);
        if from.is_file() {
            std::fs::copy(&from, out.join(plot)).map_err(|e| TrainError::io(&from, e))?;
        }
    }
    let report = CaptionReport {
        run: run.display().to_string(),
        data: data.describe(),
        validation_images: data.len(),
        tokenizer,
        losses,
        loss_images: task.validation_loss_images(),
        greedy_match,
        match_images: match_n,
        i2t,
        t2i,
        sample: task.config.sample.clone(),
        seed: opts.seed,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| TrainError::Invalid(e.to_string()))?;
    let p = out.join("report.json");
    tessera_core::fsutil::write_atomic(&p, json.as_bytes()).map_err(|e| TrainError::io(&p, e))?;
    let p = out.join("report.html");
    let plots: Vec<&str> =
        ["val_losses.svg", "train_losses.svg"].into_iter().filter(|f| out.join(f).is_file()).collect();
    tessera_core::fsutil::write_atomic(&p, render(&report, &plots)?.as_bytes())
        .map_err(|e| TrainError::io(&p, e))?;
    Ok(report)
}

/// The HTML page of `report`.
fn render(report: &CaptionReport, plots: &[&str]) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_formatter(crate::study::report::escape_html_text);
    let fail = |e: minijinja::Error| TrainError::Invalid(format!("caption report template: {e:#}"));
    env.add_template("report.html", HTML_TEMPLATE).map_err(fail)?;
    let ctx = minijinja::context! { r => report, plots => plots };
    env.get_template("report.html").map_err(fail)?.render(ctx).map_err(fail)
}
