//! A test that cannot run here, or not all of it, says why with
//! [`skipped`]. Cargo shows a passing test's output only on request, so the
//! skip is also recorded for `make test`'s total, which counts the test as
//! skipped rather than passed: a line `<test>\t<why>` appended to the file
//! that `SERV6_SKIPS` names (`make test` sets it, under the target
//! directory). Shared by the library's unit tests and the integration
//! tests, which include this file by path.

use std::fmt::Display;
use std::io::Write;

/// Prints `skipped: <why>` and records it against the running test.
pub fn skipped(why: impl Display) {
    println!("skipped: {why}");
    let Some(path) = std::env::var_os("SERV6_SKIPS") else {
        return;
    };
    // libtest runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("unnamed");
    let build = if cfg!(serv6_portable) { "portable " } else { "" };
    // One write of the whole line: appends from parallel tests never mix.
    let line = format!("{build}{test}\t{}\n", why.to_string().replace('\n', " "));
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
    if let Err(e) = file.and_then(|mut f| f.write_all(line.as_bytes())) {
        println!("(could not record the skip in {path:?}: {e})");
    }
}
