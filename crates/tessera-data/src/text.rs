//! The text tokenizer of Bi-directional DALL-E (spec §2.6, §3.1): byte-pair encoding trained on the
//! caption corpus with Hugging Face `tokenizers`, Lowercase normalizer, Whitespace pre-tokenizer,
//! special tokens `[PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3 [MASK]=4`, and BERT post-processing
//! (`[CLS] … [SEP]`). Saved as a standard `tokenizer.json` that Python's `tokenizers` also loads.
//!
//! Out-of-vocabulary input: characters never seen in training become `[UNK]`; words never seen
//! whole are split into known pieces. [`TextTokenizer::unknown_words`] lists the words that were not
//! in the training vocabulary as whole tokens, so commands can warn about them.

use std::path::Path;

use tokenizers::decoders::{wordpiece::WordPiece, DecoderWrapper};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::{utils::Lowercase, NormalizerWrapper};
use tokenizers::pre_tokenizers::{whitespace::Whitespace, PreTokenizerWrapper};
use tokenizers::processors::{bert::BertProcessing, PostProcessorWrapper};
use tokenizers::{AddedToken, Model, Tokenizer, TokenizerBuilder, TokenizerImpl};

use crate::error::{DataError, Result};

pub const PAD: i64 = 0;
pub const CLS: i64 = 1;
pub const SEP: i64 = 2;
pub const UNK: i64 = 3;
pub const MASK: i64 = 4;
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"];
/// The mark of a piece that continues a word ([`TextTokenizer::train_marked`]).
pub const SUBWORD_PREFIX: &str = "##";

fn tk_err(e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer(e.to_string())
}

/// A caption encoded to a fixed length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedText {
    /// `[CLS] tokens… [SEP] [PAD]…`, exactly the requested length.
    pub ids: Vec<i64>,
    /// `ids != [PAD]`.
    pub mask: Vec<bool>,
    /// Whether the caption was cut to fit (its `[SEP]` is kept).
    pub truncated: bool,
}

