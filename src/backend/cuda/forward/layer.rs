//! The encoder's body, as kernel launches: the embeddings (fused into one kernel, or unfused
//! through `Arena::x`) and one AlbertLayer on the arena's hidden state, with f32 activations
//! (`layer_forward`) or with T copies for every product (`layer_forward_t`).

use super::super::arena::Arena;
use super::super::device::CudaDevice;
use super::super::weights::{DeviceLayer, DeviceMatrix};
use super::CudaAlbert;
use crate::error::Result;

impl CudaAlbert {
    /// Whether the embeddings, their LayerNorm and projection run as one kernel
    /// (embeddings_project, which also writes the projection's T copy: only with `t_copies`),
    /// or unfused through `Arena::x`.
    pub(super) fn embeddings_fused(&self, t_copies: bool) -> bool {
        let e = self.config.embedding_size;
        t_copies
            && self
                .dev
                .embeddings_project_fits(self.weights.word.dtype(), e)
    }

    /// The embeddings [M, E] into `ar.x`, their projection into `ar.hidden` [M, H], and with T
    /// copies the projection's T copy (the first layer's QKV product reads it as T like every
    /// later one: the f32-input kernel stages it at ~2x the time per tile).
    pub(super) fn embeddings_unfused(&self, ar: &mut Arena, m: usize, s: usize) -> Result<()> {
        let cfg = &self.config;
        let (e, h, eps) = (cfg.embedding_size, cfg.hidden_size, cfg.layer_norm_eps);
        let (dev, w) = (&self.dev, &self.weights);
        let n = &w.emb_norm;
        let (word, position, token_type) = (&w.word, &w.position, &w.token_type);
        // Storage::x is set exactly where embeddings_fused is false, which leads here.
        let x = ar.x.as_mut().ok_or_else(|| {
            dev.err(
                "embeddings",
                "the arena has no x [M, E] for the unfused embeddings",
            )
        })?;
        dev.embeddings_forward(
            x, &ar.ids, &ar.types, word, position, token_type, &n.weight, &n.bias, m, s, e, eps,
        )?;
        let p = &w.projection;
        dev.linear_forward(&mut ar.hidden, x, &p.weight, Some(&p.bias), m, e, h, None)?;
        match ar.t.as_mut() {
            Some(t) => dev.round_to(&mut t.hidden, &ar.hidden, m * h),
            None => Ok(()),
        }
    }

