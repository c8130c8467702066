//! transformers' text-classification pipeline: labels with scores from the sequence
//! classification head. The function applied to the logits is transformers' choice: none for
//! `problem_type: regression`, sigmoid for multi-label or a single label, softmax otherwise.

use std::str::FromStr;

use serde::Serialize;

use super::{need_inputs, stack, Pipeline};
use crate::error::{Error, Result};
use crate::model::config::AlbertConfig;
use crate::model::head::Head;
use crate::tokenizer::EncodeOptions;

/// transformers' `ClassificationFunction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassificationFunction {
    Sigmoid,
    Softmax,
    None,
}

impl FromStr for ClassificationFunction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sigmoid" => Ok(Self::Sigmoid),
            "softmax" => Ok(Self::Softmax),
            "none" => Ok(Self::None),
            _ => Err(Error::Pipeline(format!(
                "function_to_apply `{s}`: expected sigmoid, softmax or none"
            ))),
        }
    }
}

impl ClassificationFunction {
    /// What transformers applies when the caller does not say (`postprocess`).
    pub fn for_config(config: &AlbertConfig) -> Self {
        let problem = config.problem_type.as_deref();
        let num_labels = config.id2label.len();
        if problem == Some("regression") {
            Self::None
        } else if problem == Some("multi_label_classification") || num_labels == 1 {
            Self::Sigmoid
        } else if problem == Some("single_label_classification") || num_labels > 1 {
            Self::Softmax
        } else {
            Self::None
        }
    }

    fn apply(self, logits: &[f32]) -> Vec<f64> {
        match self {
            Self::Sigmoid => logits
                .iter()
                .map(|&x| 1.0 / (1.0 + (-(x as f64)).exp()))
                .collect(),
            Self::Softmax => super::softmax(logits),
            Self::None => logits.iter().map(|&x| x as f64).collect(),
        }
    }
}

/// How many labels to return per text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TopK {
    /// No `top_k` given: the best label, and in JSON one object per text (transformers' legacy
    /// shape; a single text still comes as a list of one).
    #[default]
    Default,
    /// `top_k=k`: the k best, best first, a list per text.
    K(usize),
    /// `top_k=None`: every label, best first.
    All,
}

#[derive(Clone, Debug, Default)]
pub struct TextClassificationOptions {
    pub top_k: TopK,
    /// None: `ClassificationFunction::for_config`.
    pub function_to_apply: Option<ClassificationFunction>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f64,
}

/// For each text, its labels, best first (one for `TopK::Default`).
pub fn run(
    p: &Pipeline,
    texts: &[String],
    opts: &TextClassificationOptions,
) -> Result<Vec<Vec<LabelScore>>> {
    p.need_head("text-classification", &[Head::SequenceClassification])?;
    need_inputs(texts.len())?;
    let keep = match opts.top_k {
        TopK::Default => 1,
        TopK::K(0) => return Err(Error::Pipeline("top_k must be at least 1".into())),
        TopK::K(k) => k,
        TopK::All => usize::MAX,
    };
    let config = p.engine.config();
    let function = opts
        .function_to_apply
        .unwrap_or_else(|| ClassificationFunction::for_config(config));
    let encodings = texts
        .iter()
        .map(|t| p.tokenizer.encode(t, None, &EncodeOptions::default()))
        .collect::<Result<Vec<_>>>()?;
    let lengths: Vec<usize> = encodings.iter().map(|e| e.input_ids.len()).collect();
    p.batched(&lengths, |batch| {
        let encs: Vec<_> = batch.iter().map(|&i| &encodings[i]).collect();
        let inputs = stack(&encs, p.tokenizer.pad_token_id())?;
        let out = p.engine.forward(&inputs, Default::default())?;
        let logits = out
            .get("logits")
            .ok_or_else(|| Error::Pipeline("the model returned no logits".into()))?;
        let n = logits.shape[1];
        Ok(logits
            .data
            .chunks_exact(n)
            .map(|row| {
                let scores = function.apply(row);
                let mut labels: Vec<LabelScore> = scores
                    .iter()
                    .enumerate()
                    .map(|(i, &score)| LabelScore {
                        label: label(config, i),
                        score,
                    })
                    .collect();
                // Stable: equal scores keep label order, as Python's sort.
                labels.sort_by(|a, b| b.score.total_cmp(&a.score));
                labels.truncate(keep);
                labels
            })
            .collect())
    })
}

/// id2label[i], or transformers' default name.
pub(crate) fn label(config: &AlbertConfig, i: usize) -> String {
    config
        .id2label
        .get(i)
        .cloned()
        .unwrap_or_else(|| format!("LABEL_{i}"))
}

/// The JSON transformers prints: for one text a list of labels (of one without `top_k`); for
/// several, a list with per text one object (without `top_k`) or one list.
pub fn to_json(results: &[Vec<LabelScore>], top_k: TopK) -> serde_json::Value {
    let per_text = |r: &Vec<LabelScore>| match (top_k, r.first()) {
        (TopK::Default, Some(best)) => serde_json::to_value(best),
        _ => serde_json::to_value(r),
    };
    let value = match results {
        [one] => serde_json::to_value(one),
        many => many.iter().map(per_text).collect(),
    };
    value.unwrap_or_default()
}
