//! HTTP/1.1 requests and responses, just what the local API needs: requests parsed with
//! `httparse` from a bounded buffer, bodies by `Content-Length` only (chunked bodies are
//! refused with 411), keep-alive unless the client says `close` or speaks HTTP/1.0.
//! Pure functions over bytes, shared by both shells.

use std::fmt::Write as _;

/// The most header bytes read before a request is refused (431).
pub const HEADER_BYTES_MAX: usize = 16 << 10;
const HEADERS_MAX: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// The `Outpost-Key` header: the record key of a raw produce.
    pub key: Option<Vec<u8>>,
    pub keep_alive: bool,
    /// What a browser says of where the request comes from (`Origin`, `Sec-Fetch-Site`),
    /// and the `Host` it was sent to: see [`crate::api::BrowserGuard`].
    pub origin: Option<String>,
    pub sec_fetch_site: Option<String>,
    pub host: Option<String>,
    /// The token of `Authorization: Bearer TOKEN`: see [`crate::api::ApiAuth`].
    pub bearer: Option<String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub retry_after: Option<u32>,
    /// Close the connection after this response.
    pub close: bool,
}

impl Response {
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec(v).expect("JSON values serialize");
        body.push(b'\n');
        Response { status, content_type: "application/json", body, retry_after: None, close: false }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response { status, content_type, body: body.into_bytes(), retry_after: None, close: false }
    }

    /// An error as JSON: `{"error": message, "code": code, "retryable": bool}`.
    pub fn error(status: u16, code: &str, retryable: bool, message: &str) -> Response {
        let v = serde_json::json!({ "error": message, "code": code, "retryable": retryable });
        Response { retry_after: retryable.then_some(1), ..Response::json(status, &v) }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if let Some(s) = self.retry_after {
            let _ = write!(head, "retry-after: {s}\r\n");
        }
        if self.close {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        408 => "Request Timeout",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Why bytes are not a request this server serves. Each becomes a response, and the
/// connection is closed after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    Malformed(String),
    HeadersTooLarge,
    BodyTooLarge {
        len: u64,
        max: usize,
    },
    LengthRequired,
    /// An `Expect` other than `100-continue`.
    ExpectationFailed(String),
}

impl HttpError {
    pub fn response(&self) -> Response {
        let r = match self {
            HttpError::Malformed(e) => {
                Response::error(400, "bad_request", false, &format!("malformed HTTP request: {e}"))
            }
            HttpError::HeadersTooLarge => Response::error(
                431,
                "headers_too_large",
                false,
                &format!("request headers exceed {HEADER_BYTES_MAX} bytes"),
            ),
            HttpError::BodyTooLarge { len, max } => Response::error(
                413,
                "body_too_large",
                false,
                &format!("a body of {len} bytes exceeds the limit of {max} bytes; split the batch"),
            ),
            HttpError::LengthRequired => Response::error(
                411,
                "length_required",
                false,
                "a body needs a Content-Length header (chunked transfer encoding is not accepted)",
            ),
            HttpError::ExpectationFailed(what) => Response::error(
                417,
                "expectation_failed",
                false,
                &format!("Expect: {what} is not supported; only 100-continue is"),
            ),
        };
        Response { close: true, ..r }
    }
}

fn decode_percent(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex digits are ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request's head, parsed: everything but the body, and how long the whole request is.
struct Head {
    method: String,
    target: String,
    content_type: Option<String>,
    key: Option<Vec<u8>>,
    keep_alive: bool,
    origin: Option<String>,
    sec_fetch_site: Option<String>,
    host: Option<String>,
    bearer: Option<String>,
    expect_continue: bool,
    head_len: usize,
    total: usize,
}

/// What a shell needs to know of a request once its head has arrived, before its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadInfo {
    /// The whole request's length, head and body: what the shell reserves before reading on.
    pub total: usize,
    /// The head's length: the body follows it.
    pub head_len: usize,
    /// The client waits for `100 Continue` before it sends the body (`Expect: 100-continue`).
    pub expect_continue: bool,
}

/// Parses one request from the start of `buf`. `Ok(None)`: more bytes are needed.
/// `Ok(Some((req, used)))`: a whole request took `used` bytes.
pub fn parse(buf: &[u8], body_max: usize) -> Result<Option<(Request, usize)>, HttpError> {
    let Some(h) = head(buf, body_max)? else { return Ok(None) };
    if buf.len() < h.total {
        return Ok(None);
    }
    let (path, query) = match h.target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (h.target.as_str(), ""),
    };
    let query = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode_percent(k), decode_percent(v)),
            None => (decode_percent(kv), String::new()),
        })
        .collect();
    let request = Request {
        method: h.method,
        path: decode_percent(path),
        query,
        content_type: h.content_type,
        key: h.key,
        keep_alive: h.keep_alive,
        origin: h.origin,
        sec_fetch_site: h.sec_fetch_site,
        host: h.host,
        bearer: h.bearer,
        body: buf[h.head_len..h.total].to_vec(),
    };
    Ok(Some((request, h.total)))
}

/// What the head at the start of `buf` says of its request, once the head has arrived.
pub fn head_info(buf: &[u8], body_max: usize) -> Result<Option<HeadInfo>, HttpError> {
    Ok(head(buf, body_max)?.map(|h| HeadInfo {
        total: h.total,
        head_len: h.head_len,
        expect_continue: h.expect_continue,
    }))
}

