//! The model's weights on the host, in f32, named and shaped as transformers' modeling_albert.py
//! names them. `Weights::load` finds each tensor under the `albert.` prefix that heads write, or
//! with no prefix as a bare AlbertModel writes it.

use super::checkpoint::Checkpoint;
use super::config::AlbertConfig;
use super::head::Head;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// y = x W^T + b, PyTorch's nn.Linear layout.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Vec<f32>, // [out, in]
    pub bias: Vec<f32>,   // [out]
    pub out_features: usize,
    pub in_features: usize,
}

#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Vec<f32>, // [n]
    pub bias: Vec<f32>,   // [n]
}

#[derive(Clone, Debug)]
pub struct EmbeddingWeights {
    pub word: Vec<f32>,       // [V, E]
    pub position: Vec<f32>,   // [P, E]
    pub token_type: Vec<f32>, // [T, E]
    pub norm: LayerNorm,      // [E]
    /// encoder.embedding_hidden_mapping_in
    pub projection: Linear, // [H, E]
}

/// One AlbertLayer. A group holds `inner_group_num` of them; a group is applied
/// `num_hidden_layers / num_hidden_groups` times with the same weights.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub query: Linear,          // [H, H]
    pub key: Linear,            // [H, H]
    pub value: Linear,          // [H, H]
    pub attn_output: Linear,    // [H, H]  attention.dense
    pub attn_norm: LayerNorm,   // [H]     attention.LayerNorm
    pub ffn: Linear,            // [I, H]
    pub ffn_output: Linear,     // [H, I]
    pub output_norm: LayerNorm, // [H]     full_layer_layer_norm
}

#[derive(Clone, Debug)]
pub struct MlmWeights {
    pub dense: Linear,   // [E, H]
    pub norm: LayerNorm, // [E]
    /// The decoder's own [V, E] weight when untied; `None` means the word embeddings.
    pub decoder: Option<Vec<f32>>,
    pub bias: Vec<f32>, // [V]
}

#[derive(Clone, Debug)]
pub struct Weights {
    pub embeddings: EmbeddingWeights,
    pub groups: Vec<Vec<LayerWeights>>, // [G][inner_group_num]
    pub pooler: Option<Linear>,         // [H, H]
    pub mlm: Option<MlmWeights>,
    pub sop: Option<Linear>, // [2, H]
    /// classifier ([num_labels, H], or [1, H] for multiple choice) or qa_outputs ([2, H]).
    pub classifier: Option<Linear>,
}

impl Weights {
    /// Loads what `head` needs from `ckpt`; tensors it does not need are ignored.
    pub fn load(ckpt: &Checkpoint, cfg: &AlbertConfig, head: Head) -> Result<Self> {
        // Heads write the base model under `albert.`; a bare AlbertModel writes no prefix.
        let base = match ckpt.names().iter().any(|n| n.starts_with("albert.")) {
            true => "albert.",
            false => "",
        };
        let l = Loader { ckpt, base };
        let (v, e, h, i) = (
            cfg.vocab_size,
            cfg.embedding_size,
            cfg.hidden_size,
            cfg.intermediate_size,
        );

        let embeddings = EmbeddingWeights {
            word: l.base("embeddings.word_embeddings.weight", &[v, e])?,
            position: l.base(
                "embeddings.position_embeddings.weight",
                &[cfg.max_position_embeddings, e],
            )?,
            token_type: l.base(
                "embeddings.token_type_embeddings.weight",
                &[cfg.type_vocab_size, e],
            )?,
            norm: l.norm(&format!("{base}embeddings.LayerNorm"), e)?,
            projection: l.linear(&format!("{base}encoder.embedding_hidden_mapping_in"), h, e)?,
        };
        let mut groups = Vec::with_capacity(cfg.num_hidden_groups);
        for g in 0..cfg.num_hidden_groups {
            let mut layers = Vec::with_capacity(cfg.inner_group_num);
            for j in 0..cfg.inner_group_num {
                let p = format!("{base}encoder.albert_layer_groups.{g}.albert_layers.{j}");
                layers.push(LayerWeights {
                    query: l.linear(&format!("{p}.attention.query"), h, h)?,
                    key: l.linear(&format!("{p}.attention.key"), h, h)?,
                    value: l.linear(&format!("{p}.attention.value"), h, h)?,
                    attn_output: l.linear(&format!("{p}.attention.dense"), h, h)?,
                    attn_norm: l.norm(&format!("{p}.attention.LayerNorm"), h)?,
                    ffn: l.linear(&format!("{p}.ffn"), i, h)?,
                    ffn_output: l.linear(&format!("{p}.ffn_output"), h, i)?,
                    output_norm: l.norm(&format!("{p}.full_layer_layer_norm"), h)?,
                });
            }
            groups.push(layers);
        }
        let pooler = match head.uses_pooler() {
            true => Some(l.linear(&format!("{base}pooler"), h, h)?),
            false => None,
        };
        let mlm = match head.uses_mlm() {
            true => Some(l.mlm(cfg)?),
            false => None,
        };
        let sop = match head {
            Head::PreTraining => Some(l.linear("sop_classifier.classifier", 2, h)?),
            _ => None,
        };
        let classifier = match head {
            Head::SequenceClassification | Head::TokenClassification => {
                Some(l.linear("classifier", cfg.num_labels(), h)?)
            }
            Head::MultipleChoice => Some(l.linear("classifier", 1, h)?),
            Head::QuestionAnswering => Some(l.linear("qa_outputs", 2, h)?),
            _ => None,
        };
        Ok(Weights {
            embeddings,
            groups,
            pooler,
            mlm,
            sop,
            classifier,
        })
    }

