//! transformers' question-answering pipeline (4.57; removed in 5): the most likely answer spans
//! of a context, as character offsets and text.
//!
//! As transformers: the (question, context) pair is cut into windows of `max_seq_len` tokens
//! that overlap by `doc_stride`; in each, start and end logits outside the context (question,
//! special tokens, padding; [CLS] excepted) are set to -10000 before the softmax; a span scores
//! p_start * p_end over start <= end < start + max_answer_len, [CLS] zeroed; the best
//! `top_k * 2 + 10` spans of each window whose ends are context tokens are widened to whole
//! words (`align_to_words`: the pre-tokenizer's words, so with 4.57's tokenizer an answer starts
//! at the space before its first word), spans with the same text (case-insensitive) merged into
//! the first one by adding their scores (so a merged score is a sum of span probabilities, and
//! windows that overlap count an answer in both), and the best `top_k` of all windows returned.

use serde::Serialize;

use super::{need_inputs, stack, Pipeline};
use crate::error::{Error, Result};
use crate::model::head::Head;
use crate::tokenizer::PairSpan;

#[derive(Clone, Debug)]
pub struct QuestionAnsweringOptions {
    pub top_k: usize,
    /// Longest answer, in tokens.
    pub max_answer_len: usize,
    /// Tokens per window; None: min(model_max_length, 384).
    pub max_seq_len: Option<usize>,
    /// Overlap of windows, in tokens; None: min(max_seq_len / 2, 128).
    pub doc_stride: Option<usize>,
    /// Also offer "no answer" (score p_start[CLS] * p_end[CLS], the lowest over windows).
    pub handle_impossible_answer: bool,
    /// Widen answers to whole words.
    pub align_to_words: bool,
}

impl Default for QuestionAnsweringOptions {
    fn default() -> Self {
        QuestionAnsweringOptions {
            top_k: 1,
            max_answer_len: 15,
            max_seq_len: None,
            doc_stride: None,
            handle_impossible_answer: false,
            align_to_words: true,
        }
    }
}

/// One answer, with transformers' keys: `start`/`end` are character offsets into the context.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Answer {
    pub score: f64,
    pub start: usize,
    pub end: usize,
    pub answer: String,
}

/// A question and the context to answer it from.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct QaInput {
    pub question: String,
    pub context: String,
}

/// For each input, its best answers, best first (at most `top_k`).
pub fn run(
    p: &Pipeline,
    inputs: &[QaInput],
    opts: &QuestionAnsweringOptions,
) -> Result<Vec<Vec<Answer>>> {
    p.need_head("question-answering", &[Head::QuestionAnswering])?;
    need_inputs(inputs.len())?;
    if opts.top_k == 0 {
        return Err(Error::Pipeline("top_k must be at least 1".into()));
    }
    if opts.max_answer_len == 0 {
        return Err(Error::Pipeline("max_answer_len must be at least 1".into()));
    }
    let max_seq_len = opts
        .max_seq_len
        .unwrap_or_else(|| p.tokenizer.model_max_length().min(384));
    let doc_stride = opts.doc_stride.unwrap_or((max_seq_len / 2).min(128));
    if doc_stride > max_seq_len {
        return Err(Error::Pipeline(format!(
            "doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})"
        )));
    }
    // Every window of every input, as (input, window).
    let mut spans: Vec<Vec<PairSpan>> = Vec::with_capacity(inputs.len());
    for (i, x) in inputs.iter().enumerate() {
        for (what, text) in [("question", &x.question), ("context", &x.context)] {
            if text.is_empty() {
                return Err(Error::Pipeline(format!(
                    "input {i}: `{what}` cannot be empty"
                )));
            }
        }
        let s = p
            .tokenizer
            .encode_pair_spans(&x.question, &x.context, max_seq_len, doc_stride)
            .map_err(|e| Error::Pipeline(format!("input {i}: {e}")))?;
        spans.push(s);
    }
    let flat: Vec<(usize, usize)> = spans
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (0..s.len()).map(move |w| (i, w)))
        .collect();
    let lengths: Vec<usize> = flat
        .iter()
        .map(|&(i, w)| spans[i][w].encoding.input_ids.len())
        .collect();
    // Start and end logits of every window, unpadded.
    let logits: Vec<(Vec<f32>, Vec<f32>)> = p.batched(&lengths, |batch| {
        let encs: Vec<_> = batch
            .iter()
            .map(|&k| &spans[flat[k].0][flat[k].1].encoding)
            .collect();
        let inputs = stack(&encs, p.tokenizer.pad_token_id())?;
        let out = p.engine.forward(&inputs, Default::default())?;
        let get = |name: &str| {
            out.get(name)
                .ok_or_else(|| Error::Pipeline(format!("the model returned no {name}")))
        };
        let (start, end) = (get("start_logits")?, get("end_logits")?);
        let s = inputs.seq;
        Ok(batch
            .iter()
            .enumerate()
            .map(|(row, &k)| {
                let n = lengths[k];
                let r = row * s..row * s + n;
                (start.data[r.clone()].to_vec(), end.data[r].to_vec())
            })
            .collect())
    })?;

    let cls_id = p.tokenizer.token_to_id("[CLS]");
    let mut k = 0;
    let mut out = Vec::with_capacity(inputs.len());
    for (x, windows) in inputs.iter().zip(&spans) {
        let window_logits = &logits[k..k + windows.len()];
        k += windows.len();
        out.push(answers(x, windows, window_logits, cls_id, opts));
    }
    Ok(out)
}

