//! Confidence intervals a reader can trust.
//!
//! - [`paired_t_interval`]: the 95 % t-interval of the mean of paired differences over seeds
//!   (`d̄ ± t_{0.975, n−1} · s_d / √n`). It needs n ≥ 2; with one seed nothing can be said.
//! - [`bootstrap_ratio_interval`]: a percentile bootstrap over evaluated images of a micro-averaged
//!   accuracy `Σ correct / Σ labels` (images are resampled with replacement, not labels, because
//!   the labels of one image are not independent).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A point estimate with a 95 % interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    /// True when the interval does not contain 0.
    pub fn excludes_zero(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }

    /// One sentence saying whether a difference `a − b` of `what` is distinguishable from zero.
    pub fn verdict(&self, what: &str, a: &str, b: &str) -> String {
        if self.excludes_zero() {
            let (hi, lo) = if self.mean > 0.0 { (a, b) } else { (b, a) };
            format!(
                "{what}: {hi} is higher than {lo} ({:+.3}, 95 % CI [{:+.3}, {:+.3}] excludes 0).",
                self.mean, self.lo, self.hi
            )
        } else {
            format!(
                "{what}: {a} and {b} cannot be told apart ({:+.3}, 95 % CI [{:+.3}, {:+.3}] contains 0).",
                self.mean, self.lo, self.hi
            )
        }
    }
}

/// Two-sided 97.5 % quantile of Student's t with `df` degrees of freedom (table for df ≤ 30,
/// then the Cornish–Fisher expansion, which is within 1e-3 there).
pub fn t_quantile_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042,
    ];
    assert!(df >= 1, "t quantile needs at least one degree of freedom");
    if df <= 30 {
        return TABLE[df - 1];
    }
    let z: f64 = 1.959_964;
    let n = df as f64;
    z + (z.powi(3) + z) / (4.0 * n) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
}

/// The 95 % t-interval of the mean of `values`; `None` with fewer than two.
pub fn t_interval(values: &[f64]) -> Option<Interval> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t_quantile_975(n - 1) * (var / n as f64).sqrt();
    Some(Interval { mean, lo: mean - half, hi: mean + half })
}

/// The 95 % paired t-interval of `mean(a − b)`; `None` with fewer than two pairs.
pub fn paired_t_interval(a: &[f64], b: &[f64]) -> Option<Interval> {
    assert_eq!(a.len(), b.len(), "paired samples must have equal length");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    t_interval(&d)
}

/// Percentile bootstrap (95 %) of `Σ correct / Σ labels` over images given as
/// `(correct, labels)` pairs; `rounds` resamples with a fixed `seed`. `None` when there are no
/// labels.
pub fn bootstrap_ratio_interval(items: &[(usize, usize)], rounds: usize, seed: u64) -> Option<Interval> {
    let total: usize = items.iter().map(|x| x.1).sum();
    if total == 0 || rounds == 0 {
        return None;
    }
    let mean = items.iter().map(|x| x.0).sum::<usize>() as f64 / total as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = items.len();
    let mut stats: Vec<f64> = (0..rounds)
        .map(|_| {
            let (mut c, mut l) = (0usize, 0usize);
            for _ in 0..n {
                let (ci, li) = items[rng.gen_range(0..n)];
                c += ci;
                l += li;
            }
            if l == 0 {
                0.0
            } else {
                c as f64 / l as f64
            }
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    let at = |q: f64| stats[((q * (rounds - 1) as f64).round() as usize).min(rounds - 1)];
    Some(Interval { mean, lo: at(0.025), hi: at(0.975) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_interval_matches_a_hand_computation() {
        // d = [0.2, 0.25, 0.3]: mean 0.25, s = 0.05, half = 4.303 · 0.05 / √3 ≈ 0.124.
        let iv = paired_t_interval(&[1.2, 1.25, 1.3], &[1.0, 1.0, 1.0]).unwrap();
        let half = 4.303 * 0.05 / 3f64.sqrt();
        assert!((iv.mean - 0.25).abs() < 1e-12);
        assert!((iv.lo - (0.25 - half)).abs() < 1e-9 && (iv.hi - (0.25 + half)).abs() < 1e-9);
        assert!(iv.excludes_zero());
        assert!(iv.verdict("T2I", "te", "vq").contains("te is higher than vq"));
    }

    #[test]
    fn one_seed_gives_no_interval_and_noise_contains_zero() {
        assert!(paired_t_interval(&[0.5], &[0.4]).is_none());
        let iv = paired_t_interval(&[0.5, 0.3, 0.6], &[0.4, 0.5, 0.5]).unwrap();
        assert!(!iv.excludes_zero());
        assert!(iv.verdict("I2T", "te", "vq").contains("cannot be told apart"));
    }

    #[test]
    fn t_quantiles_continue_smoothly_past_the_table() {
        assert!((t_quantile_975(30) - 2.042).abs() < 1e-9);
        let t31 = t_quantile_975(31);
        assert!(t31 < 2.042 && t31 > 2.035, "{t31}");
        assert!((t_quantile_975(1000) - 1.962).abs() < 1e-3);
    }

    #[test]
    fn bootstrap_brackets_the_mean_shrinks_with_n_and_is_deterministic() {
        let small: Vec<(usize, usize)> = (0..20).map(|i| (usize::from(i % 2 == 0), 1)).collect();
        let big: Vec<(usize, usize)> = (0..2000).map(|i| (usize::from(i % 2 == 0), 1)).collect();
        let a = bootstrap_ratio_interval(&small, 2000, 7).unwrap();
        let b = bootstrap_ratio_interval(&big, 2000, 7).unwrap();
        assert!((a.mean - 0.5).abs() < 1e-12 && a.lo < 0.5 && a.hi > 0.5);
        assert!(b.hi - b.lo < (a.hi - a.lo) / 5.0, "{a:?} {b:?}");
        // Binomial: the half width at n = 2000 is near 1.96·√(0.25/2000) ≈ 0.022.
        assert!(((b.hi - b.lo) / 2.0 - 0.0219).abs() < 0.005, "{b:?}");
        assert_eq!(bootstrap_ratio_interval(&small, 500, 3), bootstrap_ratio_interval(&small, 500, 3));
        assert!(bootstrap_ratio_interval(&[(0, 0)], 10, 0).is_none());
    }
}
