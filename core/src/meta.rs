//! The metadata log: small CRC'd records appended to `FileId::Meta` files. Today it holds
//! the HLC's persisted upper bound, the one fact a device without a real-time clock must
//! remember across a reboot to 1970.
//!
//! Rotation: when the current file passes [`META_FILE_BYTES_MAX`], the next record opens
//! generation + 1, and the old file is deleted only after the new record is durable.
//! Recovery reads every meta file and keeps the largest bound of any valid record, so a
//! crash at any point of a rotation loses nothing.

use crate::codec::{self, FrameKind};
use crate::effects::{Fx, Owner};
use crate::hlc::HlcClock;
use crate::io::{DiskError, DiskOpId, DiskRequest, DiskResponse, FileId};
use crate::memory::{MemoryPart, MemoryUsage};

/// A meta file is rotated past this many bytes.
pub const META_FILE_BYTES_MAX: u64 = 64 << 10;
const META_VERSION: u8 = 1;
const META_RECORD_LEN: usize = 9;
/// Bytes one bound record takes in a meta file.
pub const META_RECORD_BYTES: u64 = (codec::FRAME_HEADER_LEN + META_RECORD_LEN) as u64;

/// Appends one meta record frame holding `hlc_bound_ms`.
pub fn encode_record(hlc_bound_ms: u64, out: &mut Vec<u8>) {
    let start = codec::begin_frame(FrameKind::Meta, out);
    out.push(META_VERSION);
    out.extend_from_slice(&hlc_bound_ms.to_le_bytes());
    codec::finish_frame(start, out);
}

/// The largest HLC bound among the valid records at the start of `buf`; decoding stops at
/// the first invalid or torn frame, which can only be the tail of the newest write.
pub fn read_bound(buf: &[u8]) -> Option<u64> {
    let mut at = 0;
    let mut best = None;
    while at < buf.len() {
        let Ok((frame, used)) = codec::decode_frame(&buf[at..]) else {
            break;
        };
        if frame.kind != FrameKind::Meta || frame.payload.len() != META_RECORD_LEN || frame.payload[0] != META_VERSION {
            break;
        }
        let bound = u64::from_le_bytes(frame.payload[1..9].try_into().expect("9-byte payload"));
        best = Some(best.map_or(bound, |b: u64| b.max(bound)));
        at += used;
    }
    best
}

/// Where the next meta record goes, and which older files may go once it is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaLog {
    generation: u64,
    len: u64,
    /// Older generations, deleted only after a record of `generation` is durable: deleting
    /// them earlier could leave no valid bound at all if the new write fails.
    obsolete: Vec<u64>,
}

/// The disk steps of one meta write: append, then sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaWrite {
    pub file: FileId,
    pub bytes: Vec<u8>,
}

impl MetaLog {
    /// Starts after the generations found at recovery. The next record always opens a new
    /// generation: the newest file may end in a torn record, and `read_bound` stops there,
    /// so anything appended after it would be invisible to the next recovery.
    pub fn recovered(found: &[u64]) -> MetaLog {
        let generation = found.iter().copied().max().unwrap_or(0);
        MetaLog { generation, len: META_FILE_BYTES_MAX, obsolete: found.to_vec() }
    }

    /// Plans the write of `hlc_bound_ms`, rotating if the file is full.
    pub fn write(&mut self, hlc_bound_ms: u64) -> MetaWrite {
        let mut bytes = Vec::with_capacity(codec::FRAME_HEADER_LEN + META_RECORD_LEN);
        encode_record(hlc_bound_ms, &mut bytes);
        if self.len + bytes.len() as u64 > META_FILE_BYTES_MAX {
            if self.generation > 0 && !self.obsolete.contains(&self.generation) {
                self.obsolete.push(self.generation);
            }
            self.generation += 1;
            self.len = 0;
        }
        self.len += bytes.len() as u64;
        MetaWrite { file: FileId::Meta { generation: self.generation }, bytes }
    }

    /// The last write is durable: the older files it supersedes may be deleted now.
    pub fn written(&mut self) -> Vec<FileId> {
        self.obsolete.drain(..).map(|generation| FileId::Meta { generation }).collect()
    }

    /// A write failed. If storage may hold part of it (anything but an append refused for
    /// space, which writes nothing), the next write starts a new file after the torn one.
    pub fn write_failed(&mut self, nothing_written: bool) {
        self.len =
            if nothing_written { self.len.saturating_sub(META_RECORD_LEN as u64 + 12) } else { META_FILE_BYTES_MAX };
    }
}

