//! The metadata log: small CRC'd records appended to `FileId::Meta` files. Today it holds
//! the HLC's persisted upper bound, the one fact a device without a real-time clock must
//! remember across a reboot to 1970.
//!
//! Rotation: when the current file passes [`META_FILE_BYTES_MAX`], the next record opens
//! generation + 1, and the old file is deleted only after the new record is durable.
//! Recovery reads every meta file and keeps the largest bound of any valid record, so a
//! crash at any point of a rotation loses nothing.

use crate::codec::{self, FrameKind};
use crate::io::FileId;

/// A meta file is rotated past this many bytes.
pub const META_FILE_BYTES_MAX: u64 = 64 << 10;
const META_VERSION: u8 = 1;
const META_RECORD_LEN: usize = 9;

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
        if frame.kind != FrameKind::Meta
            || frame.payload.len() != META_RECORD_LEN
            || frame.payload[0] != META_VERSION
        {
            break;
        }
        let bound = u64::from_le_bytes(frame.payload[1..9].try_into().expect("9-byte payload"));
        best = Some(best.map_or(bound, |b: u64| b.max(bound)));
        at += used;
    }
    best
}

/// Where the next meta record goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaLog {
    generation: u64,
    len: u64,
}

/// The disk steps of one meta write: append, sync, then maybe delete the previous file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaWrite {
    pub file: FileId,
    pub bytes: Vec<u8>,
    pub delete_after: Option<FileId>,
}

impl MetaLog {
    /// Continues after the newest generation found at recovery (with its length).
    pub fn recovered(newest: Option<(u64, u64)>) -> MetaLog {
        match newest {
            Some((generation, len)) => MetaLog { generation, len },
            None => MetaLog {
                generation: 0,
                len: META_FILE_BYTES_MAX,
            },
        }
    }

    /// Plans the write of `hlc_bound_ms`, rotating if the file is full.
    pub fn write(&mut self, hlc_bound_ms: u64) -> MetaWrite {
        let mut bytes = Vec::with_capacity(codec::FRAME_HEADER_LEN + META_RECORD_LEN);
        encode_record(hlc_bound_ms, &mut bytes);
        let mut delete_after = None;
        if self.len + bytes.len() as u64 > META_FILE_BYTES_MAX {
            if self.len < META_FILE_BYTES_MAX || self.generation > 0 {
                delete_after = Some(FileId::Meta {
                    generation: self.generation,
                });
            }
            self.generation += 1;
            self.len = 0;
        }
        self.len += bytes.len() as u64;
        MetaWrite {
            file: FileId::Meta {
                generation: self.generation,
            },
            bytes,
            delete_after,
        }
    }

    /// A write failed: the file may hold a torn record, so the next write starts a new file.
    pub fn write_failed(&mut self) {
        self.len = META_FILE_BYTES_MAX;
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
    fn rotation_deletes_the_old_generation_after_the_new_one_is_written() {
        let mut m = MetaLog::recovered(None);
        let w = m.write(1);
        assert_eq!(w.file, FileId::Meta { generation: 1 });
        assert_eq!(w.delete_after, None);
        let mut last = w;
        let mut writes = 1;
        while last.delete_after.is_none() {
            last = m.write(writes);
            writes += 1;
        }
        assert_eq!(last.file, FileId::Meta { generation: 2 });
        assert_eq!(last.delete_after, Some(FileId::Meta { generation: 1 }));
        assert!(writes as u64 * 21 > META_FILE_BYTES_MAX);
    }
}
