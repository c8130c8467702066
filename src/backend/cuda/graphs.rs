//! CUDA graphs for the encoder. At b1/s128 the encoder is 86 kernel launches of a few microseconds
//! of work each, so launch overhead (3-5 us per eager launch) dominates; a graph replays all of
//! them from one host call (~1.5-2 us per node on the device, one launch on the host).
//!
//! Design (after ggml-cuda: capture after warm-up, re-capture when shapes change):
//! - One graph per shape bucket `GraphKey` (R rows, S tokens). The dtype is fixed per engine and
//!   the head kernels are not in the graph (they allocate their outputs and upload row indices
//!   from pageable memory, neither of which may happen inside a capture), so neither is in the key.
//!   Passes that record every hidden state copy to the host between layers and always run eagerly.
//! - A key is captured on its second pass: the first runs eagerly (the warm-up), so a shape seen
//!   once costs no capture, and a shape whose launchers refuse it fails eagerly, before capture.
//! - Inputs reach the device inside the graph from `Staging`, pinned host buffers at fixed
//!   addresses: the captured copy reads those addresses on every replay, so each pass writes its
//!   inputs there first (after the previous copy out of them has finished).
//! - Graphs point into the activation arena: when the arena grows (is reallocated) every graph is
//!   dropped first and re-captured on demand.
//! - Any error while capturing, instantiating or launching turns graphs off for the engine (one
//!   notice on stderr naming the CUDA error) and the pass runs eagerly: a graph failure never
//!   fails a forward pass.
//!
//! What the captured region must not do (and does not): synchronize, allocate or free, copy from
//! pageable memory, or wait on events recorded outside the capture. cudarc's cross-stream event
//! tracking would do the last around every launch on a non-default stream, so `CudaDevice::open`
//! turns it off (one stream per engine needs none). The legacy default stream cannot be captured
//! at all, hence the engine's own non-blocking stream.
//!
//! `GraphCache` is the bookkeeping alone, generic over the graph type so that it is tested on the
//! CPU with a dummy.

use std::collections::VecDeque;

use cudarc::driver::result::memcpy_htod_async;
use cudarc::driver::sys::{CUevent_flags, CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaEvent, CudaGraph, CudaSlice, DevicePtrMut, PinnedHostSlice};

use super::device::CudaDevice;
use crate::backend::cpu::reference::MASKED;
use crate::error::Result;
use crate::inputs::Inputs;

/// Graphs kept per engine. Each instantiated graph holds its ~90 kernel nodes and their
/// parameters in driver memory, and a server that pads each batch to its longest sequence sees an
/// unbounded set of (R, S) shapes; 16 covers a set of padded length buckets times a few batch
/// sizes, and the least recently used graph goes first when a new shape needs room.
pub const MAX_GRAPHS: usize = 16;
/// Shapes remembered as warmed up (run once eagerly) but not captured yet.
const MAX_WARM: usize = 64;

/// The shape bucket of one graph: R rows (B, or B*C for multiple choice) of S tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GraphKey {
    pub rows: usize,
    pub seq: usize,
}

/// What a pass with a given key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Launch kernel by kernel (graphs off, or the key's warm-up pass).
    Eager,
    /// Capture the encoder into a graph, then launch it.
    Capture,
    /// Launch the cached graph.
    Replay,
}

/// Counters, for tests and `albert bench`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphStats {
    pub captured: usize,
    /// Graph launches, the one right after each capture included.
    pub replays: usize,
    pub eager: usize,
    /// Graphs dropped to make room (least recently used).
    pub evicted: usize,
    /// Graphs dropped because the arena they point into was reallocated.
    pub invalidated: usize,
}

struct Cached<G> {
    key: GraphKey,
    graph: G,
    last_used: u64,
}

/// The graphs of one engine and when to capture, replay or drop them.
pub struct GraphCache<G> {
    graphs: Vec<Cached<G>>,
    warm: VecDeque<GraphKey>,
    clock: u64,
    /// Token rows of the arena the graphs point into.
    arena_rows: usize,
    /// Why graphs are off (`ALBERT_CUDA_GRAPHS=0`, or the error that turned them off).
    off: Option<String>,
    pub stats: GraphStats,
}

