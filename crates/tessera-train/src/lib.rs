//! Training: written once, used by every model family.
//!
//! - [`checkpoint`]: one safetensors file holding every tensor of a run (model, EMA codebook,
//!   optimiser moments, weight EMA) plus JSON metadata (step, config), written atomically.
//! - [`schedule`]: learning-rate warm-up and cosine decay; [`plateau`]: ReduceLROnPlateau.
//! - [`metrics`]: JSONL metrics; [`plot`] draws their curves as SVG (plotters).
//! - [`runner`]: the loop: deterministic per-step seeding, NaN/Inf guard, periodic images,
//!   validation and checkpoints, exact resume.
//! - [`tokenizer`]: the VQGAN / TE-VQGAN task (its loss lives beside the model in
//!   `tessera_models::vqgan::loss`); [`frozen`] opens a trained
//!   tokenizer run for inference through the `ImageTokenizer` interface, whatever its kind.
//! - [`augvae`]: the AugVAE-ML / -SL task (L-Verse, spec §4).
//! - [`extra_terms`]: extra terms of any tokenizer's loss; [`lg_term`] is LG-VQ's (`[lg]`, spec §5).
//! - [`perceptual`]: trains Tessera's in-domain perceptual network.
//! - [`classifier`]: trains the T2I evaluation classifier (spec §3.6); [`article_classifier`]
//!   the Fashion-MNIST one that scores VIM's class-conditional samples.
//! - [`generator`]: the BiART task (spec §3, §4.7); [`gen_data`] prepares its codes and caption
//!   tokenizer; [`gen_eval`] scores it with `tessera_eval::generation` (MNIST64x64 data only).
//! - [`vim`]: VIM's evaluation (class-conditional samples scored by the Fashion-MNIST classifier,
//!   linear probes of VIM features, codes and pixels).
//! - [`study`]: the resumable TE-VQGAN study (two tokenizers, two generators, every metric);
//!   [`study::report`] writes its `report.md` / `report.html` from templates.

pub mod article_classifier;
pub mod augvae;
pub mod caption_report;
pub mod checkpoint;
pub mod classifier;
pub mod error;
pub mod extra_terms;
pub mod frozen;
pub mod gen_data;
pub mod gen_eval;
pub mod generator;
pub mod lg_encoder;
pub mod lg_term;
pub mod metrics;
pub mod perceptual;
pub mod plateau;
pub mod plot;
pub mod run_dir;
pub mod runner;
pub mod schedule;
pub mod study;
pub mod tokenizer;
pub mod tokenizer_eval;
pub mod vim;
pub mod vit_tokenizer;

pub use error::TrainError;

/// The progress bar of a fixed amount of work outside the training loop (`what pos/len`, rate,
/// eta, and the message the caller sets).
pub fn progress_bar(what: &str, len: u64) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(len).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{pos}}/{{len}} [{{bar:30}}] {{per_sec}} eta {{eta}} {{msg}}"
        ))
        .expect("valid template"),
    )
}

/// libtorch's random generator is global to the process: unit tests that seed it or draw from it
/// hold this lock.
#[cfg(test)]
pub(crate) static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
