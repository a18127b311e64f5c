//! `ModelError`: everything that can go wrong loading, running or adapting the policy model.

use std::path::PathBuf;

/// An error of the model area. Each variant says when it occurs and carries the offending values.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file the model or adapter folder must contain is not there.
    #[error("{kind} folder {dir} has no `{file}`; {hint}")]
    MissingFile { kind: &'static str, dir: PathBuf, file: String, hint: &'static str },
    /// A file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config, index, adapter config) does not parse.
    #[error("{path} is not a valid {what}: {source}")]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// `config.json` names an architecture this decoder does not implement.
    #[error(
        "{path}: unsupported architecture {found:?}; supported: {}",
        supported.join(", ")
    )]
    UnsupportedArchitecture { path: PathBuf, found: Vec<String>, supported: &'static [&'static str] },
    /// `config.json` has a setting this decoder does not implement (an activation, a rope scaling).
    #[error("{path}: unsupported setting `{field}` = {value}; {hint}")]
    UnsupportedSetting { path: PathBuf, field: &'static str, value: String, hint: &'static str },
    /// `config.json` values that contradict each other (heads not dividing the hidden size…).
    #[error("{path}: invalid config: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },
    /// A safetensors file (checkpoint, shard or adapter) is truncated or corrupt: its header does
    /// not parse, or its tensors do not fit in the file.
    #[error("{path} is not a readable safetensors file ({reason}): it is truncated or corrupt; {hint}")]
    CorruptSafetensors { path: PathBuf, reason: String, hint: &'static str },
    /// A tensor the architecture needs is in none of the safetensors files.
    #[error("tensor `{name}` is missing from {files}; is this checkpoint of the architecture config.json says?")]
    MissingTensor { name: String, files: String },
    /// A tensor has a different shape than the config implies.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?} from config.json")]
    TensorShape { name: String, expected: Vec<usize>, found: Vec<usize> },
    /// An adapter does not fit the base model it is loaded onto.
    #[error("adapter {dir} does not fit the base model: {reason}")]
    AdapterMismatch { dir: PathBuf, reason: String },
    /// An adapter config uses a PEFT feature this implementation does not support.
    #[error("adapter {dir}: unsupported PEFT setting `{field}` = {value}; {hint}")]
    AdapterUnsupported { dir: PathBuf, field: &'static str, value: String, hint: &'static str },
    /// A LoRA configuration is invalid (rank 0, unknown target module…).
    #[error("invalid LoRA config: {0}")]
    InvalidLora(String),
    /// Full fine-tuning was asked of a model it cannot apply to.
    #[error("full fine-tuning: {0}")]
    FullFineTune(String),
    /// An operation needs a LoRA adapter but none is attached.
    #[error("no LoRA adapter is attached; call attach_lora or load_adapter first")]
    NoAdapter,
    /// An adapter is already attached and a second one was requested.
    #[error("a LoRA adapter is already attached; merge it into the base first (merge_attached), or load the model again")]
    AdapterAlreadyAttached,
    /// The inputs of a forward pass have wrong shapes, dtypes or lengths.
    #[error("bad forward input: {0}")]
    BadInput(String),
    /// The KV cache cannot take the tokens of this forward pass.
    #[error("KV cache holds {len} of {max_len} positions and cannot take {new} more; allocate it with a larger max_len")]
    CacheFull { len: usize, new: usize, max_len: usize },
    /// A KV cache of another dtype than the model.
    #[error("KV cache holds {cache:?} but the model computes in {model:?}; allocate it with CausalLm::new_cache")]
    CacheDtype { cache: candle_core::DType, model: candle_core::DType },
    /// An adapter loaded onto another model than the one it was trained on (its
    /// `stacked_on.json`), or with other adapters merged under it than it was trained over.
    #[error("{0}")]
    Stack(String),
    /// A merged model folder cannot be written.
    #[error("export: {0}")]
    Export(String),
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
