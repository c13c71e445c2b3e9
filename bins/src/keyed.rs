//! Keyed topics through the API (docs/KEYED.md, docs/PROTOCOL.md "Keyed topics"): what an
//! application asks of a key, what the node answers, and the JSON of both. The merge is the
//! core's (`outpost_core::keyed`); this module only names its answers for a transport.

use crate::api::text_or_hex;
use crate::binproto::{self, Code};
pub use crate::binproto::{KeyedCall, ReadOption, WriteOp};
use crate::http::{Request, Response};
use outpost_core::hlc::Hlc;
use outpost_core::io::{ProduceAck, ProduceError};
use outpost_core::keyed::{Conflict, KeyedError, KeyedState, OpKind, Value as KeyValue, Version};
use outpost_core::keyed_reads::{self, ReadRefused, ReadStamp, SessionToken, TokenError};
use outpost_core::types::NodeId;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Conflicts one answer lists at most when the client does not say.
pub const CONFLICTS_DEFAULT: usize = 100;

impl WriteOp {
    /// The core's operation; a delete's resets are filled in by `keyed_prepare`.
    pub fn kind(&self) -> OpKind<'_> {
        match self {
            WriteOp::Put(v) => OpKind::Put(v),
            WriteOp::Delete => OpKind::Delete(Vec::new()),
            WriteOp::Increment(n) => OpKind::Increment(*n),
            WriteOp::Max(n) => OpKind::Max(*n),
            WriteOp::Add(e) => OpKind::Add(e),
            WriteOp::Remove(e) => OpKind::Remove(e),
        }
    }
}

/// A node's answer to a [`KeyedCall`].
#[derive(Clone, Debug)]
pub enum KeyedAnswer {
    /// The topic has no conflict strategy.
    NotKeyed,
    Value(Value),
    /// A write's acknowledgement; with the session token it adds to, if one came.
    Written(Result<ProduceAck, ProduceError>, Option<SessionToken>),
    /// A read not answered at the consistency it asked for.
    NotRead(ReadRefused),
    /// A session token that does not decode (or is of another topic).
    BadToken(TokenError),
    /// The write is no operation of the topic's strategy, or the state has no room.
    Refused(KeyedError),
    Conflicts(Value),
}

/// Names of origins, for answers: the node's own and those the shell knows.
pub struct Names<'a> {
    pub known: &'a BTreeMap<NodeId, String>,
    pub own: (NodeId, &'a str),
}

impl Names<'_> {
    fn of(&self, id: NodeId) -> String {
        match self.known.get(&id) {
            Some(name) => name.clone(),
            None if id == self.own.0 => self.own.1.to_owned(),
            None => id.to_string(),
        }
    }
}

fn object(fields: impl IntoIterator<Item = (String, Value)>) -> Value {
    Value::Object(fields.into_iter().collect())
}

fn hlc_text(hlc: Hlc) -> Value {
    Value::String(hlc.to_string())
}

/// What `key` answers in `state`, with the consistency it was read at (`read`) and what
/// the read states (`stamp`: the session token, the time, the staleness). `null` value
/// fields never appear: an absent key is `"found": false`.
pub fn key_json(
    topic: &str,
    state: &KeyedState,
    key: &[u8],
    names: &Names<'_>,
    read: &ReadOption,
    stamp: &ReadStamp,
) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("topic".into(), topic.into());
    let (k, v) = text_or_hex(key, "key");
    o.insert(k, v);
    o.insert("strategy".into(), state.strategy().name().into());
    let consistency = match read {
        ReadOption::Eventual => "eventual",
        ReadOption::Causal(_) => "causal",
        ReadOption::Bounded { .. } => "bounded",
    };
    o.insert("consistency".into(), consistency.into());
    o.insert("token".into(), stamp.token.to_text().into());
    o.insert("as_of_ms".into(), stamp.as_of_ms.into());
    if let Some(s) = stamp.staleness_ms {
        o.insert("staleness_ms".into(), s.into());
    }
    let value = state.get(key);
    o.insert("found".into(), (!matches!(value, KeyValue::Absent)).into());
    match value {
        KeyValue::Absent => {}
        KeyValue::Bytes(b) => {
            let (k, v) = text_or_hex(b, "value");
            o.insert(k, v);
        }
        KeyValue::Siblings(versions) => {
            o.insert("siblings".into(), siblings_json(&versions, names));
        }
        KeyValue::Merged(b) => {
            let (k, v) = text_or_hex(&b, "value");
            o.insert(k, v);
            o.insert("merged".into(), true.into());
        }
        KeyValue::MergeFailed(error, versions) => {
            o.insert("merge_error".into(), error.to_string().into());
            o.insert("siblings".into(), siblings_json(&versions, names));
        }
        KeyValue::Number(n) => {
            o.insert("value".into(), n.into());
        }
        KeyValue::Elements(elements) => {
            let items = elements.iter().map(|e| object([text_or_hex(e, "element")])).collect();
            o.insert("elements".into(), Value::Array(items));
        }
    }
    Value::Object(o)
}

