//! `outpost-core`: the sans-IO state machines of Outpost.
//!
//! Architecture Invariant: this crate does no I/O, reads no clock, spawns no thread and
//! draws no unseeded randomness. Time, bytes and seeds come in as values; disk requests,
//! messages, replies and events go out as values (see [`io`]). So it cannot fail on I/O,
//! and the simulator sees every decision it makes.
//!
//! The driver's rule: after every [`Node::handle`] or [`Node::handle_timeout`], drain
//! [`Node::poll_output`] until it returns `None`, perform each output, then call again at
//! [`Node::poll_timeout`] or on the next input.

#![forbid(unsafe_code)]

pub(crate) mod checkpoint;
pub mod codec;
pub(crate) mod commit;
pub mod config;
pub mod detector;
pub(crate) mod effects;
pub mod fetch;
pub mod hlc;
pub mod hold;
pub mod io;
pub mod keyed;
pub mod keyed_checkpoint;
pub mod keyed_fanout;
pub mod keyed_reads;
pub mod keyed_topics;
pub(crate) mod keys;
pub mod log;
pub mod marks;
pub mod memory;
pub mod meta;
pub mod node;
pub mod raft;
pub(crate) mod recovery;
pub mod resources;
pub mod site;
pub(crate) mod space;
pub mod sync;
pub mod types;

pub use node::{Node, NodeSeed, NodeStats};
