//! The core's memory accounting against the heap a node really holds (issue 4, DESIGN §3
//! guarantee 8). A counting global allocator sees every Rust allocation of this test
//! process; a node's real heap is what dropping it gives back. The simulator runs a
//! scenario to a point, takes the node out, reads its accounting, drops it, and compares.
//!
//! The margin, stated: at every sample the node's real Rust heap is at most the held
//! parts of its accounting, less zstd's own C heap (which the Rust allocator cannot see,
//! taken from `ZSTD_sizeof_*` and checked against the constant the memory plan reserves
//! for it). The accounting's only slack is its `fixed` part: the node's own struct (not on
//! the heap when a driver holds it inline) and 32 KiB (`FIXED_SLACK_BYTES`) for allocator
//! rounding and structures too small to itemise. And the real heap is at least half of
//! the held parts without `fixed`: a part that counted far more than it holds would hide
//! an overrun elsewhere. Measured when this was written: the real heap of a busy edge is
//! 0.76 to 0.93 of its accounting, never above it; an idle gateway holds a few KiB
//! against a `fixed` part of about 33 KiB.
//!
//! One test in this binary: the allocator counts the whole process, so nothing may run
//! beside it.

use outpost_core::resources::{MemoryPart, ZSTD_CONTEXTS_BYTES};
use outpost_sim::{scenario, world::World};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is added.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Sample {
    what: String,
    real: i64,
    accounted: i64,
    fixed: i64,
}

/// Runs `scenario_name` to `at_secs` and measures each of `nodes` there.
fn measure(scenario_name: &str, seed: u64, at_secs: u64, nodes: &[&str], samples: &mut Vec<Sample>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(format!("{scenario_name}.toml"));
    let s = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut w = World::new(&s, seed, None).unwrap_or_else(|e| panic!("{e}"));
    w.run_until(at_secs * 1_000_000_000);
    for name in nodes {
        let node = w.take_node(name).unwrap_or_else(|| panic!("{name} is not running at {at_secs} s"));
        let before = LIVE.load(Ordering::Relaxed);
        let m = node.memory();
        let foreign = node.foreign_heap_bytes();
        assert!(
            foreign <= ZSTD_CONTEXTS_BYTES,
            "zstd holds {foreign} B, more than the {ZSTD_CONTEXTS_BYTES} B planned"
        );
        assert!(m.total() <= node.config().resources.memory_bytes_max, "{m:?}");
        drop(node);
        let real = before - LIVE.load(Ordering::Relaxed);
        let what = format!("{scenario_name} seed {seed} {name} at {at_secs} s (zstd {foreign} B)");
        let fixed = m.get(MemoryPart::Fixed) as i64;
        samples.push(Sample { what, real, accounted: (m.held() - foreign) as i64, fixed });
    }
}

#[test]
fn accounted_memory_matches_the_heap_a_node_really_holds() {
    let mut samples = Vec::new();
    // A Pi Zero with five topics before its outage, and during it with its gateway.
    measure("pi-zero-memory", 1, 600, &["kiosk"], &mut samples);
    measure("pi-zero-memory", 1, 4_000, &["kiosk", "cloud"], &mut samples);
    // A busy ECU on cellular, and its gateway.
    measure("vehicle-offline", 1, 1_800, &["ecu", "cloud"], &mut samples);
    // Just after a crash and restart under a full disk; then catching up after an outage.
    measure("disk-full", 1, 5_117, &["plc"], &mut samples);
    measure("disk-full", 1, 6_400, &["plc", "cloud"], &mut samples);
    let mut failures = Vec::new();
    for s in &samples {
        let ratio = s.real as f64 / s.accounted.max(1) as f64;
        eprintln!("{}: real {} B, accounted {} B, ratio {ratio:.2}", s.what, s.real, s.accounted);
        if s.real > s.accounted || s.real < (s.accounted - s.fixed) / 2 {
            failures.push(format!("{}: real {} B against accounted {} B", s.what, s.real, s.accounted));
        }
    }
    assert!(failures.is_empty(), "outside the margin: {failures:#?}");
}
