use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("checkpoint {path} cannot be read ({reason}); it may be truncated or from another program. Delete it to start over, or point --resume at an intact run")]
    BadCheckpoint { path: PathBuf, reason: String },
    #[error("checkpoint {path} does not match this model: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error("non-finite loss at step {step}: {what}")]
    NonFinite { step: i64, what: String },
    #[error("stopped: {count} steps in a row had a non-finite loss (last at step {step}: {what}); lower the learning rate, enable clip_grad_norm, or check the data")]
    TooManyNonFinite { count: usize, step: i64, what: String },
    #[error(transparent)]
    Data(#[from] tessera_data::DataError),
    #[error(transparent)]
    Quant(#[from] tessera_quant::vq::QuantError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Eval(#[from] tessera_eval::generation::EvalError),
    #[error(transparent)]
    Tokenizer(#[from] tessera_models::tokenizer::TokenizerError),
    #[error("{0}")]
    Invalid(String),
}

impl TrainError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
