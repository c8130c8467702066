//! Writing a model back as a Hugging Face `model.safetensors`: every tensor under the name and
//! shape transformers gives it (the inverse of `Weights::load`), stored as F32. Tests and the
//! fuzz seeds build checkpoints of any shape with it.

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::head::Head;
use super::weights::{LayerNorm, Linear};
use super::Albert;
use crate::error::{Error, Result};

impl Albert {
    /// The weights as (name, shape, values), named as transformers names them for this head
    /// (`albert.` before the base model unless the head is AlbertModel).
    pub fn named_tensors(&self) -> Named<'_> {
        let base = match self.head {
            Head::Model => "",
            _ => "albert.",
        };
        let w = &self.weights;
        let mut out: Named = Vec::new();
        let cfg = &self.config;
        let (e, emb) = (cfg.embedding_size, &w.embeddings);
        let table = |name: &str, t: &'_ [f32]| {
            (
                format!("{base}embeddings.{name}.weight"),
                vec![t.len() / e, e],
            )
        };
        for (name, t) in [
            ("word_embeddings", &emb.word),
            ("position_embeddings", &emb.position),
            ("token_type_embeddings", &emb.token_type),
        ] {
            let (n, shape) = table(name, t);
            out.push((n, shape, &t[..]));
        }
        norm(&mut out, format!("{base}embeddings.LayerNorm"), &emb.norm);
        linear(
            &mut out,
            format!("{base}encoder.embedding_hidden_mapping_in"),
            &emb.projection,
        );
        for (g, layers) in w.groups.iter().enumerate() {
            for (j, l) in layers.iter().enumerate() {
                let p = format!("{base}encoder.albert_layer_groups.{g}.albert_layers.{j}");
                linear(&mut out, format!("{p}.attention.query"), &l.query);
                linear(&mut out, format!("{p}.attention.key"), &l.key);
                linear(&mut out, format!("{p}.attention.value"), &l.value);
                linear(&mut out, format!("{p}.attention.dense"), &l.attn_output);
                norm(&mut out, format!("{p}.attention.LayerNorm"), &l.attn_norm);
                linear(&mut out, format!("{p}.ffn"), &l.ffn);
                linear(&mut out, format!("{p}.ffn_output"), &l.ffn_output);
                norm(
                    &mut out,
                    format!("{p}.full_layer_layer_norm"),
                    &l.output_norm,
                );
            }
        }
        if let Some(p) = &w.pooler {
            linear(&mut out, format!("{base}pooler"), p);
        }
        if let Some(m) = &w.mlm {
            linear(&mut out, "predictions.dense".into(), &m.dense);
            norm(&mut out, "predictions.LayerNorm".into(), &m.norm);
            if let Some(d) = &m.decoder {
                out.push((
                    "predictions.decoder.weight".into(),
                    vec![d.len() / e, e],
                    &d[..],
                ));
            }
            out.push(("predictions.bias".into(), vec![m.bias.len()], &m.bias[..]));
        }
        if let Some(s) = &w.sop {
            linear(&mut out, "sop_classifier.classifier".into(), s);
        }
        if let Some(c) = &w.classifier {
            let name = match self.head {
                Head::QuestionAnswering => "qa_outputs",
                _ => "classifier",
            };
            linear(&mut out, name.into(), c);
        }
        out
    }
}

type Named<'a> = Vec<(String, Vec<usize>, &'a [f32])>;

fn linear<'a>(out: &mut Named<'a>, p: String, l: &'a Linear) {
    let shape = vec![l.out_features, l.in_features];
    out.push((format!("{p}.weight"), shape, &l.weight[..]));
    out.push((format!("{p}.bias"), vec![l.out_features], &l.bias[..]));
}

fn norm<'a>(out: &mut Named<'a>, p: String, n: &'a LayerNorm) {
    out.push((format!("{p}.weight"), vec![n.weight.len()], &n.weight[..]));
    out.push((format!("{p}.bias"), vec![n.bias.len()], &n.bias[..]));
}

impl Albert {
    /// The bytes of a `model.safetensors` holding `named_tensors` as F32.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .named_tensors()
            .into_iter()
            .map(|(n, shape, v)| (n, shape, bytemuck::cast_slice(v).to_vec()))
            .collect();
        let views = tensors
            .iter()
            .map(|(n, shape, b)| {
                TensorView::new(Dtype::F32, shape.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::safetensors(n, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, None).map_err(|e| Error::safetensors("model", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use crate::model::checkpoint::Checkpoint;
    use crate::model::config::AlbertConfig;
    use crate::model::head::Head;
    use crate::model::weights::Weights;
    use crate::model::Albert;

    #[test]
    fn saved_weights_load_back_identical() {
        let mut cfg = AlbertConfig::default();
        (cfg.vocab_size, cfg.embedding_size, cfg.hidden_size) = (40, 8, 16);
        (cfg.intermediate_size, cfg.num_attention_heads) = (24, 2);
        (
            cfg.num_hidden_layers,
            cfg.num_hidden_groups,
            cfg.inner_group_num,
        ) = (3, 3, 2);
        cfg.max_position_embeddings = 16;
        for head in [
            Head::Model,
            Head::PreTraining,
            Head::QuestionAnswering,
            Head::TokenClassification,
        ] {
            let model = Albert::synthetic(cfg.clone(), head, 5);
            let bytes = model.to_safetensors().unwrap();
            let ckpt = Checkpoint::from_bytes("saved", bytes).unwrap();
            let back = Weights::load(&ckpt, &cfg, head).unwrap();
            let again = Albert {
                weights: back,
                ..model.clone()
            };
            let (a, b) = (model.named_tensors(), again.named_tensors());
            assert_eq!(a.len(), b.len());
            for ((na, sa, va), (nb, sb, vb)) in a.iter().zip(&b) {
                assert_eq!((na, sa), (nb, sb));
                assert!(
                    va.iter()
                        .zip(vb.iter())
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{na}"
                );
            }
        }
    }
}
