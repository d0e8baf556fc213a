//! LG-VQ's three losses (spec §5.4), as `taming/models/LG_vqgan.py` of
//! 623851394/LG-VQ-language-guided-codebook-learning@42c3ff1 computes them, and the two small heads
//! they use (`MlmLayer` `:34-50`, `wrsLayer` `:52-69`).

use tch::nn::{self, Init, Module};
use tch::{Kind, Reduction, Tensor};

fn unit(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [-1], true)
}

/// Global semantic alignment (`global_infor_sup`, `:190-206`): with `v = V₀/‖V₀‖` and
/// `t = sg(s)/‖s‖`, `L_gsa = mean_i −log(exp(v_i·t_i) / (Σ_j exp(v_i·t_j) + 1e-6))`: τ = 1, image→text
/// only, the positive inside the denominator.
///
/// # Shapes
/// `global: (B, D)`, `sentence: (B, D)` → per sample `(B)`
pub fn global_alignment(global: &Tensor, sentence: &Tensor) -> Tensor {
    let v = unit(global);
    let t = unit(&sentence.detach());
    let pos = (&v * &t).sum_dim_intlist(-1, false, None);
    let neg = v.matmul(&t.transpose(0, 1)).exp().sum_dim_intlist(-1, false, None);
    -(pos.exp() / (neg + 1e-6)).log()
}

/// Masked text prediction (`crossEntropy`, `:231-242`, with `LabelSmoothingCrossEntropy(0.1)`):
/// per position `(1 − ε)·(−log p_y) + ε·mean_k(−log p_k)`, averaged over the masked tokens:
/// `Σ l·m / (Σ m + 5e-6)`.
///
/// # Shapes
/// `logits: (B, T, V)`, `targets: (B, T)` int64, `masked: (B, T)` (1 = predicted) → per position
/// `(B, T)` and the scalar loss
pub fn masked_prediction(
    logits: &Tensor,
    targets: &Tensor,
    masked: &Tensor,
    smoothing: f64,
) -> (Tensor, Tensor) {
    let logp = logits.log_softmax(-1, Kind::Float);
    let nll = -logp.gather(-1, &targets.unsqueeze(-1), false).squeeze_dim(-1);
    let uniform = -logp.mean_dim(-1, false, Kind::Float);
    let per_position = nll * (1.0 - smoothing) + uniform * smoothing;
    let m = masked.to_kind(Kind::Float);
    let loss = (&per_position * &m).sum(Kind::Float) / (m.sum(Kind::Float) + 5e-6);
    (per_position, loss)
}

/// What relationship alignment computed, for tests and logs.
#[derive(Debug)]
pub struct Relation {
    pub loss: Tensor,
    /// `R_t` and `R_c`, `(B, T, T)`.
    pub text: Tensor,
    pub codes: Tensor,
    /// The code each word matched, `(B, T)`.
    pub indices: Tensor,
}

/// Relationship alignment (`wrsrelation_sup`, `:255-288`): each word picks the code whose vision
/// token matches it best, `k_i = argmax_k T̂_i·V̂_k`; the picked codes' projections
/// `P_i = s_i·Q'_{k_i}/‖·‖` (masked to tokens) must relate as the words do:
/// `L_ras = MSE(P Pᵀ, sg((T̂⊙pad)(T̂⊙pad)ᵀ))`, the mean over `B·T·T`.
///
/// # Shapes
/// `projected: (B, N, D)` (`wrsLayer` of the codes), `code_tokens: (B, N, D)` (`V[:, 1:]`),
/// `text_tokens: (B, T, D)`, `pad: (B, T)` → scalar
pub fn relationship_alignment(
    projected: &Tensor,
    code_tokens: &Tensor,
    text_tokens: &Tensor,
    pad: &Tensor,
) -> Relation {
    let t = unit(text_tokens);
    let v = unit(code_tokens);
    let (value, indices) = t.matmul(&v.transpose(1, 2)).max_dim(-1, false);
    let d = projected.size()[2];
    let picked = projected.gather(1, &indices.unsqueeze(-1).expand([-1, -1, d], false), false);
    let pad = pad.to_kind(Kind::Float).unsqueeze(-1);
    let tp = &t * &pad;
    let text = tp.matmul(&tp.transpose(1, 2));
    let p = unit(&(picked * value.unsqueeze(-1))) * &pad;
    let codes = p.matmul(&p.transpose(1, 2));
    let loss = codes.mse_loss(&text.detach(), Reduction::Mean);
    Relation { loss, text, codes, indices }
}

/// `Linear → GELU → LayerNorm`, the shape of both heads.
#[derive(Debug)]
struct LinearGeluNorm {
    fc: nn::Linear,
    ln: nn::LayerNorm,
}

impl LinearGeluNorm {
    fn new(p: &nn::Path, i: i64, o: i64, weight_init: Init) -> Self {
        let bound = 1.0 / (i as f64).sqrt();
        let fc = nn::Linear {
            ws: (p / "fc").var("weight", &[o, i], weight_init),
            bs: Some((p / "fc").var("bias", &[o], Init::Uniform { lo: -bound, up: bound })),
        };
        Self { fc, ln: nn::layer_norm(p / "ln", vec![o], Default::default()) }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.fc).gelu("none").apply(&self.ln)
    }
}

/// `MlmLayer`: `logits = LN(GELU(fc(h)))·Eᵀ + b`, tied to the text encoder's frozen token
/// embedding `E (V, D)`; `b` is `(1, 1, V)`, zero at the start.
#[derive(Debug)]
pub struct MlmHead {
    head: LinearGeluNorm,
    bias: Tensor,
}

impl MlmHead {
    pub fn new(p: &nn::Path, d: i64, vocab: i64) -> Self {
        // torch's Linear default (kaiming-uniform with a = √5): U(±1/√in).
        let bound = 1.0 / (d as f64).sqrt();
        Self {
            head: LinearGeluNorm::new(p, d, d, Init::Uniform { lo: -bound, up: bound }),
            bias: p.var("bias", &[1, 1, vocab], Init::Const(0.0)),
        }
    }

    /// # Shapes
    /// `h: (B, T, D)`, `token_embedding: (V, D)` → `(B, T, V)`
    pub fn forward(&self, h: &Tensor, token_embedding: &Tensor) -> Tensor {
        self.head.forward(h).matmul(&token_embedding.detach().transpose(0, 1)) + &self.bias
    }
}

/// `wrsLayer`: the codes projected to the text width, `LN(GELU(fc(q)))`, `fc.weight ~ N(0, 0.01)`.
#[derive(Debug)]
pub struct CodeProjection(LinearGeluNorm);

impl CodeProjection {
    pub fn new(p: &nn::Path, code_dim: i64, text_dim: i64) -> Self {
        Self(LinearGeluNorm::new(p, code_dim, text_dim, Init::Randn { mean: 0.0, stdev: 0.01 }))
    }
}

impl Module for CodeProjection {
    /// # Shapes
    /// `(B, N, C)` → `(B, N, D)`
    fn forward(&self, codes: &Tensor) -> Tensor {
        self.0.forward(codes)
    }
}
