//! transformers' token-classification ("ner") pipeline: a label per token, or entities grouped
//! by `aggregation_strategy`, with character offsets into the text.
//!
//! ALBERT's Unigram tokenizer knows no word boundaries of its own, so transformers decides
//! whether a token continues the previous word with its fallback heuristic: it does unless it
//! starts the text or the text has a space just before it or at its first character. With
//! 4.57's offsets (`Compat::Transformers4`) a word-initial token's span starts at the space
//! before it ("▁cur" of "Marie Curie" at 5), which this heuristic was written for; with
//! transformers 5's offsets it would not see that space and would glue words together.

use std::str::FromStr;

use serde::Serialize;

use super::text_classification::label;
use super::{need_inputs, softmax, stack, Pipeline};
use crate::error::{Error, Result};
use crate::model::head::Head;
use crate::tokenizer::{EncodeOptions, Encoding};

/// transformers' `AggregationStrategy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Aggregation {
    /// One entity per token, with its index.
    #[default]
    None,
    /// Adjacent tokens with the same entity (B- then I-) grouped.
    Simple,
    /// Words take the label of their first token, then grouped.
    First,
    /// Words take the label of their tokens' mean scores, then grouped.
    Average,
    /// Words take the label of their highest-scoring token, then grouped.
    Max,
}

impl FromStr for Aggregation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "none" => Self::None,
            "simple" => Self::Simple,
            "first" => Self::First,
            "average" => Self::Average,
            "max" => Self::Max,
            _ => {
                return Err(Error::Pipeline(format!(
                    "aggregation_strategy `{s}`: expected none, simple, first, average or max"
                )))
            }
        })
    }
}

#[derive(Clone, Debug)]
pub struct TokenClassificationOptions {
    pub aggregation: Aggregation,
    /// Entities (or groups) with these labels are left out; transformers' default ["O"].
    pub ignore_labels: Vec<String>,
}

impl Default for TokenClassificationOptions {
    fn default() -> Self {
        TokenClassificationOptions {
            aggregation: Aggregation::None,
            ignore_labels: vec!["O".into()],
        }
    }
}

/// One result, with transformers' keys in its order.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Entity {
    /// `aggregation_strategy="none"`: one token.
    Token {
        entity: String,
        score: f64,
        index: usize,
        word: String,
        start: usize,
        end: usize,
    },
    /// Any other strategy: a group of tokens or words.
    Group {
        entity_group: String,
        score: f64,
        word: String,
        start: usize,
        end: usize,
    },
}

/// A token before aggregation (transformers' `pre_entity`).
struct PreEntity {
    word: String,
    scores: Vec<f64>,
    start: usize,
    end: usize,
    index: usize,
    is_subword: bool,
}

/// A labelled token or word before grouping.
struct Labelled {
    entity: String,
    score: f64,
    word: String,
    start: usize,
    end: usize,
    index: usize,
}

/// For each text, its entities in text order.
pub fn run(
    p: &Pipeline,
    texts: &[String],
    opts: &TokenClassificationOptions,
) -> Result<Vec<Vec<Entity>>> {
    p.need_head("token-classification", &[Head::TokenClassification])?;
    need_inputs(texts.len())?;
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
        let (s, n) = (logits.shape[1], logits.shape[2]);
        batch
            .iter()
            .enumerate()
            .map(|(row, &i)| {
                let rows = &logits.data[row * s * n..(row + 1) * s * n];
                let pre = pre_entities(p, &texts[i], &encodings[i], rows, n)?;
                postprocess(p, pre, opts)
            })
            .collect()
    })
}

/// transformers' `gather_pre_entities`: every non-special token with its scores and offsets.
fn pre_entities(
    p: &Pipeline,
    text: &str,
    enc: &Encoding,
    logits: &[f32],
    n: usize,
) -> Result<Vec<PreEntity>> {
    let chars: Vec<char> = text.chars().collect();
    let unk = p.tokenizer.unk_token_id();
    let mut out = Vec::new();
    for (idx, &id) in enc.input_ids.iter().enumerate() {
        if enc.special_tokens_mask[idx] == 1 {
            continue;
        }
        let (start, end) = enc.offsets[idx];
        let word_ref = || {
            chars[start.min(chars.len())..end.min(chars.len())]
                .iter()
                .collect()
        };
        let (word, is_subword) = if Some(id) == unk {
            (word_ref(), false)
        } else {
            // The fallback heuristic: " " not in sentence[start - 1 : start + 1].
            let before = chars[start.saturating_sub(1)..(start + 1).min(chars.len())].to_vec();
            let subword = start > 0 && !before.contains(&' ');
            let word = p.tokenizer.id_to_token(id).unwrap_or_else(word_ref);
            (word, subword)
        };
        out.push(PreEntity {
            word,
            scores: softmax(&logits[idx * n..(idx + 1) * n]),
            start,
            end,
            index: idx,
            is_subword,
        });
    }
    Ok(out)
}