/// Concurrent versions as a reader sees them, in dot order; a deletion among them (a
/// failed custom merge answers every version) has `"deleted": true` and no value.
fn siblings_json(versions: &[&Version], names: &Names<'_>) -> Value {
    let items = versions
        .iter()
        .map(|v| {
            let value = match v.value.as_deref() {
                Some(b) => text_or_hex(b, "value"),
                None => ("deleted".into(), true.into()),
            };
            object([
                value,
                ("origin".into(), names.of(v.dot.origin).into()),
                ("origin_seq".into(), v.dot.seq.into()),
                ("hlc".into(), hlc_text(v.hlc)),
            ])
        })
        .collect();
    Value::Array(items)
}

fn conflict_json(c: &Conflict, names: &Names<'_>) -> Value {
    let dot = |origin: NodeId, seq: u64| json!({ "origin": names.of(origin), "origin_seq": seq });
    let versions: Vec<Value> = c
        .versions
        .iter()
        .map(|&(d, hlc, deleted)| {
            json!({ "origin": names.of(d.origin), "origin_seq": d.seq, "hlc": hlc.to_string(), "deleted": deleted })
        })
        .collect();
    let mut o = object([text_or_hex(&c.key, "key")]);
    let map = o.as_object_mut().expect("an object");
    map.insert("strategy".into(), c.strategy.name().into());
    map.insert("versions".into(), Value::Array(versions));
    map.insert("winner".into(), c.winner.map_or(Value::Null, |w| dot(w.origin, w.seq)));
    o
}

/// The newest `max` conflicts `state` kept, oldest first, with the count of all it saw.
pub fn conflicts_json(topic: &str, state: &KeyedState, max: usize, names: &Names<'_>) -> Value {
    let kept: Vec<&Conflict> = state.conflicts().collect();
    let shown = &kept[kept.len().saturating_sub(max)..];
    json!({
        "topic": topic,
        "strategy": state.strategy().name(),
        "conflicts_total": state.conflicts_total(),
        "conflicts_kept": kept.len(),
        "conflicts": shown.iter().map(|c| conflict_json(c, names)).collect::<Vec<_>>(),
    })
}

fn bad(message: &str) -> Response {
    Response::error(400, "bad_request", false, message)
}

/// The write a `POST /v1/topics/{topic}/keys/{key}` body asks for: one of
/// `{"increment": n}`, `{"max": n}`, `{"add": "e"}`, `{"remove": "e"}`.
fn op_of_body(req: &Request) -> Result<WriteOp, Response> {
    const FORMS: &str = "{\"increment\": N}, {\"max\": N}, {\"add\": \"element\"} or {\"remove\": \"element\"}";
    let v: Value = serde_json::from_slice(&req.body).map_err(|e| bad(&format!("body is not valid JSON: {e}")))?;
    let Some((name, arg)) = v.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()) else {
        return Err(bad(&format!("the body names one operation: {FORMS}")));
    };
    let number = || arg.as_i64().ok_or_else(|| bad(&format!("{name:?} takes a whole number (i64), not {arg}")));
    let element = || match arg {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        other => Err(bad(&format!("{name:?} takes a string, not {other}"))),
    };
    Ok(match name.as_str() {
        "increment" => WriteOp::Increment(number()?),
        "max" => WriteOp::Max(number()?),
        "add" => WriteOp::Add(element()?),
        "remove" => WriteOp::Remove(element()?),
        other => return Err(bad(&format!("unknown operation {other:?}; expected {FORMS}"))),
    })
}

/// The session token of a request (`?token=`, as an answer gave it), as bytes.
fn token_param(req: &Request) -> Result<Option<Vec<u8>>, Response> {
    let Some(text) = req.param("token") else { return Ok(None) };
    keyed_reads::bytes_of_text(text).map(Some).map_err(|e| Response::error(400, "bad_token", false, &e.to_string()))
}

/// The consistency a `GET` asks for: `?consistency=eventual` (the default), `causal`
/// (with `token`, or none for a new session) or `bounded` (with `max_staleness_ms`).
fn read_option(req: &Request) -> Result<ReadOption, Response> {
    match req.param("consistency").unwrap_or("eventual") {
        "eventual" => Ok(ReadOption::Eventual),
        "causal" => Ok(ReadOption::Causal(token_param(req)?.unwrap_or_default())),
        "bounded" => match req.param("max_staleness_ms").map(str::parse::<u64>) {
            Some(Ok(staleness_max_ms)) => Ok(ReadOption::Bounded { staleness_max_ms }),
            Some(Err(_)) => Err(bad("max_staleness_ms is a whole number of milliseconds")),
            None => Err(bad("a bounded read names its bound: max_staleness_ms=N (milliseconds)")),
        },
        "strong" => Err(Response::error(
            501,
            "not_built",
            false,
            "strong reads go through a site's Raft, and the daemon runs no site cluster yet; read causal or bounded",
        )),
        other => Err(bad(&format!("consistency {other:?}; expected eventual, causal or bounded"))),
    }
}

