//! Socket calls std lacks: reads that bring the kernel's arrival time,
//! checking and adopting a socket passed by a service manager. (Waiting
//! for one socket is `sys::wait_readable`'s alone.)

use super::sys;
use crate::platform::{NotAListener, Received};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Room for the control messages a TCP read can bring: the timestamp.
const CONTROL_WORDS: usize = 8;

/// Reads what `stream` has received into `buf` without waiting, whether
/// the socket blocks or not: `WouldBlock` if nothing has come. One system
/// call (`recvmsg`), where std would need two to switch the socket to
/// non-blocking; with [`stamp_arrivals`] on it or its listener it also
/// returns the kernel's arrival time of the last segment read.
pub(crate) fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<Received> {
    let mut control = [0u64; CONTROL_WORDS];
    let (n, filled) = sys::receive(stream.as_fd(), buf, &mut control)?;
    Ok((n, arrival_stamp(&control, filled)))
}

/// The `SCM_TIMESTAMPNS` time among the first `filled` bytes of control
/// messages in `control`: each a header (`cmsg_len` as a `size_t`, level
/// and type as ints), then its data, aligned to 8 bytes.
fn arrival_stamp(control: &[u64], filled: usize) -> Option<SystemTime> {
    let words = &control[..filled.div_ceil(8).min(control.len())];
    let mut at = 0;
    while at + 2 <= words.len() {
        let len = usize::try_from(words[at]).ok()?;
        let level_and_kind = words[at + 1].to_ne_bytes();
        let (level, kind) = level_and_kind.split_at(4);
        if len < 16 {
            return None;
        }
        if level == sys::SOL_SOCKET.to_ne_bytes() && kind == sys::SO_TIMESTAMPNS.to_ne_bytes() {
            let seconds =
                u64::try_from(i64::from_ne_bytes(words.get(at + 2)?.to_ne_bytes())).ok()?;
            let nanos = u32::try_from(*words.get(at + 3)?).ok()?;
            return UNIX_EPOCH.checked_add(Duration::new(seconds, nanos));
        }
        at += len.div_ceil(8);
    }
    None
}

/// Asks the kernel to stamp each segment `socket` receives with its
/// arrival time (`SO_TIMESTAMPNS`, software receive timestamps), which
/// [`recv_now`] returns; a listener's accepted sockets inherit it.
pub(crate) fn stamp_arrivals(socket: &impl AsFd) -> io::Result<()> {
    sys::set_int_option(socket.as_fd(), sys::SO_TIMESTAMPNS, 1)
}

/// The `count` sockets a service manager passed to this process, each
/// checked to be a listening TCP socket and made blocking (a manager may
/// pass them non-blocking, `NonBlocking=yes`): they are ours alone to
/// accept from. Or the first that is not, and why. Once per process.
pub(crate) fn passed_listeners(count: i32) -> Result<Vec<TcpListener>, (i32, NotAListener)> {
    let passed = sys::take_passed(count).into_iter();
    passed.map(|(fd, owned)| listener_of(owned).map_err(|why| (fd, why))).collect()
}

fn listener_of(owned: io::Result<OwnedFd>) -> Result<TcpListener, NotAListener> {
    let owned = owned.map_err(|_| NotAListener::Closed)?;
    let option = |name| sys::int_option(owned.as_raw_fd(), name);
    if option(sys::SO_TYPE).map_err(|_| NotAListener::NotASocket)? != sys::SOCK_STREAM {
        return Err(NotAListener::NotStream);
    }
    if option(sys::SO_ACCEPTCONN).map_err(|_| NotAListener::NotListening)? == 0 {
        return Err(NotAListener::NotListening);
    }
    let domain = option(sys::SO_DOMAIN).map_err(|_| NotAListener::NotInternet)?;
    if domain != sys::AF_INET && domain != sys::AF_INET6 {
        return Err(NotAListener::NotInternet);
    }
    let listener = TcpListener::from(owned);
    listener.set_nonblocking(false).map_err(|_| NotAListener::NotASocket)?;
    Ok(listener)
}
