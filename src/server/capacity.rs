//! How much serv6 may hold at once, from what the machine allows rather
//! than a guess: the open-file limit (raised to its hard limit first, as
//! systemd asks of services) and any address-space limit (`ulimit -v`).
//!
//! Every client connection costs a descriptor (two, while it waits, off
//! Linux: its watcher holds one), and one that waits may grow a message
//! buffer up to `--max-bytes`. `--max-conns` bounds every connection serv6
//! holds, and by default is what the descriptors (less a reserve) and the
//! address space allow. The workers are few and bounded by design
//! ([`MAX_WORKERS`]).

use super::exchange::WORKER_STACK;
use crate::platform;
use crate::words::counted;

/// The most workers, whatever the limits: a worker holds a connection for
/// at most the slow-client verdict, so a few keep up with any load, and
/// threads can never run out. It is also the most listeners serv6 takes,
/// as each has a worker at least.
pub(crate) const MAX_WORKERS: usize = 32;
/// Workers per listener: two per core, and at least four. A silent client
/// holds a worker for the 1 ms verdict, so 2000 of them a second keep two
/// busy on average, and a normal client still finds one free nearly
/// always (p99 8 ms in `make stress`, as with eight). More workers cost
/// CPU: eight spent 1.2-1.3x the floor's CPU per exchange in `make bench`
/// where four spent 1.13-1.22x.
fn wanted_per_listener() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (2 * cores).max(4)
}
/// Descriptors kept free for what is opened after start: the room's
/// poller and waker, the spare, the outputs reopened without blocking,
/// the metrics' listener and a few of its requests.
const RESERVED_FDS: u64 = 16;
/// Address space kept free for all but connections and workers: the heap,
/// the output queues, the helper threads.
const ADDRESS_SPACE_RESERVE: u64 = 16 << 20;
/// What a held connection costs besides its message buffer: its state,
/// the room's map entry and timer, rounded up.
const PER_CONNECTION: u64 = 1024;

/// What serv6 will hold at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capacity {
    pub workers_per_listener: usize,
    /// Every client connection held at once, at most.
    pub max_conns: usize,
    /// Lines for the operator, said after the listening line.
    pub notes: Vec<String>,
}

/// The limits as measured at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Machine {
    /// The soft open-file limit, after raising it; `None`: unknown.
    pub open_file_limit: Option<u64>,
    /// The limit before it was raised, if it was.
    pub raised_from: Option<u64>,
    /// Descriptors open now.
    pub open: u64,
    /// Address space left under `ulimit -v`; `None`: unlimited.
    pub address_space: Option<u64>,
    /// What could only be assumed, for the operator.
    pub assumed: Vec<String>,
}

impl Machine {
    /// What this process may use, its open-file limit raised (`files`).
    pub fn measure(files: Option<platform::OpenFiles>) -> Machine {
        let mut assumed = Vec::new();
        let open = platform::descriptors_in_use().unwrap_or_else(|e| {
            assumed.push(format!("cannot count the open descriptors ({e}): assuming 16"));
            16
        });
        let address_space = platform::address_space_left();
        if address_space.is_some_and(|(_, measured)| !measured) {
            assumed.push("cannot read what is mapped (/proc/self/status): assuming 64 MiB".into());
        }
        let address_space = address_space.map(|(left, _)| left);
        let (open_file_limit, raised_from) =
            (files.map(|f| f.limit), files.and_then(|f| f.raised_from));
        Machine { open_file_limit, raised_from, open, address_space, assumed }
    }
}

