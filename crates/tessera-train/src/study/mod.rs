//! The TE-VQGAN study (TE-VQGAN paper, spec §2, §3, §9.1) as one resumable pipeline:
//! for each seed, a VQGAN tokenizer (λ_o = 0) and a TE-VQGAN tokenizer (λ_o = 10) with everything
//! else equal, a BiART generator on each, one shared evaluation classifier, and every metric —
//! Trans_eq_acc, PSNR, SSIM, codebook usage, T2I and I2T accuracy per bucket on validation and
//! test-unseen.
//!
//! Layout of `OUT`:
//! ```text
//! classifier/                      evaluation classifier (shared)
//! seed{s}/{arm}/tokenizer/         tokenizer run (+ eval.json)
//! seed{s}/{arm}/tokenizer-ml/      the AugVAE-ML run an augvae-sl arm fine-tunes
//! seed{s}/{arm}/generator/         generator run (+ eval_generator.json, eval/*.png)
//! .../stage.json                   written when a stage finishes: it is then skipped
//! results.json, report.md, report.html, plots/
//! ```
//! An interrupted stage continues from its last checkpoint (`--resume` semantics of the loop).

pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::Device;
use tessera_data::mnist64::Split;

use crate::augvae::AugVaeRunConfig;
use crate::classifier::{train_classifier, Classifier, ClassifierReport, ClassifierRunConfig};
use crate::error::{Result, TrainError};
use crate::gen_eval::SplitScores;
use crate::generator::{self, GeneratorRunConfig};
use crate::tokenizer::{self, TokenizerRunConfig};
use crate::vit_tokenizer::VitRunConfig;

/// The tokenizer family an arm trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArmKind {
    /// VQGAN / TE-VQGAN: the study's `tokenizer` config with this arm's λ_o.
    #[default]
    Vqgan,
    /// ViT-VQGAN: the arm's own `tokenizer` config (`tessera train vit-vqgan`).
    VitVqgan,
    /// AugVAE-SL: an AugVAE-ML run from `stage1` (`tessera train augvae`), then the arm's
    /// `tokenizer` config fine-tuning it into AugVAE-SL (its `init_from` is set by the study).
    AugvaeSl,
}

/// One side of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    pub name: String,
    /// λ_o of the orthogonality regulariser (spec §2.2); VQGAN arms only.
    #[serde(default)]
    pub ortho_weight: f64,
    #[serde(default)]
    pub kind: ArmKind,
    /// The arm's tokenizer config (required for ViT-VQGAN and AugVAE-SL; VQGAN arms use the
    /// study's).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// AugVAE-SL arms: the AugVAE-ML config the arm's tokenizer fine-tunes.
    #[serde(default)]
    pub stage1: Option<PathBuf>,
    /// The arm's generator budget in steps, when it differs from the generator config's
    /// `train.max_steps` (the report shows each arm's generator config).
    #[serde(default)]
    pub generator_steps: Option<i64>,
    /// Whether the arm runs when `--arms` is not given.
    #[serde(default = "yes")]
    pub default: bool,
    /// LG-VQ's losses on this arm's tokenizer (`[lg]`, spec §5); absent = off.
    #[serde(default)]
    pub lg: Option<tessera_models::lg::LgConfig>,
}

fn yes() -> bool {
    true
}

impl Arm {
    /// A VQGAN arm with λ_o = `ortho_weight`, run by default.
    pub fn vqgan(name: &str, ortho_weight: f64) -> Self {
        Arm {
            name: name.into(),
            ortho_weight,
            kind: ArmKind::Vqgan,
            tokenizer: None,
            stage1: None,
            generator_steps: None,
            default: true,
            lg: None,
        }
    }
}

/// A study preset (`configs/study-te-*.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudyConfig {
    /// Tokenizer config; each arm overrides `quantizer.ortho.weight`, each seed `train.seed`.
    pub tokenizer: PathBuf,
    /// Generator config; `tokenizer` is set to the arm's tokenizer run.
    pub generator: PathBuf,
    pub classifier: ClassifierRunConfig,
    /// Validation batches for the tokenizer metrics (0 = all).
    pub tokenizer_val_batches: usize,
    /// Images per split for T2I / I2T accuracy.
    pub eval_images: usize,
    pub splits: Vec<Split>,
    pub arms: Vec<Arm>,
    /// Seed of seed index 0; index s uses `seed + s`.
    pub seed: u64,
    /// Validation images for code↔caption retrieval of arms with `lg`.
    pub retrieval_images: usize,
}

