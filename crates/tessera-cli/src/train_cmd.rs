//! `tessera train …`, `tessera eval tokenizer`, `tessera encode|decode|reconstruct`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tch::{Device, Kind, Tensor};
use tessera_data::tensor::{images_to_tensor, tensor_to_images};
use tessera_models::tokenizer::ImageTokenizer;
use tessera_train::frozen::{load_tokenizer, FrozenTokenizer};
use tessera_train::tokenizer::{self, TokenizerRunConfig};

use crate::{ConfigArgs, GlobalArgs};

#[derive(Subcommand, Debug)]
pub enum TrainCommand {
    /// Train a VQGAN / TE-VQGAN tokenizer (presets: configs/mnist64-*.toml).
    Tokenizer(RunArgs),
    /// Train a ViT-VQGAN tokenizer (presets: configs/mnist64-vit-*.toml).
    VitVqgan(RunArgs),
    /// Train an AugVAE tokenizer, L-Verse's (presets: configs/*-augvae-*.toml). AugVAE-ML by
    /// default; a config with model.single_level and init_from fine-tunes an ML run into
    /// AugVAE-SL.
    Augvae {
        #[command(flatten)]
        run: RunArgs,
        /// Train on random images (L-Verse's --fake_data smoke test): no data set needed.
        #[arg(long)]
        fake_data: bool,
    },
    /// Train a BiART generator (text→image and image→text) on a tokenizer run's codes
    /// (presets: configs/mnist64-biart*.toml).
    Generator(RunArgs),
    /// Train the ResNet-18 evaluation classifier (colour + digit heads) used by T2I accuracy, or
    /// with --fashion the Fashion-MNIST one (one 10-way head) that scores VIM's samples.
    Classifier {
        /// Config of the MNIST64x64 data (configs/data-mnist64.toml); defaults otherwise.
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, short = 'o')]
        out: PathBuf,
        /// Batches of 128 crops.
        #[arg(long, default_value_t = 1000)]
        steps: i64,
        /// Channels of the first stage (64 = torchvision's ResNet-18).
        #[arg(long, default_value_t = 64)]
        width: i64,
        /// Train on Fashion-MNIST articles (`tessera data fetch --fashion`) instead of MNIST64x64 crops.
        #[arg(long)]
        fashion: bool,
    },
    /// Train Tessera's in-domain perceptual network (a substitute for ImageNet VGG16).
    Perceptual {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, short = 'o')]
        out: PathBuf,
        /// Batches of 128 crops (300 reach ~92% digit accuracy in about a minute on 2 cores).
        #[arg(long, default_value_t = 400)]
        steps: i64,
    },
}

/// What every resumable training command takes.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Run directory: config, checkpoints, metrics, samples, plots.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Continue from <out>/checkpoints/last.safetensors.
    #[arg(long)]
    pub resume: bool,
}

