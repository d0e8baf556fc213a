//! The training loop, shared by every model family through [`Task`].
//!
//! Each step `s` first seeds libtorch's generator with `seed·1000003 + s`, so every random draw
//! inside a step (dropout, dead-code revival, k-means) is a function of the step alone, and the
//! data loader is deterministic in (seed, epoch, index): a checkpoint therefore needs no RNG
//! state, and `--resume` continues with exactly the losses of an uninterrupted run.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::Tensor;
use tessera_data::{Batch, DataLoader};

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::metrics::{MetricsLog, Record};
pub use crate::run_dir::RunDir;
use crate::run_dir::{Health, RunLock};

/// Loop settings (`[train]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopConfig {
    pub max_steps: i64,
    pub checkpoint_every: i64,
    pub image_every: i64,
    pub log_every: i64,
    pub validate_every: i64,
    pub seed: u64,
    /// Stop after this many non-finite steps in a row (each is skipped).
    pub nan_patience: usize,
    /// Batches whose gradients are summed (each loss divided by this) before every optimizer step:
    /// taming's `accumulate_grad_batches`. Steps count optimizer steps; a step reads this many
    /// batches.
    pub accumulate: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            max_steps: 20_000,
            checkpoint_every: 500,
            image_every: 500,
            log_every: 10,
            validate_every: 1000,
            seed: 23,
            nan_patience: 5,
            accumulate: 1,
        }
    }
}

/// A trainable model family.
pub trait Task {
    /// Checkpoint kind, e.g. "vqgan".
    fn kind(&self) -> &'static str;
    /// One optimisation step on `batches` (one batch, or `accumulate` micro-batches whose
    /// gradients are summed). Returns [`TrainError::NonFinite`] *before* touching any parameter
    /// when a loss is NaN/Inf.
    fn train_step(&mut self, batches: &[Batch], step: i64) -> Result<Record>;
    /// Every tensor needed to resume.
    fn state(&self) -> Vec<(String, Tensor)>;
    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()>;
    /// Validation metrics at `step`.
    fn validate(&mut self, step: i64) -> Result<Record>;
    /// A picture of what the model does with `batch`.
    fn sample_grid(&mut self, batch: &Batch) -> Result<image::RgbImage>;
    /// Plots to draw: (file stem, split, keys, log scale).
    fn plots(&self) -> Vec<(&'static str, &'static str, Vec<&'static str>, bool)>;
}

/// Checkpoint metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    pub format: String,
    pub kind: String,
    /// Optimizer steps taken (the next step's index); `step × accumulate` batches were read.
    pub step: i64,
    /// The resolved config as TOML.
    pub config: String,
}

pub const FORMAT: &str = "tessera-checkpoint-1";

/// What a finished run reports.
#[derive(Debug, Default)]
pub struct Summary {
    pub steps: i64,
    pub skipped_non_finite: usize,
    pub seconds: f64,
    pub last_validation: Option<Record>,
}

fn seed_step(seed: u64, step: i64) {
    tch::manual_seed((seed.wrapping_mul(1_000_003).wrapping_add(step as u64) & 0x7fff_ffff_ffff_ffff) as i64);
}

/// Train `task` on `loader` until `cfg.max_steps`, writing into `dir`.
///
/// Checkpoints are trusted as follows: a checkpoint is written only after a finite step, and it
/// becomes `checkpoints/last-good.safetensors` when its interval was healthy ([`Health`]). When
/// `nan_patience` non-finite steps in a row stop the run, nothing is saved and `last.safetensors`
/// is rolled back to the last good checkpoint, so `--resume` continues from it.
pub fn run<T: Task>(
    task: &mut T,
    loader: &DataLoader,
    cfg: &LoopConfig,
    dir: &Path,
    config_toml: &str,
    resume: bool,
) -> Result<Summary> {
    let lock = lock_run(dir)?;
    run_locked(task, loader, cfg, &lock, config_toml, resume)
}

