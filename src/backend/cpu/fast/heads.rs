//! The heads on the fast path: what model/heads.rs computes, under the same names, with the
//! products as `linear_forward` on packed weights.

use super::gemm::{linear_forward, Epilogue, PackedWeight};
use super::model::{FastAlbert, FastLinear};
use super::norm::{layernorm_forward, tanh_forward};
use super::AlignedBuf;
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::model::head::Head;
use crate::model::heads::{check_head_inputs, ForwardOptions};
use crate::tensor::{Outputs, Tensor};

impl FastAlbert {
    /// Runs the model with its head: the outputs of `Albert::forward`, same names and shapes.
    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> Result<Outputs> {
        check_head_inputs(self.head, inputs)?;
        let (b, s, h) = (inputs.batch, inputs.seq, self.config.hidden_size);
        let rows = inputs.rows();
        let v = self.config.vocab_size;
        let mut recorded = Vec::new();
        let record = opts.hidden_states.then_some(&mut recorded);
        let mut out = Outputs::default();
        self.encode(inputs, record, |ar, m| {
            let hidden = &ar.hidden.f32s()[..m * h];
            out.push(
                "last_hidden_state",
                Tensor::new(vec![rows, s, h], hidden.to_vec()),
            );
            let w = &self.weights;
            match self.head {
                Head::Model => {
                    let pooled = self.pooler(hidden, rows, s)?;
                    out.push("pooler_output", Tensor::new(vec![rows, h], pooled));
                }
                Head::PreTraining => {
                    let logits = self.mlm_logits(hidden, m)?;
                    out.push("prediction_logits", Tensor::new(vec![b, s, v], logits));
                    let pooled = self.pooler(hidden, rows, s)?;
                    let sop =
                        self.linear(need(&w.sop, "sop_classifier.classifier")?, &pooled, rows);
                    out.push("sop_logits", Tensor::new(vec![b, 2], sop));
                }
                Head::MaskedLm => {
                    let logits = self.mlm_logits(hidden, m)?;
                    out.push("logits", Tensor::new(vec![b, s, v], logits));
                }
                Head::SequenceClassification => {
                    let pooled = self.pooler(hidden, rows, s)?;
                    let c = need(&w.classifier, "classifier")?;
                    let logits = self.linear(c, &pooled, rows);
                    out.push("logits", Tensor::new(vec![b, c.weight.n], logits));
                }
                Head::MultipleChoice => {
                    let pooled = self.pooler(hidden, rows, s)?;
                    let logits = self.linear(need(&w.classifier, "classifier")?, &pooled, rows);
                    out.push("logits", Tensor::new(vec![b, rows / b], logits));
                }
                Head::TokenClassification => {
                    let c = need(&w.classifier, "classifier")?;
                    let logits = self.linear(c, hidden, m);
                    out.push("logits", Tensor::new(vec![b, s, c.weight.n], logits));
                }
                Head::QuestionAnswering => {
                    let qa = self.linear(need(&w.classifier, "qa_outputs")?, hidden, m); // [M, 2]
                    let start = qa.iter().step_by(2).copied().collect();
                    let end = qa.iter().skip(1).step_by(2).copied().collect();
                    out.push("start_logits", Tensor::new(vec![b, s], start));
                    out.push("end_logits", Tensor::new(vec![b, s], end));
                }
            }
            Ok(())
        })?;
        for (n, hs) in recorded.into_iter().enumerate() {
            out.push(
                format!("hidden_states.{n}"),
                Tensor::new(vec![rows, s, h], hs),
            );
        }
        Ok(out)
    }

    /// The encoder alone (what `albert bench` times).
    pub fn encode_only(&self, inputs: &Inputs) -> Result<()> {
        self.encode(inputs, None, |_, _| Ok(()))
    }

    /// MLM logits [n, V] at token rows `positions` (row * S + position).
    pub fn masked_lm_logits(&self, inputs: &Inputs, positions: &[usize]) -> Result<Vec<f32>> {
        let h = self.config.hidden_size;
        let picked = self.encode(inputs, None, |ar, m| {
            if let Some(&p) = positions.iter().find(|&&p| p >= m) {
                return Err(Error::Input(format!(
                    "position {p} is outside the batch's {m} token rows"
                )));
            }
            let hidden = ar.hidden.f32s();
            Ok(positions
                .iter()
                .flat_map(|&p| hidden[p * h..(p + 1) * h].iter().copied())
                .collect::<Vec<f32>>())
        })?;
        self.mlm_logits(&picked, positions.len())
    }

    /// tanh(h[:, 0] Wp^T + bp) for each of `rows` sequences of `s` tokens.
    fn pooler(&self, hidden: &[f32], rows: usize, s: usize) -> Result<Vec<f32>> {
        let h = self.config.hidden_size;
        let first: Vec<f32> = (0..rows)
            .flat_map(|r| hidden[r * s * h..r * s * h + h].iter().copied())
            .collect();
        let mut pooled = self.linear(need(&self.weights.pooler, "pooler")?, &first, rows);
        tanh_forward(&mut pooled);
        Ok(pooled)
    }

    /// MLM logits [n, V] for `n` hidden rows [n, H].
    fn mlm_logits(&self, hidden: &[f32], n: usize) -> Result<Vec<f32>> {
        let cfg = &self.config;
        let mlm = need(&self.weights.mlm, "predictions")?;
        let x = self.linear_epi(&mlm.dense, hidden, n, Epilogue::Activation(cfg.hidden_act));
        let e = cfg.embedding_size;
        let mut normed = vec![0f32; x.len()];
        layernorm_forward(
            &mut normed,
            &x,
            &mlm.norm.weight,
            &mlm.norm.bias,
            e,
            cfg.layer_norm_eps,
        );
        Ok(product(
            &mlm.decoder,
            Some(&mlm.bias),
            &normed,
            n,
            Epilogue::None,
        ))
    }

    /// y[n, out] = x[n, in] W^T + b
    fn linear(&self, l: &FastLinear, x: &[f32], n: usize) -> Vec<f32> {
        self.linear_epi(l, x, n, Epilogue::None)
    }

    fn linear_epi(&self, l: &FastLinear, x: &[f32], n: usize, epi: Epilogue) -> Vec<f32> {
        product(&l.weight, Some(&l.bias), x, n, epi)
    }
}

/// A product outside the arena (the heads): allocates its output and packed-A scratch.
fn product(w: &PackedWeight, bias: Option<&[f32]>, x: &[f32], n: usize, epi: Epilogue) -> Vec<f32> {
    let mut y = vec![0f32; n * w.n];
    let mut pa = AlignedBuf::zeros(w.micro.packed_a_len(n, w.k));
    linear_forward(&mut y, x, w, bias, n, w.k, w.n, epi, pa.u32s_mut());
    y
}

/// A head weight that was packed for this head; absent only if the model was built for another.
fn need<'a, T>(w: &'a Option<T>, name: &str) -> Result<&'a T> {
    w.as_ref().ok_or_else(|| {
        Error::Input(format!(
            "this model was loaded without the `{name}` weights its head needs"
        ))
    })
}
