//! Learning-rate schedules: an optional linear warm-up, then constant (taming: no scheduler,
//! spec §1.5) or cosine decay to `min_ratio·lr`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    #[default]
    Constant,
    Cosine,
}

/// Learning rate at `step` (0-based) of `total`.
pub fn lr_at(base: f64, step: i64, total: i64, warmup: i64, decay: Decay, min_ratio: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    match decay {
        Decay::Constant => base,
        Decay::Cosine => {
            let span = (total - warmup).max(1) as f64;
            let t = ((step - warmup) as f64 / span).clamp(0.0, 1.0);
            let min = base * min_ratio;
            min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        assert_eq!(lr_at(1.0, 0, 100, 10, Decay::Cosine, 0.0), 0.1);
        assert_eq!(lr_at(1.0, 9, 100, 10, Decay::Cosine, 0.0), 1.0);
        assert!((lr_at(1.0, 10, 100, 10, Decay::Cosine, 0.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(1.0, 55, 100, 10, Decay::Cosine, 0.0) - 0.5).abs() < 1e-12);
        assert!((lr_at(1.0, 100, 100, 10, Decay::Cosine, 0.1) - 0.1).abs() < 1e-12);
        assert_eq!(lr_at(2.0, 500, 100, 0, Decay::Constant, 0.0), 2.0);
    }
}
