//! `FastAlbert`: the encoder of model/forward.rs on the fast ops, top to bottom.
//!
//!   embeddings:  x = LayerNorm_E(word[ids] + type[types] + position[s])         [M, E]
//!                h = x W_in^T + b_in                                           [M, H]
//!   per layer:   qkv = h Wqkv^T + bqkv   (one fused [3H, H] weight)            [M, 3H]
//!                c = attention(q, k, v, mask)                                  [M, H]
//!                a = LayerNorm(c Wo^T + bo + h)      (GEMM epilogue)           [M, H]
//!                f = act(a W1^T + b1)                (GEMM epilogue)           [M, I]
//!                h = LayerNorm(f W2^T + b2 + a)      (GEMM epilogue)           [M, H]
//!
//! Weights are packed once, when the model is placed (the f32 originals are dropped as each is
//! packed, so loading never holds two full copies). Activations live in one arena, allocated for
//! the largest M = R*S and S seen so far and reused: a forward pass that fits allocates nothing
//! for the encoder.

use std::sync::Mutex;

use super::attention::{attention_forward, AttentionScratch};
use super::embeddings::{embeddings_forward, Table};
use super::gemm::{linear_forward, Epilogue, Micro, PackedWeight};
use super::{AlignedBuf, Isa};
use crate::backend::cpu::reference::MASKED;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::limits::Limits;
use crate::model::config::AlbertConfig;
use crate::model::head::Head;
use crate::model::weights::{LayerNorm, Linear, Weights};
use crate::model::Albert;

/// A packed weight and its bias.
pub(super) struct FastLinear {
    pub weight: PackedWeight, // [out, in]
    pub bias: Vec<f32>,       // [out]
}

impl FastLinear {
    fn new(l: Linear, dtype: DType, isa: Isa) -> Self {
        let weight = PackedWeight::new(&l.weight, l.out_features, l.in_features, dtype, isa);
        FastLinear {
            weight,
            bias: l.bias,
        }
    }

    fn bytes(&self) -> usize {
        self.weight.bytes() + self.bias.len() * 4
    }
}

pub(super) struct FastLayer {
    pub qkv: FastLinear,         // [3H, H]: query, key, value stacked
    pub attn_output: FastLinear, // [H, H]
    pub attn_norm: LayerNorm,    // [H]
    pub ffn: FastLinear,         // [I, H]
    pub ffn_output: FastLinear,  // [H, I]
    pub output_norm: LayerNorm,  // [H]
}

pub(super) struct FastMlm {
    pub dense: FastLinear,     // [E, H]
    pub norm: LayerNorm,       // [E]
    pub decoder: PackedWeight, // [V, E] (the word embeddings when tied)
    pub bias: Vec<f32>,        // [V]
}

pub(super) struct FastWeights {
    pub word: Table,       // [V, E]
    pub position: Table,   // [P, E]
    pub token_type: Table, // [T, E]
    pub emb_norm: LayerNorm,
    pub projection: FastLinear,      // [H, E]
    pub groups: Vec<Vec<FastLayer>>, // [G][inner_group_num]
    pub pooler: Option<FastLinear>,  // [H, H]
    pub mlm: Option<FastMlm>,
    pub sop: Option<FastLinear>,        // [2, H]
    pub classifier: Option<FastLinear>, // [labels, H] / [1, H] / [2, H]
}

/// ALBERT on the fast CPU path, f32 or bf16 weights.
pub struct FastAlbert {
    pub config: AlbertConfig,
    pub head: Head,
    pub dtype: DType,
    pub isa: Isa,
    pub limits: Limits,
    pub(super) weights: FastWeights,
    /// Idle activation arenas. A pass takes one (growing it, or making one when none is idle)
    /// and puts it back, so concurrent passes run side by side instead of queueing on one lock
    /// (a plain Mutex is not fair: under 8 callers its p99 wait reached 10 s in the soak run).
    /// There are never more arenas than passes that once ran at the same time.
    pub(super) arenas: Mutex<Vec<Arena>>,
}

