//! `CheckpointWriter`: how a node writes a checkpoint file of its own state, for both
//! kinds it keeps (`CheckpointKind`): a gateway's marks (`crate::marks`) and the keyed
//! states (`crate::keyed_checkpoint`). What a checkpoint holds is its caller's; this is
//! the part both share, so that both keep the same promise:
//!
//! Each checkpoint is a new generation, one file: written, synced, and only then are the
//! older generations deleted and the segments it covers deletable (`covered`). Recovery
//! reads the newest generation that decodes: a crash mid-write leaves a torn newest file,
//! and the one before it still covers every segment deleted so far. One checkpoint at a
//! time, so at most two generations are on disk beside the one being written's leftovers.

use crate::effects::{Fx, Owner};
use crate::io::{DiskError, DiskOpId, DiskRequest, DiskResponse, FileId};
use crate::types::{Duration, Instant, Seq, TopicIdx};
use std::collections::BTreeMap;

/// Which checkpoint a writer writes: its files and the owner of its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckpointKind {
    Marks,
    Keyed,
}

impl CheckpointKind {
    fn file(self, generation: u64) -> FileId {
        match self {
            CheckpointKind::Marks => FileId::Marks { generation },
            CheckpointKind::Keyed => FileId::KeyedCheckpoint { generation },
        }
    }

    fn owner(self) -> Owner {
        match self {
            CheckpointKind::Marks => Owner::Marks,
            CheckpointKind::Keyed => Owner::KeyedCheckpoint,
        }
    }
}

/// A checkpoint being written: its generation, append and sync, and what it lets
/// retention delete once durable (per topic, the log offset below which every segment
/// holds only records the checkpoint covers).
#[derive(Debug)]
struct Writing {
    generation: u64,
    append: DiskOpId,
    sync: DiskOpId,
    append_error: Option<DiskError>,
    covers: Vec<(TopicIdx, Seq)>,
}

/// Writes checkpoints of one kind, one at a time, and knows what the last durable one
/// covers.
#[derive(Debug)]
pub(crate) struct CheckpointWriter {
    kind: CheckpointKind,
    generation: u64,
    /// Generations on disk older than the newest durable one, deleted after the next.
    obsolete: Vec<u64>,
    writing: Option<Writing>,
    /// Per topic, the offset below which segments may go (the last durable checkpoint's).
    covered: BTreeMap<TopicIdx, Seq>,
    /// When the last checkpoint was begun.
    written_at: Option<Instant>,
    pub written: u64,
    pub failed: u64,
}

impl CheckpointWriter {
    /// After the generations recovery found: the next checkpoint opens a newer one, and
    /// all of these go once it is durable. `covered`: what the one recovery read covers
    /// (its segments are still on disk, or were deleted behind it).
    pub fn recovered(kind: CheckpointKind, found: &[u64], covered: BTreeMap<TopicIdx, Seq>) -> CheckpointWriter {
        CheckpointWriter {
            kind,
            generation: found.iter().copied().max().unwrap_or(0),
            obsolete: found.to_vec(),
            writing: None,
            covered,
            written_at: None,
            written: 0,
            failed: 0,
        }
    }

    /// Where segments of `topic` may be deleted below.
    pub fn covered(&self, topic: TopicIdx) -> Seq {
        self.covered.get(&topic).copied().unwrap_or(0)
    }

    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Whether `interval` has passed since the last checkpoint began (or there was none).
    pub fn quiet_for(&self, now: Instant, interval: Duration) -> bool {
        self.written_at.is_none_or(|at| now.saturating_since(at) >= interval)
    }

    /// Writes `bytes` (one encoded checkpoint) as a new generation; once it is durable,
    /// segments of each topic below its offset in `covers` may go.
    pub fn write(&mut self, (fx, now): (&mut Fx, Instant), bytes: Vec<u8>, covers: Vec<(TopicIdx, Seq)>) {
        assert!(self.writing.is_none(), "one checkpoint at a time");
        self.generation += 1;
        self.written_at = Some(now);
        let file = self.kind.file(self.generation);
        let append = fx.disk(DiskRequest::Append { file, bytes }, self.kind.owner());
        let sync = fx.disk(DiskRequest::Sync { file }, self.kind.owner());
        let generation = self.generation;
        self.writing = Some(Writing { generation, append, sync, append_error: None, covers });
    }

