//! Batch produce (ProduceBatch, binary protocol) through real daemons of both shells: a
//! batch's records are durable and readable back in its order, pipelined batches are
//! answered in order, a batch to an unknown topic is refused whole, and a hostile batch
//! frame is answered `BadRequest` and closes the connection.

// Real processes wait on real time: a read timeout for an answer that must come.
#![allow(clippy::disallowed_types)]

mod common;

use common::{free_addr, produce, Daemon};
use outpost::binproto::{self, Code, Response, KIND_PRODUCE_BATCH};
use outpost::client::{into_results, ClientError};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn value(i: usize) -> Vec<u8> {
    format!("record-{i:04}").into_bytes()
}

/// Writes `frame` on a fresh connection and reads everything until the daemon closes it:
/// the answers, decoded.
fn hostile(edge: &Daemon, frame: &[u8]) -> Vec<(u32, Response)> {
    let mut s = TcpStream::connect(edge.binary).expect("binary port");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(frame).expect("written");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("the daemon closes the connection after its answer");
    let mut answers = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let len = binproto::frame_len(raw[at..at + 4].try_into().expect("4 bytes"), 1 << 20).expect("a frame");
        answers.push(binproto::decode_response(&raw[at + 4..at + 4 + len]).expect("an answer"));
        at += 4 + len;
    }
    answers
}

fn batch_through(lite: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut edge = Daemon::edge(dir.path(), "edge-1", free_addr(), "t", "");
    if lite {
        edge = edge.lite();
    }
    edge.start();
    let mut c = edge.client();
    // The first write waits for the clock bound (retryable); the batches then go straight in.
    let first = produce(&mut c, "events", &value(0)).seq;

    let records: Vec<(Option<Vec<u8>>, Vec<u8>)> =
        (1..=300).map(|i| ((i % 3 == 0).then(|| format!("k{i}").into_bytes()), value(i))).collect();
    let borrowed: Vec<(Option<&[u8]>, &[u8])> = records.iter().map(|(k, v)| (k.as_deref(), v.as_slice())).collect();
    let results = c.produce_batch("events", &borrowed).expect("answered");
    let seqs: Vec<u64> = results.iter().map(|r| r.as_ref().expect("acked").seq).collect();
    assert_eq!(seqs, (first + 1..=first + 300).collect::<Vec<_>>(), "one batch, consecutive offsets in its order");

    // Pipelined: three batches in flight, answered in order, each record once.
    let mut ids = Vec::new();
    for b in 0..3 {
        let vals: Vec<Vec<u8>> = (0..100).map(|i| value(301 + b * 100 + i)).collect();
        let batch: Vec<(Option<&[u8]>, &[u8])> = vals.iter().map(|v| (None, v.as_slice())).collect();
        ids.push(c.send_batch("events", &batch).expect("queued"));
    }
    let mut next = first + 301;
    for id in ids {
        let (got, resp) = c.recv().expect("an answer");
        assert_eq!(got, id);
        for r in into_results(resp, 100).expect("a result per record") {
            assert_eq!(r.expect("acked").seq, next);
            next += 1;
        }
    }

    // A batch to an unknown topic is refused whole, and the connection goes on.
    match c.produce_batch("nope", &[(None, b"x")]) {
        Err(ClientError::Refused { code: Code::UnknownTopic, retryable: false, .. }) => {}
        other => panic!("expected UnknownTopic, got {other:?}"),
    }
    assert!(c.produce_batch("events", &[(None, &value(601))]).expect("answered")[0].is_ok());

    // Hostile frames: a count of 0, and a count of 2 with one record. Each is answered
    // BadRequest under its id, and the connection is closed.
    let frame = |id: u32, tail: &[u8]| {
        let mut body = vec![KIND_PRODUCE_BATCH];
        body.extend_from_slice(&id.to_le_bytes());
        body.extend_from_slice(&[6]);
        body.extend_from_slice(b"events");
        body.extend_from_slice(tail);
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend(body);
        f
    };
    for (id, tail, says) in [
        (41, vec![0, 0], "a batch of 0 records"),
        (42, vec![2, 0, 0, 1, 0, 0, 0, b'v'], "frame ends inside field key flag"),
    ] {
        let answers = hostile(&edge, &frame(id, &tail));
        match answers.as_slice() {
            [(got, Response::Error { code: Code::BadRequest, retryable: false, message })] => {
                assert_eq!(*got, id);
                assert!(message.starts_with(says), "{message}");
            }
            other => panic!("expected one BadRequest, got {other:?}"),
        }
    }

    // Everything acknowledged is there, in order; nothing of the hostile frames is.
    let stored: Vec<Vec<u8>> = edge.read_all("events").into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(stored, (0..=601).map(value).collect::<Vec<_>>());
}

#[test]
fn batches_through_the_tokio_shell() {
    batch_through(false);
}

#[test]
fn batches_through_edge_lite() {
    batch_through(true);
}
