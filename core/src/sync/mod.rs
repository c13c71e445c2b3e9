//! Store-and-forward between a node and its peer, in both directions: edge to gateway
//! for topics that go up, gateway to edge for `cloud-to-edge` topics ([`downlinks`]).
//! The sender ([`uplink`]) and the receiver ([`ingest`]) are the same machines either
//! way; below, "edge" is the sender and "gateway" the receiver of the up direction.
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
pub mod downlinks;
pub mod ingest;
pub mod pace;
pub mod proto;
pub mod uplink;