    /// Rounds every matrix and embedding table to `dtype` (values stay stored as f32).
    pub fn round_matrices(&mut self, dtype: DType) {
        let round = |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = dtype.round(*x));
        let emb = &mut self.embeddings;
        for t in [
            &mut emb.word,
            &mut emb.position,
            &mut emb.token_type,
            &mut emb.projection.weight,
        ] {
            round(t);
        }
        for layer in self.groups.iter_mut().flatten() {
            for l in [
                &mut layer.query,
                &mut layer.key,
                &mut layer.value,
                &mut layer.attn_output,
                &mut layer.ffn,
                &mut layer.ffn_output,
            ] {
                round(&mut l.weight);
            }
        }
        for l in [&mut self.pooler, &mut self.sop, &mut self.classifier]
            .into_iter()
            .flatten()
        {
            round(&mut l.weight);
        }
        if let Some(m) = &mut self.mlm {
            round(&mut m.dense.weight);
            if let Some(d) = &mut m.decoder {
                round(d);
            }
        }
    }

    /// Number of parameters held (a tied decoder counted once).
    pub fn num_params(&self) -> usize {
        let lin = |l: &Linear| l.weight.len() + l.bias.len();
        let norm = |n: &LayerNorm| n.weight.len() + n.bias.len();
        let emb = &self.embeddings;
        let mut n = emb.word.len() + emb.position.len() + emb.token_type.len();
        n += norm(&emb.norm) + lin(&emb.projection);
        for layer in self.groups.iter().flatten() {
            n += lin(&layer.query) + lin(&layer.key) + lin(&layer.value) + lin(&layer.attn_output);
            n += norm(&layer.attn_norm) + lin(&layer.ffn) + lin(&layer.ffn_output);
            n += norm(&layer.output_norm);
        }
        n += self.pooler.as_ref().map_or(0, lin) + self.sop.as_ref().map_or(0, lin);
        n += self.classifier.as_ref().map_or(0, lin);
        if let Some(m) = &self.mlm {
            n += lin(&m.dense) + norm(&m.norm) + m.bias.len();
            n += m.decoder.as_ref().map_or(0, Vec::len);
        }
        n
    }
}

struct Loader<'a> {
    ckpt: &'a Checkpoint,
    base: &'a str,
}

impl Loader<'_> {
    fn base(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.ckpt.tensor_f32(&format!("{}{name}", self.base), shape)
    }

    fn linear(&self, prefix: &str, out_features: usize, in_features: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self
                .ckpt
                .tensor_f32(&format!("{prefix}.weight"), &[out_features, in_features])?,
            bias: self
                .ckpt
                .tensor_f32(&format!("{prefix}.bias"), &[out_features])?,
            out_features,
            in_features,
        })
    }

    fn norm(&self, prefix: &str, n: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.ckpt.tensor_f32(&format!("{prefix}.weight"), &[n])?,
            bias: self.ckpt.tensor_f32(&format!("{prefix}.bias"), &[n])?,
        })
    }

    /// The MLM head. The decoder is tied to the word embeddings unless config.json says
    /// `tie_word_embeddings: false`, in which case its own weight must be present. The decoder
    /// bias is `predictions.bias` (transformers ties `decoder.bias` to it); a file holding only
    /// `predictions.decoder.bias` is read from there.
    fn mlm(&self, cfg: &AlbertConfig) -> Result<MlmWeights> {
        let (v, e, h) = (cfg.vocab_size, cfg.embedding_size, cfg.hidden_size);
        let decoder = match cfg.tie_word_embeddings {
            true => None,
            false => Some(
                self.ckpt
                    .tensor_f32("predictions.decoder.weight", &[v, e])?,
            ),
        };
        let bias = match self.ckpt.tensor_f32("predictions.bias", &[v]) {
            Err(Error::MissingTensor { .. }) if self.ckpt.contains("predictions.decoder.bias") => {
                self.ckpt.tensor_f32("predictions.decoder.bias", &[v])?
            }
            other => other?,
        };
        Ok(MlmWeights {
            dense: self.linear("predictions.dense", e, h)?,
            norm: self.norm("predictions.LayerNorm", e)?,
            decoder,
            bias,
        })
    }
}
