//! `tessera generate t2i|i2t` and `tessera eval generator`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tch::Device;
use tessera_data::mnist64::Split;
use tessera_data::tensor::tensor_to_images;
use tessera_models::biart::sample::SampleConfig;
use tessera_train::classifier::Classifier;
use tessera_train::generator::{self, GeneratorTask};

use crate::GlobalArgs;

/// Sampling options; unset ones keep the run's `[sample]` config.
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
    /// Logits ÷ T; 0 = greedy.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Keep the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Bi-DALL-E's filter_thres (keep the top (1−thres)·V logits).
    #[arg(long)]
    pub filter_thres: Option<f64>,
    /// Nucleus sampling.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Recompute the whole prefix every step (Bi-DALL-E's way) instead of using the KV cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl SampleArgs {
    fn apply(&self, base: &SampleConfig) -> Result<SampleConfig> {
        let mut c = base.clone();
        if let Some(t) = self.temperature {
            c.temperature = t;
        }
        if self.top_k.is_some() {
            c.top_k = self.top_k;
        }
        if self.filter_thres.is_some() {
            c.filter_thres = self.filter_thres;
        }
        if self.top_p.is_some() {
            c.top_p = self.top_p;
        }
        c.use_cache = !self.no_cache;
        c.check().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// Images from a caption, written as one grid.
    T2i {
        run: PathBuf,
        caption: String,
        #[arg(short = 'n', long, default_value_t = 8)]
        n: usize,
        #[arg(long, short = 'o')]
        out: PathBuf,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// A caption for each image (stops at [SEP]).
    I2t {
        run: PathBuf,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        sample: SampleArgs,
    },
}

fn open(run: &Path, g: &GlobalArgs, device: Device) -> Result<GeneratorTask> {
    generator::load_run(run, device, &g.data_root())
        .with_context(|| format!("loading generator run {}", run.display()))
}

pub fn generate(cmd: GenerateCommand, g: &GlobalArgs, device: Device) -> Result<()> {
    match cmd {
        GenerateCommand::T2i { run, caption, n, out, sample } => {
            if caption.trim().is_empty() {
                bail!("the caption is empty");
            }
            if n == 0 {
                bail!("-n must be at least 1");
            }
            let mut task = open(&run, g, device)?;
            let unknown = task.text.unknown_words(&caption);
            if !unknown.is_empty() {
                tracing::warn!(
                    "words not in the caption vocabulary: {} (they are split into known pieces or become [UNK]; the model never saw them)",
                    unknown.join(", ")
                );
            }
            let cfg = sample.apply(&task.config.sample)?;
            tch::manual_seed(sample.seed);
            let caps = vec![caption.clone(); n];
            let x = task.text_to_image(&caps, &cfg)?;
            let imgs = tensor_to_images(&x)?;
            tessera_core::viz::image_grid(&imgs, n.min(8), 2).save(&out)?;
            println!("{n} images for {caption:?} -> {}", out.display());
            Ok(())
        }
        GenerateCommand::I2t { run, images, sample } => {
            let mut task = open(&run, g, device)?;
            let cfg = sample.apply(&task.config.sample)?;
            let xs =
                images.iter().map(|p| generator::load_image_for(&task, p)).collect::<Result<Vec<_>, _>>()?;
            tch::manual_seed(sample.seed);
            let captions = task.image_to_text(&tch::Tensor::cat(&xs, 0), &cfg)?;
            for (p, c) in images.iter().zip(captions) {
                println!("{}\t{c}", p.display());
            }
            Ok(())
        }
    }
}

#[derive(Args, Debug)]
pub struct EvalGeneratorArgs {
    pub run: PathBuf,
    /// The evaluation classifier's directory (`tessera train classifier`).
    #[arg(long)]
    pub classifier: PathBuf,
    /// Images per split (default: the run's eval.images).
    #[arg(long)]
    pub images: Option<usize>,
    /// Splits (default: the run's eval.splits: validation, test-unseen).
    #[arg(long = "split")]
    pub splits: Vec<Split>,
    /// Seed of evaluation sampling (default: the run's eval.seed, the one the study used).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output folder (default: RUN/evals/seed<SEED>-n<IMAGES>). The study's own results in RUN
    /// (`eval_generator.json`, `eval/`) are never written.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

pub fn eval(args: &EvalGeneratorArgs, g: &GlobalArgs, device: Device) -> Result<()> {
    let mut task = open(&args.run, g, device)?;
    let clf = Classifier::load(&args.classifier, device)?;
    let n = args.images.unwrap_or(task.config.eval.images);
    if let Some(seed) = args.seed {
        task.config.eval.seed = seed;
    }
    let seed = task.config.eval.seed;
    let out = args.out.clone().unwrap_or_else(|| args.run.join("evals").join(format!("seed{seed}-n{n}")));
    let protected = [args.run.clone(), args.run.join("eval"), args.run.join("checkpoints")];
    refuse_run_folders(&args.run, &out, &protected)?;
    let splits = if args.splits.is_empty() { task.config.eval.splits.clone() } else { args.splits.clone() };
    let mut results = serde_json::Map::new();
    for split in splits {
        let s =
            tessera_train::gen_eval::evaluate_split(&mut task, &clf, split, n, &g.data_root(), Some(&out))?;
        results.insert(split.name().into(), serde_json::to_value(s)?);
    }
    results.insert("seed".into(), seed.into());
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::create_dir_all(&out)?;
    tessera_core::fsutil::write_atomic(&out.join("eval_generator.json"), json.as_bytes())?;
    println!("{json}\nwritten to {}", out.display());
    Ok(())
}

/// Refuse an output folder that is one of the run's own (`protected`).
fn refuse_run_folders(run: &Path, out: &Path, protected: &[PathBuf]) -> Result<()> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if protected.iter().any(|p| canon(p) == canon(out)) {
        bail!(
            "--out {} would overwrite the results of run {}; pick another folder",
            out.display(),
            run.display()
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalCaptionsArgs {
    pub run: PathBuf,
    /// Validation images shown, each with its captions and images drawn from its caption.
    #[arg(long, default_value_t = 8)]
    pub images: usize,
    /// Sampled captions per image (besides the most likely one).
    #[arg(long, default_value_t = 3)]
    pub captions: usize,
    /// Sampled images per caption.
    #[arg(long, default_value_t = 4)]
    pub samples: usize,
    /// Validation images whose most likely caption is compared with their own (0 = all).
    #[arg(long, default_value_t = 0)]
    pub match_images: usize,
    /// Seed of the sampled captions and images.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (default: RUN/caption-report).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

pub fn eval_captions(args: &EvalCaptionsArgs, g: &GlobalArgs, device: Device) -> Result<()> {
    use tessera_train::caption_report::{write_report, CaptionReportOptions};
    let out = args.out.clone().unwrap_or_else(|| args.run.join("caption-report"));
    let protected = [args.run.clone(), args.run.join("checkpoints"), args.run.join("plots")];
    refuse_run_folders(&args.run, &out, &protected)?;
    let opts = CaptionReportOptions {
        images: args.images,
        captions_per_image: args.captions,
        images_per_caption: args.samples,
        match_images: args.match_images,
        seed: args.seed,
    };
    let mut task = open(&args.run, g, device)?;
    let report = write_report(&mut task, &args.run, &g.data_root(), &out, &opts)?;
    println!(
        "validation I2T caption loss {:.3}, T2I image loss {:.3}, greedy caption is the image's own {:.1} % of {}; report: {}",
        report.losses.get("loss/i2t_text").copied().unwrap_or(f64::NAN),
        report.losses.get("loss/t2i_image").copied().unwrap_or(f64::NAN),
        100.0 * report.greedy_match,
        report.match_images,
        out.join("report.html").display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalVimArgs {
    /// A generator run trained with `directions = "t2i"` on Fashion-MNIST
    /// (configs/fashion32-vim-quick.toml).
    pub run: PathBuf,
    /// The Fashion-MNIST classifier (`tessera train classifier --fashion`).
    #[arg(long)]
    pub classifier: PathBuf,
    #[arg(long, default_value_t = 100)]
    pub samples_per_class: usize,
    /// Block the probe reads (1-based; 0 = the middle one).
    #[arg(long, default_value_t = 0)]
    pub probe_block: usize,
    /// Training images the probe is fitted on (test: the first as many test images, ≤ 10,000).
    #[arg(long, default_value_t = 10_000)]
    pub probe_images: usize,
    /// Output folder (default: RUN/vim).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

pub fn eval_vim(args: &EvalVimArgs, g: &GlobalArgs, device: Device) -> Result<()> {
    let mut task = open(&args.run, g, device)?;
    let cfg = tessera_train::vim::VimEvalConfig {
        samples_per_class: args.samples_per_class,
        probe_block: args.probe_block,
        probe_train_images: args.probe_images,
        probe_test_images: args.probe_images,
        seed: task.config.eval.seed,
        ..Default::default()
    };
    let out = args.out.clone().unwrap_or_else(|| args.run.join("vim"));
    let report = tessera_train::vim::evaluate_vim(&mut task, &args.classifier, &g.data_root(), &cfg, &out)?;
    println!("{}\nwritten to {}", serde_json::to_string_pretty(&report)?, out.display());
    Ok(())
}
