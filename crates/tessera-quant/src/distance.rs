//! Nearest-code search (spec §1.3, §2.3).
//!
//! Euclidean: `d(z, e) = ‖z‖² + ‖e‖² − 2 z·e`; cosine (on l2-normalised z and e): `d = −z·e`.
//! `argmin` takes the first of equal minima, as PyTorch does. The search runs over chunks of the
//! inputs, so at most `chunk × K` distances exist at once: 65,536 vectors × 8,192 codes need
//! 2 GiB as one matrix but 256 MiB in chunks of 8,192.

use tch::{Kind, Tensor};

/// Which distance to search with (inputs already normalised for `Cosine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Euclidean,
    Cosine,
}

/// The full (N, K) distance matrix.
///
/// Computed as `(z·(−2e)ᵀ + ‖z‖²) + ‖e‖²`: one (N, K) allocation, the additions in place. The
/// summation order differs from PyTorch's `‖z‖² + ‖e‖² − 2z·e`, so exact float ties can resolve
/// differently; the fixture tests check agreement on PyTorch's own values.
///
/// # Shapes
/// `z`: (N, D), `codebook`: (K, D) → (N, K)
pub fn distances(z: &Tensor, codebook: &Tensor, metric: Metric) -> Tensor {
    match metric {
        Metric::Euclidean => {
            let neg2_et = codebook.tr() * -2.0;
            let ee = codebook.square().sum_dim_intlist(1, false, Kind::Float);
            distances_with(z, &neg2_et, &ee)
        }
        Metric::Cosine => -z.matmul(&codebook.tr()),
    }
}

/// Euclidean distances given the pre-computed `−2eᵀ` (D, K) and `‖e‖²` (K,).
fn distances_with(z: &Tensor, neg2_et: &Tensor, ee: &Tensor) -> Tensor {
    let mut d = z.matmul(neg2_et);
    d += z.square().sum_dim_intlist(1, true, Kind::Float);
    d += ee.unsqueeze(0);
    d
}

/// Index of the nearest code for each input, computed `chunk` rows at a time, without gradient.
///
/// # Shapes
/// `z`: (N, D), `codebook`: (K, D) → (N,) int64
pub fn nearest_codes(z: &Tensor, codebook: &Tensor, metric: Metric, chunk: i64) -> Tensor {
    tch::no_grad(|| {
        // Codebook-side terms once, not once per chunk.
        let neg2_et = codebook.tr() * -2.0;
        let ee = codebook.square().sum_dim_intlist(1, false, Kind::Float);
        let et = codebook.tr();
        let search = |part: Tensor| -> Tensor {
            match metric {
                Metric::Euclidean => distances_with(&part, &neg2_et, &ee).argmin(1, false),
                // argmin(−z·e) = argmax(z·e), first index on ties in both.
                Metric::Cosine => part.matmul(&et).argmax(1, false),
            }
        };
        let n = z.size()[0];
        if n <= chunk {
            return search(z.shallow_clone());
        }
        let parts: Vec<Tensor> =
            (0..n).step_by(chunk as usize).map(|s| search(z.narrow(0, s, chunk.min(n - s)))).collect();
        Tensor::cat(&parts, 0)
    })
}
