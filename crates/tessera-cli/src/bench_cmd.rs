//! `tessera bench …`: Tessera against PyTorch on this machine, in one run, as a ratio.
//!
//! Each benchmark times the Rust step, then runs the matching script in `benches/` with the
//! project's venv Python on the same sizes and thread count, and prints both times and
//! `speed ratio = PyTorch time / Tessera time` (> 1 means Tessera is faster).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tessera_quant::{VectorQuantizer, VqConfig};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Vector quantizer forward + backward: N vectors × dim against each codebook size.
    Quant {
        #[arg(long, default_value_t = 65_536)]
        n: i64,
        #[arg(long, default_value_t = 256)]
        dim: i64,
        /// Codebook sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1024,8192")]
        codes: Vec<i64>,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Threads for both engines.
        #[arg(long, default_value_t = 2)]
        threads: i32,
    },
    /// One tokenizer training step (generator + discriminator, GAN and adaptive weight active,
    /// in-domain perceptual loss), against benches/vqgan_step.py with the same architecture.
    Tokenizer {
        /// quick (configs/mnist64-te-quick.toml), paper (configs/mnist64-te.toml, spec §2.5) or a
        /// tokenizer TOML: its model, quantizer, discriminator and pixel loss are benchmarked.
        #[arg(long, default_value = "quick")]
        config: String,
        #[arg(long, default_value_t = 8)]
        batch: i64,
        #[arg(long, default_value_t = 3)]
        reps: usize,
        #[arg(long, default_value_t = 2)]
        threads: i32,
        /// λ_o (0 = VQGAN, 10 = TE-VQGAN).
        #[arg(long, default_value_t = 10.0)]
        ortho: f64,
    },
    /// BiART: one training step (both directions, clip, AdamW) against benches/biart_step.py, and
    /// text→image sampling of whole images with the KV cache vs recomputing the prefix every step
    /// (Bi-DALL-E's way), in image tokens per second.
    Generator {
        /// paper (Bi-DALL-E's size: 8 layers × 256, 8 heads of 64, sequence 50 + 256) or tiny.
        #[arg(long, default_value = "paper")]
        config: String,
        #[arg(long, default_value_t = 8)]
        batch: i64,
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Captions sampled at once (the cache's advantage grows with the batch: per-step overheads
        /// are shared).
        #[arg(long, default_value_t = 16)]
        sample_batch: i64,
        #[arg(long, default_value_t = 2)]
        threads: i32,
        /// Time Tessera only (no PyTorch run).
        #[arg(long)]
        tessera_only: bool,
    },
    /// One ViT-VQGAN training step (StyleGAN2 discriminator, lazy R1) against
    /// enhancing-transformers' own step from a checkout (benches/vitvq_step.py).
    Vit(crate::bench_vit::VitBench),
    /// One AugVAE-ML training step against L-Verse's own (`--upstream CHECKOUT`).
    Augvae(crate::bench_augvae::AugVaeBench),
    /// What LG-VQ's losses add to a tokenizer step: the same step without and with `[lg]`.
    Lg(crate::bench_lg::LgBench),
}

/// Run a benchmark; `root` is the data cache (`--data-dir`): real batches and `[lg]`'s encoder.
pub fn run(cmd: BenchCommand, device: Device, root: &Path) -> Result<()> {
    match cmd {
        BenchCommand::Quant { n, dim, codes, reps, threads } => {
            bench_quant(n, dim, &codes, reps, threads, device)
        }
        BenchCommand::Generator { config, batch, reps, sample_batch, threads, tessera_only } => {
            let o = GeneratorBench { config, batch, reps, sample_batch, threads, tessera_only };
            bench_generator(&o, device)
        }
        BenchCommand::Tokenizer { config, batch, reps, threads, ortho } => {
            bench_tokenizer(&config, batch, reps, threads, ortho, device)
        }
        BenchCommand::Vit(o) => crate::bench_vit::run(&o, device, root),
        BenchCommand::Augvae(o) => crate::bench_augvae::run(&o, device, root),
        BenchCommand::Lg(o) => crate::bench_lg::run(&o, device, root),
    }
}

