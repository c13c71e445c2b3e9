//! Hostile input: random bytes, oversized length prefixes and half frames on the binary
//! port, malformed JSON and huge bodies over HTTP, edges without the right token at the
//! gateway. Each gets a clear error; the daemons stay up; nothing stored changes.

mod common;

use common::{free_addr, http, parse_response, Daemon};
use outpost::binproto::{self, Code, Response};
use outpost::peer::{self, PeerHello, Verdict};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(40))).expect("timeout");
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn binary_error(answer: &[u8]) -> (Code, String) {
    assert!(answer.len() >= 4, "an answer came: {answer:?}");
    let len = binproto::frame_len(answer[..4].try_into().unwrap(), 1 << 20).expect("a frame");
    match binproto::decode_response(&answer[4..4 + len]).expect("decodes") {
        (_, Response::Error { code, message, .. }) => (code, message),
        (_, other) => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn bad_bytes_get_clear_errors_and_leave_the_daemons_and_their_data_alone() {
    scenario(false);
}

#[test]
fn the_edge_lite_shell_survives_the_same_bad_bytes() {
    scenario(true);
}

fn scenario(lite: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let mut gw = Daemon::gateway(dir.path(), listen, &[("edge-1", "t1")]);
    gw.start();
    let mut edge = Daemon::edge(dir.path(), "edge-1", listen, "t1", "");
    if lite {
        edge = edge.lite();
    }
    edge.start();
    let mut c = edge.client();
    let before: Vec<u64> = (0..50).map(|i| common::produce(&mut c, "events", format!("v{i}").as_bytes()).seq).collect();

    // Binary port: an absurd length prefix.
    let (code, msg) = binary_error(&raw(edge.binary, &u32::MAX.to_le_bytes()));
    assert_eq!(code, Code::BadRequest);
    assert!(msg.contains("larger than"), "{msg}");
    // Random bytes whose prefix happens to be small: an unknown kind.
    let mut junk = 40u32.to_le_bytes().to_vec();
    junk.extend((0..40u32).map(|i| (i * 97 + 13) as u8 | 0x80));
    let (code, msg) = binary_error(&raw(edge.binary, &junk));
    assert_eq!(code, Code::BadRequest);
    assert!(msg.contains("unknown request kind"), "{msg}");
    // A produce whose fields run past its frame.
    let bad = [9u32.to_le_bytes().as_slice(), &[1, 5, 0, 0, 0, 200, b'e', b'v', b'e']].concat();
    let (_, msg) = binary_error(&raw(edge.binary, &bad));
    assert!(msg.contains("ends inside field topic"), "{msg}");
    // Half a frame, then the client goes away: nothing to answer, nothing breaks.
    let half = [100u32.to_le_bytes().as_slice(), &[1, 0, 0, 0, 0, 6]].concat();
    assert!(raw(edge.binary, &half).is_empty());
    // Unknown topic: answered, and the connection stays usable.
    let e = c.produce("nope", None, b"x").expect_err("refused");
    assert!(e.to_string().contains("no topic named \"nope\"") && e.to_string().contains("events"), "{e}");
    common::produce(&mut c, "events", b"still works");

    // HTTP: malformed JSON, a huge body, garbage, a value over the limit.
    let (code, body) =
        http(edge.http, "POST", "/v1/topics/events/records", Some("application/json"), b"{\"records\": [").unwrap();
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("not valid JSON"));
    let huge = raw(edge.http, b"POST /v1/topics/events/records HTTP/1.1\r\ncontent-length: 999999999999\r\n\r\n");
    let (code, body) = parse_response(&huge).expect("HTTP answer");
    assert_eq!(code, 413);
    assert!(String::from_utf8_lossy(&body).contains("exceeds the limit"));
    let (code, _) = parse_response(&raw(edge.http, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")).expect("HTTP answer");
    assert_eq!(code, 400);
    let too_big = vec![b'x'; 2 << 20];
    let (code, body) = http(edge.http, "POST", "/v1/topics/events/records", None, &too_big).unwrap();
    assert_eq!(code, 413, "{}", String::from_utf8_lossy(&body));
    let (code, body) = http(edge.http, "GET", "/v1/topics/missing/records", None, b"").unwrap();
    assert_eq!(code, 404);
    assert!(String::from_utf8_lossy(&body).contains("it has: events"));

    // Gateway: wrong token, unknown edge (refused alike), not a peer at all.
    for (name, token) in [("edge-1", "wrong"), ("intruder", "t1")] {
        let mut hello = Vec::new();
        peer::encode_hello(&PeerHello { name: name.into(), token: token.into() }, &mut hello).expect("a valid hello");
        let answer = raw(listen, &hello);
        let (verdict, gw_name, msg) = peer::decode_answer(&answer).expect("an answer");
        assert_eq!((verdict, gw_name.as_str()), (Verdict::Unauthorized, "gateway"));
        assert_eq!(msg, peer::UNAUTHORIZED);
    }
    let answer = raw(listen, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(peer::decode_answer(&answer).map(|a| a.0), Some(Verdict::BadHello));

    // Everyone is still up, and the records are as they were.
    assert!(edge.is_running() && gw.is_running());
    let held = edge.read_all("events");
    for (i, seq) in before.iter().enumerate() {
        assert_eq!(held[*seq as usize].2, format!("v{i}").into_bytes());
    }
    common::wait_until(30, "the real edge to sync", || edge.unsynced("events") == 0);
    assert_eq!(gw.read_all("events").len(), 51);
    assert!(gw.log_text().contains("edge refused"), "refusals are logged");
}