/// Create the run directory `dir` and lock it for this process ([`RunDir::lock`]). Tasks that
/// write into the run while they are built (the generator's caches) take the lock first.
pub fn lock_run(dir: &Path) -> Result<RunLock> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    RunDir(dir.to_path_buf()).lock()
}

/// [`run`] in a run this process has locked.
pub fn run_locked<T: Task>(
    task: &mut T,
    loader: &DataLoader,
    cfg: &LoopConfig,
    lock: &RunLock,
    config_toml: &str,
    resume: bool,
) -> Result<Summary> {
    check_loop(cfg)?;
    let dir = lock.dir();
    let run = RunDir(dir.to_path_buf());
    run.clean_temporaries()?;
    let ckpt_path = run.checkpoint();
    let mut step = resume_step(task, dir, &ckpt_path, resume)?;
    tessera_core::fsutil::write_atomic(&dir.join("config.toml"), config_toml.as_bytes())
        .map_err(|e| TrainError::io(dir, e))?;
    let mut log = MetricsLog::open(dir, step)?;
    let bpe = batches_per_epoch(loader, cfg)?;
    let mut health = Health::default();
    let pb = progress_bar(cfg.max_steps, step);
    let start = Instant::now();
    let mut summary = Summary::default();
    let mut streak = 0usize;
    let mut window = (Instant::now(), step);
    let k = cfg.accumulate as i64;
    // One endless stream of batches, entered where the checkpoint left it.
    let (first_epoch, offset) = ((step * k / bpe) as u64, (step * k % bpe) as usize);
    let mut stream =
        (first_epoch..).flat_map(|e| loader.epoch_from(e, if e == first_epoch { offset } else { 0 }));
    while step < cfg.max_steps {
        let group = (&mut stream).take(cfg.accumulate).collect::<std::result::Result<Vec<Batch>, _>>()?;
        let epoch = (((step + 1) * k - 1) / bpe) as u64;
        let batch = group.last().expect("accumulate >= 1");
        seed_step(cfg.seed, step);
        match task.train_step(&group, step) {
            Ok(mut rec) => {
                streak = 0;
                health.finite_step(&rec);
                if step % cfg.log_every == 0 {
                    annotate(&mut rec, &mut window, step, epoch);
                    pb.set_message(headline(&rec));
                    log.write(step, "train", rec)?;
                }
            }
            Err(TrainError::NonFinite { step: s, what }) => {
                streak += 1;
                summary.skipped_non_finite += 1;
                health.non_finite_step();
                tracing::warn!("step {s} skipped: non-finite {what}");
                if streak >= cfg.nan_patience {
                    pb.abandon();
                    return Err(stop_non_finite(&run, streak, s, what));
                }
            }
            Err(e) => return Err(e),
        }
        step += 1;
        pb.set_position(step as u64);
        if cfg.image_every > 0 && (step % cfg.image_every == 0 || step == cfg.max_steps) {
            save_grid(task, batch, &run, step)?;
        }
        if cfg.validate_every > 0 && (step % cfg.validate_every == 0 || step == cfg.max_steps) {
            summary.last_validation = Some(validate(task, &run, &mut log, &pb, step)?);
        }
        // Never save weights right after a skipped (non-finite) step.
        if streak == 0 && (step % cfg.checkpoint_every == 0 || step == cfg.max_steps) {
            save_checkpoint(task, &ckpt_path, step, config_toml)?;
            if health.close_interval(summary.last_validation.as_ref()) {
                run.promote_last_good()?;
            }
        }
    }
    pb.finish_and_clear();
    summary.steps = step;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// Write the task's state and the run's metadata to `path` (atomically).
fn save_checkpoint<T: Task>(task: &T, path: &Path, step: i64, config_toml: &str) -> Result<()> {
    let meta = Meta { format: FORMAT.into(), kind: task.kind().into(), step, config: config_toml.into() };
    checkpoint::save(path, &task.state(), &meta)
}

/// Add `it_per_s` (since the last logged step) and `epoch` to a logged record.
fn annotate(rec: &mut Record, window: &mut (Instant, i64), step: i64, epoch: u64) {
    let dt = window.0.elapsed().as_secs_f64();
    if step > window.1 && dt > 0.0 {
        rec.insert("it_per_s".into(), (step - window.1) as f64 / dt);
    }
    *window = (Instant::now(), step);
    rec.insert("epoch".into(), epoch as f64);
}

/// The run stops after `count` non-finite steps: nothing is saved, and `last.safetensors` goes
/// back to the last good checkpoint so that `--resume` continues from it.
fn stop_non_finite(run: &RunDir, count: usize, step: i64, what: String) -> TrainError {
    match run.roll_back() {
        Ok(true) => tracing::warn!(
            "rolled {} back to the last good checkpoint {}",
            run.checkpoint().display(),
            run.last_good().display()
        ),
        Ok(false) => {}
        Err(e) => return e,
    }
    TrainError::TooManyNonFinite { count, step, what }
}

/// Refuse loop settings that have no meaning (they used to divide by zero or train nothing).
fn check_loop(cfg: &LoopConfig) -> Result<()> {
    tessera_core::validate::validate_section("train", cfg).map_err(TrainError::Invalid)
}

impl tessera_core::Validate for LoopConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        use tessera_core::validate::MAX_STEPS;
        c.int("max_steps", self.max_steps, 1, MAX_STEPS, "");
        c.int("checkpoint_every", self.checkpoint_every, 1, MAX_STEPS, "steps");
        c.int("log_every", self.log_every, 1, MAX_STEPS, "steps");
        c.int("image_every", self.image_every, 0, MAX_STEPS, "steps; 0 = never");
        c.int("validate_every", self.validate_every, 0, MAX_STEPS, "steps; 0 = only at the end");
        c.int("nan_patience", self.nan_patience, 1, 1_000_000, "non-finite steps before the run stops");
        c.int("accumulate", self.accumulate, 1, 4096, "micro-batches per optimiser step");
    }
}

