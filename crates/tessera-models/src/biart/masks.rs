//! Which key each query may attend to, per attention type and direction (spec §3.2), and which
//! logits each position may emit (spec §3.1).
//!
//! Every attention type is expressed as one boolean `(L, L)` matrix over absolute positions of the
//! full sequence (`allowed[q][k]`), always causal (`k ≤ q`). A full forward uses the whole matrix;
//! the KV-cached sampler uses rows `p₀..p₀+t` and columns `0..p₀+t`, so both paths see exactly the
//! same connectivity. Bi-DALL-E's sparse layers (its `SparseAxialCausalAttention` and
//! `SparseConvCausalAttention`) are the following masks:
//!
//! ```text
//! text→image, query q:  q < Lt            → causal text
//!                       q ≥ Lt (image i)  → all text + image j ≤ i with
//!                                           row(j)=row(i)            (axial_row)
//!                                           col(j)=col(i)            (axial_col)
//!                                           |Δrow|,|Δcol| ≤ ⌊kernel/2⌋ (conv_like)
//! image→text, query q:  q < Li (image i)  → image j ≤ i under the same rule
//!                       q ≥ Li            → all image + causal text
//! ```
//! The key-padding mask (`[PAD]` keys hidden) is applied on top by the model in every layer.
//! Bi-DALL-E skips it in i2t sparse layers (spec §13.4); there pads sit at the end of the sequence
//! and are seen only by pad queries, whose outputs the loss ignores, so the choice cannot change a
//! loss or a sample.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// Attention connectivity of one layer (spec §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttnType {
    /// Causal attention over the whole sequence.
    Full,
    /// Image queries see their own row of the image (and all text).
    AxialRow,
    /// Image queries see their own column of the image (and all text).
    AxialCol,
    /// Image queries see the causal part of their `kernel×kernel` neighbourhood (and all text).
    ConvLike,
}

/// Which side is the condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// `[text ; image]`: the caption is the condition, the image the target.
    T2i,
    /// `[image ; text]`: the image is the condition, the caption the target.
    I2t,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::T2i, Direction::I2t];
    pub fn name(self) -> &'static str {
        match self {
            Direction::T2i => "t2i",
            Direction::I2t => "i2t",
        }
    }
}

/// Sequence geometry shared by the masks and the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub text_len: usize,
    /// Sides of the square code grids, in sequence order (one for most tokenizers, AugVAE-ML's
    /// levels fine to coarse); the image part has `Σ side²` tokens, each grid row-major.
    pub sides: Vec<usize>,
    pub kernel: usize,
}

impl Geometry {
    pub fn image_len(&self) -> usize {
        self.sides.iter().map(|s| s * s).sum()
    }

    /// `(grid, row, col)` of image index `i`.
    fn locate(&self, mut i: usize) -> (usize, usize, usize) {
        for (g, &s) in self.sides.iter().enumerate() {
            if i < s * s {
                return (g, i / s, i % s);
            }
            i -= s * s;
        }
        unreachable!("image index beyond the grids")
    }
    pub fn total(&self) -> usize {
        self.text_len + self.image_len()
    }
    /// Is absolute position `p` an image token under `dir`? Returns the image index if so.
    pub fn image_index(&self, dir: Direction, p: usize) -> Option<usize> {
        match dir {
            Direction::T2i => p.checked_sub(self.text_len),
            Direction::I2t => (p < self.image_len()).then_some(p),
        }
    }
    /// Segment id of position `p`: 0 = condition, 1 = generation target (L-Verse, spec §4.7).
    pub fn segment(&self, dir: Direction, p: usize) -> i64 {
        let cond_len = match dir {
            Direction::T2i => self.text_len,
            Direction::I2t => self.image_len(),
        };
        i64::from(p >= cond_len)
    }
    /// The input position whose output predicts the first target token: positions before it emit
    /// the condition's modality, positions from it on the target's (spec §3.1).
    pub fn first_target_output(&self, dir: Direction) -> usize {
        match dir {
            Direction::T2i => self.text_len - 1,
            Direction::I2t => self.image_len() - 1,
        }
    }

    /// Image `i` may attend to image `j ≤ i`: on its own grid under the layer's pattern, on an
    /// earlier grid always (several grids: the sparse patterns are per grid).
    fn image_pair_allowed(&self, kind: AttnType, i: usize, j: usize) -> bool {
        let (gi, ri, ci) = self.locate(i);
        let (gj, rj, cj) = self.locate(j);
        let half = self.kernel / 2;
        j <= i
            && (gi != gj
                || match kind {
                    AttnType::Full => true,
                    AttnType::AxialRow => ri == rj,
                    AttnType::AxialCol => ci == cj,
                    AttnType::ConvLike => ri.abs_diff(rj) <= half && ci.abs_diff(cj) <= half,
                })
    }

