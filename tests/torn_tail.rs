//! Torn tail: bytes scribbled after the last acknowledged record of the newest segment
//! while the daemon is down. It starts, logs exactly what it cut, and keeps every
//! acknowledged record.

mod common;

use common::{free_addr, Daemon};
use std::io::Write;
use std::path::PathBuf;

fn newest_segment(edge: &Daemon) -> PathBuf {
    let dir = edge.data.join("topics").join("events");
    let mut segs: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("topic dir").map(|e| e.expect("entry").path()).collect();
    segs.sort();
    segs.pop().expect("a segment")
}

fn append(path: &PathBuf, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).expect("segment opens");
    f.write_all(bytes).expect("written");
    f.sync_all().expect("synced");
}

fn produce(edge: &Daemon, from: usize, n: usize) -> Vec<(u64, Vec<u8>)> {
    let mut c = edge.client();
    (from..from + n)
        .map(|i| {
            let v = format!("value-{i}").into_bytes();
            let ack = common::produce(&mut c, "events", &v);
            (ack.seq, v)
        })
        .collect()
}

fn check_all(edge: &Daemon, acked: &[(u64, Vec<u8>)]) {
    let held = edge.read_all("events");
    for (seq, v) in acked {
        let got = held.iter().find(|(_, s, _)| s == seq).unwrap_or_else(|| panic!("acknowledged seq {seq} lost"));
        assert_eq!(&got.2, v);
    }
}

#[test]
fn garbage_and_a_half_written_frame_at_the_tail_are_cut_and_reported() {
    scenario(false);
}

#[test]
fn the_edge_lite_shell_cuts_torn_tails_the_same_way() {
    scenario(true);
}

fn scenario(lite: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    // A gateway that never answers: the records stay on the edge.
    let mut edge = Daemon::edge(dir.path(), "edge-1", free_addr(), "t", "");
    if lite {
        edge = edge.lite();
    }
    edge.start();
    let mut acked = produce(&edge, 0, 300);
    edge.kill();

    let seg = newest_segment(&edge);
    let garbage: Vec<u8> = (0..37u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    append(&seg, &garbage);
    edge.start();
    let log = edge.log_text();
    assert!(log.contains("cut a torn or corrupt tail"), "the cut is logged:\n{log}");
    assert!(log.contains("cut_bytes=37"), "with exactly how much was cut:\n{log}");
    assert!(log.contains(&seg.file_name().unwrap().to_string_lossy().to_string()), "and which file:\n{log}");
    check_all(&edge, &acked);

    // A frame whose header promises more than was written (a write torn by power loss).
    acked.extend(produce(&edge, 300, 200));
    edge.kill();
    let seg = newest_segment(&edge);
    let mut frame = Vec::new();
    outpost_core::codec::encode_frame(outpost_core::codec::FrameKind::LogBatch, &[7u8; 500], &mut frame);
    append(&seg, &frame[..200]);
    edge.start();
    assert_eq!(edge.log_text().matches("cut_bytes=200").count(), 1, "{}", edge.log_text());
    check_all(&edge, &acked);
    // Writing goes on after the cut, at the next sequence.
    let more = produce(&edge, 500, 10);
    assert!(more[0].0 >= 500, "sequences are never reused after a cut");
    acked.extend(more);
    check_all(&edge, &acked);
}
