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
pub const KINDS: [&str; 3] = [crate::tokenizer::KIND, crate::vit_tokenizer::KIND, crate::augvae::KIND];

/// A frozen tokenizer with the variables it owns.
pub struct FrozenTokenizer {
    _vs: VarStore,
    inner: Box<dyn ImageTokenizer>,
    /// The run it was loaded from.
    pub dir: PathBuf,
    /// The run's `[data]` section (every tokenizer kind has one): what it was trained and
    /// validated on.
    pub data: tessera_data::DataConfig,
    /// The run's `[eval] batch_size` (100 where it has none).
    pub eval_batch_size: usize,
}

/// The `[data]` section and `[eval] batch_size` of a stored run config of any kind (defaults where
/// it has none).
fn data_section(config_toml: &str, origin: &Path) -> Result<(tessera_data::DataConfig, usize)> {
    let table: toml::Table =
        toml::from_str(config_toml).map_err(|e| TrainError::Invalid(format!("{}: {e}", origin.display())))?;
    let data = table.get("data").map(|d| toml::to_string(d).unwrap_or_default()).unwrap_or_default();
    let data = tessera_core::config::load_str(&data, &[], &format!("{} [data]", origin.display()))
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let batch = table.get("eval").and_then(|e| e.get("batch_size")).and_then(|b| b.as_integer());
    Ok((data, batch.filter(|&b| b > 0).map_or(100, |b| b as usize)))
}

/// Open the tokenizer run `dir` (`checkpoints/last.safetensors`) for encoding and decoding.
pub fn load_tokenizer(dir: &Path, device: Device) -> Result<FrozenTokenizer> {
    let ckpt = dir.join("checkpoints/last.safetensors");
    let ck: checkpoint::Checkpoint<Meta> = checkpoint::load(&ckpt)?;
    let (data, eval_batch_size) = data_section(&ck.meta.config, &ckpt)?;
    let (mut vs, inner): (VarStore, Box<dyn ImageTokenizer>) = match ck.meta.kind.as_str() {
        "vqgan" => {
            let config: TokenizerRunConfig =
                tessera_core::config::load_str(&ck.meta.config, &[], &ckpt.display().to_string())
                    .map_err(|e| TrainError::Invalid(e.to_string()))?;
            let vs = VarStore::new(device);
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
            (vs, Box::new(model))
        }
        crate::vit_tokenizer::KIND => {
            let (vs, model) = crate::vit_tokenizer::load_model(&ck, device)?;
            (vs, Box::new(model))
        }
        crate::augvae::KIND => {
            let (vs, model) = crate::augvae::load_model(&ck, device)?;
            (vs, Box::new(model))
        }
        other => {
            return Err(TrainError::Mismatch {
                path: ckpt,
                reason: format!("it is a `{other}` run; the tokenizer kinds Tessera can load are {KINDS:?}"),
            })
        }
    };
    vs.freeze();
    Ok(FrozenTokenizer { _vs: vs, inner, dir: dir.to_path_buf(), data, eval_batch_size })
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
