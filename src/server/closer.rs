//! Closing connections that may still be sending, without a worker.
//!
//! After a reply to a client whose bytes went on past its LF, or an error
//! line to one that sent too much, serv6 shuts down its sending side and
//! reads and discards what still comes, for up to [`LINGER`], so that the
//! kernel does not answer those bytes with a reset that would destroy the
//! last line. Waiting there used to hold the worker: ten such clients a
//! second could pin a pool. Instead the worker hands the socket to the one
//! closer thread, which drains every such socket without blocking, a pass
//! every [`PASS`], and closes each when its client closes or its time is up.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long a closing connection may keep sending.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// Time between draining passes while sockets wait.
const PASS: Duration = Duration::from_millis(10);
/// Sockets held at most: past that, one is closed at once, at the risk of
/// a reset, so that memory and descriptors stay bounded.
const MAX_HELD: usize = 4096;
/// What one pass takes from one socket at most, so that a client that
/// floods cannot starve the others.
const READS_PER_PASS: usize = 16;

/// The closer thread's queue.
#[derive(Debug, Default)]
pub(crate) struct Closer {
    held: Mutex<Vec<(TcpStream, Instant)>>,
    wake: Condvar,
}

impl Closer {
    /// Starts the closer thread.
    pub fn start() -> io::Result<Arc<Closer>> {
        let closer = Arc::new(Closer::default());
        let running = Arc::clone(&closer);
        thread::Builder::new()
            .name("serv6-closer".into())
            .stack_size(64 * 1024)
            .spawn(move || running.run())?;
        Ok(closer)
    }

    fn held(&self) -> MutexGuard<'_, Vec<(TcpStream, Instant)>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shuts down our sending side of `stream` and takes it over until
    /// its client closes or [`LINGER`] passes.
    pub fn close(&self, stream: TcpStream) {
        let _ = stream.shutdown(Shutdown::Write);
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let mut held = self.held();
        if held.len() >= MAX_HELD {
            return;
        }
        held.push((stream, Instant::now() + LINGER));
        if held.len() == 1 {
            self.wake.notify_one();
        }
    }

    /// How many sockets are waiting to close, for tests and the summary.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.held().len()
    }

    fn run(&self) {
        let mut scratch = [0u8; 4096];
        loop {
            let mut held = self.held();
            while held.is_empty() {
                held = self.wake.wait(held).unwrap_or_else(PoisonError::into_inner);
            }
            let now = Instant::now();
            held.retain_mut(|(stream, until)| *until > now && still_sending(stream, &mut scratch));
            drop(held);
            thread::sleep(PASS);
        }
    }
}

/// Reads and discards what `stream` has; false once it is closed or fails.
fn still_sending(mut stream: &TcpStream, scratch: &mut [u8]) -> bool {
    for _ in 0..READS_PER_PASS {
        match stream.read(scratch) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn a_closed_client_is_let_go_and_a_sending_one_held_until_its_time() {
        let closer = Closer::start().expect("a thread");
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let addr = listener.local_addr().expect("an address");
        let mut polite = TcpStream::connect(addr).expect("connects");
        let (theirs, _) = listener.accept().expect("accepts");
        let mut sender = TcpStream::connect(addr).expect("connects");
        let (other, _) = listener.accept().expect("accepts");
        closer.close(theirs);
        closer.close(other);
        sender.write_all(b"more").expect("sends");
        polite.shutdown(Shutdown::Write).expect("closes");
        let mut got = Vec::new();
        polite.read_to_end(&mut got).expect("sees our close");
        let until = Instant::now() + 10 * LINGER;
        while closer.waiting() > 1 && Instant::now() < until {
            thread::sleep(PASS);
        }
        assert_eq!(closer.waiting(), 1, "the polite client's socket is gone");
        while closer.waiting() > 0 && Instant::now() < until {
            thread::sleep(PASS);
        }
        assert_eq!(closer.waiting(), 0, "the sender's time ran out");
    }
}
