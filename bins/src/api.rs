//! The application and admin API, independent of transport: HTTP requests become [`Call`]s,
//! the core's answers become HTTP responses or binary-protocol answers. docs/PROTOCOL.md
//! ("Application protocols") documents every route.

use crate::binproto::{self, Code, FetchRequest};
use crate::http::{Request, Response};
use crate::keyed::{self, KeyedCall};
use outpost_core::config::{Role, TopicLookupError, TopicNames, Way};
use outpost_core::io::{Control, FetchError, Fetched, ProduceAck, ProduceError};
use outpost_core::types::TopicIdx;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};

/// Records one HTTP batch may carry at most.
pub const BATCH_RECORDS_MAX: usize = 10_000;
/// Records one fetch returns at most when the client does not say.
pub const FETCH_RECORDS_DEFAULT: u32 = 100;
/// Records one fetch returns at most.
pub const FETCH_RECORDS_MAX: u32 = 10_000;

/// A view of the node's state, answered from one status snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    Health,
    Metrics,
    Topics,
    Status,
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Show(Show),
    /// `batch`: the body was `{"records": [...]}` and the answer lists each result.
    Produce {
        topic: String,
        records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
        batch: bool,
    },
    /// `way`: which half of a `both` topic (`?direction=up|down`).
    Fetch(FetchRequest),
    Control(Control),
    /// A key of a keyed topic, or its conflict log.
    Keyed {
        topic: String,
        call: KeyedCall,
    },
}

const ROUTES: &str = "GET /health, GET /metrics, GET /v1/topics, POST /v1/topics/{topic}/records, \
                      GET /v1/topics/{topic}/records?from=N&max=N[&direction=up|down], \
                      GET|PUT|DELETE|POST /v1/topics/{topic}/keys/{key}, GET /v1/topics/{topic}/conflicts?max=N, \
                      GET /v1/admin/status, POST /v1/admin/sync/{pause|resume|now}";

fn bad(message: &str) -> Response {
    Response::error(400, "bad_request", false, message)
}

fn json_value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => serde_json::to_vec(other).expect("JSON values serialize"),
    }
}

fn json_record(v: &Value, at: &str) -> Result<(Option<Vec<u8>>, Vec<u8>), Response> {
    let Some(obj) = v.as_object() else {
        return Err(bad(&format!("{at}: a record is an object {{\"value\": ..., \"key\": \"...\"}}")));
    };
    if let Some(k) = obj.keys().find(|k| *k != "key" && *k != "value") {
        return Err(bad(&format!("{at}: unknown field {k:?}; a record has \"value\" and optionally \"key\"")));
    }
    let value = obj.get("value").ok_or_else(|| bad(&format!("{at}: \"value\" is missing")))?;
    let key = match obj.get("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Some(_) => return Err(bad(&format!("{at}: \"key\" must be a string"))),
    };
    Ok((key, json_value_bytes(value)))
}

fn produce_call(topic: String, req: &Request) -> Result<Call, Response> {
    let is_json = req.content_type.as_deref().is_some_and(|t| t.starts_with("application/json"));
    if !is_json {
        let key = req.key.clone().or_else(|| req.param("key").map(|k| k.as_bytes().to_vec()));
        return Ok(Call::Produce { topic, records: vec![(key, req.body.clone())], batch: false });
    }
    let v: Value = serde_json::from_slice(&req.body).map_err(|e| bad(&format!("body is not valid JSON: {e}")))?;
    match v.get("records") {
        Some(Value::Array(items)) => {
            if items.is_empty() || items.len() > BATCH_RECORDS_MAX {
                return Err(bad(&format!(
                    "\"records\" must hold 1 to {BATCH_RECORDS_MAX} records, not {}",
                    items.len()
                )));
            }
            let records = items
                .iter()
                .enumerate()
                .map(|(i, r)| json_record(r, &format!("records[{i}]")))
                .collect::<Result<_, _>>()?;
            Ok(Call::Produce { topic, records, batch: true })
        }
        Some(_) => Err(bad("\"records\" must be an array")),
        None => Ok(Call::Produce { topic, records: vec![json_record(&v, "body")?], batch: false }),
    }
}

fn number<T: std::str::FromStr>(req: &Request, name: &str, default: T) -> Result<T, Response> {
    match req.param(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| bad(&format!("query parameter {name}={v:?} is not a non-negative integer"))),
    }
}