/// The call of a request to `/v1/topics/{topic}/keys/{key}`.
pub fn key_call(method: &str, key: &str, req: &Request) -> Result<KeyedCall, Response> {
    if key.is_empty() {
        return Err(bad("the key is empty; a keyed topic's records each name a key"));
    }
    let key = key.as_bytes().to_vec();
    let write = |op| Ok(KeyedCall::Write { key: key.clone(), op, session: token_param(req)? });
    match method {
        "GET" => Ok(KeyedCall::Get { key: key.clone(), read: read_option(req)? }),
        "PUT" => write(WriteOp::Put(req.body.clone())),
        "DELETE" => write(WriteOp::Delete),
        "POST" => write(op_of_body(req)?),
        _ => unreachable!("the router passes only the methods this route serves"),
    }
}

/// A session token's bytes from a call: empty for a new session of `topic`.
pub fn session_of(topic: &str, bytes: &[u8]) -> Result<SessionToken, TokenError> {
    if bytes.is_empty() {
        return Ok(SessionToken::new(topic));
    }
    SessionToken::decode_of(topic, bytes)
}

/// Why a read was not answered, as an HTTP status, error name, binary code and whether
/// asking again may answer.
fn not_read_kind(r: &ReadRefused) -> (u16, &'static str, Code, bool) {
    match r {
        ReadRefused::NotYet { .. } => (409, "not_yet", Code::NotYet, true),
        ReadRefused::TooStale { .. } => (409, "too_stale", Code::TooStale, true),
        ReadRefused::Incomplete(_) => (503, "incomplete", Code::Incomplete, false),
        ReadRefused::OtherTopic => (400, "bad_token", Code::BadRequest, false),
    }
}

/// A write's JSON: the produce's, and the session's token with it.
fn written_json(topic: &str, ack: &ProduceAck, token: &SessionToken) -> Value {
    let mut v = crate::api::produce_json(topic, &Ok(*ack));
    if let Some(o) = v.as_object_mut() {
        o.insert("token".into(), token.to_text().into());
    }
    v
}

/// The HTTP answer to a keyed call on `topic`.
pub fn answer_http(topic: &str, answer: KeyedAnswer) -> Response {
    match answer {
        KeyedAnswer::NotKeyed => Response::error(
            409,
            "not_keyed",
            false,
            &format!(
                "topic {topic:?} is not keyed: give it a conflict strategy (conflict = \"...\" in its [[topics]])"
            ),
        ),
        KeyedAnswer::Value(v) => Response::json(200, &v),
        KeyedAnswer::Conflicts(v) => Response::json(200, &v),
        KeyedAnswer::Refused(e @ KeyedError::Full { .. }) => Response::error(507, "keyed_full", false, &e.to_string()),
        KeyedAnswer::Refused(e) => Response::error(400, "invalid", false, &e.to_string()),
        KeyedAnswer::Written(Ok(ack), Some(token)) => Response::json(200, &written_json(topic, &ack, &token)),
        KeyedAnswer::Written(r, _) => crate::api::produce_http(topic, &[r], false),
        KeyedAnswer::NotRead(r) => {
            let (status, name, _, retryable) = not_read_kind(&r);
            Response { retry_after: retryable.then_some(1), ..Response::error(status, name, retryable, &r.to_string()) }
        }
        KeyedAnswer::BadToken(e) => Response::error(400, "bad_token", false, &e.to_string()),
    }
}

/// The binary protocol's answer to a keyed call on `topic`: Acked for a write (Answer, the
/// HTTP answer's JSON, for one that came with a session token), Answer for a read, Error
/// with the HTTP answer's message.
pub fn answer_binary(topic: &str, answer: KeyedAnswer) -> binproto::Response {
    let error = |code, message: String| binproto::Response::Error { code, retryable: false, message };
    match answer {
        KeyedAnswer::Value(v) | KeyedAnswer::Conflicts(v) => binproto::Response::Answer(v.to_string()),
        KeyedAnswer::Written(Ok(ack), Some(token)) => {
            binproto::Response::Answer(written_json(topic, &ack, &token).to_string())
        }
        KeyedAnswer::Written(r, _) => crate::api::produce_binary(&r),
        KeyedAnswer::NotRead(r) => {
            let (_, _, code, retryable) = not_read_kind(&r);
            binproto::Response::Error { code, retryable, message: r.to_string() }
        }
        KeyedAnswer::BadToken(e) => error(Code::BadRequest, e.to_string()),
        KeyedAnswer::Refused(e @ KeyedError::Full { .. }) => error(Code::KeyedFull, e.to_string()),
        KeyedAnswer::Refused(e) => error(Code::BadRequest, e.to_string()),
        KeyedAnswer::NotKeyed => error(Code::NotKeyed, not_keyed(topic)),
    }
}

fn not_keyed(topic: &str) -> String {
    format!("topic {topic:?} is not keyed: give it a conflict strategy (conflict = \"...\" in its [[topics]])")
}
