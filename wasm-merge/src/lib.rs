//! Custom merges of keyed topics as WebAssembly modules (docs/KEYED.md, "Custom merges"),
//! for users who cannot recompile the daemon: `conflict = "custom"` with
//! `merge = "notes.wat"` in a topic of `outpost.toml`.
//!
//! A module is run by an interpreter (wasmi) with a fuel budget per call, so a module that
//! loops forever stops with an error instead of hanging the node, and with a memory limit.
//! Each call gets a fresh instance: a module keeps nothing between calls, so it answers from
//! its arguments alone, as every replica must. A module imports nothing and exports:
//!
//! ```text
//! memory                          its linear memory
//! alloc(len: i32) -> i32          room for `len` bytes of input; returns where
//! merge(ptr: i32, len: i32) -> i64
//!     reads the input at ptr..ptr+len; returns (answer_ptr << 32) | answer_len, or a
//!     negative number for "the key answers absent"
//! ```
//!
//! The input, little-endian:
//!
//! ```text
//! key_len u32, key
//! n u32                                   concurrent versions, two or more, in dot order
//! n x { origin u64, seq u64, hlc u64,     the write's dot and hybrid logical clock
//!       flags u8,                         bit 0: written at a gateway; bit 1: a deletion
//!       value_len u32, value }            (a deletion's value is empty)
//! ```
//!
//! `examples/merge/notes.wat` is one: it keeps the longest value, ties by the later dot.

use std::fmt;
use std::path::Path;

use outpost_core::codec::MAX_VALUE_BYTES;
use outpost_core::keyed::{Merge, MergeError, Version};
use wasmi::{Config, Engine, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, TypedFunc};

/// What one call may spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WasmLimits {
    /// Fuel per call (about one unit per instruction).
    pub fuel: u64,
    /// The most the module's memory may grow to, input included.
    pub memory_bytes_max: usize,
}

impl Default for WasmLimits {
    /// 10 million instructions, 4 MiB: two versions of 1 MiB and room to build an answer
    /// of their size. A call then takes up to 9 MiB of the process's memory budget
    /// (`Merge::call_bytes_max`).
    fn default() -> WasmLimits {
        WasmLimits { fuel: 10_000_000, memory_bytes_max: 4 << 20 }
    }
}

/// Why a module cannot be used.
#[derive(Debug)]
pub struct LoadError(String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// A loaded merge module.
pub struct WasmMerge {
    name: String,
    engine: Engine,
    module: Module,
    limits: WasmLimits,
}

impl fmt::Debug for WasmMerge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmMerge").field("name", &self.name).field("limits", &self.limits).finish()
    }
}

impl WasmMerge {
    /// Reads and checks the module at `path` (binary, or the text format).
    pub fn from_file(path: &Path, limits: WasmLimits) -> Result<WasmMerge, LoadError> {
        let bytes = std::fs::read(path)
            .map_err(|e| LoadError(format!("cannot read the merge module {}: {e}", path.display())))?;
        WasmMerge::from_bytes(&path.display().to_string(), &bytes, limits)
    }

    /// Checks module `bytes` (binary, or the text format), named `name` in errors: it must
    /// validate, import nothing, and export `memory`, `alloc` and `merge` of the types above.
    pub fn from_bytes(name: &str, bytes: &[u8], limits: WasmLimits) -> Result<WasmMerge, LoadError> {
        let bad = |what: String| LoadError(format!("merge module {name}: {what}"));
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, bytes).map_err(|e| bad(format!("not a valid WebAssembly module: {e}")))?;
        if let Some(import) = module.imports().next() {
            return Err(bad(format!(
                "imports {}::{}, but a merge runs alone: it may import nothing",
                import.module(),
                import.name()
            )));
        }
        let merge = WasmMerge { name: name.to_string(), engine, module, limits };
        // Instantiating checks the exports' types once, here, rather than at each read.
        let mut store = merge.store();
        merge.instance(&mut store).map_err(|e| bad(e.0))?;
        Ok(merge)
    }

    fn store(&self) -> Store<StoreLimits> {
        let limits = StoreLimitsBuilder::new().memory_size(self.limits.memory_bytes_max).instances(1).build();
        let mut store = Store::new(&self.engine, limits);
        store.limiter(|l| l);
        store.set_fuel(self.limits.fuel).expect("fuel metering is on");
        store
    }

    fn instance(&self, store: &mut Store<StoreLimits>) -> Result<Exports, MergeError> {
        let fail = |what: String| MergeError(what);
        let linker = Linker::<StoreLimits>::new(&self.engine);
        let instance = linker
            .instantiate_and_start(&mut *store, &self.module)
            .map_err(|e| fail(format!("cannot start the module: {e}")))?;
        let memory =
            instance.get_memory(&*store, "memory").ok_or_else(|| fail("exports no memory named \"memory\"".into()))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&*store, "alloc")
            .map_err(|e| fail(format!("exports no alloc(i32) -> i32: {e}")))?;
        let merge = instance
            .get_typed_func::<(i32, i32), i64>(&*store, "merge")
            .map_err(|e| fail(format!("exports no merge(i32, i32) -> i64: {e}")))?;
        Ok(Exports { memory, alloc, merge })
    }
}

