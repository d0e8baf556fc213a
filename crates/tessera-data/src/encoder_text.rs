//! Captions tokenised for a pretrained text encoder, with the encoder's own `tokenizer.json`
//! (all-MiniLM-L6-v2: BERT's uncased WordPiece, `[CLS] … [SEP]`), cut and padded to a fixed length
//! (LG-VQ's `clip_text_truncate_len`, 30). A cut caption keeps its `[SEP]` last, as LG-VQ's
//! modified `clip.tokenize` keeps EOT last, and is reported so callers can warn.

use std::path::Path;

use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{DataError, Result};

/// A batch of tokenised captions, row-major `(B, L)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderBatch {
    pub ids: Vec<i64>,
    /// 1 on tokens (special ones included), 0 on padding.
    pub attention: Vec<i64>,
    /// 1 on `[CLS]`/`[SEP]`-like tokens (never masked by LG-VQ's text masking), else 0.
    pub special: Vec<i64>,
    pub batch: usize,
    pub len: usize,
    /// Indices of the captions that were cut to fit.
    pub truncated: Vec<usize>,
}

/// A pretrained encoder's tokenizer with a fixed length.
pub struct EncoderTokenizer {
    inner: Tokenizer,
    len: usize,
}

impl EncoderTokenizer {
    /// Load `tokenizer.json` and fix every encoding at `len` tokens (cut or padded).
    pub fn load(path: &Path, len: usize) -> Result<Self> {
        if len < 2 {
            return Err(DataError::Invalid(format!("text length {len}: at least 2 ([CLS] and [SEP])")));
        }
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| DataError::Tokenizer(format!("{}: {e}", path.display())))?;
        let pad = inner.get_padding().cloned().unwrap_or_default();
        inner
            .with_truncation(Some(TruncationParams { max_length: len, ..Default::default() }))
            .map_err(|e| DataError::Tokenizer(format!("{}: {e}", path.display())))?;
        inner.with_padding(Some(PaddingParams { strategy: PaddingStrategy::Fixed(len), ..pad }));
        Ok(Self { inner, len })
    }

    /// The tokenizer's vocabulary size (special tokens included): ids are below it.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The fixed length `L`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: `L ≥ 2`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Tokenise `captions` to `(B, L)`.
    pub fn encode(&self, captions: &[String]) -> Result<EncoderBatch> {
        let mut out = EncoderBatch {
            ids: Vec::with_capacity(captions.len() * self.len),
            attention: Vec::with_capacity(captions.len() * self.len),
            special: Vec::with_capacity(captions.len() * self.len),
            batch: captions.len(),
            len: self.len,
            truncated: Vec::new(),
        };
        for (i, c) in captions.iter().enumerate() {
            let e = self.inner.encode(c.as_str(), true).map_err(|e| DataError::Tokenizer(e.to_string()))?;
            if !e.get_overflowing().is_empty() {
                out.truncated.push(i);
            }
            out.ids.extend(e.get_ids().iter().map(|&v| i64::from(v)));
            out.attention.extend(e.get_attention_mask().iter().map(|&v| i64::from(v)));
            let specials = e.get_special_tokens_mask().iter().zip(e.get_attention_mask());
            out.special.extend(specials.map(|(&s, &a)| i64::from(s == 1 && a == 1)));
        }
        Ok(out)
    }
}
