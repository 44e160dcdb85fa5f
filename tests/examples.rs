//! The two examples, `examples/servidor.rs` and `examples/cliente.rs`
//! (the original exercise's steps on `std::net`, LEEME.md's ladder to
//! serv6), against the real programs: the example server answers cli6,
//! and the example client asks serv6. What is checked is what a user sees.

use crate::harness::*;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime};

/// The example `name`, built by the cargo that runs these tests, in the
/// same target directory and profile, so that no stale build is run;
/// `None`, after saying why, if it cannot be built here.
fn example(name: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build_examples) {
        Ok(dir) => Some(dir.join(name)),
        Err(why) => {
            skipped(why);
            None
        }
    }
}

/// Runs `cargo build` for both examples; their directory, or why not.
/// A build that fails is a failing test, not a skip.
fn build_examples() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("no path to this test: {e}"))?;
    // This test is <target dir>/<profile>/deps/tests-<hash>.
    let profile_dir = exe.parent().and_then(Path::parent).ok_or("no target dir")?;
    let profile = profile_dir.file_name().and_then(|p| p.to_str());
    let target_dir = profile_dir.parent().ok_or("no target dir")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(env!("CARGO_MANIFEST_DIR")).args(["build", "--quiet"]);
    build.args(["--example", "servidor", "--example", "cliente", "--target-dir"]);
    build.arg(target_dir);
    match profile {
        Some("debug") => {}
        Some("release") => {
            build.arg("--release");
        }
        Some(other) => {
            build.args(["--profile", other]);
        }
        None => return Err(format!("no profile in {}", profile_dir.display())),
    }
    let out = build.output().map_err(|e| format!("cargo cannot be run: {e}"))?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = profile_dir.join("examples");
    if !dir.join("servidor").exists() || !dir.join("cliente").exists() {
        return Err(format!("cargo built the examples, but not in {}", dir.display()));
    }
    Ok(dir)
}

/// Runs a command to its end, at most [`PATIENCE`]: the examples have no
/// timeouts of their own.
fn run_within(command: &mut Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let pid = child.id().to_string();
    let (done, finished) = mpsc::channel();
    thread::spawn(move || done.send(child.wait_with_output()));
    match finished.recv_timeout(PATIENCE) {
        Ok(out) => out.expect("its output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("{command:?} did not finish within {PATIENCE:?}");
        }
    }
}

/// Checks `out` is one reply to `n` bytes, stamped about now (within a
/// few seconds: the example server's own calendar must be right too).
fn assert_reply_now(out: &[u8], n: usize) -> Timestamp {
    let at = assert_received(out, n);
    let off = match at.to_system_time().duration_since(SystemTime::now()) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    assert!(off < Duration::from_secs(30), "{:?} is not now", text(out));
    at
}

/// The example server on a free port, killed when dropped, with its
/// standard output (the log) line by line.
struct ExampleServer {
    child: Child,
    port: u16,
    log: mpsc::Receiver<String>,
}

impl ExampleServer {
    fn start(path: &Path) -> ExampleServer {
        let mut child = Command::new(path)
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example server starts");
        let said = lines_of(child.stderr.take().expect("piped"));
        let log = lines_of(child.stdout.take().expect("piped"));
        let line = said.recv_timeout(PATIENCE).expect("it says where it listens");
        let port = line
            .strip_prefix("servidor: escuchando en 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("not a listening line: {line:?}"));
        ExampleServer { child, port, log }
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each line of `stream`, without its LF, on a channel.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn the_example_server_answers_cli6() {
    let Some(path) = example("servidor") else {
        return;
    };
    let server = ExampleServer::start(&path);
    let port = server.port.to_string();
    let out = cli6(&["-4", "-p", &port, "hola"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let at = assert_reply_now(&out.stdout, 4);
    // Its log line, as the student sees it in the server's terminal.
    let logged = server.log.recv_timeout(PATIENCE).expect("a log line");
    let (stamp, rest) = logged.split_once(' ').expect("a stamp first");
    assert_eq!(stamp, at.to_string(), "{logged}");
    assert!(rest.ends_with(" 4 bytes \"hola\""), "{logged}");
    // One exchange per line of input, and a message cli6 probes with.
    let out = cli6(&["-4", "-p", &port], b"uno\ndos tres\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let replies = text(&out.stdout);
    let replies: Vec<&str> = replies.lines().collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_reply_now(format!("{}\n", replies[0]).as_bytes(), 3);
    assert_reply_now(format!("{}\n", replies[1]).as_bytes(), 8);
    let probe = cli6(&["-4", "-p", &port, "--count", "2", "--interval", "0"], b"");
    assert_eq!(probe.status.code(), Some(0), "{}", text(&probe.stderr));
    assert!(text(&probe.stdout).contains("2 replies received"));
}

#[test]
fn the_example_client_asks_serv6_and_prints_its_reply() {
    let Some(path) = example("cliente") else {
        return;
    };
    let server = Server::start(&[]);
    let out = run_within(Command::new(&path).args(["hola mundo", &server.v4().to_string()]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_reply_now(&out.stdout, 10);
    assert!(text(&server.log_line()).ends_with(" 10 bytes \"hola mundo\""));
    // With nobody listening: one line saying so, and a failure.
    let nowhere = format!("127.0.0.1:{}", dead_port());
    let out = run_within(Command::new(&path).args(["hola", &nowhere]));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with(&format!("cliente: {nowhere}: nadie escucha ahí")), "{err}");
    assert!(err.contains("cargo run --example cliente -- hola 127.0.0.1:5007"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A mistyped address is a usage error.
    let out = run_within(Command::new(&path).args(["hola", "127.0.0.1"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).lines().count(), 1, "{}", text(&out.stderr));
}

#[test]
fn the_example_server_on_a_busy_address_says_so_in_one_line() {
    let Some(path) = example("servidor") else {
        return;
    };
    let busy = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = busy.local_addr().expect("its address").to_string();
    let out = run_within(Command::new(&path).arg(&addr));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with(&format!("servidor: {addr} ya está en uso")), "{err}");
    assert!(err.contains("cargo run --example servidor -- 127.0.0.1:5007"), "{err}");
    // A mistyped address is a usage error.
    let out = run_within(Command::new(&path).arg("127.0.0.1"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn each_example_stays_short_and_on_std_alone() {
    for name in ["servidor", "cliente"] {
        let path = format!("{}/examples/{name}.rs", env!("CARGO_MANIFEST_DIR"));
        let code = std::fs::read_to_string(&path).expect("the example");
        let lines = code.lines().count();
        assert!(lines <= 70, "{path} has {lines} lines, more than 70");
        assert!(!code.contains("serv6::"), "{path} uses the serv6 library");
    }
}