/// Batches in one epoch of `loader`; refuses a loop that could not take one step.
fn batches_per_epoch(loader: &DataLoader, cfg: &LoopConfig) -> Result<i64> {
    let bpe = loader.batches_per_epoch() as i64;
    if bpe == 0 {
        return Err(TrainError::Invalid("the training set is smaller than one batch".into()));
    }
    if cfg.accumulate == 0 {
        return Err(TrainError::Invalid("train.accumulate must be at least 1".into()));
    }
    Ok(bpe)
}

/// The step to start from: 0 for a new run, the checkpoint's step with `resume`; refuses to train
/// over a checkpoint without `resume`, and a checkpoint of another kind.
fn resume_step<T: Task>(task: &mut T, dir: &Path, ckpt_path: &Path, resume: bool) -> Result<i64> {
    if !ckpt_path.exists() {
        if resume {
            return Err(TrainError::Invalid(format!(
                "--resume: {} has no checkpoint ({}) to resume; leave out --resume to start a new run there",
                dir.display(),
                ckpt_path.display()
            )));
        }
        return Ok(0);
    }
    if !resume {
        return Err(TrainError::Invalid(format!(
            "{} already holds a checkpoint; pass --resume to continue it, or choose another --out",
            dir.display()
        )));
    }
    let ck: checkpoint::Checkpoint<Meta> = checkpoint::load(ckpt_path)?;
    if ck.meta.format != FORMAT || ck.meta.kind != task.kind() {
        return Err(TrainError::Mismatch {
            path: ckpt_path.into(),
            reason: format!(
                "it is a {} {} checkpoint, this is a {} run",
                ck.meta.format,
                ck.meta.kind,
                task.kind()
            ),
        });
    }
    task.load_state(&ck.tensors, ckpt_path)?;
    tracing::info!("resuming {} at step {}", dir.display(), ck.meta.step);
    Ok(ck.meta.step)
}

