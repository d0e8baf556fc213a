//! `tessera import vit-vqgan`: an enhancing-transformers ViT-VQGAN checkpoint
//! (`enhancing/modules/stage1/vitvqgan.py` `ViTVQ`@e1c185d, a Lightning `.ckpt` or its
//! state_dict) as a Tessera run at step 0. Tessera's variables carry upstream's state_dict names,
//! so every model tensor is taken by name: `encoder.…`, `decoder.…`, `pre_quant.…`,
//! `post_quant.…`, `quantizer.embedding.weight` and, when present, `loss.discriminator.…` (the
//! StyleGAN2 discriminator, to resume training). LPIPS (`loss.perceptual_loss.…`) is skipped: it
//! is loaded from `loss.perceptual_weights` when the config uses it.

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Tensor};

use super::{VitRunConfig, VitTrainer, KIND};
use crate::error::Result;
use crate::tokenizer::{import_vars, write_imported_run, ImportReport};

/// Import `tensors` (from [`crate::tokenizer::read_checkpoint_tensors`]) into a new run in `dir`
/// built from `config`, which must describe the checkpoint's architecture.
pub fn import(
    config: VitRunConfig,
    tensors: &HashMap<String, Tensor>,
    allow_unused: bool,
    device: Device,
    dir: &Path,
) -> Result<ImportReport> {
    if config.lg.is_some() {
        return Err(crate::error::TrainError::Invalid(
            "an imported ViT-VQGAN checkpoint has no LG-VQ heads: import without [lg]".into(),
        ));
    }
    let toml = tessera_core::config::to_toml(&config);
    let trainer = VitTrainer::new(config, device, Path::new("."))?;
    let hint = "is [model] (image size, patch size, dims, depths) the one it was trained with?";
    let stores = [(&trainer.vs, false), (&trainer.disc_vs, true)];
    let report = import_vars(&stores, tensors, allow_unused, hint)?;
    write_imported_run(dir, &trainer.state(), KIND, &toml)?;
    Ok(report)
}
