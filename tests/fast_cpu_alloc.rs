//! The fast path's steady state allocates nothing: once a first pass has sized the arena, later
//! encoder passes of that shape or a smaller one make no heap allocation on any thread. One test in its own binary, so that no other test allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use albert::backend::cpu::fast::FastAlbert;
use albert::bench::random_inputs;
use albert::{Albert, AlbertConfig, DType, Head};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees are passed on as they are.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_encoder_pass_allocates_nothing() {
    let cfg = AlbertConfig {
        num_hidden_layers: 2,
        ..AlbertConfig::base_v2()
    };
    for dtype in [DType::F32, DType::BF16] {
        let fast = FastAlbert::new(Albert::synthetic(cfg.clone(), Head::Model, 1), dtype).unwrap();
        let big = random_inputs(&cfg, 2, 96, 1).unwrap();
        let small = random_inputs(&cfg, 1, 33, 2).unwrap();
        // Inside one `install`: calls from outside the pool go through rayon's injector queue,
        // which allocates a block every 63 calls (rayon's, not ours).
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let made = pool.install(|| {
            // The first passes size the arena and let rayon make its one-time allocations.
            fast.encode_only(&big).unwrap();
            fast.encode_only(&small).unwrap();
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            for _ in 0..3 {
                fast.encode_only(&big).unwrap();
                fast.encode_only(&small).unwrap();
            }
            ALLOCATIONS.load(Ordering::SeqCst) - before
        });
        assert_eq!(
            made, 0,
            "{dtype}: {made} allocations in steady-state passes"
        );
    }
}
