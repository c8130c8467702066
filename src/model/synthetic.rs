//! Seeded random weights for any config, made in-process: `albert bench` runs a synthetic
//! albert-base-v2 with no files, and tests build small models of any shape.

use super::config::AlbertConfig;
use super::head::Head;
use super::weights::{EmbeddingWeights, LayerNorm, LayerWeights, Linear, MlmWeights, Weights};
use super::Albert;
use crate::rng::Rng;

impl Albert {
    /// A model of shape `config` with uniform random weights from `seed` (LayerNorm weights
    /// near 1, so activations stay in a realistic range over many layers).
    pub fn synthetic(config: AlbertConfig, head: Head, seed: u64) -> Self {
        let mut r = Rng::new(seed);
        let cfg = &config;
        let (v, e, h, i) = (
            cfg.vocab_size,
            cfg.embedding_size,
            cfg.hidden_size,
            cfg.intermediate_size,
        );
        let embeddings = EmbeddingWeights {
            word: r.vec(v * e, 0.05),
            position: r.vec(cfg.max_position_embeddings * e, 0.05),
            token_type: r.vec(cfg.type_vocab_size * e, 0.05),
            norm: norm(&mut r, e),
            projection: linear(&mut r, h, e),
        };
        let groups = (0..cfg.num_hidden_groups)
            .map(|_| {
                (0..cfg.inner_group_num)
                    .map(|_| LayerWeights {
                        query: linear(&mut r, h, h),
                        key: linear(&mut r, h, h),
                        value: linear(&mut r, h, h),
                        attn_output: linear(&mut r, h, h),
                        attn_norm: norm(&mut r, h),
                        ffn: linear(&mut r, i, h),
                        ffn_output: linear(&mut r, h, i),
                        output_norm: norm(&mut r, h),
                    })
                    .collect()
            })
            .collect();
        let pooler = head.uses_pooler().then(|| linear(&mut r, h, h));
        let mlm = head.uses_mlm().then(|| MlmWeights {
            dense: linear(&mut r, e, h),
            norm: norm(&mut r, e),
            decoder: None,
            bias: r.vec(v, 0.02),
        });
        let sop = (head == Head::PreTraining).then(|| linear(&mut r, 2, h));
        let classifier = match head {
            Head::SequenceClassification | Head::TokenClassification => {
                Some(linear(&mut r, cfg.num_labels(), h))
            }
            Head::MultipleChoice => Some(linear(&mut r, 1, h)),
            Head::QuestionAnswering => Some(linear(&mut r, 2, h)),
            _ => None,
        };
        let weights = Weights {
            embeddings,
            groups,
            pooler,
            mlm,
            sop,
            classifier,
        };
        Albert {
            config,
            weights,
            head,
            dtype: crate::dtype::DType::F32,
            limits: Default::default(),
        }
    }
}

/// Uniform in +-1/sqrt(in), PyTorch's nn.Linear initialisation.
fn linear(r: &mut Rng, out_features: usize, in_features: usize) -> Linear {
    let bound = 1.0 / (in_features as f32).sqrt();
    Linear {
        weight: r.vec(out_features * in_features, bound),
        bias: r.vec(out_features, bound),
        out_features,
        in_features,
    }
}

fn norm(r: &mut Rng, n: usize) -> LayerNorm {
    LayerNorm {
        weight: (0..n).map(|_| 1.0 + r.symmetric(0.1)).collect(),
        bias: r.vec(n, 0.1),
    }
}
