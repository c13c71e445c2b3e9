//! The real heap of each simulated node, measured inside every run (DESIGN §3, guarantee
//! 8; issue 15): a global allocator that tags every allocation with its owner, so that
//! the world can compare, after every step of a node, the Rust heap the node holds with
//! what the node accounts for ([`crate::world`] reports it as `bounded-resources`).
//!
//! - **Owner**: the allocation's owner is the node whose code was running when it was
//!   made ([`Scope`], entered by the world around `Node::new`, `Node::handle` and
//!   `Node::handle_timeout`), or the simulator (owner 0, never counted). The tag sits in
//!   a 16-byte header before the block, so a block freed anywhere, later, by anyone, is
//!   taken off its owner's count. What the simulator hands a node and the node may keep
//!   (a produce's key and value, a message, a read's bytes) is [`adopt`]ed by the node
//!   first; what a node hands the driver to hold (an append's bytes, accounted by the
//!   node as `Writes`, not held) is given back to the simulator ([`adopt`] to owner 0).
//!   Messages a node sends are copied by the simulator's network and freed in the step.
//! - **Deterministic**: counts are sums of allocation sizes, which depend only on the
//!   program and its inputs, never on addresses or timing; each thread has its own counts
//!   (a run is one thread), and each world its own epoch, so blocks of an earlier world
//!   freed later count nowhere.
//! - **Off unless installed**: the `outpost-sim` binary installs it as its global
//!   allocator and calls [`install`]; in tests and other binaries [`installed`] is false
//!   and the world measures nothing (counting there would read headers that do not exist).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Owners a world can have counted (the simulator, then nodes 1..): nodes past it are not
/// measured.
pub const OWNERS_MAX: usize = 64;
const HEADER: usize = 16;

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static OWNER: Cell<u32> = const { Cell::new(0) };
    static EPOCH: Cell<u32> = const { Cell::new(0) };
    static LIVE: [Cell<i64>; OWNERS_MAX] = const { [const { Cell::new(0) }; OWNERS_MAX] };
}

/// The allocator: `System`, with an owner's tag before every block.
pub struct TaggingAllocator;

fn padded(layout: Layout) -> Option<(Layout, usize)> {
    let offset = HEADER.max(layout.align());
    let size = layout.size().checked_add(offset)?;
    Layout::from_size_align(size, layout.align().max(HEADER)).ok().map(|l| (l, offset))
}

fn tag_now() -> u64 {
    (u64::from(EPOCH.with(Cell::get)) << 32) | u64::from(OWNER.with(Cell::get))
}

/// Adds `bytes` to the count of the owner `tag` names, if it is of this world.
fn count(tag: u64, bytes: i64) {
    let owner = (tag & 0xffff_ffff) as usize;
    if owner == 0 || owner >= OWNERS_MAX || (tag >> 32) as u32 != EPOCH.with(Cell::get) {
        return;
    }
    LIVE.with(|l| l[owner].set(l[owner].get() + bytes));
}

// SAFETY: every block is a `System` block of the padded layout; the pointer handed out is
// `offset` bytes in (a multiple of the alignment asked for, at least 16), and the header
// (size, tag) is the 16 bytes just before it, inside the block.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for TaggingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((padded, offset)) = padded(layout) else { return std::ptr::null_mut() };
        let base = unsafe { System.alloc(padded) };
        if base.is_null() {
            return base;
        }
        let tag = tag_now();
        unsafe {
            let p = base.add(offset);
            (p.sub(HEADER) as *mut u64).write(layout.size() as u64);
            (p.sub(8) as *mut u64).write(tag);
            count(tag, layout.size() as i64);
            p
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let (padded, offset) = padded(layout).expect("allocated with this layout");
        unsafe {
            let tag = (ptr.sub(8) as *const u64).read();
            count(tag, -(layout.size() as i64));
            System.dealloc(ptr.sub(offset), padded);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (padded, offset) = padded(layout).expect("allocated with this layout");
        let Some(new_total) = new_size.checked_add(offset) else { return std::ptr::null_mut() };
        unsafe {
            let tag = (ptr.sub(8) as *const u64).read();
            let base = System.realloc(ptr.sub(offset), padded, new_total);
            if base.is_null() {
                return base;
            }
            let p = base.add(offset);
            (p.sub(HEADER) as *mut u64).write(new_size as u64);
            // The block keeps its owner, wherever it grows.
            count(tag, new_size as i64 - layout.size() as i64);
            p
        }
    }
}

/// Says that [`TaggingAllocator`] is this process's global allocator (call it first
/// thing in `main`): the world measures nodes only then.
pub fn install() {
    INSTALLED.store(true, Ordering::Relaxed);
}

pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// A new world on this thread: counts start from zero, and blocks of earlier worlds
/// count nowhere.
pub fn new_world() {
    EPOCH.with(|e| e.set(e.get().wrapping_add(1)));
    LIVE.with(|l| l.iter().for_each(|c| c.set(0)));
}

/// The owner number of node `i` (0, the simulator, if it cannot be counted).
pub fn owner_of(i: usize) -> u32 {
    if i + 1 < OWNERS_MAX {
        i as u32 + 1
    } else {
        0
    }
}

/// Bytes owner `owner` holds now, on this thread, in this world.
pub fn live(owner: u32) -> i64 {
    LIVE.with(|l| l.get(owner as usize).map_or(0, Cell::get))
}

/// While alive, allocations on this thread belong to an owner.
pub struct Scope {
    previous: u32,
}

impl Scope {
    pub fn enter(owner: u32) -> Scope {
        Scope { previous: OWNER.with(|o| o.replace(owner)) }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        OWNER.with(|o| o.set(self.previous));
    }
}

/// Makes `owner` the owner of `v`'s heap block (if it has one): for buffers that move
/// between the simulator and a node.
pub fn adopt<T>(v: &Vec<T>, owner: u32) {
    if !installed() || v.capacity() == 0 || std::mem::size_of::<T>() == 0 {
        return;
    }
    let p = v.as_ptr() as *mut u8;
    // SAFETY: a `Vec` with capacity holds a block of the global allocator, which is the
    // tagging one (`installed`); its header is the 16 bytes before the pointer.
    #[allow(unsafe_code)]
    unsafe {
        let size = (p.sub(HEADER) as *const u64).read() as i64;
        let old = (p.sub(8) as *const u64).read();
        count(old, -size);
        let new = (u64::from(EPOCH.with(Cell::get)) << 32) | u64::from(owner);
        (p.sub(8) as *mut u64).write(new);
        count(new, size);
    }
}

/// Whether a node's real heap is within what it accounts as held: `real` (bytes it owns,
/// see the module docs) at most `held` (the held parts of `Node::memory`, less zstd's C
/// heap, which the allocator cannot see). The accounting's slack is its own `fixed` part
/// (see `sim/tests/memory.rs` for the margin and what was measured). Returns the problem.
pub fn check(real: i64, held: u64) -> Option<String> {
    (real > held as i64)
        .then(|| format!("real heap {real} B is above the {held} B its accounting holds (by {} B)", real - held as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heap_above_the_accounting_is_a_violation() {
        assert_eq!(check(1000, 1000), None);
        assert_eq!(check(0, 10), None);
        let v = check(70_000, 40_000).expect("30 000 B unaccounted");
        assert!(v.contains("real heap 70000 B is above the 40000 B its accounting holds (by 30000 B)"), "{v}");
    }

    #[test]
    fn uninstalled_it_measures_nothing() {
        assert!(!installed());
        let v = vec![1u8; 100];
        adopt(&v, 3);
        assert_eq!(live(3), 0);
    }
}