/// The interim answer that tells a client waiting on `Expect: 100-continue` to send its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn head(buf: &[u8], body_max: usize) -> Result<Option<Head>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > HEADER_BYTES_MAX => return Err(HttpError::HeadersTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    if head_len > HEADER_BYTES_MAX {
        return Err(HttpError::HeadersTooLarge);
    }
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("/");
    let mut keep_alive = req.version == Some(1);
    let mut content_len: Option<u64> = None;
    let mut content_type = None;
    let mut key = None;
    let (mut origin, mut sec_fetch_site, mut host, mut bearer) = (None, None, None, None);
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value =
            std::str::from_utf8(h.value).map_err(|_| HttpError::Malformed(format!("header {name} is not UTF-8")));
        match name.as_str() {
            "content-length" => {
                // One length, however often it is repeated (RFC 9110 8.6): two different
                // ones would let a proxy in front and this server frame the stream apart.
                for part in value?.split(',') {
                    let len: u64 = part
                        .trim()
                        .parse()
                        .map_err(|_| HttpError::Malformed("Content-Length is not a number".into()))?;
                    if content_len.is_some_and(|l| l != len) {
                        return Err(HttpError::Malformed(format!(
                            "two Content-Length values ({} and {len}); send one",
                            content_len.unwrap_or_default()
                        )));
                    }
                    content_len = Some(len);
                }
            }
            "transfer-encoding" => return Err(HttpError::LengthRequired),
            "content-type" => content_type = Some(value?.trim().to_ascii_lowercase()),
            "connection" => {
                let v = value?.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            "expect" => {
                let v = value?.trim().to_ascii_lowercase();
                if v != "100-continue" {
                    return Err(HttpError::ExpectationFailed(v));
                }
                expect_continue = true;
            }
            "origin" => origin = Some(value?.trim().to_owned()),
            "sec-fetch-site" => sec_fetch_site = Some(value?.trim().to_ascii_lowercase()),
            "host" => host = Some(value?.trim().to_ascii_lowercase()),
            "outpost-key" => key = Some(h.value.to_vec()),
            "authorization" => {
                let v = value?.trim();
                let token = v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
                bearer = token.map(|(_, t)| t.trim().to_owned());
            }
            _ => {}
        }
    }
    let content_len = content_len.unwrap_or(0);
    if content_len > body_max as u64 {
        return Err(HttpError::BodyTooLarge { len: content_len, max: body_max });
    }
    let total = head_len + content_len as usize;
    Ok(Some(Head {
        method,
        target: target.to_string(),
        content_type,
        key,
        keep_alive,
        origin,
        sec_fetch_site,
        host,
        bearer,
        expect_continue: expect_continue && content_len > 0,
        head_len,
        total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_with_a_body_and_waits_for_a_partial_one() {
        let raw = b"POST /v1/topics/a%2Eb/records?key=k1&x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Type: application/octet-stream\r\n\r\nhelloGET";
        let (r, used) = parse(raw, 100).expect("valid").expect("complete");
        assert_eq!(used, raw.len() - 3);
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/topics/a.b/records"));
        assert_eq!(r.param("key"), Some("k1"));
        assert_eq!(r.param("x"), Some(""));
        assert_eq!(r.body, b"hello");
        assert!(r.keep_alive);
        assert_eq!(parse(&raw[..raw.len() - 6], 100), Ok(None), "body incomplete");
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost", 100), Ok(None), "head incomplete");
    }

    #[test]
    fn refuses_what_it_does_not_serve() {
        let big = b"POST / HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n";
        assert_eq!(parse(big, 1000), Err(HttpError::BodyTooLarge { len: 1_000_000_000, max: 1000 }));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(chunked, 1000), Err(HttpError::LengthRequired));
        assert!(matches!(parse(b"\x00\x01garbage\r\n\r\n", 1000), Err(HttpError::Malformed(_))));
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &vec![b'a'; HEADER_BYTES_MAX + 1]].concat();
        assert_eq!(parse(&long, 1000), Err(HttpError::HeadersTooLarge));
        let bad_len = b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n";
        assert!(matches!(parse(bad_len, 1000), Err(HttpError::Malformed(_))));
        let r = parse(b"GET / HTTP/1.0\r\n\r\n", 10).unwrap().unwrap().0;
        assert!(!r.keep_alive, "HTTP/1.0 closes by default");
        let two = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 3\r\n\r\nhello";
        assert!(matches!(parse(two, 1000), Err(HttpError::Malformed(m)) if m.contains("two Content-Length")));
        let listed = b"POST / HTTP/1.1\r\nContent-Length: 5, 3\r\n\r\nhello";
        assert!(matches!(parse(listed, 1000), Err(HttpError::Malformed(_))));
        let same = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse(same, 1000).unwrap().unwrap().0.body, b"hello", "a repeated equal length is one length");
        let odd = b"POST / HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(parse(odd, 1000), Err(HttpError::ExpectationFailed("200-ok".into())));
    }

    #[test]
    fn the_head_says_whether_the_client_waits_for_continue() {
        let raw = b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 10\r\n\r\n";
        let info = head_info(raw, 100).unwrap().unwrap();
        assert_eq!(info, HeadInfo { total: raw.len() + 10, head_len: raw.len(), expect_continue: true });
        let empty = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n";
        assert!(!head_info(empty, 100).unwrap().unwrap().expect_continue, "nothing to wait for");
        let from =
            b"GET / HTTP/1.1\r\nOrigin: http://a.example\r\nHost: Localhost:7480\r\nSec-Fetch-Site: cross-site\r\n\r\n";
        let r = parse(from, 0).unwrap().unwrap().0;
        assert_eq!(r.origin.as_deref(), Some("http://a.example"));
        assert_eq!((r.host.as_deref(), r.sec_fetch_site.as_deref()), (Some("localhost:7480"), Some("cross-site")));
    }

    #[test]
    fn percent_decoding_tolerates_bad_escapes() {
        assert_eq!(decode_percent("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(decode_percent("%"), "%");
        assert_eq!(decode_percent("a+b"), "a b");
    }
}