/// Encoder activations for up to `m` token rows and sequences up to `s`.
pub(super) struct Arena {
    m: usize,
    s: usize,
    pub ids: Vec<u32>,      // [M]
    pub types: Vec<u32>,    // [M]
    pub mask: Vec<f32>,     // [M] additive, over keys
    x: AlignedBuf,          // [M, E]
    pub hidden: AlignedBuf, // [M, H]
    qkv: AlignedBuf,        // [M, 3H]
    ctx: AlignedBuf,        // [M, H]
    attn: AlignedBuf,       // [M, H]
    ffn: AlignedBuf,        // [M, I]
    packed_a: AlignedBuf,   // the largest packed A of the encoder's products
    attention: AttentionScratch,
}

impl Arena {
    fn new(cfg: &AlbertConfig, micro: Micro, isa: Isa, m: usize, s: usize) -> Self {
        let (e, h, i) = (cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size);
        let packed = [e, h, i]
            .iter()
            .map(|&k| micro.packed_a_len(m, k))
            .max()
            .unwrap_or(0);
        let threads = rayon::current_num_threads();
        Arena {
            m,
            s,
            ids: vec![0; m],
            types: vec![0; m],
            mask: vec![0.0; m],
            x: AlignedBuf::zeros(m * e),
            hidden: AlignedBuf::zeros(m * h),
            qkv: AlignedBuf::zeros(m * 3 * h),
            ctx: AlignedBuf::zeros(m * h),
            attn: AlignedBuf::zeros(m * h),
            ffn: AlignedBuf::zeros(m * i),
            packed_a: AlignedBuf::zeros(packed),
            attention: AttentionScratch::new(isa, s, cfg.head_size(), threads),
        }
    }

    fn bytes(&self) -> usize {
        let bufs = [
            &self.x,
            &self.hidden,
            &self.qkv,
            &self.ctx,
            &self.attn,
            &self.ffn,
            &self.packed_a,
        ];
        bufs.iter().map(|b| b.bytes()).sum::<usize>() + self.m * 12 + self.attention.bytes()
    }
}

impl FastAlbert {
    /// Packs `model`'s weights for this CPU's best kernels, stored as `dtype` (f32 or bf16).
    pub fn new(model: Albert, dtype: DType) -> Result<Self> {
        Self::with_isa(model, dtype, Isa::detect())
    }

    /// As `new`, with the kernels of `isa` (which the CPU must have: tests run every one).
    pub fn with_isa(model: Albert, dtype: DType, isa: Isa) -> Result<Self> {
        if dtype == DType::F16 {
            return Err(Error::Input(
                "the fast CPU path runs f32 or bf16 (f16: use --device cpu-reference)".into(),
            ));
        }
        if model.dtype != DType::F32 {
            return Err(Error::Input(format!(
                "the fast CPU path packs f32 weights; this model was already rounded to {}",
                model.dtype
            )));
        }
        let Albert {
            config,
            weights,
            head,
            limits,
            ..
        } = model;
        let weights = pack_weights(weights, &config, dtype, isa);
        Ok(FastAlbert {
            config,
            head,
            dtype,
            isa,
            limits,
            weights,
            arenas: Mutex::new(Vec::new()),
        })
    }

    /// The product kernel of the encoder, e.g. "avx512bf16 bf16 12x32".
    pub fn kernel_name(&self) -> String {
        self.weights.projection.weight.micro.name()
    }

    /// Bytes of packed weights, tables, biases and norms.
    pub fn weight_bytes(&self) -> usize {
        let w = &self.weights;
        let norm = |n: &LayerNorm| (n.weight.len() + n.bias.len()) * 4;
        let mut n = w.word.bytes() + w.position.bytes() + w.token_type.bytes();
        n += norm(&w.emb_norm) + w.projection.bytes();
        for l in w.groups.iter().flatten() {
            n += l.qkv.bytes() + l.attn_output.bytes() + l.ffn.bytes() + l.ffn_output.bytes();
            n += norm(&l.attn_norm) + norm(&l.output_norm);
        }
        for l in [&w.pooler, &w.sop, &w.classifier].into_iter().flatten() {
            n += l.bytes();
        }
        if let Some(m) = &w.mlm {
            n += m.dense.bytes() + norm(&m.norm) + m.decoder.bytes() + m.bias.len() * 4;
        }
        n
    }