/// Persists the clock's upper bound: one meta write (append, then sync) at a time, when
/// the clock asks for one (`HlcClock::bound_to_persist`); tells the clock when it is
/// durable or failed.
#[derive(Debug)]
pub(crate) struct BoundWriter {
    log: MetaLog,
    /// The write in flight: its append, its sync, and the bound it makes durable.
    in_flight: Option<(DiskOpId, DiskOpId, u64)>,
    append_error: Option<DiskError>,
}

impl BoundWriter {
    /// Its planned memory: a record being written, and the rotation's (memory part
    /// `Writes`, at most two meta files).
    pub fn planned() -> MemoryUsage {
        let mut m = MemoryUsage::default();
        m.set(MemoryPart::Writes, 2 * META_FILE_BYTES_MAX);
        m
    }

    /// After the generations recovery found.
    pub fn recovered(found: &[u64]) -> BoundWriter {
        BoundWriter { log: MetaLog::recovered(found), in_flight: None, append_error: None }
    }

    /// Starts a write if the clock asks for a bound and none is in flight.
    pub fn persist(&mut self, fx: &mut Fx, hlc: &mut HlcClock, wall_ms: u64) {
        if self.in_flight.is_some() {
            return;
        }
        let Some(bound) = hlc.bound_to_persist(wall_ms) else {
            return;
        };
        let w = self.log.write(bound);
        let append = fx.disk(DiskRequest::Append { file: w.file, bytes: w.bytes }, Owner::Clock);
        let sync = fx.disk(DiskRequest::Sync { file: w.file }, Owner::Clock);
        self.in_flight = Some((append, sync, bound));
    }

    /// One of its requests completed. True when storage had no space for the bound: no
    /// timestamp can be issued until a bound is durable, so the node frees what it can.
    pub fn on_disk(
        &mut self,
        fx: &mut Fx,
        hlc: &mut HlcClock,
        id: DiskOpId,
        result: Result<DiskResponse, DiskError>,
    ) -> bool {
        let (append, sync, bound) = self.in_flight.expect("a meta request completed with no write in flight");
        if id == append {
            self.append_error = result.err();
            return false;
        }
        assert_eq!(id, sync, "the meta write's requests are its append and its sync");
        self.in_flight = None;
        match (self.append_error.take(), result) {
            (None, Ok(_)) => {
                hlc.bound_persisted(bound);
                for file in self.log.written() {
                    fx.disk(DiskRequest::Delete { file }, Owner::Unheeded);
                }
                false
            }
            (append, _) => {
                hlc.bound_persist_failed();
                let no_space = append == Some(DiskError::NoSpace);
                self.log.write_failed(no_space);
                no_space
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_valid_bound_wins_and_torn_tail_is_ignored() {
        let mut buf = Vec::new();
        encode_record(10, &mut buf);
        encode_record(30, &mut buf);
        encode_record(20, &mut buf);
        let mut torn = Vec::new();
        encode_record(99, &mut torn);
        buf.extend_from_slice(&torn[..torn.len() - 1]);
        assert_eq!(read_bound(&buf), Some(30));
        assert_eq!(read_bound(&[]), None);
        assert_eq!(read_bound(&[0xff; 40]), None);
    }

    #[test]
    fn old_generations_go_only_after_a_durable_write_in_the_new_one() {
        let mut m = MetaLog::recovered(&[3, 4]);
        let w = m.write(1);
        assert_eq!(w.file, FileId::Meta { generation: 5 }, "recovery always opens a new file");
        m.write_failed(false);
        let w = m.write(2);
        assert_eq!(w.file, FileId::Meta { generation: 6 }, "a possibly torn file is not appended to");
        assert_eq!(
            m.written(),
            vec![FileId::Meta { generation: 3 }, FileId::Meta { generation: 4 }, FileId::Meta { generation: 5 }]
        );
        assert_eq!(m.written(), vec![]);
        let w = m.write(3);
        assert_eq!(w.file, FileId::Meta { generation: 6 });
    }

    #[test]
    fn refused_append_is_retried_in_the_same_file() {
        let mut m = MetaLog::recovered(&[]);
        let w = m.write(1);
        m.write_failed(true);
        assert_eq!(m.write(2).file, w.file);
    }

    #[test]
    fn rotation_when_full() {
        let mut m = MetaLog::recovered(&[]);
        let first = m.write(0).file;
        assert_eq!(first, FileId::Meta { generation: 1 });
        let mut writes = 1u64;
        while m.write(writes).file == first {
            writes += 1;
        }
        assert!(writes * 21 > META_FILE_BYTES_MAX - 21);
        assert_eq!(m.written(), vec![first]);
    }
}
