//! `tessera study te-vqgan` and `tessera study lg-vq`: the studies end to end, resumable, with a
//! report (one pipeline: an LG-VQ study is a pair of arms that differ in `[lg]`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use tch::Device;
use tessera_train::study::StudyConfig;

use crate::GlobalArgs;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Scale {
    /// Small models that finish on a 2-core CPU in under 30 minutes (configs/study-te-quick.toml).
    Quick,
    /// TE-VQGAN's and Bi-DALL-E's configs (spec §2.5, §3.4), meant for a GPU (configs/study-te-paper.toml).
    Paper,
}

impl Scale {
    fn name(self) -> &'static str {
        match self {
            Scale::Quick => "quick",
            Scale::Paper => "paper",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum StudyCommand {
    /// VQGAN (λ_o = 0) vs TE-VQGAN (λ_o = 10), each with a BiART generator: Trans_eq_acc, PSNR,
    /// SSIM, codebook usage, T2I and I2T accuracy; writes report.html, report.md, results.json.
    /// Re-running resumes: finished stages are skipped, an interrupted one continues.
    TeVqgan {
        #[arg(long, value_enum, default_value = "quick")]
        scale: Scale,
        /// Study preset (default: configs/study-te-<scale>.toml).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        #[arg(long, short = 'o', default_value = "runs/study")]
        out: PathBuf,
        /// Seeds per arm (mean and spread are reported).
        #[arg(long, default_value_t = 1)]
        seeds: usize,
        /// Override a preset value, e.g. --set eval_images=50 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Train the arms one after the other in this process. By default on a CPU the arms run as
        /// parallel processes sharing the threads (about 1.35× the throughput on 2 cores).
        #[arg(long)]
        sequential: bool,
        /// Arms to run, comma-separated names from the preset, or `all` (default: the preset's
        /// default arms; the quick preset's ViT-VQGAN arm runs only when named).
        #[arg(long, value_delimiter = ',')]
        arms: Option<Vec<String>>,
        /// Internal: run only this arm and write no report.
        #[arg(long, hide = true)]
        only_arm: Option<String>,
    },
    /// LG-VQ's question on MNIST64x64: one tokenizer trained without and with LG-VQ's losses
    /// (`[lg]`), everything else equal, each with a BiART generator: T2I and I2T accuracy, PSNR,
    /// usage, code↔caption retrieval; writes report.html, report.md, results.json. Resumable.
    LgVq {
        #[arg(long, value_enum, default_value = "quick")]
        scale: Scale,
        /// Study preset (default: configs/study-lg-<scale>.toml).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        #[arg(long, short = 'o', default_value = "runs/lg-study")]
        out: PathBuf,
        /// Seeds per arm.
        #[arg(long, default_value_t = 1)]
        seeds: usize,
        /// Override a preset value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Train the two arms one after the other in this process.
        #[arg(long)]
        sequential: bool,
        /// The tokenizer: an arm of the preset (vqgan, te-vqgan, vit-vqgan, augvae-sl), trained
        /// as `<name>` and `<name>-lg`.
        #[arg(long, default_value = "vqgan")]
        tokenizer: String,
    },
}

pub fn run(cmd: StudyCommand, g: &GlobalArgs, device: Device) -> Result<()> {
    match cmd {
        StudyCommand::TeVqgan { scale, config, out, seeds, overrides, sequential, arms, only_arm } => {
            let path =
                config.unwrap_or_else(|| PathBuf::from(format!("configs/study-te-{}.toml", scale.name())));
            let s = StudyRun { scale, path, out, seeds, overrides, sequential, arms, only_arm };
            run_study(s, g, device)
        }
        StudyCommand::LgVq { scale, config, out, seeds, overrides, sequential, tokenizer } => {
            let path =
                config.unwrap_or_else(|| PathBuf::from(format!("configs/study-lg-{}.toml", scale.name())));
            let arms = Some(vec![tokenizer.clone(), format!("{tokenizer}-lg")]);
            let s = StudyRun { scale, path, out, seeds, overrides, sequential, arms, only_arm: None };
            run_study(s, g, device)
        }
    }
}

/// One study invocation, whichever the study.
struct StudyRun {
    scale: Scale,
    path: PathBuf,
    out: PathBuf,
    seeds: usize,
    overrides: Vec<String>,
    sequential: bool,
    arms: Option<Vec<String>>,
    only_arm: Option<String>,
}

fn run_study(r: StudyRun, g: &GlobalArgs, device: Device) -> Result<()> {
    let StudyRun { scale, path, out, seeds, overrides, sequential, arms, only_arm } = r;
    if !path.is_file() {
        bail!("study preset {} not found (run from the repository root, or pass --config)", path.display());
    }
    let mut cfg: StudyConfig =
        tessera_core::ConfigSource::new(Some(path.clone()), overrides.clone()).load()?;
    let t0 = std::time::Instant::now();
    let root = g.data_root();
    if let Some(arm) = only_arm {
        tessera_train::study::run(&cfg, scale.name(), seeds, &out, device, &root, Some(&arm))?;
        return Ok(());
    }
    cfg.select_arms(arms.as_deref())?;
    if !sequential && device == Device::Cpu && cfg.arms.len() > 1 {
        tessera_train::study::prepare(&cfg, &out, device, &root)?;
        let spec = ArmSpawn { scale, preset: &path, out: &out, seeds, overrides: &overrides, g };
        run_arms_in_parallel(&cfg, &spec)?;
    }
    let results = tessera_train::study::run(&cfg, scale.name(), seeds, &out, device, &root, None)
        .with_context(|| format!("study in {}", out.display()))?;
    tessera_train::study::report::write(&results, &out)?;
    let md = std::fs::read_to_string(out.join("report.md"))?;
    // The comparison table is the first table of the report.
    let table: Vec<&str> =
        md.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')).collect();
    println!("{}", table.join("\n"));
    println!(
        "\nthis session: {:.1} min; study wall time {:.1} min (all stages added up: {:.1} min). Report: {} (open in a browser), {}, {}",
        t0.elapsed().as_secs_f64() / 60.0,
        results.wall_seconds.unwrap_or(f64::NAN) / 60.0,
        results.total_seconds / 60.0,
        out.join("report.html").display(),
        out.join("report.md").display(),
        out.join("results.json").display()
    );
    Ok(())
}

struct ArmSpawn<'a> {
    scale: Scale,
    preset: &'a Path,
    out: &'a Path,
    seeds: usize,
    overrides: &'a [String],
    g: &'a GlobalArgs,
}

/// One child process per arm, threads split between them; progress read from their runs.
fn run_arms_in_parallel(cfg: &StudyConfig, s: &ArmSpawn) -> Result<()> {
    let exe = std::env::current_exe()?;
    let total = s.g.threads.unwrap_or_else(tch::get_num_threads).max(1);
    let per = (total / cfg.arms.len() as i32).max(1);
    let logs = s.out.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut children = Vec::new();
    for arm in &cfg.arms {
        let log = logs.join(format!("{}.log", arm.name));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--threads").arg(per.to_string()).arg("--device").arg("cpu");
        if let Some(d) = &s.g.data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        cmd.args(["study", "te-vqgan", "--scale", s.scale.name(), "--seeds", &s.seeds.to_string()])
            .arg("--config")
            .arg(s.preset)
            .arg("--out")
            .arg(s.out)
            .arg("--only-arm")
            .arg(&arm.name);
        for o in s.overrides {
            cmd.arg("--set").arg(o);
        }
        cmd.stdout(Stdio::from(file.try_clone()?)).stderr(Stdio::from(file));
        children.push((arm.name.clone(), log, cmd.spawn().context("starting an arm process")?));
    }
    eprintln!(
        "training arms {} in parallel ({per} thread{} each); logs in {}",
        cfg.arms.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "),
        if per == 1 { "" } else { "s" },
        logs.display()
    );
    let pb = indicatif::ProgressBar::new_spinner();
    pb.enable_steady_tick(std::time::Duration::from_millis(500));
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("valid"),
    );
    let mut failed = Vec::new();
    loop {
        let mut running = 0;
        let mut status = Vec::new();
        for (name, log, child) in children.iter_mut() {
            match child.try_wait()? {
                None => {
                    running += 1;
                    status.push(format!("{name}: {}", arm_progress(s.out, s.seeds, name)));
                }
                Some(st) if !st.success() => {
                    if !failed.iter().any(|(n, _): &(String, PathBuf)| n == name) {
                        failed.push((name.clone(), log.clone()));
                    }
                }
                Some(_) => status.push(format!("{name}: done")),
            }
        }
        pb.set_message(status.join(" | "));
        if running == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    pb.finish_and_clear();
    if let Some((name, log)) = failed.first() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("arm {name} failed (log {}):\n{}", log.display(), tail.join("\n"));
    }
    Ok(())
}

/// "tokenizer step 340/800" from the newest metrics of an arm's runs.
fn arm_progress(out: &Path, seeds: usize, arm: &str) -> String {
    for seed in (0..seeds).rev() {
        let (tok, gen) = tessera_train::study::run_dirs(out, seed, arm);
        for (what, dir) in [("generator", gen), ("tokenizer", tok)] {
            if let Ok(text) = std::fs::read_to_string(dir.join("metrics.jsonl")) {
                let step = text
                    .lines()
                    .last()
                    .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .and_then(|v| v["step"].as_i64())
                    .unwrap_or(0);
                let max = std::fs::read_to_string(dir.join("config.toml"))
                    .ok()
                    .and_then(|c| {
                        c.lines()
                            .find(|l| l.starts_with("max_steps"))
                            .map(|l| l.trim_start_matches("max_steps = ").to_string())
                    })
                    .unwrap_or_default();
                let done = if dir.join("stage.json").exists() { " (done)" } else { "" };
                return format!("seed {seed} {what} step {step}/{max}{done}");
            }
        }
    }
    "starting".into()
}
