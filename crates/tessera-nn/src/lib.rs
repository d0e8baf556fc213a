//! Layers on tch shared by Tessera's models.
//!
//! - [`conv`]: 3×3 convolutions with zero or replication padding (TE-VQGAN, spec §2.4).
//! - [`blocks`]: taming's ResnetBlock, AttnBlock, Downsample / BlurPool variants, Upsample (spec §1.2, §2.4).
//! - [`optim`]: Adam / AdamW whose state is a list of named tensors, so checkpoints hold it.
//! - [`ema`]: an exponential moving average of weights.
//! - [`weights`]: named tensors copied into a `VarStore`, each checked by name and shape.

pub mod blocks;
pub mod conv;
pub mod ema;
pub mod optim;
pub mod weights;

/// `x·sigmoid(x)` (taming's `nonlinearity`).
pub fn swish(x: &tch::Tensor) -> tch::Tensor {
    x * x.sigmoid()
}
