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

    /// Remove the temporary files of checkpoint writes that a killed process left behind
    /// (`checkpoints/.ckpt*`, `checkpoints/.last-good*`). Returns how many were removed.
    pub fn clean_temporaries(&self) -> Result<usize> {
        let dir = self.0.join("checkpoints");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(".ckpt") || name.starts_with(".last-good") {
                std::fs::remove_file(e.path()).map_err(|err| TrainError::io(e.path(), err))?;
                removed += 1;
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

    /// Lock the run for this process (`RUN/.lock` holds its pid); refused while another live
    /// process holds it. A lock left by a process that no longer runs is taken over.
    pub fn lock(&self) -> Result<RunLock> {
        let path = self.0.join(".lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id()).map_err(|e| TrainError::io(&path, e))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let alive = holder
                        .trim()
                        .parse::<u32>()
                        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                    if alive {
                        return Err(TrainError::Invalid(format!(
                            "{} is in use: process {} is training in it (lock {}); wait for it or stop it, or train into another --out",
                            self.0.display(),
                            holder.trim(),
                            path.display()
                        )));
                    }
                    std::fs::remove_file(&path).map_err(|e| TrainError::io(&path, e))?;
                }
                Err(e) => return Err(TrainError::io(&path, e)),
            }
        }
        Err(TrainError::Invalid(format!("could not take the lock {}", path.display())))
    }
}

/// Held while a process trains in a run; removes `RUN/.lock` when dropped.
pub struct RunLock {
    path: PathBuf,
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
        std::fs::write(d.path().join(".lock"), "999999999").unwrap();
        let _again = run.lock().expect("a lock of a dead process is stale");
    }

    #[test]
    fn temporaries_are_removed_and_last_good_rolls_back() {
        let d = tempfile::tempdir().unwrap();
        let run = RunDir(d.path().to_path_buf());
        std::fs::create_dir_all(d.path().join("checkpoints")).unwrap();
        std::fs::write(d.path().join("checkpoints/.ckpt12345"), b"half").unwrap();
        std::fs::write(run.checkpoint(), b"good").unwrap();
        assert_eq!(run.clean_temporaries().unwrap(), 1);
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
