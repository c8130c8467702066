//! ALBERT inference, exactly the model that Hugging Face transformers defines
//! (modeling_albert.py): every head, the ALBERT tokenizer, transformers' pipelines and model
//! ids resolved through the Hugging Face cache.
//!
//! ```no_run
//! use albert::{Albert, ForwardOptions, Tokenizer, EncodeOptions};
//! let dir = std::path::Path::new("albert-base-v2");
//! let model = Albert::from_dir(dir, None)?;
//! let tok = Tokenizer::from_dir(dir)?;
//! let enc = tok.encode_batch(&[("Hello world".into(), None)], &EncodeOptions::default())?;
//! let out = model.forward(&albert::Tokenizer::to_inputs(&enc)?, ForwardOptions::default())?;
//! println!("{:?}", out.get("logits").map(|t| &t.shape));
//! # Ok::<(), albert::Error>(())
//! ```

pub mod backend;
pub mod bench;
pub mod dtype;
pub mod engine;
pub mod error;
pub mod hub;
pub mod inputs;
pub mod io;
pub mod limits;
pub mod model;
pub mod pipelines;
pub mod rng;
pub mod tensor;
pub mod tokenizer;

pub use dtype::DType;
pub use engine::Engine;
pub use error::{Error, Result};
pub use inputs::Inputs;
pub use limits::Limits;
pub use model::config::AlbertConfig;
pub use model::head::Head;
pub use model::heads::ForwardOptions;
pub use model::Albert;
pub use tensor::{Outputs, Tensor};
pub use tokenizer::{Compat, EncodeOptions, Encoding, Padding, Tokenizer, Truncation};
