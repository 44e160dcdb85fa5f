//! Every system but 64-bit Linux (and Linux built with `--cfg
//! serv6_portable`): the platform's interface from the standard library
//! alone, with no `unsafe`. What it gives up: the kernel's arrival stamps
//! (the time is taken right after the read), epoll (a socket that waits
//! costs a thread that blocks in `peek` on a copy of its descriptor),
//! signals (Ctrl-C ends the program at once), socket activation and
//! sd_notify, a backlog beyond std's 128, and writes that cannot block
//! (every output is written through its helper's rescue).

use super::{NotAListener, OpenFiles, Received, Signal};
use crate::sync;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::Duration;

/// How often a watcher looks up from its `peek` to see whether it is
/// still wanted: a watched socket closes at most this late.
const TICK: Duration = Duration::from_millis(50);
/// A watcher's stack: it only peeks.
const WATCH_STACK: usize = 64 * 1024;
/// What a connection that waits costs besides its own descriptor and
/// buffer: its watcher's copy of the descriptor, and its stack with the
/// signal stack std gives every thread.
pub(crate) const PER_WAITING: (u64, u64) = (1, 2 * WATCH_STACK as u64);

fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("{what} is Linux's alone in serv6"))
}

/// Signals are left to their defaults: none ever comes here.
pub(crate) struct Signals;

impl Signals {
    pub fn block() -> Option<Signals> {
        Some(Signals)
    }

    pub fn wait(&self) -> Signal {
        loop {
            thread::park();
        }
    }
}

/// The soft limits on open files and on address space (KiB), as the
/// shell's `ulimit` tells them: std can neither ask nor raise them. Read
/// once, first thing, while few descriptors are open.
fn shell_limits() -> (Option<u64>, Option<u64>) {
    static LIMITS: OnceLock<(Option<u64>, Option<u64>)> = OnceLock::new();
    *LIMITS.get_or_init(|| {
        let mut shell = Command::new("sh");
        let shell = shell.args(["-c", "ulimit -n; ulimit -v"]).stdin(Stdio::null());
        let out = shell.stderr(Stdio::null()).output().map(|out| out.stdout).unwrap_or_default();
        let text = String::from_utf8_lossy(&out);
        let mut limits = text.lines().map(|l| l.trim().parse().ok());
        (limits.next().flatten(), limits.next().flatten())
    })
}

pub(crate) fn raise_open_file_limit() -> Option<OpenFiles> {
    shell_limits().0.map(|limit| OpenFiles { limit, raised_from: None })
}

/// The lowest free descriptor: the count while none below it was closed.
pub(crate) fn descriptors_in_use() -> io::Result<u64> {
    File::open("/dev/null").map(|probe| u64::try_from(probe.as_raw_fd()).unwrap_or(0))
}

/// What `ulimit -v` leaves, less an assumed 16 MiB mapped (said so).
pub(crate) fn address_space_left() -> Option<(u64, bool)> {
    shell_limits().1.map(|kib| ((kib * 1024).saturating_sub(16 << 20), false))
}

