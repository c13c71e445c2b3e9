//! An impostor (issue 19): an edge whose credentials are valid, because the device was
//! stolen or compromised, turns against its gateway. Besides its own traffic it
//!
//! - sends the records of other edges it sees going to that gateway as its own: their
//!   sync `Data`, their values changed by one byte, re-encoded under their origins and
//!   sent in its own session (a forged batch claims another edge's identity); and
//! - replays their frames verbatim, as if from them (a replay on the network).
//!
//! What it may not do is decided by the gateway's core, not by the simulator: a batch
//! naming an origin other than its sender, from a peer that is not a relay, is refused
//! (`Event::BadMessage`); a replayed frame is a duplicate the receiver drops. The checks:
//! the forged values differ from every acknowledged one, so one stored anywhere fails the
//! run as changed content, and a replay stored twice as a duplicate (the `Checker`); the
//! gateway answers the impostor about no stream but its own (`World::watch_impostors`);
//! and an impostor of a scenario file that forged nothing, or was never refused, fails the
//! run, since a check it never met proves nothing (a swarm world's may have met no traffic
//! to forge; the sweep counts what all of them did). Who may connect at all, and under which name, is the
//! shells' TLS and tokens (tests/tls.rs, tests/hardening.rs): the simulated network has no
//! credentials, so a node without any is not modelled here.

use outpost_core::codec::{encode_batch, BatchDecoder, Compression, DecodedBatch, RecordRef};
use outpost_core::sync::proto::SyncMsg;
use std::collections::VecDeque;

/// Frames of other edges kept for the next round, at most.
const CAPTURED_MAX: usize = 16;

/// One impostor's state while its fault lasts.
#[derive(Debug)]
pub struct Impostor {
    /// The compromised edge, and the gateway it attacks (its upstream).
    pub node: usize,
    pub gateway: usize,
    /// Other edges' Data to the gateway, seen on the network: (sender, frame).
    captured: VecDeque<(usize, Vec<u8>)>,
    /// The impostor's own session, from its latest Hello or Data.
    session: Option<u64>,
    /// Whether the run fails if it forged nothing or was never refused.
    pub must_try: bool,
    /// Forged frames and replays sent, and the gateway's refusals of the impostor.
    pub forged: u64,
    pub replayed: u64,
    pub refused: u64,
}

impl Impostor {
    pub fn new(node: usize, gateway: usize, must_try: bool) -> Impostor {
        let captured = VecDeque::new();
        Impostor { node, gateway, captured, session: None, must_try, forged: 0, replayed: 0, refused: 0 }
    }

    /// A frame `from` sent to `to`: the impostor learns its own session, and keeps other
    /// edges' Data to its gateway.
    pub fn observe(&mut self, from: usize, to: usize, bytes: &[u8]) {
        if to != self.gateway {
            return;
        }
        match SyncMsg::decode(bytes) {
            Ok(SyncMsg::Hello { session, .. } | SyncMsg::Data { session, .. }) if from == self.node => {
                self.session = Some(session);
            }
            Ok(SyncMsg::Data { .. }) if from != self.node => {
                if self.captured.len() == CAPTURED_MAX {
                    self.captured.pop_front();
                }
                self.captured.push_back((from, bytes.to_vec()));
            }
            _ => {}
        }
    }

    /// This round's frames, each `(as_node, bytes)`: `as_node` is whom the gateway's
    /// network sees it from. Every captured frame once as a forgery in the impostor's own
    /// session (once it has one) and once replayed as its sender.
    pub fn round(&mut self) -> Vec<(usize, Vec<u8>)> {
        let mut out = Vec::new();
        for (victim, bytes) in std::mem::take(&mut self.captured) {
            if let Some(forged) = self.session.and_then(|s| forge(&bytes, s)) {
                self.forged += 1;
                out.push((self.node, forged));
            }
            self.replayed += 1;
            out.push((victim, bytes));
        }
        out
    }
}

/// A `Data` frame like `bytes`, in session `session`, its batches re-encoded under their
/// own origins and sequences with every value's first byte flipped (an empty value gets
/// one byte): records no producer ever wrote, claiming another edge's identity. `None`
/// for anything else.
pub fn forge(bytes: &[u8], session: u64) -> Option<Vec<u8>> {
    let SyncMsg::Data { hlc, topic, batches, .. } = SyncMsg::decode(bytes).ok()? else { return None };
    let mut dec = BatchDecoder::new();
    let mut forged = Vec::with_capacity(batches.len());
    for b in &batches {
        let batch = DecodedBatch::decode_with(b, &mut dec).ok()?;
        let values: Vec<Vec<u8>> = batch
            .records()
            .map(|r| match r.value.split_first() {
                Some((first, rest)) => [&[first ^ 0x5a][..], rest].concat(),
                None => vec![0x5a],
            })
            .collect();
        let refs: Vec<RecordRef<'_>> =
            batch.records().zip(&values).map(|(r, v)| RecordRef { hlc: r.hlc, key: r.key, value: v }).collect();
        let mut out = Vec::new();
        encode_batch(batch.header.origin, batch.header.base_seq, &refs, Compression::None, &mut out);
        forged.push(out);
    }
    let mut frame = Vec::new();
    SyncMsg::Data { session, hlc, topic, batches: forged }.encode(&mut frame);
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_core::hlc::Hlc;
    use outpost_core::types::NodeId;

    #[test]
    fn a_forgery_keeps_the_identity_and_changes_every_value() {
        let refs = [RecordRef { hlc: Hlc(1 << 16), key: None, value: b"ok" }];
        let mut batch = Vec::new();
        encode_batch(NodeId(3), 40, &refs, Compression::None, &mut batch);
        let mut frame = Vec::new();
        SyncMsg::Data { session: 9, hlc: Hlc(2 << 16), topic: "t".into(), batches: vec![batch] }.encode(&mut frame);
        let forged = forge(&frame, 77).expect("a Data frame");
        let Ok(SyncMsg::Data { session, batches, .. }) = SyncMsg::decode(&forged) else { panic!("not Data") };
        assert_eq!(session, 77);
        let b = DecodedBatch::decode(&batches[0]).expect("a valid batch");
        assert_eq!((b.header.origin, b.header.base_seq), (NodeId(3), 40));
        assert_ne!(b.records().next().expect("one record").value, b"ok");
        let mut imp = Impostor::new(0, 1, true);
        imp.observe(2, 1, &frame);
        assert_eq!(imp.round().len(), 1, "no session of its own yet: a replay only");
        imp.observe(2, 1, &frame);
        imp.observe(0, 1, &forged);
        assert_eq!(imp.round().iter().map(|(from, _)| *from).collect::<Vec<_>>(), vec![0, 2]);
    }
}
