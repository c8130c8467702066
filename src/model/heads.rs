//! The heads on top of the encoder, and `Albert::forward`, which returns what transformers'
//! head classes return, under their names:
//!
//!   pooler:          p = tanh(h[:, 0] Wp^T + bp)                                [R, H]
//!   MLM:             logits = LayerNorm_E(act(h Wd^T + bd)) Wdec^T + bias       [R*S, V]
//!   SOP:             sop_logits = p Ws^T + bs                                    [B, 2]
//!   sequence cls:    logits = p Wc^T + bc                                        [B, N]
//!   multiple choice: logits = (p Wc^T + bc).view(B, C)                           [B, C]
//!   token cls:       logits = h Wc^T + bc                                        [B, S, N]
//!   QA:              start, end = (h Wqa^T + bqa).split(1)                       [B, S] each

use super::head::Head;
use super::weights::{Linear, MlmWeights};
use super::Albert;
use crate::backend::cpu::reference as ops;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::tensor::{Outputs, Tensor};

#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardOptions {
    /// Also return hidden_states.0 .. hidden_states.N.
    pub hidden_states: bool,
}

impl Albert {
    /// Runs the model with its head and returns the head's outputs (float32, transformers' names).
    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> Result<Outputs> {
        let head = self.head;
        check_head_inputs(head, inputs)?;
        let enc = self.encode(inputs, opts.hidden_states)?;
        let (b, s, h) = (inputs.batch, enc.seq, self.config.hidden_size);
        let (rows, m) = (enc.rows, enc.rows * enc.seq);
        let mut out = Outputs::default();
        out.push(
            "last_hidden_state",
            Tensor::new(vec![rows, s, h], enc.last_hidden.clone()),
        );

        let w = &self.weights;
        match head {
            Head::Model => {
                let pooled = self.pooler(&enc.last_hidden, rows, s)?;
                out.push("pooler_output", Tensor::new(vec![rows, h], pooled));
            }
            Head::PreTraining => {
                let logits = self.mlm_logits(&enc.last_hidden, m)?;
                let v = self.config.vocab_size;
                out.push("prediction_logits", Tensor::new(vec![b, s, v], logits));
                let pooled = self.pooler(&enc.last_hidden, rows, s)?;
                let sop = linear(
                    need(&w.sop, "sop_classifier.classifier")?,
                    &pooled,
                    rows,
                    self.dtype,
                );
                out.push("sop_logits", Tensor::new(vec![b, 2], sop));
            }
            Head::MaskedLm => {
                let logits = self.mlm_logits(&enc.last_hidden, m)?;
                out.push(
                    "logits",
                    Tensor::new(vec![b, s, self.config.vocab_size], logits),
                );
            }
            Head::SequenceClassification => {
                let pooled = self.pooler(&enc.last_hidden, rows, s)?;
                let c = need(&w.classifier, "classifier")?;
                out.push(
                    "logits",
                    Tensor::new(
                        vec![b, c.out_features],
                        linear(c, &pooled, rows, self.dtype),
                    ),
                );
            }
            Head::MultipleChoice => {
                let pooled = self.pooler(&enc.last_hidden, rows, s)?;
                let c = need(&w.classifier, "classifier")?;
                let logits = linear(c, &pooled, rows, self.dtype); // [B*C, 1]
                out.push("logits", Tensor::new(vec![b, rows / b], logits));
            }
            Head::TokenClassification => {
                let c = need(&w.classifier, "classifier")?;
                let logits = linear(c, &enc.last_hidden, m, self.dtype);
                out.push("logits", Tensor::new(vec![b, s, c.out_features], logits));
            }
            Head::QuestionAnswering => {
                let qa = linear(
                    need(&w.classifier, "qa_outputs")?,
                    &enc.last_hidden,
                    m,
                    self.dtype,
                ); // [M, 2]
                let start = qa.iter().step_by(2).copied().collect();
                let end = qa.iter().skip(1).step_by(2).copied().collect();
                out.push("start_logits", Tensor::new(vec![b, s], start));
                out.push("end_logits", Tensor::new(vec![b, s], end));
            }
        }
        for (n, hs) in enc.hidden_states.into_iter().enumerate() {
            out.push(
                format!("hidden_states.{n}"),
                Tensor::new(vec![rows, s, h], hs),
            );
        }
        Ok(out)
    }

