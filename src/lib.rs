//! serv6 and cli6: a TCP server that tells each client when it received its
//! message, and the client that asks it.
//!
//! The binaries in `src/bin` only call [`server::main`] and [`client::main`].
//! [`protocol`] is the wire contract both sides share; everything else is
//! private to the crate, in small modules with one job each.
//!
//! It builds on 64-bit Linux alone (`x86_64`, `aarch64`, `riscv64`), whose
//! system interfaces `platform` calls; elsewhere the crate is empty, so
//! that `cargo run --example` still works for a student on another system.

#![cfg(all(
    target_os = "linux",
    target_pointer_width = "64",
    any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")
))]
#![deny(unsafe_code)]
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
