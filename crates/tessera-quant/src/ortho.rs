//! TE-VQGAN's codebook orthogonality regulariser (spec §2.2):
//!
//! ```text
//! L_ortho = λ · Σ_ij (Ê Êᵀ − I)²_ij / n²,   Ê = E with rows l2-normalised
//!         = λ · (Σ_ij cos²(e_i, e_j) / n² − 1/n)
//! ```
//! With `normalize = false` (`force_emb_len_1`) the raw rows are used. Only the codebook receives
//! its gradient; the lookup keeps using the raw codebook.

use tch::{Kind, Tensor};

use crate::l2_normalize;

/// The regulariser over the rows of `codes`, without the weight λ.
///
/// # Shapes
/// `codes`: (n, D) → scalar
pub fn orthogonality_loss(codes: &Tensor, normalize: bool) -> Tensor {
    let n = codes.size()[0];
    let e = if normalize { l2_normalize(codes) } else { codes.shallow_clone() };
    let gram = e.matmul(&e.tr());
    let eye = Tensor::eye(n, (Kind::Float, codes.device()));
    (gram - eye).square().sum(Kind::Float) / (n * n) as f64
}