/// Routes a request, or answers it at once when it is wrong.
pub fn route(req: &Request) -> Result<Call, Response> {
    let parts: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(1).collect();
    let method = req.method.as_str();
    let call = match (method, parts.as_slice()) {
        ("GET", ["health"]) => Call::Show(Show::Health),
        ("GET", ["metrics"]) => Call::Show(Show::Metrics),
        ("GET", ["v1", "topics"]) => Call::Show(Show::Topics),
        ("GET", ["v1", "admin", "status"]) => Call::Show(Show::Status),
        ("POST", ["v1", "admin", "sync", cmd]) => match *cmd {
            "pause" => Call::Control(Control::PauseSync),
            "resume" => Call::Control(Control::ResumeSync),
            "now" => Call::Control(Control::SyncNow),
            other => return Err(bad(&format!("unknown sync command {other:?}: pause, resume or now"))),
        },
        ("POST", ["v1", "topics", topic, "records"]) => produce_call(topic.to_string(), req)?,
        ("GET", ["v1", "topics", topic, "records"]) => {
            let from = number(req, "from", 0u64)?;
            let max_records = number(req, "max", FETCH_RECORDS_DEFAULT)?.clamp(1, FETCH_RECORDS_MAX);
            let max_bytes = number(req, "max_bytes", u32::MAX)?;
            let way = match req.param("direction") {
                None => None,
                Some(d) => Some(Way::parse(d).ok_or_else(|| {
                    bad(&format!(
                        "query parameter direction={d:?}: expected up (the records written at edges) or down \
                         (the records written at the top gateway)"
                    ))
                })?),
            };
            Call::Fetch(FetchRequest { topic: topic.to_string(), way, from, max_records, max_bytes })
        }
        ("GET" | "PUT" | "DELETE" | "POST", ["v1", "topics", topic, "keys", key @ ..]) if !key.is_empty() => {
            Call::Keyed { topic: topic.to_string(), call: keyed::key_call(method, &key.join("/"), req)? }
        }
        ("GET", ["v1", "topics", topic, "conflicts"]) => {
            let max = number(req, "max", keyed::CONFLICTS_DEFAULT)?;
            Call::Keyed { topic: topic.to_string(), call: KeyedCall::Conflicts { max } }
        }
        (_, ["health" | "metrics"] | ["v1", "topics"] | ["v1", "admin", "status"])
        | (_, ["v1", "admin", "sync", _] | ["v1", "topics", _, "records" | "conflicts"])
        | (_, ["v1", "topics", _, "keys", _, ..]) => {
            return Err(Response::error(
                405,
                "method_not_allowed",
                false,
                &format!("{method} is not allowed here; routes: {ROUTES}"),
            ))
        }
        _ => {
            return Err(Response::error(
                404,
                "not_found",
                false,
                &format!("no route {method} {}; routes: {ROUTES}", req.path),
            ))
        }
    };
    Ok(call)
}

/// The answer to a view of the node's state, from one snapshot.
pub fn show_http(show: Show, s: &crate::status::Status) -> Response {
    match show {
        Show::Health => {
            let (state, reasons) = crate::status::health(s);
            let code = if state == "unhealthy" { 503 } else { 200 };
            Response::json(code, &json!({ "status": state, "reasons": reasons, "node": s.node, "role": s.role }))
        }
        Show::Metrics => Response::text(200, "text/plain; version=0.0.4", crate::status::render_metrics(s)),
        Show::Status => Response::json(200, &serde_json::to_value(s).expect("status serializes")),
        Show::Topics => Response::json(200, &json!({ "topics": s.topics })),
    }
}

/// The answer to an operator's sync command, once the node has it.
pub fn control_http(c: Control) -> Response {
    Response::json(200, &json!({ "ok": true, "command": format!("{c:?}") }))
}

/// The answer to a request whose body did not find room in the ingress budget in time.
pub fn busy_ingress() -> Response {
    Response::error(
        503,
        "busy",
        true,
        "the daemon's buffers for request bodies are full (other large requests are being read); retry shortly",
    )
}

/// The answer to a request that did not arrive whole by its deadline, `took` after it began.
pub fn request_late(took: std::time::Duration) -> Response {
    Response::error(
        408,
        "request_timeout",
        false,
        &format!(
            "the request did not arrive whole in time ({:.0} s; after {} s a request must keep up {} KiB/s)",
            took.as_secs_f64(),
            crate::guard::REQUEST_GRACE.as_secs(),
            crate::guard::REQUEST_MIN_RATE_BYTES_PER_SEC >> 10
        ),
    )
}

