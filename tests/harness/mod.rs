//! Starting the real binaries and talking to them over real TCP, shared by
//! the integration tests and the benchmark (which includes this file).
//!
//! Every wait here is on an event (a line from the server, a reply, EOF)
//! with a generous upper bound, never a sleep.

pub mod rng;
mod skip;

pub use skip::skipped;

pub use serv6::protocol::{parse_reply, Refusal, Reply};
pub use serv6::timestamp::Timestamp;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// Whether `what` is missing here because this is the standard-library
/// build (`make test-portable`, as on macOS): if so, the test says so and
/// should return.
pub fn linux_only(what: &str) -> bool {
    if cfg!(serv6_portable) {
        skipped(format!("{what}: Linux's alone, and this is the portable build"));
    }
    cfg!(serv6_portable)
}

/// Long enough for a loaded 2-core CI machine, short enough to fail fast.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The serv6 under test: this build's, or the one `SERV6_UNDER_TEST`
/// names, so that the same attacks can measure an older build for a
/// before-and-after figure.
pub fn serv6_path() -> String {
    std::env::var("SERV6_UNDER_TEST").unwrap_or_else(|_| env!("CARGO_BIN_EXE_serv6").to_owned())
}

/// A serv6 process on a free port, killed when dropped.
pub struct Server {
    pid: u32,
    exit: Receiver<ExitStatus>,
    exited: Option<ExitStatus>,
    pub addrs: Vec<SocketAddr>,
    /// What serv6 wrote to standard error before its listening line.
    pub startup: Vec<String>,
    /// The listening line itself.
    listening: String,
    stdout: Receiver<Vec<u8>>,
    stderr: Receiver<String>,
}

impl Server {
    /// Starts serv6 with `--port 0` and `args`, and waits for its listening line.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with(Command::new(serv6_path()).args(args))
    }

    /// Starts a prepared serv6 command (for `ulimit`, say), adding `--port 0`.
    pub fn start_with(command: &mut Command) -> Server {
        Self::start_writing(command, Stdio::piped())
    }

    /// Starts a prepared command, adding `--port 0`, with its standard
    /// output going to `stdout` (when piped, [`Server::log_line`] reads it).
    pub fn start_writing(command: &mut Command, stdout: Stdio) -> Server {
        Self::launch(command, stdout, Unread::default())
    }

    /// Starts serv6 with `args`, with its standard output and standard
    /// error (after the listening line) not read at all until the returned
    /// [`Gates`] are dropped: a log reader that stalled.
    pub fn start_unread(args: &[&str], stdout: bool, stderr: bool) -> (Server, Gates) {
        let (release, gates) = Unread::new(stdout, stderr);
        let mut command = Command::new(serv6_path());
        let server = Self::launch(command.args(args), Stdio::piped(), gates);
        (server, release)
    }

    fn launch(command: &mut Command, stdout: Stdio, gates: Unread) -> Server {
        let Unread { stdout: stdout_gate, stderr: stderr_gate } = gates;
        let mut child = command
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stdout = match child.stdout.take() {
            Some(piped) => lines(piped, stdout_gate.map(|gate| (0, gate))),
            None => mpsc::channel().1,
        };
        let stderr_gate = stderr_gate.map(|gate| (1, gate));
        let stderr_bytes = lines(child.stderr.take().expect("piped stderr"), stderr_gate);
        let (tx, stderr) = mpsc::channel();
        thread::spawn(move || {
            for line in stderr_bytes {
                let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
            }
        });
        let pid = child.id();
        let (exit_tx, exit) = mpsc::channel();
        thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let mut server = Server {
            pid,
            exit,
            exited: None,
            addrs: Vec::new(),
            startup: Vec::new(),
            listening: String::new(),
            stdout,
            stderr,
        };
        loop {
            let line =
                server.stderr.recv_timeout(PATIENCE).expect("the server says where it listens");
            if line.contains("listening on ") {
                server.addrs = parse_listening(&line);
                server.listening = line;
                return server;
            }
            server.startup.push(line);
        }
    }

    /// The address `--metrics` serves on, as the listening line says it.
    pub fn metrics_addr(&self) -> SocketAddr {
        let line = &self.listening;
        line.split("(metrics: http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no metrics address in {line:?}"))
    }

    /// The IPv4 loopback address it listens on.
    pub fn v4(&self) -> SocketAddr {
        *self.addrs.iter().find(|a| a.is_ipv4()).expect("an IPv4 address")
    }

    /// The IPv6 loopback address, or `None` (with a printed reason) where
    /// this machine has no IPv6.
    pub fn v6(&self) -> Option<SocketAddr> {
        let found = self.addrs.iter().find(|a| a.is_ipv6()).copied();
        if found.is_none() {
            skipped("serv6 could not listen on ::1 (no IPv6 loopback here)");
        }
        found
    }

    /// Both loopback addresses it listens on, IPv6 where available.
    pub fn both(&self) -> Vec<SocketAddr> {
        let mut addrs = vec![self.v4()];
        addrs.extend(self.v6());
        addrs
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The next exchange line from standard output, without its LF.
    pub fn log_line(&self) -> Vec<u8> {
        let mut line = self.stdout.recv_timeout(PATIENCE).expect("an exchange log line");
        assert_eq!(line.pop(), Some(b'\n'), "log lines end with LF");
        line
    }

    /// Any stdout line already written, without waiting.
    pub fn pending_log_lines(&self) -> Vec<Vec<u8>> {
        self.stdout.try_iter().collect()
    }

    /// The next standard error line that contains `needle`, skipping others.
    pub fn err_line_containing(&self, needle: &str) -> String {
        let until = Instant::now() + PATIENCE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("serv6 never wrote a line containing {needle:?}"),
            }
        }
    }

    /// Sends a signal by name (TERM, INT, KILL) through the shell's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{name} {}", self.pid)])
            .status()
            .expect("sh runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, at most [`PATIENCE`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        let status = self.exit.recv_timeout(PATIENCE).expect("serv6 exits");
        self.exited = Some(status);
        status
    }

    /// Whether the process is still running, without waiting.
    pub fn is_running(&mut self) -> bool {
        if let Ok(status) = self.exit.try_recv() {
            self.exited = Some(status);
        }
        self.exited.is_none()
    }

    /// Every remaining standard error line, once the process has exited.
    pub fn rest_of_stderr(&self) -> Vec<String> {
        self.stderr.iter().collect()
    }

    /// Every remaining standard output line, once the process has exited.
    pub fn rest_of_stdout(&self) -> Vec<Vec<u8>> {
        self.stdout.iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = Command::new("sh").args(["-c", &format!("kill -KILL {}", self.pid)]).status();
            let _ = self.exit.recv_timeout(PATIENCE);
        }
    }
}