/// What a merge module exports, in one instance.
struct Exports {
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    merge: TypedFunc<(i32, i32), i64>,
}

/// The length of one call's input (the layout below).
fn input_len(key: &[u8], versions: &[&Version]) -> usize {
    let version = |v: &&Version| 29 + v.value.as_deref().map_or(0, <[u8]>::len);
    8 + key.len() + versions.iter().map(version).sum::<usize>()
}

/// The input of one call (the layout above).
fn encode_input(key: &[u8], versions: &[&Version]) -> Vec<u8> {
    let len32 = |n: usize| u32::try_from(n).expect("keys and values are far below 4 GiB").to_le_bytes();
    let mut b = Vec::with_capacity(input_len(key, versions));
    b.extend_from_slice(&len32(key.len()));
    b.extend_from_slice(key);
    b.extend_from_slice(&len32(versions.len()));
    for v in versions {
        b.extend_from_slice(&v.dot.origin.0.to_le_bytes());
        b.extend_from_slice(&v.dot.seq.to_le_bytes());
        b.extend_from_slice(&v.hlc.0.to_le_bytes());
        b.push(u8::from(v.cloud) | (u8::from(v.value.is_none()) << 1));
        let value = v.value.as_deref().unwrap_or_default();
        b.extend_from_slice(&len32(value.len()));
        b.extend_from_slice(value);
    }
    b
}

impl Merge for WasmMerge {
    fn merge(&self, key: &[u8], versions: &[&Version]) -> Result<Option<Vec<u8>>, MergeError> {
        let fail = |what: String| MergeError(format!("{}: {what}", self.name));
        let n = input_len(key, versions);
        if n > self.limits.memory_bytes_max {
            return Err(fail(format!("{n} bytes of versions do not fit the module's memory limit (merge_memory_max)")));
        }
        let input = encode_input(key, versions);
        let len = i32::try_from(input.len()).map_err(|_| fail(format!("{} bytes of input", input.len())))?;
        let mut store = self.store();
        let Exports { memory, alloc, merge } = self.instance(&mut store).map_err(|e| fail(e.0))?;
        let ptr = alloc.call(&mut store, len).map_err(|e| fail(format!("alloc({len}) failed: {e}")))?;
        memory
            .write(&mut store, ptr as u32 as usize, &input)
            .map_err(|_| fail(format!("alloc({len}) returned {ptr}, outside its memory")))?;
        let answer = merge.call(&mut store, (ptr, len)).map_err(|e| fail(format!("the call stopped: {e}")))?;
        if answer < 0 {
            return Ok(None);
        }
        let (at, n) = ((answer >> 32) as usize, (answer & 0xffff_ffff) as usize);
        if n > MAX_VALUE_BYTES {
            return Err(fail(format!("answered {n} bytes, more than a value may hold ({MAX_VALUE_BYTES})")));
        }
        let mut value = vec![0; n];
        memory
            .read(&store, at, &mut value)
            .map_err(|_| fail(format!("answered bytes {at}..{} outside its memory", at + n)))?;
        Ok(Some(value))
    }

    /// The module's memory, the input copied into it, and the answer copied out.
    fn call_bytes_max(&self) -> u64 {
        2 * self.limits.memory_bytes_max as u64 + MAX_VALUE_BYTES as u64
    }
}
