//! serv6 and cli6: a TCP server that tells each client when it received its
//! message, and the client that asks it.
//!
//! The binaries in `src/bin` only call [`server::main`] and [`client::main`];
//! everything else lives in small modules with one job each.

pub mod args;
pub mod client;
pub mod escape;
pub mod framing;
pub mod report;
pub mod server;
pub mod signal;
pub mod timestamp;
