//! The edge ↔ gateway transport over TCP (docs/PROTOCOL.md, "Transport"): a handshake
//! that names and authenticates the edge, then the core's sync frames back to back, split
//! by their own header's length.

use outpost_core::codec::{decode_frame, FrameError, FRAME_HEADER_LEN};
use std::fmt;

/// The first bytes an edge sends: protocol name and version.
pub const HELLO_MAGIC: &[u8; 8] = b"OUTPOST1";
/// The longest token a hello carries (its length is one byte).
pub const TOKEN_LEN_MAX: usize = 255;
/// The longest hello: magic, name and token with their lengths.
pub const HELLO_MAX: usize = 8 + 1 + 255 + 1 + TOKEN_LEN_MAX;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerHello {
    pub name: String,
    pub token: String,
}

/// The gateway's answer to a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Verdict {
    Welcome = 0,
    /// No token, or not the one configured for this edge name.
    Unauthorized = 1,
    /// The hello was not well formed.
    BadHello = 2,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not an Outpost peer, or another protocol version.
    BadMagic,
    Truncated,
    BadName,
    /// Tokens are text, as in the config files.
    BadToken,
    /// A token longer than [`TOKEN_LEN_MAX`] bytes (the config loader refuses it first).
    TokenTooLong,
    TrailingBytes,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeError::BadMagic => "not an Outpost peer hello (expected OUTPOST1)",
            HandshakeError::Truncated => "the hello ends early",
            HandshakeError::BadName => "node names are 1 to 64 bytes of [A-Za-z0-9._-]",
            HandshakeError::BadToken => "the token is not UTF-8",
            HandshakeError::TokenTooLong => "the token is longer than the 255 bytes a hello carries",
            HandshakeError::TrailingBytes => "bytes after the hello",
        })
    }
}

pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Appends the hello; refuses a name or token its one-byte lengths cannot carry (the config
/// loader refuses them first, so a daemon never gets here with one).
pub fn encode_hello(h: &PeerHello, out: &mut Vec<u8>) -> Result<(), HandshakeError> {
    if !valid_name(&h.name) {
        return Err(HandshakeError::BadName);
    }
    if h.token.len() > TOKEN_LEN_MAX {
        return Err(HandshakeError::TokenTooLong);
    }
    out.extend_from_slice(HELLO_MAGIC);
    out.push(h.name.len() as u8);
    out.extend_from_slice(h.name.as_bytes());
    out.push(h.token.len() as u8);
    out.extend_from_slice(h.token.as_bytes());
    Ok(())
}

/// Bytes still needed before `buf` can hold a whole hello (0: it does).
pub fn hello_needs(buf: &[u8]) -> usize {
    if buf.len() < 9 {
        return 9 - buf.len();
    }
    let token_at = 9 + buf[8] as usize;
    if buf.len() <= token_at {
        return token_at + 1 - buf.len();
    }
    (token_at + 1 + buf[token_at] as usize).saturating_sub(buf.len())
}

pub fn decode_hello(buf: &[u8]) -> Result<PeerHello, HandshakeError> {
    if buf.len() < 8 || &buf[..8] != HELLO_MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    if hello_needs(buf) > 0 {
        return Err(HandshakeError::Truncated);
    }
    let name_len = buf[8] as usize;
    let name = std::str::from_utf8(&buf[9..9 + name_len]).map_err(|_| HandshakeError::BadName)?;
    if !valid_name(name) {
        return Err(HandshakeError::BadName);
    }
    let t = 9 + name_len;
    let token_len = buf[t] as usize;
    if buf.len() != t + 1 + token_len {
        return Err(HandshakeError::TrailingBytes);
    }
    let token = std::str::from_utf8(&buf[t + 1..]).map_err(|_| HandshakeError::BadToken)?;
    Ok(PeerHello { name: name.to_string(), token: token.to_string() })
}

/// The gateway's answer: verdict, its own name, and a message for the edge's log.
pub fn encode_answer(v: Verdict, gateway: &str, message: &str, out: &mut Vec<u8>) {
    out.push(v as u8);
    out.push(gateway.len().min(255) as u8);
    out.extend_from_slice(&gateway.as_bytes()[..gateway.len().min(255)]);
    let m = &message.as_bytes()[..message.len().min(1024)];
    out.extend_from_slice(&(m.len() as u16).to_le_bytes());
    out.extend_from_slice(m);
}

/// Bytes still needed before `buf` holds a whole answer (0: it does).
pub fn answer_needs(buf: &[u8]) -> usize {
    if buf.len() < 2 {
        return 2 - buf.len();
    }
    let m = 2 + buf[1] as usize;
    if buf.len() < m + 2 {
        return m + 2 - buf.len();
    }
    (m + 2 + u16::from_le_bytes([buf[m], buf[m + 1]]) as usize).saturating_sub(buf.len())
}

/// `(verdict, gateway name, message)`; `None` when the bytes are not an answer.
pub fn decode_answer(buf: &[u8]) -> Option<(Verdict, String, String)> {
    if answer_needs(buf) > 0 {
        return None;
    }
    let v = match buf[0] {
        0 => Verdict::Welcome,
        1 => Verdict::Unauthorized,
        2 => Verdict::BadHello,
        _ => return None,
    };
    let m = 2 + buf[1] as usize;
    let name = String::from_utf8_lossy(&buf[2..m]).into_owned();
    let msg = String::from_utf8_lossy(&buf[m + 2..]).into_owned();
    Some((v, name, msg))
}

/// What a refused edge is told when its name is unknown or its token wrong: the same words
/// for both, so that refusals do not tell which names a gateway knows.
pub const UNAUTHORIZED: &str = "unauthorized: unknown edge name or wrong token (the gateway's log says which)";

/// The edge's account of a refusal by the gateway named `gateway`.
pub fn refusal(gateway: &str, message: &str) -> String {
    format!("refused by the gateway {gateway:?}: {message}")
}

/// Compares tokens in time independent of where they differ.
pub fn tokens_match(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Why a peer's byte stream must be closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    Frame(FrameError),
    TooLarge { len: usize, max: usize },
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Frame(e) => write!(f, "{e}"),
            StreamError::TooLarge { len, max } => write!(f, "a frame of {len} bytes is larger than the {max} accepted"),
        }
    }
}