    /// Bytes of the idle activation arenas (0 before the first pass).
    pub fn arena_bytes(&self) -> usize {
        self.idle().iter().map(Arena::bytes).sum()
    }

    /// A poisoned lock only means another call panicked while pushing or popping; the list
    /// itself is intact.
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Arena>> {
        self.arenas.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An arena for `m` token rows of `s` positions: the smallest idle one that fits, else the
    /// largest idle one grown to fit, else a new one.
    fn take_arena(&self, m: usize, s: usize) -> Arena {
        let mut idle = self.idle();
        let fits = idle
            .iter()
            .enumerate()
            .filter(|(_, a)| a.m >= m && a.s >= s)
            .min_by_key(|(_, a)| a.m)
            .map(|(k, _)| k);
        if let Some(k) = fits {
            return idle.swap_remove(k);
        }
        let largest = (0..idle.len()).max_by_key(|&k| idle[k].m);
        let old = largest.map(|k| idle.swap_remove(k));
        drop(idle);
        let (cap_m, cap_s) = old.as_ref().map_or((m, s), |a| (a.m.max(m), a.s.max(s)));
        drop(old); // free the old arena before allocating the larger one
        let micro = self.weights.projection.weight.micro;
        Arena::new(&self.config, micro, self.isa, cap_m, cap_s)
    }

    /// Runs the encoder; then `then` reads the arena (last hidden state in `hidden`, [M, H]).
    /// With `record`, every hidden state is copied out on the way.
    pub(super) fn encode<T>(
        &self,
        inputs: &Inputs,
        mut record: Option<&mut Vec<Vec<f32>>>,
        then: impl FnOnce(&Arena, usize) -> Result<T>,
    ) -> Result<T> {
        inputs.validate(&self.config, &self.limits)?;
        let cfg = &self.config;
        let (rows, s) = (inputs.rows(), inputs.seq);
        let m = rows * s;
        let (e, h, eps) = (cfg.embedding_size, cfg.hidden_size, cfg.layer_norm_eps);

        // Every buffer of the arena is written before it is read; a pass that panics loses its
        // arena (dropped), never returns a half-written one.
        let mut arena = self.take_arena(m, s);
        let ar = &mut arena;
        for (d, &v) in ar.ids.iter_mut().zip(&inputs.input_ids) {
            *d = v as u32;
        }
        for (d, &v) in ar.types.iter_mut().zip(&inputs.token_type_ids) {
            *d = v as u32;
        }
        for (d, &v) in ar.mask.iter_mut().zip(&inputs.attention_mask) {
            *d = if v == 1 { 0.0 } else { MASKED };
        }

        let w = &self.weights;
        let x = &mut ar.x.f32s_mut()[..m * e];
        embeddings_forward(
            x,
            &ar.ids[..m],
            &ar.types[..m],
            &w.word,
            &w.position,
            &w.token_type,
            &w.emb_norm.weight,
            &w.emb_norm.bias,
            s,
            e,
            eps,
        );
        let p = &w.projection;
        linear_forward(
            &mut ar.hidden.f32s_mut()[..m * h],
            &ar.x.f32s()[..m * e],
            &p.weight,
            Some(&p.bias),
            m,
            e,
            h,
            Epilogue::None,
            ar.packed_a.u32s_mut(),
        );
        if let Some(rec) = record.as_deref_mut() {
            rec.push(ar.hidden.f32s()[..m * h].to_vec());
        }
        for app in 0..cfg.num_hidden_layers {
            // The same packed weights for every application that maps to the group.
            for layer in &w.groups[cfg.group_of_application(app)] {
                self.layer_forward(ar, layer, rows, s);
                if let Some(rec) = record.as_deref_mut() {
                    rec.push(ar.hidden.f32s()[..m * h].to_vec());
                }
            }
        }
        let out = then(ar, m);
        self.idle().push(arena);
        out
    }

    /// One AlbertLayer on `ar.hidden` [M, H], in place.
    fn layer_forward(&self, ar: &mut Arena, w: &FastLayer, rows: usize, s: usize) {
        let cfg = &self.config;
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let (a, d) = (cfg.num_attention_heads, cfg.head_size());
        let m = rows * s;
        let Arena {
            mask,
            hidden,
            qkv,
            ctx,
            attn,
            ffn,
            packed_a,
            attention,
            ..
        } = ar;
        let (hidden, qkv) = (
            &mut hidden.f32s_mut()[..m * h],
            &mut qkv.f32s_mut()[..m * 3 * h],
        );
        let (ctx, attn) = (&mut ctx.f32s_mut()[..m * h], &mut attn.f32s_mut()[..m * h]);
        let (ffn, pa) = (&mut ffn.f32s_mut()[..m * i], packed_a.u32s_mut());

        let l = &w.qkv;
        linear_forward(
            qkv,
            hidden,
            &l.weight,
            Some(&l.bias),
            m,
            h,
            3 * h,
            Epilogue::None,
            pa,
        );
        attention_forward(
            ctx,
            qkv,
            &qkv[h..],
            &qkv[2 * h..],
            &mask[..m],
            rows,
            s,
            a,
            d,
            3 * h,
            attention,
        );
        let (l, n) = (&w.attn_output, &w.attn_norm);
        let epi = Epilogue::ResidualLayerNorm {
            residual: hidden,
            weight: &n.weight,
            bias: &n.bias,
            eps,
        };
        linear_forward(attn, ctx, &l.weight, Some(&l.bias), m, h, h, epi, pa);
        let l = &w.ffn;
        let epi = Epilogue::Activation(cfg.hidden_act);
        linear_forward(ffn, attn, &l.weight, Some(&l.bias), m, h, i, epi, pa);
        let (l, n) = (&w.ffn_output, &w.output_norm);
        let epi = Epilogue::ResidualLayerNorm {
            residual: attn,
            weight: &n.weight,
            bias: &n.bias,
            eps,
        };
        linear_forward(hidden, ffn, &l.weight, Some(&l.bias), m, i, h, epi, pa);
    }
}

/// Packs every weight, dropping each f32 original as soon as it is packed.
fn pack_weights(w: Weights, cfg: &AlbertConfig, dtype: DType, isa: Isa) -> FastWeights {
    let (v, e) = (cfg.vocab_size, cfg.embedding_size);
    let Weights {
        embeddings,
        groups,
        pooler,
        mlm,
        sop,
        classifier,
    } = w;
    let lin = |l: Linear| FastLinear::new(l, dtype, isa);
    let word = Table::new(embeddings.word, dtype);
    let mlm = mlm.map(|m| {
        let decoder = match m.decoder {
            Some(d) => PackedWeight::new(&d, v, e, dtype, isa),
            None => PackedWeight::new(&word.to_f32(), v, e, dtype, isa),
        };
        FastMlm {
            dense: lin(m.dense),
            norm: m.norm,
            decoder,
            bias: m.bias,
        }
    });
    let groups = groups
        .into_iter()
        .map(|layers| {
            layers
                .into_iter()
                .map(|l| {
                    let (n, k) = (l.query.out_features, l.query.in_features);
                    let mut weight = l.query.weight;
                    weight.extend_from_slice(&l.key.weight);
                    weight.extend_from_slice(&l.value.weight);
                    let mut bias = l.query.bias;
                    bias.extend_from_slice(&l.key.bias);
                    bias.extend_from_slice(&l.value.bias);
                    let qkv = Linear {
                        weight,
                        bias,
                        out_features: 3 * n,
                        in_features: k,
                    };
                    FastLayer {
                        qkv: lin(qkv),
                        attn_output: lin(l.attn_output),
                        attn_norm: l.attn_norm,
                        ffn: lin(l.ffn),
                        ffn_output: lin(l.ffn_output),
                        output_norm: l.output_norm,
                    }
                })
                .collect()
        })
        .collect();
    FastWeights {
        word,
        position: Table::new(embeddings.position, dtype),
        token_type: Table::new(embeddings.token_type, dtype),
        emb_norm: embeddings.norm,
        projection: lin(embeddings.projection),
        groups,
        pooler: pooler.map(lin),
        mlm,
        sop: sop.map(lin),
        classifier: classifier.map(lin),
    }
}
