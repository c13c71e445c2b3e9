//! Valid inputs for every target, from which the committed seed corpora were written
//! (`cargo run -p outpost-fuzz --example seed_corpora`): each reaches deep into its decoder
//! instead of stopping at the first length check.

use outpost_core::codec::{self, encode_batch, Compression, FrameKind, RecordRef};
use outpost_core::hlc::Hlc;
use outpost_core::raft::{wire, Entry, EntryKind, Envelope, Membership, Message, Snapshot};
use outpost_core::sync::proto::{SkipReason, SyncMsg, TopicStatus};
use outpost_core::types::NodeId;

fn records(n: usize, value: &[u8]) -> Vec<(u64, Vec<u8>)> {
    (0..n).map(|i| ((1 << 20) + i as u64, [value, &i.to_le_bytes()].concat())).collect()
}

fn batch_bytes(compression: Compression) -> Vec<u8> {
    let recs = records(20, &[b'x'; 64]);
    let refs: Vec<RecordRef<'_>> = recs
        .iter()
        .enumerate()
        .map(|(i, (h, v))| RecordRef { hlc: Hlc(*h << 16), key: (i % 2 == 0).then_some(b"k".as_slice()), value: v })
        .collect();
    let mut out = Vec::new();
    encode_batch(NodeId(7), 100, &refs, compression, &mut out);
    out
}

/// `(target, seed name, bytes)` for every target.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut v = Vec::new();
    let raw = batch_bytes(Compression::None);
    let zstd = batch_bytes(Compression::Zstd);
    v.push(("batch", "raw", raw.clone()));
    v.push(("batch", "zstd", zstd.clone()));
    let mut log_frame = Vec::new();
    outpost_core::log::encode_log_frame(0, &raw, &mut log_frame);
    v.push(("frame", "log-batch", log_frame.clone()));
    let mut reset = Vec::new();
    codec::encode_frame(FrameKind::SyncReset, &[9; 8], &mut reset);
    v.push(("frame", "reset", reset));
    let mut segment = log_frame;
    outpost_core::log::encode_log_frame(100, &zstd, &mut segment);
    v.push(("log_scan", "two-frames", segment.clone()));
    v.push(("log_scan", "torn", segment[..segment.len() - 7].to_vec()));
    let mut meta = Vec::new();
    outpost_core::meta::encode_record(1_767_225_600_000, &mut meta);
    outpost_core::meta::encode_record(1_767_225_610_000, &mut meta);
    v.push(("meta_bound", "two-bounds", meta));
    let hlc = Hlc(1_767_225_600_000 << 16);
    let msgs = [
        (
            "hello",
            SyncMsg::Hello { origin: NodeId(7), session: 1, hlc, topics: vec!["events".into(), "pos.tx".into()] },
        ),
        (
            "welcome",
            SyncMsg::Welcome {
                session: 1,
                hlc,
                topics: vec![("events".into(), TopicStatus::Accepted, 5), ("x".into(), TopicStatus::UnknownTopic, 0)],
            },
        ),
        ("data", SyncMsg::Data { session: 1, hlc, topic: "events".into(), batches: vec![raw.clone(), zstd] }),
        ("ack", SyncMsg::Ack { session: 1, hlc, topic: "events".into(), next_seq: 120, expected: 120 }),
        ("reset", SyncMsg::Reset { session: 1 }),
        (
            "skip",
            SyncMsg::Skip { session: 1, hlc, topic: "events".into(), from: 3, to: 9, reason: SkipReason::Evicted },
        ),
    ];
    for (name, m) in msgs {
        let mut out = Vec::new();
        m.encode(&mut out);
        v.push(("sync_msg", name, out));
    }
    raft_seeds(&mut v);
    v.push(("config", "edge", include_bytes!("../../config/edge.toml").to_vec()));
    v.push(("config", "gateway", include_bytes!("../../config/gateway.toml").to_vec()));
    v.push(("scenario", "vehicle-offline", include_bytes!("../../scenarios/vehicle-offline.toml").to_vec()));
    v.push(("scenario", "disk-full", include_bytes!("../../scenarios/disk-full.toml").to_vec()));
    v.push((
        "http_request",
        "produce-json-batch",
        b"POST /v1/topics/events/records HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 45\r\n\r\n{\"records\":[{\"value\":\"a\"},{\"value\":{\"b\":1}}]}".to_vec(),
    ));
    v.push((
        "http_request",
        "fetch",
        b"GET /v1/topics/events/records?from=3&max=10&max_bytes=100 HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
    ));
    v.push((
        "http_request",
        "produce-raw-keyed",
        b"POST /v1/topics/a%2Eb/records?key=k HTTP/1.0\r\nOutpost-Key: k2\r\ncontent-length: 3\r\n\r\nabc".to_vec(),
    ));
    use outpost::binproto::{self, Code, Record, Request, Response};
    let reqs = [
        ("produce", Request::Produce { topic: "events".into(), key: Some(b"k".to_vec()), value: b"v".to_vec() }),
        ("fetch", Request::Fetch { topic: "events".into(), from: 3, max_records: 10, max_bytes: 1000 }),
    ];
    for (name, r) in reqs {
        let mut out = Vec::new();
        binproto::encode_request(1, &r, &mut out);
        v.push(("binary_request", name, out[4..].to_vec()));
    }
    let resps = [
        ("acked", Response::Acked { seq: 1, hlc: hlc.0 }),
        ("error", Response::Error { code: Code::Busy, retryable: true, message: "full".into() }),
        (
            "records",
            Response::Records {
                next: 2,
                durable_end: 5,
                records: vec![Record { seq: 1, origin: 7, origin_seq: 1, hlc: hlc.0, key: None, value: b"v".to_vec() }],
            },
        ),
    ];
    for (name, r) in resps {
        let mut out = Vec::new();
        binproto::encode_response(9, &r, &mut out);
        v.push(("binary_response", name, out[4..].to_vec()));
    }
    let mut hello = Vec::new();
    outpost::peer::encode_hello(
        &outpost::peer::PeerHello { name: "kiosk-7".into(), token: "s3cret".into() },
        &mut hello,
    );
    v.push(("peer_handshake", "hello", hello));
    let mut answer = Vec::new();
    outpost::peer::encode_answer(outpost::peer::Verdict::Unauthorized, "gateway", "wrong token", &mut answer);
    v.push(("peer_handshake", "answer", answer));
    recovery_seeds(&mut v);
    v
}