impl tessera_core::Validate for StudyConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        use tessera_core::validate::MAX_IMAGES;
        c.section("classifier", &self.classifier);
        c.int("tokenizer_val_batches", self.tokenizer_val_batches, 0, 1_000_000, "0 = all");
        c.int("eval_images", self.eval_images, 1, MAX_IMAGES, "per split");
        c.int("retrieval_images", self.retrieval_images, 1, MAX_IMAGES, "validation images");
        c.int("arms.len()", self.arms.len(), 1, 64, "");
        for (i, arm) in self.arms.iter().enumerate() {
            let safe = !arm.name.is_empty()
                && arm.name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            c.rule(
                safe,
                &format!("arms[{i}].name"),
                format_args!(
                    "= {:?}: it names a folder, so it must be letters, digits, '-' or '_'",
                    arm.name
                ),
            );
            let unique = self.arms.iter().filter(|a| a.name == arm.name).count() == 1;
            c.rule(unique, &format!("arms[{i}].name"), format_args!("= {:?}: two arms share it", arm.name));
            c.weight(&format!("arms[{i}].ortho_weight"), arm.ortho_weight);
            if let Some(n) = arm.generator_steps {
                c.int(&format!("arms[{i}].generator_steps"), n, 1, tessera_core::validate::MAX_STEPS, "");
            }
            if arm.kind != ArmKind::Vqgan {
                c.rule(
                    arm.tokenizer.is_some(),
                    &format!("arms[{i}].tokenizer"),
                    "a vit-vqgan or augvae-sl arm needs its tokenizer config (e.g. configs/mnist64-vit-quick.toml)",
                );
                c.rule(
                    arm.ortho_weight == 0.0,
                    &format!("arms[{i}].ortho_weight"),
                    "applies to VQGAN arms only; set it to 0",
                );
            }
            c.rule(
                arm.stage1.is_some() == (arm.kind == ArmKind::AugvaeSl),
                &format!("arms[{i}].stage1"),
                "is the AugVAE-ML config of an augvae-sl arm, which needs it; other arms take none",
            );
        }
    }
}

impl Default for StudyConfig {
    fn default() -> Self {
        Self {
            tokenizer: PathBuf::from("configs/mnist64-te-tiny.toml"),
            generator: PathBuf::from("configs/mnist64-biart-quick.toml"),
            classifier: ClassifierRunConfig::default(),
            tokenizer_val_batches: 10,
            eval_images: 200,
            splits: vec![Split::Validation, Split::TestUnseen],
            arms: vec![Arm::vqgan("vqgan", 0.0), Arm::vqgan("te-vqgan", 10.0)],
            seed: 23,
            retrieval_images: 500,
        }
    }
}

impl StudyConfig {
    /// Keep the arms `names` (in the preset's order; `all` keeps every arm), or, without names,
    /// the arms marked `default`. An unknown name is an error that lists the preset's arms.
    pub fn select_arms(&mut self, names: Option<&[String]>) -> Result<()> {
        let known: Vec<String> = self.arms.iter().map(|a| a.name.clone()).collect();
        match names {
            None => self.arms.retain(|a| a.default),
            Some(n) if n.iter().any(|x| x == "all") => {}
            Some(n) => {
                if let Some(bad) = n.iter().find(|x| !known.contains(x)) {
                    return Err(TrainError::Invalid(format!(
                        "--arms: no arm `{bad}` in the study preset; it has {known:?} (or `all`)"
                    )));
                }
                self.arms.retain(|a| n.contains(&a.name));
            }
        }
        if self.arms.is_empty() {
            return Err(TrainError::Invalid(format!("no arm selected; the preset has {known:?}")));
        }
        Ok(())
    }
}

/// What one finished stage recorded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StageRecord {
    pub seconds: f64,
}

/// Every number of one (seed, arm).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    pub seed: u64,
    pub arm: String,
    pub tokenizer: BTreeMap<String, f64>,
    pub generator: BTreeMap<String, SplitScores>,
    /// Seconds per stage (`tokenizer`, `tokenizer_eval`, `generator`, `generator_eval`).
    pub seconds: BTreeMap<String, f64>,
    pub tokenizer_config: String,
    pub generator_config: String,
    /// Code↔caption retrieval of an arm with `lg`.
    #[serde(default)]
    pub retrieval: Option<tessera_eval::retrieval::RetrievalScores>,
}

