//! Finite scalar quantization (Mentzer et al. 2023; vector-quantize-pytorch `FSQ`, spec §7.2).
//!
//! Each of d channels is bounded and rounded to one of L_i levels:
//! ```text
//! half_l = (L − 1)(1 + 1e-3)/2,  offset = 0.5 if L even else 0,  shift = atanh(offset/half_l)
//! ẑ = round_ste(tanh(z + shift)·half_l − offset) / (L // 2)
//! index = Σ_i (ẑ_i·(L_i//2) + L_i//2) · basis_i,   basis = cumprod([1, L_0, …, L_{d−2}])
//! ```
//! No codebook, no auxiliary loss. With `dim ≠ d` Linear layers project in and out.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::vq::QuantError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FsqConfig {
    /// Levels per channel; the codebook size is their product. Paper's 2^10 ≈ [8, 5, 5, 5].
    pub levels: Vec<i64>,
    /// Width of the vectors the quantizer receives; defaults to `levels.len()`.
    pub dim: Option<i64>,
}

impl Default for FsqConfig {
    fn default() -> Self {
        Self { levels: vec![8, 5, 5, 5], dim: None }
    }
}

#[derive(Debug)]
pub struct Fsq {
    pub config: FsqConfig,
    levels: Tensor,
    basis: Tensor,
    project_in: Option<nn::Linear>,
    project_out: Option<nn::Linear>,
}

impl Fsq {
    pub fn new(p: &nn::Path, config: FsqConfig) -> Result<Self, QuantError> {
        if config.levels.is_empty() || config.levels.iter().any(|&l| l < 2) {
            return Err(QuantError::Config(format!("FSQ levels must each be ≥ 2: {:?}", config.levels)));
        }
        let d = config.levels.len() as i64;
        let dim = config.dim.unwrap_or(d);
        let dev = p.device();
        let levels = Tensor::from_slice(&config.levels).to_device(dev);
        let mut basis = vec![1i64];
        for l in &config.levels[..config.levels.len() - 1] {
            basis.push(basis.last().unwrap() * l);
        }
        let basis = Tensor::from_slice(&basis).to_device(dev);
        let (project_in, project_out) = if dim != d {
            (
                Some(nn::linear(p / "project_in", dim, d, Default::default())),
                Some(nn::linear(p / "project_out", d, dim, Default::default())),
            )
        } else {
            (None, None)
        };
        Ok(Self { config, levels, basis, project_in, project_out })
    }

    pub fn codebook_size(&self) -> i64 {
        self.config.levels.iter().product()
    }

    fn half_width(&self) -> Tensor {
        self.levels.floor_divide_scalar(2).to_kind(Kind::Float)
    }

    /// Bounded, rounded, normalised codes in [−1, 1] with a straight-through gradient.
    ///
    /// # Shapes
    /// (…, d) → (…, d)
    pub fn quantize(&self, z: &Tensor) -> Tensor {
        let l = self.levels.to_kind(Kind::Float);
        let half_l = (&l - 1.0) * (1.0 + 1e-3) / 2.0;
        let offset = l.remainder(2.0).eq(0.0).to_kind(Kind::Float) * 0.5;
        let shift = (&offset / &half_l).atanh();
        let bounded = (z + shift).tanh() * &half_l - &offset;
        let rounded = &bounded + (bounded.round() - &bounded).detach();
        rounded / self.half_width()
    }

    /// Mixed-radix index of normalised codes.
    ///
    /// # Shapes
    /// (…, d) → (…) int64
    pub fn codes_to_indices(&self, codes: &Tensor) -> Tensor {
        let hw = self.half_width();
        let level_idx = (codes * &hw + &hw).round().to_kind(Kind::Int64);
        (level_idx * &self.basis).sum_dim_intlist(-1, false, Kind::Int64)
    }

    /// Normalised codes of indices.
    ///
    /// # Shapes
    /// (…) → (…, d)
    pub fn indices_to_codes(&self, indices: &Tensor) -> Tensor {
        let level_idx = indices.unsqueeze(-1).floor_divide(&self.basis).remainder_tensor(&self.levels);
        let hw = self.half_width();
        (level_idx.to_kind(Kind::Float) - &hw) / hw
    }

    /// Channels-last input (…, dim) → (quantized (…, dim), indices (…)).
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let z = match &self.project_in {
            Some(l) => l.forward(x),
            None => x.shallow_clone(),
        };
        let codes = self.quantize(&z);
        let indices = self.codes_to_indices(&codes);
        let out = match &self.project_out {
            Some(l) => l.forward(&codes),
            None => codes,
        };
        (out, indices)
    }
}