/// HAProxy in the foreground with the shipped configuration, killed when
/// dropped.
pub struct Haproxy {
    child: Child,
    pub front: SocketAddr,
}

impl Haproxy {
    /// Fronts `a` (v1) and `b` (v2); `None`, after saying why, without HAProxy.
    pub fn start(a: SocketAddr, b: SocketAddr) -> Option<Haproxy> {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/haproxy/serv6.cfg");
        let front: SocketAddr = format!("127.0.0.1:{}", dead_port()).parse().expect("an address");
        let child = Command::new("haproxy")
            .args(["-db", "-f", config])
            .env("SERV6_FRONT", front.to_string())
            .env("SERV6_A", a.to_string())
            .env("SERV6_B", b.to_string())
            .env("SERV6_CHECK", "100ms")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(child) = child else {
            skipped("HAProxy is not installed (apt-get install haproxy)");
            return None;
        };
        let mut haproxy = Haproxy { child, front };
        // HAProxy announces nothing when it listens, and a connection to
        // find out would reach an instance as a client: watch the kernel's
        // table of listening sockets instead.
        let up = eventually(PATIENCE, || proc::listening_on(front.port()));
        if !up {
            let _ = haproxy.child.kill();
            let mut said = String::new();
            if let Some(mut stderr) = haproxy.child.stderr.take() {
                let _ = stderr.read_to_string(&mut said);
            }
            panic!("HAProxy never listened on {front}: {said}");
        }
        Some(haproxy)
    }
}