/// transformers' `postprocess` for one input over all its windows.
fn answers(
    x: &QaInput,
    windows: &[PairSpan],
    logits: &[(Vec<f32>, Vec<f32>)],
    cls_id: Option<u32>,
    opts: &QuestionAnsweringOptions,
) -> Vec<Answer> {
    let context: Vec<char> = x.context.chars().collect();
    let pre_topk = match opts.align_to_words {
        true => opts.top_k * 2 + 10,
        false => opts.top_k,
    };
    let mut min_null_score = 1_000_000f64;
    let mut found: Vec<Answer> = Vec::new();
    for (span, (start_logits, end_logits)) in windows.iter().zip(logits) {
        // Tokens that may be in an answer: the context's, and [CLS].
        let seq = span.sequence_ids();
        let ids = &span.encoding.input_ids;
        let desired: Vec<bool> = (0..seq.len())
            .map(|t| seq[t] == Some(1) || Some(ids[t]) == cls_id)
            .collect();
        let mut start = masked_softmax(start_logits, &desired);
        let mut end = masked_softmax(end_logits, &desired);
        if opts.handle_impossible_answer {
            min_null_score = min_null_score.min(start[0] * end[0]);
        }
        start[0] = 0.0;
        end[0] = 0.0;
        for (s, e, score) in best_spans(&start, &end, pre_topk, opts.max_answer_len, &desired) {
            let (a, b) = char_span(span, s, e, opts.align_to_words);
            // Python's context[a:b]: clamped, empty when b <= a.
            let a_ = a.min(context.len());
            let text: String = context[a_..b.clamp(a_, context.len())].iter().collect();
            let lower = text.to_lowercase();
            match found.iter_mut().find(|f| f.answer.to_lowercase() == lower) {
                Some(f) => f.score += score,
                None => found.push(Answer {
                    score,
                    start: a,
                    end: b,
                    answer: text,
                }),
            }
        }
    }
    if opts.handle_impossible_answer {
        found.push(Answer {
            score: min_null_score,
            start: 0,
            end: 0,
            answer: String::new(),
        });
    }
    found.sort_by(|a, b| b.score.total_cmp(&a.score)); // stable, as Python's sorted
    found.truncate(opts.top_k);
    found
}

/// softmax over the window with undesired positions' logits replaced by -10000.
fn masked_softmax(logits: &[f32], desired: &[bool]) -> Vec<f64> {
    let x: Vec<f64> = logits
        .iter()
        .zip(desired)
        .map(|(&l, &d)| if d { l as f64 } else { -10000.0 })
        .collect();
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// transformers' `decode_spans`: the `k` best (start, end) with start <= end < start +
/// max_answer_len, best first, then those whose start and end may be in an answer. Spans of
/// score 0 (outside the context) are left out: numpy would pick them in arbitrary order only
/// when a window has fewer than `k` scoring spans.
fn best_spans(
    start: &[f64],
    end: &[f64],
    k: usize,
    max_answer_len: usize,
    desired: &[bool],
) -> Vec<(usize, usize, f64)> {
    let n = start.len();
    let mut all = Vec::new();
    for (s, &ps) in start.iter().enumerate() {
        for (e, &pe) in end
            .iter()
            .enumerate()
            .take(n.min(s + max_answer_len))
            .skip(s)
        {
            if ps * pe > 0.0 {
                all.push((s, e, ps * pe));
            }
        }
    }
    // Row-major index order breaks ties, as a flattened argsort mostly does.
    all.sort_by(|a, b| b.2.total_cmp(&a.2));
    all.truncate(k);
    all.retain(|&(s, e, _)| desired[s] && desired[e]);
    all
}

/// Character span of tokens s..=e: widened to their words, or their own offsets when a token has
/// no word (transformers' `get_indices`).
fn char_span(span: &PairSpan, s: usize, e: usize, align_to_words: bool) -> (usize, usize) {
    let offsets = &span.encoding.offsets;
    if align_to_words {
        let word = |t| span.token_to_word(t).and_then(|w| span.word_to_chars(w, 1));
        if let (Some(a), Some(b)) = (word(s), word(e)) {
            return (a.0, b.1);
        }
    }
    (offsets[s].0, offsets[e].1)
}

/// The JSON transformers prints: an answer object when there is one answer, else a list; for
/// several inputs, a list of those.
pub fn to_json(results: &[Vec<Answer>]) -> serde_json::Value {
    let per_input = |r: &Vec<Answer>| match r.as_slice() {
        [one] => serde_json::to_value(one),
        many => serde_json::to_value(many),
    };
    let value = match results {
        [one] => per_input(one),
        many => many.iter().map(per_input).collect(),
    };
    value.unwrap_or_default()
}
