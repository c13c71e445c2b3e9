//! The body of every fuzz target: one function per decoder of bytes from disk or the
//! network (engineering rule 5). Each must never panic on any input, and checks more where
//! it can: what decodes re-encodes to the same bytes or value, what recovery keeps has a
//! valid checksum. `fuzz_targets/*.rs` hand libFuzzer's inputs to these, and
//! `tests/corpora.rs` replays every committed corpus through them in `cargo test`.

pub mod recovery;
pub mod seeds;

use outpost_core::codec::{
    self, BatchDecoder, BatchEncoder, BatchHeader, Compression, DecodedBatch, FrameKind, RecordRef, MAX_FRAME_PAYLOAD,
};
use outpost_core::config::Role;
use outpost_core::raft::store::{self, Recovered};
use outpost_core::raft::{wire, EntryKind, Membership, Message, Raft, RaftConfig, Restored};
use outpost_core::site::msg::{Command, SiteMsg, StrongSnapshot};
use outpost_core::sync::proto::SyncMsg;
use outpost_core::types::{Instant, NodeId};

/// A target's body: must not panic on any input.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz_targets/NAME.rs` and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame", frame),
    ("batch", batch),
    ("sync_msg", sync_msg),
    ("raft_message", raft_message),
    ("raft_store", raft_store),
    ("site_msg", site_msg),
    ("log_scan", log_scan),
    ("recovery", recovery::recovery),
    ("meta_bound", meta_bound),
    ("marks", marks),
    ("keyed_checkpoint", keyed_checkpoint),
    ("config", config),
    ("scenario", scenario),
    ("http_request", http_request),
    ("binary_request", binary_request),
    ("binary_response", binary_response),
    ("peer_handshake", peer_handshake),
    ("e2e_envelope", e2e_envelope),
    ("keyed_op", keyed_op),
    ("session_token", session_token),
    ("merge_module", merge_module),
];

/// A frame: decodes, and re-encodes to the same bytes.
pub fn frame(data: &[u8]) {
    if let Ok((f, used)) = codec::decode_frame(data) {
        let mut again = Vec::new();
        codec::encode_frame(f.kind, f.payload, &mut again);
        assert_eq!(again, data[..used], "a decoded frame re-encodes to its bytes");
    }
}

/// A record batch (compressed or not): decodes, its records re-encode to a batch that
/// decodes to the same records.
pub fn batch(data: &[u8]) {
    let Ok(b) = DecodedBatch::decode_with(data, &mut BatchDecoder::new()) else { return };
    let records: Vec<RecordRef<'_>> = b.records().collect();
    assert_eq!(records.len(), b.header.count as usize, "the count the header promised");
    for compression in [Compression::None, Compression::Zstd] {
        let mut out = Vec::new();
        BatchEncoder::new().encode(b.header.origin, b.header.base_seq, &records, compression, &mut out);
        let again = DecodedBatch::decode(&out).expect("a batch the encoder wrote decodes");
        assert_eq!((again.header.origin, again.header.base_seq), (b.header.origin, b.header.base_seq));
        assert!(again.records().eq(records.iter().copied()), "the same records after a round trip");
    }
}

/// A sync message: decodes, and re-encodes to bytes that decode to the same message.
pub fn sync_msg(data: &[u8]) {
    if let Ok(m) = SyncMsg::decode(data) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(SyncMsg::decode(&out).as_ref(), Ok(&m), "a decoded message round-trips");
    }
}

/// A Raft message (`raft::wire`): decodes, and re-encodes to the same bytes (the encoding
/// is canonical: one encoding per message, and the decoder accepts no other).
pub fn raft_message(data: &[u8]) {
    if let Ok(env) = wire::decode(data) {
        let mut out = Vec::new();
        wire::encode(&env, &mut out);
        assert_eq!(out, data, "a decoded raft message re-encodes to its bytes");
    }
}

/// A Raft generation file (`raft::store`): `replay` never panics; what it returns starts a
/// member (`Raft::new` asserts on stored state), is what replaying its valid prefix gives,
/// and checkpoints to bytes that replay to the same state.
///
/// Each input is tried twice: as the file's bytes, and read as `[kind u8][len u16 LE][len
/// bytes]...` chunks each wrapped in a frame with a valid checksum (the first a
/// checkpoint, the others entries, unless `kind` is 0 (checkpoint) or 1 (meta)), so the
/// fuzzer reaches the payload decoders without forging CRC32Cs.
pub fn raft_store(data: &[u8]) {
    raft_store_check(data);
    raft_store_check(&raft_store_framed(data));
}

