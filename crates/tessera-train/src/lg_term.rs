//! LG-VQ (spec §5) on any tokenizer: the `[lg]` section of a VQGAN, TE-VQGAN, ViT-VQGAN or AugVAE
//! run adds `α·L_gsa + β·L_mtp + γ·L_ras` to its training loss through [`ExtraLoss`]. The heads'
//! variables live in the tokenizer's `VarStore` under `lg.` (trained by its optimiser, saved in
//! its checkpoints, ignored when the tokenizer is used frozen); the text encoder is frozen and
//! read from the data cache, never saved.

use std::cell::Cell;
use std::path::Path;

use tch::nn::{self, VarStore};
use tch::{Device, Tensor};
use tessera_data::encoder_text::EncoderTokenizer;
use tessera_models::lg::{LgConfig, LgHeads, TextBatch};
use tessera_models::text_encoder::TextEncoder;
use tessera_models::tokenizer::{ExtraLoss, ExtraTerm, LossInputs};

use crate::error::{Result, TrainError};

/// LG-VQ's three losses for one tokenizer, with the frozen text encoder.
pub struct LgTerm {
    heads: LgHeads,
    _encoder_vs: VarStore,
    encoder: Box<dyn TextEncoder>,
    tokenizer: EncoderTokenizer,
    /// What encoder this is, for logs and reports.
    pub encoder_name: String,
    device: Device,
    truncation_warned: Cell<bool>,
}

impl LgTerm {
    /// The heads under `p` (the tokenizer's `lg` path) for `codes` code positions of `code_dim`
    /// channels.
    pub fn new(p: &nn::Path, config: &LgConfig, codes: i64, code_dim: i64, root: &Path) -> Result<Self> {
        config.check().map_err(TrainError::Invalid)?;
        let device = p.device();
        let opened = crate::lg_encoder::open_encoder(config, root, device)?;
        let (encoder_vs, encoder, tokenizer, encoder_name) =
            (opened.vs, opened.encoder, opened.tokenizer, opened.name);
        let vocab = encoder.token_embedding().size()[0];
        let heads = LgHeads::new(p, config.clone(), codes, code_dim, encoder.dim(), vocab);
        tracing::info!("LG-VQ losses with {encoder_name}, {} caption tokens", config.text_len);
        Ok(Self {
            heads,
            _encoder_vs: encoder_vs,
            encoder,
            tokenizer,
            encoder_name,
            device,
            truncation_warned: Cell::new(false),
        })
    }

    fn tensor(&self, v: &[i64], b: usize, l: usize) -> Tensor {
        Tensor::from_slice(v).view([b as i64, l as i64]).to_device(self.device)
    }

    /// The features code↔caption retrieval compares, without gradients: the global image token
    /// of each image's codes and the encoder's sentence feature of its caption.
    ///
    /// # Shapes
    /// `codes: (B, N, C)` → `(B, D)`, `(B, D)`
    pub fn retrieval_features(&self, codes: &Tensor, captions: &[String]) -> Result<(Tensor, Tensor)> {
        let batch = self.tokenizer.encode(captions)?;
        let (b, l) = (batch.batch, batch.len);
        let (ids, pad) = (self.tensor(&batch.ids, b, l), self.tensor(&batch.attention, b, l));
        Ok(tch::no_grad(|| {
            let image = self.heads.global_token(&codes.transpose(1, 2).unsqueeze(-1));
            (image, self.encoder.encode(&ids, &pad).sentence)
        }))
    }
}

impl ExtraLoss for LgTerm {
    fn terms(&self, inputs: &LossInputs) -> std::result::Result<Vec<ExtraTerm>, String> {
        let caps = inputs.captions;
        if caps.len() as i64 != inputs.codes.size()[0] || caps.iter().all(|c| c.trim().is_empty()) {
            return Err("[lg] aligns codes with captions, and this batch has none: use captioned data \
                 (mnist64, fashion-mnist, tuxpaint, caption-folder) or remove [lg]"
                .into());
        }
        let batch = self.tokenizer.encode(caps).map_err(|e| e.to_string())?;
        if let (Some(&i), false) = (batch.truncated.first(), self.truncation_warned.get()) {
            tracing::warn!(
                "caption longer than lg.text_len = {} encoder tokens was cut (kept its end token): {:?}",
                batch.len,
                caps[i]
            );
            self.truncation_warned.set(true);
        }
        let (b, l) = (batch.batch, batch.len);
        let (ids, pad, special) = (
            self.tensor(&batch.ids, b, l),
            self.tensor(&batch.attention, b, l),
            self.tensor(&batch.special, b, l),
        );
        let feats = tch::no_grad(|| self.encoder.encode(&ids, &pad));
        let keep = self.heads.config.mask_ratio.keep_mask(&pad, &special);
        let text = TextBatch {
            ids: &ids,
            pad: &pad,
            keep: &keep,
            tokens: &feats.tokens,
            sentence: &feats.sentence,
            token_embedding: self.encoder.token_embedding(),
        };
        // (B, N, C) codes as the (B, C, N, 1) latent the heads flatten back to N positions.
        let quant = inputs.codes.transpose(1, 2).unsqueeze(-1);
        let l = self.heads.losses(&quant, &text, true);
        let c = &self.heads.config;
        Ok(vec![
            ExtraTerm { name: "lg_gsa".into(), value: l.gsa, weight: c.gsa_weight },
            ExtraTerm { name: "lg_mtp".into(), value: l.mtp, weight: c.mtp_weight },
            ExtraTerm { name: "lg_ras".into(), value: l.ras, weight: c.ras_weight },
        ])
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Code↔caption retrieval ([`tessera_eval::retrieval`]) of an LG run on the first `n` validation
/// images of `data`: `codes` gives a batch's straight-through codes `(B, N, C)` in eval mode.
pub fn retrieval(
    lg: &LgTerm,
    data: &tessera_data::DataConfig,
    root: &Path,
    n: usize,
    mut codes: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<tessera_eval::retrieval::RetrievalScores> {
    use tessera_data::{DataLoader, LoaderConfig, Split, Subset};
    let val: std::sync::Arc<dyn tessera_data::Dataset> =
        std::sync::Arc::new(Subset::new(data.open(Split::Validation, root)?, n));
    let loader = DataLoader::new(val, LoaderConfig::eval(50), lg.device);
    let (mut images, mut texts, mut captions) = (Vec::new(), Vec::new(), Vec::new());
    for b in loader.epoch(0) {
        let b = b?;
        let (i, t) = lg.retrieval_features(&tch::no_grad(|| codes(&b.images))?, &b.captions)?;
        images.push(i);
        texts.push(t);
        captions.extend(b.captions);
    }
    if captions.is_empty() {
        return Err(TrainError::Invalid("retrieval: the validation split is empty".into()));
    }
    Ok(tessera_eval::retrieval::retrieval(
        &Tensor::cat(&images, 0),
        &Tensor::cat(&texts, 0),
        &captions,
        1000,
        0,
    ))
}