/// `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StudyResults {
    pub scale: String,
    pub seeds: usize,
    pub config: StudyConfig,
    pub machine: Machine,
    pub classifier: ClassifierReport,
    pub classifier_seconds: f64,
    pub runs: Vec<RunResult>,
    /// Time of all stages added up (arms that ran in parallel count twice).
    pub total_seconds: f64,
    /// Wall time from the start of the first stage to the end of the last (includes any pause
    /// between resumed sessions).
    #[serde(default)]
    pub wall_seconds: Option<f64>,
}

impl StudyResults {
    /// Write `results.json` into `out`.
    pub fn save(&self, out: &Path) -> Result<()> {
        write_json(&out.join("results.json"), self)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub torch_threads: i32,
    pub memory_gib: f64,
    pub device: String,
}

impl Machine {
    pub fn detect(device: Device) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| std::env::consts::ARCH.to_string(), |s| s.trim().to_string());
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            torch_threads: tch::get_num_threads(),
            memory_gib: (mem * 10.0).round() / 10.0,
            device: format!("{device:?}"),
        }
    }
}

fn stage_done(dir: &Path) -> Option<StageRecord> {
    let text = std::fs::read_to_string(dir.join("stage.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(v).expect("serializable");
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| TrainError::io(d, e))?;
    }
    tessera_core::fsutil::write_atomic(path, json.as_bytes()).map_err(|e| TrainError::io(path, e))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))
}

/// From the earliest stage start (its `stage.json` time minus its duration) to the latest stage end.
fn wall_span(dirs: &[PathBuf]) -> Option<f64> {
    let mut first = f64::INFINITY;
    let mut last = f64::NEG_INFINITY;
    for d in dirs {
        let rec = stage_done(d)?;
        let end = std::fs::metadata(d.join("stage.json")).ok()?.modified().ok()?;
        let end = end.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
        first = first.min(end - rec.seconds);
        last = last.max(end);
    }
    (last >= first).then_some(last - first)
}

/// Run `work` unless `dir/stage.json` says it finished; record its time.
fn stage(dir: &Path, name: &str, work: impl FnOnce() -> Result<()>) -> Result<f64> {
    if let Some(r) = stage_done(dir) {
        tracing::info!("{name}: done earlier ({:.0} s), skipped", r.seconds);
        return Ok(r.seconds);
    }
    tracing::info!("{name}: starting in {}", dir.display());
    let t = Instant::now();
    work()?;
    let rec = StageRecord { seconds: t.elapsed().as_secs_f64() };
    write_json(&dir.join("stage.json"), &rec)?;
    tracing::info!("{name}: finished in {:.0} s", rec.seconds);
    Ok(rec.seconds)
}

fn load_toml<T: serde::de::DeserializeOwned + tessera_core::Validate>(path: &Path) -> Result<T> {
    tessera_core::ConfigSource::new(Some(path.to_path_buf()), Vec::new())
        .load()
        .map_err(|e| TrainError::Invalid(e.to_string()))
}

/// Paths of one (seed, arm).
pub fn run_dirs(out: &Path, seed_index: usize, arm: &str) -> (PathBuf, PathBuf) {
    let base = out.join(format!("seed{seed_index}")).join(arm);
    (base.join("tokenizer"), base.join("generator"))
}

/// Stages shared by every arm (perceptual net if the tokenizer config needs one, evaluation
/// classifier). Run once before arms train in parallel processes.
pub fn prepare(cfg: &StudyConfig, out: &Path, device: Device, root: &Path) -> Result<f64> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let tok_base: TokenizerRunConfig = load_toml(&cfg.tokenizer)?;
    // The in-domain perceptual net the tokenizer config asks for, if it is not there yet.
    if tok_base.loss.perceptual_weight > 0.0 {
        if let Some(w) = tok_base.loss.perceptual_weights.clone().filter(|w| !w.exists()) {
            let dir = w.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            tracing::info!("training the in-domain perceptual network into {}", dir.display());
            crate::perceptual::train_perceptual(
                tok_base.data.mnist64(root)?,
                400,
                device,
                &dir,
                tok_base.data.mnist64.seed,
            )?;
        }
    }
    let clf_dir = out.join("classifier");
    let data = tok_base.data.clone();
    stage(&clf_dir, "evaluation classifier", || {
        let rep = train_classifier(data.mnist64(root)?, &cfg.classifier, device, &clf_dir)?;
        tracing::info!(
            "classifier held-out accuracy: colour {:.3}, digit {:.3}",
            rep.colour_accuracy,
            rep.digit_accuracy
        );
        Ok(())
    })
}