fn raft_store_state(r: &Recovered) -> impl PartialEq + std::fmt::Debug + '_ {
    (r.hard, &r.snapshot, &r.log)
}

fn raft_store_check(bytes: &[u8]) {
    let Ok(r) = store::replay(bytes) else { return };
    let valid_len = usize::try_from(r.valid_len).expect("valid_len fits the input");
    assert!(valid_len <= bytes.len(), "valid_len within the input");
    assert_eq!(r.cut.is_some(), valid_len < bytes.len(), "cut iff bytes were dropped");
    let prefix = store::replay(&bytes[..valid_len]).expect("the valid prefix replays");
    assert_eq!(raft_store_state(&prefix), raft_store_state(&r), "the valid prefix builds the same state");
    assert_eq!((prefix.valid_len, &prefix.cut), (r.valid_len, &None));
    let mut out = Vec::new();
    store::encode_checkpoint(r.hard, &r.snapshot, &r.log, &mut out);
    let again = store::replay(&out).expect("a checkpoint of recovered state replays");
    assert_eq!(raft_store_state(&again), raft_store_state(&r), "a checkpoint of recovered state replays to it");
    assert_eq!((again.valid_len, &again.cut), (out.len() as u64, &None));
    let me = NodeId(1);
    let raft = Raft::new(
        me,
        Membership::of_voters([me]),
        RaftConfig::default(),
        0,
        Instant(0),
        Restored { hard: r.hard, snapshot: r.snapshot, log: r.log },
    );
    assert_eq!(raft.term(), r.hard.term);
}

/// The input as checksummed frames (see [`raft_store`]); bytes left over follow raw, as a
/// torn tail.
fn raft_store_framed(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut first = true;
    while let [kind, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(tail.len());
        let kind = match kind {
            0 => FrameKind::RaftCheckpoint,
            1 => FrameKind::Meta,
            _ if first => FrameKind::RaftCheckpoint,
            _ => FrameKind::RaftEntries,
        };
        codec::encode_frame(kind, &tail[..len], &mut out);
        rest = &tail[len..];
        first = false;
    }
    out.extend_from_slice(rest);
    out
}

/// The site cluster's bytes (`site::msg`): a whole `Site` frame (`SiteMsg`), a command of
/// the site's Raft log (`Command`) and the strong topics' snapshot (`StrongSnapshot`).
/// Each input is tried as all three, and also wrapped in a `Site` frame with a valid
/// checksum, so the fuzzer reaches the message decoders past the CRC. What decodes
/// re-encodes to the same bytes (every encoding is canonical; the one exception is the
/// empty snapshot, which decodes as the default snapshot), and those decode to the same
/// value. The commands and snapshots a decoded Raft message carries are decoded too.
pub fn site_msg(data: &[u8]) {
    site_msg_frame(data);
    if data.len() <= MAX_FRAME_PAYLOAD {
        let mut framed = Vec::new();
        codec::encode_frame(FrameKind::Site, data, &mut framed);
        site_msg_frame(&framed);
    }
    site_command(data);
    site_snapshot(data);
}

fn site_msg_frame(bytes: &[u8]) {
    let Ok(m) = SiteMsg::decode(bytes) else { return };
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(SiteMsg::decode(&out).as_ref(), Ok(&m), "a decoded site message round-trips");
    assert_eq!(out, bytes, "a decoded site message re-encodes to its bytes");
    if let SiteMsg::Raft(env) = &m {
        match &env.msg {
            Message::Append { entries, .. } => {
                for e in entries {
                    if let EntryKind::Command(c) = &e.kind {
                        site_command(c);
                    }
                }
            }
            Message::InstallSnapshot { snapshot } => site_snapshot(&snapshot.data),
            _ => {}
        }
    }
}

fn site_command(bytes: &[u8]) {
    let Ok(c) = Command::decode(bytes) else { return };
    let out = c.encode();
    assert_eq!(Command::decode(&out).as_ref(), Ok(&c), "a decoded command round-trips");
    assert_eq!(out, bytes, "a decoded command re-encodes to its bytes");
}

