//! Keyed topics through the API (docs/KEYED.md, docs/PROTOCOL.md "Keyed topics"): what an
//! application asks of a key, what the node answers, and the JSON of both. The merge is the
//! core's (`outpost_core::keyed`); this module only names its answers for a transport.

use crate::api::text_or_hex;
use crate::binproto::{self, Code};
pub use crate::binproto::{KeyedCall, WriteOp};
use crate::http::{Request, Response};
use outpost_core::hlc::Hlc;
use outpost_core::io::{ProduceAck, ProduceError};
use outpost_core::keyed::{Conflict, KeyedError, KeyedState, OpKind, Value as KeyValue, Version};
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
    Written(Result<ProduceAck, ProduceError>),
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

/// What `key` answers in `state`, with the consistency it was read at. `null` value fields
/// never appear: an absent key is `"found": false`.
pub fn key_json(topic: &str, state: &KeyedState, key: &[u8], names: &Names<'_>) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("topic".into(), topic.into());
    let (k, v) = text_or_hex(key, "key");
    o.insert(k, v);
    o.insert("strategy".into(), state.strategy().name().into());
    o.insert("consistency".into(), "eventual".into());
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

/// The call of a request to `/v1/topics/{topic}/keys/{key}`.
pub fn key_call(method: &str, key: &str, req: &Request) -> Result<KeyedCall, Response> {
    if key.is_empty() {
        return Err(bad("the key is empty; a keyed topic's records each name a key"));
    }
    let key = key.as_bytes().to_vec();
    Ok(match method {
        "GET" => KeyedCall::Get { key },
        "PUT" => KeyedCall::Write { key, op: WriteOp::Put(req.body.clone()) },
        "DELETE" => KeyedCall::Write { key, op: WriteOp::Delete },
        "POST" => KeyedCall::Write { key, op: op_of_body(req)? },
        _ => unreachable!("the router passes only the methods this route serves"),
    })
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
        KeyedAnswer::Written(r) => crate::api::produce_http(topic, &[r], false),
    }
}

/// The binary protocol's answer to a keyed call on `topic`: Acked for a write, Answer
/// (the JSON of the HTTP answer) for a read, Error with the HTTP answer's message.
pub fn answer_binary(topic: &str, answer: KeyedAnswer) -> binproto::Response {
    let error = |code, message: String| binproto::Response::Error { code, retryable: false, message };
    match answer {
        KeyedAnswer::Value(v) | KeyedAnswer::Conflicts(v) => binproto::Response::Answer(v.to_string()),
        KeyedAnswer::Written(r) => crate::api::produce_binary(&r),
        KeyedAnswer::Refused(e @ KeyedError::Full { .. }) => error(Code::KeyedFull, e.to_string()),
        KeyedAnswer::Refused(e) => error(Code::BadRequest, e.to_string()),
        KeyedAnswer::NotKeyed => error(Code::NotKeyed, not_keyed(topic)),
    }
}

fn not_keyed(topic: &str) -> String {
    format!("topic {topic:?} is not keyed: give it a conflict strategy (conflict = \"...\" in its [[topics]])")
}