/// The vector quantizer's forward + backward against PyTorch's, per codebook size.
fn bench_quant(n: i64, dim: i64, codes: &[i64], reps: usize, threads: i32, device: Device) -> Result<()> {
    tch::set_num_threads(threads);
    println!("vector quantizer, {n} × {dim}, forward + backward, {threads} threads, median of {reps}");
    println!("{:>8} {:>12} {:>12} {:>8}", "codes", "tessera s", "pytorch s", "ratio");
    for &k in codes {
        let ours = quant_step_time(n, dim, k, reps, device)?;
        let theirs = python_median(&[
            "benches/quant_bench.py",
            &format!("--n={n}"),
            &format!("--dim={dim}"),
            &format!("--codes={k}"),
            &format!("--reps={reps}"),
            &format!("--threads={threads}"),
        ])?;
        println!("{k:>8} {ours:>12.4} {theirs:>12.4} {:>7.2}×", theirs / ours);
    }
    Ok(())
}

/// What `bench generator` was asked for.
struct GeneratorBench {
    config: String,
    batch: i64,
    reps: usize,
    sample_batch: i64,
    threads: i32,
    tessera_only: bool,
}

/// BiART's training step and sampling throughput against Bi-DALL-E's PyTorch code.
fn bench_generator(o: &GeneratorBench, device: Device) -> Result<()> {
    let GeneratorBench { config, batch, reps, sample_batch, threads, tessera_only } = o;
    let (batch, reps, sample_batch, threads) = (*batch, *reps, *sample_batch, *threads);
    tch::set_num_threads(threads);
    let ours = generator_times(config, batch, reps, sample_batch, device)?;
    if *tessera_only {
        println!(
            "tessera: training step {:.3} s; image tokens/s {:.0} with the KV cache, {:.0} recomputing ({:.1}×)",
            ours.train_s,
            ours.cache_tok_s,
            ours.nocache_tok_s,
            ours.cache_tok_s / ours.nocache_tok_s
        );
        return Ok(());
    }
    let theirs = python_json(&[
        "benches/biart_step.py",
        &format!("--config={config}"),
        &format!("--batch={batch}"),
        &format!("--reps={reps}"),
        &format!("--sample-batch={sample_batch}"),
        &format!("--threads={threads}"),
    ])?;
    let num = |v: &serde_json::Value| v.as_f64().context("missing number in the reference's output");
    let py_train = num(&theirs["train"]["median_s"])?;
    let py_cache = num(&theirs["sample_cache"]["image_tokens_per_s"])?;
    let py_nocache = num(&theirs["sample_nocache"]["image_tokens_per_s"])?;
    println!("BiART {config}, {threads} threads; training step median of {reps}, batch {batch}; t2i sampling of {sample_batch} images (Tessera: cached median of 3, recompute once; PyTorch: once each)");
    println!("{:<34} {:>12} {:>12} {:>8}", "", "tessera", "pytorch", "ratio");
    println!(
        "{:<34} {:>11.3}s {:>11.3}s {:>7.2}×",
        "training step (t2i + i2t)",
        ours.train_s,
        py_train,
        py_train / ours.train_s
    );
    println!(
        "{:<34} {:>12.0} {:>12.0} {:>7.2}×",
        "image tokens/s, KV cache",
        ours.cache_tok_s,
        py_cache,
        ours.cache_tok_s / py_cache
    );
    println!(
        "{:<34} {:>12.0} {:>12.0} {:>7.2}×",
        "image tokens/s, recompute (Bi-DALL-E)",
        ours.nocache_tok_s,
        py_nocache,
        ours.nocache_tok_s / py_nocache
    );
    println!(
        "KV cache speed-up on the same model: tessera {:.1}×, pytorch {:.1}× (goal ≥ 20×)",
        ours.cache_tok_s / ours.nocache_tok_s,
        py_cache / py_nocache
    );
    Ok(())
}