impl<G> GraphCache<G> {
    pub fn new(enabled: bool) -> Self {
        GraphCache {
            graphs: Vec::new(),
            warm: VecDeque::new(),
            clock: 0,
            arena_rows: 0,
            off: (!enabled).then(|| "ALBERT_CUDA_GRAPHS=0".to_string()),
            stats: GraphStats::default(),
        }
    }

    /// Why graphs are off, or None while they are on.
    pub fn off(&self) -> Option<&str> {
        self.off.as_deref()
    }

    pub fn len(&self) -> usize {
        self.graphs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.graphs.is_empty()
    }

    /// Called before the arena is (re)allocated for `rows` token rows: every graph points into
    /// the old arena, so all are dropped (before the arena is freed). Warm-up marks stay: the
    /// next pass of a warmed key re-captures.
    pub fn arena(&mut self, rows: usize) {
        if rows != self.arena_rows {
            self.stats.invalidated += self.graphs.len();
            // A dropped graph's key ran before: it is warm, so its next pass re-captures.
            let dropped: Vec<GraphKey> = self.graphs.drain(..).map(|c| c.key).collect();
            for key in dropped {
                self.mark_warm(key);
            }
            self.arena_rows = rows;
        }
    }

    /// What a pass with `key` does (the caller runs eagerly when recording hidden states).
    pub fn plan(&mut self, key: GraphKey) -> Plan {
        if self.off.is_some() {
            Plan::Eager
        } else if self.graphs.iter().any(|c| c.key == key) {
            Plan::Replay
        } else if self.warm.contains(&key) {
            Plan::Capture
        } else {
            Plan::Eager
        }
    }

    /// A successful eager pass with `key`: its next pass captures.
    pub fn warmed(&mut self, key: GraphKey) {
        self.stats.eager += 1;
        self.mark_warm(key);
    }

    fn mark_warm(&mut self, key: GraphKey) {
        if self.off.is_some() || self.warm.contains(&key) {
            return;
        }
        if self.warm.len() == MAX_WARM {
            self.warm.pop_front();
        }
        self.warm.push_back(key);
    }

    /// The graph for `key`, marked as just used.
    pub fn get(&mut self, key: GraphKey) -> Option<&G> {
        self.clock += 1;
        let now = self.clock;
        let c = self.graphs.iter_mut().find(|c| c.key == key)?;
        c.last_used = now;
        Some(&c.graph)
    }

    /// Keeps `graph` for `key`, dropping the least recently used graph when full.
    pub fn insert(&mut self, key: GraphKey, graph: G) -> &G {
        self.clock += 1;
        self.stats.captured += 1;
        self.warm.retain(|k| *k != key);
        self.graphs.retain(|c| c.key != key);
        if self.graphs.len() == MAX_GRAPHS {
            let oldest = (0..self.graphs.len())
                .min_by_key(|&i| self.graphs[i].last_used)
                .expect("the cache is full, so not empty");
            self.graphs.swap_remove(oldest);
            self.stats.evicted += 1;
        }
        self.graphs.push(Cached {
            key,
            graph,
            last_used: self.clock,
        });
        &self.graphs.last().expect("pushed just above").graph
    }

    /// Turns graphs off for good, dropping every graph. True the first time (print the notice).
    pub fn turn_off(&mut self, why: String) -> bool {
        self.graphs.clear();
        self.warm.clear();
        match self.off {
            Some(_) => false,
            None => {
                self.off = Some(why);
                true
            }
        }
    }
}

/// Whether `ALBERT_CUDA_GRAPHS` (its value, if set) allows graphs: anything but 0/off/false does.
pub fn graphs_allowed(var: Option<&str>) -> bool {
    !matches!(
        var.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("0" | "off" | "false" | "no")
    )
}

/// An instantiated graph of one engine's stream.
pub struct ExecGraph(CudaGraph);

