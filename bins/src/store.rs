//! A node's storage on a real filesystem: performs the core's [`DiskRequest`]s with
//! `std::fs`, keeping the storage contract of `outpost_core::io` (in order, `Sync` makes
//! appends and a new file's directory entry durable, `NoSpace` means nothing was written).
//!
//! Layout under the data directory:
//! - `topics/{name}/{base:020}.seg`: segments, in a directory named after the topic (not
//!   its index, so a config that reorders topics keeps each topic's files);
//! - `meta/{generation:020}.meta`: the metadata log;
//! - `LOCK`: held (`flock`) while a daemon runs, so two cannot share the directory.
//!
//! Topic directory names are the topic name with every byte outside `[A-Za-z0-9_.-]`, and
//! a leading `.`, written as `%XX`. Directories of topics the config no longer names are
//! left alone (and reported by [`Store::unknown_topic_dirs`]), never deleted.

use crate::config::Settings;
use outpost_core::config::TopicConfig;
use outpost_core::io::{DiskError, DiskRequest, DiskResponse, FileId};
use outpost_core::resources;
use outpost_core::types::Bytes;
use outpost_core::types::TopicIdx;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Open file handles kept at most; the least recently opened is closed beyond it.
const OPEN_FILES_MAX: usize = 64;

/// Why the data directory cannot be used.
#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

pub struct Store {
    dir: PathBuf,
    topic_dirs: Vec<String>,
    by_dir: BTreeMap<String, TopicIdx>,
    open: BTreeMap<FileId, File>,
    opened_order: Vec<FileId>,
    /// Files created since their last `Sync`: the sync must also make their directory
    /// entry durable.
    created: BTreeSet<FileId>,
    _lock: File,
}

/// The directory name of a topic.
pub fn topic_dir_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The directory a topic's segments are in: its name's, and for the half of a `both`
/// topic that comes down, that with `%down` appended (no escaped name has `%` followed by
/// anything but two upper-case hex digits, so it names no other topic).
pub fn stored_topic_dir(t: &TopicConfig) -> String {
    let dir = topic_dir_name(&t.name);
    if t.both_ways && t.sync.goes_down() {
        dir + "%down"
    } else {
        dir
    }
}

