//! Feature extraction: transformers' feature-extraction pipeline (the last hidden state of every
//! token, special tokens included), or one vector per text pooled from it, optionally scaled to
//! unit L2 norm.

use std::str::FromStr;

use super::{need_inputs, stack, Pipeline};
use crate::error::{Error, Result};
use crate::model::head::Head;
use crate::tensor::Tensor;
use crate::tokenizer::EncodeOptions;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pooling {
    /// Every token's last hidden state: [S, H] per text.
    #[default]
    None,
    /// The [CLS] token's last hidden state: [H].
    Cls,
    /// The mean of the last hidden state over the attention mask (special tokens included): [H].
    Mean,
    /// AlbertModel's pooler_output, tanh(W h_cls + b): [H]. Needs the pooler weights, which
    /// AlbertForMaskedLM, ...ForTokenClassification and ...ForQuestionAnswering checkpoints lack.
    Pooler,
}

impl FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "none" => Self::None,
            "cls" => Self::Cls,
            "mean" => Self::Mean,
            "pooler" => Self::Pooler,
            _ => {
                return Err(Error::Pipeline(format!(
                    "pooling `{s}`: expected none, cls, mean or pooler"
                )))
            }
        })
    }
}

impl Pooling {
    /// The head to load a checkpoint whose own head is `checkpoint` with: AlbertModel where the
    /// checkpoint has a pooler (its outputs are cheapest), else the checkpoint's head, whose
    /// last_hidden_state is the same. `pooler` pooling always asks for AlbertModel, so loading
    /// a checkpoint without a pooler fails naming the missing weight.
    pub fn load_head(self, checkpoint: Head) -> Head {
        match self == Pooling::Pooler || checkpoint.uses_pooler() {
            true => Head::Model,
            false => checkpoint,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct EmbedOptions {
    pub pooling: Pooling,
    /// Scale each vector (each token's, without pooling) to unit L2 norm.
    pub normalize: bool,
}

/// For each text, [S, H] (no pooling; S its own token count) or [H].
pub fn run(p: &Pipeline, texts: &[String], opts: &EmbedOptions) -> Result<Vec<Tensor>> {
    match opts.pooling {
        Pooling::Pooler => p.need_head("embed --pooling pooler", &[Head::Model])?,
        _ if p.engine.head() == Head::MultipleChoice => {
            return Err(Error::Pipeline(
                "embed needs a model loaded as AlbertModel (or any single-sequence head), \
                 not AlbertForMultipleChoice"
                    .into(),
            ))
        }
        _ => {}
    }
    need_inputs(texts.len())?;
    let h = p.engine.config().hidden_size;
    let encodings = texts
        .iter()
        .map(|t| p.tokenizer.encode(t, None, &EncodeOptions::default()))
        .collect::<Result<Vec<_>>>()?;
    let lengths: Vec<usize> = encodings.iter().map(|e| e.input_ids.len()).collect();
    p.batched(&lengths, |batch| {
        let encs: Vec<_> = batch.iter().map(|&i| &encodings[i]).collect();
        let inputs = stack(&encs, p.tokenizer.pad_token_id())?;
        let out = p.engine.forward(&inputs, Default::default())?;
        let get = |name: &str| {
            out.get(name)
                .ok_or_else(|| Error::Pipeline(format!("the model returned no {name}")))
        };
        let hidden = get("last_hidden_state")?; // [B, S, H]
        let s = inputs.seq;
        batch
            .iter()
            .enumerate()
            .map(|(row, &i)| {
                let n = lengths[i];
                let tokens = &hidden.data[row * s * h..(row * s + n) * h]; // [n, H]
                let mut t = match opts.pooling {
                    Pooling::None => Tensor::new(vec![n, h], tokens.to_vec()),
                    Pooling::Cls => Tensor::new(vec![h], tokens[..h].to_vec()),
                    Pooling::Mean => {
                        let mask = &encodings[i].attention_mask;
                        Tensor::new(vec![h], masked_mean(tokens, mask, h))
                    }
                    Pooling::Pooler => {
                        let pooled = get("pooler_output")?; // [B, H]
                        Tensor::new(vec![h], pooled.data[row * h..(row + 1) * h].to_vec())
                    }
                };
                if opts.normalize {
                    t.data.chunks_exact_mut(h).for_each(l2_normalize);
                }
                Ok(t)
            })
            .collect()
    })
}

/// Mean over the rows [n, H] whose mask is 1, in f64.
fn masked_mean(rows: &[f32], mask: &[u32], h: usize) -> Vec<f32> {
    let mut sum = vec![0f64; h];
    let mut count = 0usize;
    for (row, &m) in rows.chunks_exact(h).zip(mask) {
        if m == 1 {
            sum.iter_mut().zip(row).for_each(|(s, &x)| *s += x as f64);
            count += 1;
        }
    }
    let count = count.max(1) as f64;
    sum.iter().map(|s| (s / count) as f32).collect()
}

/// x / max(||x||, 1e-12), as torch.nn.functional.normalize.
fn l2_normalize(x: &mut [f32]) {
    let norm = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let scale = 1.0 / norm.max(1e-12);
    x.iter_mut().for_each(|v| *v = (*v as f64 * scale) as f32);
}

/// transformers' feature-extraction JSON without pooling ([1, S, H] per text), one vector [H]
/// per text with it; a list of those for several texts.
pub fn to_json(results: &[Tensor]) -> serde_json::Value {
    let per_text = |t: &Tensor| -> serde_json::Value {
        let h = *t.shape.last().unwrap_or(&1);
        let rows: Vec<&[f32]> = t.data.chunks(h.max(1)).collect();
        match t.shape.len() {
            1 => serde_json::json!(t.data),
            _ => serde_json::json!([rows]),
        }
    };
    match results {
        [one] => per_text(one),
        many => many.iter().map(per_text).collect(),
    }
}