/// A sync command sent to a node that has no sync to command (a gateway does not sync
/// up), refused rather than answered "ok" for nothing.
pub fn control_refused(role: Role) -> Option<Response> {
    (role == Role::Gateway).then(|| {
        Response::error(
            409,
            "not_an_edge",
            false,
            "this node is a gateway: it does not sync up, so there is nothing to pause, resume or sync now; \
             run the command against an edge",
        )
    })
}

/// What the local HTTP API refuses so that a web page open in a browser on the device
/// cannot drive it (CSRF): a request that says it comes from a page (`Origin`, or
/// `Sec-Fetch-Site` other than `none`/`same-origin`), unless that origin is listed in
/// `api.allowed_origins`; and, while the API listens on a loopback address, a `Host` that is
/// not this machine's (an IP address, `localhost`, `*.localhost`, or a name listed in
/// `api.allowed_hosts`), which is what a page whose own name was rebound to 127.0.0.1 sends
/// (DNS rebinding). Programs (curl, the CLI, the client library) send neither, and are served.
///
/// Tokens are [`ApiAuth`]'s.
/// Who may use the application and admin ports (`api.token`, `api.admin_token`): with no
/// tokens, whoever reaches them (the config loader allows that only on loopback); with
/// them, a request must carry one (HTTP `Authorization: Bearer`, the binary protocol's
/// Auth), and pause, resume and sync now the admin token. `/health` needs none, so that a
/// supervisor's probe needs no secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiAuth {
    token: Option<String>,
    admin: Option<String>,
}

impl std::fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiAuth {{ tokens: {} }}", self.token.is_some())
    }
}

/// What a binary connection does with a request ([`ApiAuth::gate_binary`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BinaryGate {
    /// Serve it.
    Serve,
    /// An Auth with a token of the port: answer Welcome; the connection is served from now.
    Welcome,
    /// Answer this and close the connection.
    Refuse(binproto::Response),
}

/// What an [`ApiAuth`] grants a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// No tokens configured, or the admin token: everything.
    All,
    /// The producers' token: all but the admin operations.
    Data,
    None,
}

impl ApiAuth {
    /// `token` and `admin` are both set or both unset (the config loader checks it).
    pub fn new(token: Option<String>, admin: Option<String>) -> ApiAuth {
        assert_eq!(token.is_some(), admin.is_some(), "the API's tokens come in pairs");
        ApiAuth { token, admin }
    }

