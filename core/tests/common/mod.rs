//! What the node tests share: storage in memory.

use outpost_core::io::{DiskError, DiskOpId, DiskRequest, DiskResponse, FileId};
use std::collections::{BTreeMap, VecDeque};

/// Storage that keeps every byte (no crash model): a crash is simulated by the test.
#[derive(Default)]
pub struct MemDisk {
    pub files: BTreeMap<FileId, Vec<u8>>,
    pub queue: VecDeque<(DiskOpId, DiskRequest)>,
}

impl MemDisk {
    pub fn complete_one(&mut self) -> Option<(DiskOpId, DiskRequest, Result<DiskResponse, DiskError>)> {
        let (id, req) = self.queue.pop_front()?;
        let r = match &req {
            DiskRequest::List => {
                Ok(DiskResponse::Listed(self.files.iter().map(|(f, b)| (*f, b.len() as u64)).collect()))
            }
            DiskRequest::Append { file, bytes } => {
                self.files.entry(*file).or_default().extend_from_slice(bytes);
                Ok(DiskResponse::Done)
            }
            DiskRequest::Sync { .. } => Ok(DiskResponse::Done),
            DiskRequest::Delete { file } => {
                self.files.remove(file);
                Ok(DiskResponse::Done)
            }
            DiskRequest::Read { file, offset, len } => {
                let b = &self.files[file];
                let s = (*offset as usize).min(b.len());
                let e = (s + *len as usize).min(b.len());
                Ok(DiskResponse::Read(b[s..e].to_vec()))
            }
            DiskRequest::Truncate { file, len } => {
                self.files.get_mut(file).expect("exists").truncate(*len as usize);
                Ok(DiskResponse::Done)
            }
        };
        Some((id, req, r))
    }
}