impl Haproxy {
    /// HAProxy's process, for its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which outputs of a server are left unread, and until what.
#[derive(Default)]
pub struct Unread {
    stdout: Option<Receiver<()>>,
    stderr: Option<Receiver<()>>,
}

/// What [`Server::start_unread`] returns: dropping it resumes reading.
pub struct Gates(#[allow(dead_code)] Vec<mpsc::Sender<()>>);

impl Unread {
    fn new(stdout: bool, stderr: bool) -> (Gates, Unread) {
        let mut senders = Vec::new();
        let mut gate = |wanted: bool| {
            wanted.then(|| {
                let (tx, rx) = mpsc::channel();
                senders.push(tx);
                rx
            })
        };
        let unread = Unread { stdout: gate(stdout), stderr: gate(stderr) };
        (Gates(senders), unread)
    }
}

/// Forwards each line (with its LF) of a stream to a channel; with a gate
/// `(n, gate)`, stops reading after `n` lines until the gate's sender is
/// dropped.
fn lines(
    stream: impl Read + Send + 'static,
    gate: Option<(usize, Receiver<()>)>,
) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut gate = gate;
        for count in 0.. {
            if let Some((after, _)) = &gate {
                if count == *after {
                    let (_, closed) = gate.take().expect("a gate");
                    let _ = closed.recv();
                }
            }
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// `serv6: listening on 127.0.0.1:5006, [::1]:5006` to its addresses; a
/// metrics address after them, `(metrics: http://...)`, is left out.
pub fn parse_listening(line: &str) -> Vec<SocketAddr> {
    let line = line.trim_end();
    let list = line.split("listening on ").nth(1).expect("an address list");
    // The metrics address, if any, follows in parentheses.
    let list = list.split(" (").next().unwrap_or(list);
    list.split(", ").map(|a| a.trim().parse().expect("a socket address")).collect()
}

/// The soft limit on open files of this process, which serv6 inherits
/// (`make stress` raises it to the hard limit).
pub fn open_file_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(0)
}

/// True, after printing why, when this process cannot hold `fds` sockets.
pub fn too_few_fds(fds: u64) -> bool {
    let limit = open_file_limit();
    if limit < fds {
        skipped(format_args!(
            "needs {fds} open files, the limit is {limit} (make stress raises it to the hard limit)"
        ));
    }
    limit < fds
}

/// Connects with a bounded wait and a read timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let conn = TcpStream::connect_timeout(&addr, PATIENCE).expect("connects");
    conn.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    conn
}

/// Reads until EOF, as a client waiting for the reply and the close.
pub fn read_to_end(conn: &mut TcpStream) -> Vec<u8> {
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).expect("reply and EOF within the patience");
    reply
}

/// Sends `bytes`, shuts down sending if `eof`, and returns the whole reply.
pub fn exchange(addr: SocketAddr, bytes: &[u8], eof: bool) -> Vec<u8> {
    let mut conn = connect(addr);
    conn.write_all(bytes).expect("sends");
    if eof {
        conn.shutdown(Shutdown::Write).expect("shuts down sending");
    }
    read_to_end(&mut conn)
}

/// The reply as text, for assertions with readable failures.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a reply says: one line and its LF, or [`Reply::Unexpected`].
pub fn reply_of(bytes: &[u8]) -> Reply {
    match bytes.strip_suffix(b"\n") {
        Some(line) if !line.contains(&b'\n') => parse_reply(line),
        _ => Reply::Unexpected,
    }
}

/// The reply to a message of `len` bytes received `at` (RFC 3339), and
/// sent `sent` if given, as the protocol writes it.
pub fn reply_line(len: usize, at: &str, sent: Option<&str>) -> Vec<u8> {
    let stamp = |t: &str| Timestamp::parse(t).expect("an RFC 3339 time").to_rfc3339();
    let mut line = String::new();
    serv6::protocol::write_received(&mut line, len, &stamp(at), sent.map(stamp).as_ref());
    line.into_bytes()
}

/// Whether `text` (one line, its LF or not) is the reply to `len` bytes.
pub fn is_received(text: &str, len: u64) -> bool {
    let line = text.strip_suffix('\n').unwrap_or(text).as_bytes();
    matches!(parse_reply(line), Reply::Received { len: said, .. } if said == len)
}

/// The reply a probe line of cli6 shows: after its address, before the
/// figures it adds, two spaces apart.
pub fn probe_reply(line: &str) -> &str {
    let reply = line.split_once(": ").map_or(line, |(_, reply)| reply);
    reply.split("  ").next().unwrap_or_default()
}

/// An ordinary time for a fake server's replies.
pub const SOME_TIME: &str = "2026-11-24T04:31:58.123456Z";

/// Checks a reply is `received <n> bytes at <T>` + LF, and returns T.
pub fn assert_received(reply: &[u8], n: usize) -> Timestamp {
    match reply_of(reply) {
        Reply::Received { len, at, .. } if len == n as u64 => at,
        _ => panic!("not a reply to {n} bytes: {:?}", text(reply)),
    }
}

/// Checks a reply is `error: <why>` + LF.
pub fn assert_refused(reply: &[u8], why: Refusal) {
    let got = reply_of(reply);
    assert_eq!(got, Reply::Refused(why), "{:?}", text(reply));
}