/// The total length of the frame whose 12-byte header is `header`, checked against `max`
/// (the header's magic, version and kind are checked too; the CRC when the whole frame is
/// decoded by the core).
pub fn frame_len(header: &[u8; FRAME_HEADER_LEN], max: usize) -> Result<usize, StreamError> {
    let total = match decode_frame(header) {
        Ok((_, n)) => n,
        Err(FrameError::Incomplete { needed, .. }) => needed,
        Err(e) => return Err(StreamError::Frame(e)),
    };
    if total > max {
        return Err(StreamError::TooLarge { len: total, max });
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_answer_round_trip_and_bad_ones_are_refused() {
        let h = PeerHello { name: "kiosk-7".into(), token: "s3cret".into() };
        let mut b = Vec::new();
        encode_hello(&h, &mut b).expect("a valid hello");
        for cut in 0..b.len() {
            assert!(hello_needs(&b[..cut]) > 0, "a prefix of {cut} bytes is not whole");
        }
        assert_eq!(hello_needs(&b), 0);
        assert_eq!(decode_hello(&b), Ok(h));
        assert_eq!(decode_hello(b"GET / HTTP/1.1\r\n"), Err(HandshakeError::BadMagic));
        let bad = [HELLO_MAGIC.as_slice(), &[3], b"a/b", &[0]].concat();
        assert_eq!(decode_hello(&bad), Err(HandshakeError::BadName));
        let long = PeerHello { name: "kiosk-7".into(), token: "t".repeat(256) };
        assert_eq!(encode_hello(&long, &mut Vec::new()), Err(HandshakeError::TokenTooLong));
        let slash = PeerHello { name: "a/b".into(), token: String::new() };
        assert_eq!(encode_hello(&slash, &mut Vec::new()), Err(HandshakeError::BadName));
        let mut a = Vec::new();
        encode_answer(Verdict::Unauthorized, "gw", "bad token", &mut a);
        assert_eq!(answer_needs(&a[..3]), 3, "the rest of the name and the message length");
        assert_eq!(decode_answer(&a), Some((Verdict::Unauthorized, "gw".into(), "bad token".into())));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "abcd"));
        assert!(!tokens_match("", "a"));
    }

    #[test]
    fn frame_headers_are_checked_before_reading_a_payload() {
        let mut f = Vec::new();
        outpost_core::codec::encode_frame(outpost_core::codec::FrameKind::SyncReset, &[0; 8], &mut f);
        let header: [u8; FRAME_HEADER_LEN] = f[..FRAME_HEADER_LEN].try_into().unwrap();
        assert_eq!(frame_len(&header, 1 << 20), Ok(f.len()));
        assert_eq!(frame_len(&header, 10), Err(StreamError::TooLarge { len: f.len(), max: 10 }));
        let junk = [b'G'; FRAME_HEADER_LEN];
        assert!(matches!(frame_len(&junk, 1 << 20), Err(StreamError::Frame(FrameError::BadMagic { .. }))));
    }
}