    /// `api.admin_token`: what the operator CLI sends.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin.as_deref()
    }

    /// Whether a connection must prove a token before it is served.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    pub fn grant(&self, presented: Option<&str>) -> Grant {
        let matches = |want: &Option<String>| {
            want.as_deref().zip(presented).is_some_and(|(w, p)| crate::peer::tokens_match(w, p))
        };
        if !self.required() || matches(&self.admin) {
            Grant::All
        } else if matches(&self.token) {
            Grant::Data
        } else {
            Grant::None
        }
    }

    /// What a binary connection does with `req`, given whether it has proven a token.
    pub fn gate_binary(&self, authenticated: bool, req: &binproto::Request) -> BinaryGate {
        let refuse = |message: &str| {
            BinaryGate::Refuse(binproto::Response::Error {
                code: Code::Unauthorized,
                retryable: false,
                message: message.to_owned(),
            })
        };
        match req {
            binproto::Request::Auth { token } if self.grant(Some(token)) != Grant::None => BinaryGate::Welcome,
            binproto::Request::Auth { .. } => {
                tracing::warn!("binary connection refused: a wrong token");
                refuse("a wrong token: send api.token (or api.admin_token) of the daemon's file")
            }
            _ if authenticated || !self.required() => BinaryGate::Serve,
            _ => {
                tracing::warn!("binary connection refused: no token");
                refuse("this port needs api.token: send Auth first (outpost::client::Client::connect_with_token)")
            }
        }
    }

    /// `Err` with the 401 or 403 to send when `req`'s bearer token does not allow `call`.
    pub fn check_http(&self, req: &Request, call: &Call) -> Result<(), Response> {
        let grant = self.grant(req.bearer.as_deref());
        match (call, grant) {
            (_, Grant::All) | (Call::Show(Show::Health), _) => Ok(()),
            (Call::Control(_), Grant::Data) => Err(Response::error(
                403,
                "forbidden",
                false,
                "pause, resume and sync now need api.admin_token, not the producers' api.token",
            )),
            (_, Grant::Data) => Ok(()),
            (_, Grant::None) => {
                let why = if req.bearer.is_some() { "a wrong token" } else { "no token" };
                tracing::warn!(method = %req.method, path = %req.path, "API request refused: {why}");
                Err(Response::error(
                    401,
                    "unauthorized",
                    false,
                    &format!(
                        "{why}: this API needs `Authorization: Bearer TOKEN` with api.token (or api.admin_token) \
                         of the daemon's file"
                    ),
                ))
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrowserGuard {
    /// Check `Host` (the API listens on loopback only).
    pub check_host: bool,
    /// Lower-case origins (`http://dashboard.local:8080`) whose pages may call the API.
    pub allowed_origins: Vec<String>,
    /// Lower-case host names the API may be called by, besides IP addresses and localhost.
    pub allowed_hosts: Vec<String>,
}

impl BrowserGuard {
    pub fn new(http: SocketAddr, allowed_origins: &[String], allowed_hosts: &[String]) -> BrowserGuard {
        let lower = |v: &[String]| v.iter().map(|s| s.to_ascii_lowercase()).collect();
        BrowserGuard {
            check_host: http.ip().is_loopback(),
            allowed_origins: lower(allowed_origins),
            allowed_hosts: lower(allowed_hosts),
        }
    }

    /// `Err` with the 403 to send when `req` is one a web page made.
    pub fn check(&self, req: &Request) -> Result<(), Response> {
        let refuse = |why: String| Err(Response::error(403, "forbidden", false, &why));
        let allowed_origin =
            req.origin.as_ref().is_some_and(|o| self.allowed_origins.contains(&o.to_ascii_lowercase()));
        if let (Some(origin), false) = (&req.origin, allowed_origin) {
            return refuse(format!(
                "requests from web pages are refused (Origin: {origin}); programs on this device call the API \
                 without an Origin header; to let a page call it, list its origin in api.allowed_origins"
            ));
        }
        if let (Some(site), false) = (&req.sec_fetch_site, allowed_origin) {
            if site != "none" && site != "same-origin" {
                return refuse(format!(
                    "requests from web pages are refused (Sec-Fetch-Site: {site}); to let a page call the API, \
                     list its origin in api.allowed_origins"
                ));
            }
        }
        match &req.host {
            Some(host) if self.check_host && !self.host_allowed(host) => refuse(format!(
                "Host {host:?} is not this machine's; the API answers requests sent to an IP address, localhost \
                 or a name in api.allowed_hosts"
            )),
            _ => Ok(()),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(rest) => return rest.split(']').next().is_some_and(|ip| ip.parse::<IpAddr>().is_ok()),
            None => {
                host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
            }
        };
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.allowed_hosts.iter().any(|h| h == name)
    }
}

/// The answer to a request for a topic this node does not have.
pub fn unknown_topic(topic: &str, known: &[&str]) -> (Response, binproto::Response) {
    let msg = format!("no topic named {topic:?} on this node; it has: {}", known.join(", "));
    (
        Response::error(404, "unknown_topic", false, &msg),
        binproto::Response::Error { code: Code::UnknownTopic, retryable: false, message: msg },
    )
}

/// The topic a produce to `topic` writes (of a `both` topic, the half written here).
pub fn produce_topic(names: &TopicNames, topic: &str) -> Result<TopicIdx, (Response, binproto::Response)> {
    names.to_produce(topic).ok_or_else(|| unknown_topic(topic, &names.names()))
}

/// The topic a fetch of `topic` reads: a `both` topic's two halves are separate logs, so a
/// fetch of one says which (`direction`).
pub fn fetch_topic(
    names: &TopicNames,
    topic: &str,
    way: Option<Way>,
) -> Result<TopicIdx, (Response, binproto::Response)> {
    let msg = match names.to_fetch(topic, way) {
        Ok(t) => return Ok(t),
        Err(TopicLookupError::Unknown) => return Err(unknown_topic(topic, &names.names())),
        Err(TopicLookupError::WayNeeded) => format!(
            "topic {topic:?} goes both ways and keeps each way's records apart: fetch with direction=up (the \
             records written at edges) or direction=down (the records written at the top gateway)"
        ),
        Err(TopicLookupError::NotThatWay { way, sync }) => format!(
            "topic {topic:?} syncs {}, so nothing of it goes {}; fetch it without a direction",
            crate::status::sync_name(sync),
            way.name()
        ),
    };
    Err((
        Response::error(400, "bad_request", false, &msg),
        binproto::Response::Error { code: Code::BadRequest, retryable: false, message: msg },
    ))
}

/// HTTP status, code name and binary code of a refused produce.
fn produce_error_kind(e: &ProduceError) -> (u16, &'static str, Code) {
    match e {
        ProduceError::Recovering => (503, "recovering", Code::Recovering),
        ProduceError::Busy { .. } => (503, "busy", Code::Busy),
        ProduceError::TooLarge { .. } => (413, "too_large", Code::TooLarge),
        ProduceError::UnknownTopic(_) => (404, "unknown_topic", Code::UnknownTopic),
        ProduceError::NotAccepted => (405, "not_accepted", Code::NotAccepted),
        ProduceError::Clock(_) => (503, "clock", Code::Clock),
        ProduceError::Storage(_) => (503, "storage", Code::Storage),
        ProduceError::StorageFull { .. } => (503, "storage_full", Code::StorageFull),
        // The daemon runs no site cluster yet (its config refuses [mesh]), so strong
        // topics and these answers cannot occur here; the closest codes keep the match total.
        ProduceError::NoQuorum(_) => (503, "no_quorum", Code::Busy),
        ProduceError::SiteUnavailable { .. } => (503, "site_unavailable", Code::Busy),
        ProduceError::Unconfirmed { .. } => (504, "unconfirmed", Code::Storage),
        ProduceError::Invalid(_) => (400, "invalid", Code::BadRequest),
    }
}

fn produce_error_message(e: &ProduceError) -> String {
    e.to_string()
}

pub fn produce_binary(result: &Result<ProduceAck, ProduceError>) -> binproto::Response {
    match result {
        Ok(a) => binproto::Response::Acked { seq: a.seq, hlc: a.hlc.0 },
        Err(e) => binproto::Response::Error {
            code: produce_error_kind(e).2,
            retryable: e.is_retryable(),
            message: produce_error_message(e),
        },
    }
}

/// The binary answer to a batch of produces: each record's result, in order. A refusal
/// that repeats the record's before it (a batch stopped at a busy record) reuses its message.
pub fn produce_batch_binary(results: &[Result<ProduceAck, ProduceError>]) -> binproto::Response {
    let mut answered: Vec<binproto::RecordResult> = Vec::with_capacity(results.len());
    for (i, r) in results.iter().enumerate() {
        answered.push(match r {
            Ok(a) => binproto::RecordResult::Acked { seq: a.seq, hlc: a.hlc.0 },
            Err(e) => match (i.checked_sub(1).map(|p| &results[p]), answered.last()) {
                (Some(Err(before)), Some(same @ binproto::RecordResult::Refused { .. })) if before == e => same.clone(),
                _ => binproto::RecordResult::Refused {
                    code: produce_error_kind(e).2,
                    retryable: e.is_retryable(),
                    message: produce_error_message(e),
                },
            },
        });
    }
    binproto::Response::Results(answered)
}

pub(crate) fn produce_json(topic: &str, result: &Result<ProduceAck, ProduceError>) -> Value {
    match result {
        Ok(a) => json!({ "topic": topic, "offset": a.seq, "hlc": a.hlc.to_string() }),
        Err(e) => {
            json!({ "error": produce_error_message(e), "code": produce_error_kind(e).1, "retryable": e.is_retryable() })
        }
    }
}

/// The HTTP answer to a produce: one result, or (`batch`) every result in order. A batch
/// whose records were all acknowledged is 200; otherwise the status of its first refusal,
/// and the body says which records were stored.
pub fn produce_http(topic: &str, results: &[Result<ProduceAck, ProduceError>], batch: bool) -> Response {
    let first_err = results.iter().find_map(|r| r.as_ref().err());
    if !batch {
        let r = &results[0];
        return match first_err {
            None => Response::json(200, &produce_json(topic, r)),
            Some(e) => {
                let (status, code, _) = produce_error_kind(e);
                Response::error(status, code, e.is_retryable(), &produce_error_message(e))
            }
        };
    }
    let acked = results.iter().filter(|r| r.is_ok()).count();
    let body = json!({
        "topic": topic,
        "acked": acked,
        "refused": results.len() - acked,
        "results": results.iter().map(|r| produce_json(topic, r)).collect::<Vec<_>>(),
    });
    let status = first_err.map_or(200, |e| produce_error_kind(e).0);
    let retry_after = first_err.filter(|e| e.is_retryable()).map(|_| 1);
    Response { retry_after, ..Response::json(status, &body) }
}

fn fetch_error_kind(e: &FetchError) -> (u16, &'static str, Code, bool) {
    match e {
        FetchError::Recovering => (503, "recovering", Code::Recovering, true),
        FetchError::UnknownTopic(_) => (404, "unknown_topic", Code::UnknownTopic, false),
        FetchError::OutOfRange { .. } => (416, "out_of_range", Code::OutOfRange, false),
        FetchError::Busy { .. } => (503, "busy", Code::Busy, true),
        FetchError::Storage(_) => (503, "storage", Code::Storage, true),
        FetchError::Corrupted { .. } => (409, "corrupted", Code::Corrupted, false),
    }
}

pub(crate) fn text_or_hex(bytes: &[u8], field: &str) -> (String, Value) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (field.to_string(), Value::String(s.to_string())),
        Err(_) => (format!("{field}_hex"), Value::String(hex::encode(bytes))),
    }
}

/// `names`: node names by id; an origin not in it shows as `n<id>`.
pub fn fetch_http(result: &Result<Fetched, FetchError>, names: &std::collections::BTreeMap<u64, String>) -> Response {
    match result {
        Ok(f) => {
            let records: Vec<Value> = f
                .records
                .iter()
                .map(|r| {
                    let mut o = serde_json::Map::new();
                    o.insert("offset".into(), r.seq.into());
                    let origin = names.get(&r.origin.0).cloned().unwrap_or_else(|| r.origin.to_string());
                    o.insert("origin".into(), origin.into());
                    o.insert("origin_seq".into(), r.origin_seq.into());
                    o.insert("hlc".into(), r.hlc.to_string().into());
                    if let Some(k) = &r.key {
                        let (name, v) = text_or_hex(k, "key");
                        o.insert(name, v);
                    }
                    let (name, v) = text_or_hex(&r.value, "value");
                    o.insert(name, v);
                    Value::Object(o)
                })
                .collect();
            Response::json(200, &json!({ "records": records, "next": f.next, "durable_end": f.durable_end }))
        }
        Err(e) => {
            let (status, code, _, retryable) = fetch_error_kind(e);
            let mut r = Response::error(status, code, retryable, &e.to_string());
            if let FetchError::Corrupted { to, .. } = e {
                r = Response::json(
                    status,
                    &json!({ "error": e.to_string(), "code": code, "retryable": false, "next": to }),
                );
            }
            r
        }
    }
}

pub fn fetch_binary(result: Result<Fetched, FetchError>) -> binproto::Response {
    match result {
        Ok(f) => binproto::Response::Records {
            next: f.next,
            durable_end: f.durable_end,
            records: f
                .records
                .into_iter()
                .map(|r| binproto::Record {
                    seq: r.seq,
                    origin: r.origin.0,
                    origin_seq: r.origin_seq,
                    hlc: r.hlc.0,
                    key: r.key,
                    value: r.value,
                })
                .collect(),
        },
        Err(e) => {
            let (_, _, code, retryable) = fetch_error_kind(&e);
            binproto::Response::Error { code, retryable, message: e.to_string() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed::{ReadOption, WriteOp};

    fn req(method: &str, target: &str, content_type: Option<&str>, body: &[u8]) -> Request {
        let mut raw = format!("{method} {target} HTTP/1.1\r\ncontent-length: {}\r\n", body.len());
        if let Some(t) = content_type {
            raw.push_str(&format!("content-type: {t}\r\n"));
        }
        raw.push_str("\r\n");
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body);
        crate::http::parse(&bytes, 1 << 20).expect("valid").expect("complete").0
    }

    #[test]
    fn routes_produce_bodies_of_every_shape() {
        let raw = route(&req("POST", "/v1/topics/t/records?key=k", None, b"\x00\x01")).expect("routed");
        assert_eq!(
            raw,
            Call::Produce { topic: "t".into(), records: vec![(Some(b"k".to_vec()), vec![0, 1])], batch: false }
        );
        let one =
            route(&req("POST", "/v1/topics/t/records", Some("application/json"), br#"{"value":{"a":1},"key":"k"}"#));
        assert_eq!(
            one,
            Ok(Call::Produce {
                topic: "t".into(),
                records: vec![(Some(b"k".to_vec()), br#"{"a":1}"#.to_vec())],
                batch: false
            })
        );
        let batch = br#"{"records":[{"value":"x"},{"value":2,"key":null}]}"#;
        let many = route(&req("POST", "/v1/topics/t/records", Some("application/json"), batch));
        assert_eq!(
            many,
            Ok(Call::Produce {
                topic: "t".into(),
                records: vec![(None, b"x".to_vec()), (None, b"2".to_vec())],
                batch: true
            })
        );
    }

    #[test]
    fn routes_keyed_calls_with_keys_that_hold_slashes() {
        let keyed = |method: &str, path: &str, body: &[u8]| route(&req(method, path, Some("application/json"), body));
        let key = |k: &str| k.as_bytes().to_vec();
        assert_eq!(
            keyed("GET", "/v1/topics/t/keys/shelf/3", b""),
            Ok(Call::Keyed {
                topic: "t".into(),
                call: KeyedCall::Get { key: key("shelf/3"), read: ReadOption::Eventual }
            })
        );
        assert_eq!(
            keyed("GET", "/v1/topics/t/keys/k?consistency=causal&token=0a0b", b""),
            Ok(Call::Keyed {
                topic: "t".into(),
                call: KeyedCall::Get { key: key("k"), read: ReadOption::Causal(vec![10, 11]) }
            })
        );
        assert_eq!(
            keyed("GET", "/v1/topics/t/keys/k?consistency=bounded&max_staleness_ms=500", b""),
            Ok(Call::Keyed {
                topic: "t".into(),
                call: KeyedCall::Get { key: key("k"), read: ReadOption::Bounded { staleness_max_ms: 500 } }
            })
        );
        for (query, status) in [
            ("consistency=bounded", 400),
            ("consistency=causal&token=0G", 400),
            ("consistency=strong", 501),
            ("consistency=linear", 400),
        ] {
            let refused = keyed("GET", &format!("/v1/topics/t/keys/k?{query}"), b"").unwrap_err();
            assert_eq!(refused.status, status, "{query}");
        }
        assert_eq!(
            keyed("PUT", "/v1/topics/t/keys/k", b"v"),
            Ok(Call::Keyed {
                topic: "t".into(),
                call: KeyedCall::Write { key: key("k"), op: WriteOp::Put(key("v")), session: None }
            })
        );
        assert_eq!(
            keyed("DELETE", "/v1/topics/t/keys/k?token=01", b""),
            Ok(Call::Keyed {
                topic: "t".into(),
                call: KeyedCall::Write { key: key("k"), op: WriteOp::Delete, session: Some(vec![1]) }
            })
        );
        assert_eq!(
            keyed("POST", "/v1/topics/t/keys/k", br#"{"add": "e"}"#),
            Ok(Call::Keyed {
                topic: "t".into(),
                call: KeyedCall::Write { key: key("k"), op: WriteOp::Add(key("e")), session: None }
            })
        );
        assert_eq!(
            keyed("GET", "/v1/topics/t/conflicts?max=5", b""),
            Ok(Call::Keyed { topic: "t".into(), call: KeyedCall::Conflicts { max: 5 } })
        );
        assert_eq!(keyed("POST", "/v1/topics/t/keys/k", br#"{"add": "e", "remove": "f"}"#).unwrap_err().status, 400);
        assert_eq!(keyed("GET", "/v1/topics/t/keys", b"").unwrap_err().status, 404);
        assert_eq!(keyed("PATCH", "/v1/topics/t/keys/k", b"").unwrap_err().status, 405);
    }

    #[test]
    fn web_pages_are_refused_and_programs_served() {
        let guard = BrowserGuard::new(
            "127.0.0.1:7480".parse().unwrap(),
            &["http://Dash.example".into()],
            &["kiosk-7.lan".into()],
        );
        let with = |origin: Option<&str>, site: Option<&str>, host: Option<&str>| {
            let mut r = req("POST", "/v1/admin/sync/pause", None, b"");
            (r.origin, r.sec_fetch_site, r.host) = (origin.map(Into::into), site.map(Into::into), host.map(Into::into));
            guard.check(&r).map_err(|resp| resp.status)
        };
        assert_eq!(with(None, None, None), Ok(()), "curl");
        assert_eq!(with(None, None, Some("127.0.0.1:7480")), Ok(()));
        assert_eq!(with(None, None, Some("[::1]:7480")), Ok(()));
        assert_eq!(with(None, None, Some("localhost:7480")), Ok(()));
        assert_eq!(with(None, None, Some("kiosk-7.lan")), Ok(()), "a listed name");
        assert_eq!(with(None, Some("none"), Some("localhost")), Ok(()), "typed into the address bar");
        assert_eq!(with(Some("http://evil.example"), None, None), Err(403));
        assert_eq!(with(Some("null"), None, None), Err(403), "a sandboxed page");
        assert_eq!(with(None, Some("cross-site"), None), Err(403));
        assert_eq!(with(None, Some("same-site"), None), Err(403));
        assert_eq!(with(None, None, Some("evil.example:7480")), Err(403), "DNS rebinding");
        assert_eq!(with(Some("http://dash.example"), Some("cross-site"), None), Ok(()), "a listed origin");
        let open = BrowserGuard::new("0.0.0.0:7480".parse().unwrap(), &[], &[]);
        let mut r = req("GET", "/health", None, b"");
        r.host = Some("kiosk-7:7480".into());
        assert_eq!(open.check(&r).map_err(|r| r.status), Ok(()), "on a network interface, names are not checked");
    }

    #[test]
    fn refuses_bad_requests_with_what_to_do() {
        let status = |r: Result<Call, Response>| r.err().map(|r| (r.status, String::from_utf8(r.body).unwrap()));
        let (s, body) =
            status(route(&req("POST", "/v1/topics/t/records", Some("application/json"), b"{nope"))).unwrap();
        assert_eq!(s, 400);
        assert!(body.contains("not valid JSON"), "{body}");
        let (s, body) = status(route(&req(
            "POST",
            "/v1/topics/t/records",
            Some("application/json"),
            br#"{"records":[{"val":1}]}"#,
        )))
        .unwrap();
        assert_eq!(s, 400);
        assert!(body.contains("records[0]: unknown field \\\"val\\\""), "{body}");
        assert_eq!(status(route(&req("DELETE", "/v1/topics", None, b""))).unwrap().0, 405);
        assert_eq!(status(route(&req("GET", "/nope", None, b""))).unwrap().0, 404);
        let (s, body) = status(route(&req("GET", "/v1/topics/t/records?from=-1", None, b""))).unwrap();
        assert_eq!(s, 400);
        assert!(body.contains("from=\\\"-1\\\""), "{body}");
        let (s, body) = status(route(&req("GET", "/v1/topics/t/records?direction=sideways", None, b""))).unwrap();
        assert_eq!(s, 400);
        assert!(body.contains("expected up") && body.contains("or down"), "{body}");
    }

    #[test]
    fn a_fetch_of_a_both_topic_says_which_half() {
        let fetch = route(&req("GET", "/v1/topics/o/records?direction=down&from=4", None, b"")).expect("routed");
        let way = Some(Way::Down);
        assert_eq!(
            fetch,
            Call::Fetch(FetchRequest {
                topic: "o".into(),
                way,
                from: 4,
                max_records: FETCH_RECORDS_DEFAULT,
                max_bytes: u32::MAX
            })
        );
        let topics = vec![
            outpost_core::config::TopicConfig::new("o", outpost_core::config::SyncDirection::Bidirectional),
            outpost_core::config::TopicConfig::new("up", outpost_core::config::SyncDirection::EdgeToCloud),
        ];
        let mut cfg = outpost_core::config::NodeConfig::new(outpost_core::types::NodeId(1), Role::Edge, topics);
        cfg.split_both_ways();
        let names = cfg.topic_names();
        assert_eq!(fetch_topic(&names, "o", way).ok(), Some(TopicIdx(2)));
        assert_eq!(produce_topic(&names, "o").ok(), Some(TopicIdx(0)));
        let (http, binary) = fetch_topic(&names, "o", None).expect_err("a half must be named");
        assert_eq!(http.status, 400);
        assert!(matches!(binary, binproto::Response::Error { code: Code::BadRequest, .. }));
        let (http, _) = fetch_topic(&names, "up", way).expect_err("nothing of it goes down");
        assert!(String::from_utf8_lossy(&http.body).contains("syncs up, so nothing of it goes down"));
        assert_eq!(fetch_topic(&names, "nope", None).expect_err("unknown").0.status, 404);
    }
}
