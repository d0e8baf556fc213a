//! The six fuzz targets: every parser that reads a file or text a user hands to Tessera.
//!
//! Each target feeds one input through the same code the CLI runs and returns `Err(message)` for
//! a clean refusal. Anything else (a panic) is a crash. File-based readers get the input written
//! to a file in a private temporary folder first.

use std::path::PathBuf;

use tessera_data::{Dataset, ImageFolder, Resize};

/// One parser under test.
pub trait Target {
    fn name(&self) -> &'static str;
    /// Valid inputs built in code: the committed corpus (`fuzz/corpus/<name>/`) starts from them.
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// Feed one input; `Err` is a clean refusal.
    fn exec(&mut self, data: &[u8]) -> Result<(), String>;
}

/// Every target, by name.
pub fn all() -> Vec<Box<dyn Target>> {
    vec![
        Box::new(Idx(Scratch::new("input-idx-ubyte"))),
        Box::new(Config),
        Box::new(Checkpoint(Scratch::new("last.safetensors"))),
        Box::new(TorchPickle(Scratch::new("model.pth"))),
        Box::new(Folder(Scratch::new("image.png"))),
        Box::new(Captions),
    ]
}

/// A private folder and a file in it that each input is written to.
struct Scratch {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let file = dir.path().join(name);
        Scratch { _dir: dir, file }
    }
    fn write(&self, data: &[u8]) -> Result<&PathBuf, String> {
        std::fs::write(&self.file, data).map_err(|e| e.to_string())?;
        Ok(&self.file)
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `tessera-data`'s IDX reader (raw or gzipped), as images and as labels.
pub struct Idx(Scratch);

impl Target for Idx {
    fn name(&self) -> &'static str {
        "idx"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        crate::seeds::idx()
    }
    fn exec(&mut self, data: &[u8]) -> Result<(), String> {
        let path = self.0.write(data)?;
        let images = tessera_data::idx::read_images(path).map(|im| {
            // Touch every image the header promises.
            (0..im.count).map(|i| im.image(i).len()).sum::<usize>()
        });
        let labels = tessera_data::idx::read_labels(path);
        images.map(|_| ()).or(labels.map(|_| ())).map_err(err)
    }
}

/// The config loader: a TOML text, then `--set` lines, resolved as each run config.
pub struct Config;

impl Target for Config {
    fn name(&self) -> &'static str {
        "config"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        crate::seeds::configs()
    }
    fn exec(&mut self, data: &[u8]) -> Result<(), String> {
        use tessera_core::config::load_str;
        let text = String::from_utf8_lossy(data);
        let (mut body, mut sets) = (String::new(), Vec::new());
        for line in text.lines() {
            match line.strip_prefix("--set ") {
                Some(s) => sets.push(s.to_string()),
                None => {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
        let results = [
            load_str::<tessera_train::tokenizer::TokenizerRunConfig>(&body, &sets, "fuzz").map(|_| ()),
            load_str::<tessera_train::generator::GeneratorRunConfig>(&body, &sets, "fuzz").map(|_| ()),
            load_str::<tessera_train::study::StudyConfig>(&body, &sets, "fuzz").map(|_| ()),
            load_str::<tessera_data::DataConfig>(&body, &sets, "fuzz").map(|_| ()),
        ];
        // Accepted as any one of them is a pass; otherwise the first refusal is the outcome.
        let mut first = None;
        for r in results {
            match r {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // The origin repeats the `--set` text; the message is the outcome.
                    let message = match e {
                        tessera_core::ConfigError::Invalid { message, .. } => message,
                        other => other.to_string(),
                    };
                    first.get_or_insert(message);
                }
            }
        }
        Err(first.unwrap_or_default())
    }
}

/// Tessera's safetensors checkpoint loader (checksum, metadata) and the stored config in it.
pub struct Checkpoint(Scratch);

impl Target for Checkpoint {
    fn name(&self) -> &'static str {
        "checkpoint"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        crate::seeds::checkpoints()
    }
    fn exec(&mut self, data: &[u8]) -> Result<(), String> {
        use tessera_train::runner::Meta;
        let path = self.0.write(data)?;
        let ck = tessera_train::checkpoint::load::<Meta>(path).map_err(err)?;
        tessera_core::config::load_str::<tessera_train::tokenizer::TokenizerRunConfig>(
            &ck.meta.config,
            &[],
            "ckpt",
        )
        .map(|_| ())
        .map_err(err)
    }
}

/// The torch.save reader: the pickle machine on raw bytes, and the zip archive with its tensors.
pub struct TorchPickle(Scratch);

impl Target for TorchPickle {
    fn name(&self) -> &'static str {
        "pickle"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        crate::seeds::pickles()
    }
    fn exec(&mut self, data: &[u8]) -> Result<(), String> {
        if data.starts_with(b"PK") {
            let path = self.0.write(data)?;
            let file = tessera_torchfile::TorchFile::open(path).map_err(err)?;
            file.tensors(&[]).map(|_| ()).map_err(err)
        } else {
            tessera_torchfile::pickle::read(data).map(|_| ()).map_err(err)
        }
    }
}

/// The image-folder loader: one file in a folder, decoded and resized (eval or train transform).
pub struct Folder(Scratch);

impl Target for Folder {
    fn name(&self) -> &'static str {
        "image-folder"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        crate::seeds::images()
    }
    fn exec(&mut self, data: &[u8]) -> Result<(), String> {
        use rand::SeedableRng;
        let path = self.0.write(data)?;
        let dir = path.parent().expect("scratch file has a folder");
        let resize =
            if data.len().is_multiple_of(2) { Resize::Eval { size: 16 } } else { Resize::Train { size: 16 } };
        // A small limit keeps each execution cheap; the check itself is what is under test.
        let ds = ImageFolder::open(dir, resize).map_err(err)?.with_max_pixels(1 << 20);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        // The folder skips a file it cannot use and reports why; that reason is the outcome.
        let s = ds
            .get(0, &mut rng)
            .map_err(|e| ds.skipped().first().map_or(e.to_string(), |(_, r)| r.clone()))?;
        if s.image.dimensions() != (16, 16) {
            panic!("the loader returned a {:?} image for a 16×16 transform", s.image.dimensions());
        }
        Ok(())
    }
}

/// The MNIST64x64 caption parser and the I2T scoring that uses it.
pub struct Captions;

impl Target for Captions {
    fn name(&self) -> &'static str {
        "captions"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        crate::seeds::captions()
    }
    fn exec(&mut self, data: &[u8]) -> Result<(), String> {
        use tessera_data::mnist64::parser::parse_caption;
        let text = String::from_utf8_lossy(data);
        let generated = parse_caption(&text);
        let truth = parse_caption("red 3 on the upper left, and blue 7 on the lower right");
        let mut board = tessera_eval::captions::CaptionScores::new();
        board.add_i2t(&truth, &generated);
        board.add_i2t(&generated, &truth);
        if generated.is_empty() {
            return Err("no segment with a letter or digit".into());
        }
        let _ = tessera_eval::captions::bucket(&generated);
        Ok(())
    }
}
