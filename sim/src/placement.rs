//! Guarantee 7 at every send: a frame that carries records of a classified topic goes only
//! to a node whose zone the topic's placement allows.
//!
//! The check reads the frame as it crosses the simulated network, with the core's decoders
//! but none of its routing: what a sync `Data` message names, and the strong writes a site
//! member forwards or replicates (`Forward`, and the commands of Raft `Append` entries).
//! Whatever path a record takes (sync up, relay tiers, down to edges, a site cluster), the
//! zones of the receiving node are the scenario's, not the node's own idea of them.

use outpost_core::raft::{EntryKind, Message};
use outpost_core::site::msg::{Command, SiteMsg};
use outpost_core::sync::proto::SyncMsg;

/// The topics whose records `bytes` (one frame) carries, by name; empty for anything
/// else (answers, hellos, pings, frames that do not decode).
pub fn topics_carried(bytes: &[u8]) -> Vec<String> {
    if let Ok(SyncMsg::Data { topic, batches, .. }) = SyncMsg::decode(bytes) {
        return if batches.is_empty() { Vec::new() } else { vec![topic] };
    }
    match SiteMsg::decode(bytes) {
        Ok(SiteMsg::Forward { write, .. }) => vec![write.topic],
        Ok(SiteMsg::Raft(env)) => match env.msg {
            Message::Append { entries, .. } => entries
                .into_iter()
                .filter_map(|e| match e.kind {
                    EntryKind::Command(data) => match Command::decode(&data) {
                        Ok(Command::Write(w)) => Some(w.topic),
                        _ => None,
                    },
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_core::hlc::Hlc;
    use outpost_core::site::msg::Write;
    use outpost_core::types::NodeId;

    #[test]
    fn data_and_forwarded_writes_name_their_topics_and_answers_name_none() {
        let mut data = Vec::new();
        let msg = SyncMsg::Data { session: 1, hlc: Hlc(1), topic: "patients".into(), batches: vec![vec![1, 2]] };
        msg.encode(&mut data);
        assert_eq!(topics_carried(&data), vec!["patients".to_string()]);
        let mut empty = Vec::new();
        SyncMsg::Data { session: 1, hlc: Hlc(1), topic: "patients".into(), batches: vec![] }.encode(&mut empty);
        assert!(topics_carried(&empty).is_empty());
        let mut reset = Vec::new();
        SyncMsg::Reset { session: 1 }.encode(&mut reset);
        assert!(topics_carried(&reset).is_empty());
        let write = Write { origin: NodeId(1), hlc: Hlc(2), topic: "vitals".into(), key: None, value: vec![9] };
        let mut forward = Vec::new();
        SiteMsg::Forward { term: 3, write }.encode(&mut forward);
        assert_eq!(topics_carried(&forward), vec!["vitals".to_string()]);
    }
}
