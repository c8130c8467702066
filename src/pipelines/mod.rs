//! Pipelines: transformers' task APIs on top of the model and tokenizer.

pub mod fill_mask;