fn progress_bar(max_steps: i64, step: i64) -> ProgressBar {
    let pb = ProgressBar::new(max_steps as u64).with_position(step as u64);
    pb.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:30}] {per_sec} eta {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

/// The losses shown beside the progress bar.
fn headline(rec: &Record) -> String {
    let parts: Vec<String> = ["loss/total", "loss/rec", "loss/q"]
        .iter()
        .filter_map(|k| rec.get(*k).map(|v| format!("{k}={v:.4}")))
        .collect();
    parts.join(" ")
}

/// `samples/step_<step>.png`: the task's sample grid on `batch`.
fn save_grid<T: Task>(task: &mut T, batch: &Batch, run: &RunDir, step: i64) -> Result<()> {
    let grid = task.sample_grid(batch)?;
    let p = run.samples().join(format!("step_{step:07}.png"));
    std::fs::create_dir_all(run.samples()).map_err(|e| TrainError::io(run.samples(), e))?;
    grid.save(&p).map_err(|e| TrainError::Invalid(format!("{}: {e}", p.display())))
}

/// Validate, log, print and redraw the plots; returns the validation record.
fn validate<T: Task>(
    task: &mut T,
    run: &RunDir,
    log: &mut MetricsLog,
    pb: &ProgressBar,
    step: i64,
) -> Result<Record> {
    let rec = task.validate(step)?;
    let text: Vec<String> = rec.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
    pb.println(format!("step {step} validation: {}", text.join(", ")));
    log.write(step, "val", rec.clone())?;
    for (stem, split, keys, log_y) in task.plots() {
        log.plot(&run.plots().join(format!("{stem}.svg")), stem, split, &keys, log_y)?;
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tessera_data::{FakeData, LoaderConfig};

    /// A task whose `loss/total` at each step is `loss(step)`; NaN is a skipped step.
    struct Scripted {
        loss: fn(i64) -> f64,
        calls: i64,
    }

    impl Scripted {
        /// Loss 1 for two steps, then NaN.
        fn exploding() -> Self {
            Self { loss: |step| if step >= 2 { f64::NAN } else { 1.0 }, calls: 0 }
        }
        /// Loss 1 for three steps, then a blow-up (finite, 1000) for two, then NaN.
        fn blows_up() -> Self {
            let loss = |step| match step {
                0..=2 => 1.0,
                3..=4 => 1000.0,
                _ => f64::NAN,
            };
            Self { loss, calls: 0 }
        }
    }

    impl Task for Scripted {
        fn kind(&self) -> &'static str {
            "mock"
        }
        fn train_step(&mut self, _b: &[Batch], step: i64) -> Result<Record> {
            self.calls += 1;
            let v = (self.loss)(step);
            if v.is_nan() {
                return Err(TrainError::NonFinite { step, what: "loss = NaN".into() });
            }
            Ok(Record::from([("loss/total".to_string(), v)]))
        }
        fn state(&self) -> Vec<(String, Tensor)> {
            vec![("x".into(), Tensor::from(1.0f32))]
        }
        fn load_state(&mut self, _t: &HashMap<String, Tensor>, _p: &Path) -> Result<()> {
            Ok(())
        }
        fn validate(&mut self, _s: i64) -> Result<Record> {
            Ok(Record::new())
        }
        fn sample_grid(&mut self, _b: &Batch) -> Result<image::RgbImage> {
            Ok(image::RgbImage::new(1, 1))
        }
        fn plots(&self) -> Vec<(&'static str, &'static str, Vec<&'static str>, bool)> {
            vec![]
        }
    }

    #[test]
    fn non_finite_steps_are_skipped_then_stop_the_run() {
        let _serial = crate::TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        let ds: Arc<dyn tessera_data::Dataset> = Arc::new(FakeData { len: 64, size: 4, seed: 0 });
        let loader =
            DataLoader::new(ds, LoaderConfig { batch_size: 4, ..LoaderConfig::default() }, tch::Device::Cpu);
        let dir = tempfile::tempdir().unwrap();
        let cfg = LoopConfig {
            max_steps: 100,
            nan_patience: 3,
            image_every: 0,
            validate_every: 0,
            ..LoopConfig::default()
        };
        let mut task = Scripted::exploding();
        let e = run(&mut task, &loader, &cfg, dir.path(), "", false).err().unwrap();
        assert!(matches!(e, TrainError::TooManyNonFinite { count: 3, step: 4, .. }), "{e}");
        assert!(e.to_string().contains("lower the learning rate"));
        assert_eq!(task.calls, 5, "2 good steps, 3 skipped, then stop");
        assert!(
            !dir.path().join("checkpoints/last.safetensors").exists(),
            "nothing saved after non-finite steps"
        );
        assert!(!dir.path().join(".lock").exists(), "the lock is released on error");
    }

    #[test]
    fn a_blow_up_rolls_back_to_the_last_good_checkpoint() {
        let _serial = crate::TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        let ds: Arc<dyn tessera_data::Dataset> = Arc::new(FakeData { len: 64, size: 4, seed: 0 });
        let loader =
            DataLoader::new(ds, LoaderConfig { batch_size: 4, ..LoaderConfig::default() }, tch::Device::Cpu);
        let dir = tempfile::tempdir().unwrap();
        let cfg = LoopConfig {
            max_steps: 100,
            checkpoint_every: 1,
            nan_patience: 2,
            image_every: 0,
            validate_every: 0,
            ..LoopConfig::default()
        };
        std::fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
        std::fs::write(dir.path().join("checkpoints/.ckpt-left-by-a-kill"), b"x").unwrap();
        let e = run(&mut Scripted::blows_up(), &loader, &cfg, dir.path(), "", false).err().unwrap();
        assert!(matches!(e, TrainError::TooManyNonFinite { .. }), "{e}");
        let step_of = |name: &str| {
            let c: checkpoint::Checkpoint<Meta> =
                checkpoint::load(&dir.path().join("checkpoints").join(name)).unwrap();
            c.meta.step
        };
        // Steps 0-2 were healthy (checkpoints 1, 2, 3); 3-4 blew up (checkpoints 4, 5 not good).
        assert_eq!(step_of("last-good.safetensors"), 3);
        assert_eq!(step_of("last.safetensors"), 3, "rolled back");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "temporaries removed: {names:?}");
    }

    #[test]
    fn meaningless_loop_settings_and_resuming_nothing_are_errors() {
        let _serial = crate::TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        let ds: Arc<dyn tessera_data::Dataset> = Arc::new(FakeData { len: 8, size: 4, seed: 0 });
        let loader =
            DataLoader::new(ds, LoaderConfig { batch_size: 4, ..LoaderConfig::default() }, tch::Device::Cpu);
        let dir = tempfile::tempdir().unwrap();
        for (cfg, key) in [
            (LoopConfig { max_steps: 0, ..LoopConfig::default() }, "max_steps"),
            (LoopConfig { log_every: 0, ..LoopConfig::default() }, "log_every"),
            (LoopConfig { checkpoint_every: 0, ..LoopConfig::default() }, "checkpoint_every"),
            (LoopConfig { validate_every: -1, ..LoopConfig::default() }, "validate_every"),
            (LoopConfig { nan_patience: 0, ..LoopConfig::default() }, "nan_patience"),
        ] {
            let e = run(&mut Scripted::blows_up(), &loader, &cfg, dir.path(), "", false)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
        let cfg = LoopConfig { max_steps: 1, ..LoopConfig::default() };
        let e = run(&mut Scripted::blows_up(), &loader, &cfg, &dir.path().join("none"), "", true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no checkpoint") && e.contains("--resume"), "{e}");
    }
}