    /// One AlbertLayer on `ar.hidden` [M, H], in place.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn layer_forward(
        &self,
        ar: &mut Arena,
        w: &DeviceLayer,
        rows: usize,
        s: usize,
        m: usize,
        h: usize,
        i: usize,
        a: usize,
        d: usize,
        eps: f32,
    ) -> Result<()> {
        let dev = &self.dev;
        // One product for q, k and v ([3H, H] weight), read in place by attention (ld = 3H).
        let qkv = &w.qkv;
        match &mut ar.qkv {
            DeviceMatrix::F32(out) => dev.linear_forward(
                out,
                &ar.hidden,
                &qkv.weight,
                Some(&qkv.bias),
                m,
                h,
                3 * h,
                None,
            )?,
            out => dev.linear_forward_to(
                out,
                &ar.hidden,
                &qkv.weight,
                Some(&qkv.bias),
                m,
                h,
                3 * h,
                None,
            )?,
        }
        // The arena holds an f32 ctx exactly where there are no T copies, which leads here.
        let ctx = ar.ctx.as_mut().ok_or_else(|| {
            dev.err(
                "attention",
                "the arena has no f32 ctx [M, H] for the f32 layer",
            )
        })?;
        dev.attention_forward(
            ctx,
            &ar.qkv.view(..),
            &ar.qkv.view(h..),
            &ar.qkv.view(2 * h..),
            &ar.mask,
            rows,
            s,
            a,
            d,
            3 * h,
            self.dtype,
        )?;
        let o = &w.attn_output;
        dev.linear_forward(&mut ar.proj, ctx, &o.weight, Some(&o.bias), m, h, h, None)?;
        let n = &w.attn_norm;
        dev.residual_layernorm_forward(
            &mut ar.attn,
            &ar.proj,
            Some(&ar.hidden),
            &n.weight,
            &n.bias,
            m,
            h,
            eps,
        )?;
        // FFN: [M, H] -> [M, I] (bias + activation) -> [M, H]. With tensor cores the
        // intermediate is stored as T (the FFN-out product would round it to T anyway, as
        // transformers in bf16 stores it): the same results, half its bytes.
        let act = Some(self.config.hidden_act);
        let (f1, f2) = (&w.ffn, &w.ffn_output);
        match &mut ar.ffn {
            DeviceMatrix::F32(x) => {
                dev.linear_forward(x, &ar.attn, &f1.weight, Some(&f1.bias), m, h, i, act)?;
                dev.linear_forward(&mut ar.proj, x, &f2.weight, Some(&f2.bias), m, i, h, None)?;
            }
            x => {
                dev.linear_forward_to(x, &ar.attn, &f1.weight, Some(&f1.bias), m, h, i, act)?;
                let x = &x.view(..);
                dev.linear_forward_from(
                    &mut ar.proj,
                    x,
                    &f2.weight,
                    Some(&f2.bias),
                    m,
                    i,
                    h,
                    None,
                )?;
            }
        }
        let n = &w.output_norm;
        dev.residual_layernorm_forward(
            &mut ar.hidden,
            &ar.proj,
            Some(&ar.attn),
            &n.weight,
            &n.bias,
            m,
            h,
            eps,
        )
    }

    /// One AlbertLayer on `ar.hidden` [M, H], in place, with every product reading T
    /// activations (`ar.t`, the layer input's T copy included). Each T copy is the rounding the
    /// product would apply to the f32 activation, so the products are `layer_forward`'s on
    /// tensor cores; the two products that feed a residual + LayerNorm are split over K
    /// (`output_splits`, a function of K alone: batch-invariant) and their partial sums added
    /// in order by the LayerNorm kernel; with ALBERT_CUDA_GRID_LN both products of a small
    /// batch take their LayerNorm in the same (cooperative) kernel, and with
    /// ALBERT_CUDA_FUSED_LN an unsplit output product at 128x128 tiles (the attention output;
    /// the FFN output only if ALBERT_CUDA_K_PER_SPLIT leaves it unsplit) in the same (cluster)
    /// kernel, all with the same bits.
    pub(super) fn layer_forward_t(
        &self,
        ar: &mut Arena,
        w: &DeviceLayer,
        rows: usize,
        s: usize,
    ) -> Result<()> {
        let dev = &self.dev;
        let cfg = &self.config;
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let (a, d, m) = (cfg.num_attention_heads, cfg.head_size(), rows * s);
        let (split_o, split_f) = (CudaDevice::output_splits(h), CudaDevice::output_splits(i));
        let t = ar.t.as_mut().expect("layer_forward_t runs with T copies");
        let (qkv, o) = (&w.qkv, &w.attn_output);
        let hidden = &t.hidden.view(..);
        let qkv_out = (&mut ar.qkv).into();
        let (qw, qb) = (&qkv.weight, Some(&qkv.bias));
        dev.linear_forward_t(qkv_out, hidden, qw, qb, m, h, 3 * h, None)?;
        let (q, k, v) = (ar.qkv.view(..), ar.qkv.view(h..), ar.qkv.view(2 * h..));
        dev.attention_forward_to(&mut t.ctx, &q, &k, &v, &ar.mask, rows, s, a, d, 3 * h)?;
        let ctx = &t.ctx.view(..);
        let n = &w.attn_norm;
        let (nw, nb) = (&n.weight, &n.bias);
        let (attn, attn_t) = (&mut ar.attn, &mut t.attn);
        let sync = &mut ar.row_sync;
        if dev.grid_ln_fits(o.weight.dtype(), (m, h), split_o) {
            // The same bits as the two launches below, in one (ALBERT_CUDA_GRID_LN).
            let (ow, ob, parts) = (&o.weight, Some(&o.bias), &mut ar.proj);
            let (shape, res) = ((m, h, h), &ar.hidden);
            dev.linear_forward_grid_ln(
                attn,
                attn_t,
                parts,
                ctx,
                ow,
                ob,
                res,
                (nw, nb),
                sync,
                shape,
                split_o,
                eps,
            )?;
        } else if dev.linear_ln_fits(o.weight.dtype(), (m, h), split_o) {
            // The same bits as the two launches below, in one (ALBERT_CUDA_FUSED_LN).
            let (ow, ob) = (&o.weight, Some(&o.bias));
            let shape = (m, h, h);
            dev.linear_forward_ln(attn, attn_t, ctx, ow, ob, &ar.hidden, (nw, nb), shape, eps)?;
        } else {
            let parts = &mut ar.proj; // [splits, M, H] partial sums
            dev.linear_forward_split(parts, ctx, &o.weight, Some(&o.bias), m, h, h, split_o)?;
            dev.residual_layernorm_forward_to(
                attn, attn_t, &ar.proj, split_o, &ar.hidden, nw, nb, m, h, eps,
            )?;
        }
        let act = Some(cfg.hidden_act);
        let (f1, f2) = (&w.ffn, &w.ffn_output);
        let (attn, ffn_out) = (&t.attn.view(..), (&mut ar.ffn).into());
        dev.linear_forward_t(ffn_out, attn, &f1.weight, Some(&f1.bias), m, h, i, act)?;
        let ffn = &ar.ffn.view(..);
        let n = &w.output_norm;
        let (nw, nb) = (&n.weight, &n.bias);
        let (hidden, hidden_t) = (&mut ar.hidden, &mut t.hidden);
        if dev.grid_ln_fits(f2.weight.dtype(), (m, h), split_f) {
            let (fw, fb, parts) = (&f2.weight, Some(&f2.bias), &mut ar.proj);
            let (shape, res, sync) = ((m, i, h), &ar.attn, &mut ar.row_sync);
            return dev.linear_forward_grid_ln(
                hidden,
                hidden_t,
                parts,
                ffn,
                fw,
                fb,
                res,
                (nw, nb),
                sync,
                shape,
                split_f,
                eps,
            );
        }
        if dev.linear_ln_fits(f2.weight.dtype(), (m, h), split_f) {
            // Only where the FFN output is unsplit (ALBERT_CUDA_K_PER_SPLIT >= I).
            let (fw, fb) = (&f2.weight, Some(&f2.bias));
            let shape = (m, i, h);
            return dev.linear_forward_ln(
                hidden,
                hidden_t,
                ffn,
                fw,
                fb,
                &ar.attn,
                (nw, nb),
                shape,
                eps,
            );
        }
        let parts = &mut ar.proj;
        dev.linear_forward_split(parts, ffn, &f2.weight, Some(&f2.bias), m, i, h, split_f)?;
        dev.residual_layernorm_forward_to(
            hidden, hidden_t, &ar.proj, split_f, &ar.attn, nw, nb, m, h, eps,
        )
    }
}
