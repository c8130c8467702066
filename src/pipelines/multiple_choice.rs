//! Multiple choice (transformers has a head but no pipeline): a prompt and N choices, encoded as
//! N pairs (prompt, choice) padded to one length, [1, N, S] through AlbertForMultipleChoice, and
//! a softmax over the N logits, as `AutoModelForMultipleChoice` is used in transformers' docs.

use serde::{Deserialize, Serialize};

use super::{need_inputs, softmax, stack, Pipeline};
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::model::head::Head;
use crate::tokenizer::{EncodeOptions, Encoding};

/// A prompt and the choices that may complete or answer it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct McInput {
    pub prompt: String,
    pub choices: Vec<String>,
}

/// One choice's probability (softmax over the prompt's choices) and raw logit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChoiceScore {
    pub choice: String,
    pub score: f64,
    pub logit: f64,
}

/// For each input, a score per choice, in the order the choices were given.
pub fn run(p: &Pipeline, inputs: &[McInput]) -> Result<Vec<Vec<ChoiceScore>>> {
    p.need_head("multiple-choice", &[Head::MultipleChoice])?;
    need_inputs(inputs.len())?;
    let mut encodings: Vec<Vec<Encoding>> = Vec::with_capacity(inputs.len());
    for (i, x) in inputs.iter().enumerate() {
        if x.choices.is_empty() {
            return Err(Error::Pipeline(format!("input {i} has no choices")));
        }
        // The batch path keeps an empty choice a pair, as `tok([prompt] * N, choices)` does.
        let pairs: Vec<(String, Option<String>)> = x
            .choices
            .iter()
            .map(|c| (x.prompt.clone(), Some(c.clone())))
            .collect();
        encodings.push(
            p.tokenizer
                .encode_batch(&pairs, &EncodeOptions::default())?,
        );
    }
    let lengths: Vec<usize> = encodings
        .iter()
        .map(|e| e.iter().map(|c| c.input_ids.len()).max().unwrap_or(0))
        .collect();
    p.batched(&lengths, |batch| {
        // One forward pass per number of choices in the batch: [B, C, S] needs one C.
        let mut out: Vec<Option<Vec<ChoiceScore>>> = vec![None; batch.len()];
        let mut todo: Vec<usize> = (0..batch.len()).collect();
        while let Some(&first) = todo.first() {
            let c = inputs[batch[first]].choices.len();
            let (group, rest): (Vec<usize>, Vec<usize>) = todo
                .iter()
                .partition(|&&j| inputs[batch[j]].choices.len() == c);
            todo = rest;
            let encs: Vec<&Encoding> = group
                .iter()
                .flat_map(|&j| encodings[batch[j]].iter())
                .collect();
            let flat = stack(&encs, p.tokenizer.pad_token_id())?; // [B*C, S]
            let shape = [group.len(), c, flat.seq];
            let inputs3 = Inputs::new(
                flat.input_ids,
                Some(flat.attention_mask),
                Some(flat.token_type_ids),
                &shape,
            )?;
            let logits = p.engine.forward(&inputs3, Default::default())?;
            let logits = logits
                .get("logits")
                .ok_or_else(|| Error::Pipeline("the model returned no logits".into()))?;
            for (row, &j) in group.iter().enumerate() {
                let l = &logits.data[row * c..(row + 1) * c];
                let scores = softmax(l);
                let x = &inputs[batch[j]];
                out[j] = Some(
                    x.choices
                        .iter()
                        .zip(scores.iter().zip(l))
                        .map(|(choice, (&score, &logit))| ChoiceScore {
                            choice: choice.clone(),
                            score,
                            logit: logit as f64,
                        })
                        .collect(),
                );
            }
        }
        Ok(out.into_iter().flatten().collect())
    })
}

/// A list of choices for one input, a list of lists for several.
pub fn to_json(results: &[Vec<ChoiceScore>]) -> serde_json::Value {
    let value = match results {
        [one] => serde_json::to_value(one),
        many => serde_json::to_value(many),
    };
    value.unwrap_or_default()
}
