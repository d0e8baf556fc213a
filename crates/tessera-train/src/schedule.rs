//! Learning-rate schedules: an optional linear warm-up, then constant (taming: no scheduler,
//! spec §1.5), cosine decay to `min_ratio·lr`, or Bi-DALL-E's cosine with hard restarts
//! (spec §3.4).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    #[default]
    Constant,
    Cosine,
    /// transformers' `get_cosine_with_hard_restarts_schedule_with_warmup`, which Bi-DALL-E's
    /// `train_dalle.py` uses with 6 cycles (see [`lr_at_cycles`]).
    CosineHardRestarts,
}

/// Learning rate at `step` (0-based) of `total`, with one cosine cycle (see [`lr_at_cycles`]).
pub fn lr_at(base: f64, step: i64, total: i64, warmup: i64, decay: Decay, min_ratio: f64) -> f64 {
    lr_at_cycles(base, step, total, warmup, decay, min_ratio, 1)
}

/// Learning rate at `step` (0-based) of `total`: the rate of the optimizer step taken at `step`.
///
/// - `Constant` and `Cosine` warm up as `base·(step+1)/warmup` and ignore `cycles`; `Cosine` then
///   decays once, `min + (base−min)·½(1 + cos(π·t))` with `t = (step−warmup)/(total−warmup)`
///   clamped to `[0, 1]` and `min = base·min_ratio`.
/// - `CosineHardRestarts` is transformers' `get_cosine_with_hard_restarts_schedule_with_warmup`
///   (src/transformers/optimization.py) stepped once per optimizer step, as in Bi-DALL-E's
///   `train_dalle.py` (wcshin-git/Bidirectional_DALLE@2f16503, `num_cycles = 6`, warm-up one
///   epoch, total `epochs·steps`; spec §3.4): with `p = (step−warmup)/max(1, total−warmup)`,
///   `base·step/max(1, warmup)` while `step < warmup` (so step 0 runs at rate 0), then
///   `min + (base−min)·½(1 + cos(π·((cycles·p) mod 1)))` while `p < 1`, and `min` from `p ≥ 1`
///   on. `min_ratio = 0` gives transformers' schedule exactly; `cycles = 0` counts as 1.
pub fn lr_at_cycles(
    base: f64,
    step: i64,
    total: i64,
    warmup: i64,
    decay: Decay,
    min_ratio: f64,
    cycles: u32,
) -> f64 {
    if decay == Decay::CosineHardRestarts {
        return hard_restarts(base, step, total, warmup, min_ratio, cycles.max(1));
    }
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
        Decay::CosineHardRestarts => unreachable!("handled above"),
    }
}

fn hard_restarts(base: f64, step: i64, total: i64, warmup: i64, min_ratio: f64, cycles: u32) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let min = base * min_ratio;
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    if progress >= 1.0 {
        return min;
    }
    let phase = (cycles as f64 * progress) % 1.0;
    min + (base - min) * (0.5 * (1.0 + (std::f64::consts::PI * phase).cos())).max(0.0)
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

    #[test]
    fn lr_at_is_one_cycle_and_cycles_leave_other_decays_alone() {
        for step in [0, 5, 10, 40, 99, 120] {
            for decay in [Decay::Constant, Decay::Cosine, Decay::CosineHardRestarts] {
                let one = lr_at(1e-3, step, 100, 10, decay, 0.1);
                assert_eq!(one, lr_at_cycles(1e-3, step, 100, 10, decay, 0.1, 1), "{decay:?} {step}");
                if decay != Decay::CosineHardRestarts {
                    assert_eq!(one, lr_at_cycles(1e-3, step, 100, 10, decay, 0.1, 6), "{decay:?} {step}");
                }
            }
        }
    }

    /// `(step, lr)` pairs printed by PyTorch 2.11: `torch.optim.lr_scheduler.LambdaLR` over an
    /// `Adam(lr = base)` with the lambda of transformers' `get_cosine_with_hard_restarts_schedule_
    /// with_warmup` (src/transformers/optimization.py,
    /// `_get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda`: `step/max(1, warmup)`
    /// during warm-up, then 0 once `progress ≥ 1`, else
    /// `max(0, ½(1 + cos(π·((cycles·progress) % 1))))`), reading `param_groups[0]["lr"]` before
    /// each `opt.step(); sched.step()`, as `train_dalle.py` does once per batch.
    #[test]
    fn hard_restarts_match_transformers() {
        let six: [(i64, f64); 20] = [
            (0, 0.0),
            (1, 0.0001),
            (5, 0.0005),
            (9, 0.0009000000000000001),
            (10, 0.001),
            (11, 0.0009890738003669028),
            (12, 0.0009567727288213005),
            (14, 0.0008345653031794292),
            (20, 0.0002500000000000001),
            (24, 1.0926199633097156e-05),
            (25, 0.001),
            (26, 0.0009890738003669028),
            (40, 0.001),
            (55, 0.001),
            (69, 1.0926199633097156e-05),
            (70, 0.001),
            (71, 0.0009890738003669028),
            (99, 1.0926199633097156e-05),
            (100, 0.0),
            (104, 0.0),
        ];
        for (step, want) in six {
            let got = lr_at_cycles(1e-3, step, 100, 10, Decay::CosineHardRestarts, 0.0, 6);
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1e-3), "step {step}: {got} vs {want}");
        }
        // No warm-up, 3 cycles over 37 steps.
        let three: [(i64, f64); 14] = [
            (0, 2.0),
            (1, 1.967732946933499),
            (5, 1.2928227712765503),
            (6, 1.0424412031961483),
            (7, 0.7893207300042739),
            (12, 0.0036025114574734785),
            (13, 1.9856159103477085),
            (18, 1.1270178197468783),
            (24, 0.014384089652291432),
            (25, 1.9963974885425264),
            (30, 1.2106792699957263),
            (36, 0.032267053066500906),
            (37, 0.0),
            (41, 0.0),
        ];
        for (step, want) in three {
            let got = lr_at_cycles(2.0, step, 37, 0, Decay::CosineHardRestarts, 0.0, 3);
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "step {step}: {got} vs {want}");
        }
    }

    #[test]
    fn decay_names_in_toml() {
        #[derive(Deserialize)]
        struct W {
            decay: Decay,
        }
        let w: W = toml::from_str("decay = \"cosine-hard-restarts\"").unwrap();
        assert_eq!(w.decay, Decay::CosineHardRestarts);
    }

    #[test]
    fn hard_restarts_floor_at_min_ratio() {
        // Each cycle of 15 steps after the warm-up restarts at base and ends near min.
        let lr = |s| lr_at_cycles(1.0, s, 100, 10, Decay::CosineHardRestarts, 0.1, 6);
        assert_eq!(lr(10), 1.0);
        assert_eq!(lr(25), 1.0);
        assert!(
            (lr(24) - (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * 14.0 / 15.0).cos()))).abs() < 1e-12
        );
        assert!(lr(24) > 0.1 && lr(24) < 0.11);
        assert_eq!(lr(100), 0.1);
        assert_eq!(lr(0), 0.0);
        // cycles = 0 counts as one cycle.
        assert_eq!(
            lr_at_cycles(1.0, 40, 100, 10, Decay::CosineHardRestarts, 0.0, 0),
            lr_at_cycles(1.0, 40, 100, 10, Decay::CosineHardRestarts, 0.0, 1)
        );
    }
}