fn io_error(path: &Path, e: &io::Error) -> DiskError {
    if e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull {
        DiskError::NoSpace
    } else if e.kind() == io::ErrorKind::NotFound {
        DiskError::NotFound
    } else {
        DiskError::Io(format!("{}: {e}", path.display()))
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// The size of the filesystem holding `dir` (or, before `dir` exists, its nearest
/// existing ancestor), in bytes, as statvfs reports it, less the blocks reserved for root:
/// what the node's files could ever take there.
pub fn device_bytes(dir: &Path) -> io::Result<u64> {
    let mut at = dir;
    while !at.exists() {
        at = match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
    }
    let st = rustix::fs::statvfs(at)?;
    let reserved = st.f_bfree.saturating_sub(st.f_bavail);
    Ok(st.f_blocks.saturating_sub(reserved).saturating_mul(st.f_frsize))
}

/// Fits the storage budget and the segment size of `settings` to the device its data
/// directory is on ([`resources::fit_to_device`]: a budget above the device's size is
/// lowered to it, segments made small enough that several fit), then validates again.
/// Returns warnings to log, one per limit lowered (or why the device's size is unknown);
/// an error when the device is too small for the node's topics.
pub fn fit_to_device(settings: &mut Settings) -> Result<Vec<String>, String> {
    let dir = settings.data_dir.display().to_string();
    let device = match device_bytes(&settings.data_dir) {
        Ok(b) => b,
        Err(e) => {
            return Ok(vec![format!(
                "cannot learn the size of the device holding {dir} (statvfs: {e}); storage limits are not fitted to it"
            )])
        }
    };
    let cfg = &mut settings.node;
    let fit = resources::fit_to_device(cfg, device);
    outpost_core::Node::check_config(cfg).map_err(|e| {
        format!("the device holding {dir} has {}, too small for this node: {}: {}", Bytes(device), e.field, e.message)
    })?;
    let mut warnings = Vec::new();
    if let Some(was) = fit.storage_was {
        warnings.push(format!(
            "resources.max_storage is {} but the device holding {dir} has {}: the storage budget is lowered to that; \
             set max_storage to at most it, or move node.data_dir to a larger device",
            Bytes(was),
            Bytes(device)
        ));
    }
    if let Some(was) = fit.segment_was {
        warnings.push(format!(
            "log.segment lowered from {} to {} so that sixteen segments per topic fit the storage budget of {}: \
             storage is freed a segment at a time once the gateway holds it",
            Bytes(was),
            Bytes(cfg.log.segment_bytes_max),
            Bytes(cfg.resources.storage_bytes_max)
        ));
    }
    Ok(warnings)
}

impl Store {
    /// Opens (creating) the data directory for a node whose topics are `topics`, in
    /// config order, and takes its lock.
    pub fn open(dir: &Path, topics: &[TopicConfig]) -> Result<Store, StoreError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| StoreError(format!("{what} {}: {e}", dir.display()));
        for sub in ["topics", "meta", "raft"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| fail("cannot create the data directory", &e))?;
        }
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| fail("cannot open the lock file in", &e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError(format!(
                    "the data directory {} is in use by another outpost process (its LOCK is held); stop it, or \
                     give this one another node.data_dir",
                    dir.display()
                )))
            }
            Err(fs::TryLockError::Error(e)) => return Err(fail("cannot lock", &e)),
        }
        let mut topic_dirs = Vec::with_capacity(topics.len());
        let mut by_dir = BTreeMap::new();
        for (i, t) in topics.iter().enumerate() {
            let name = &t.name;
            let d = stored_topic_dir(t);
            if d.len() > 255 {
                return Err(StoreError(format!(
                    "topic {name:?} is too long for a directory name once escaped ({} bytes); shorten it",
                    d.len()
                )));
            }
            by_dir.insert(d.clone(), TopicIdx(i as u16));
            topic_dirs.push(d);
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            topic_dirs,
            by_dir,
            open: BTreeMap::new(),
            opened_order: Vec::new(),
            created: BTreeSet::new(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a file.
    pub fn path(&self, file: FileId) -> PathBuf {
        match file {
            FileId::Segment { topic, base } => {
                self.dir.join("topics").join(&self.topic_dirs[topic.0 as usize]).join(format!("{base:020}.seg"))
            }
            FileId::Meta { generation } => self.dir.join("meta").join(format!("{generation:020}.meta")),
            FileId::Raft { generation } => self.dir.join("raft").join(format!("{generation:020}.raft")),
            FileId::Marks { generation } => self.dir.join("marks").join(format!("{generation:020}.marks")),
            FileId::KeyedCheckpoint { generation } => self.dir.join("keyed").join(format!("{generation:020}.keyed")),
        }
    }

    /// Topic directories that no configured topic maps to (kept, not read).
    pub fn unknown_topic_dirs(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.dir.join("topics")) else { return Vec::new() };
        let mut out: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !self.by_dir.contains_key(n))
            .collect();
        out.sort();
        out
    }

    /// Performs one request.
    pub fn perform(&mut self, req: &DiskRequest) -> Result<DiskResponse, DiskError> {
        match req {
            DiskRequest::List => self.list().map(DiskResponse::Listed),
            DiskRequest::Append { file, bytes } => self.append(*file, bytes).map(|()| DiskResponse::Done),
            DiskRequest::Sync { file } => self.sync(*file).map(|()| DiskResponse::Done),
            DiskRequest::Read { file, offset, len } => self.read(*file, *offset, *len).map(DiskResponse::Read),
            DiskRequest::Truncate { file, len } => self.truncate(*file, *len).map(|()| DiskResponse::Done),
            DiskRequest::Delete { file } => self.delete(*file).map(|()| DiskResponse::Done),
        }
    }

    fn list(&mut self) -> Result<Vec<(FileId, u64)>, DiskError> {
        let mut out = Vec::new();
        let listing = |p: &Path| -> Result<Vec<(String, u64)>, DiskError> {
            let rd = match fs::read_dir(p) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_error(p, &e)),
            };
            let mut v = Vec::new();
            for e in rd {
                let e = e.map_err(|e| io_error(p, &e))?;
                let meta = e.metadata().map_err(|err| io_error(&e.path(), &err))?;
                if let (true, Ok(name)) = (meta.is_file(), e.file_name().into_string()) {
                    v.push((name, meta.len()));
                }
            }
            Ok(v)
        };
        let number = |name: &str, ext: &str| name.strip_suffix(ext).filter(|n| n.len() == 20)?.parse::<u64>().ok();
        for (i, d) in self.topic_dirs.iter().enumerate() {
            for (name, len) in listing(&self.dir.join("topics").join(d))? {
                if let Some(base) = number(&name, ".seg") {
                    out.push((FileId::Segment { topic: TopicIdx(i as u16), base }, len));
                }
            }
        }
        for (name, len) in listing(&self.dir.join("meta"))? {
            if let Some(generation) = number(&name, ".meta") {
                out.push((FileId::Meta { generation }, len));
            }
        }
        for (name, len) in listing(&self.dir.join("raft"))? {
            if let Some(generation) = number(&name, ".raft") {
                out.push((FileId::Raft { generation }, len));
            }
        }
        for (name, len) in listing(&self.dir.join("marks"))? {
            if let Some(generation) = number(&name, ".marks") {
                out.push((FileId::Marks { generation }, len));
            }
        }
        for (name, len) in listing(&self.dir.join("keyed"))? {
            if let Some(generation) = number(&name, ".keyed") {
                out.push((FileId::KeyedCheckpoint { generation }, len));
            }
        }
        out.sort();
        Ok(out)
    }

    fn handle(&mut self, file: FileId, create: bool) -> Result<&mut File, DiskError> {
        if !self.open.contains_key(&file) {
            let path = self.path(file);
            let mut opts = OpenOptions::new();
            opts.read(true).append(true);
            if create {
                if let Some(parent) = path.parent() {
                    if !parent.exists() {
                        fs::create_dir_all(parent).map_err(|e| io_error(parent, &e))?;
                        // The new directory's entry lives in its parent (`topics/` for a
                        // topic's, the data directory for `meta/`, `raft/`, `marks/`, `keyed/`), and
                        // `topics/` itself may be new too.
                        for dir in [parent.parent().unwrap_or(&self.dir), &self.dir] {
                            sync_dir(dir).map_err(|e| io_error(dir, &e))?;
                        }
                    }
                }
                if !path.exists() {
                    self.created.insert(file);
                }
                opts.create(true);
            }
            let f = opts.open(&path).map_err(|e| io_error(&path, &e))?;
            if self.open.len() >= OPEN_FILES_MAX {
                let oldest = self.opened_order.remove(0);
                self.open.remove(&oldest);
            }
            self.open.insert(file, f);
            self.opened_order.push(file);
        }
        Ok(self.open.get_mut(&file).expect("just opened"))
    }

    fn forget(&mut self, file: FileId) {
        self.open.remove(&file);
        self.opened_order.retain(|f| *f != file);
    }

    fn append(&mut self, file: FileId, bytes: &[u8]) -> Result<(), DiskError> {
        let path = self.path(file);
        let f = self.handle(file, true)?;
        let before = f.metadata().map_err(|e| io_error(&path, &e))?.len();
        if let Err(e) = f.write_all(bytes) {
            // The contract: a failed append wrote nothing. Take back what got through.
            let _ = f.set_len(before);
            return Err(io_error(&path, &e));
        }
        Ok(())
    }

    fn sync(&mut self, file: FileId) -> Result<(), DiskError> {
        let path = self.path(file);
        let f = self.handle(file, false)?;
        // fdatasync suffices: it makes the data and the file's size durable.
        f.sync_data().map_err(|e| io_error(&path, &e))?;
        if self.created.remove(&file) {
            let parent = path.parent().expect("a file has a directory");
            sync_dir(parent).map_err(|e| io_error(parent, &e))?;
        }
        Ok(())
    }

    fn read(&mut self, file: FileId, offset: u64, len: u32) -> Result<Vec<u8>, DiskError> {
        let path = self.path(file);
        let f = self.handle(file, false)?;
        let mut buf = vec![0u8; len as usize];
        let mut got = 0;
        while got < buf.len() {
            match f.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(&path, &e)),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn truncate(&mut self, file: FileId, len: u64) -> Result<(), DiskError> {
        let path = self.path(file);
        let f = self.handle(file, false)?;
        f.set_len(len).map_err(|e| io_error(&path, &e))?;
        f.sync_all().map_err(|e| io_error(&path, &e))
    }

    fn delete(&mut self, file: FileId) -> Result<(), DiskError> {
        self.forget(file);
        self.created.remove(&file);
        let path = self.path(file);
        fs::remove_file(&path).map_err(|e| io_error(&path, &e))?;
        let parent = path.parent().expect("a file has a directory");
        sync_dir(parent).map_err(|e| io_error(parent, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_become_safe_directory_names() {
        assert_eq!(topic_dir_name("pos.transactions"), "pos.transactions");
        assert_eq!(topic_dir_name("../etc"), "%2E.%2Fetc");
        assert_eq!(topic_dir_name("a b/c"), "a%20b%2Fc");
        assert_eq!(topic_dir_name(".."), "%2E.");
    }

    fn topics(names: &[&str]) -> Vec<TopicConfig> {
        names.iter().map(|n| TopicConfig::new(n, outpost_core::config::SyncDirection::EdgeToCloud)).collect()
    }

    #[test]
    fn the_halves_of_a_both_topic_have_a_directory_each() {
        let mut cfg = outpost_core::config::NodeConfig::new(
            outpost_core::types::NodeId(1),
            outpost_core::config::Role::Gateway,
            vec![TopicConfig::new("orders", outpost_core::config::SyncDirection::Bidirectional)],
        );
        cfg.split_both_ways();
        let dirs: Vec<String> = cfg.topics.iter().map(stored_topic_dir).collect();
        assert_eq!(dirs, ["orders", "orders%down"]);
        // A name that escapes to what a half's directory looks like cannot exist.
        assert_eq!(topic_dir_name("orders%down"), "orders%25down");
    }

    #[test]
    fn the_device_size_is_that_of_the_filesystem_holding_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = device_bytes(dir.path()).expect("statvfs");
        assert!(size > 0);
        let st = rustix::fs::statvfs(dir.path()).expect("statvfs");
        assert!(size <= st.f_blocks * st.f_frsize);
        assert_eq!(device_bytes(&dir.path().join("not/yet/there")).expect("an ancestor"), size);
    }

    #[test]
    fn a_default_config_is_fitted_to_a_small_device_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = crate::config::parse("", None, outpost_core::config::Role::Edge).expect("defaults");
        settings.data_dir = dir.path().to_path_buf();
        let device = device_bytes(dir.path()).expect("statvfs");
        let before = settings.node.clone();
        let warnings = fit_to_device(&mut settings).expect("fits");
        let budget = settings.node.resources.storage_bytes_max;
        assert_eq!(budget, before.resources.storage_bytes_max.min(device));
        assert_eq!(warnings.iter().any(|w| w.contains("resources.max_storage is")), device < (1 << 30), "{warnings:?}");
        assert!(settings.node.log.segment_bytes_max <= (budget / 16).max(64 << 10));
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = topics(&["t"]);
        let _first = Store::open(dir.path(), &names).expect("first");
        let err = Store::open(dir.path(), &names).err().expect("second refused");
        assert!(err.0.contains("in use by another outpost process"), "{err}");
    }

    #[test]
    fn requests_round_trip_through_real_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = topics(&["a", "b/c"]);
        let mut s = Store::open(dir.path(), &names).expect("open");
        let seg = FileId::Segment { topic: TopicIdx(1), base: 42 };
        let meta = FileId::Meta { generation: 3 };
        assert_eq!(
            s.perform(&DiskRequest::Append { file: seg, bytes: b"hello world".to_vec() }),
            Ok(DiskResponse::Done)
        );
        assert_eq!(s.perform(&DiskRequest::Sync { file: seg }), Ok(DiskResponse::Done));
        assert_eq!(s.perform(&DiskRequest::Append { file: meta, bytes: vec![7; 5] }), Ok(DiskResponse::Done));
        assert!(dir.path().join("topics/b%2Fc/00000000000000000042.seg").is_file());
        let listed = s.perform(&DiskRequest::List);
        assert_eq!(listed, Ok(DiskResponse::Listed(vec![(seg, 11), (meta, 5)])));
        let read = s.perform(&DiskRequest::Read { file: seg, offset: 6, len: 100 });
        assert_eq!(read, Ok(DiskResponse::Read(b"world".to_vec())));
        assert_eq!(s.perform(&DiskRequest::Truncate { file: seg, len: 5 }), Ok(DiskResponse::Done));
        assert_eq!(
            s.perform(&DiskRequest::Read { file: seg, offset: 0, len: 100 }),
            Ok(DiskResponse::Read(b"hello".to_vec()))
        );
        // An empty append creates the file, and its sync makes it durable: what a roll of
        // the newest segment relies on.
        let rolled = FileId::Segment { topic: TopicIdx(1), base: 99 };
        assert_eq!(s.perform(&DiskRequest::Append { file: rolled, bytes: Vec::new() }), Ok(DiskResponse::Done));
        assert_eq!(s.perform(&DiskRequest::Sync { file: rolled }), Ok(DiskResponse::Done));
        assert_eq!(fs::metadata(s.path(rolled)).map(|m| m.len()).ok(), Some(0));
        assert_eq!(s.perform(&DiskRequest::Delete { file: rolled }), Ok(DiskResponse::Done));
        assert_eq!(s.perform(&DiskRequest::Delete { file: seg }), Ok(DiskResponse::Done));
        assert_eq!(s.perform(&DiskRequest::Delete { file: seg }), Err(DiskError::NotFound));
        assert_eq!(s.perform(&DiskRequest::Read { file: seg, offset: 0, len: 1 }), Err(DiskError::NotFound));
        drop(s);
        // A topic the config no longer names is kept and reported, not read.
        let s = Store::open(dir.path(), &topics(&["x"])).expect("reopen");
        assert_eq!(s.unknown_topic_dirs(), vec!["b%2Fc".to_string()]);
    }
}