    /// One of its requests completed. A durable checkpoint moves what is covered and
    /// deletes the older generations; a failed one is deleted (it may be torn) and the
    /// next housekeeping tries again.
    pub fn on_disk(&mut self, fx: &mut Fx, id: DiskOpId, result: Result<DiskResponse, DiskError>) {
        let w = self.writing.as_mut().expect("a checkpoint request completed with no checkpoint in flight");
        if id == w.append {
            w.append_error = result.err();
            return;
        }
        assert_eq!(id, w.sync, "a checkpoint's requests are its append and its sync");
        let w = self.writing.take().expect("checked above");
        match (w.append_error, result) {
            (None, Ok(_)) => {
                self.written += 1;
                for (topic, offset) in w.covers {
                    let c = self.covered.entry(topic).or_default();
                    debug_assert!(offset >= *c, "what a checkpoint covers only grows");
                    *c = (*c).max(offset);
                }
                for generation in self.obsolete.drain(..) {
                    fx.disk(DiskRequest::Delete { file: self.kind.file(generation) }, Owner::Unheeded);
                }
                self.obsolete.push(w.generation);
            }
            _ => {
                self.failed += 1;
                fx.disk(DiskRequest::Delete { file: self.kind.file(w.generation) }, Owner::Unheeded);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Output;

    fn disk_ops(fx: &mut Fx) -> Vec<(DiskOpId, DiskRequest)> {
        fx.out
            .drain(..)
            .filter_map(|o| match o {
                Output::Disk { id, req } => Some((id, req)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn older_generations_go_only_after_a_newer_one_is_durable() {
        let mut fx = Fx::default();
        let mut w = CheckpointWriter::recovered(CheckpointKind::Keyed, &[4, 2], BTreeMap::new());
        w.write((&mut fx, Instant(0)), vec![1, 2, 3], vec![(TopicIdx(0), 500)]);
        let ops = disk_ops(&mut fx);
        assert_eq!(ops.len(), 2);
        assert!(matches!(ops[0].1, DiskRequest::Append { file: FileId::KeyedCheckpoint { generation: 5 }, .. }));
        assert_eq!(w.covered(TopicIdx(0)), 0, "nothing is covered before it is durable");
        for (id, _) in &ops {
            fx.complete(*id);
            w.on_disk(&mut fx, *id, Ok(DiskResponse::Done));
        }
        assert_eq!(w.covered(TopicIdx(0)), 500);
        let deleted: Vec<_> = disk_ops(&mut fx).into_iter().map(|(_, r)| r).collect();
        let gens = [2, 4].map(|generation| DiskRequest::Delete { file: FileId::KeyedCheckpoint { generation } });
        assert!(gens.iter().all(|g| deleted.contains(g)), "{deleted:?}");
        // A failed one is deleted and covers nothing more.
        w.write((&mut fx, Instant(0)), vec![4], vec![(TopicIdx(0), 900)]);
        let ops = disk_ops(&mut fx);
        fx.complete(ops[0].0);
        w.on_disk(&mut fx, ops[0].0, Err(DiskError::NoSpace));
        fx.complete(ops[1].0);
        w.on_disk(&mut fx, ops[1].0, Ok(DiskResponse::Done));
        assert_eq!(w.covered(TopicIdx(0)), 500);
        let deleted: Vec<_> = disk_ops(&mut fx).into_iter().map(|(_, r)| r).collect();
        assert_eq!(deleted, vec![DiskRequest::Delete { file: FileId::KeyedCheckpoint { generation: 6 } }]);
    }

    #[test]
    fn what_recovery_read_stays_covered() {
        let covered = [(TopicIdx(1), 77)].into_iter().collect();
        let w = CheckpointWriter::recovered(CheckpointKind::Marks, &[3], covered);
        assert_eq!((w.covered(TopicIdx(1)), w.covered(TopicIdx(0))), (77, 0));
    }
}