/// What to hold under `machine`'s limits: `max_conns` (`--max-conns`, if
/// given) at most, lowered with a note if the limits allow fewer. A
/// worker may hold a message of `max_bytes` and a log line four times
/// `log_bytes` long (each byte escaped as `\xHH` at worst). Fails saying
/// why serv6 cannot serve at all under these limits.
pub(crate) fn plan(
    machine: &Machine,
    max_conns: Option<usize>,
    (max_bytes, log_bytes): (usize, usize),
    listeners: usize,
) -> Result<Capacity, String> {
    let mut notes = machine.assumed.clone();
    let (fds_each, bytes_each) = platform::PER_WAITING;
    let open = machine.open;
    let fds = machine.open_file_limit.map_or(Ok(u64::MAX), |limit| {
        let free = limit.checked_sub(open + RESERVED_FDS).filter(|&free| free >= 2);
        free.ok_or_else(|| {
            format!(
                "only {} allowed (ulimit -n) and {open} in use: serv6 needs at least {} \
                 to serve one connection",
                counted(limit, "file descriptor is", "file descriptors are"),
                open + RESERVED_FDS + 2
            )
        })
    })?;
    let mut workers = (wanted_per_listener() * listeners).clamp(1, MAX_WORKERS);
    // A newcomer waits for its place with a descriptor of its own: one
    // more for each worker.
    let fds = fds.saturating_sub(workers as u64).max(1);
    let mut held = usize::try_from(fds / (1 + fds_each)).unwrap_or(usize::MAX).max(1);
    if let Some(room) = machine.address_space {
        let room = room.saturating_sub(ADDRESS_SPACE_RESERVE);
        let line = 4 * log_bytes.min(max_bytes) as u64;
        let per_worker = WORKER_STACK as u64 + 2 * max_bytes as u64 + line + (64 << 10);
        let fit = usize::try_from(room / 2 / per_worker).unwrap_or(usize::MAX);
        workers = workers.min(fit.max(listeners));
        let left = room.saturating_sub(workers as u64 * per_worker);
        let per_held = max_bytes as u64 + PER_CONNECTION + bytes_each;
        let fit = usize::try_from(left / per_held).unwrap_or(usize::MAX);
        if fit < held {
            notes.push(format!(
                "the address space is limited ({} MiB free): at most {} held at once",
                room >> 20,
                counted(fit.max(1) as u64, "connection", "connections")
            ));
            held = fit.max(1);
        }
    }
    let asked = max_conns.unwrap_or(held);
    if asked > held {
        notes.push(format!("--max-conns {asked} is more than the limits allow: at most {held}"));
    }
    let max_conns = asked.min(held);
    notes.push(describe(machine, max_conns));
    Ok(Capacity { workers_per_listener: (workers / listeners.max(1)).max(1), max_conns, notes })
}

/// The line that tells the operator how many connections serv6 can hold.
fn describe(machine: &Machine, max_conns: usize) -> String {
    let limit = match (machine.open_file_limit, machine.raised_from) {
        (Some(to), Some(from)) => format!(" (open files: raised the limit from {from} to {to})"),
        (Some(limit), None) => format!(" (open files: limit {limit})"),
        (None, _) => String::new(),
    };
    format!(
        "up to {} held at once{limit}; past that, the one that has waited longest for its message is told busy",
        counted(max_conns as u64, "connection", "connections")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(limit: u64, open: u64) -> Machine {
        Machine {
            open_file_limit: Some(limit),
            raised_from: None,
            open,
            address_space: None,
            assumed: Vec::new(),
        }
    }

    const SIZES: (usize, usize) = (65_536, 1024);

    #[test]
    fn the_descriptors_decide_the_default() {
        let plan = plan(&machine(20_000, 8), None, SIZES, 2).expect("fits");
        let workers = 2 * plan.workers_per_listener;
        assert_eq!(workers, (2 * wanted_per_listener()).min(MAX_WORKERS));
        let free = 20_000 - 8 - RESERVED_FDS as usize - workers;
        assert_eq!(plan.max_conns, free / (1 + platform::PER_WAITING.0 as usize));
    }

    #[test]
    fn max_conns_is_kept_when_it_fits_and_lowered_when_not() {
        let kept = plan(&machine(20_000, 8), Some(100), SIZES, 2).expect("fits");
        assert_eq!(kept.max_conns, 100);
        let lowered = plan(&machine(64, 8), Some(1000), SIZES, 2).expect("fits");
        assert!(lowered.max_conns < 64);
        assert!(lowered.notes[0].contains("--max-conns 1000"), "{:?}", lowered.notes);
    }

    #[test]
    fn too_few_descriptors_is_said_plainly() {
        let error = plan(&machine(7, 5), None, SIZES, 2).expect_err("cannot serve");
        assert_eq!(
            error.to_string(),
            "only 7 file descriptors are allowed (ulimit -n) and 5 in use: serv6 needs \
             at least 23 to serve one connection"
        );
    }

    #[test]
    fn an_address_space_limit_lowers_what_is_held() {
        let limited = Machine { address_space: Some(64 << 20), ..machine(20_000, 8) };
        let plan = plan(&limited, None, SIZES, 2).expect("fits");
        assert!(plan.workers_per_listener * 2 < MAX_WORKERS);
        assert!(plan.max_conns < 1000, "{plan:?}");
        assert!(plan.notes[0].contains("address space is limited"));
    }
}