/// Raft messages: an Append with both entry kinds (and a heartbeat-like empty one), and
/// one of every other kind.
fn raft_seeds(v: &mut Vec<(&'static str, &'static str, Vec<u8>)>) {
    let entries = vec![
        Entry { term: 2, index: 8, kind: EntryKind::Command(b"set door=open".to_vec()) },
        Entry { term: 3, index: 9, kind: EntryKind::Noop },
        Entry { term: 3, index: 10, kind: EntryKind::Command(vec![0x80; 130]) },
        Entry {
            term: 3,
            index: 11,
            kind: EntryKind::Membership(Membership {
                voters: [NodeId(1), NodeId(2), NodeId(3)].into(),
                learners: [NodeId(4)].into(),
            }),
        },
    ];
    let msgs = [
        ("append", Message::Append { prev_index: 7, prev_term: 2, entries, commit: 6 }),
        ("append-empty", Message::Append { prev_index: 10, prev_term: 3, entries: vec![], commit: 10 }),
        ("append-resp", Message::AppendResp { accepted: false, index: 7, hint: 5 }),
        ("pre-vote", Message::PreVote { last_index: 10, last_term: 3 }),
        ("vote", Message::Vote { last_index: 10, last_term: 3, transfer: true }),
        ("vote-resp", Message::VoteResp { granted: true }),
        ("heartbeat", Message::Heartbeat { commit: 10, read_seq: 4 }),
        ("timeout-now", Message::TimeoutNow),
        (
            "install-snapshot",
            Message::InstallSnapshot {
                snapshot: Snapshot {
                    index: 9,
                    term: 3,
                    membership: Membership::of_voters([NodeId(1), NodeId(2)]),
                    data: b"door=open".to_vec(),
                },
            },
        ),
    ];
    for (name, msg) in msgs {
        let mut out = Vec::new();
        wire::encode(&Envelope { from: NodeId(1), to: NodeId(2), term: 3, msg }, &mut out);
        v.push(("raft_message", name, out));
    }
}

/// Data directories a node wrote: whole, with a torn tail, with a flipped byte mid-log.
fn recovery_seeds(v: &mut Vec<(&'static str, &'static str, Vec<u8>)>) {
    use crate::recovery::{encode_files, Files, Harness};
    use outpost_core::io::FileId;
    use outpost_core::types::TopicIdx;
    let mut h = Harness::boot(Files::new());
    for i in 0..60u16 {
        let value = format!("reading {i} {}", "x".repeat(i as usize % 40));
        h.produce(TopicIdx(i % 2), value.as_bytes()).expect("an empty node takes records");
    }
    let files = h.files;
    let whole = encode_files(&files).expect("small files");
    let last = *files.keys().rfind(|f| matches!(f, FileId::Segment { .. })).expect("a segment");
    let mut torn = files.clone();
    let t = torn.get_mut(&last).expect("exists");
    t.truncate(t.len() - 5);
    let first = *files.keys().find(|f| matches!(f, FileId::Segment { .. })).expect("a segment");
    let mut flipped = files.clone();
    let f = flipped.get_mut(&first).expect("exists");
    let mid = f.len() / 2;
    f[mid] ^= 0x10;
    v.push(("recovery", "whole", whole));
    v.push(("recovery", "torn", encode_files(&torn).expect("small files")));
    v.push(("recovery", "flipped", encode_files(&flipped).expect("small files")));
}
