//! The library's one error type. Every message names what is wrong (file, tensor, field, token)
//! and what was expected, so a user can fix the input without reading our code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    /// config.json is missing a required field, has a bad value or is not valid JSON.
    #[error("config {path}: {msg}")]
    Config { path: String, msg: String },

    /// A safetensors file (or its index) is truncated, corrupt or has an unsupported layout.
    #[error("safetensors {path}: {msg}")]
    Safetensors { path: String, msg: String },

    /// A tensor the model needs is absent from every checkpoint file.
    #[error("missing tensor `{name}` (expected shape {expected:?}) in {path}")]
    MissingTensor {
        name: String,
        expected: Vec<usize>,
        path: String,
    },

    /// A tensor is present but with the wrong shape.
    #[error("tensor `{name}` in {path} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        path: String,
    },

    /// A tensor is stored in a dtype the engine does not read (it reads F32, F16, BF16, and
    /// I64/I32 for inputs).
    #[error("tensor `{name}` in {path} has dtype {dtype}, expected {expected}")]
    Dtype {
        name: String,
        dtype: String,
        expected: String,
        path: String,
    },

    /// The inputs of a forward pass are inconsistent with each other or with the model.
    #[error("invalid input: {0}")]
    Input(String),

    /// A token or token type id is outside the model's tables.
    #[error("{what} {value} at batch {batch}, {}position {pos} is out of range (must be < {limit})", choice.map(|c| format!("choice {c}, ")).unwrap_or_default())]
    IdOutOfRange {
        /// For [B, C, S] multiple-choice inputs, the choice within the batch row.
        choice: Option<usize>,
        what: &'static str,
        value: i64,
        batch: usize,
        pos: usize,
        limit: usize,
    },

    /// The tokenizer failed to load or to encode/decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A pipeline was asked for something its input does not allow (e.g. no [MASK] in fill-mask).
    #[error("{0}")]
    Pipeline(String),

    /// The head named by the user or by config.json's `architectures` is not one we implement.
    #[error("unknown head `{0}` (expected one of: AlbertModel, AlbertForPreTraining, AlbertForMaskedLM, AlbertForSequenceClassification, AlbertForMultipleChoice, AlbertForTokenClassification, AlbertForQuestionAnswering)")]
    UnknownHead(String),

    /// The requested device cannot be used.
    #[error("device {device}: {msg}")]
    Device { device: String, msg: String },

    /// A model id could not be resolved from the Hugging Face cache or downloaded.
    #[error("model `{model}`: {msg}")]
    Hub { model: String, msg: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err: source,
        }
    }

    pub(crate) fn config(path: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            msg: msg.into(),
        }
    }

    pub(crate) fn safetensors(path: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Safetensors {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