/// The tokenizer's training step against taming's, on the same preset.
fn bench_tokenizer(
    config: &str,
    batch: i64,
    reps: usize,
    threads: i32,
    ortho: f64,
    device: Device,
) -> Result<()> {
    tch::set_num_threads(threads);
    let cfg = tokenizer_bench_config(config, ortho)?;
    let ours = tokenizer_step_time(cfg.clone(), batch, reps, device)?;
    let mut args = vec!["benches/vqgan_step.py".to_string()];
    args.extend(vqgan_step_args(&cfg)?);
    args.extend([
        format!("--batch={batch}"),
        format!("--reps={reps}"),
        format!("--threads={threads}"),
        format!("--ortho={ortho}"),
    ]);
    let theirs = python_median(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let m = &cfg.model;
    println!(
        "tokenizer training step ({config}: ch {}, ch_mult {:?}, attn {:?}, z {}, {} codes of dim {}; batch {batch}, λ_o {ortho}, {threads} threads, median of {reps})",
        m.ch, m.ch_mult, m.attn_resolutions, m.z_channels, cfg.quantizer.num_codes, cfg.quantizer.dim
    );
    println!("tessera {ours:.3} s   pytorch {theirs:.3} s   ratio {:.2}×", theirs / ours);
    println!("(both: generator step, then the discriminator on the updated generator's reconstructions, as taming)");
    Ok(())
}

/// The preset `name` (quick, paper, or a TOML path) with what the benchmark needs: fake data,
/// the GAN and adaptive weight active from the first step, λ_o = `ortho`, a fixed lr.
fn tokenizer_bench_config(name: &str, ortho: f64) -> Result<tessera_train::tokenizer::TokenizerRunConfig> {
    let mut cfg: tessera_train::tokenizer::TokenizerRunConfig =
        load_preset(name, &[("quick", "mnist64-te-quick.toml"), ("paper", "mnist64-te.toml")])?;
    cfg.data.source = tessera_data::SourceKind::Fake;
    cfg.data.fake_len = 8;
    cfg.quantizer.ortho.weight = ortho;
    // The reference has no dead-code revival (a Tessera option the quick preset turns on).
    cfg.quantizer.dead_code_threshold = 0.0;
    cfg.loss.perceptual_weight = 1.0;
    cfg.loss.perceptual_backbone = tessera_models::perceptual::Backbone::Tiny;
    cfg.loss.perceptual_head_dropout = true;
    cfg.loss.disc_start = 0;
    cfg.eval.trans_eq = false;
    cfg.optim.scale_lr = false;
    cfg.optim.base_learning_rate = 1e-4;
    Ok(cfg)
}

/// benches/vqgan_step.py's arguments for the architecture of `cfg`.
fn vqgan_step_args(cfg: &tessera_train::tokenizer::TokenizerRunConfig) -> Result<Vec<String>> {
    use tessera_train::tokenizer::PixelLoss;
    let (m, q) = (&cfg.model, &cfg.quantizer);
    if m.ch % 32 != 0 {
        bail!(
            "the PyTorch reference uses taming's GroupNorm(32): model.ch must be a multiple of 32, got {}",
            m.ch
        );
    }
    if q.update != tessera_quant::CodebookUpdate::Gradient
        || q.codebook_dim.is_some()
        || q.distance != tessera_quant::Distance::Euclidean
    {
        bail!("the PyTorch reference has TE-VQGAN's codebook: gradient-trained, Euclidean, not factorized");
    }
    let list = |v: &[i64]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    Ok(vec![
        format!("--ch={}", m.ch),
        format!("--ch-mult={}", list(&m.ch_mult)),
        format!("--num-res-blocks={}", m.num_res_blocks),
        format!("--attn={}", list(&m.attn_resolutions)),
        format!("--resolution={}", m.resolution),
        format!("--z={}", m.z_channels),
        format!("--embed={}", q.dim),
        format!("--codes={}", q.num_codes),
        format!("--replication-pad={}", u8::from(m.use_replicationpad)),
        format!("--version={}", serde_name(&m.version)?),
        format!("--downsampling={}", serde_name(&m.downsampling_method)?),
        format!("--ndf={}", cfg.disc.ndf),
        format!("--disc-layers={}", cfg.disc.n_layers),
        format!("--pixel={}", if cfg.loss.pixel == PixelLoss::L1 { "l1" } else { "l2" }),
    ])
}

fn biart_config(name: &str) -> Result<tessera_models::biart::BiartConfig> {
    use tessera_models::biart::{AttnType, BiartConfig};
    let base = BiartConfig { text_vocab: 78, image_vocab: 128, image_side: 16, ..BiartConfig::default() };
    Ok(match name {
        "paper" => BiartConfig { attn_types: vec![AttnType::Full], ..base },
        "tiny" => BiartConfig::reference_fixture(),
        other => bail!("unknown bench config `{other}` (paper or tiny)"),
    })
}

/// Random captions `[CLS] w… [SEP] [PAD]…` of random lengths, as the PyTorch side.
fn random_text(b: i64, cfg: &tessera_models::biart::BiartConfig, device: Device) -> Tensor {
    let lt = cfg.text_len as i64;
    let words = Tensor::randint_low(5, cfg.text_vocab as i64, [b, lt], (Kind::Int64, device));
    let len = Tensor::randint_low(3, lt + 1, [b, 1], (Kind::Int64, device));
    let pos = Tensor::arange(lt, (Kind::Int64, device)).unsqueeze(0);
    let t = words.where_self(&pos.lt_tensor(&(&len - 1)), &Tensor::zeros_like(&words));
    let t = Tensor::full_like(&t, tessera_models::biart::SEP).where_self(&pos.eq_tensor(&(&len - 1)), &t);
    let _ = t.narrow(1, 0, 1).fill_(tessera_models::biart::CLS);
    t
}

struct GeneratorTimes {
    train_s: f64,
    cache_tok_s: f64,
    nocache_tok_s: f64,
}

fn generator_times(
    cfg_name: &str,
    batch: i64,
    reps: usize,
    sample_batch: i64,
    device: Device,
) -> Result<GeneratorTimes> {
    use tessera_models::biart::sample::SampleConfig;
    use tessera_models::biart::{Biart, Direction};
    let cfg = biart_config(cfg_name)?;
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let model = Biart::new(&vs.root(), cfg.clone()).map_err(anyhow::Error::msg)?;
    let params = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, t)| {
            let d = tessera_train::generator::decays(&n);
            (n, t, d)
        })
        .collect();
    let adam = tessera_nn::optim::AdamConfig {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.01,
        decoupled: true,
    };
    let mut opt = tessera_nn::optim::Adam::new(params, 1e-3, adam);
    let text = random_text(batch, &cfg, device);
    let li = (cfg.image_side * cfg.image_side) as i64;
    let codes = Tensor::randint(cfg.image_vocab as i64, [batch, li], (Kind::Int64, device));
    let sync = || {
        if device.is_cuda() {
            tch::Cuda::synchronize(0);
        }
    };
    let mut times = Vec::new();
    for i in 0..=reps {
        let t = Instant::now();
        let a = model.loss(Direction::T2i, &text, &codes, true);
        let b = model.loss(Direction::I2t, &text, &codes, true);
        let loss = (a.total + b.total) / 2.0;
        opt.zero_grad();
        loss.backward();
        opt.clip_grad_norm(1.0);
        opt.step();
        sync();
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let train_s = median(times);
    let captions = random_text(sample_batch, &cfg, device);
    let sample = |use_cache: bool| {
        let sc = SampleConfig { use_cache, ..SampleConfig::default() };
        tch::manual_seed(1);
        let t = Instant::now();
        let out = model.generate(Direction::T2i, &captions, &sc);
        sync();
        let dt = t.elapsed().as_secs_f64();
        (out.numel() as f64) / dt
    };
    sample(true); // warm-up
                  // Cached generation takes about a second and is noisy on a shared CPU: median of three.
    let cache_tok_s = median((0..3).map(|_| sample(true)).collect());
    let nocache_tok_s = sample(false);
    Ok(GeneratorTimes { train_s, cache_tok_s, nocache_tok_s })
}

