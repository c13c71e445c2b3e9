//! A small blocking client of the binary protocol, for applications written in Rust and
//! for the tests.
//!
//! ```no_run
//! let mut c = outpost::client::Client::connect("127.0.0.1:7481")?;
//! let ack = c.produce("events", None, b"door opened")?;
//! println!("durable at offset {}", ack.seq);
//! # Ok::<(), outpost::client::ClientError>(())
//! ```
//!
//! A produce returns only once the record is durable on the device. For rate, batch
//! ([`Client::produce_batch`]: up to 1024 records per request) and pipeline:
//! [`Client::send`] or [`Client::send_batch`] many requests, then [`Client::recv`] their
//! answers (matched by id).

use crate::binproto::{
    self, Code, KeyedCall, ReadOption, Record, RecordResult, Request, Response, WriteOp, RESPONSE_FRAME_MAX,
};
use outpost_core::config::Way;
use outpost_core::keyed_reads::SessionToken;
use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    Protocol(binproto::ProtoError),
    /// The daemon refused the request; `retryable` says whether the same request may
    /// succeed later (busy, storage full, recovering).
    Refused {
        code: Code,
        retryable: bool,
        message: String,
    },
    /// An answer that does not fit the request (a bug on one side).
    Unexpected(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "connection: {e}"),
            ClientError::Protocol(e) => write!(f, "protocol: {e}"),
            ClientError::Refused { code, retryable, message } => {
                write!(f, "refused ({code:?}{}): {message}", if *retryable { ", retryable" } else { "" })
            }
            ClientError::Unexpected(e) => write!(f, "unexpected answer: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl ClientError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Refused { retryable: true, .. })
    }
}

/// Where a produced record is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub seq: u64,
    pub hlc: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Records {
    pub records: Vec<Record>,
    pub next: u64,
    pub durable_end: u64,
}

