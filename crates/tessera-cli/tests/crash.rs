//! `kill -9` at any moment, then `--resume`, until the run ends: the final checkpoint and the
//! logged losses equal an uninterrupted run's bit for bit, for the tokenizer and the generator.
//! The kills include kills inside a checkpoint write (`checkpoints/.ckpt*` left behind) and kills
//! that leave the run's `.lock`; a resumed process must clean the first and take over the second.
//!
//! The real binary is killed (SIGKILL through `Child::kill`) at points drawn from a seeded
//! sequence: half at a random time after the start, half a fraction of a millisecond after a
//! checkpoint write began (so that a kill inside a write is not left to luck). Which instructions a
//! kill interrupts still depends on the machine's timing; what is asserted does not.
//!
//! Two more tests aim at what random kills reach too rarely: a kill inside `fsutil::write_atomic`
//! (`RUN/.tessera-tmp*`), and a stale lock whose pid is alive again.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tch::Tensor;

/// Attempts (kills and restarts) before the crash run is left to finish on its own.
const MAX_ATTEMPTS: usize = 40;
const SIGKILL: i32 = 9;

fn data_root() -> PathBuf {
    std::env::var_os("TESSERA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data"))
}

/// `train <args> -o <out>` on one CPU thread, stderr into `log`.
fn spawn(args: &[String], out: &Path, resume: bool, log: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.arg("--data-dir").arg(data_root()).args(["--device", "cpu", "--threads", "1", "train"]);
    cmd.args(args).arg("-o").arg(out);
    if resume {
        cmd.arg("--resume");
    }
    cmd.env_remove("LD_LIBRARY_PATH")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("run tessera")
}

/// Train to the end without interruption; returns how long it took.
fn train(args: &[String], out: &Path, resume: bool, log: &Path) -> Duration {
    let t0 = Instant::now();
    let status = spawn(args, out, resume, log).wait().unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(log).unwrap_or_default());
    t0.elapsed()
}

/// `train KIND -c configs/PRESET` with a checkpoint after every step, every step logged, no
/// images or validation, and `sets` (`--set` overrides).
fn run_args(kind: &str, preset: &str, sets: &[String]) -> Vec<String> {
    let config = format!("{}/../../configs/{preset}", env!("CARGO_MANIFEST_DIR"));
    let mut a = vec![kind.to_string(), "-c".into(), config];
    let every_step =
        ["train.checkpoint_every=1", "train.image_every=0", "train.validate_every=0", "train.log_every=1"];
    for s in every_step.iter().map(|s| s.to_string()).chain(sets.iter().cloned()) {
        a.extend(["--set".into(), s]);
    }
    a
}

/// The tiny TE-VQGAN preset in batches of 4: steps are short, so writing the 44 MB checkpoints
/// takes a good share (about a fifth) of the run.
fn tokenizer_args(steps: i64) -> Vec<String> {
    let small = ["data.loader.batch_size=4", "eval.val_batches=1", "eval.trans_eq=false"];
    let sets: Vec<String> = small.iter().map(|s| s.to_string()).collect();
    run_args("tokenizer", "mnist64-te-tiny.toml", &[vec![format!("train.max_steps={steps}")], sets].concat())
}

/// The quick BiART preset, shrunk: 64 training images in batches of 2, BPE on 200 images'
/// captions, tiny evaluation sets, no classifier.
fn generator_args(tokenizer: &Path, steps: i64) -> Vec<String> {
    let small = [
        "data.loader.batch_size=2",
        "codes.train_images=64",
        "text.corpus_images=200",
        "eval.loss_images=8",
        "eval.i2t_images=4",
        "eval.t2i_images=0",
        "eval.images=4",
    ];
    let mut sets = vec![format!("tokenizer={:?}", tokenizer.display().to_string())];
    sets.push(format!("train.max_steps={steps}"));
    sets.extend(small.iter().map(|s| s.to_string()));
    run_args("generator", "mnist64-biart-quick.toml", &sets)
}

