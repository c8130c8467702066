//! transformers' fill-mask pipeline: for each [MASK] of a text, the `top_k` most likely tokens
//! with their probability, the decoded token and the text with the token put in. MLM logits are
//! computed only at the [MASK] positions (V = 30000 columns per row, the costliest matmul of a
//! short text otherwise).

use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::head::Head;
use crate::tokenizer::{EncodeOptions, Padding, Tokenizer};

/// One proposal for one [MASK], with transformers' keys.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FillMaskAnswer {
    pub score: f64,
    pub token: u32,
    pub token_str: String,
    pub sequence: String,
}

/// For each text, for each [MASK] in it (left to right), the `top_k` answers, best first.
pub fn fill_mask(
    model: &Engine,
    tokenizer: &Tokenizer,
    texts: &[String],
    top_k: usize,
) -> Result<Vec<Vec<Vec<FillMaskAnswer>>>> {
    if !matches!(model.head(), Head::MaskedLm | Head::PreTraining) {
        return Err(Error::Pipeline(format!(
            "fill-mask needs a masked-LM head, the model is loaded as {}",
            model.head().class_name()
        )));
    }
    if top_k == 0 {
        return Err(Error::Pipeline("top_k must be at least 1".into()));
    }
    if texts.is_empty() {
        return Err(Error::Input("empty batch: no text given".into()));
    }
    let mask_id = tokenizer.mask_token_id()?;
    let batch: Vec<(String, Option<String>)> = texts.iter().map(|t| (t.clone(), None)).collect();
    let opts = EncodeOptions {
        padding: Padding::Longest,
        ..Default::default()
    };
    let encodings = tokenizer.encode_batch(&batch, &opts)?;

    // Every [MASK] position of every text, as (text, position).
    let mut masked = Vec::new();
    for (t, enc) in encodings.iter().enumerate() {
        let before = masked.len();
        masked.extend(
            enc.input_ids
                .iter()
                .enumerate()
                .filter(|(_, &id)| id == mask_id)
                .map(|(p, _)| (t, p)),
        );
        if masked.len() == before {
            return Err(Error::Pipeline(format!(
                "no [MASK] token in text {t}: {:?}",
                texts[t]
            )));
        }
    }

    let inputs = Tokenizer::to_inputs(&encodings)?;
    let positions: Vec<usize> = masked.iter().map(|&(t, p)| t * inputs.seq + p).collect();
    let logits = model.masked_lm_logits(&inputs, &positions)?; // [masks, V]
    let v = model.config().vocab_size;

    let mut out: Vec<Vec<Vec<FillMaskAnswer>>> = vec![Vec::new(); texts.len()];
    for (m, &(t, p)) in masked.iter().enumerate() {
        let ids = &encodings[t].input_ids;
        let single_mask = ids.iter().filter(|&&id| id == mask_id).count() == 1;
        let probs = softmax(&logits[m * v..(m + 1) * v]);
        let mut order: Vec<usize> = (0..v).collect();
        // Best first; equal probabilities keep the lower token id first.
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let mut answers = Vec::with_capacity(top_k.min(v));
        for &token in order.iter().take(top_k) {
            let token = token as u32;
            // As transformers: put the token in, drop padding, decode; special tokens are
            // skipped only when the text has a single mask (else the other [MASK]s stay).
            let mut filled = ids.clone();
            filled[p] = token;
            filled.retain(|&id| id != tokenizer.pad_token_id());
            answers.push(FillMaskAnswer {
                score: probs[token as usize],
                token,
                token_str: tokenizer.decode(&[token], false)?,
                sequence: tokenizer.decode(&filled, single_mask)?,
            });
        }
        out[t].push(answers);
    }
    Ok(out)
}

/// Probabilities in f64 from f32 logits.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let mut p: Vec<f64> = logits.iter().map(|&x| x as f64).collect();
    crate::backend::cpu::reference::softmax_row(&mut p);
    p
}

/// The JSON transformers' pipeline prints for one text: a list of answers for a single [MASK],
/// a list of such lists for several.
pub fn to_json(answers: &[Vec<FillMaskAnswer>]) -> serde_json::Value {
    match answers {
        [one] => serde_json::to_value(one).unwrap_or_default(),
        many => serde_json::to_value(many).unwrap_or_default(),
    }
}