fn site_snapshot(bytes: &[u8]) {
    let Ok(s) = StrongSnapshot::decode(bytes) else { return };
    let out = s.encode();
    assert_eq!(StrongSnapshot::decode(&out).as_ref(), Ok(&s), "a decoded snapshot round-trips");
    if bytes.is_empty() {
        assert_eq!(s, StrongSnapshot::default(), "no bytes are the empty prefix's snapshot");
    } else {
        assert_eq!(out, bytes, "a decoded snapshot re-encodes to its bytes");
    }
}

/// A segment's bytes as recovery scans them: every frame it keeps has a valid checksum and
/// batch header, and frames follow each other without overlap. (Not that the whole batch
/// decodes: a frame crafted with a valid checksum around a broken records section — the
/// fuzzer's first find — is kept, and sync and fetch report it as corrupt when they read it.)
pub fn log_scan(data: &[u8]) {
    let mut next_pos = 0;
    let mut next_base = None;
    let stop = outpost_core::log::scan(data, 0, 0, |f| {
        assert_eq!(f.pos, next_pos, "frames are contiguous");
        let bytes = &data[f.pos as usize..(f.pos + f.len) as usize];
        assert!(codec::decode_frame(bytes).is_ok(), "a kept frame passes its checksum");
        assert_eq!(BatchHeader::decode(f.batch).as_ref(), Ok(&f.header), "a kept frame's batch header decodes");
        assert!(next_base.is_none_or(|b| b == f.base), "offsets follow each other");
        next_pos = f.pos + f.len;
        next_base = Some(f.end());
    });
    if let Some(s) = stop {
        let _ = s.damaged_at(data.len() as u64);
    }
}

/// A meta file: the bound it yields, if any, comes from a frame with a valid checksum.
pub fn meta_bound(data: &[u8]) {
    let _ = outpost_core::meta::read_bound(data);
}

/// A marks checkpoint: a typed error, or marks that encode to what decodes to them again;
/// a checkpoint of this build's version (the same length) encodes back to the same bytes
/// (the decoder takes only one frame, entries in order).
pub fn marks(data: &[u8]) {
    if let Ok(m) = outpost_core::marks::decode(data) {
        let mut again = Vec::new();
        outpost_core::marks::encode_checkpoint(&m, &mut again);
        assert_eq!(outpost_core::marks::decode(&again).as_ref(), Ok(&m), "what decodes encodes to the same marks");
        if again.len() == data.len() {
            assert_eq!(again, data, "a checkpoint that decodes is the encoding of what it decodes to");
        }
    }
}

/// A checkpoint of keyed states: a typed error, or parts whose states decode (for the
/// strategy their bytes name, else they are refused with a typed error too) and
/// re-encode to a checkpoint that decodes to the same parts.
pub fn keyed_checkpoint(data: &[u8]) {
    use outpost_core::keyed::{snapshot, KeyedLimits, Strategy};
    use outpost_core::keyed_checkpoint::{self as kc, StateOut};
    let Ok(parts) = kc::decode(data) else { return };
    let limits = KeyedLimits { state_bytes_max: 64 << 20, conflict_log_bytes_max: 1 << 20 };
    let mut states = Vec::new();
    for p in &parts {
        let decoded = Strategy::NAMED.into_iter().find_map(|s| {
            let mut r = codec::Reader::new(p.state);
            snapshot::decode(&mut r, s, limits).ok().filter(|_| r.is_empty())
        });
        match decoded {
            Some(state) => states.push(state),
            None => return,
        }
    }
    let outs: Vec<StateOut<'_>> = parts
        .iter()
        .zip(&states)
        .map(|(p, state)| StateOut {
            name: p.name,
            halves: p.halves.clone(),
            relayed: p.relayed.clone(),
            observed: &p.observed,
            state,
        })
        .collect();
    let mut again = Vec::new();
    kc::encode(&outs, &mut again);
    let reparsed = kc::decode(&again).expect("what decodes re-encodes to a checkpoint that decodes");
    for ((a, b), state) in parts.iter().zip(&reparsed).zip(&states) {
        assert_eq!(
            (a.name, &a.halves, &a.relayed, &a.observed),
            (b.name, &b.halves, &b.relayed, &b.observed),
            "the same parts"
        );
        let mut r = codec::Reader::new(b.state);
        let again = snapshot::decode(&mut r, state.strategy(), limits).expect("a state re-encoded decodes");
        let (mut x, mut y) = (Vec::new(), Vec::new());
        snapshot::encode(state, &mut x);
        snapshot::encode(&again, &mut y);
        assert_eq!(x, y, "a state re-encoded decodes to the same state");
    }
    if again.len() == data.len() {
        assert_eq!(again, data, "a checkpoint that decodes is the encoding of what it decodes to");
    }
}

