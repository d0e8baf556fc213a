//! A trained tokenizer run opened for inference only: the model and its weights (the weight EMA
//! where the run kept one, as evaluation uses), no discriminator, perceptual net, optimisers or
//! data loaders. The run's kind picks the implementation; an unknown kind is refused.

use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Tensor};
use tessera_models::tokenizer::{CodeLayout, ImageTokenizer, TokenizerError};
use tessera_models::vqgan::VqModel;

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::runner::Meta;
use crate::tokenizer::TokenizerRunConfig;

/// Tokenizer kinds [`load_tokenizer`] can open.
pub const KINDS: [&str; 1] = ["vqgan"];

/// A frozen tokenizer with the variables it owns.
pub struct FrozenTokenizer {
    _vs: VarStore,
    inner: Box<dyn ImageTokenizer>,
    /// The run it was loaded from.
    pub dir: PathBuf,
}

/// Open the tokenizer run `dir` (`checkpoints/last.safetensors`) for encoding and decoding.
pub fn load_tokenizer(dir: &Path, device: Device) -> Result<FrozenTokenizer> {
    let ckpt = dir.join("checkpoints/last.safetensors");
    let ck: checkpoint::Checkpoint<Meta> = checkpoint::load(&ckpt)?;
    match ck.meta.kind.as_str() {
        "vqgan" => {
            let config: TokenizerRunConfig =
                tessera_core::config::load_str(&ck.meta.config, &[], &ckpt.display().to_string())
                    .map_err(|e| TrainError::Invalid(e.to_string()))?;
            let mut vs = VarStore::new(device);
            let model = VqModel::new(&vs.root(), config.model.clone(), config.quantizer.clone())?;
            checkpoint::restore_vars(&vs, "model.", &ck.tensors, &ckpt)?;
            if config.optim.weight_ema.is_some() {
                // The EMA shadow weights are the ones the tokenizer task encodes and evaluates with.
                tch::no_grad(|| {
                    for (name, mut t) in vs.variables() {
                        if let Some(shadow) = ck.tensors.get(&format!("ema.{name}")) {
                            t.copy_(shadow);
                        }
                    }
                });
            }
            vs.freeze();
            Ok(FrozenTokenizer { _vs: vs, inner: Box::new(model), dir: dir.to_path_buf() })
        }
        other => Err(TrainError::Mismatch {
            path: ckpt,
            reason: format!("it is a `{other}` run; the tokenizer kinds Tessera can load are {KINDS:?}"),
        }),
    }
}

impl ImageTokenizer for FrozenTokenizer {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn num_codes(&self) -> usize {
        self.inner.num_codes()
    }
    fn layout(&self) -> CodeLayout {
        self.inner.layout()
    }
    fn resolution(&self) -> i64 {
        self.inner.resolution()
    }
    fn encode(&mut self, images: &Tensor) -> std::result::Result<Tensor, TokenizerError> {
        self.inner.encode(images)
    }
    fn decode(&mut self, codes: &Tensor) -> Tensor {
        self.inner.decode(codes)
    }
}
