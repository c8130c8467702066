//! The task heads transformers puts on top of AlbertModel, named as its classes are.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// AlbertModel: last_hidden_state, pooler_output.
    Model,
    /// AlbertForPreTraining: prediction_logits [B,S,V], sop_logits [B,2].
    PreTraining,
    /// AlbertForMaskedLM: logits [B,S,V].
    MaskedLm,
    /// AlbertForSequenceClassification: logits [B,num_labels] from the pooled output.
    SequenceClassification,
    /// AlbertForMultipleChoice: inputs [B,C,S], logits [B,C] from the pooled output.
    MultipleChoice,
    /// AlbertForTokenClassification: logits [B,S,num_labels].
    TokenClassification,
    /// AlbertForQuestionAnswering: start_logits, end_logits [B,S].
    QuestionAnswering,
}

impl Head {
    pub const ALL: [Head; 7] = [
        Head::Model,
        Head::PreTraining,
        Head::MaskedLm,
        Head::SequenceClassification,
        Head::MultipleChoice,
        Head::TokenClassification,
        Head::QuestionAnswering,
    ];

    /// Accepts transformers' class names, and the short task names of the CLI.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "AlbertModel" | "model" | "base" => Head::Model,
            "AlbertForPreTraining" | "pretraining" => Head::PreTraining,
            "AlbertForMaskedLM" | "masked-lm" | "mlm" => Head::MaskedLm,
            "AlbertForSequenceClassification" | "sequence-classification" => {
                Head::SequenceClassification
            }
            "AlbertForMultipleChoice" | "multiple-choice" => Head::MultipleChoice,
            "AlbertForTokenClassification" | "token-classification" => Head::TokenClassification,
            "AlbertForQuestionAnswering" | "question-answering" => Head::QuestionAnswering,
            other => return Err(Error::UnknownHead(other.to_string())),
        })
    }

    pub fn class_name(self) -> &'static str {
        match self {
            Head::Model => "AlbertModel",
            Head::PreTraining => "AlbertForPreTraining",
            Head::MaskedLm => "AlbertForMaskedLM",
            Head::SequenceClassification => "AlbertForSequenceClassification",
            Head::MultipleChoice => "AlbertForMultipleChoice",
            Head::TokenClassification => "AlbertForTokenClassification",
            Head::QuestionAnswering => "AlbertForQuestionAnswering",
        }
    }

    /// Whether the head reads the pooler (tanh(W h_0 + b)); only these checkpoints need its weights.
    pub fn uses_pooler(self) -> bool {
        matches!(
            self,
            Head::Model | Head::PreTraining | Head::SequenceClassification | Head::MultipleChoice
        )
    }

    /// Whether the head reads the masked-LM prediction weights.
    pub fn uses_mlm(self) -> bool {
        matches!(self, Head::PreTraining | Head::MaskedLm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for h in Head::ALL {
            assert_eq!(Head::from_name(h.class_name()).unwrap(), h);
        }
        let e = Head::from_name("AlbertForCooking").unwrap_err().to_string();
        assert!(e.contains("AlbertForCooking"), "{e}");
    }
}
