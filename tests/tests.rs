//! The integration tests: the real serv6 and cli6, started on `--port 0`,
//! over real TCP on loopback. One test crate, so the harness is compiled
//! once. The `stress` tests are slow and `#[ignore]`d: `make stress` runs them.

mod harness;

mod arrival;
mod cli6;
mod cli6_edges;
mod cluster;
mod docs;
mod examples;
mod exchange;
mod faults;
mod nginx;
mod operations;
mod outputs;
mod probe;
mod reliability;
mod rules;
mod serv6_cli;
mod service;
mod shutdown;
mod stress;
mod third_pass;
mod time_services;
