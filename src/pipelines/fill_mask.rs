//! transformers' fill-mask pipeline: for each [MASK] of a text, the `top_k` most likely tokens
//! (or, with `targets`, the most likely of those) with their probability, the decoded token and
//! the text with the token put in. MLM logits are computed only at the [MASK] positions
//! (V = 30000 columns per row, the costliest matmul of a short text otherwise).

use serde::Serialize;

use super::{need_inputs, softmax, stack, Pipeline};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::head::Head;
use crate::tokenizer::{EncodeOptions, Tokenizer};

/// One proposal for one [MASK], with transformers' keys.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FillMaskAnswer {
    pub score: f64,
    pub token: u32,
    pub token_str: String,
    pub sequence: String,
}

#[derive(Clone, Debug)]
pub struct FillMaskOptions {
    /// Answers per [MASK] (transformers' default 5); at most the number of targets.
    pub top_k: usize,
    /// Score only these tokens: a vocabulary entry as written ("energy" is a piece of its own),
    /// else the first token the text encodes to ("photosynthesis" -> "▁photos"), as transformers.
    pub targets: Option<Vec<String>>,
}

impl Default for FillMaskOptions {
    fn default() -> Self {
        FillMaskOptions {
            top_k: 5,
            targets: None,
        }
    }
}

/// For each text, for each [MASK] in it (left to right), the `top_k` answers, best first.
pub fn fill_mask(
    model: &Engine,
    tokenizer: &Tokenizer,
    texts: &[String],
    top_k: usize,
) -> Result<Vec<Vec<Vec<FillMaskAnswer>>>> {
    let opts = FillMaskOptions {
        top_k,
        targets: None,
    };
    run(&Pipeline::new(model, tokenizer), texts, &opts)
}

/// `fill_mask` with every option, in batches.
pub fn run(
    p: &Pipeline,
    texts: &[String],
    opts: &FillMaskOptions,
) -> Result<Vec<Vec<Vec<FillMaskAnswer>>>> {
    p.need_head("fill-mask", &[Head::MaskedLm, Head::PreTraining])?;
    if opts.top_k == 0 {
        return Err(Error::Pipeline("top_k must be at least 1".into()));
    }
    need_inputs(texts.len())?;
    let tok = p.tokenizer;
    let v = p.engine.config().vocab_size;
    let targets = match &opts.targets {
        Some(t) => Some(target_ids(tok, t, v)?),
        None => None,
    };
    let top_k = targets
        .as_ref()
        .map_or(opts.top_k, |t| opts.top_k.min(t.len()));
    let mask_id = tok.mask_token_id()?;
    let encodings = texts
        .iter()
        .map(|t| tok.encode(t, None, &EncodeOptions::default()))
        .collect::<Result<Vec<_>>>()?;
    // Where the [MASK]s are, per text; a text without one is an error before any work.
    let masks: Vec<Vec<usize>> = encodings
        .iter()
        .map(|e| {
            let ids = e.input_ids.iter().enumerate();
            ids.filter(|(_, &id)| id == mask_id)
                .map(|(p, _)| p)
                .collect()
        })
        .collect();
    if let Some(t) = masks.iter().position(Vec::is_empty) {
        return Err(Error::Pipeline(format!(
            "no [MASK] token in text {t}: {:?}",
            texts[t]
        )));
    }

    let lengths: Vec<usize> = encodings.iter().map(|e| e.input_ids.len()).collect();
    p.batched(&lengths, |batch| {
        let encs: Vec<_> = batch.iter().map(|&i| &encodings[i]).collect();
        let inputs = stack(&encs, tok.pad_token_id())?;
        let positions: Vec<usize> = batch
            .iter()
            .enumerate()
            .flat_map(|(row, &i)| masks[i].iter().map(move |&m| row * inputs.seq + m))
            .collect();
        let logits = p.engine.masked_lm_logits(&inputs, &positions)?; // [masks, V]
        let mut rows = logits.chunks_exact(v);
        batch
            .iter()
            .map(|&i| {
                let ids = &encodings[i].input_ids;
                let single_mask = masks[i].len() == 1;
                masks[i]
                    .iter()
                    .map(|&m| {
                        let row = rows.next().ok_or_else(|| {
                            Error::Pipeline("internal: fewer MLM rows than [MASK]s".into())
                        })?;
                        answers(tok, ids, m, row, targets.as_deref(), top_k, single_mask)
                    })
                    .collect()
            })
            .collect()
    })
}

/// The `top_k` answers for the [MASK] at `position` of `ids`, from its logits [V].
fn answers(
    tok: &Tokenizer,
    ids: &[u32],
    position: usize,
    logits: &[f32],
    targets: Option<&[u32]>,
    top_k: usize,
    single_mask: bool,
) -> Result<Vec<FillMaskAnswer>> {
    // Probabilities over the whole vocabulary, then (with targets) only the targets' entries.
    let probs = softmax(logits);
    let mut order: Vec<u32> = match targets {
        Some(t) => t.to_vec(),
        None => (0..probs.len() as u32).collect(),
    };
    // Best first; equal probabilities keep the lower token id first.
    order.sort_by(|&a, &b| {
        probs[b as usize]
            .total_cmp(&probs[a as usize])
            .then(a.cmp(&b))
    });
    order
        .iter()
        .take(top_k)
        .map(|&token| {
            // As transformers: put the token in, drop padding, decode; special tokens are
            // skipped only when the text has a single mask (else the other [MASK]s stay).
            let mut filled = ids.to_vec();
            filled[position] = token;
            filled.retain(|&id| id != tok.pad_token_id());
            Ok(FillMaskAnswer {
                score: probs[token as usize],
                token,
                token_str: tok.decode(&[token], false)?,
                sequence: tok.decode(&filled, single_mask)?,
            })
        })
        .collect()
}

/// transformers' `get_target_ids`: each target as a vocabulary entry, else its first token; a
/// target that encodes to nothing is dropped; duplicates count once.
fn target_ids(tok: &Tokenizer, targets: &[String], vocab_size: usize) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for target in targets {
        let id = match tok.token_to_id(target) {
            Some(id) => Some(id),
            None => {
                let enc = tok.encode(target, None, &EncodeOptions::default())?;
                let mut pieces = enc.input_ids.iter().zip(&enc.special_tokens_mask);
                pieces.find(|(_, &special)| special == 0).map(|(&id, _)| id)
            }
        };
        match id {
            Some(id) if id as usize >= vocab_size => {
                return Err(Error::Pipeline(format!(
                    "target {target:?} is token {id}, outside the model's {vocab_size} logits"
                )))
            }
            Some(id) if !ids.contains(&id) => ids.push(id),
            _ => {}
        }
    }
    if ids.is_empty() {
        return Err(Error::Pipeline(format!(
            "none of the targets {targets:?} is a token of the vocabulary"
        )));
    }
    Ok(ids)
}

/// The JSON transformers' pipeline prints for one text: a list of answers for a single [MASK],
/// a list of such lists for several.
pub fn to_json(answers: &[Vec<FillMaskAnswer>]) -> serde_json::Value {
    match answers {
        [one] => serde_json::to_value(one).unwrap_or_default(),
        many => serde_json::to_value(many).unwrap_or_default(),
    }
}
