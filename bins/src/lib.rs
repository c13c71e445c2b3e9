//! `outpost`: the production shells around `outpost_core::Node` — the edge daemon, the
//! gateway and the operator CLI — plus the application protocols and a Rust client.
//!
//! Nothing here decides what is stored or sent: that is the core's. The shells move
//! bytes between the core and real files and sockets, keep time, and render status.

pub mod api;
pub mod binproto;
#[cfg(feature = "tokio-shell")]
pub mod certs;
pub mod cli;
pub mod client;
pub mod config;
pub mod driver;
pub mod e2e;
pub mod guard;
pub mod http;
pub mod keyed;
pub mod limits;
pub mod link;
pub mod lite;
pub mod peer;
#[cfg(feature = "tokio-shell")]
pub mod shell;
pub mod status;
pub mod store;
pub mod tls;
