//! The scheduler: the forward pass of model/forward.rs and model/heads.rs, op for op, as kernel
//! launches on one stream. Weights are uploaded once; every layer application of a group
//! launches with that group's device buffers. Activations live in one arena, allocated for the
//! largest batch x sequence seen so far and reused by every call (a call that fits allocates
//! nothing for the encoder). From its second pass with a shape, the encoder runs as a CUDA graph
//! (graphs.rs).

use std::sync::Mutex;

use cudarc::driver::CudaSlice;

use super::arena::{Arena, Storage};
use super::costs::LaunchCost;
use super::device::CudaDevice;
use super::graphs::{self, ExecGraph, GraphCache, GraphKey, GraphStats, Plan, Staging};
use super::weights::{DeviceLinear, DeviceWeights};
use crate::backend::cpu::reference::MASKED;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::limits::Limits;
use crate::model::activation::Activation;
use crate::model::config::AlbertConfig;
use crate::model::head::Head;
use crate::model::heads::ForwardOptions;
use crate::model::Albert;
use crate::tensor::{Outputs, Tensor};

mod layer;

/// ALBERT on one CUDA device.
pub struct CudaAlbert {
    /// First, so dropped first: its graphs reference the kernels of `dev` and the weights.
    scratch: Mutex<Scratch>,
    pub dev: CudaDevice,
    pub config: AlbertConfig,
    pub head: Head,
    pub dtype: DType,
    pub limits: Limits,
    weights: DeviceWeights,
}

/// What a pass needs besides the weights, behind one lock: passes run one at a time.
struct Scratch {
    /// Graphs point into the arena and read the staging buffers: both outlive them.
    graphs: GraphCache<ExecGraph>,
    staging: Option<Staging>,
    arena: Option<Arena>,
}

impl CudaAlbert {
    /// Uploads `model`'s weights to device `ordinal`, stored as `dtype`.
    pub fn new(model: &Albert, ordinal: usize, dtype: DType) -> Result<Self> {
        let dev = CudaDevice::open(ordinal)?;
        let weights = DeviceWeights::upload(&dev, &model.weights, dtype)?;
        dev.synchronize()?;
        let wanted = std::env::var("ALBERT_CUDA_GRAPHS").ok();
        let scratch = Scratch {
            graphs: GraphCache::new(graphs::graphs_allowed(wanted.as_deref())),
            staging: None,
            arena: None,
        };
        Ok(CudaAlbert {
            dev,
            config: model.config.clone(),
            head: model.head,
            dtype,
            limits: model.limits,
            weights,
            scratch: Mutex::new(scratch),
        })
    }

    /// CUDA graphs on or off for this engine (default: on, unless ALBERT_CUDA_GRAPHS=0).
    pub fn with_graphs(self, on: bool) -> Self {
        self.lock().graphs = GraphCache::new(on);
        self
    }

    /// Programmatic dependent launch on or off for this engine (default: on with
    /// ALBERT_CUDA_PDL=1); it stays off where a loaded kernel lacks the wait for its predecessor
    /// (`Kernels::wait_for_previous_kernel`: below sm_90). Graphs captured so far are dropped.
    pub fn with_pdl(mut self, on: bool) -> Self {
        self.dev.pdl = on && self.dev.kernels.wait_for_previous_kernel();
        {
            let g = &mut self.lock().graphs;
            *g = GraphCache::new(g.off().is_none());
        }
        self
    }

    /// Whether kernels launch with programmatic dependent launch (launcher.rs).
    pub fn pdl(&self) -> bool {
        self.dev.pdl
    }

    /// Whether the attention output's product and LayerNorm may run as one cluster kernel
    /// (ALBERT_CUDA_FUSED_LN=1 where kernels/linear_mma_ln.cu loaded: sm_90); it is taken for
    /// the shapes `CudaDevice::linear_ln_fits` accepts (large batches).
    pub fn fused_ln(&self) -> bool {
        let t = self.dtype.name();
        self.dev.fused_ln
            && self
                .dev
                .kernels
                .has(&format!("linear_forward_mma_ln_{t}_from_{t}"))
    }

