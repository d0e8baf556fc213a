//! `tessera bench vit`: one ViT-VQGAN training step (autoencoder step, then the StyleGAN2
//! discriminator step on the updated autoencoder, lazy R1 every 16 steps) against
//! enhancing-transformers' own step, `benches/vitvq_step.py` run on a checkout of
//! thuanz123/enhancing-transformers@e1c185d, with the same architecture, batch and threads.
//!
//! Both sides report the step without R1, the step with R1, and their mean over an R1 period
//! (`((every − 1)·plain + with_r1) / every`), which is what training costs per step.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};
use tessera_train::vit_tokenizer::{VitRunConfig, VitTrainer};

/// What `bench vit` was asked for.
#[derive(clap::Args, Debug)]
pub struct VitBench {
    /// quick (configs/mnist64-vit-quick.toml) or a ViT-VQGAN run TOML.
    #[arg(long, default_value = "quick")]
    pub config: String,
    #[arg(long, default_value_t = 16)]
    pub batch: i64,
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
    /// A checkout of thuanz123/enhancing-transformers@e1c185d to time upstream's step on (without
    /// it, Tessera only).
    #[arg(long)]
    pub upstream: Option<PathBuf>,
    /// Upstream's blur: `upstream` (its CPU `upfirdn2d_native`, as it runs) or `depthwise` (the
    /// same filter as a grouped conv, which oneDNN runs ~10× faster; what Tessera does).
    #[arg(long, default_value = "upstream", value_parser = ["upstream", "depthwise"])]
    pub upstream_blur: String,
}

/// Median times of one step without and with R1, and the mean per step over an R1 period.
#[derive(Debug, Clone, Copy)]
pub struct StepTimes {
    pub plain_s: f64,
    pub with_r1_s: f64,
    pub per_step_s: f64,
}

impl StepTimes {
    fn new(plain_s: f64, with_r1_s: f64, every: i64) -> Self {
        let per_step_s = ((every - 1) as f64 * plain_s + with_r1_s) / every as f64;
        StepTimes { plain_s, with_r1_s, per_step_s }
    }
}

pub fn run(o: &VitBench, device: Device, root: &Path) -> Result<()> {
    tch::set_num_threads(o.threads);
    let cfg = bench_config(&o.config)?;
    let every = cfg.loss.r1_every;
    let ours = tessera_times(cfg.clone(), o.batch, o.reps, device, root)?;
    let (m, q, d) = (&cfg.model, &cfg.quantizer, &cfg.disc);
    println!(
        "ViT-VQGAN training step ({}: {} px, patch {}, width {}/{} × depth {}/{}, {} codes of dim {}, disc width {} × {}; batch {}, {} threads, median of {})",
        o.config, m.resolution, m.patch_size, m.encoder.dim, m.decoder.dim, m.encoder.depth, m.decoder.depth,
        q.num_codes, q.dim, d.width, d.channel_multiplier, o.batch, o.threads, o.reps
    );
    let Some(checkout) = &o.upstream else {
        println!(
            "tessera: {:.3} s without R1, {:.3} s with R1, {:.3} s per step over {every} steps",
            ours.plain_s, ours.with_r1_s, ours.per_step_s
        );
        return Ok(());
    };
    let theirs = upstream_times(checkout, &cfg, o)?;
    println!(
        "{:<28} {:>10} {:>10} {:>8}   (upstream blur: {})",
        "", "tessera", "upstream", "ratio", o.upstream_blur
    );
    for (name, a, b) in [
        ("step without R1", ours.plain_s, theirs.plain_s),
        ("step with R1", ours.with_r1_s, theirs.with_r1_s),
        ("per step (R1 every 16)", ours.per_step_s, theirs.per_step_s),
    ] {
        println!("{name:<28} {a:>9.3}s {b:>9.3}s {:>7.2}×", b / a);
    }
    Ok(())
}

/// The preset with what the benchmark needs: the GAN from the first step, no perceptual term
/// (upstream's needs ImageNet VGG16 weights).
fn bench_config(name: &str) -> Result<VitRunConfig> {
    let mut cfg: VitRunConfig = crate::bench_cmd::load_preset(name, &[("quick", "mnist64-vit-quick.toml")])?;
    cfg.loss.disc_start = 0;
    cfg.loss.perceptual_weight = 0.0;
    Ok(cfg)
}

/// Tessera's step: one warm-up, then `reps` steps off the R1 period and `reps` on it.
fn tessera_times(
    cfg: VitRunConfig,
    batch: i64,
    reps: usize,
    device: Device,
    root: &Path,
) -> Result<StepTimes> {
    let every = cfg.loss.r1_every;
    let side = cfg.model.resolution;
    let mut t = VitTrainer::new(cfg, device, root)?;
    tch::manual_seed(0);
    let x = Tensor::rand([batch, 3, side, side], (Kind::Float, device)) * 2.0 - 1.0;
    let b = [tessera_data::Batch { images: x, captions: vec![], indices: vec![] }];
    let mut time = |step: i64| crate::bench_cmd::timed(device, || Ok(t.step(&b, step, 1e-4).map(drop)?));
    time(1)?;
    let plain: Vec<f64> = (0..reps).map(|i| time(2 + i as i64)).collect::<Result<_>>()?;
    let r1: Vec<f64> = (0..reps).map(|i| time(every * (1 + i as i64))).collect::<Result<_>>()?;
    Ok(StepTimes::new(crate::bench_cmd::median(plain), crate::bench_cmd::median(r1), every))
}

/// `benches/vitvq_step.py` on `checkout` with the architecture of `cfg`.
fn upstream_times(checkout: &Path, cfg: &VitRunConfig, o: &VitBench) -> Result<StepTimes> {
    let (m, q, d) = (&cfg.model, &cfg.quantizer, &cfg.disc);
    anyhow::ensure!(
        m.encoder == m.decoder,
        "upstream's script builds one encoder/decoder shape; this config's differ"
    );
    anyhow::ensure!(512 % d.width == 0, "[disc] width {} must divide upstream's 512", d.width);
    let e = &m.encoder;
    let args: Vec<String> = vec![
        "benches/vitvq_step.py".into(),
        checkout.display().to_string(),
        format!("--image={}", m.resolution),
        format!("--patch={}", m.patch_size),
        format!("--dim={}", e.dim),
        format!("--depth={}", e.depth),
        format!("--heads={}", e.heads),
        format!("--mlp={}", e.mlp_dim),
        format!("--dim-head={}", e.dim_head),
        format!("--embed-dim={}", q.dim),
        format!("--n-embed={}", q.num_codes),
        format!("--disc-div={}", 512 / d.width),
        format!("--channel-multiplier={}", d.channel_multiplier),
        format!("--batch={}", o.batch),
        format!("--reps={}", o.reps),
        format!("--threads={}", o.threads),
        format!("--blur={}", o.upstream_blur),
    ];
    let v = crate::bench_cmd::python_json(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let num = |k: &str| v[k].as_f64().with_context(|| format!("no `{k}` in the upstream script's output"));
    Ok(StepTimes::new(num("median_no_r1_s")?, num("with_r1_s")?, cfg.loss.r1_every))
}