/// splitmix64: the seeded sequence of kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Names in `dir` starting with one of `prefixes`.
fn named(dir: &Path, prefixes: &[&str]) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeSet::new() };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
        .collect()
}

/// What an interrupted checkpoint write leaves (checkpoint.rs, run_dir.rs `link_over`).
fn checkpoint_temps(run: &Path) -> BTreeSet<String> {
    named(&run.join("checkpoints"), &[".ckpt", ".last-good"])
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Wait for this attempt's kill point, then SIGKILL. Half the points (seeded) are a random time
/// after the start, up to half an uninterrupted run's length (startup, steps and writes alike); the
/// others come under a millisecond after this attempt began its k-th checkpoint write (k in 1..=3).
/// Returns without killing when the process exits first.
fn kill_at_random_point(
    child: &mut Child,
    run: &Path,
    rng: &mut Rng,
    full: Duration,
    stale: &BTreeSet<String>,
) {
    let start = Instant::now();
    let aimed = rng.below(2) == 0;
    let at = full.mul_f64(0.5 * rng.unit());
    let writes = 1 + rng.below(3) as usize;
    let settle = Duration::from_micros(rng.below(1000));
    let mut begun = BTreeSet::new();
    while child.try_wait().unwrap().is_none() {
        if aimed {
            begun.extend(
                named(&run.join("checkpoints"), &[".ckpt"]).into_iter().filter(|n| !stale.contains(n)),
            );
            if begun.len() >= writes {
                std::thread::sleep(settle);
                let _ = child.kill();
                return;
            }
        } else if start.elapsed() >= at {
            let _ = child.kill();
            return;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// What the kills did.
#[derive(Debug, Default)]
struct Kills {
    attempts: usize,
    kills: usize,
    /// Kills after which a checkpoint temporary of this attempt was left: inside a write.
    in_write: usize,
    /// Kills after which `RUN/.lock` was left.
    stale_locks: usize,
    /// Restarts without `--resume` (killed before the first checkpoint existed).
    fresh_restarts: usize,
    /// The step each `--resume` continued from.
    resumed_at: Vec<i64>,
    /// `RUN/.tessera-tmp*` files (`fsutil::write_atomic` of config.toml, metrics.jsonl, tokenizer.json)
    /// that a kill left; reported here, asserted on by
    /// `temporaries_of_killed_atomic_writes_are_removed_on_resume`.
    stray_tmp: BTreeSet<String>,
}

/// The step a resumed attempt continued from, from its log ("resuming RUN at step N").
fn resumed_at(log: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(log).ok()?;
    let rest = &text[text.find("resuming ")?..];
    let rest = &rest[rest.find(" at step ")? + 9..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Train `args` into `run`, killing it and resuming it until it finishes (see the module docs).
/// Every start that was not killed must succeed: a stale lock or a missed temporary that blocked
/// a resume fails here, with that attempt's stderr.
fn kill_and_resume(args: &[String], run: &Path, logs: &Path, full: Duration, seed: u64) -> Kills {
    let (mut rng, mut k) = (Rng(seed), Kills::default());
    let ck = run.join("checkpoints/last.safetensors");
    loop {
        // Without a checkpoint yet, --resume rightly refuses ("no checkpoint"): start afresh.
        let resume = ck.is_file();
        let (stale, written) = (checkpoint_temps(run), modified(&ck));
        let log = logs.join(format!("attempt-{:02}.log", k.attempts));
        let mut child = spawn(args, run, resume, &log);
        k.attempts += 1;
        k.fresh_restarts += usize::from(!resume && k.attempts > 1);
        if k.attempts <= MAX_ATTEMPTS {
            kill_at_random_point(&mut child, run, &mut rng, full, &stale);
        }
        let status = child.wait().unwrap();
        k.resumed_at.extend(resumed_at(&log));
        if status.signal() != Some(SIGKILL) {
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(status.success(), "attempt {} (resume: {resume}) failed after {k:?}:\n{err}", k.attempts);
            break;
        }
        k.kills += 1;
        let left = checkpoint_temps(run);
        let new_write = left.difference(&stale).next().is_some();
        k.in_write += usize::from(new_write);
        k.stale_locks += usize::from(run.join(".lock").exists());
        k.stray_tmp.extend(named(run, &[".tessera-tmp"]));
        // An attempt that began or finished a write had taken the lock and cleaned up before.
        if new_write || modified(&ck) != written {
            let kept: Vec<_> = left.intersection(&stale).collect();
            assert!(
                kept.is_empty(),
                "attempt {} kept the temporaries {kept:?} of a killed write",
                k.attempts
            );
        }
    }
    k
}

/// Every tensor of a checkpoint, by name, as (dtype, shape, bytes).
fn checkpoint_bits(run: &Path) -> Vec<(String, String, Vec<i64>, Vec<u8>)> {
    let mut v: Vec<_> = Tensor::read_safetensors(run.join("checkpoints/last.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            let t = t.contiguous();
            let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
            t.copy_data_u8(&mut bytes, t.numel());
            (name, format!("{:?}", t.kind()), t.size(), bytes)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The two runs' last checkpoints, every tensor bit for bit. Nothing is excluded: `__meta__` holds
/// only format, kind, step and the resolved config (no clock time; the generator stores its
/// tokenizer relative to the run, and both runs sit side by side), and `__sha256__` hashes the
/// rest. `__meta__` is decoded for the step and a readable message.
fn assert_same_checkpoint(reference: &Path, crashed: &Path, steps: i64) {
    let (a, b) = (checkpoint_bits(reference), checkpoint_bits(crashed));
    let names = |v: &[(String, String, Vec<i64>, Vec<u8>)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "the checkpoints hold different tensors");
    let meta = |v: &[(String, String, Vec<i64>, Vec<u8>)]| {
        let m = &v.iter().find(|x| x.0 == "__meta__").expect("__meta__").3;
        serde_json::from_slice::<serde_json::Value>(m).unwrap()
    };
    let (ma, mb) = (meta(&a), meta(&b));
    assert!(
        ma["step"] == steps && mb["step"] == steps,
        "steps {} and {}, not {steps}",
        ma["step"],
        mb["step"]
    );
    let differ: Vec<&str> = a.iter().zip(&b).filter(|(x, y)| x != y).map(|(x, _)| x.0.as_str()).collect();
    assert!(
        differ.is_empty(),
        "{} of {} tensors differ after kill -9 and --resume: {:?}",
        differ.len(),
        a.len(),
        &differ[..differ.len().min(10)]
    );
}

/// Training records of `metrics.jsonl` as JSON text, without what legitimately differs after a
/// resume: `it_per_s` (clock time) and `usage_window` (the tokenizer's sliding code-usage window,
/// in-memory statistics that restart empty; as crates/tessera-train/tests/common).
fn train_records(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["split"] == "train")
        .map(|mut v| {
            let o = v.as_object_mut().unwrap();
            o.remove("it_per_s");
            o.remove("usage_window");
            v.to_string()
        })
        .collect()
}

/// Train `args` for `steps` straight into ROOT/ref and with kills into ROOT/crash, then compare.
fn killed_run_matches_uninterrupted(root: &Path, args: &[String], steps: i64, seed: u64) -> Kills {
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let (reference, crashed) = (root.join("ref"), root.join("crash"));
    let full = train(args, &reference, false, &logs.join("reference.log"));
    let k = kill_and_resume(args, &crashed, &logs, full, seed);
    eprintln!("{}: uninterrupted {full:.1?}; {k:?}", args[0]);
    assert!(k.kills >= 3 && k.in_write >= 1, "too few kills, or none inside a write: {k:?}");
    assert!(k.stale_locks >= 1, "no kill left a stale lock to take over: {k:?}");
    assert!(checkpoint_temps(&crashed).is_empty(), "{:?} left", checkpoint_temps(&crashed));
    assert!(!crashed.join(".lock").exists(), "the finished run left its lock");
    assert_same_checkpoint(&reference, &crashed, steps);
    // A resumed run drops the records at and after its checkpoint's step and logs them again,
    // so the finished log holds each step once, as an uninterrupted run's does.
    let (ra, rb) = (train_records(&reference), train_records(&crashed));
    assert_eq!(ra.len(), steps as usize);
    assert_eq!(ra, rb, "logged training losses differ after kill -9 and --resume");
    k
}

#[test]
fn tokenizer_resumes_bit_exactly_after_kill_9() {
    let root = tempfile::tempdir().unwrap();
    killed_run_matches_uninterrupted(root.path(), &tokenizer_args(20), 20, 0x7e55_e7a0);
}

#[test]
fn generator_resumes_bit_exactly_after_kill_9() {
    let root = tempfile::tempdir().unwrap();
    // A one-step tokenizer: its 8×8 codes are all the generator needs.
    let tok = root.path().join("tok");
    train(&tokenizer_args(1), &tok, false, &root.path().join("tok.log"));
    killed_run_matches_uninterrupted(root.path(), &generator_args(&tok, 20), 20, 0xb1a7_0001);
}

/// Start a new run and kill it once its first checkpoint exists, so that later starts resume.
fn kill_after_first_checkpoint(args: &[String], run: &Path, log: &Path) {
    let mut child = spawn(args, run, false, log);
    while !run.join("checkpoints/last.safetensors").exists() && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_micros(300));
    }
    let _ = child.kill();
    child.wait().unwrap();
    assert!(run.join(".lock").exists(), "killed before it took its lock");
}

/// A kill inside `fsutil::write_atomic` (config.toml and metrics.jsonl at every start) leaves a
/// `RUN/.tessera-tmpXXXXXX`; resuming the run must remove it, as it removes checkpoint temporaries.
#[test]
fn temporaries_of_killed_atomic_writes_are_removed_on_resume() {
    let root = tempfile::tempdir().unwrap();
    let (run, args, log) = (root.path().join("run"), tokenizer_args(3), root.path().join("attempt.log"));
    let poll = || std::thread::sleep(Duration::from_micros(100));
    kill_after_first_checkpoint(&args, &run, &log);
    let mut left = BTreeSet::new();
    for _ in 0..MAX_ATTEMPTS {
        let mut child = spawn(&args, &run, true, &log);
        // Killed as soon as an atomic write has created its temporary file.
        while child.try_wait().unwrap().is_none() {
            if !named(&run, &[".tessera-tmp"]).is_empty() {
                let _ = child.kill();
            }
            poll();
        }
        left = named(&run, &[".tessera-tmp"]);
        if !left.is_empty() {
            break;
        }
    }
    assert!(!left.is_empty(), "no kill landed inside an atomic write in {MAX_ATTEMPTS} attempts");
    train(&args, &run, true, &log);
    let kept = named(&run, &[".tessera-tmp"]);
    assert!(
        kept.is_empty(),
        "{kept:?} (left by a kill during an atomic write) still in {} after --resume",
        run.display()
    );
}

/// A killed process's lock is stale even when the pid it names runs again: restarted in a
/// container (a new pid namespace, the run is process 1 every time), it is the resuming process's
/// own pid. Simulated by writing the resumer's pid into the lock before it gets there (it takes
/// the lock after loading libtorch, the data and the model).
#[test]
fn a_stale_lock_naming_the_resuming_process_does_not_block_it() {
    let root = tempfile::tempdir().unwrap();
    let (run, args, log) = (root.path().join("run"), tokenizer_args(3), root.path().join("attempt.log"));
    kill_after_first_checkpoint(&args, &run, &log);
    let mut child = spawn(&args, &run, true, &log);
    std::fs::write(run.join(".lock"), child.id().to_string()).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(&log).unwrap());
}