// SAFETY: CudaGraph holds raw driver handles, so it is not Send by default. The driver allows a
// graph and its executable to be used from any thread provided calls on them are serialized; the
// engine keeps its graphs behind the Mutex that also guards its arena and only uses them there.
unsafe impl Send for ExecGraph {}

impl ExecGraph {
    pub fn launch(&self, dev: &CudaDevice) -> Result<()> {
        self.0
            .launch()
            .map_err(|e| dev.err("launching a CUDA graph", e))
    }
}

/// Records everything `enqueue` puts on `dev.stream` into a graph and instantiates it. The
/// capture is always ended, also when `enqueue` fails or panics, so the stream stays usable.
pub fn capture(dev: &CudaDevice, enqueue: impl FnOnce() -> Result<()>) -> Result<ExecGraph> {
    let s = &dev.stream;
    // Thread-local: a call this thread must not make during capture (a synchronize, an
    // allocation) fails the capture instead of silently running; other threads (other engines)
    // are unaffected. Such a capture can only be ended from this thread, hence the guard.
    s.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .map_err(|e| dev.err("beginning a CUDA graph capture", e))?;
    let mut open = OpenCapture(Some(dev));
    let body = enqueue();
    open.0 = None;
    let ended = s.end_capture(CUgraphInstantiate_flags(0));
    body?;
    match ended {
        Ok(Some(g)) => Ok(ExecGraph(g)),
        Ok(None) => Err(dev.err("ending a CUDA graph capture", "no graph was captured")),
        Err(e) => Err(dev.err("ending a CUDA graph capture or instantiating it", e)),
    }
}

/// Ends the capture (discarding it) if `enqueue` panicked.
struct OpenCapture<'a>(Option<&'a CudaDevice>);

impl Drop for OpenCapture<'_> {
    fn drop(&mut self) {
        if let Some(dev) = self.0 {
            let _ = dev.stream.end_capture(CUgraphInstantiate_flags(0));
        }
    }
}

/// Pinned host copies of one pass's inputs, at addresses fixed for the arena's lifetime: the
/// source of the captured input copies. `done` marks the last copy out of them.
pub struct Staging {
    rows: usize,
    ids: PinnedHostSlice<i32>,   // [M]
    types: PinnedHostSlice<i32>, // [M]
    mask: PinnedHostSlice<f32>,  // [M] additive, over keys
    /// The three buffers' addresses, taken once: reading them through PinnedHostSlice calls
    /// cuEventSynchronize, which the captured region must not.
    ptrs: (*const i32, *const i32, *const f32),
    done: CudaEvent,
}

// SAFETY: the raw pointers are addresses of the pinned buffers this struct owns (Send and Sync
// themselves); they are only read, and only under the engine's Mutex.
unsafe impl Send for Staging {}