/// Closes `stream`'s watcher's copy too, at once: a closing connection
/// is shut down both ways, so its FIN goes now and the watcher's `peek`
/// returns.
pub(crate) fn release(stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Reads what `stream` has received without waiting: the stream is made
/// non-blocking for the one read, so that a watcher's `peek` still blocks.
pub(crate) fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<Received> {
    stream.set_nonblocking(true)?;
    let read = (&*stream).read(buf);
    stream.set_nonblocking(false)?;
    Ok((read?, None))
}

pub(crate) fn stamp_arrivals(_socket: &impl AsFd) -> io::Result<()> {
    Err(unsupported("the kernel's arrival stamp"))
}

/// Waits until `stream` has something to read, or `timeout` passes.
pub(crate) fn wait_readable(stream: &TcpStream, timeout: Duration) -> io::Result<bool> {
    if timeout.is_zero() {
        return Ok(false);
    }
    stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    match stream.peek(&mut [0u8]) {
        Ok(_) => Ok(true),
        Err(e) if sync::is_timeout(&e) || sync::is_interrupted(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn passed_listeners(_count: i32) -> Result<Vec<TcpListener>, (i32, NotAListener)> {
    Err((3, NotAListener::Unsupported))
}

/// std's backlog of 128 stays.
///
/// # Errors
///
/// Always: std cannot set it.
pub fn set_backlog(_listener: &TcpListener, _backlog: u32) -> io::Result<()> {
    Err(unsupported("a backlog beyond std's 128"))
}

/// Never needed: without signals, serv6 is never shut down gracefully.
pub(crate) fn stop_listening(_listener: &TcpListener) -> io::Result<()> {
    Err(unsupported("stopping a listener"))
}

pub(crate) fn give_back_free_memory() {}

pub(crate) fn limit_malloc_arenas(_arenas: i32) {}

/// No output has a write that cannot block here.
pub(crate) enum NonBlocking {}

impl NonBlocking {
    pub fn write(&self, _bytes: &[u8]) -> io::Result<usize> {
        match *self {}
    }
}

pub(crate) fn non_blocking(_out: &File) -> io::Result<Option<NonBlocking>> {
    Ok(None)
}

pub(crate) fn send_to_abstract(_: &UnixDatagram, _: &str, _: &[u8]) -> io::Result<()> {
    Err(unsupported("an abstract socket"))
}

/// A set of sockets to wait on for something to read, level-triggered as
/// epoll is: each has a watcher thread that blocks in `peek` on a copy of
/// its descriptor, reports it once readable, and looks again when the
/// next [`Poller::wait`] begins, after its reader has read.
pub(crate) struct Poller {
    tell: mpsc::Sender<u64>,
    ready: mpsc::Receiver<u64>,
    /// Each watcher's "look again"; dropped, it tells the watcher to leave.
    watches: HashMap<u64, mpsc::Sender<()>>,
    reported: Vec<u64>,
    batch: usize,
}

impl Poller {
    pub fn new(batch: usize) -> io::Result<Poller> {
        let (tell, ready) = mpsc::channel();
        let batch = batch.max(1);
        Ok(Poller { tell, ready, watches: HashMap::new(), reported: Vec::new(), batch })
    }

    pub fn add(&mut self, socket: &TcpStream, token: u64) -> io::Result<()> {
        let socket = socket.try_clone()?;
        socket.set_read_timeout(Some(TICK))?;
        let (again, rearmed) = mpsc::channel();
        let tell = self.tell.clone();
        sync::spawn("serv6-watch", WATCH_STACK, move || watch(&socket, token, &tell, &rearmed))?;
        self.watches.insert(token, again);
        Ok(())
    }

    pub fn waker(&mut self, token: u64) -> io::Result<Waker> {
        Ok(Waker(self.tell.clone(), token))
    }

    /// Its watcher leaves within [`TICK`], and its copy closes then.
    pub fn remove(&mut self, _socket: &TcpStream, token: u64) {
        self.watches.remove(&token);
    }

    pub fn wait(&mut self, timeout: Option<Duration>, ready: &mut Vec<u64>) -> io::Result<()> {
        for token in self.reported.drain(..) {
            if let Some(again) = self.watches.get(&token) {
                let _ = again.send(());
            }
        }
        ready.clear();
        // Without a timeout, as good as forever: std waits without a deadline.
        ready.extend(self.ready.recv_timeout(timeout.unwrap_or(Duration::MAX)).ok());
        ready.extend(self.ready.try_iter().take(self.batch - ready.len()));
        self.reported.extend(ready.iter().filter(|t| self.watches.contains_key(t)));
        Ok(())
    }
}

/// A watcher's life: report `token` each time `socket` is readable (bytes,
/// EOF or an error), once its reader has had the last report; until the
/// poller drops its end of `again`.
fn watch(socket: &TcpStream, token: u64, tell: &mpsc::Sender<u64>, again: &mpsc::Receiver<()>) {
    while !matches!(again.try_recv(), Err(mpsc::TryRecvError::Disconnected)) {
        match socket.peek(&mut [0u8]) {
            // A tick passed, or the reader has the socket non-blocking
            // for a moment.
            Err(e) if sync::is_timeout(&e) || sync::is_interrupted(&e) => continue,
            _ => {}
        }
        if tell.send(token).is_err() || again.recv().is_err() {
            return;
        }
    }
}

/// Wakes a thread waiting on a [`Poller`], from any thread: a report of
/// its token.
pub(crate) struct Waker(mpsc::Sender<u64>, u64);

impl Waker {
    pub fn wake(&self) {
        let _ = self.0.send(self.1);
    }

    /// Each wake is one report: nothing is left to clear.
    pub fn clear(&self) {}
}