/// A unit enum's name as configs spell it (`v2`, `strided_conv`).
fn serde_name(v: &impl serde::Serialize) -> Result<String> {
    Ok(serde_json::to_value(v)?.as_str().context("not a unit enum")?.to_string())
}

fn tokenizer_step_time(
    mut cfg: tessera_train::tokenizer::TokenizerRunConfig,
    batch: i64,
    reps: usize,
    device: Device,
) -> Result<f64> {
    use tessera_train::runner::Task;
    use tessera_train::tokenizer::TokenizerTask;
    let dir = tempfile::tempdir()?;
    // A random in-domain perceptual network: speed does not depend on its weights.
    let pvs = VarStore::new(device);
    let _ =
        tessera_models::perceptual::Lpips::new(&pvs.root(), tessera_models::perceptual::Backbone::Tiny, true);
    let pw = dir.path().join("p.safetensors");
    Tensor::write_safetensors(&tessera_train::checkpoint::vars(&pvs, ""), &pw)?;
    cfg.loss.perceptual_weights = Some(pw);
    cfg.loss.perceptual_heads = None;
    let side = cfg.model.resolution;
    let mut task = TokenizerTask::new(cfg, device, dir.path())?;
    tch::manual_seed(0);
    let x = Tensor::rand([batch, 3, side, side], (Kind::Float, device)) * 2.0 - 1.0;
    let b = tessera_data::Batch { images: x, captions: vec![], indices: vec![] };
    let mut times = Vec::new();
    for i in 0..=reps {
        let t = timed(device, || Ok(task.train_step(std::slice::from_ref(&b), 1 + i as i64).map(drop)?))?;
        if i > 0 {
            times.push(t);
        }
    }
    Ok(median(times))
}