    /// Whether the output products may take their LayerNorms in one cooperative kernel
    /// (ALBERT_CUDA_GRID_LN=1 where kernels/linear_mma_grid_ln.cu loaded: sm_80+); it is taken
    /// for the shapes `CudaDevice::grid_ln_fits` accepts (small batches).
    pub fn grid_ln(&self) -> bool {
        let t = self.dtype.name();
        self.dev.grid_ln
            && self
                .dev
                .kernels
                .has(&format!("linear_forward_mma64_ln_{t}_from_{t}"))
    }

    /// Whether a small batch's layer applications may run as one resident launch
    /// (ALBERT_CUDA_RESIDENT=1 where kernels/layer_resident.cu loaded and the device takes
    /// cooperative launches); it is taken where `CudaDevice::resident_plan` accepts the shape.
    pub fn resident_layers(&self) -> bool {
        let t = self.dtype.name();
        self.dev.resident_layers
            && self.dev.cooperative
            && self.dev.kernels.has(&format!("layer_resident_{t}"))
    }

    /// Whether the encoder of `m` tokens runs as one resident launch (`resident_layers` and
    /// `CudaDevice::resident_plan` for this model's shapes).
    pub fn resident_taken(&self, m: usize) -> bool {
        let cfg = &self.config;
        let splits = (
            CudaDevice::output_splits(cfg.hidden_size),
            CudaDevice::output_splits(cfg.intermediate_size),
        );
        let dtype = self.weights.groups[0][0].qkv.weight.dtype();
        self.resident_layers()
            && self.dev.encoder_keeps_t(self.dtype, cfg.head_size())
            && self.dev.resident_plan(cfg, dtype, m, splits).is_some()
    }

