//! `tessera bench augvae`: one AugVAE-ML training step (forward with the shared EMA codebook moving
//! once per level, reconstruction + commitment loss, backward, AdamW) against L-Verse's own step,
//! `benches/augvae_step.py` run on a checkout of tgisaturday/L-Verse@e52ed9f, with the same
//! architecture, batch, threads and quantizer (N(0, 1) EMA codebook, no revival, as upstream).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};
use tessera_quant::CodebookInit;
use tessera_train::augvae::{AugVaeRunConfig, AugVaeTrainer};

/// What `bench augvae` was asked for.
#[derive(clap::Args, Debug)]
pub struct AugVaeBench {
    /// quick (configs/mnist64-augvae-quick.toml) or an AugVAE-ML run TOML.
    #[arg(long, default_value = "quick")]
    pub config: String,
    #[arg(long, default_value_t = 16)]
    pub batch: i64,
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
    /// A checkout of tgisaturday/L-Verse@e52ed9f to time upstream's step on (without it, Tessera
    /// only).
    #[arg(long)]
    pub upstream: Option<PathBuf>,
}

pub fn run(o: &AugVaeBench, device: Device, root: &Path) -> Result<()> {
    tch::set_num_threads(o.threads);
    let cfg = bench_config(&o.config)?;
    let ours = tessera_time(cfg.clone(), o.batch, o.reps, device, root)?;
    let (m, q) = (&cfg.model, &cfg.quantizer);
    println!(
        "AugVAE-ML training step ({}: {} px, levels {:?}, hidden {}, ch_mult {:?}, {} res blocks, z {}, {} codes of dim {}; loss mse; batch {}, {} threads, median of {})",
        o.config, m.resolution, m.levels, m.hidden_dim, m.ch_mult, m.num_res_blocks, m.z_channels, q.num_codes,
        q.dim, o.batch, o.threads, o.reps
    );
    let Some(checkout) = &o.upstream else {
        println!("tessera: {ours:.3} s per step");
        return Ok(());
    };
    let theirs = upstream_time(checkout, &cfg, o)?;
    println!("tessera {ours:.3} s, upstream {theirs:.3} s per step: {:.2}×", theirs / ours);
    Ok(())
}

/// The preset with upstream's quantizer (N(0, 1) codebook, no k-means, no revival) and loss
/// (`mse`: LPIPS needs ImageNet VGG16 weights), so both sides do the same work.
fn bench_config(name: &str) -> Result<AugVaeRunConfig> {
    let mut cfg: AugVaeRunConfig =
        crate::bench_cmd::load_preset(name, &[("quick", "mnist64-augvae-quick.toml")])?;
    anyhow::ensure!(cfg.model.single_level.is_none(), "bench augvae times AugVAE-ML; {name} is an SL config");
    cfg.quantizer.init = CodebookInit::Normal;
    cfg.quantizer.dead_code_threshold = 0.0;
    cfg.loss.loss_type = tessera_models::augvae::loss::RecLoss::Mse;
    cfg.optim.plateau = None;
    Ok(cfg)
}

/// Tessera's step: one warm-up, then the median of `reps`.
fn tessera_time(cfg: AugVaeRunConfig, batch: i64, reps: usize, device: Device, root: &Path) -> Result<f64> {
    let side = cfg.model.resolution;
    let lr = cfg.effective_lr();
    let mut t = AugVaeTrainer::new(cfg, device, root)?;
    tch::manual_seed(0);
    let x = Tensor::rand([batch, 3, side, side], (Kind::Float, device)) * 2.0 - 1.0;
    let b = [tessera_data::Batch { images: x, captions: vec![], indices: vec![] }];
    let mut time = |step: i64| crate::bench_cmd::timed(device, || Ok(t.step(&b, step, lr).map(drop)?));
    time(0)?;
    let times: Vec<f64> = (0..reps).map(|i| time(1 + i as i64)).collect::<Result<_>>()?;
    Ok(crate::bench_cmd::median(times))
}

/// `benches/augvae_step.py` on `checkout` with the architecture of `cfg`.
fn upstream_time(checkout: &Path, cfg: &AugVaeRunConfig, o: &AugVaeBench) -> Result<f64> {
    let (m, q) = (&cfg.model, &cfg.quantizer);
    anyhow::ensure!(!m.use_attn, "upstream's script builds use_attn = False (both L-Verse configs)");
    let list = |v: &[i64]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut args: Vec<String> = vec!["benches/augvae_step.py".into(), checkout.display().to_string()];
    args.push(format!("--image={}", m.resolution));
    args.push(format!("--hidden={}", m.hidden_dim));
    args.push("--ch-mult".into());
    args.extend(list(&m.ch_mult));
    args.push(format!("--res-blocks={}", m.num_res_blocks));
    args.push("--levels".into());
    args.extend(list(&m.levels));
    args.extend([
        format!("--z={}", m.z_channels),
        format!("--codebook-dim={}", q.dim),
        format!("--tokens={}", q.num_codes),
        format!("--batch={}", o.batch),
        format!("--reps={}", o.reps),
        format!("--threads={}", o.threads),
        format!("--lr={}", cfg.effective_lr()),
    ]);
    let v = crate::bench_cmd::python_json(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    v["median_s"].as_f64().context("no `median_s` in the upstream script's output")
}
