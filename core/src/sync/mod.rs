//! Store-and-forward from edge to gateway.
//!
//! The edge side ([`uplink`]) opens a session with a Hello listing its topics; the
//! gateway ([`ingest`]) answers with its durable high-water mark per stream, so the edge
//! resumes exactly where the gateway's durable state ends. The edge then reads durable
//! records from its log, sends them in bounded, compressed batches under a byte window,
//! and the gateway appends them to its own log and acknowledges by high-water mark once
//! they are durable there. The gateway keeps each identity (origin, topic, seq) once:
//! anything below its high-water mark is dropped as a duplicate, anything above it is a
//! gap and is refused, so the edge goes back to the gateway's mark.

pub mod bucket;
pub mod ingest;
pub mod proto;
pub mod uplink;
