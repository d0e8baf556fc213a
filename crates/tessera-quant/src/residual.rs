//! Residual VQ (SoundStream Algorithm 1, vector-quantize-pytorch `ResidualVQ`, spec §7.2):
//!
//! ```text
//! r_0 = x;  q_i = VQ_i(r_i);  r_{i+1} = r_i − sg[q_i];  out = Σ_i q_i
//! ```
//! with one codebook per stage or one shared by all stages.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::config::VqConfig;
use crate::vq::{QuantError, QuantizerOutput, VectorQuantizer};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResidualVqConfig {
    pub num_quantizers: usize,
    /// One codebook for every stage.
    pub shared_codebook: bool,
    pub vq: VqConfig,
}

impl Default for ResidualVqConfig {
    fn default() -> Self {
        Self { num_quantizers: 4, shared_codebook: false, vq: VqConfig::default() }
    }
}

/// Output of a residual quantizer.
#[derive(Debug)]
pub struct ResidualOutput {
    /// Σ of the stages' straight-through outputs, the input's shape.
    pub quantized: Tensor,
    /// Stage indices stacked on a new last dimension: (…, Q).
    pub indices: Tensor,
    /// Sum of all stages' losses.
    pub loss: Tensor,
    /// Each stage's own output.
    pub stages: Vec<QuantizerOutput>,
}

#[derive(Debug)]
pub struct ResidualVq {
    pub config: ResidualVqConfig,
    layers: Vec<VectorQuantizer>,
}

impl ResidualVq {
    /// Stages live under `p / "layers" / i` (one stage `0` when shared).
    pub fn new(p: &nn::Path, config: ResidualVqConfig) -> Result<Self, QuantError> {
        if config.num_quantizers == 0 {
            return Err(QuantError::Config("num_quantizers must be at least 1".into()));
        }
        let n = if config.shared_codebook { 1 } else { config.num_quantizers };
        let layers = (0..n)
            .map(|i| VectorQuantizer::new(&(p / "layers" / i), config.vq.clone()))
            .collect::<Result<_, _>>()?;
        Ok(Self { config, layers })
    }

    /// # Shapes
    /// as [`VectorQuantizer::forward_t`]; indices gain a last dimension of size Q.
    pub fn forward_t(&mut self, x: &Tensor, train: bool) -> Result<ResidualOutput, QuantError> {
        let mut residual = x.shallow_clone();
        let mut total = Tensor::zeros_like(x);
        let mut stages = Vec::with_capacity(self.config.num_quantizers);
        for i in 0..self.config.num_quantizers {
            let layer = if self.config.shared_codebook { 0 } else { i };
            let out = self.layers[layer].forward_t(&residual, train)?;
            residual = &residual - out.quantized.detach();
            total += &out.quantized;
            stages.push(out);
        }
        let indices =
            Tensor::stack(&stages.iter().map(|s| s.indices.shallow_clone()).collect::<Vec<_>>(), -1);
        let loss =
            stages.iter().map(|s| s.loss.shallow_clone()).reduce(|a, b| a + b).expect("at least one stage");
        Ok(ResidualOutput { quantized: total, indices, loss, stages })
    }

    /// Σ of the stages' code vectors for stacked indices (…, Q); images (B, H, W, Q) → (B, C, H, W).
    pub fn decode_indices(&self, indices: &Tensor) -> Tensor {
        let q = indices.size().last().copied().unwrap_or(0);
        (0..q)
            .map(|i| {
                let layer = if self.config.shared_codebook { 0 } else { i as usize };
                self.layers[layer].decode_indices(&indices.select(-1, i))
            })
            .reduce(|a, b| a + b)
            .expect("at least one stage")
    }

    pub fn layers(&self) -> &[VectorQuantizer] {
        &self.layers
    }
}
