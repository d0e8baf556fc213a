//! Hidden features of the image tokens, for linear probes (ViT-VQGAN §4.2, spec §9.4): VIM's
//! representation is the average over image positions of one block's output, as iGPT's.

use tch::Tensor;

use super::{Biart, Direction};

impl Biart {
    /// The output of the first `depth` blocks (1 ≤ depth ≤ `n_layer`) on the whole sequence for
    /// `dir`, averaged over the image positions. No dropout.
    ///
    /// With `dir = T2i` and an empty caption (`[CLS] [SEP]`) this is the unconditional model's
    /// view of the image, as the paper's probe of an unconditional VIM.
    ///
    /// # Shapes
    /// `text: (B, Lt)`, `codes: (B, Li)` → `(B, n_embd)`
    pub fn image_features(&self, dir: Direction, text: &Tensor, codes: &Tensor, depth: usize) -> Tensor {
        assert!(
            (1..=self.blocks.len()).contains(&depth),
            "probe depth {depth} outside 1..={}",
            self.blocks.len()
        );
        let seq = self.sequence(dir, text, codes);
        let keep = self.key_keep(dir, text);
        let total = seq.size()[1];
        let mut x = self.embed(&seq, dir, 0);
        for block in &self.blocks[..depth] {
            x = block.forward(&x, &self.block_mask(block.kind, dir, 0, total, &keep), None, false);
        }
        let li = self.geometry.image_len() as i64;
        let first = match dir {
            Direction::T2i => self.geometry.text_len as i64,
            Direction::I2t => 0,
        };
        x.narrow(1, first, li).mean_dim(1, false, x.kind())
    }
}
