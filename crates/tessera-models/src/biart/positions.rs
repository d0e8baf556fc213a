//! Image position embeddings (spec §3.1 `pe_type`) over the tokenizer's code grids: one square
//! grid (VQGAN, ViT-VQGAN, AugVAE-SL), or several concatenated fine to coarse (AugVAE-ML's levels,
//! spec §4.1). Each grid has its own positions: Bi-DALL-E's fixed 2-D sinusoid, or a learned
//! axial table (row + column); with several grids a learned per-grid embedding is added, so the
//! same row and column on two grids differ.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Image position embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImagePositions {
    /// 2-D sinusoid, not trained (Bi-DALL-E's run config).
    Fixed,
    /// Learned row table + learned column table.
    Learned,
}

/// Bi-DALL-E's `FixedPositionalEmbedding2D` (spec §3.1): with `c = ⌈dim/4⌉·2` and
/// `f = 1/10000^(2i/c)`, channels `[sin(x·f), cos(x·f), sin(y·f), cos(y·f)]` (x = column,
/// y = row), cut to `dim`, flattened row-major.
///
/// # Shapes
/// returns `(side², dim)`
pub fn fixed_2d_positions(side: usize, dim: usize) -> Tensor {
    let c = dim.div_ceil(4) * 2;
    let freqs: Vec<f64> = (0..c).step_by(2).map(|i| 1.0 / 10000f64.powf(i as f64 / c as f64)).collect();
    let mut out = Vec::with_capacity(side * side * dim);
    for y in 0..side {
        for x in 0..side {
            let mut row = Vec::with_capacity(2 * c);
            for pos in [x as f64, y as f64] {
                row.extend(freqs.iter().map(|f| (pos * f).sin()));
                row.extend(freqs.iter().map(|f| (pos * f).cos()));
            }
            out.extend(row[..dim].iter().map(|&v| v as f32));
        }
    }
    Tensor::from_slice(&out).view([(side * side) as i64, dim as i64])
}

#[derive(Debug)]
enum GridPos {
    Fixed(Tensor),
    Learned { side: i64, row: Tensor, col: Tensor },
}

/// The positions of every image token. Parameter names: `image_pos_{row,col}` for the first grid
/// and `image_pos_{row,col}_{g}` for grid g ≥ 1 (learned positions only), `image_grid_emb`
/// (several grids only).
#[derive(Debug)]
pub(crate) struct ImagePos {
    grids: Vec<GridPos>,
    grid_emb: Option<Tensor>,
}

impl ImagePos {
    pub fn new(p: &nn::Path, kind: ImagePositions, sides: &[usize], dim: usize) -> Self {
        let init = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        let c = dim as i64;
        let grids = sides
            .iter()
            .enumerate()
            .map(|(g, &side)| match kind {
                ImagePositions::Fixed => GridPos::Fixed(fixed_2d_positions(side, dim).to_device(p.device())),
                ImagePositions::Learned => {
                    let suffix = if g == 0 { String::new() } else { format!("_{g}") };
                    let s = side as i64;
                    GridPos::Learned {
                        side: s,
                        row: p.var(&format!("image_pos_row{suffix}"), &[s, c], init),
                        col: p.var(&format!("image_pos_col{suffix}"), &[s, c], init),
                    }
                }
            })
            .collect();
        let grid_emb = (sides.len() > 1).then(|| p.var("image_grid_emb", &[sides.len() as i64, c], init));
        ImagePos { grids, grid_emb }
    }

    /// # Shapes
    /// returns `(Σ side², dim)`, grids in order, each row-major
    pub fn embeddings(&self) -> Tensor {
        let parts: Vec<Tensor> = self
            .grids
            .iter()
            .enumerate()
            .map(|(g, grid)| {
                let t = match grid {
                    GridPos::Fixed(t) => t.shallow_clone(),
                    GridPos::Learned { side, row, col } => {
                        (row.unsqueeze(1) + col.unsqueeze(0)).view([side * side, row.size()[1]])
                    }
                };
                match &self.grid_emb {
                    Some(e) => t + e.get(g as i64),
                    None => t,
                }
            })
            .collect();
        if parts.len() == 1 {
            parts.into_iter().next().expect("one grid")
        } else {
            Tensor::cat(&parts, 0)
        }
    }
}
