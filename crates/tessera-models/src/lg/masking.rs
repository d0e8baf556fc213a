//! Which caption tokens `L_mtp` hides (spec §5.2; LG-VQ's modified `clip.tokenize`,
//! `taming/clip/clip.py:201-261` @42c3ff1): one ratio `X ~ TruncNormal(μ = 0.5, σ = 0.1)` on
//! `[0.1, 0.3]` per batch, then each content token is kept with probability `1 − X`; the framing
//! tokens are always kept and padding never is. The mean lies outside the interval, so `X` piles up
//! near 0.3 (mean 0.263).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The truncated normal the masking ratio is drawn from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskRatio {
    pub mean: f64,
    pub std: f64,
    pub low: f64,
    pub high: f64,
}

impl Default for MaskRatio {
    fn default() -> Self {
        Self { mean: 0.5, std: 0.1, low: 0.1, high: 0.3 }
    }
}

impl MaskRatio {
    /// Values that draw nothing, named.
    pub fn check(&self) -> Result<(), String> {
        let ok = self.std > 0.0 && 0.0 <= self.low && self.low < self.high && self.high <= 1.0;
        if ok {
            Ok(())
        } else {
            Err(format!("lg.mask_ratio {self:?}: need std > 0 and 0 ≤ low < high ≤ 1"))
        }
    }

    /// One draw, from libtorch's generator: the inverse CDF of the normal restricted to
    /// `[low, high]` (exact, whatever the interval's mass).
    pub fn sample(&self) -> f64 {
        let cdf = |x: f64| 0.5 * (1.0 + erf((x - self.mean) / (self.std * std::f64::consts::SQRT_2)));
        let (a, b) = (cdf(self.low), cdf(self.high));
        let u = a + (b - a) * Tensor::rand([1], (Kind::Double, tch::Device::Cpu)).double_value(&[0]);
        // Invert the CDF by bisection (60 halvings: below f64 resolution on [low, high]).
        let (mut lo, mut hi) = (self.low, self.high);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if cdf(mid) < u {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    /// The keep mask of a batch: 1 = kept, 0 = masked or padding.
    ///
    /// # Shapes
    /// `pad`, `special`: `(B, T)` (1 = token / framing token) → `(B, T)` int64
    pub fn keep_mask(&self, pad: &Tensor, special: &Tensor) -> Tensor {
        let x = self.sample();
        let kept = pad.to_kind(Kind::Float).bernoulli_float_(1.0 - x).to_kind(Kind::Int64);
        let kept = kept.logical_or(&special.ne(0)).to_kind(Kind::Int64);
        kept * pad.ne(0).to_kind(Kind::Int64)
    }
}

/// The error function in f64, through libtorch's `erf`.
fn erf(x: f64) -> f64 {
    Tensor::from(x).erf().double_value(&[])
}