/// transformers' `aggregate`, `group_entities` and the `ignore_labels` filter.
fn postprocess(
    p: &Pipeline,
    pre: Vec<PreEntity>,
    opts: &TokenClassificationOptions,
) -> Result<Vec<Entity>> {
    let config = p.engine.config();
    let argmax = |scores: &[f64]| {
        // First maximum, as numpy's argmax.
        let mut best = 0;
        for (i, &s) in scores.iter().enumerate() {
            if s > scores[best] {
                best = i;
            }
        }
        (label(config, best), scores[best])
    };
    let labelled: Vec<Labelled> = match opts.aggregation {
        Aggregation::None | Aggregation::Simple => pre
            .into_iter()
            .map(|e| {
                let (entity, score) = argmax(&e.scores);
                Labelled {
                    entity,
                    score,
                    word: e.word,
                    start: e.start,
                    end: e.end,
                    index: e.index,
                }
            })
            .collect(),
        strategy => {
            // Words: a token that is not a subword starts a new one.
            let mut words: Vec<Vec<PreEntity>> = Vec::new();
            for e in pre {
                match words.last_mut() {
                    Some(w) if e.is_subword => w.push(e),
                    _ => words.push(vec![e]),
                }
            }
            words
                .iter()
                .map(|w| aggregate_word(p, w, strategy, &argmax))
                .collect::<Result<_>>()?
        }
    };
    let ignored = |label: &str| opts.ignore_labels.iter().any(|l| l == label);
    if opts.aggregation == Aggregation::None {
        return Ok(labelled
            .into_iter()
            .filter(|e| !ignored(&e.entity))
            .map(|e| Entity::Token {
                entity: e.entity,
                score: e.score,
                index: e.index,
                word: e.word,
                start: e.start,
                end: e.end,
            })
            .collect());
    }
    let mut groups: Vec<Vec<Labelled>> = Vec::new();
    for e in labelled {
        // Joins the previous group when the tag matches and this is not a B- entity.
        let (bi, tag) = bio_tag(&e.entity);
        match groups.last_mut() {
            Some(g) if bio_tag(&g[g.len() - 1].entity).1 == tag && bi != "B" => g.push(e),
            _ => groups.push(vec![e]),
        }
    }
    let mut out = Vec::new();
    for g in groups {
        let entity_group = match g[0].entity.split_once('-') {
            Some((_, rest)) => rest.to_string(),
            None => g[0].entity.clone(),
        };
        if ignored(&entity_group) {
            continue;
        }
        let words: Vec<String> = g.iter().map(|e| e.word.clone()).collect();
        out.push(Entity::Group {
            entity_group,
            score: g.iter().map(|e| e.score).sum::<f64>() / g.len() as f64,
            word: p.tokenizer.convert_tokens_to_string(&words)?,
            start: g[0].start,
            end: g[g.len() - 1].end,
        });
    }
    Ok(out)
}

/// transformers' `aggregate_word`: one labelled word from its tokens.
fn aggregate_word(
    p: &Pipeline,
    tokens: &[PreEntity],
    strategy: Aggregation,
    argmax: &dyn Fn(&[f64]) -> (String, f64),
) -> Result<Labelled> {
    let pieces: Vec<String> = tokens.iter().map(|t| t.word.clone()).collect();
    let (entity, score) = match strategy {
        Aggregation::First => argmax(&tokens[0].scores),
        Aggregation::Max => {
            // The first token with the highest score of all (Python's max keeps the first).
            let top = |t: &PreEntity| t.scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut best = &tokens[0];
            for t in &tokens[1..] {
                if top(t) > top(best) {
                    best = t;
                }
            }
            argmax(&best.scores)
        }
        _ => {
            let n = tokens[0].scores.len();
            let mean: Vec<f64> = (0..n)
                .map(|j| tokens.iter().map(|t| t.scores[j]).sum::<f64>() / tokens.len() as f64)
                .collect();
            argmax(&mean)
        }
    };
    Ok(Labelled {
        entity,
        score,
        word: p.tokenizer.convert_tokens_to_string(&pieces)?,
        start: tokens[0].start,
        end: tokens[tokens.len() - 1].end,
        index: tokens[0].index,
    })
}

/// transformers' `get_tag`: ("B", "LOC") for "B-LOC"; a label without B-/I- continues ("I").
fn bio_tag(entity: &str) -> (&str, &str) {
    match (entity.strip_prefix("B-"), entity.strip_prefix("I-")) {
        (Some(tag), _) => ("B", tag),
        (_, Some(tag)) => ("I", tag),
        _ => ("I", entity),
    }
}

/// The JSON transformers prints: a list of entities for one text, a list of lists for several.
pub fn to_json(results: &[Vec<Entity>]) -> serde_json::Value {
    let value = match results {
        [one] => serde_json::to_value(one),
        many => serde_json::to_value(many),
    };
    value.unwrap_or_default()
}
