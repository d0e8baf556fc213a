//! What the generator trains on, prepared once per run: the frozen tokenizer's codes of the
//! training images (cached in `codes_train.safetensors`, checked against the tokenizer on reuse)
//! and the BPE caption tokenizer (`tokenizer.json`).

use std::path::Path;
use std::sync::Arc;

use tch::{Device, Tensor};
use tessera_data::mnist64::Split;
use tessera_data::{DataLoader, Dataset, LoaderConfig, Subset, TextTokenizer};
use tessera_models::tokenizer::ImageTokenizer;

use crate::error::{Result, TrainError};
use crate::generator::config::GeneratorRunConfig;

/// Encode the first `n` images of `ds` with the tokenizer; also return their first captions.
pub fn encode_dataset(
    tok: &mut dyn ImageTokenizer,
    ds: Arc<dyn Dataset>,
    n: usize,
    batch: usize,
    device: Device,
) -> Result<(Tensor, Vec<String>)> {
    let sub: Arc<dyn Dataset> = Arc::new(Subset::new(ds, n));
    let total = sub.len();
    let loader = DataLoader::new(sub, LoaderConfig::eval(batch), device);
    let pb = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("encoding {pos}/{len} images [{bar:30}] eta {eta}")
            .expect("valid"),
    );
    let (mut codes, mut captions) = (Vec::new(), Vec::new());
    for b in loader.epoch(0) {
        let b = b?;
        pb.inc(b.indices.len() as u64);
        let c = tok.encode(&b.images).map_err(|e| TrainError::Invalid(format!("encoding images: {e}")))?;
        codes.push(c.to_device(Device::Cpu));
        captions.extend(b.captions);
    }
    pb.finish_and_clear();
    if codes.is_empty() {
        return Err(TrainError::Invalid("no images to encode".into()));
    }
    Ok((Tensor::cat(&codes, 0), captions))
}

/// Whether a cached code tensor still matches the tokenizer (re-encodes its first 4 images).
pub fn cache_matches(
    tok: &mut dyn ImageTokenizer,
    ds: &Arc<dyn Dataset>,
    cached: &Tensor,
    device: Device,
) -> Result<bool> {
    let n = cached.size()[0].min(4) as usize;
    let (fresh, _) = encode_dataset(tok, ds.clone(), n, n, device)?;
    Ok(fresh.equal(&cached.narrow(0, 0, n as i64)))
}

/// Codes of the first `codes.train_images` training images, from `RUN/codes_train.safetensors`
/// when it still matches the tokenizer, else encoded now and cached (atomically).
///
/// # Shapes
/// → `(N, codes per image)` int64, on `device`
pub fn cached_train_codes(
    tokenizer: &mut dyn ImageTokenizer,
    config: &GeneratorRunConfig,
    root: &Path,
    dir: &Path,
    device: Device,
) -> Result<Tensor> {
    let train_set = config.data.open(Split::Train, root)?;
    let cache = dir.join("codes_train.safetensors");
    let want = Subset::new(train_set.clone(), config.codes.train_images).len;
    let cached =
        Tensor::read_safetensors(&cache).ok().and_then(|v| v.into_iter().find(|(n, _)| n == "codes"));
    let codes = match cached {
        Some((_, c)) if c.size()[0] as usize == want && cache_matches(tokenizer, &train_set, &c, device)? => {
            c
        }
        _ => {
            let (c, _) = encode_dataset(tokenizer, train_set, want, config.codes.batch_size, device)?;
            let tmp = dir.join(".codes_train.safetensors.tmp");
            Tensor::write_safetensors(&[("codes", &c)], &tmp)?;
            std::fs::rename(&tmp, &cache).map_err(|e| TrainError::io(&cache, e))?;
            c
        }
    }
    .to_device(device);
    Ok(codes)
}

/// The run's caption tokenizer: `text.tokenizer` if given, else `RUN/tokenizer.json` if there,
/// else BPE trained on the captions of the first `text.corpus_images` training images.
pub fn caption_tokenizer(config: &GeneratorRunConfig, root: &Path, dir: &Path) -> Result<TextTokenizer> {
    let path = dir.join("tokenizer.json");
    if let Some(p) = &config.text.tokenizer {
        let t = TextTokenizer::load(p)?;
        t.save(&path)?;
        return Ok(t);
    }
    if path.exists() {
        return Ok(TextTokenizer::load(&path)?);
    }
    let ds = config.data.open(Split::Train, root)?;
    let mut rng = tessera_data::mnist64::stream(0, 0, 0);
    let n = config.text.corpus_images.min(ds.len());
    let mut corpus = Vec::new();
    for i in 0..n {
        corpus.extend(ds.get(i, &mut rng)?.captions);
    }
    if corpus.is_empty() {
        return Err(TrainError::Invalid(
            "the training set has no captions to train the text tokenizer".into(),
        ));
    }
    let t = if config.text.mark_subwords.unwrap_or(config.data.source.has_free_text()) {
        TextTokenizer::train_marked(corpus.iter(), config.text.vocab_size)?
    } else {
        TextTokenizer::train(corpus.iter(), config.text.vocab_size)?
    };
    t.save(&path)?;
    Ok(t)
}