/// A config file, for both roles: a typed error or settings that passed validation.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for role in [Role::Edge, Role::Gateway] {
        if let Ok(s) = outpost::config::parse(text, None, role) {
            assert!(outpost_core::Node::check_config(&s.node).is_ok(), "settings the loader returns are valid");
            assert!(s.node.resources.memory_bytes_max + s.shell.reserve <= s.max_memory, "the split fits the budget");
        }
    }
}

/// A scenario file: a typed error or a scenario.
pub fn scenario(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = outpost_sim::scenario::parse(text, "fuzz.toml");
    }
}

/// An HTTP request: a whole request never claims more bytes than it was given, nor a body
/// above the limit; one still arriving never announces more than its head and the limit;
/// routing it (and the web-page guard) never panics.
pub fn http_request(data: &[u8]) {
    const BODY_MAX: usize = 4096;
    match outpost::http::parse(data, BODY_MAX) {
        Ok(Some((req, used))) => {
            assert!(used <= data.len() && req.body.len() <= BODY_MAX);
            let _ = outpost::api::route(&req);
            let guard = outpost::api::BrowserGuard::new(([127, 0, 0, 1], 7480).into(), &[], &[]);
            let _ = guard.check(&req);
        }
        Ok(None) => {
            // Waiting for more: a head, if whole, announces a request the budget can hold.
            let head = outpost::http::head_info(data, BODY_MAX).expect("a request being read has a valid head so far");
            if let Some(h) = head {
                assert!(h.total > data.len() && h.total <= h.head_len + BODY_MAX);
            }
        }
        Err(e) => assert!(e.response().close, "a refused request closes its connection"),
    }
}

/// A binary-protocol request: decodes, and re-encodes to the same frame.
pub fn binary_request(data: &[u8]) {
    use outpost::binproto;
    if let Ok((id, req)) = binproto::decode_request(data) {
        let mut out = Vec::new();
        binproto::encode_request(id, &req, &mut out);
        assert_eq!(&out[4..], data, "a decoded request re-encodes to its bytes");
    }
}

/// A binary-protocol response (what a client reads): decodes and round-trips.
pub fn binary_response(data: &[u8]) {
    use outpost::binproto;
    if let Ok((id, resp)) = binproto::decode_response(data) {
        let mut out = Vec::new();
        binproto::encode_response(id, &resp, &mut out);
        assert_eq!(binproto::decode_response(&out[4..]), Ok((id, resp)), "a decoded response round-trips");
    }
}

/// The edge ↔ gateway handshake, both directions.
/// The test key of the `e2e_envelope` target (its seeds are sealed with it).
pub const E2E_KEYS: &str = "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

/// The `e2e_envelope` target's context: where its seeds were sealed for.
pub fn e2e_context() -> outpost::e2e::Context<'static> {
    outpost::e2e::Context { topic: "pos", origin: outpost_core::types::NodeId(7), key: None }
}

/// An end-to-end envelope as a consumer reads it from a gateway (`e2e::Keyring::open`), and
/// the same bytes as a key file (`Keyring::parse`).
pub fn e2e_envelope(data: &[u8]) {
    use outpost::e2e::{self, Keyring, OpenError};
    let ring = Keyring::parse(E2E_KEYS).expect("the target's key file");
    match ring.open(&e2e_context(), data) {
        Ok(value) => {
            assert_eq!(data.len(), value.len() + e2e::OVERHEAD, "an envelope is its value and the overhead");
            assert!(e2e::is_sealed(data));
        }
        Err(OpenError::NotSealed) => assert!(!e2e::is_sealed(data)),
        Err(OpenError::UnknownKey(id)) => assert_ne!(id, 1),
        Err(OpenError::Tampered) => assert!(e2e::is_sealed(data)),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(parsed) = Keyring::parse(text) {
            let sealed = parsed.seal(&e2e_context(), b"v");
            assert_eq!(parsed.open(&e2e_context(), &sealed).as_deref(), Ok(&b"v"[..]), "a parsed key file round-trips");
        }
    }
}

