//! Code↔caption retrieval (LG-VQ's question of whether codes carry the caption's meaning,
//! spec §9.3): image `i` queries every caption by cosine similarity of its global image feature
//! to their sentence features, and caption `j` queries every image the same way. Recall@k is the
//! fraction of queries with a right answer among the k most similar; an answer is right when its
//! caption is the query's (MNIST64x64 repeats captions, so the gallery holds several right ones).
//! The 95 % intervals are percentile bootstraps over queries ([`crate::stats`]).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::stats::{bootstrap_ratio_interval, Interval};

/// Recall at 1 and 5 with intervals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    pub at1: Interval,
    pub at5: Interval,
}

/// Both directions, over a gallery of `gallery` pairs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrievalScores {
    pub image_to_text: Recall,
    pub text_to_image: Recall,
    pub gallery: usize,
    /// Recall@1 of a random ranking (mean over queries of right answers / gallery).
    pub chance_at1: f64,
}

/// Per query, whether a right answer is among the `k` highest of its row of `sim`.
///
/// # Shapes
/// `sim`, `right`: `(Q, G)` (similarities; true where the answer is right) → `Q` hits
fn hits(sim: &Tensor, right: &Tensor, k: i64) -> Vec<usize> {
    let top = sim.topk(k.min(sim.size()[1]), -1, true, true).1;
    let found = right.gather(1, &top, false).any_dim(1, false);
    Vec::<bool>::try_from(found).expect("bool").into_iter().map(usize::from).collect()
}

fn recall(sim: &Tensor, right: &Tensor, rounds: usize, seed: u64) -> Recall {
    let at = |k| {
        let items: Vec<(usize, usize)> = hits(sim, right, k).into_iter().map(|h| (h, 1)).collect();
        bootstrap_ratio_interval(&items, rounds, seed).expect("at least one query")
    };
    Recall { at1: at(1), at5: at(5) }
}

/// Retrieval between `images (N, D)` and `texts (N, D)` (pair `i` belongs together), with
/// `captions` deciding which answers are right.
pub fn retrieval(
    images: &Tensor,
    texts: &Tensor,
    captions: &[String],
    rounds: usize,
    seed: u64,
) -> RetrievalScores {
    let n = captions.len();
    assert!(n > 0 && images.size()[0] == n as i64 && texts.size()[0] == n as i64, "one caption per pair");
    let unit = |x: &Tensor| {
        let x = x.to_kind(Kind::Float);
        &x / x.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12)
    };
    let sim = unit(images).matmul(&unit(texts).transpose(0, 1)).to_device(tch::Device::Cpu);
    let same: Vec<bool> = captions.iter().flat_map(|a| captions.iter().map(move |b| a == b)).collect();
    let right = Tensor::from_slice(&same).view([n as i64, n as i64]);
    let chance = same.iter().filter(|&&s| s).count() as f64 / (n * n) as f64;
    RetrievalScores {
        image_to_text: recall(&sim, &right, rounds, seed),
        text_to_image: recall(&sim.transpose(0, 1), &right.transpose(0, 1), rounds, seed),
        gallery: n,
        chance_at1: chance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn perfect_features_recall_everything_and_a_swap_costs_exactly_its_queries() {
        let eye = Tensor::eye(4, (Kind::Float, tch::Device::Cpu));
        let r = retrieval(&eye, &eye, &caps(&["a", "b", "c", "d"]), 200, 0);
        assert_eq!((r.image_to_text.at1.mean, r.text_to_image.at5.mean), (1.0, 1.0));
        assert_eq!(r.chance_at1, 0.25);
        // Images 0 and 1 point at each other's captions: those two queries fail at 1 both ways.
        let swapped = eye.index_select(0, &Tensor::from_slice(&[1i64, 0, 2, 3]));
        let r = retrieval(&swapped, &eye, &caps(&["a", "b", "c", "d"]), 200, 0);
        assert_eq!(r.image_to_text.at1.mean, 0.5);
        assert_eq!(r.text_to_image.at1.mean, 0.5);
        assert_eq!(r.image_to_text.at5.mean, 1.0, "every answer is within the top 4");
        assert!(r.image_to_text.at1.lo <= 0.5 && 0.5 <= r.image_to_text.at1.hi);
        // With equal captions the swapped answer is right.
        let r = retrieval(&swapped, &eye, &caps(&["a", "a", "c", "d"]), 200, 0);
        assert_eq!(r.image_to_text.at1.mean, 1.0);
    }
}
