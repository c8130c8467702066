//! Pipelines: transformers' task APIs on top of the model and tokenizer, with the same answers
//! and the same JSON (keys, structure, order) as its pipelines (4.57, the last release with the
//! question-answering pipeline; shared/models/*/pipelines.json records its calls).
//!
//! Every pipeline takes many inputs at once and runs them in batches of `batch_size`, sorted by
//! token count (longest first, so a too-long input fails before any work is spent and each
//! batch pads little); results come back in input order. transformers runs one input per
//! forward pass by default; padding changes nothing here beyond float rounding, since padded
//! positions are masked out of attention and never read.
//!
//! The tokenizer the pipelines are given should be `Compat::Transformers4` to reproduce 4.57's
//! character offsets and words (token-classification starts, question-answering answers); ids,
//! and so every score, are the same with either.

pub mod embed;
pub mod fill_mask;
pub mod multiple_choice;
pub mod question_answering;
pub mod text_classification;
pub mod token_classification;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::model::head::Head;
use crate::tokenizer::{Encoding, Tokenizer};

/// Inputs per forward pass unless the caller says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 16;

/// A model and its tokenizer, and how to batch: what every pipeline function runs on.
pub struct Pipeline<'a> {
    pub engine: &'a Engine,
    pub tokenizer: &'a Tokenizer,
    /// Encoded inputs per forward pass (question answering: windows; multiple choice: prompts).
    pub batch_size: usize,
    /// Called after each batch with (inputs done, inputs in all), for a progress bar.
    pub progress: Option<&'a dyn Fn(usize, usize)>,
}

impl<'a> Pipeline<'a> {
    pub fn new(engine: &'a Engine, tokenizer: &'a Tokenizer) -> Self {
        Pipeline {
            engine,
            tokenizer,
            batch_size: DEFAULT_BATCH_SIZE,
            progress: None,
        }
    }

    /// Errors unless the engine runs one of `heads`: a pipeline names the head it needs.
    pub(crate) fn need_head(&self, task: &str, heads: &[Head]) -> Result<()> {
        let head = self.engine.head();
        if heads.contains(&head) {
            return Ok(());
        }
        let names: Vec<&str> = heads.iter().map(|h| h.class_name()).collect();
        Err(Error::Pipeline(format!(
            "{task} needs a model loaded as {}, this one is {}",
            names.join(" or "),
            head.class_name()
        )))
    }

    /// Runs `run` on batches of item indices, items sorted by `lengths` (longest first), and
    /// returns its results (one per index, in the order given) in the items' original order.
    pub(crate) fn batched<T>(
        &self,
        lengths: &[usize],
        mut run: impl FnMut(&[usize]) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        if self.batch_size == 0 {
            return Err(Error::Pipeline("batch_size must be at least 1".into()));
        }
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a])); // stable: equal lengths keep order
        let mut out: Vec<Option<T>> = (0..lengths.len()).map(|_| None).collect();
        let mut done = 0;
        for chunk in order.chunks(self.batch_size) {
            let results = run(chunk)?;
            if results.len() != chunk.len() {
                return Err(Error::Pipeline(format!(
                    "internal: a batch of {} gave {} results",
                    chunk.len(),
                    results.len()
                )));
            }
            for (&i, r) in chunk.iter().zip(results) {
                out[i] = Some(r);
            }
            done += chunk.len();
            if let Some(p) = self.progress {
                p(done, lengths.len());
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

/// Right-pads encodings of any lengths into model inputs [B, S] (S: the longest), padding with
/// `pad_id`, attention 0 and token type 0, as the tokenizer's own padding does.
pub(crate) fn stack(encodings: &[&Encoding], pad_id: u32) -> Result<Inputs> {
    let seq = encodings
        .iter()
        .map(|e| e.input_ids.len())
        .max()
        .ok_or_else(|| Error::Input("empty batch: no encodings".into()))?;
    let n = encodings.len() * seq;
    let (mut ids, mut mask, mut types) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for e in encodings {
        let pad = seq - e.input_ids.len();
        ids.extend(e.input_ids.iter().map(|&v| i64::from(v)));
        ids.extend(std::iter::repeat_n(i64::from(pad_id), pad));
        mask.extend(e.attention_mask.iter().map(|&v| i64::from(v)));
        mask.extend(std::iter::repeat_n(0, pad));
        types.extend(e.token_type_ids.iter().map(|&v| i64::from(v)));
        types.extend(std::iter::repeat_n(0, pad));
    }
    Inputs::new(ids, Some(mask), Some(types), &[encodings.len(), seq])
}

/// Probabilities in f64 from logits (max subtracted first, as numpy's and torch's softmax).
pub(crate) fn softmax(logits: &[f32]) -> Vec<f64> {
    let mut p: Vec<f64> = logits.iter().map(|&x| x as f64).collect();
    crate::backend::cpu::reference::softmax_row(&mut p);
    p
}

/// Errors on an empty input list: every pipeline needs at least one input.
pub(crate) fn need_inputs(n: usize) -> Result<()> {
    match n {
        0 => Err(Error::Input("empty batch: no input given".into())),
        _ => Ok(()),
    }
}