    /// Which kernels the encoder's T-input products run on, as linear_t.rs picks them:
    /// "wgmma" (ALBERT_CUDA_WGMMA=1 where sm_90a's module loaded; "wgmma wide" with
    /// ALBERT_CUDA_WGMMA_WIDE=1 too; "... tma" with ALBERT_CUDA_TMA=1: the tiles staged by TMA
    /// where a tensor map can describe the operands; "... tma persistent" with
    /// ALBERT_CUDA_PERSISTENT=1: those on a grid of resident blocks; "... pingpong" with
    /// ALBERT_CUDA_PINGPONG=1: the 128x128 ones with consumers taking whole tiles in turn), "mma.sync k64" (ALBERT_CUDA_K64=1), "mma.sync deep"
    /// (ALBERT_CUDA_DEEP=1; both: "mma.sync k64 deep"), "mma.sync", or "portable" (f32, or no
    /// tensor cores).
    pub fn products(&self) -> &'static str {
        let t = self.dtype.name();
        let has = |k: String| self.dev.kernels.has(&k);
        if !self
            .dev
            .encoder_keeps_t(self.dtype, self.config.head_size())
        {
            "portable"
        } else if self.dev.wgmma && has(format!("linear_forward_wgmma_{t}_from_{t}")) {
            let wide =
                self.dev.wgmma_wide && has(format!("linear_forward_wgmma_wide_{t}_from_{t}"));
            let tma = self.dev.tma && has(format!("linear_forward_wgmma_tma_{t}_from_{t}"));
            let pingpong = tma
                && self.dev.pingpong
                && has(format!("linear_forward_wgmma_pingpong_tma_{t}_from_{t}"));
            match (wide, tma, tma && self.dev.persistent, pingpong) {
                (true, true, true, true) => "wgmma wide tma persistent pingpong",
                (true, true, true, false) => "wgmma wide tma persistent",
                (true, true, false, _) => "wgmma wide tma",
                (true, false, _, _) => "wgmma wide",
                (false, true, true, true) => "wgmma tma persistent pingpong",
                (false, true, true, false) => "wgmma tma persistent",
                (false, true, false, _) => "wgmma tma",
                (false, false, _, _) => "wgmma",
            }
        } else {
            let k64 = self.dev.k64 && has(format!("linear_forward_mma_k64_{t}_from_{t}"));
            let deep = self.dev.deep && has(format!("linear_forward_mma64_deep_{t}_from_{t}"));
            match (k64, deep) {
                (true, true) => "mma.sync k64 deep",
                (true, false) => "mma.sync k64",
                (false, true) => "mma.sync deep",
                (false, false) => "mma.sync",
            }
        }
    }

    /// How many passes ran as graphs, eagerly, and graphs captured and dropped.
    pub fn graph_stats(&self) -> GraphStats {
        self.lock().graphs.stats.clone()
    }

    /// "on (...)" or "off (why)", for the device description.
    pub fn graph_status(&self) -> String {
        let g = &self.lock().graphs;
        match g.off() {
            Some(why) => format!("off ({why})"),
            None => format!(
                "on ({} captured, {} replays)",
                g.stats.captured, g.stats.replays
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Scratch> {
        match self.scratch.lock() {
            Ok(g) => g,
            // Another call panicked mid-pass: the arena is rewritten in full by every pass, and
            // a capture it left open was ended by graphs::capture's guard.
            Err(poisoned) => {
                self.scratch.clear_poison();
                poisoned.into_inner()
            }
        }
    }

    pub fn weight_bytes(&self) -> usize {
        self.weights.bytes
    }

    /// Runs the encoder; then `then` reads the arena (last hidden state in `hidden`, [R*S, H]).
    /// With `record`, every hidden state is copied to the host on the way.
    fn encode<T>(
        &self,
        inputs: &Inputs,
        record: Option<&mut Vec<Vec<f32>>>,
        then: impl FnOnce(&mut Arena) -> Result<T>,
    ) -> Result<T> {
        inputs.validate(&self.config, &self.limits)?;
        let cfg = &self.config;
        let (rows, s) = (inputs.rows(), inputs.seq);
        let (m, d) = (rows * s, cfg.head_size());
        let dev = &self.dev;

        let mut guard = self.lock();
        let Scratch {
            graphs,
            staging,
            arena,
        } = &mut *guard;
        if arena.as_ref().is_none_or(|ar| ar.capacity < m) {
            // Graphs point into the old arena and the staging buffers match its size: drop them
            // first, then free the old arena before allocating the larger one.
            graphs.arena(m);
            *staging = None;
            *arena = None;
            let t_if = |yes: bool| if yes { self.dtype } else { DType::F32 };
            let t_copies = dev.encoder_keeps_t(self.dtype, d);
            let st = Storage {
                qkv: t_if(dev.attention_uses_mma(self.dtype, d)),
                ffn: t_if(dev.linear_keeps_t(self.dtype)),
                t: t_copies.then_some(self.dtype),
                x: !self.embeddings_fused(t_copies),
            };
            *arena = Some(Arena::new(dev, cfg, m, st)?);
        }
        let ar = arena.as_mut().expect("allocated just above");
        if dev.poison {
            ar.poison(dev)?;
        }

        let key = GraphKey { rows, seq: s };
        let recording = record.is_some();
        // Eager when copying to the host between layers, or when logging each launch's cost.
        let plan = match recording || dev.costs.recording() {
            true => Plan::Eager,
            false => graphs.plan(key),
        };
        if plan != Plan::Eager {
            match self.encode_graph(ar, graphs, staging, key, inputs) {
                Ok(()) => return then(ar),
                Err(e) => {
                    // Let whatever the failed attempt enqueued finish (the staging buffers may
                    // be freed later without another wait); an error here resurfaces below.
                    let _ = dev.synchronize();
                    if graphs.turn_off(e.to_string()) {
                        eprintln!(
                            "albert: CUDA graphs turned off for this model, launching kernels \
                             one by one: {e}"
                        );
                    }
                }
            }
        }

        let ids: Vec<i32> = inputs.input_ids.iter().map(|&v| v as i32).collect();
        let types: Vec<i32> = inputs.token_type_ids.iter().map(|&v| v as i32).collect();
        let mask: Vec<f32> = inputs
            .attention_mask
            .iter()
            .map(|&v| if v == 1 { 0.0 } else { MASKED })
            .collect();
        let up = |e| dev.err("copying inputs", e);
        dev.stream.memcpy_htod(&ids, &mut ar.ids).map_err(up)?;
        dev.stream.memcpy_htod(&types, &mut ar.types).map_err(up)?;
        dev.stream.memcpy_htod(&mask, &mut ar.mask).map_err(up)?;
        self.encoder(ar, rows, s, record)?;
        if !recording {
            graphs.warmed(key);
        }
        then(ar)
    }

    /// The encoder through a CUDA graph: the key's cached graph, or one captured now. Inputs go
    /// through the pinned staging buffers, the source the graph's copies read.
    fn encode_graph(
        &self,
        ar: &mut Arena,
        graphs: &mut GraphCache<ExecGraph>,
        staging: &mut Option<Staging>,
        key: GraphKey,
        inputs: &Inputs,
    ) -> Result<()> {
        let dev = &self.dev;
        let st = match staging {
            Some(st) => st,
            None => staging.insert(Staging::new(dev, ar.capacity)?),
        };
        st.write(dev, inputs)?;
        let m = key.rows * key.seq;
        let graph = match graphs.get(key) {
            Some(g) => g,
            None => {
                let g = graphs::capture(dev, || {
                    st.copy_to(dev, m, &mut ar.ids, &mut ar.types, &mut ar.mask)?;
                    self.encoder(ar, key.rows, key.seq, None)
                })?;
                graphs.insert(key, g)
            }
        };
        graph.launch(dev)?;
        graphs.stats.replays += 1;
        st.record(dev)
    }

    /// Embeddings through the last layer application, from the inputs in `ar` (ids, types,
    /// mask); the last hidden state ends in `ar.hidden` [M, H]. With `record`, every hidden
    /// state is copied to the host on the way (which synchronizes: never inside a graph).
    fn encoder(
        &self,
        ar: &mut Arena,
        rows: usize,
        s: usize,
        record: Option<&mut Vec<Vec<f32>>>,
    ) -> Result<()> {
        let cfg = &self.config;
        let m = rows * s;
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let (a, d) = (cfg.num_attention_heads, cfg.head_size());
        let dev = &self.dev;
        let w = &self.weights;
        let tables = [&w.word, &w.position, &w.token_type];
        match ar.t.as_mut() {
            // One kernel: embeddings, LayerNorm, projection, and the projection's T copy for
            // the first layer's QKV product (the results of embeddings_unfused's three launches).
            Some(t) if self.embeddings_fused(true) => dev.embeddings_project(
                &mut ar.hidden,
                &mut t.hidden,
                &ar.ids,
                &ar.types,
                tables,
                &w.emb_norm,
                &w.projection,
                (m, s),
                eps,
            )?,
            _ => self.embeddings_unfused(ar, m, s)?,
        }
        let mut record = record;
        if let Some(rec) = record.as_deref_mut() {
            rec.push(self.download(&ar.hidden, m * h)?);
        }
        // Small batches: every application in one launch (ALBERT_CUDA_RESIDENT), the same bits.
        let splits = (CudaDevice::output_splits(h), CudaDevice::output_splits(i));
        if record.is_none() && ar.t.is_some() && cfg.num_hidden_layers > 0 {
            let layer = &w.groups[0][0]; // resident_plan holds only for one group of one layer
            if let Some(plan) = dev.resident_plan(cfg, layer.qkv.weight.dtype(), m, splits) {
                return dev.layer_resident(ar, layer, cfg, (rows, s), splits, plan);
            }
        }
        for app in 0..cfg.num_hidden_layers {
            // The same device buffers for every application of the group.
            for layer in &w.groups[cfg.group_of_application(app)] {
                match ar.t.is_some() {
                    true => self.layer_forward_t(ar, layer, rows, s)?,
                    false => self.layer_forward(ar, layer, rows, s, m, h, i, a, d, eps)?,
                }
                if let Some(rec) = record.as_deref_mut() {
                    rec.push(self.download(&ar.hidden, m * h)?);
                }
            }
        }
        Ok(())
    }

    fn download(&self, buf: &CudaSlice<f32>, n: usize) -> Result<Vec<f32>> {
        let v = self
            .dev
            .stream
            .clone_dtoh(&buf.slice(0..n))
            .map_err(|e| self.dev.err("copying outputs", e))?;
        self.dev.synchronize()?;
        Ok(v)
    }

    fn alloc(&self, n: usize) -> Result<CudaSlice<f32>> {
        self.dev
            .stream
            .alloc_zeros::<f32>(n.max(1))
            .map_err(|e| self.dev.err("allocating head outputs", e))
    }

    /// y[n, out] = act(x[n, in] W^T + b) into a new buffer.
    fn linear(
        &self,
        l: &DeviceLinear,
        x: &CudaSlice<f32>,
        n: usize,
        act: Option<Activation>,
    ) -> Result<CudaSlice<f32>> {
        let mut y = self.alloc(n * l.out_features)?;
        self.dev.linear_forward(
            &mut y,
            x,
            &l.weight,
            Some(&l.bias),
            n,
            l.in_features,
            l.out_features,
            act,
        )?;
        Ok(y)
    }

    /// tanh(h[r*S] Wp^T + bp) for each of `rows` sequences.
    fn pooler(&self, hidden: &CudaSlice<f32>, rows: usize, s: usize) -> Result<CudaSlice<f32>> {
        let h = self.config.hidden_size;
        let first: Vec<i32> = (0..rows).map(|r| (r * s) as i32).collect();
        let rows_dev = self
            .dev
            .stream
            .clone_htod(&first)
            .map_err(|e| self.dev.err("copying row indices", e))?;
        let mut picked = self.alloc(rows * h)?;
        self.dev
            .gather_rows(&mut picked, hidden, &rows_dev, &first, h)?;
        self.linear(
            need(&self.weights.pooler, "pooler")?,
            &picked,
            rows,
            Some(Activation::Tanh),
        )
    }

    /// MLM logits [n, V] for `n` hidden rows already on the device.
    fn mlm_logits(&self, hidden_rows: &CudaSlice<f32>, n: usize) -> Result<CudaSlice<f32>> {
        let cfg = &self.config;
        let mlm = need(&self.weights.mlm, "predictions")?;
        let x = self.linear(&mlm.dense, hidden_rows, n, Some(cfg.hidden_act))?;
        let e = cfg.embedding_size;
        let mut normed = self.alloc(n * e)?;
        self.dev.residual_layernorm_forward(
            &mut normed,
            &x,
            None,
            &mlm.norm.weight,
            &mlm.norm.bias,
            n,
            e,
            cfg.layer_norm_eps,
        )?;
        let decoder = mlm.decoder.as_ref().unwrap_or(&self.weights.word);
        let mut logits = self.alloc(n * cfg.vocab_size)?;
        self.dev.linear_forward(
            &mut logits,
            &normed,
            decoder,
            Some(&mlm.bias),
            n,
            e,
            cfg.vocab_size,
            None,
        )?;
        Ok(logits)
    }

    /// The head's outputs, as `Albert::forward` returns them.
    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> Result<Outputs> {
        crate::model::heads::check_head_inputs(self.head, inputs)?;
        let (b, s, h) = (inputs.batch, inputs.seq, self.config.hidden_size);
        let (rows, m) = (inputs.rows(), inputs.rows() * inputs.seq);
        let v = self.config.vocab_size;
        let mut recorded = Vec::new();
        let record = opts.hidden_states.then_some(&mut recorded);
        let mut out = Outputs::default();
        self.encode(inputs, record, |ar| {
            let hidden = &ar.hidden;
            out.push(
                "last_hidden_state",
                Tensor::new(vec![rows, s, h], self.download(hidden, m * h)?),
            );
            let w = &self.weights;
            match self.head {
                Head::Model => {
                    let pooled = self.pooler(hidden, rows, s)?;
                    out.push(
                        "pooler_output",
                        Tensor::new(vec![rows, h], self.download(&pooled, rows * h)?),
                    );
                }
                Head::PreTraining => {
                    let logits = self.mlm_logits(hidden, m)?;
                    out.push(
                        "prediction_logits",
                        Tensor::new(vec![b, s, v], self.download(&logits, m * v)?),
                    );
                    let pooled = self.pooler(hidden, rows, s)?;
                    let sop = self.linear(
                        need(&w.sop, "sop_classifier.classifier")?,
                        &pooled,
                        rows,
                        None,
                    )?;
                    out.push(
                        "sop_logits",
                        Tensor::new(vec![b, 2], self.download(&sop, rows * 2)?),
                    );
                }
                Head::MaskedLm => {
                    let logits = self.mlm_logits(hidden, m)?;
                    out.push(
                        "logits",
                        Tensor::new(vec![b, s, v], self.download(&logits, m * v)?),
                    );
                }
                Head::SequenceClassification | Head::MultipleChoice => {
                    let pooled = self.pooler(hidden, rows, s)?;
                    let c = need(&w.classifier, "classifier")?;
                    let logits = self
                        .download(&self.linear(c, &pooled, rows, None)?, rows * c.out_features)?;
                    let shape = match self.head {
                        Head::MultipleChoice => vec![b, rows / b],
                        _ => vec![b, c.out_features],
                    };
                    out.push("logits", Tensor::new(shape, logits));
                }
                Head::TokenClassification => {
                    let c = need(&w.classifier, "classifier")?;
                    let logits =
                        self.download(&self.linear(c, hidden, m, None)?, m * c.out_features)?;
                    out.push("logits", Tensor::new(vec![b, s, c.out_features], logits));
                }
                Head::QuestionAnswering => {
                    let c = need(&w.classifier, "qa_outputs")?;
                    let qa = self.download(&self.linear(c, hidden, m, None)?, m * 2)?;
                    out.push(
                        "start_logits",
                        Tensor::new(vec![b, s], qa.iter().step_by(2).copied().collect()),
                    );
                    out.push(
                        "end_logits",
                        Tensor::new(vec![b, s], qa.iter().skip(1).step_by(2).copied().collect()),
                    );
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

    /// MLM logits [n, V] at the token rows `positions` (row * S + position): fill-mask computes
    /// the vocabulary product only where it needs it.
    pub fn masked_lm_logits(&self, inputs: &Inputs, positions: &[usize]) -> Result<Vec<f32>> {
        let (h, v) = (self.config.hidden_size, self.config.vocab_size);
        let m = inputs.rows() * inputs.seq;
        if let Some(&p) = positions.iter().find(|&&p| p >= m) {
            return Err(Error::Input(format!(
                "position {p} is outside the batch's {m} token rows"
            )));
        }
        let idx: Vec<i32> = positions.iter().map(|&p| p as i32).collect();
        self.encode(inputs, None, |ar| {
            if idx.is_empty() {
                return Ok(Vec::new());
            }
            let rows_dev = self
                .dev
                .stream
                .clone_htod(&idx)
                .map_err(|e| self.dev.err("copying row indices", e))?;
            let mut picked = self.alloc(idx.len() * h)?;
            self.dev
                .gather_rows(&mut picked, &ar.hidden, &rows_dev, &idx, h)?;
            let logits = self.mlm_logits(&picked, idx.len())?;
            self.download(&logits, idx.len() * v)
        })
    }

    /// Every kernel launch of one eager encoder pass over `inputs`, in launch order, with the
    /// FLOPs and bytes it must do at least (costs.rs): what scripts/ncu_table.py sets ncu's
    /// times of the same pass against.
    pub fn kernel_costs(&self, inputs: &Inputs) -> Result<Vec<LaunchCost>> {
        self.dev.costs.start();
        let pass = self.encode_only(inputs);
        let costs = self.dev.costs.take();
        pass.map(|()| costs)
    }

    /// The encoder alone, synchronised: what `albert bench` times.
    pub fn encode_only(&self, inputs: &Inputs) -> Result<()> {
        self.encode(inputs, None, |_| Ok(()))?;
        self.dev.synchronize()
    }
}

fn need<'a, T>(w: &'a Option<T>, name: &str) -> Result<&'a T> {
    w.as_ref().ok_or_else(|| {
        Error::Input(format!(
            "this model was loaded without the `{name}` weights its head needs"
        ))
    })
}