/// What evaluating an arm's tokenizer gives: its metrics, and retrieval when it has `lg`.
type TokenizerEval = (crate::metrics::Record, Option<tessera_eval::retrieval::RetrievalScores>);

/// Train (or resume) the tokenizer of `arm` at `seed` into `tok_dir` and evaluate it.
fn arm_tokenizer(
    cfg: &StudyConfig,
    tok_base: &TokenizerRunConfig,
    arm: &Arm,
    seed: u64,
    label: &str,
    tok_dir: &Path,
    (device, root): (Device, &Path),
) -> Result<TokenizerEval> {
    let resume = tok_dir.join("checkpoints/last.safetensors").exists();
    let n = cfg.retrieval_images;
    Ok(match arm.kind {
        ArmKind::Vqgan => {
            let mut tcfg = tok_base.clone();
            tcfg.quantizer.ortho.weight = arm.ortho_weight;
            tcfg.train.seed = seed;
            tcfg.data.loader.seed = seed;
            tcfg.eval.val_batches = cfg.tokenizer_val_batches;
            tcfg.lg = arm.lg.clone();
            let mut task = tokenizer::train(tcfg, device, root, tok_dir, resume)?.0;
            (task.evaluate()?, task.lg_retrieval(root, n)?)
        }
        ArmKind::VitVqgan => {
            let path = arm.tokenizer.as_deref().unwrap_or(&cfg.tokenizer);
            let mut vcfg: VitRunConfig = load_toml(path)?;
            vcfg.train.seed = seed;
            vcfg.data.loader.seed = seed;
            vcfg.eval.val_batches = cfg.tokenizer_val_batches;
            vcfg.lg = arm.lg.clone();
            let mut task = crate::vit_tokenizer::train(vcfg, device, root, tok_dir, resume)?.0;
            (task.evaluate()?, task.lg_retrieval(root, n)?)
        }
        ArmKind::AugvaeSl => {
            let ml_dir = tok_dir.with_file_name("tokenizer-ml");
            let seeded = |mut c: AugVaeRunConfig| {
                (c.train.seed, c.data.loader.seed, c.eval.val_batches) =
                    (seed, seed, cfg.tokenizer_val_batches);
                c
            };
            let ml_cfg = seeded(load_toml(arm.stage1.as_deref().expect("validated"))?);
            stage(&ml_dir, &format!("{label}: AugVAE-ML"), || {
                let resume = ml_dir.join("checkpoints/last.safetensors").exists();
                let rec = crate::augvae::train(ml_cfg, device, root, &ml_dir, resume)?.0.evaluate()?;
                write_json(&ml_dir.join("eval.json"), &rec)
            })?;
            let mut sl_cfg = seeded(load_toml(arm.tokenizer.as_deref().expect("validated"))?);
            sl_cfg.init_from = Some(ml_dir.clone());
            sl_cfg.lg = arm.lg.clone();
            let mut task = crate::augvae::train(sl_cfg, device, root, tok_dir, resume)?.0;
            (task.evaluate()?, task.lg_retrieval(root, n)?)
        }
    })
}