impl Staging {
    /// Buffers for up to `rows` token rows (the arena's capacity).
    pub fn new(dev: &CudaDevice, rows: usize) -> Result<Self> {
        let n = rows.max(1);
        let err = |e| dev.err("allocating pinned input buffers", e);
        // SAFETY: the buffers are uninitialized host memory; `write` fills the first M elements
        // of each before any copy reads them, and copies read only those.
        let (ids, types, mask): (
            PinnedHostSlice<i32>,
            PinnedHostSlice<i32>,
            PinnedHostSlice<f32>,
        ) = unsafe {
            (
                dev.ctx.alloc_pinned_with_flags(n, 0).map_err(err)?,
                dev.ctx.alloc_pinned_with_flags(n, 0).map_err(err)?,
                dev.ctx.alloc_pinned_with_flags(n, 0).map_err(err)?,
            )
        };
        let ptrs = (
            ids.as_ptr().map_err(err)?,
            types.as_ptr().map_err(err)?,
            mask.as_ptr().map_err(err)?,
        );
        let done = dev
            .ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING))
            .map_err(|e| dev.err("creating an event", e))?;
        Ok(Staging {
            rows,
            ids,
            types,
            mask,
            ptrs,
            done,
        })
    }

    /// Writes `inputs` (M = R*S tokens, at most the capacity) into the buffers, after waiting
    /// for the previous copy out of them.
    pub fn write(&mut self, dev: &CudaDevice, inputs: &Inputs) -> Result<()> {
        let m = inputs.input_ids.len();
        if m > self.rows {
            return Err(dev.err(
                "staging inputs",
                format!("{m} tokens exceed the buffers' {}", self.rows),
            ));
        }
        let err = |e| dev.err("waiting for the previous input copy", e);
        self.done.synchronize().map_err(err)?;
        let ids = self.ids.as_mut_slice().map_err(err)?;
        for (d, &v) in ids.iter_mut().zip(&inputs.input_ids) {
            *d = v as i32;
        }
        let types = self.types.as_mut_slice().map_err(err)?;
        for (d, &v) in types.iter_mut().zip(&inputs.token_type_ids) {
            *d = v as i32;
        }
        let mask = self.mask.as_mut_slice().map_err(err)?;
        for (d, &v) in mask.iter_mut().zip(&inputs.attention_mask) {
            *d = if v == 1 { 0.0 } else { MASKED };
        }
        Ok(())
    }

    /// Enqueues the copies of the first `m` staged tokens into the arena's input buffers: plain
    /// async copies from pinned memory, legal inside a capture (cudarc's memcpy_htod would wait
    /// on the pinned buffer's event, which was recorded outside any capture).
    pub fn copy_to(
        &self,
        dev: &CudaDevice,
        m: usize,
        ids: &mut CudaSlice<i32>,
        types: &mut CudaSlice<i32>,
        mask: &mut CudaSlice<f32>,
    ) -> Result<()> {
        if m > self.rows || ids.len() < m || types.len() < m || mask.len() < m {
            return Err(dev.err(
                "copying staged inputs",
                format!("{m} tokens exceed a buffer"),
            ));
        }
        let s = &dev.stream;
        let err = |e| dev.err("copying staged inputs", e);
        // SAFETY: each source is the first m elements of a pinned buffer that lives until this
        // Staging is dropped, and Drop waits for `done`, recorded after every launch that reads
        // them; each destination holds at least m elements (checked above). With event tracking
        // off, the SyncOnDrop guards returned by device_ptr_mut do nothing.
        unsafe {
            let (dst, _g) = ids.device_ptr_mut(s);
            let src = std::slice::from_raw_parts(self.ptrs.0, m);
            memcpy_htod_async(dst, src, s.cu_stream()).map_err(err)?;
            let (dst, _g) = types.device_ptr_mut(s);
            let src = std::slice::from_raw_parts(self.ptrs.1, m);
            memcpy_htod_async(dst, src, s.cu_stream()).map_err(err)?;
            let (dst, _g) = mask.device_ptr_mut(s);
            let src = std::slice::from_raw_parts(self.ptrs.2, m);
            memcpy_htod_async(dst, src, s.cu_stream()).map_err(err)?;
        }
        Ok(())
    }

    /// Marks the end of the work just enqueued that reads the buffers (outside any capture).
    pub fn record(&self, dev: &CudaDevice) -> Result<()> {
        self.done
            .record(&dev.stream)
            .map_err(|e| dev.err("recording an event", e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // The pinned buffers are freed after this: no copy may still be reading them.
        let _ = self.done.synchronize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rows: usize, seq: usize) -> GraphKey {
        GraphKey { rows, seq }
    }

    #[test]
    fn a_key_is_captured_on_its_second_pass_then_replayed() {
        let mut c = GraphCache::<u32>::new(true);
        c.arena(128);
        let k = key(1, 128);
        assert_eq!(c.plan(k), Plan::Eager);
        c.warmed(k);
        assert_eq!(c.plan(k), Plan::Capture);
        c.insert(k, 7);
        assert_eq!(c.plan(k), Plan::Replay);
        assert_eq!(c.get(k), Some(&7));
        // Other shapes are separate keys, rows and sequence alike.
        assert_eq!(c.plan(key(2, 64)), Plan::Eager);
        assert_eq!(c.plan(key(1, 64)), Plan::Eager);
        assert_eq!(c.get(key(128, 1)), None);
        assert_eq!(c.stats.captured, 1);
    }

    #[test]
    fn a_failed_warm_up_does_not_lead_to_a_capture() {
        let mut c = GraphCache::<u32>::new(true);
        // plan() alone marks nothing: only warmed(), called after a pass succeeded.
        assert_eq!(c.plan(key(1, 8)), Plan::Eager);
        assert_eq!(c.plan(key(1, 8)), Plan::Eager);
    }

    #[test]
    fn the_least_recently_used_graph_is_evicted() {
        let mut c = GraphCache::<usize>::new(true);
        for i in 0..MAX_GRAPHS {
            c.insert(key(1, i + 1), i);
        }
        assert_eq!(c.len(), MAX_GRAPHS);
        // Touch the oldest: the second oldest goes.
        assert_eq!(c.get(key(1, 1)), Some(&0));
        c.insert(key(9, 9), 99);
        assert_eq!(c.len(), MAX_GRAPHS);
        assert_eq!(c.stats.evicted, 1);
        assert_eq!(c.get(key(1, 2)), None);
        assert_eq!(c.get(key(1, 1)), Some(&0));
        assert_eq!(c.get(key(9, 9)), Some(&99));
        // Re-inserting a key replaces it without evicting.
        c.insert(key(9, 9), 100);
        assert_eq!((c.len(), c.stats.evicted), (MAX_GRAPHS, 1));
        assert_eq!(c.get(key(9, 9)), Some(&100));
    }

    #[test]
    fn arena_growth_drops_every_graph_and_keeps_warm_keys() {
        let mut c = GraphCache::<u32>::new(true);
        c.arena(8);
        let (small, large) = (key(1, 8), key(4, 32));
        c.warmed(small);
        c.insert(small, 1);
        c.arena(8); // same arena: nothing happens
        assert_eq!(c.plan(small), Plan::Replay);
        c.arena(128); // the large pass reallocates the arena
        assert!(c.is_empty());
        assert_eq!(c.stats.invalidated, 1);
        assert_eq!(c.plan(large), Plan::Eager);
        c.warmed(large);
        // The small key ran before: it re-captures at once, now into the larger arena (the
        // real flow calls no warmed() for it in between: a GPU run caught an earlier version
        // that ran it eagerly once more).
        assert_eq!(c.plan(small), Plan::Capture);
        c.insert(small, 2);
        assert_eq!(c.get(small), Some(&2));
    }

    #[test]
    fn turned_off_runs_eagerly_and_reports_once() {
        let mut c = GraphCache::<u32>::new(true);
        let k = key(2, 16);
        c.warmed(k);
        c.insert(k, 3);
        assert!(c.turn_off("CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED".into()));
        assert!(!c.turn_off("again".into()));
        assert_eq!(c.off(), Some("CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"));
        assert!(c.is_empty());
        c.warmed(k);
        assert_eq!(c.plan(k), Plan::Eager);
        let off = GraphCache::<u32>::new(false);
        assert_eq!(off.off(), Some("ALBERT_CUDA_GRAPHS=0"));
    }

    #[test]
    fn warm_keys_are_bounded() {
        let mut c = GraphCache::<u32>::new(true);
        for s in 0..MAX_WARM + 5 {
            c.warmed(key(1, s + 1));
        }
        assert_eq!(c.plan(key(1, 1)), Plan::Eager); // forgotten, oldest first
        assert_eq!(c.plan(key(1, MAX_WARM + 5)), Plan::Capture);
    }

    #[test]
    fn the_environment_variable_turns_graphs_off() {
        assert!(graphs_allowed(None));
        assert!(graphs_allowed(Some("1")));
        for v in ["0", "off", "OFF", "false", " 0 ", "no"] {
            assert!(!graphs_allowed(Some(v)), "{v}");
        }
    }
}