    /// May query `q` attend to key `k`?
    pub fn allowed(&self, kind: AttnType, dir: Direction, q: usize, k: usize) -> bool {
        if k > q {
            return false;
        }
        if kind == AttnType::Full {
            return true;
        }
        match (self.image_index(dir, q), self.image_index(dir, k)) {
            (Some(i), Some(j)) => self.image_pair_allowed(kind, i, j),
            // An image query sees all text (t2i); a text query sees all image (i2t) and causal text.
            (Some(_), None) | (None, Some(_)) | (None, None) => true,
        }
    }

    /// `(L, L)` boolean mask, true where attention is allowed.
    pub fn attention_mask(&self, kind: AttnType, dir: Direction, device: Device) -> Tensor {
        let l = self.total();
        let mut m = vec![false; l * l];
        for q in 0..l {
            for k in 0..=q {
                m[q * l + k] = self.allowed(kind, dir, q, k);
            }
        }
        Tensor::from_slice(&m).view([l as i64, l as i64]).to_device(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static G: std::sync::LazyLock<Geometry> =
        std::sync::LazyLock::new(|| Geometry { text_len: 3, sides: vec![3], kernel: 3 });

    #[test]
    fn full_is_causal() {
        for dir in Direction::BOTH {
            for q in 0..G.total() {
                for k in 0..G.total() {
                    assert_eq!(G.allowed(AttnType::Full, dir, q, k), k <= q);
                }
            }
        }
    }

    #[test]
    fn axial_row_in_text_to_image() {
        // Image index 4 = (row 1, col 1) at absolute position 3 + 4 = 7.
        let seen: Vec<usize> =
            (0..G.total()).filter(|&k| G.allowed(AttnType::AxialRow, Direction::T2i, 7, k)).collect();
        // All text (0,1,2) + image 3 (row 1, col 0) at 6 + itself at 7.
        assert_eq!(seen, vec![0, 1, 2, 6, 7]);
        let col: Vec<usize> =
            (0..G.total()).filter(|&k| G.allowed(AttnType::AxialCol, Direction::T2i, 7, k)).collect();
        // Image 1 (row 0, col 1) at 4 + itself.
        assert_eq!(col, vec![0, 1, 2, 4, 7]);
    }

    #[test]
    fn conv_like_in_image_to_text() {
        // Image part first: image index 8 = (2,2); 3×3 kernel ⇒ rows/cols 1..=2, causal: 4, 5, 7, 8.
        let seen: Vec<usize> =
            (0..G.total()).filter(|&k| G.allowed(AttnType::ConvLike, Direction::I2t, 8, k)).collect();
        assert_eq!(seen, vec![4, 5, 7, 8]);
        // A text query (position 10) sees every image token and earlier text.
        let text: Vec<usize> =
            (0..G.total()).filter(|&k| G.allowed(AttnType::ConvLike, Direction::I2t, 10, k)).collect();
        assert_eq!(text, (0..=10).collect::<Vec<_>>());
    }

    #[test]
    fn segments_mark_the_condition() {
        let t2i: Vec<i64> = (0..G.total()).map(|p| G.segment(Direction::T2i, p)).collect();
        assert_eq!(t2i, vec![0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        let i2t: Vec<i64> = (0..G.total()).map(|p| G.segment(Direction::I2t, p)).collect();
        assert_eq!(i2t, vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
    }

    /// Two grids (4×4 then 2×2, AugVAE-ML's fine-to-coarse order) after 2 text tokens: the sparse
    /// patterns hold within a grid, and a coarse-grid query sees every earlier fine-grid token.
    #[test]
    fn several_grids_keep_their_patterns_per_grid() {
        let g = Geometry { text_len: 2, sides: vec![4, 2], kernel: 3 };
        assert_eq!((g.image_len(), g.total()), (20, 22));
        // Fine grid index 5 = (row 1, col 1) at position 7: its row on the fine grid.
        let seen: Vec<usize> =
            (0..g.total()).filter(|&k| g.allowed(AttnType::AxialRow, Direction::T2i, 7, k)).collect();
        assert_eq!(seen, vec![0, 1, 6, 7]);
        // Coarse index 3 = (row 1, col 1) of the 2×2 grid, image index 19, position 21: all text,
        // all 16 fine tokens, and coarse (1, 0) at 20 and itself (its row).
        let seen: Vec<usize> =
            (0..g.total()).filter(|&k| g.allowed(AttnType::AxialRow, Direction::T2i, 21, k)).collect();
        let mut want: Vec<usize> = (0..18).collect();
        want.extend([20, 21]);
        assert_eq!(seen, want);
        // Column pattern on the coarse grid: (0, 1) at index 17 (position 19) and itself.
        let seen: Vec<usize> =
            (0..g.total()).filter(|&k| g.allowed(AttnType::AxialCol, Direction::T2i, 21, k)).collect();
        let mut want: Vec<usize> = (0..18).collect();
        want.extend([19, 21]);
        assert_eq!(seen, want);
    }
}
