//! A mutation fuzzer that runs on stable Rust, for every parser that reads what a user hands to
//! Tessera (issue: "bounded work on hostile files").
//!
//! - [`targets`]: the six targets (IDX, config + `--set`, safetensors checkpoints, torch.save
//!   pickle/zip, image folders, captions).
//! - [`seeds`]: valid inputs built in code, the start of the committed corpus (`fuzz/corpus/`).
//! - [`mutate`]: AFL-style havoc mutations.
//! - [`engine`]: the loop, crash capture and statistics.
//!
//! `tessera-fuzz run all --seconds 600` is the long run; the test suite runs each target for a few
//! seconds.

pub mod engine;
pub mod mutate;
pub mod seeds;
pub mod targets;

use std::path::Path;

/// The corpus of `target` in `corpus_dir/<name>/` (sorted), or its built-in seeds when the folder
/// is empty or missing.
pub fn load_corpus(target: &dyn targets::Target, corpus_dir: &Path) -> Vec<Vec<u8>> {
    let dir = corpus_dir.join(target.name());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    let inputs: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    if inputs.is_empty() {
        target.seeds()
    } else {
        inputs
    }
}