    /// tanh(h[:, 0] Wp^T + bp) for each of `rows` sequences of `s` tokens.
    pub fn pooler(&self, hidden: &[f32], rows: usize, s: usize) -> Result<Vec<f32>> {
        let h = self.config.hidden_size;
        let first: Vec<f32> = (0..rows)
            .flat_map(|r| hidden[r * s * h..r * s * h + h].iter().copied())
            .collect();
        let mut pooled = linear(
            need(&self.weights.pooler, "pooler")?,
            &first,
            rows,
            self.dtype,
        );
        ops::tanh_forward(&mut pooled);
        Ok(pooled)
    }

    /// MLM logits [n, V] at the token rows `positions` (row * S + position) of a batch: fill-mask
    /// runs the vocabulary product only where it needs it.
    pub fn masked_lm_logits(&self, inputs: &Inputs, positions: &[usize]) -> Result<Vec<f32>> {
        let enc = self.encode(inputs, false)?;
        let (h, m) = (self.config.hidden_size, enc.rows * enc.seq);
        if let Some(&p) = positions.iter().find(|&&p| p >= m) {
            return Err(Error::Input(format!(
                "position {p} is outside the batch's {m} token rows"
            )));
        }
        let rows: Vec<f32> = positions
            .iter()
            .flat_map(|&p| enc.last_hidden[p * h..(p + 1) * h].iter().copied())
            .collect();
        self.mlm_logits(&rows, positions.len())
    }

    /// MLM logits [n, V] for `n` hidden rows [n, H] (any subset of tokens: fill-mask passes only
    /// the [MASK] positions).
    pub fn mlm_logits(&self, hidden: &[f32], n: usize) -> Result<Vec<f32>> {
        let cfg = &self.config;
        let mlm: &MlmWeights = need(&self.weights.mlm, "predictions")?;
        let mut x = linear(&mlm.dense, hidden, n, self.dtype); // [n, E]
        ops::activation_forward(&mut x, cfg.hidden_act);
        let mut normed = vec![0f32; x.len()];
        let e = cfg.embedding_size;
        ops::layernorm_forward(
            &mut normed,
            &x,
            &mlm.norm.weight,
            &mlm.norm.bias,
            e,
            cfg.layer_norm_eps,
        );
        let decoder = mlm
            .decoder
            .as_deref()
            .unwrap_or(&self.weights.embeddings.word);
        let mut logits = vec![0f32; n * cfg.vocab_size];
        ops::linear_forward(
            &mut logits,
            &normed,
            decoder,
            Some(&mlm.bias),
            n,
            e,
            cfg.vocab_size,
            self.dtype,
        );
        Ok(logits)
    }
}

/// [B, C, S] inputs go with the multiple-choice head, and only with it.
pub fn check_head_inputs(head: Head, inputs: &Inputs) -> Result<()> {
    match (head, inputs.choices) {
        (Head::MultipleChoice, None) => Err(Error::Input(
            "AlbertForMultipleChoice needs input_ids of shape [B, C, S]".into(),
        )),
        (h, Some(_)) if h != Head::MultipleChoice => Err(Error::Input(format!(
            "input_ids of shape [B, C, S] are only for AlbertForMultipleChoice, not {}",
            h.class_name()
        ))),
        _ => Ok(()),
    }
}

/// y[n, out] = x[n, in] W^T + b
fn linear(l: &Linear, x: &[f32], n: usize, dtype: DType) -> Vec<f32> {
    let mut y = vec![0f32; n * l.out_features];
    ops::linear_forward(
        &mut y,
        x,
        &l.weight,
        Some(&l.bias),
        n,
        l.in_features,
        l.out_features,
        dtype,
    );
    y
}

/// A head weight that `Weights::load` loads for this head; absent only if the model was built by
/// hand for another head.
fn need<'a, T>(w: &'a Option<T>, name: &str) -> Result<&'a T> {
    w.as_ref().ok_or_else(|| {
        Error::Input(format!(
            "this model was loaded without the `{name}` weights its head needs"
        ))
    })
}
