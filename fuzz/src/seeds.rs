//! Valid inputs for every target, from which the committed seed corpora were written
//! (`cargo run -p outpost-fuzz --example seed_corpora`): each reaches deep into its decoder
//! instead of stopping at the first length check.

use outpost_core::codec::{self, encode_batch, Compression, FrameKind, RecordRef};
use outpost_core::hlc::Hlc;
use outpost_core::raft::{store, wire, Entry, EntryKind, Envelope, HardState, Membership, Message, Persist, Snapshot};
use outpost_core::site::msg::{Command, SiteMsg, StrongSnapshot, StrongTopic, Write};
use outpost_core::sync::proto::{Refusal, SkipReason, SyncMsg, TopicStatus};
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
    let mut marks = Vec::new();
    let streams =
        [((NodeId(3), outpost_core::types::TopicIdx(0)), 120u64), ((NodeId(9), outpost_core::types::TopicIdx(1)), 7)];
    let subscribers = [((NodeId(4), outpost_core::types::TopicIdx(1)), 33u64)];
    let checkpoint = outpost_core::marks::Checkpoint {
        streams: streams.into_iter().collect(),
        subscribers: subscribers.into_iter().collect(),
    };
    outpost_core::marks::encode_checkpoint(&checkpoint, &mut marks);
    v.push(("marks", "streams-and-subscribers", marks));
    keyed_checkpoint_seeds(&mut v);
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
                batch_raw_max: 4 << 20,
                zone: Some("eu".into()),
            },
        ),
        ("data", SyncMsg::Data { session: 1, hlc, topic: "events".into(), batches: vec![raw.clone(), zstd] }),
        (
            "ack",
            SyncMsg::Ack {
                session: 1,
                hlc,
                topic: "events".into(),
                origin: NodeId(7),
                next_seq: 120,
                expected: 120,
                refused: Refusal::None,
            },
        ),
        (
            "ack-missing",
            SyncMsg::Ack {
                session: 1,
                hlc,
                topic: "events".into(),
                origin: NodeId(7),
                next_seq: 120,
                expected: 130,
                refused: Refusal::Missing { to: 180 },
            },
        ),
        ("reset", SyncMsg::Reset { session: 1 }),
        (
            "skip",
            SyncMsg::Skip {
                session: 1,
                hlc,
                topic: "events".into(),
                origin: NodeId(7),
                from: 3,
                to: 9,
                reason: SkipReason::Evicted,
            },
        ),
    ];
    for (name, m) in msgs {
        let mut out = Vec::new();
        m.encode(&mut out);
        v.push(("sync_msg", name, out));
    }
    raft_seeds(&mut v);
    raft_store_seeds(&mut v);
    site_seeds(&mut v);
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
        "fetch-direction",
        b"GET /v1/topics/orders/records?from=0&direction=down HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
    ));
    v.push((
        "http_request",
        "produce-raw-keyed",
        b"POST /v1/topics/a%2Eb/records?key=k HTTP/1.0\r\nOutpost-Key: k2\r\ncontent-length: 3\r\n\r\nabc".to_vec(),
    ));
    use outpost::binproto::{
        self, Code, FetchRequest, KeyedCall, ReadOption, Record, RecordResult, Request, Response, WriteOp,
    };
    let session = || {
        let mut token = outpost_core::keyed_reads::SessionToken::new("prices");
        token.add(outpost_core::keyed::Dot { origin: NodeId(2), seq: 5 });
        let mut bytes = Vec::new();
        token.encode(&mut bytes);
        bytes
    };
    let reqs = [
        ("produce", Request::Produce { topic: "events".into(), key: Some(b"k".to_vec()), value: b"v".to_vec() }),
        (
            "fetch",
            Request::Fetch(FetchRequest {
                topic: "events".into(),
                way: None,
                from: 3,
                max_records: 10,
                max_bytes: 1000,
            }),
        ),
        (
            "fetch-down",
            Request::Fetch(FetchRequest {
                topic: "orders".into(),
                way: Some(outpost_core::config::Way::Down),
                from: 0,
                max_records: 1,
                max_bytes: 64,
            }),
        ),
        (
            "produce-batch",
            Request::ProduceBatch {
                topic: "events".into(),
                records: vec![(Some(b"k".to_vec()), b"v".to_vec()), (None, Vec::new())],
            },
        ),
        ("auth", Request::Auth { token: "pr0ducer".into() }),
        (
            "keyed-put",
            Request::Keyed {
                topic: "prices".into(),
                call: KeyedCall::Write { key: b"sku-1".to_vec(), op: WriteOp::Put(b"4.99".to_vec()), session: None },
            },
        ),
        (
            "keyed-increment",
            Request::Keyed {
                topic: "stock".into(),
                call: KeyedCall::Write { key: b"sku-1".to_vec(), op: WriteOp::Increment(-3), session: None },
            },
        ),
        (
            "keyed-increment-in-session",
            Request::Keyed {
                topic: "stock".into(),
                call: KeyedCall::Write { key: b"sku-1".to_vec(), op: WriteOp::Increment(-3), session: Some(session()) },
            },
        ),
        (
            "keyed-get",
            Request::Keyed {
                topic: "prices".into(),
                call: KeyedCall::Get { key: b"sku-1".to_vec(), read: ReadOption::Eventual },
            },
        ),
        (
            "keyed-get-causal",
            Request::Keyed {
                topic: "prices".into(),
                call: KeyedCall::Get { key: b"sku-1".to_vec(), read: ReadOption::Causal(session()) },
            },
        ),
        (
            "keyed-get-bounded",
            Request::Keyed {
                topic: "prices".into(),
                call: KeyedCall::Get { key: b"sku-1".to_vec(), read: ReadOption::Bounded { staleness_max_ms: 60_000 } },
            },
        ),
        ("keyed-conflicts", Request::Keyed { topic: "prices".into(), call: KeyedCall::Conflicts { max: 100 } }),
    ];
    for (name, r) in reqs {
        let mut out = Vec::new();
        binproto::encode_request(1, &r, &mut out);
        v.push(("binary_request", name, out[4..].to_vec()));
    }
    let resps = [
        ("acked", Response::Acked { seq: 1, hlc: hlc.0 }),
        ("welcome", Response::Welcome),
        ("answer", Response::Answer(r#"{"found":true,"value":"4.99"}"#.into())),
        ("error", Response::Error { code: Code::Busy, retryable: true, message: "full".into() }),
        (
            "records",
            Response::Records {
                next: 2,
                durable_end: 5,
                records: vec![Record { seq: 1, origin: 7, origin_seq: 1, hlc: hlc.0, key: None, value: b"v".to_vec() }],
            },
        ),
        (
            "results",
            Response::Results(vec![
                RecordResult::Acked { seq: 1, hlc: hlc.0 },
                RecordResult::Refused { code: Code::Busy, retryable: true, message: "full".into() },
                RecordResult::Refused { code: Code::Busy, retryable: true, message: "full".into() },
            ]),
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
    )
    .expect("a valid hello");
    v.push(("peer_handshake", "hello", hello));
    let mut answer = Vec::new();
    outpost::peer::encode_answer(outpost::peer::Verdict::Unauthorized, "gateway", "wrong token", &mut answer);
    v.push(("peer_handshake", "answer", answer));
    let ring = outpost::e2e::Keyring::parse(crate::E2E_KEYS).expect("the target's key file");
    v.push(("e2e_envelope", "sealed", ring.seal(&crate::e2e_context(), b"card 4111, 12.50 EUR")));
    v.push(("e2e_envelope", "keys", crate::E2E_KEYS.as_bytes().to_vec()));
    keyed_op_seeds(&mut v);
    let mut token = outpost_core::keyed_reads::SessionToken::new("prices");
    token.add(outpost_core::keyed::Dot { origin: NodeId(2), seq: 5 });
    token.add(outpost_core::keyed::Dot { origin: NodeId(7), seq: 300 });
    let mut bytes = Vec::new();
    token.encode(&mut bytes);
    v.push(("session_token", "two-origins", bytes));
    let notes = include_str!("../../examples/merge/notes.wat");
    v.push(("merge_module", "notes-wat", notes.as_bytes().to_vec()));
    v.push(("merge_module", "notes-wasm", wat::parse_str(notes).expect("the example is valid WAT")));
    recovery_seeds(&mut v);
    v
}

/// One operation of every kind, with a context and from a gateway; an increment as a
/// gateway's copy of an edge's write.
fn keyed_op_seeds(v: &mut Vec<(&'static str, &'static str, Vec<u8>)>) {
    use outpost_core::keyed::{Counted, Dot, KeyedOp, OpKind, Relayed};
    let context = [Dot { origin: NodeId(1), seq: 7 }, Dot { origin: NodeId(4), seq: 1 << 33 }].into_iter().collect();
    let counted = vec![Counted { origin: NodeId(1), up: 12, down: 3 }];
    for (name, kind) in [
        ("put", OpKind::Put(b"price=4.20".as_slice())),
        ("delete", OpKind::Delete(vec![])),
        ("reset", OpKind::Delete(counted)),
        ("increment", OpKind::Increment(-3)),
        ("max", OpKind::Max(1 << 40)),
        ("add", OpKind::Add(b"sku-1")),
        ("remove", OpKind::Remove(b"sku-1")),
    ] {
        let mut bytes = Vec::new();
        KeyedOp { context: Clone::clone(&context), cloud: name == "put", relayed: None, kind }.encode(&mut bytes);
        v.push(("keyed_op", name, bytes));
    }
    let copy = Relayed { dot: Dot { origin: NodeId(3), seq: 41 }, hlc: outpost_core::hlc::Hlc(1 << 50) };
    let mut bytes = Vec::new();
    KeyedOp { context, cloud: false, relayed: Some(copy), kind: OpKind::Increment(2) }.encode(&mut bytes);
    v.push(("keyed_op", "relayed", bytes));
}

/// A checkpoint of two keyed topics: a counter that went both ways through a top gateway
/// (two halves, copied streams), and a `keep-both` register with siblings and a conflict.
fn keyed_checkpoint_seeds(v: &mut Vec<(&'static str, &'static str, Vec<u8>)>) {
    use outpost_core::config::SyncDirection;
    use outpost_core::keyed::{Dot, KeyedLimits, KeyedOp, KeyedState, OpKind, Strategy, VersionVector, Write};
    use outpost_core::keyed_checkpoint::{encode, StateOut};
    use outpost_core::keyed_reads::Observed;
    let limits = KeyedLimits { state_bytes_max: 1 << 20, conflict_log_bytes_max: 4096 };
    let (mut stock, mut notes) =
        (KeyedState::new(Strategy::Counter, limits), KeyedState::new(Strategy::KeepBoth, limits));
    for (origin, seq) in [(1, 1), (2, 1), (1, 2)] {
        let dot = Dot { origin: NodeId(origin), seq };
        let op = KeyedOp { context: VersionVector::new(), cloud: false, relayed: None, kind: OpKind::Increment(-1) };
        stock.apply(Write { key: b"sku-1", dot, hlc: Hlc(seq << 20), op }).expect("room");
        let op = KeyedOp { context: VersionVector::new(), cloud: origin == 2, relayed: None, kind: OpKind::Put(b"v") };
        notes.apply(Write { key: b"note-7", dot, hlc: Hlc(seq << 20), op }).expect("room");
    }
    let (mut seen, none) = (Observed::default(), Observed::default());
    seen.note(Dot { origin: NodeId(1), seq: 2 }, Hlc(2 << 20));
    seen.note(Dot { origin: NodeId(2), seq: 1 }, Hlc(1 << 20));
    let parts = [
        StateOut {
            name: "stock",
            halves: vec![(SyncDirection::EdgeToCloud, 40), (SyncDirection::CloudToEdge, 12)],
            relayed: vec![(NodeId(1), 2), (NodeId(2), 1)],
            observed: &seen,
            state: &stock,
        },
        StateOut {
            name: "notes",
            halves: vec![(SyncDirection::Local, 3)],
            relayed: vec![],
            observed: &none,
            state: &notes,
        },
    ];
    let mut bytes = Vec::new();
    encode(&parts, &mut bytes);
    v.push(("keyed_checkpoint", "counter-and-siblings", bytes));
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

/// A site's Raft log commands: a keyed write, an unkeyed one, the gateway's marks.
fn site_commands() -> [(&'static str, Command); 3] {
    let write = |origin, key: Option<&[u8]>, value: &[u8]| Write {
        origin: NodeId(origin),
        hlc: Hlc((1_767_225_600_000 << 16) + origin),
        topic: "pay".into(),
        key: key.map(<[u8]>::to_vec),
        value: value.to_vec(),
    };
    [
        ("command-write", Command::Write(write(2, Some(b"till-3"), b"{\"cents\":1250}"))),
        ("command-write-unkeyed", Command::Write(write(3, None, &[0x80; 40]))),
        (
            "command-marks",
            Command::Marks(vec![("pay".into(), 12), ("stock".into(), 0), ("\u{e9}t\u{e9}".into(), u64::MAX)]),
        ),
    ]
}

/// The strong topics' state machine as a snapshot holds it.
fn strong_snapshot() -> StrongSnapshot {
    let hlc = Hlc(1_767_225_600_000 << 16);
    StrongSnapshot {
        topics: vec![
            StrongTopic { name: "pay".into(), next_seq: 10, gateway_mark: 4, last_hlc: hlc },
            StrongTopic { name: "stock".into(), next_seq: 0, gateway_mark: 0, last_hlc: Hlc(0) },
        ],
        keyed: Vec::new(),
    }
}

/// Raft generation files (`raft::store`) of a site member: a fresh one, one with a
/// checkpoint (snapshot and log) and persists after it (a vote, a truncation, appends), the
/// same with a torn tail, one whose checkpoint misses its entries, and the whole file as
/// `raft_store`'s chunks (`[kind][len u16][payload]`, which the target frames itself).
fn raft_store_seeds(v: &mut Vec<(&'static str, &'static str, Vec<u8>)>) {
    let mut fresh = Vec::new();
    store::encode_checkpoint(HardState::default(), &Snapshot::default(), &[], &mut fresh);
    v.push(("raft_store", "fresh", fresh));
    let [(_, write), (_, unkeyed), (_, marks)] = site_commands();
    let snapshot = Snapshot {
        index: 7,
        term: 2,
        membership: Membership::of_voters([NodeId(1), NodeId(2), NodeId(3)]),
        data: strong_snapshot().encode(),
    };
    let log = vec![
        Entry { term: 2, index: 8, kind: EntryKind::Command(write.encode()) },
        Entry { term: 3, index: 9, kind: EntryKind::Noop },
        Entry { term: 3, index: 10, kind: EntryKind::Command(marks.encode()) },
        Entry {
            term: 3,
            index: 11,
            kind: EntryKind::Membership(Membership {
                voters: [NodeId(1), NodeId(2), NodeId(3)].into(),
                learners: [NodeId(4)].into(),
            }),
        },
    ];
    let mut file = Vec::new();
    store::encode_checkpoint(HardState { term: 3, vote: Some(NodeId(2)) }, &snapshot, &log, &mut file);
    let (_, checkpoint_len) = codec::decode_frame(&file).expect("the checkpoint frame");
    let persists = [
        // A new term's vote, its leader's log replacing the uncommitted tail.
        Persist {
            id: 1,
            hard_state: Some(HardState { term: 4, vote: Some(NodeId(3)) }),
            snapshot: None,
            truncate_from: Some(10),
            entries: vec![
                Entry { term: 4, index: 10, kind: EntryKind::Noop },
                Entry { term: 4, index: 11, kind: EntryKind::Command(unkeyed.encode()) },
            ],
        },
        Persist {
            id: 2,
            hard_state: None,
            snapshot: None,
            truncate_from: None,
            entries: vec![Entry { term: 4, index: 12, kind: EntryKind::Command(write.encode()) }],
        },
        Persist {
            id: 3,
            hard_state: Some(HardState { term: 5, vote: None }),
            snapshot: None,
            truncate_from: None,
            entries: vec![],
        },
    ];
    for p in &persists {
        store::encode_persist(p, &mut file);
    }
    let mut chunks = Vec::new();
    let mut rest = file.as_slice();
    while !rest.is_empty() {
        let (frame, used) = codec::decode_frame(rest).expect("a frame the store wrote");
        chunks.push(if frame.kind == FrameKind::RaftCheckpoint { 0 } else { 2 });
        chunks.extend_from_slice(&u16::try_from(frame.payload.len()).expect("a small frame").to_le_bytes());
        chunks.extend_from_slice(frame.payload);
        rest = &rest[used..];
    }
    debug_assert_eq!(crate::raft_store_framed(&chunks), file, "the chunks frame to the file");
    v.push(("raft_store", "incomplete", file[..checkpoint_len].to_vec()));
    v.push(("raft_store", "torn", file[..file.len() - 5].to_vec()));
    v.push(("raft_store", "generation", file));
    v.push(("raft_store", "chunks", chunks));
}

/// Site cluster bytes: every kind of message as a whole frame and as the frame's payload
/// (which the target frames itself), every kind of command, a snapshot.
fn site_seeds(v: &mut Vec<(&'static str, &'static str, Vec<u8>)>) {
    let commands = site_commands();
    let Command::Write(write) = commands[0].1.clone() else { unreachable!("the first command is a write") };
    let entries = vec![
        Entry { term: 3, index: 9, kind: EntryKind::Noop },
        Entry { term: 3, index: 10, kind: EntryKind::Command(commands[0].1.encode()) },
        Entry { term: 3, index: 11, kind: EntryKind::Command(commands[2].1.encode()) },
    ];
    let env = |msg| Envelope { from: NodeId(1), to: NodeId(2), term: 3, msg };
    let msgs = [
        (
            ["raft-append", "frame-raft-append"],
            SiteMsg::Raft(env(Message::Append { prev_index: 8, prev_term: 2, entries, commit: 8 })),
        ),
        (
            ["raft-install-snapshot", "frame-raft-install-snapshot"],
            SiteMsg::Raft(env(Message::InstallSnapshot {
                snapshot: Snapshot {
                    index: 7,
                    term: 2,
                    membership: Membership::of_voters([NodeId(1), NodeId(2), NodeId(3)]),
                    data: strong_snapshot().encode(),
                },
            })),
        ),
        (
            ["raft-heartbeat-resp", "frame-raft-heartbeat-resp"],
            SiteMsg::Raft(env(Message::HeartbeatResp { read_seq: 4 })),
        ),
        (["ping", "frame-ping"], SiteMsg::Ping),
        (["forward", "frame-forward"], SiteMsg::Forward { term: 3, write: write.clone() }),
        // The longest reason (REASON_MAX bytes), in two-byte characters.
        (
            ["forward-refused", "frame-forward-refused"],
            SiteMsg::ForwardRefused { hlc: write.hlc, reason: "\u{e9}".repeat(256) },
        ),
    ];
    for ([payload_name, frame_name], m) in msgs {
        let mut out = Vec::new();
        m.encode(&mut out);
        let (frame, _) = codec::decode_frame(&out).expect("a site frame");
        v.push(("site_msg", payload_name, frame.payload.to_vec()));
        v.push(("site_msg", frame_name, out));
    }
    for (name, c) in commands {
        v.push(("site_msg", name, c.encode()));
    }
    v.push(("site_msg", "snapshot", strong_snapshot().encode()));
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