/// Train and evaluate one arm at seed index `s` (tokenizer, then generator), each stage skipped
/// when already finished.
fn run_arm(
    cfg: &StudyConfig,
    (tok_base, gen_base): &(TokenizerRunConfig, GeneratorRunConfig),
    s: usize,
    arm: &Arm,
    out: &Path,
    device: Device,
    root: &Path,
) -> Result<RunResult> {
    let seed = cfg.seed + s as u64;
    let clf_dir = out.join("classifier");
    let label = format!("seed {s} {}", arm.name);
    let (tok_dir, gen_dir) = run_dirs(out, s, &arm.name);
    let mut seconds = BTreeMap::new();
    let t = stage(&tok_dir, &format!("{label}: tokenizer"), || {
        let (rec, retrieval) = arm_tokenizer(cfg, tok_base, arm, seed, &label, &tok_dir, (device, root))?;
        if let Some(r) = retrieval {
            write_json(&tok_dir.join("lg_retrieval.json"), &r)?;
        }
        write_json(&tok_dir.join("eval.json"), &rec)
    })?;
    seconds.insert("tokenizer".into(), t);
    let mut gcfg = gen_base.clone();
    gcfg.tokenizer = tok_dir.clone();
    gcfg.eval.classifier = Some(clf_dir.clone());
    gcfg.train.seed = seed;
    gcfg.data.loader.seed = seed;
    if let Some(n) = arm.generator_steps {
        gcfg.train.max_steps = n;
    }
    let t = stage(&gen_dir, &format!("{label}: generator"), || {
        let resume = gen_dir.join("checkpoints/last.safetensors").exists();
        let (mut task, _) = generator::train(gcfg.clone(), device, root, &gen_dir, resume)?;
        let clf = Classifier::load(&clf_dir, device)?;
        let mut scores = BTreeMap::new();
        for split in &cfg.splits {
            let eval_dir = gen_dir.join("eval");
            let sc = crate::gen_eval::evaluate_split(
                &mut task,
                &clf,
                *split,
                cfg.eval_images,
                root,
                Some(&eval_dir),
            )?;
            scores.insert(split.name().to_string(), sc);
        }
        write_json(&gen_dir.join("eval_generator.json"), &scores)
    })?;
    seconds.insert("generator".into(), t);
    Ok(RunResult {
        seed,
        arm: arm.name.clone(),
        tokenizer: read_json(&tok_dir.join("eval.json"))?,
        generator: read_json(&gen_dir.join("eval_generator.json"))?,
        seconds,
        tokenizer_config: std::fs::read_to_string(tok_dir.join("config.toml")).unwrap_or_default(),
        generator_config: std::fs::read_to_string(gen_dir.join("config.toml")).unwrap_or_default(),
        // Only arms with `lg` write it; one that is there but unreadable is an error, not "none".
        retrieval: {
            let p = tok_dir.join("lg_retrieval.json");
            p.exists().then(|| read_json(&p)).transpose()?
        },
    })
}

/// Run (or resume) the whole study — or only the arm `only_arm` — and write `results.json`
/// (whole study only); the report is written by [`report::write`].
pub fn run(
    cfg: &StudyConfig,
    scale: &str,
    seeds: usize,
    out: &Path,
    device: Device,
    root: &Path,
    only_arm: Option<&str>,
) -> Result<StudyResults> {
    if let Some(a) = only_arm {
        if !cfg.arms.iter().any(|x| x.name == a) {
            return Err(TrainError::Invalid(format!("no arm named `{a}` in the study")));
        }
    }
    if seeds == 0 {
        return Err(TrainError::Invalid("--seeds must be at least 1".into()));
    }
    if cfg.arms.is_empty() {
        return Err(TrainError::Invalid("the study needs at least one arm".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    write_json(
        &out.join("study.json"),
        &serde_json::json!({ "scale": scale, "seeds": seeds, "config": cfg }),
    )?;
    let tok_base: TokenizerRunConfig = load_toml(&cfg.tokenizer)?;
    let gen_base: GeneratorRunConfig = load_toml(&cfg.generator)?;
    let classifier_seconds = prepare(cfg, out, device, root)?;
    let clf_dir = out.join("classifier");
    let bases = (tok_base, gen_base);
    let mut runs = Vec::new();
    for s in 0..seeds {
        for arm in cfg.arms.iter().filter(|a| only_arm.is_none_or(|o| o == a.name)) {
            runs.push(run_arm(cfg, &bases, s, arm, out, device, root)?);
        }
    }
    let total_seconds = classifier_seconds + runs.iter().flat_map(|r| r.seconds.values()).sum::<f64>();
    let results = StudyResults {
        scale: scale.into(),
        seeds,
        config: cfg.clone(),
        machine: Machine::detect(device),
        classifier: read_json(&clf_dir.join("classifier.json"))?,
        classifier_seconds,
        runs,
        total_seconds,
        wall_seconds: None,
    };
    let mut stage_dirs = vec![clf_dir.clone()];
    for s in 0..seeds {
        for arm in &cfg.arms {
            let (t, g) = run_dirs(out, s, &arm.name);
            stage_dirs.extend([t, g]);
        }
    }
    let results = StudyResults { wall_seconds: wall_span(&stage_dirs), ..results };
    if only_arm.is_none() {
        write_json(&out.join("results.json"), &results)?;
    }
    Ok(results)
}
