//! The encoder, as modeling_albert.py runs it:
//!
//!   embeddings:   x = LayerNorm_E(word[ids] + type[types] + position[s])       [R*S, E]
//!                 h = x W_in^T + b_in                                         [R*S, H]
//!   for each layer application i (group g = int(i / (L / G))), for each of the group's
//!   inner_group_num layers:
//!                 q, k, v = h Wq^T + bq, h Wk^T + bk, h Wv^T + bv             [R*S, H]
//!                 c = softmax(q k^T / sqrt(D) + mask) v, per head             [R*S, H]
//!                 a = LayerNorm(h + c Wo^T + bo)                              [R*S, H]
//!                 f = act(a W1^T + b1) W2^T + b2                              [R*S, I] -> [R*S, H]
//!                 h = LayerNorm(f + a)                                        [R*S, H]
//!
//! R is the number of rows (B, or B*C for multiple choice). hidden_states.0 is h after the
//! projection, and one more is recorded after every inner layer (transformers 5 records the
//! output of every AlbertLayer call).

use super::weights::LayerWeights;
use super::Albert;
use crate::backend::cpu::reference as ops;
use crate::error::Result;
use crate::inputs::Inputs;

/// What the encoder produced for a batch.
pub struct Encoded {
    pub last_hidden: Vec<f32>,        // [R*S, H]
    pub hidden_states: Vec<Vec<f32>>, // each [R*S, H]; empty unless asked for
    pub rows: usize,                  // R
    pub seq: usize,                   // S
}

/// Scratch activations of one layer, allocated once per forward pass.
struct Scratch {
    q: Vec<f32>,    // [R*S, H]
    k: Vec<f32>,    // [R*S, H]
    v: Vec<f32>,    // [R*S, H]
    ctx: Vec<f32>,  // [R*S, H]
    proj: Vec<f32>, // [R*S, H]
    attn: Vec<f32>, // [R*S, H]
    ffn: Vec<f32>,  // [R*S, I]
}

impl Albert {
    /// Runs embeddings and every layer application; `record` keeps each hidden state.
    pub fn encode(&self, inputs: &Inputs, record: bool) -> Result<Encoded> {
        inputs.validate(&self.config, &self.limits)?;
        let cfg = &self.config;
        let (rows, s) = (inputs.rows(), inputs.seq);
        let (e, h, i) = (cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size);
        let m = rows * s;

        let ids: Vec<u32> = inputs.input_ids.iter().map(|&v| v as u32).collect();
        let types: Vec<u32> = inputs.token_type_ids.iter().map(|&v| v as u32).collect();
        let mask: Vec<f32> = inputs
            .attention_mask
            .iter()
            .map(|&v| if v == 1 { 0.0 } else { ops::MASKED })
            .collect();

        let emb = &self.weights.embeddings;
        let mut x = vec![0f32; m * e];
        ops::embeddings_forward(
            &mut x,
            &ids,
            &types,
            &emb.word,
            &emb.position,
            &emb.token_type,
            &emb.norm.weight,
            &emb.norm.bias,
            s,
            e,
            cfg.layer_norm_eps,
        );
        let mut hidden = vec![0f32; m * h];
        let p = &emb.projection;
        ops::linear_forward(
            &mut hidden,
            &x,
            &p.weight,
            Some(&p.bias),
            m,
            e,
            h,
            self.dtype,
        );

        let mut hidden_states = Vec::new();
        if record {
            hidden_states.push(hidden.clone());
        }
        let mut scratch = Scratch {
            q: vec![0f32; m * h],
            k: vec![0f32; m * h],
            v: vec![0f32; m * h],
            ctx: vec![0f32; m * h],
            proj: vec![0f32; m * h],
            attn: vec![0f32; m * h],
            ffn: vec![0f32; m * i],
        };
        for app in 0..cfg.num_hidden_layers {
            // The same group weights serve every application that maps to the group.
            for layer in &self.weights.groups[cfg.group_of_application(app)] {
                self.layer_forward(&mut hidden, layer, &mask, &mut scratch, rows, s);
                if record {
                    hidden_states.push(hidden.clone());
                }
            }
        }
        Ok(Encoded {
            last_hidden: hidden,
            hidden_states,
            rows,
            seq: s,
        })
    }

    /// One AlbertLayer, in place on `hidden` [R*S, H].
    fn layer_forward(
        &self,
        hidden: &mut [f32],
        w: &LayerWeights,
        mask: &[f32],
        t: &mut Scratch,
        rows: usize,
        s: usize,
    ) {
        let cfg = &self.config;
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let (a, d) = (cfg.num_attention_heads, cfg.head_size());
        let m = rows * s;

        ops::linear_forward(
            &mut t.q,
            hidden,
            &w.query.weight,
            Some(&w.query.bias),
            m,
            h,
            h,
            self.dtype,
        );
        ops::linear_forward(
            &mut t.k,
            hidden,
            &w.key.weight,
            Some(&w.key.bias),
            m,
            h,
            h,
            self.dtype,
        );
        ops::linear_forward(
            &mut t.v,
            hidden,
            &w.value.weight,
            Some(&w.value.bias),
            m,
            h,
            h,
            self.dtype,
        );
        ops::attention_forward(&mut t.ctx, &t.q, &t.k, &t.v, mask, rows, s, a, d);
        let o = &w.attn_output;
        ops::linear_forward(
            &mut t.proj,
            &t.ctx,
            &o.weight,
            Some(&o.bias),
            m,
            h,
            h,
            self.dtype,
        );
        let n = &w.attn_norm;
        ops::residual_layernorm_forward(&mut t.attn, &t.proj, hidden, &n.weight, &n.bias, h, eps);

        ops::linear_forward(
            &mut t.ffn,
            &t.attn,
            &w.ffn.weight,
            Some(&w.ffn.bias),
            m,
            h,
            i,
            self.dtype,
        );
        ops::activation_forward(&mut t.ffn, cfg.hidden_act);
        let f = &w.ffn_output;
        ops::linear_forward(
            &mut t.proj,
            &t.ffn,
            &f.weight,
            Some(&f.bias),
            m,
            i,
            h,
            self.dtype,
        );
        let n = &w.output_norm;
        ops::residual_layernorm_forward(hidden, &t.proj, &t.attn, &n.weight, &n.bias, h, eps);
    }
}