/// A BPE caption tokenizer.
#[derive(Debug)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl TextTokenizer {
    /// Train Bi-DALL-E's tokenizer on `corpus` (one caption per item) up to `vocab_size` tokens
    /// (fewer if the merges run out: the 17-word MNIST64x64 vocabulary ends near 78 tokens as in
    /// Bi-DALL-E). Its pieces carry no word boundary, so a word the vocabulary splits decodes with
    /// spaces inside ("black bird"); MNIST64x64's words are all whole tokens.
    pub fn train<I, S>(corpus: I, vocab_size: usize) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        Self::train_bpe(corpus, vocab_size, false)
    }

    /// As [`Self::train`], but pieces that continue a word are marked `##` (WordPiece's
    /// convention) and decoded by joining them to the word they continue: free-text captions
    /// ("A blackbird.") come back as words ("a blackbird."), not pieces ("a black bir d.").
    pub fn train_marked<I, S>(corpus: I, vocab_size: usize) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        Self::train_bpe(corpus, vocab_size, true)
    }

    fn train_bpe<I, S>(corpus: I, vocab_size: usize, mark_subwords: bool) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let mut model = BPE::builder().unk_token("[UNK]".into());
        let decoder: Option<DecoderWrapper> = if mark_subwords {
            model = model.continuing_subword_prefix(SUBWORD_PREFIX.into());
            Some(WordPiece::new(SUBWORD_PREFIX.into(), true).into())
        } else {
            None
        };
        let model = model.build().map_err(tk_err)?;
        let mut tk: TokenizerImpl<
            ModelWrapper,
            NormalizerWrapper,
            PreTokenizerWrapper,
            PostProcessorWrapper,
            DecoderWrapper,
        > = TokenizerBuilder::new()
            .with_model(model.into())
            .with_normalizer(Some(Lowercase.into()))
            .with_pre_tokenizer(Some(Whitespace {}.into()))
            .with_post_processor(Some(
                BertProcessing::new(("[SEP]".into(), SEP as u32), ("[CLS]".into(), CLS as u32)).into(),
            ))
            .with_decoder(decoder)
            .build()
            .map_err(tk_err)?;
        let specials: Vec<AddedToken> = SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect();
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(0)
            .show_progress(false)
            .special_tokens(specials);
        if mark_subwords {
            trainer = trainer.continuing_subword_prefix(SUBWORD_PREFIX.into());
        }
        let mut trainer: TrainerWrapper = trainer.build().into();
        tk.train(&mut trainer, corpus).map_err(tk_err)?;
        let inner = Tokenizer::from(tk);
        Self::check_specials(&inner)?;
        Ok(Self { inner })
    }

    /// Load a `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| DataError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::check_specials(&inner)?;
        Ok(Self { inner })
    }

    fn check_specials(inner: &Tokenizer) -> Result<()> {
        for (id, tok) in SPECIAL_TOKENS.iter().enumerate() {
            if inner.token_to_id(tok) != Some(id as u32) {
                return Err(DataError::Tokenizer(format!("special token {tok} must have id {id}")));
            }
        }
        Ok(())
    }

    /// Save as `tokenizer.json` (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.inner.to_string(true).map_err(tk_err)?;
        tessera_core::fsutil::write_atomic(path, json.as_bytes()).map_err(|e| DataError::io(path, e))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encode to exactly `len` ids: `[CLS] … [SEP]`, right-padded with `[PAD]`; a caption that is too
    /// long is cut and keeps its final `[SEP]`.
    pub fn encode(&self, text: &str, len: usize) -> Result<EncodedText> {
        assert!(len >= 2, "a text sequence needs room for [CLS] and [SEP]");
        let enc = self.inner.encode(text, true).map_err(tk_err)?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        let truncated = ids.len() > len;
        if truncated {
            ids.truncate(len - 1);
            ids.push(SEP);
        }
        ids.resize(len, PAD);
        let mask = ids.iter().map(|&i| i != PAD).collect();
        Ok(EncodedText { ids, mask, truncated })
    }

    /// Decode ids back to text, stopping at the first `[SEP]` and skipping special tokens
    /// (Bi-DALL-E's image→text post-processing, spec §3.5).
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let body: Vec<u32> = ids
            .iter()
            .take_while(|&&i| i != SEP)
            .filter(|&&i| i >= SPECIAL_TOKENS.len() as i64 && i < self.vocab_size() as i64)
            .map(|&i| i as u32)
            .collect();
        // Without a decoder (Bi-DALL-E's) the pieces are joined by spaces; the Whitespace
        // pre-tokenizer split punctuation off, so glue it back.
        let text = self.inner.decode(&body, true).map_err(tk_err)?;
        Ok(text.replace(" ,", ",").replace(" .", "."))
    }

    /// Words of `text` (after lower-casing and splitting) that are not whole tokens of the vocabulary.
    pub fn unknown_words(&self, text: &str) -> Vec<String> {
        let model = self.inner.get_model();
        text.to_lowercase()
            .split(|c: char| c.is_whitespace() || c.is_ascii_punctuation())
            .filter(|w| !w.is_empty() && model.token_to_id(w).is_none())
            .map(String::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        vec![
            "red 3 on the upper left, blue 7 on the lower right.".into(),
            "the number is green 0.".into(),
            "this is white 9 on the top right, and red 1 on the bottom left.".into(),
        ]
    }

    #[test]
    fn specials_have_fixed_ids_and_sequences_are_framed() {
        let tk = TextTokenizer::train(corpus().into_iter(), 1000).unwrap();
        let e = tk.encode("Red 3 on the upper left.", 12).unwrap();
        assert_eq!(e.ids.len(), 12);
        assert_eq!(e.ids[0], CLS);
        let sep = e.ids.iter().position(|&i| i == SEP).unwrap();
        assert!(e.ids[sep + 1..].iter().all(|&i| i == PAD));
        assert_eq!(e.mask.iter().filter(|&&m| m).count(), sep + 1);
        assert!(!e.truncated);
        assert_eq!(tk.decode(&e.ids).unwrap(), "red 3 on the upper left.");
    }

    #[test]
    fn truncation_keeps_sep_and_unknowns_are_reported() {
        let tk = TextTokenizer::train(corpus().into_iter(), 1000).unwrap();
        let e = tk.encode("red 3 on the upper left, blue 7 on the lower right.", 5).unwrap();
        assert!(e.truncated);
        assert_eq!(e.ids[4], SEP);
        assert_eq!(tk.unknown_words("The purple 3 on the LEFT"), vec!["purple"]);
        // 'x' never occurs in the corpus: it becomes [UNK].
        assert!(tk.encode("x", 4).unwrap().ids.contains(&UNK));
    }

    #[test]
    fn marked_pieces_decode_to_whole_words_and_unmarked_ones_do_not() {
        let corpus = ["a blackbird.", "a black cat.", "a bird on a bird table."];
        // A vocabulary too small to hold "blackbird" whole: it is split into pieces.
        let marked = TextTokenizer::train_marked(corpus.iter(), 40).unwrap();
        let e = marked.encode("A blackbird.", 16).unwrap();
        assert!(e.ids.len() > 5, "blackbird should be split at this vocabulary size");
        assert_eq!(marked.decode(&e.ids).unwrap(), "a blackbird.");
        assert_eq!(marked.unknown_words("a black blackbird"), vec!["blackbird"]);
        // Bi-DALL-E's tokenizer has no word boundaries: the same split decodes with spaces inside.
        let plain = TextTokenizer::train(corpus.iter(), 24).unwrap();
        let e = plain.encode("A blackbird.", 16).unwrap();
        assert!(e.ids.len() > 5, "blackbird should be split at this vocabulary size");
        let text = plain.decode(&e.ids).unwrap();
        assert_ne!(text, "a blackbird.");
        assert_eq!(text.replace(' ', ""), "ablackbird.");
        // The mark survives a save and load.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        marked.save(&p).unwrap();
        let back = TextTokenizer::load(&p).unwrap();
        assert_eq!(back.decode(&back.encode("a black bird.", 16).unwrap().ids).unwrap(), "a black bird.");
    }

    #[test]
    fn save_and_load_round_trip() {
        let tk = TextTokenizer::train(corpus().into_iter(), 1000).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        tk.save(&p).unwrap();
        let back = TextTokenizer::load(&p).unwrap();
        let s = "blue 7 on the lower right.";
        assert_eq!(tk.encode(s, 20).unwrap(), back.encode(s, 20).unwrap());
        std::fs::write(&p, "{not json").unwrap();
        assert!(TextTokenizer::load(&p).unwrap_err().to_string().contains("tokenizer.json"));
    }
}
