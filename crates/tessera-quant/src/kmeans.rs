//! k-means initialisation of a codebook on the first batch (vector-quantize-pytorch `kmeans_init`,
//! spec §7.1): centroids start at random batch vectors; each iteration assigns every vector to its
//! nearest centroid and moves each centroid to the mean of its vectors; a centroid with no vectors
//! keeps its place. With cosine distance the means are re-normalised.

use tch::{Kind, Tensor};

use crate::distance::{nearest_codes, Metric};
use crate::l2_normalize;

/// Returns (centroids (K, D), cluster sizes (K,)).
///
/// # Shapes
/// `z`: (N, D) → ((K, D), (K,))
pub fn kmeans(z: &Tensor, k: i64, iters: usize, metric: Metric, chunk: i64) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let z = z.to_kind(Kind::Float);
        let n = z.size()[0];
        let opts = (Kind::Int64, z.device());
        let start =
            if n >= k { Tensor::randperm(n, opts).narrow(0, 0, k) } else { Tensor::randint(n, [k], opts) };
        let mut means = z.index_select(0, &start);
        let mut bins = Tensor::zeros([k], (Kind::Float, z.device()));
        for _ in 0..iters.max(1) {
            let idx = nearest_codes(&z, &means, metric, chunk);
            bins = idx.bincount::<Tensor>(None, k).to_kind(Kind::Float);
            let sums = Tensor::zeros_like(&means).index_add(0, &idx, &z);
            let empty = bins.eq(0.0).unsqueeze(1);
            let new_means = sums / bins.clamp_min(1.0).unsqueeze(1);
            let new_means = if metric == Metric::Cosine { l2_normalize(&new_means) } else { new_means };
            means = new_means.where_self(&empty.logical_not(), &means);
        }
        (means, bins)
    })
}
