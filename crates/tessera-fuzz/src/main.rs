//! `tessera-fuzz`: fuzz Tessera's parsers for a time budget, or write the seed corpus.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use tessera_fuzz::{engine, load_corpus, targets};

#[derive(Parser)]
#[command(about = "Fuzz Tessera's file and text parsers (stable Rust, no instrumentation)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fuzz one target (idx, config, checkpoint, pickle, image-folder, captions) or `all`.
    Run {
        target: String,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value = "fuzz/corpus")]
        corpus: PathBuf,
        /// Crashing inputs go to DIR/<target>/crash-<hash> (with the panic message beside them).
        #[arg(long, default_value = "fuzz/crashes")]
        crashes: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Write every target's built-in seeds to CORPUS/<target>/seed-N.
    Seed {
        #[arg(long, default_value = "fuzz/corpus")]
        corpus: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run { target, seconds, corpus, crashes, seed } => {
            let mut chosen: Vec<_> =
                targets::all().into_iter().filter(|t| target == "all" || t.name() == target).collect();
            if chosen.is_empty() {
                let names: Vec<_> = targets::all().iter().map(|t| t.name()).collect();
                bail!("no target `{target}`: choose one of {} or `all`", names.join(", "));
            }
            let mut crashed = 0;
            for t in chosen.iter_mut() {
                let inputs = load_corpus(t.as_ref(), &corpus);
                let stats =
                    engine::fuzz(t.as_mut(), inputs, Duration::from_secs(seconds), seed, Some(&crashes));
                crashed += stats.crashes;
                println!("{}", serde_json::to_string(&stats)?);
            }
            if crashed > 0 {
                bail!("{crashed} crashing input(s) written under {}", crashes.display());
            }
            Ok(())
        }
        Command::Seed { corpus } => {
            for t in targets::all() {
                let dir = corpus.join(t.name());
                std::fs::create_dir_all(&dir)?;
                for (i, s) in t.seeds().iter().enumerate() {
                    std::fs::write(dir.join(format!("seed-{i}")), s)?;
                }
            }
            Ok(())
        }
    }
}
