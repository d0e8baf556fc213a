//! Translation equivariance of codes.
//!
//! **Trans_eq_acc** (TE-VQGAN `ShiftEqMetric`, spec §2.7): groups of five images show the same
//! digit at [centre, UL, UR, LL, LR]. With code maps of side h×w, crop
//! `C = idx_C[h/4 : h − h/4, w/4 : w − w/4]`, `UL = idx_UL[:h/2, :w/2]`, `UR = idx_UR[:h/2, w/2:]`,
//! `LL = idx_LL[h/2:, :w/2]`, `LR = idx_LR[h/2:, w/2:]`, and over all 10 unordered pairs count equal
//! codes: `acc = Σ 1[A = B] / Σ (h/2)(w/2)`. It measures shifts of 16 px, i.e. 16/f code cells,
//! which equals h/4 for 64×64 images, so it works for any f dividing 16.
//!
//! [`shifted_agreement`] generalises it: codes of an image and of a copy shifted by (dy, dx) code
//! cells (pixel shift / f) agree on their overlap.

use tch::{Kind, Tensor};

/// Accumulates `Trans_eq_acc` over groups.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TransEq {
    pub correct: i64,
    pub total: i64,
}

impl TransEq {
    /// Add one batch of groups.
    ///
    /// # Shapes
    /// `indices`: (5·G, h, w), group-major in [C, UL, UR, LL, LR] order
    pub fn add(&mut self, indices: &Tensor) {
        let (n, h, w) = indices.size3().expect("(5G, h, w) code maps");
        assert_eq!(n % 5, 0, "the translated set comes in groups of 5");
        let g = indices.view([n / 5, 5, h, w]);
        let (h2, w2, h4, w4) = (h / 2, w / 2, h / 4, w / 4);
        let crop = |k: i64, r: i64, c: i64| g.select(1, k).narrow(1, r, h2).narrow(2, c, w2);
        let crops = [crop(0, h4, w4), crop(1, 0, 0), crop(2, 0, w2), crop(3, h2, 0), crop(4, h2, w2)];
        for a in 0..5 {
            for b in a + 1..5 {
                self.correct += crops[a].eq_tensor(&crops[b]).sum(Kind::Int64).int64_value(&[]);
                self.total += (n / 5) * h2 * w2;
            }
        }
    }

    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }
}

/// Fraction of equal codes between `a` and `b` where `b` is the content of `a` moved by
/// (dy, dx) code cells: compares `a[i, j]` with `b[i + dy, j + dx]` on the overlap.
///
/// # Shapes
/// `a`, `b`: (B, h, w) → scalar in [0, 1]
pub fn shifted_agreement(a: &Tensor, b: &Tensor, dy: i64, dx: i64) -> f64 {
    let (_, h, w) = a.size3().expect("(B, h, w) code maps");
    let (oh, ow) = (h - dy.abs(), w - dx.abs());
    assert!(oh > 0 && ow > 0, "shift ({dy}, {dx}) leaves no overlap in a {h}×{w} map");
    let win = |t: &Tensor, r: i64, c: i64| t.narrow(1, r, oh).narrow(2, c, ow);
    let (ra, ca) = ((-dy).max(0), (-dx).max(0));
    let (rb, cb) = (dy.max(0), dx.max(0));
    win(a, ra, ca).eq_tensor(&win(b, rb, cb)).to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(groups: &[[[i64; 4]; 4]]) -> Tensor {
        let flat: Vec<i64> = groups.iter().flat_map(|m| m.iter().flat_map(|r| r.iter().copied())).collect();
        Tensor::from_slice(&flat).view([groups.len() as i64, 4, 4])
    }

    #[test]
    fn perfectly_equivariant_codes_score_one() {
        // h = w = 4: C crop rows/cols 1..3, quadrant crops 2×2. A "digit" with codes [[1,2],[3,4]]
        // everywhere it appears, 0 elsewhere.
        let d = [[1, 2], [3, 4]];
        let place = |r: usize, c: usize| {
            let mut m = [[0i64; 4]; 4];
            for i in 0..2 {
                for j in 0..2 {
                    m[r + i][c + j] = d[i][j];
                }
            }
            m
        };
        let idx = maps(&[place(1, 1), place(0, 0), place(0, 2), place(2, 0), place(2, 2)]);
        let mut t = TransEq::default();
        t.add(&idx);
        assert_eq!(t, TransEq { correct: 40, total: 40 });
        assert_eq!(t.accuracy(), 1.0);
    }

    #[test]
    fn one_flipped_code_costs_four_of_forty() {
        // The UL copy has one wrong code: it disagrees with the 4 other crops at one cell.
        let z = [[0i64; 4]; 4];
        let mut ul = z;
        ul[0][1] = 9;
        let idx = maps(&[z, ul, z, z, z]);
        let mut t = TransEq::default();
        t.add(&idx);
        assert_eq!(t.correct, 40 - 4);
        assert!((t.accuracy() - 0.9).abs() < 1e-12);
    }

    #[test]
    fn shifted_agreement_on_the_overlap() {
        let a = Tensor::arange(16, (Kind::Int64, tch::Device::Cpu)).view([1, 4, 4]);
        // b = a moved down by 1 row, right by 2 columns.
        let b = Tensor::full([1, 4, 4], -1, (Kind::Int64, tch::Device::Cpu));
        let b2 = b.copy();
        b2.narrow(1, 1, 3).narrow(2, 2, 2).copy_(&a.narrow(1, 0, 3).narrow(2, 0, 2));
        assert_eq!(shifted_agreement(&a, &b2, 1, 2), 1.0);
        assert!(shifted_agreement(&a, &b2, 0, 0) < 0.2);
    }
}
