//! The pre-norm ViT transformer of enhancing-transformers' ViT-VQGAN
//! (`enhancing/modules/stage1/layers.py`@e1c185d: `Transformer`, `PreNorm`, `Attention`,
//! `FeedForward`), parameter names as its state_dict keys:
//!
//! `x ← x + to_out(softmax(q kᵀ / √d_head) v)` on `LN(x)`, then
//! `x ← x + net.2(tanh(net.0(LN(x))))`, `depth` times, then a final LayerNorm (eps 1e-5).
//! The feed-forward's activation is tanh (spec §6.1: "a two-layer feed-forward with tanh in the
//! middle"); attention's `to_qkv` has no bias.

use tch::nn::{self, Module};
use tch::Tensor;

use super::{xavier, StackConfig};

/// Multi-head self-attention (no mask).
#[derive(Debug)]
struct Attention {
    to_qkv: nn::Linear,
    /// Identity when one head spans the whole width (upstream: `project_out`).
    to_out: Option<nn::Linear>,
    heads: i64,
    dim_head: i64,
}

impl Attention {
    fn new(p: &nn::Path, c: &StackConfig) -> Self {
        let inner = c.heads * c.dim_head;
        let to_qkv = nn::linear(p / "to_qkv", c.dim, inner * 3, xavier(c.dim, inner * 3, false));
        let project = !(c.heads == 1 && c.dim_head == c.dim);
        let to_out = project.then(|| nn::linear(p / "to_out", inner, c.dim, xavier(inner, c.dim, true)));
        Attention { to_qkv, to_out, heads: c.heads, dim_head: c.dim_head }
    }

    /// # Shapes
    /// `x: (B, N, D)` → `(B, N, D)`
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, _) = x.size3().expect("(B, N, D) tokens");
        let qkv = self.to_qkv.forward(x).chunk(3, -1);
        let split = |t: &Tensor| t.view([b, n, self.heads, self.dim_head]).transpose(1, 2);
        let (q, k, v) = (split(&qkv[0]), split(&qkv[1]), split(&qkv[2]));
        // softmax(q·kᵀ/√d)·v, fused (upstream computes the same in three steps).
        let out = Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, false, None, false);
        let out = out.transpose(1, 2).reshape([b, n, self.heads * self.dim_head]);
        match &self.to_out {
            Some(l) => l.forward(&out),
            None => out,
        }
    }
}

/// `Linear(dim, mlp) → tanh → Linear(mlp, dim)`.
#[derive(Debug)]
struct FeedForward {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl FeedForward {
    fn new(p: &nn::Path, c: &StackConfig) -> Self {
        let fc1 = nn::linear(p / "net" / 0, c.dim, c.mlp_dim, xavier(c.dim, c.mlp_dim, true));
        let fc2 = nn::linear(p / "net" / 2, c.mlp_dim, c.dim, xavier(c.mlp_dim, c.dim, true));
        FeedForward { fc1, fc2 }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(x).tanh())
    }
}

/// `depth` pre-norm blocks and a final LayerNorm.
#[derive(Debug)]
pub struct Transformer {
    layers: Vec<(nn::LayerNorm, Attention, nn::LayerNorm, FeedForward)>,
    norm: nn::LayerNorm,
}

impl Transformer {
    pub fn new(p: &nn::Path, c: &StackConfig) -> Self {
        let ln = |q: nn::Path| nn::layer_norm(q, vec![c.dim], Default::default());
        let layers = (0..c.depth)
            .map(|i| {
                let l = p / "layers" / i;
                (
                    ln(&l / 0 / "norm"),
                    Attention::new(&(&l / 0 / "fn"), c),
                    ln(&l / 1 / "norm"),
                    FeedForward::new(&(&l / 1 / "fn"), c),
                )
            })
            .collect();
        Transformer { layers, norm: ln(p / "norm") }
    }

    /// # Shapes
    /// `x: (B, N, D)` → `(B, N, D)`
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut x = x.shallow_clone();
        for (n1, attn, n2, ff) in &self.layers {
            x = &x + attn.forward(&x.apply(n1));
            x = &x + ff.forward(&x.apply(n2));
        }
        x.apply(&self.norm)
    }
}