pub fn peer_handshake(data: &[u8]) {
    use outpost::peer;
    let _ = peer::hello_needs(data);
    if let Ok(h) = peer::decode_hello(data) {
        let mut out = Vec::new();
        peer::encode_hello(&h, &mut out).expect("a decoded hello is a valid one");
        assert_eq!(out, data, "a decoded hello re-encodes to its bytes");
    }
    let _ = peer::answer_needs(data);
    let _ = peer::decode_answer(data);
}

/// A keyed record's operation (from any replica's log): decodes, re-encodes to its bytes,
/// and a state of every strategy takes it or refuses it with a typed error.
/// A session token from a client (`keyed_reads`): bytes and text decode or are refused,
/// and one that decodes re-encodes to its bytes and decides a read without panicking.
pub fn session_token(data: &[u8]) {
    use outpost_core::hlc::Hlc;
    use outpost_core::keyed::Dot;
    use outpost_core::keyed_reads::{decide, Observed, ReadConsistency, SessionToken};
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SessionToken::from_text("prices", text);
    }
    let Ok(token) = SessionToken::decode(data) else { return };
    let mut again = Vec::new();
    token.encode(&mut again);
    assert_eq!(again, data, "a decoded session token re-encodes to its bytes");
    let mut seen = Observed::default();
    seen.note(Dot { origin: NodeId(2), seq: 5 }, Hlc(5 << 20));
    let _ = decide("prices", &seen, None, NodeId(1), 10, ReadConsistency::Causal(&token));
}

pub fn keyed_op(data: &[u8]) {
    use outpost_core::hlc::Hlc;
    use outpost_core::keyed::{Dot, KeyedLimits, KeyedOp, KeyedState, Strategy, Write};
    let Ok(op) = KeyedOp::decode(data) else { return };
    let mut again = Vec::new();
    op.encode(&mut again);
    assert_eq!(again, data, "a decoded keyed operation re-encodes to its bytes");
    let limits = KeyedLimits { state_bytes_max: 1 << 20, conflict_log_bytes_max: 1 << 12 };
    for strategy in Strategy::ALL {
        let mut state = KeyedState::new(strategy, limits);
        // (A copy is merged as the write it copies: `keyed_topics` takes the flag off.)
        let op = KeyedOp { relayed: None, ..op.clone() };
        let w = Write { key: b"k", dot: Dot { origin: NodeId(9), seq: 3 }, hlc: Hlc(1), op };
        if state.apply(w).is_ok() {
            assert!(state.bytes() <= limits.state_bytes_max);
            let _ = state.get(b"k");
        }
    }
}

/// A custom merge's WebAssembly module (a file an operator names, which may come from
/// anywhere): it loads or is refused with an error, and a module that loads answers a
/// merge or fails it with an error, within its fuel and memory, never a panic.
pub fn merge_module(data: &[u8]) {
    use outpost_core::hlc::Hlc;
    use outpost_core::keyed::{Dot, Merge, Version};
    use outpost_wasm_merge::{WasmLimits, WasmMerge};
    let limits = WasmLimits { fuel: 100_000, memory_bytes_max: 1 << 20 };
    let Ok(m) = WasmMerge::from_bytes("fuzz", data, limits) else { return };
    let version = |origin: u64, value: Option<&[u8]>| Version {
        dot: Dot { origin: NodeId(origin), seq: 1 },
        hlc: Hlc(origin),
        cloud: origin == 1,
        value: value.map(<[u8]>::to_vec),
    };
    let (a, b) = (version(1, Some(b"one")), version(2, None));
    if let Ok(Some(answer)) = m.merge(b"k", &[&a, &b]) {
        assert!(answer.len() <= outpost_core::codec::MAX_VALUE_BYTES, "an answer fits a value");
    }
}
