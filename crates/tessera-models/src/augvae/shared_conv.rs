//! 1×1 convs that share one weight and keep a bias each: AugVAE's `pre_quants` / `post_quants`
//! after `quant_weight_share` (`latent_verse/models/vqvae.py`@e52ed9f: `pre_quants[i+1].weight =
//! pre_quants[0].weight`, biases untouched). Names: `0.weight`, `<i>.bias`.

use tch::nn::{self, Init};
use tch::Tensor;

#[derive(Debug)]
pub struct SharedConv1x1 {
    /// (out, in, 1, 1), `<path>.0.weight`.
    weight: Tensor,
    /// (out,) each, `<path>.<i>.bias`.
    biases: Vec<Tensor>,
}

impl SharedConv1x1 {
    /// `n` convs `cin → cout`, PyTorch's default Conv2d initialisation.
    pub fn new(p: &nn::Path, cin: i64, cout: i64, n: usize) -> Self {
        let bound = 1.0 / (cin as f64).sqrt();
        let uniform = Init::Uniform { lo: -bound, up: bound };
        let weight = (p / 0).var("weight", &[cout, cin, 1, 1], uniform);
        let biases = (0..n).map(|i| (p / i).var("bias", &[cout], uniform)).collect();
        Self { weight, biases }
    }

    /// The `i`-th conv.
    ///
    /// # Shapes
    /// (B, cin, H, W) → (B, cout, H, W)
    pub fn forward(&self, x: &Tensor, i: usize) -> Tensor {
        x.conv2d(&self.weight, Some(&self.biases[i]), [1, 1], [0, 0], [1, 1], 1)
    }
}
