//! A run directory and what keeps it trustworthy: its layout, a lock while a process trains in
//! it, the removal of temporary files a killed process left, and the last checkpoint known to be
//! good (`checkpoints/last-good.safetensors`), to which a run that blew up is rolled back.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};
use crate::metrics::Record;

/// Where a run keeps things.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn checkpoint(&self) -> PathBuf {
        self.0.join("checkpoints/last.safetensors")
    }
    /// The newest checkpoint whose interval had only finite losses and no blow-up.
    pub fn last_good(&self) -> PathBuf {
        self.0.join("checkpoints/last-good.safetensors")
    }
    pub fn samples(&self) -> PathBuf {
        self.0.join("samples")
    }
    pub fn plots(&self) -> PathBuf {
        self.0.join("plots")
    }

    /// Remove the temporary files that a killed process left behind, in the run and its direct
    /// subfolders: checkpoint writes (`.ckpt*`, `.last-good*`), atomic writes of configs, metrics,
    /// plots and tokenizers (`.tessera-tmp*`), and cache writes (`.*.tmp`). Returns how many.
    pub fn clean_temporaries(&self) -> Result<usize> {
        let is_temporary = |name: &str| {
            [".ckpt", ".last-good", tessera_core::fsutil::TEMP_PREFIX].iter().any(|p| name.starts_with(p))
                || (name.starts_with('.') && name.ends_with(".tmp"))
        };
        let mut dirs = vec![self.0.clone()];
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        let mut removed = 0;
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if is_temporary(&name) && e.path().is_file() {
                    std::fs::remove_file(e.path()).map_err(|err| TrainError::io(e.path(), err))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Point `to` at the file `from` holds now (a hard link, swapped in atomically).
    fn link_over(from: &Path, to: &Path) -> Result<()> {
        let tmp = to.with_file_name(format!(".last-good.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::fs::hard_link(from, &tmp)
            .or_else(|_| std::fs::copy(from, &tmp).map(|_| ()))
            .map_err(|e| TrainError::io(&tmp, e))?;
        std::fs::rename(&tmp, to).map_err(|e| TrainError::io(to, e))?;
        // rename() between two links of one file succeeds and leaves both names.
        let _ = std::fs::remove_file(&tmp);
        Ok(())
    }

    /// Record the checkpoint just written as good.
    pub fn promote_last_good(&self) -> Result<()> {
        Self::link_over(&self.checkpoint(), &self.last_good())
    }

    /// Put the last good checkpoint back as `last.safetensors`; false when there is none.
    pub fn roll_back(&self) -> Result<bool> {
        if !self.last_good().is_file() {
            return Ok(false);
        }
        Self::link_over(&self.last_good(), &self.checkpoint())?;
        Ok(true)
    }

    /// Lock the run for this process: an OS file lock (`flock`) on `RUN/.lock`, which also holds
    /// the pid for the message. Refused while another process holds it. The kernel releases the
    /// lock when its process dies, however it dies, so a `kill -9` never leaves a lock that blocks
    /// a resume (a pid check cannot promise that: pids are reused, and in a container the run is
    /// process 1 every time).
    pub fn lock(&self) -> Result<RunLock> {
        let path = self.0.join(".lock");
        let io = |e| TrainError::io(&path, e);
        for _ in 0..8 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {
                    // The previous holder removes the file before it unlocks: if it did so after we
                    // opened it, we hold a lock on a name nobody else sees, so open the new one.
                    if !same_file(&file, &path) {
                        continue;
                    }
                    file.set_len(0).map_err(io)?;
                    write!(file, "{}", std::process::id()).map_err(io)?;
                    return Ok(RunLock { path, _file: file });
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    return Err(TrainError::Invalid(format!(
                        "{} is in use: process {} is training in it (lock {}); wait for it or stop it, or train into another --out",
                        self.0.display(),
                        holder.trim(),
                        path.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        Err(TrainError::Invalid(format!("could not take the lock {}", path.display())))
    }
}

/// Whether the open `file` is the file `path` names now (same device and inode).
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Held while a process trains in a run. Dropping it removes `RUN/.lock`, then unlocks.
pub struct RunLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl RunLock {
    /// The locked run directory.
    pub fn dir(&self) -> &Path {
        self.path.parent().expect("RUN/.lock has a parent")
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the steps since the last checkpoint make it trustworthy: every loss finite, the mean
/// `loss/total` no more than `BLOW_UP`× |best| above the lowest interval mean seen so far (a learning-rate blow-up
/// makes weights useless well before they turn NaN), and the last validation finite.
#[derive(Debug)]
pub struct Health {
    clean: bool,
    sum: f64,
    count: usize,
    best: f64,
}

/// An interval whose mean loss exceeds this multiple of the best interval's is not good.
pub const BLOW_UP: f64 = 10.0;

impl Default for Health {
    fn default() -> Self {
        Self { clean: true, sum: 0.0, count: 0, best: f64::INFINITY }
    }
}

impl Health {
    pub fn finite_step(&mut self, rec: &Record) {
        if let Some(v) = rec.get("loss/total") {
            self.sum += v;
            self.count += 1;
        }
    }
    pub fn non_finite_step(&mut self) {
        self.clean = false;
    }
    /// Judge the interval that a checkpoint closes, and start the next one.
    pub fn close_interval(&mut self, validation: Option<&Record>) -> bool {
        let mean = if self.count > 0 { self.sum / self.count as f64 } else { self.best };
        // Rising by more than BLOW_UP times the best interval's magnitude (at least 1e-3, so that
        // losses near or below zero are judged too) is a blow-up.
        let steady = !self.best.is_finite() || mean - self.best <= BLOW_UP * self.best.abs().max(1e-3);
        let validation_ok = validation.is_none_or(|r| r.values().all(|v| v.is_finite()));
        // An interval that logged no loss has no evidence against it.
        let good = self.clean && (self.count == 0 || mean.is_finite()) && steady && validation_ok;
        if good {
            self.best = self.best.min(mean);
        }
        *self = Self { best: self.best, ..Self::default() };
        good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: f64) -> Record {
        Record::from([("loss/total".to_string(), v)])
    }

    #[test]
    fn intervals_with_a_non_finite_step_a_blow_up_or_a_bad_validation_are_not_good() {
        let mut h = Health::default();
        assert!(h.close_interval(None), "a task that logs no loss/total is judged by its other checks");
        h.non_finite_step();
        assert!(!h.close_interval(None), "not when a step was skipped");
        h.finite_step(&rec(2.0));
        assert!(h.close_interval(None));
        h.finite_step(&rec(1.0));
        h.non_finite_step();
        assert!(!h.close_interval(None), "a skipped step");
        h.finite_step(&rec(50.0));
        assert!(!h.close_interval(None), "25× the best interval");
        h.finite_step(&rec(1.5));
        assert!(!h.close_interval(Some(&Record::from([("psnr".to_string(), f64::NAN)]))));
        h.finite_step(&rec(1.5));
        assert!(h.close_interval(Some(&Record::from([("psnr".to_string(), 20.0)]))));
    }

    #[test]
    fn lock_refuses_a_live_holder_and_takes_over_a_stale_one() {
        let d = tempfile::tempdir().unwrap();
        let run = RunDir(d.path().to_path_buf());
        let held = run.lock().unwrap();
        let e = run.lock().err().unwrap().to_string();
        assert!(e.contains("is in use") && e.contains(&std::process::id().to_string()), "{e}");
        drop(held);
        assert!(!d.path().join(".lock").exists(), "released on drop");
        // A lock file nobody holds (its process died) is taken over, whatever pid it names, even
        // this process's own (pids are reused).
        for pid in ["999999999".to_string(), std::process::id().to_string()] {
            std::fs::write(d.path().join(".lock"), &pid).unwrap();
            let again = run.lock().expect("a lock file nobody holds is stale");
            assert_eq!(
                std::fs::read_to_string(d.path().join(".lock")).unwrap(),
                std::process::id().to_string()
            );
            drop(again);
        }
    }

    #[test]
    fn temporaries_are_removed_and_last_good_rolls_back() {
        let d = tempfile::tempdir().unwrap();
        let run = RunDir(d.path().to_path_buf());
        std::fs::create_dir_all(d.path().join("checkpoints")).unwrap();
        std::fs::write(d.path().join("checkpoints/.ckpt12345"), b"half").unwrap();
        std::fs::write(d.path().join(".tessera-tmpAbC123"), b"half a config").unwrap();
        std::fs::write(d.path().join(".codes_train.safetensors.tmp"), b"half a cache").unwrap();
        std::fs::write(d.path().join("metrics.jsonl"), b"kept").unwrap();
        std::fs::write(run.checkpoint(), b"good").unwrap();
        assert_eq!(run.clean_temporaries().unwrap(), 3);
        assert!(d.path().join("metrics.jsonl").exists() && run.checkpoint().exists());
        assert!(!run.roll_back().unwrap(), "nothing to roll back to yet");
        run.promote_last_good().unwrap();
        // The next save replaces last.safetensors by rename, as checkpoint::save does.
        std::fs::write(d.path().join("checkpoints/new"), b"ruined").unwrap();
        std::fs::rename(d.path().join("checkpoints/new"), run.checkpoint()).unwrap();
        assert_eq!(std::fs::read(run.last_good()).unwrap(), b"good");
        assert!(run.roll_back().unwrap());
        assert_eq!(std::fs::read(run.checkpoint()).unwrap(), b"good");
    }
}
