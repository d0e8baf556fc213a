//! PyTorch's `ReduceLROnPlateau` (mode `min`, relative threshold), as L-Verse's `train_vae.py`
//! configures it (spec §4.5: factor 0.5, patience 10, cooldown 10, min_lr 1e-6, monitored on
//! `train/total_loss`). A pure state machine over the monitored values; its state is four numbers
//! a checkpoint keeps, so resume continues it exactly.

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// `[optim.plateau]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlateauConfig {
    pub factor: f64,
    pub patience: i64,
    pub cooldown: i64,
    pub min_lr: f64,
    /// Relative improvement that counts as better (PyTorch's default 1e-4).
    pub threshold: f64,
    /// Steps per check (upstream: one epoch). Each check sees the mean total loss of its steps.
    pub every_steps: i64,
}

impl Default for PlateauConfig {
    fn default() -> Self {
        PlateauConfig {
            factor: 0.5,
            patience: 10,
            cooldown: 10,
            min_lr: 1e-6,
            threshold: 1e-4,
            every_steps: 1000,
        }
    }
}

impl tessera_core::Validate for PlateauConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.float_above("factor", self.factor, 0.0, 1.0, "the learning rate is multiplied by it");
        c.rule(self.factor < 1.0, "factor", format_args!("= {}: must be below 1", self.factor));
        c.int("patience", self.patience, 0, 1_000_000, "checks without improvement before a cut");
        c.int("cooldown", self.cooldown, 0, 1_000_000, "checks after a cut when bad ones do not count");
        c.float("min_lr", self.min_lr, 0.0, 10.0, "");
        c.float("threshold", self.threshold, 0.0, 1.0, "");
        c.int("every_steps", self.every_steps, 1, i64::MAX, "steps between checks");
    }
}

/// The scheduler's state.
#[derive(Clone, Debug, PartialEq)]
pub struct Plateau {
    pub lr: f64,
    best: f64,
    num_bad: i64,
    cooldown_counter: i64,
}

impl Plateau {
    pub fn new(lr: f64) -> Self {
        Plateau { lr, best: f64::INFINITY, num_bad: 0, cooldown_counter: 0 }
    }

    /// One `scheduler.step(metric)`; returns whether the learning rate was cut.
    pub fn observe(&mut self, metric: f64, c: &PlateauConfig) -> bool {
        if metric < self.best * (1.0 - c.threshold) {
            self.best = metric;
            self.num_bad = 0;
        } else {
            self.num_bad += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad = 0;
        }
        if self.num_bad > c.patience {
            self.num_bad = 0;
            self.cooldown_counter = c.cooldown;
            let new = (self.lr * c.factor).max(c.min_lr);
            if self.lr - new > 1e-8 {
                self.lr = new;
                return true;
            }
        }
        false
    }

    /// `[lr, best, num_bad, cooldown_counter]` as a float64 tensor, for checkpoints.
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_slice(&[self.lr, self.best, self.num_bad as f64, self.cooldown_counter as f64])
    }

    pub fn from_tensor(t: &Tensor) -> Option<Self> {
        let v: Vec<f64> = Vec::try_from(&t.to_kind(tch::Kind::Double).flatten(0, -1)).ok()?;
        match v.as_slice() {
            [lr, best, bad, cool] => {
                Some(Plateau { lr: *lr, best: *best, num_bad: *bad as i64, cooldown_counter: *cool as i64 })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The learning rates PyTorch 2.11's (printed by the venv's torch) `ReduceLROnPlateau(opt, 'min', factor=0.5, patience=2,
    /// cooldown=1, min_lr=0.1)` leaves after each `step` of this sequence (lr 1.0 at the start):
    /// improvements reset the count, the third bad check in a row cuts, the cooldown check after a
    /// cut does not count, and the floor holds.
    #[test]
    fn follows_torchs_schedule() {
        let c = PlateauConfig { factor: 0.5, patience: 2, cooldown: 1, min_lr: 0.1, ..Default::default() };
        let metrics =
            [5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0];
        let want = [
            1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.125, 0.125,
            0.125,
        ];
        let mut p = Plateau::new(1.0);
        let got: Vec<f64> = metrics
            .iter()
            .map(|&m| {
                p.observe(m, &c);
                p.lr
            })
            .collect();
        assert_eq!(got, want);
        let mut p = Plateau::new(0.15);
        for _ in 0..10 {
            p.observe(1.0, &c);
        }
        assert_eq!(p.lr, 0.1, "never below min_lr");
    }

    #[test]
    fn state_round_trips_through_a_tensor() {
        let mut p = Plateau::new(1e-3);
        p.observe(2.0, &PlateauConfig::default());
        p.observe(3.0, &PlateauConfig::default());
        assert_eq!(Plateau::from_tensor(&p.to_tensor()), Some(p));
        assert_eq!(Plateau::from_tensor(&Tensor::from_slice(&[1.0f64, 2.0])), None);
    }
}
