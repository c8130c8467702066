//! The inputs of one forward pass, checked against each other and against the model before any
//! work is done: every bad input is an `Error` naming the culprit, never a panic.

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::model::config::AlbertConfig;

/// input_ids, attention_mask and token_type_ids of a batch, row-major. For multiple choice the
/// batch is [B, C, S] and `choices` is `Some(C)`; the model sees B*C rows of S tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Inputs {
    pub input_ids: Vec<i64>,      // [rows, S]
    pub attention_mask: Vec<i64>, // [rows, S], 1 = token, 0 = padding
    pub token_type_ids: Vec<i64>, // [rows, S]
    pub batch: usize,             // B
    pub choices: Option<usize>,   // C
    pub seq: usize,               // S
}

impl Inputs {
    /// Builds inputs of `shape` ([B, S], or [B, C, S] for multiple choice). An absent
    /// attention mask is all ones and absent token types are all zeros, as in transformers.
    pub fn new(
        input_ids: Vec<i64>,
        attention_mask: Option<Vec<i64>>,
        token_type_ids: Option<Vec<i64>>,
        shape: &[usize],
    ) -> Result<Self> {
        let (batch, choices, seq) = match *shape {
            [b, s] => (b, None, s),
            [b, c, s] => (b, Some(c), s),
            _ => {
                return Err(Error::Input(format!(
                    "input_ids must have shape [B, S] (or [B, C, S] for multiple choice), found {shape:?}"
                )))
            }
        };
        if batch == 0 || seq == 0 || choices == Some(0) {
            return Err(Error::Input(format!(
                "empty batch: input_ids has shape {shape:?}"
            )));
        }
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                Error::Input(format!(
                    "input_ids shape {shape:?} has more elements than memory can hold"
                ))
            })?;
        if input_ids.len() != n {
            return Err(Error::Input(format!(
                "input_ids has {} values, its shape {shape:?} needs {n}",
                input_ids.len()
            )));
        }
        let check = |name: &str, v: &Option<Vec<i64>>| match v {
            Some(v) if v.len() != n => Err(Error::Input(format!(
                "{name} has {} values, input_ids has shape {shape:?} ({n} values)",
                v.len()
            ))),
            _ => Ok(()),
        };
        check("attention_mask", &attention_mask)?;
        check("token_type_ids", &token_type_ids)?;
        Ok(Inputs {
            attention_mask: attention_mask.unwrap_or_else(|| vec![1; n]),
            token_type_ids: token_type_ids.unwrap_or_else(|| vec![0; n]),
            input_ids,
            batch,
            choices,
            seq,
        })
    }

    /// Rows the encoder runs: B, or B*C for multiple choice.
    pub fn rows(&self) -> usize {
        self.batch * self.choices.unwrap_or(1)
    }

    /// Checks the size against `limits`, every id against the model's tables and the length
    /// against its positions.
    pub fn validate(&self, cfg: &AlbertConfig, limits: &Limits) -> Result<()> {
        limits.check_tokens(self.rows(), self.seq)?;
        if self.seq > cfg.max_position_embeddings {
            return Err(Error::Input(format!(
                "sequence length {} is longer than max_position_embeddings {}",
                self.seq, cfg.max_position_embeddings
            )));
        }
        let s = self.seq;
        let tables = [
            ("token id", &self.input_ids, cfg.vocab_size),
            ("token type id", &self.token_type_ids, cfg.type_vocab_size),
            ("attention mask value", &self.attention_mask, 2),
        ];
        for (what, values, limit) in tables {
            if let Some(i) = values
                .iter()
                .position(|&v| v < 0 || v as u64 >= limit as u64)
            {
                let (row, pos) = (i / s, i % s);
                let (batch, choice) = match self.choices {
                    Some(c) => (row / c, Some(row % c)),
                    None => (row, None),
                };
                return Err(Error::IdOutOfRange {
                    what,
                    value: values[i],
                    batch,
                    choice,
                    pos,
                    limit,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_mask_and_types() {
        let x = Inputs::new(vec![2, 5, 3], None, None, &[1, 3]).unwrap();
        assert_eq!(x.attention_mask, [1, 1, 1]);
        assert_eq!(x.token_type_ids, [0, 0, 0]);
    }

    #[test]
    fn shape_errors_name_the_tensor() {
        let e = Inputs::new(vec![1, 2, 3], Some(vec![1, 1]), None, &[1, 3]).unwrap_err();
        assert!(e.to_string().contains("attention_mask"), "{e}");
        let e = Inputs::new(vec![], None, None, &[0, 3]).unwrap_err();
        assert!(e.to_string().contains("empty batch"), "{e}");
    }
}
