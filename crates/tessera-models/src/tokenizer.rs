//! One interface for every image tokenizer (VQGAN and TE-VQGAN today; ViT-VQGAN, AugVAE and
//! LG-VQ next): images in, code indices out, and back.
//!
//! Codes are laid out as one or more grids ([`CodeLayout`]), each row-major, concatenated in the
//! layout's order (AugVAE's levels need several; VQGAN has one). Stage 2 and evaluation see only
//! this trait, so a new tokenizer needs no change there.

use tch::Tensor;

use crate::vqgan::VqModel;

/// Where a tokenizer's codes sit: grids of `(rows, cols)`, concatenated in this order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeLayout {
    pub grids: Vec<(i64, i64)>,
}

impl CodeLayout {
    /// One `side × side` grid.
    pub fn square(side: i64) -> Self {
        Self { grids: vec![(side, side)] }
    }

    /// Codes per image.
    pub fn len(&self) -> i64 {
        self.grids.iter().map(|(h, w)| h * w).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The side of the only grid, if there is exactly one and it is square.
    pub fn single_square(&self) -> Option<i64> {
        match self.grids.as_slice() {
            [(h, w)] if h == w => Some(*h),
            _ => None,
        }
    }
}

/// An error of a tokenizer's forward pass that user input can reach (bad shapes, dtypes).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokenizerError(pub String);

/// Refuse `images` unless they are `(B, 3, side, side)`; every tokenizer's `encode` checks this
/// first. Returns the batch size.
pub fn check_images(images: &Tensor, side: i64) -> Result<i64, TokenizerError> {
    let size = images.size();
    if size.len() != 4 || size[1] != 3 || size[2] != side || size[3] != side {
        return Err(TokenizerError(format!(
            "images of shape {size:?}, but this tokenizer takes (B, 3, {side}, {side})"
        )));
    }
    Ok(size[0])
}

/// A trained, frozen image tokenizer.
pub trait ImageTokenizer {
    /// The run kind this tokenizer is saved under (`"vqgan"`).
    fn kind(&self) -> &'static str;
    /// Codebook size: indices are in `0..num_codes`.
    fn num_codes(&self) -> usize;
    fn layout(&self) -> CodeLayout;
    /// Side of the square images it takes.
    fn resolution(&self) -> i64;
    /// Code indices of images, eval mode, no gradient.
    ///
    /// # Shapes
    /// `images: (B, 3, R, R)` in `[-1, 1]` → `(B, layout.len())` int64
    fn encode(&mut self, images: &Tensor) -> Result<Tensor, TokenizerError>;
    /// Images in `[-1, 1]` from code indices, eval mode, no gradient.
    ///
    /// # Shapes
    /// `codes: (B, layout.len())` → `(B, 3, R, R)`
    fn decode(&mut self, codes: &Tensor) -> Tensor;
}

impl ImageTokenizer for VqModel {
    fn kind(&self) -> &'static str {
        "vqgan"
    }

    fn num_codes(&self) -> usize {
        self.quantize.config.num_codes as usize
    }

    fn layout(&self) -> CodeLayout {
        CodeLayout::square(self.config.latent_side())
    }

    fn resolution(&self) -> i64 {
        self.config.resolution
    }

    fn encode(&mut self, images: &Tensor) -> Result<Tensor, TokenizerError> {
        let b = check_images(images, self.config.resolution)?;
        let out = tch::no_grad(|| VqModel::encode(self, images, false));
        Ok(out.map_err(|e| TokenizerError(e.to_string()))?.indices.view([b, -1]))
    }

    fn decode(&mut self, codes: &Tensor) -> Tensor {
        let side = self.config.latent_side();
        tch::no_grad(|| self.decode_indices(&codes.view([-1, side, side])).clamp(-1.0, 1.0))
    }
}

/// What an extra training term sees of one batch, whatever the tokenizer.
pub struct LossInputs<'a> {
    /// `(B, 3, H, W)` in `[-1, 1]`.
    pub images: &'a Tensor,
    /// One caption per image (empty when the data has none).
    pub captions: &'a [String],
    /// The tokenizer's reconstruction `(B, 3, H, W)`.
    pub reconstruction: &'a Tensor,
    /// The straight-through codes `z + sg(z_q − z)`, `(B, N, C)` with the `N` code positions in
    /// raster order (AugVAE: its finest quantised level). Gradients through them reach the
    /// encoder, not the codebook.
    pub codes: &'a Tensor,
}

/// One extra term: `L_G += weight · value`; the log shows `loss/<name>` = `value`.
pub struct ExtraTerm {
    pub name: String,
    pub value: Tensor,
    pub weight: f64,
}

/// Terms added to a tokenizer's training loss (the hook LG-VQ's losses use). They may own
/// trainable variables in the tokenizer's `VarStore`, which are then optimised and checkpointed
/// with it.
pub trait ExtraLoss: std::any::Any {
    /// The batch's terms; each must keep its graph to what it trains. An error names the input.
    fn terms(&self, inputs: &LossInputs) -> Result<Vec<ExtraTerm>, String>;
    /// The term as `Any`, so that evaluation can reach a term's own modules (LG-VQ's heads).
    fn as_any(&self) -> &dyn std::any::Any;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vqgan::VqganConfig;
    use tch::{nn::VarStore, Device, Kind};
    use tessera_quant::VqConfig;

    #[test]
    fn vqgan_through_the_interface() {
        let vs = VarStore::new(Device::Cpu);
        let cfg = VqganConfig {
            ch: 32,
            ch_mult: vec![1, 2],
            attn_resolutions: vec![],
            resolution: 16,
            z_channels: 8,
            ..VqganConfig::default()
        };
        let q = VqConfig { num_codes: 16, dim: 8, ..VqConfig::default() };
        let mut m = VqModel::new(&vs.root(), cfg, q).unwrap();
        let tok: &mut dyn ImageTokenizer = &mut m;
        assert_eq!((tok.kind(), tok.num_codes(), tok.resolution()), ("vqgan", 16, 16));
        assert_eq!(tok.layout(), CodeLayout::square(8));
        assert_eq!(tok.layout().len(), 64);
        let x = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let codes = tok.encode(&x).unwrap();
        assert_eq!(codes.size(), [2, 64]);
        assert_eq!(codes.kind(), Kind::Int64);
        let y = tok.decode(&codes);
        assert_eq!(y.size(), [2, 3, 16, 16]);
        assert!(y.abs().max().double_value(&[]) <= 1.0);
        // Wrong shapes are errors that name what was expected, not panics.
        for bad in [vec![1, 3, 16], vec![1, 4, 16, 16], vec![1, 3, 8, 8]] {
            let e = tok.encode(&Tensor::zeros(bad.as_slice(), (Kind::Float, Device::Cpu))).unwrap_err();
            assert!(e.to_string().contains("(B, 3, 16, 16)"), "{e}");
        }
    }

    #[test]
    fn layouts_count_codes_over_all_grids() {
        let l = CodeLayout { grids: vec![(4, 4), (2, 2)] };
        assert_eq!(l.len(), 20);
        assert_eq!(l.single_square(), None);
        assert_eq!(CodeLayout::square(8).single_square(), Some(8));
    }
}