pub struct Client {
    rd: BufReader<TcpStream>,
    wr: BufWriter<TcpStream>,
    next_id: u32,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Client { rd: BufReader::new(s.try_clone()?), wr: BufWriter::new(s), next_id: 0, buf: Vec::new() })
    }

    /// Connects and proves `token` (`api.token` of the daemon's file): a port with tokens
    /// serves nothing before.
    pub fn connect_with_token(addr: impl ToSocketAddrs, token: &str) -> Result<Client, ClientError> {
        let mut c = Client::connect(addr)?;
        match c.call(&Request::Auth { token: token.to_owned() })? {
            Response::Welcome => Ok(c),
            Response::Error { code, retryable, message } => Err(ClientError::Refused { code, retryable, message }),
            other => Err(ClientError::Unexpected(format!("{other:?} to an Auth"))),
        }
    }

    /// Queues a request (written on the next [`flush`](Self::flush) or [`recv`](Self::recv))
    /// and returns its id.
    pub fn send(&mut self, req: &Request) -> Result<u32, ClientError> {
        self.next_id = self.next_id.wrapping_add(1);
        self.buf.clear();
        binproto::encode_request(self.next_id, req, &mut self.buf);
        self.wr.write_all(&self.buf)?;
        Ok(self.next_id)
    }

    /// Queues a batch of 1 to [`binproto::PRODUCE_BATCH_RECORDS_MAX`] records (`(key,
    /// value)`) to `topic`, like [`send`](Self::send); [`into_results`] reads its answer.
    pub fn send_batch(&mut self, topic: &str, records: &[(Option<&[u8]>, &[u8])]) -> Result<u32, ClientError> {
        self.next_id = self.next_id.wrapping_add(1);
        self.buf.clear();
        binproto::encode_produce_batch(self.next_id, topic, records, &mut self.buf);
        self.wr.write_all(&self.buf)?;
        Ok(self.next_id)
    }

    pub fn flush(&mut self) -> Result<(), ClientError> {
        Ok(self.wr.flush()?)
    }

    /// The next answer, in the order the daemon sent them.
    pub fn recv(&mut self) -> Result<(u32, Response), ClientError> {
        self.wr.flush()?;
        let mut prefix = [0u8; 4];
        self.rd.read_exact(&mut prefix)?;
        let len = binproto::frame_len(prefix, RESPONSE_FRAME_MAX).map_err(ClientError::Protocol)?;
        let mut body = vec![0u8; len];
        self.rd.read_exact(&mut body)?;
        binproto::decode_response(&body).map_err(ClientError::Protocol)
    }

    fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let id = self.send(req)?;
        let (got, resp) = self.recv()?;
        if got != id {
            return Err(ClientError::Unexpected(format!("answer to request {got}, expected {id}")));
        }
        Ok(resp)
    }

    /// Writes one record; returns once it is durable.
    pub fn produce(&mut self, topic: &str, key: Option<&[u8]>, value: &[u8]) -> Result<Ack, ClientError> {
        let req = Request::Produce { topic: topic.into(), key: key.map(<[u8]>::to_vec), value: value.to_vec() };
        into_ack(self.call(&req)?)
    }

    /// Writes 1 to [`binproto::PRODUCE_BATCH_RECORDS_MAX`] records (`(key, value)`) in
    /// order; returns once each is durable or refused, with each record's result in order.
    /// What is stored of a batch is stored in its order; a refused record and those after
    /// it are resent as they are (docs/PROTOCOL.md, "ProduceBatch").
    pub fn produce_batch(
        &mut self,
        topic: &str,
        records: &[(Option<&[u8]>, &[u8])],
    ) -> Result<Vec<Result<Ack, ClientError>>, ClientError> {
        let id = self.send_batch(topic, records)?;
        let (got, resp) = self.recv()?;
        if got != id {
            return Err(ClientError::Unexpected(format!("answer to request {got}, expected {id}")));
        }
        into_results(resp, records.len())
    }

    /// Reads durable records of `topic` from offset `from`.
    pub fn fetch(&mut self, topic: &str, from: u64, max_records: u32, max_bytes: u32) -> Result<Records, ClientError> {
        self.fetch_way(topic, None, from, max_records, max_bytes)
    }

    /// Reads durable records of one half of a `both` topic (`way`), from offset `from`.
    pub fn fetch_way(
        &mut self,
        topic: &str,
        way: Option<Way>,
        from: u64,
        max_records: u32,
        max_bytes: u32,
    ) -> Result<Records, ClientError> {
        let req = Request::Fetch(binproto::FetchRequest { topic: topic.into(), way, from, max_records, max_bytes });
        match self.call(&req)? {
            Response::Records { next, durable_end, records } => Ok(Records { records, next, durable_end }),
            Response::Error { code, retryable, message } => Err(ClientError::Refused { code, retryable, message }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Writes `key` of keyed topic `topic` (docs/KEYED.md) with what this node has seen of
    /// it: `WriteOp::Put` to replace a register's value (a `keep-both` key's siblings too),
    /// `Delete`, or an operation of a convergent type. Returns once it is durable.
    pub fn keyed_write(&mut self, topic: &str, key: &[u8], op: WriteOp) -> Result<Ack, ClientError> {
        let call = KeyedCall::Write { key: key.to_vec(), op, session: None };
        into_ack(self.call(&Request::Keyed { topic: topic.into(), call })?)
    }

    /// [`Client::keyed_write`] within a session (docs/KEYED.md, "Reads"): once it is
    /// durable, `session` holds this write too, so the session's causal reads, at any
    /// node, see it. The answer's JSON: `offset`, `hlc`, `token`.
    pub fn keyed_write_in(
        &mut self,
        session: &mut SessionToken,
        topic: &str,
        key: &[u8],
        op: WriteOp,
    ) -> Result<serde_json::Value, ClientError> {
        let mut token = Vec::new();
        session.encode(&mut token);
        let answer = self.keyed_answer(topic, KeyedCall::Write { key: key.to_vec(), op, session: Some(token) })?;
        *session = session_in(topic, &answer)?;
        Ok(answer)
    }

    /// What `key` of keyed topic `topic` answers at this node (`eventual`): the JSON of
    /// docs/PROTOCOL.md ("Keyed topics"): `found`, and `value`, `siblings` or `elements`.
    pub fn keyed_get(&mut self, topic: &str, key: &[u8]) -> Result<serde_json::Value, ClientError> {
        self.keyed_read(topic, key, ReadOption::Eventual)
    }

    /// What `key` answers at consistency `read`; a read this node cannot answer so is
    /// `ClientError::Refused` with code `NotYet` or `TooStale` (retryable) or `Incomplete`.
    pub fn keyed_read(&mut self, topic: &str, key: &[u8], read: ReadOption) -> Result<serde_json::Value, ClientError> {
        self.keyed_answer(topic, KeyedCall::Get { key: key.to_vec(), read })
    }

    /// A causal read within `session`: answered only once this node holds everything the
    /// session wrote and saw; `session` then holds what this node holds too.
    pub fn keyed_get_in(
        &mut self,
        session: &mut SessionToken,
        topic: &str,
        key: &[u8],
    ) -> Result<serde_json::Value, ClientError> {
        let mut token = Vec::new();
        session.encode(&mut token);
        let answer = self.keyed_read(topic, key, ReadOption::Causal(token))?;
        *session = session_in(topic, &answer)?;
        Ok(answer)
    }

    /// The newest `max` conflicts the merge of keyed topic `topic` recorded at this node.
    pub fn conflicts(&mut self, topic: &str, max: usize) -> Result<serde_json::Value, ClientError> {
        self.keyed_answer(topic, KeyedCall::Conflicts { max })
    }

    fn keyed_answer(&mut self, topic: &str, call: KeyedCall) -> Result<serde_json::Value, ClientError> {
        match self.call(&Request::Keyed { topic: topic.into(), call })? {
            Response::Answer(json) => serde_json::from_str(&json)
                .map_err(|e| ClientError::Unexpected(format!("an answer that is not JSON ({e}): {json}"))),
            Response::Error { code, retryable, message } => Err(ClientError::Refused { code, retryable, message }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// The session token an answer of keyed topic `topic` carries.
fn session_in(topic: &str, answer: &serde_json::Value) -> Result<SessionToken, ClientError> {
    let text = answer["token"].as_str().ok_or_else(|| ClientError::Unexpected(format!("no token in {answer}")))?;
    SessionToken::from_text(topic, text).map_err(|e| ClientError::Unexpected(format!("token {text:?}: {e}")))
}

/// The acknowledgement in an answer to a produce.
pub fn into_ack(resp: Response) -> Result<Ack, ClientError> {
    match resp {
        Response::Acked { seq, hlc } => Ok(Ack { seq, hlc }),
        Response::Error { code, retryable, message } => Err(ClientError::Refused { code, retryable, message }),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// The results in an answer to a batch of `records` produces: one per record, in order. A
/// whole-request refusal (an unknown topic) is the `Err`.
pub fn into_results(resp: Response, records: usize) -> Result<Vec<Result<Ack, ClientError>>, ClientError> {
    match resp {
        Response::Results(results) if results.len() == records => Ok(results
            .into_iter()
            .map(|r| match r {
                RecordResult::Acked { seq, hlc } => Ok(Ack { seq, hlc }),
                RecordResult::Refused { code, retryable, message } => {
                    Err(ClientError::Refused { code, retryable, message })
                }
            })
            .collect()),
        Response::Error { code, retryable, message } => Err(ClientError::Refused { code, retryable, message }),
        other => Err(ClientError::Unexpected(format!("{other:?} answering a batch of {records} records"))),
    }
}