/// A one-shot fake server on IPv4 loopback: `serve` gets the first
/// connection it accepts.
pub fn fake_server_with(serve: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("has an address");
    thread::spawn(move || {
        if let Ok((conn, _)) = listener.accept() {
            serve(conn);
        }
    });
    addr
}

/// A one-shot fake server that reads the whole message, then sends `reply`.
pub fn fake_server(reply: &'static [u8]) -> SocketAddr {
    fake_server_with(move |mut conn| {
        let mut message = Vec::new();
        let _ = conn.read_to_end(&mut message);
        let _ = conn.write_all(reply);
    })
}

/// A port nothing listens on: bound, then released.
pub fn dead_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("binds");
    probe.local_addr().expect("has an address").port()
}

/// Whether `tool` runs here; says why a test skips if not.
pub fn have(tool: &str, args: &[&str]) -> bool {
    let found =
        Command::new(tool).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        skipped(format_args!("{tool} is not installed"));
    }
    found
}

/// Runs cli6 with `args` and `stdin`, and returns its output.
pub fn cli6(args: &[&str], stdin: &[u8]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_cli6")).args(args), stdin)
}

/// Runs `command` to its end with `stdin` as its standard input.
pub fn run(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let feeder = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("the command finishes");
    let _ = feeder.join();
    output
}

/// Checks that a program failed with `code` and one line on standard
/// error starting with `prefix`; returns that line.
pub fn assert_one_error_line(out: &Output, code: i32, prefix: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(prefix), "wanted {prefix:?}, got {err:?}");
    err
}

/// Opens `count` connections that send nothing; each one's whole reply
/// arrives on the returned channel as the server sends it and closes.
pub fn silent_clients(addr: SocketAddr, count: usize) -> (Vec<TcpStream>, Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let conns: Vec<TcpStream> = (0..count).map(|_| connect(addr)).collect();
    for conn in &conns {
        let (mut reader, tx) = (conn.try_clone().expect("clones"), tx.clone());
        thread::spawn(move || {
            let mut reply = Vec::new();
            let _ = reader.read_to_end(&mut reply);
            let _ = tx.send(reply);
        });
    }
    (conns, rx)
}

/// Figures about a process, read from /proc (Linux).
pub mod proc {
    use std::fs;

    fn status_field(pid: u32, field: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    }

    pub fn threads(pid: u32) -> u64 {
        status_field(pid, "Threads")
    }

    /// Resident memory in KiB.
    pub fn rss_kib(pid: u32) -> u64 {
        status_field(pid, "VmRSS")
    }

    /// Whether something listens on TCP `port` over IPv4, from
    /// /proc/net/tcp: a way to wait for a server that announces nothing,
    /// without connecting to it.
    pub fn listening_on(port: u16) -> bool {
        let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let wanted = format!(":{port:04X}");
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1).is_some_and(|local| local.ends_with(&wanted))
                && fields.get(3) == Some(&"0A")
        })
    }

    /// How many connections wait in the accept queue of the IPv4 socket
    /// listening on `port` (its `rx_queue` in /proc/net/tcp).
    pub fn accept_queue(port: u16) -> Option<u64> {
        let table = fs::read_to_string("/proc/net/tcp").ok()?;
        let wanted = format!(":{port:04X}");
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(1)?.ends_with(&wanted) && fields.get(3) == Some(&"0A");
            let queue = fields.get(4)?.split(':').nth(1)?;
            listening.then(|| u64::from_str_radix(queue, 16).ok()).flatten()
        })
    }

    pub fn open_fds(pid: u32) -> usize {
        fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/PID/fd").count()
    }

    /// User plus system CPU time, in clock ticks (1/100 s on Linux).
    /// Whether the process is stopped (SIGSTOP): state `T` in /proc.
    pub fn is_stopped(pid: u32) -> bool {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rfind(')').and_then(|end| stat.get(end + 2..end + 3)).is_some_and(|state| state == "T")
    }

    pub fn cpu_ticks(pid: u32) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let after = &stat[stat.rfind(')').expect("a command name") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: u64 = fields[11].parse().expect("utime");
        let stime: u64 = fields[12].parse().expect("stime");
        utime + stime
    }
}

/// Waits for `condition` to hold, checking every 50 ms, for at most `limit`.
/// Only for conditions no event announces, such as a thread count falling
/// after idle workers time out; returns whether it held in time.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
