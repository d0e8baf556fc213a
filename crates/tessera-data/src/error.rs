use std::path::PathBuf;

/// Everything that can go wrong reading or producing data. Each variant names the file involved
/// and, where the fix is a command, the command.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{what} not found at {path}: run `{fetch}` first")]
    Missing { what: String, path: PathBuf, fetch: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a valid IDX file: {reason}")]
    Idx { path: PathBuf, reason: String },
    #[error("{path}: sha256 is {actual}, expected {expected} (corrupt or wrong download; delete it and fetch again)")]
    Checksum { path: PathBuf, expected: String, actual: String },
    #[error("fetch failed: {0}")]
    Fetch(String),
    #[error("{path}: cannot read image: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{path}: no usable images found (looked for .png, .jpg, .jpeg, .webp, recursively){detail}")]
    EmptyFolder { path: PathBuf, detail: String },
    #[error("batch mixes image sizes: {first:?} and {other:?} (resize the data set or set an image size)")]
    MixedSizes { first: (u32, u32), other: (u32, u32) },
    #[error("text tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