/// A benchmark's config: a preset's short name (`(name, file in configs/)`) or a TOML path.
pub(crate) fn load_preset<T: serde::de::DeserializeOwned + tessera_core::Validate>(
    name: &str,
    presets: &[(&str, &str)],
) -> Result<T> {
    let root = std::env::var("TESSERA_ROOT").unwrap_or_else(|_| ".".into());
    let path = match presets.iter().find(|(short, _)| *short == name) {
        Some((_, file)) => Path::new(&root).join("configs").join(file),
        None => name.into(),
    };
    tessera_core::config::ConfigSource::new(Some(path.clone()), vec![])
        .load()
        .with_context(|| format!("bench config `{name}` ({})", path.display()))
}

/// Seconds `work` takes, waiting for the GPU when there is one.
pub(crate) fn timed(device: Device, work: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    work()?;
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    Ok(t.elapsed().as_secs_f64())
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quant_step_time(n: i64, dim: i64, k: i64, reps: usize, device: Device) -> Result<f64> {
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let cfg = VqConfig { num_codes: k, dim, search_chunk: 8192, ..VqConfig::default() };
    let mut vq = VectorQuantizer::new(&vs.root(), cfg)?;
    let x = Tensor::randn([n, dim], (Kind::Float, device)).set_requires_grad(true);
    let g = Tensor::randn([n, dim], (Kind::Float, device));
    let mut step = || -> Result<f64> {
        let t = Instant::now();
        let out = vq.forward_t(&x, true)?;
        ((&out.quantized * &g).sum(Kind::Float) + &out.loss).backward();
        if device.is_cuda() {
            tch::Cuda::synchronize(0);
        }
        let dt = t.elapsed().as_secs_f64();
        let mut xg = x.grad();
        let _ = xg.zero_();
        let mut eg = vq.embedding.grad();
        let _ = eg.zero_();
        Ok(dt)
    };
    step()?;
    let times = (0..reps).map(|_| step()).collect::<Result<Vec<_>>>()?;
    Ok(median(times))
}

/// Run a PyTorch reference script with the venv's Python and read its `median_s`.
fn python_median(args: &[&str]) -> Result<f64> {
    python_json(args)?["median_s"].as_f64().context("no median_s in the reference's output")
}

/// Run a PyTorch reference script with the venv's Python and parse its last stdout line as JSON.
pub(crate) fn python_json(args: &[&str]) -> Result<serde_json::Value> {
    let root = std::env::var("TESSERA_ROOT").unwrap_or_else(|_| ".".into());
    let python = Path::new(&root).join(".venv/bin/python");
    if !python.exists() {
        bail!(
            "{} not found: run scripts/setup.sh first (benchmarks compare against its PyTorch)",
            python.display()
        );
    }
    let out = Command::new(&python)
        .args(args)
        .current_dir(&root)
        .output()
        .context("running the PyTorch reference")?;
    if !out.status.success() {
        bail!("{} {:?} failed: {}", python.display(), args, String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("parsing `{line}`"))
}
