//! serv6 and cli6: a TCP server that tells each client when it received its
//! message, and the client that asks it.
//!
//! The binaries in `src/bin` only call [`server::main`] and [`client::main`].
//! [`protocol`] is the wire contract both sides share; everything else is
//! private to the crate, in small modules with one job each.
//!
//! It builds wherever the standard library has its Unix interfaces (Linux,
//! macOS, the BSDs): `platform` is the one place that knows which system
//! it runs on.

// The portable build is given `-F unsafe_code` (the Makefile): a `deny`
// after that `forbid` is an error before Rust 1.81.
#![cfg_attr(not(serv6_portable), deny(unsafe_code))]
#![warn(missing_docs)]

mod addr;
pub mod client;
mod cmdline;
mod escape;
mod output;
mod platform;
pub mod protocol;
pub mod server;
mod sync;
pub mod timestamp;

/// The listen backlog, as serv6 sets it: public for the benchmark alone,
/// whose bare floor server must queue connections as serv6 does.
#[doc(hidden)]
pub use platform::set_backlog;
mod words;

#[cfg(test)]
#[path = "../tests/harness/rng.rs"]
mod rng;
#[cfg(test)]
#[path = "../tests/harness/skip.rs"]
mod skip;