pub fn train(cmd: TrainCommand, g: &GlobalArgs, device: Device) -> Result<()> {
    match cmd {
        TrainCommand::Tokenizer(RunArgs { config, out, resume }) => {
            let cfg: TokenizerRunConfig = load_config(&config, &out, resume)?;
            let t0 = std::time::Instant::now();
            let (_, summary) = tokenizer::train(cfg, device, &g.data_root(), &out, resume)?;
            report_run(&summary, t0, &out)
        }
        TrainCommand::VitVqgan(RunArgs { config, out, resume }) => {
            let cfg: tessera_train::vit_tokenizer::VitRunConfig = load_config(&config, &out, resume)?;
            let t0 = std::time::Instant::now();
            let (_, summary) =
                tessera_train::vit_tokenizer::train(cfg, device, &g.data_root(), &out, resume)?;
            report_run(&summary, t0, &out)
        }
        TrainCommand::Augvae { run: RunArgs { mut config, out, resume }, fake_data } => {
            if fake_data {
                config.overrides.push("data.source=\"fake\"".into());
            }
            let cfg: tessera_train::augvae::AugVaeRunConfig = load_config(&config, &out, resume)?;
            let t0 = std::time::Instant::now();
            let (_, summary) = tessera_train::augvae::train(cfg, device, &g.data_root(), &out, resume)?;
            report_run(&summary, t0, &out)
        }
        TrainCommand::Generator(RunArgs { config, out, resume }) => {
            let cfg: tessera_train::generator::GeneratorRunConfig = load_config(&config, &out, resume)?;
            let t0 = std::time::Instant::now();
            let (_, summary) = tessera_train::generator::train(cfg, device, &g.data_root(), &out, resume)?;
            report_run(&summary, t0, &out)
        }
        TrainCommand::Classifier { config, out, steps, width, fashion: true } => {
            if config.config.is_some() || !config.overrides.is_empty() {
                bail!("--fashion trains on Fashion-MNIST articles and reads no data config; drop -c / --set");
            }
            let mut cfg = tessera_train::classifier::ClassifierRunConfig { steps, ..Default::default() };
            cfg.model.width = width;
            cfg.val_crops = 10_000;
            let report = tessera_train::article_classifier::train_article_classifier(
                &g.data_root(),
                &cfg,
                device,
                &out,
            )?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        TrainCommand::Classifier { config, out, steps, width, fashion: false } => {
            let data: tessera_data::DataConfig = config.source().load()?;
            let gen = data.mnist64(&g.data_root())?;
            let mut cfg = tessera_train::classifier::ClassifierRunConfig { steps, ..Default::default() };
            cfg.model.width = width;
            let report = tessera_train::classifier::train_classifier(gen, &cfg, device, &out)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        TrainCommand::Perceptual { config, out, steps } => {
            let data: tessera_data::DataConfig = config.source().load()?;
            let gen = data.mnist64(&g.data_root())?;
            let report =
                tessera_train::perceptual::train_perceptual(gen, steps, device, &out, data.mnist64.seed)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

/// Log how a training run went and print its last validation as JSON.
fn report_run(summary: &tessera_train::runner::Summary, t0: std::time::Instant, out: &Path) -> Result<()> {
    tracing::info!(
        "trained {} steps in {:.0} s ({} skipped as non-finite); run in {}",
        summary.steps,
        t0.elapsed().as_secs_f64(),
        summary.skipped_non_finite,
        out.display()
    );
    if let Some(v) = &summary.last_validation {
        println!("{}", serde_json::to_string_pretty(v)?);
    }
    Ok(())
}

/// A run's config: on --resume the stored one (overrides still apply), else the given one.
pub fn load_config<T: serde::de::DeserializeOwned + tessera_core::Validate>(
    args: &ConfigArgs,
    out: &Path,
    resume: bool,
) -> Result<T> {
    let stored = out.join("config.toml");
    if resume && stored.is_file() && args.config.is_none() {
        let src = tessera_core::ConfigSource::new(Some(stored), args.overrides.clone());
        return Ok(src.load()?);
    }
    Ok(args.source().load()?)
}

/// Score any tokenizer run through `ImageTokenizer` on the data it was trained on.
pub fn eval(
    run: &Path,
    batches: usize,
    shift: Option<&[i64]>,
    shift_images: usize,
    g: &GlobalArgs,
    device: Device,
) -> Result<()> {
    use tessera_train::tokenizer_eval::{evaluate, shifted_agreement, EvalOptions};
    let mut tok = open_frozen(run, device)?;
    let (data, root) = (tok.data.clone(), g.data_root());
    let opts = EvalOptions { val_batches: batches, batch_size: tok.eval_batch_size, trans_eq: true };
    let mut rec = evaluate(&mut tok, &data, &root, &opts, device)?;
    match shift {
        None => {}
        Some(&[dy, dx]) => {
            let v =
                shifted_agreement(&mut tok, &data, &root, shift_images, (dy, dx), opts.batch_size, device)?;
            rec.insert(format!("shifted_agreement_{dy}_{dx}"), v);
        }
        Some(other) => bail!("--shift takes two numbers DY,DX (pixels), got {other:?}"),
    }
    let json = serde_json::to_string_pretty(&rec)?;
    tessera_core::fsutil::write_atomic(&run.join("eval.json"), json.as_bytes())?;
    println!("{json}");
    Ok(())
}

/// Read images the tokenizer can take: `size`×`size`, RGB or gray (made RGB).
fn read_images(paths: &[PathBuf], size: u32) -> Result<Vec<image::RgbImage>> {
    paths
        .iter()
        .map(|p| {
            // The size is checked from the header, before decoding: a huge file costs nothing.
            let (w, h) = tessera_data::image_file::dimensions(p)?;
            if w != size || h != size {
                bail!("{} is {w}×{h}, the tokenizer was trained on {size}×{size} images: resize or crop it first", p.display());
            }
            let img = tessera_data::image_file::decode_checked(p, u64::from(size) * u64::from(size))
                .with_context(|| format!("reading {}", p.display()))?;
            let channels = img.color().channel_count();
            if channels == 2 || channels == 4 {
                bail!("{} has {channels} channels (with alpha); the tokenizer takes RGB or gray images: drop the alpha channel first", p.display());
            }
            Ok(img.to_rgb8())
        })
        .collect()
}

fn open_frozen(run: &Path, device: Device) -> Result<FrozenTokenizer> {
    load_tokenizer(run, device).with_context(|| format!("loading tokenizer run {}", run.display()))
}

/// Codes of each image; one grid is stored as `(B, h, w)`, several as `(B, codes)`.
pub fn encode(run: &Path, images: &[PathBuf], out: &Path, _g: &GlobalArgs, device: Device) -> Result<()> {
    let mut tok = open_frozen(run, device)?;
    let size = tok.resolution() as u32;
    let x = images_to_tensor(&read_images(images, size)?)?.to_device(device);
    let mut idx = tok.encode(&x)?;
    if let [(h, w)] = tok.layout().grids.as_slice() {
        idx = idx.view([-1, *h, *w]);
    }
    let names: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    Tensor::write_safetensors(&[("indices", idx.to_kind(Kind::Int64))], out)?;
    std::fs::write(out.with_extension("txt"), names.join("\n") + "\n")?;
    println!("{} codes {:?} -> {}", images.len(), idx.size(), out.display());
    Ok(())
}

pub fn decode(run: &Path, codes: &Path, out: &Path, _g: &GlobalArgs, device: Device) -> Result<()> {
    let mut tok = open_frozen(run, device)?;
    let t: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(codes)?.into_iter().collect();
    let idx = t.get("indices").with_context(|| format!("{} has no `indices` tensor", codes.display()))?;
    let (k, layout) = (tok.num_codes() as i64, tok.layout());
    let grid_shape = match layout.grids.as_slice() {
        [(h, w)] => format!("(B, {h}, {w})"),
        _ => format!("(B, {})", layout.len()),
    };
    let per_image: i64 = idx.size().iter().skip(1).product();
    let ok = idx.dim() >= 2
        && idx.size()[0] > 0
        && per_image == layout.len()
        && idx.kind() == Kind::Int64
        && idx.min().int64_value(&[]) >= 0
        && idx.max().int64_value(&[]) < k;
    if !ok {
        bail!(
            "{}: indices must be int64 codes in 0..{k} of shape {grid_shape}, got {:?} {:?}",
            codes.display(),
            idx.kind(),
            idx.size()
        );
    }
    let x = tok.decode(&idx.view([idx.size()[0], -1]).to_device(device));
    std::fs::create_dir_all(out)?;
    for (i, img) in tensor_to_images(&x)?.iter().enumerate() {
        img.save(out.join(format!("{i:05}.png")))?;
    }
    println!("{} images -> {}", x.size()[0], out.display());
    Ok(())
}

pub fn reconstruct(run: &Path, image: &Path, out: &Path, _g: &GlobalArgs, device: Device) -> Result<()> {
    let mut tok = open_frozen(run, device)?;
    let size = tok.resolution() as u32;
    let x = images_to_tensor(&read_images(&[image.to_path_buf()], size)?)?.to_device(device);
    let codes = tok.encode(&x)?;
    let xr = tok.decode(&codes);
    let mut both = tensor_to_images(&x)?;
    both.extend(tensor_to_images(&xr)?);
    tessera_core::viz::image_grid(&both, 2, 2).save(out)?;
    println!("{}", out.display());
    Ok(())
}

/// What `tessera import taming|vit-vqgan` takes.
#[derive(Args, Debug)]
pub struct ImportArgs {
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Import even when checkpoint tensors of the model have no place in the config.
    #[arg(long)]
    pub allow_unused: bool,
}

/// Import a checkpoint of run kind `kind` (taming's `vqgan` or `vit-vqgan`).
pub fn import(kind: &str, a: &ImportArgs, g: &GlobalArgs, device: Device) -> Result<()> {
    let out = &a.out;
    if out.join("checkpoints/last.safetensors").exists() {
        bail!("{} already holds a run; choose another --out", out.display());
    }
    let (tensors, global_step) = tokenizer::read_checkpoint_tensors(&a.checkpoint)?;
    if let Some(step) = global_step {
        tracing::info!("a PyTorch Lightning checkpoint at global step {step}");
    }
    let rep = if kind == tessera_train::vit_tokenizer::KIND {
        let cfg: tessera_train::vit_tokenizer::VitRunConfig = a.config.source().load()?;
        tessera_train::vit_tokenizer::import(cfg, &tensors, a.allow_unused, device, out)?
    } else {
        let cfg: TokenizerRunConfig = a.config.source().load()?;
        tokenizer::import_taming(cfg, &tensors, a.allow_unused, device, &g.data_root(), out)?
    };
    tracing::info!(
        "imported {} tensors; kept Tessera-only state {:?}; skipped on purpose (LPIPS, blur filters): {:?}",
        rep.loaded,
        rep.kept,
        rep.ignored
    );
    if !rep.unused.is_empty() {
        tracing::warn!(
            "--allow-unused: {} model tensors were not imported: {:?}",
            rep.unused.len(),
            rep.unused
        );
    }
    println!("{}", out.display());
    Ok(())
}
