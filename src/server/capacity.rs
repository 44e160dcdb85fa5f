//! How much serv6 may hold at once, from what the machine allows rather
//! than a guess: the open-file limit (raised to its hard limit first, as
//! systemd asks of services) and any address-space limit (`ulimit -v`).
//!
//! Every connection costs a descriptor, and one that waits may grow a
//! message buffer up to `--max-bytes`. The workers are few and bounded
//! by design ([`MAX_WORKERS`]); the rest of the descriptors, less a
//! reserve, are for the waiting room.

use super::exchange::room::Limits;
use super::exchange::WORKER_STACK;
use crate::platform;
use crate::words::counted;

/// The most workers, whatever the limits or `--max-conns`: a worker holds a
/// connection for at most the slow-client verdict, so a few keep up with
/// any load, and threads can never run out.
pub(crate) const MAX_WORKERS: usize = 32;
/// Workers per listener, unless the limits allow fewer: two per core, and
/// at least four. A silent client holds a worker for the 1 ms verdict, so
/// 2000 of them a second keep two busy on average, and a normal client
/// still finds one free nearly always (p99 8 ms in `make stress`, as with
/// eight). More workers cost CPU: eight spent 1.2-1.3x the floor's CPU
/// per exchange in `make bench` where four spent 1.13-1.22x.
fn wanted_per_listener() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (2 * cores).max(4)
}
/// Descriptors kept free for what is opened after start: the room's epoll
/// and waker, the spare, the outputs reopened without blocking, a file
/// read from /proc.
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
    pub room: Limits,
    /// Lines for the operator, said after the listening line.
    pub notes: Vec<String>,
}

/// Why serv6 cannot serve at all under these limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TooFewDescriptors {
    pub limit: u64,
    pub open: u64,
}

impl std::fmt::Display for TooFewDescriptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "only {} allowed (ulimit -n) and {} in use: serv6 needs at least {} \
             to serve one connection",
            counted(self.limit, "file descriptor is", "file descriptors are"),
            self.open,
            self.open + RESERVED_FDS + 2
        )
    }
}

/// The limits as measured at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Machine {
    /// The soft open-file limit, after raising it; `None`: unknown.
    pub open_file_limit: Option<u64>,
    /// The limit before it was raised, if it was.
    pub raised_from: Option<u64>,
    /// Descriptors open now.
    pub open: u64,
    /// Address space left under `ulimit -v`; `None`: unlimited.
    pub address_space: Option<u64>,
}

impl Machine {
    /// Raises the open-file limit, then reads what this process may use.
    pub fn measure() -> Machine {
        let files = platform::raise_open_file_limit();
        // A sandbox may forbid even reading the limit (systemd's
        // `~@resources` filters prlimit64): /proc still tells it.
        let limit = files.map(|f| f.limit).or_else(|| proc_number(LIMITS, "Max open files"));
        Machine {
            open_file_limit: limit,
            raised_from: files.and_then(|f| f.raised_from),
            // Counting them takes a descriptor: none left, all are in use.
            open: open_descriptors().or(limit).unwrap_or(3),
            address_space: address_space_room(),
        }
    }
}

/// What to hold under `machine`'s limits: `max_conns` (`--max-conns`, if
/// given) waiting at most, lowered with a note if the limits allow fewer.
pub(crate) fn plan(
    machine: &Machine,
    max_conns: Option<usize>,
    max_bytes: usize,
    listeners: usize,
) -> Result<Capacity, TooFewDescriptors> {
    let mut notes = Vec::new();
    let fds = machine.open_file_limit.map_or(Ok(u64::MAX), |limit| {
        limit
            .checked_sub(machine.open + RESERVED_FDS)
            .filter(|&free| free >= 2)
            .ok_or(TooFewDescriptors { limit, open: machine.open })
    })?;
    let fds = usize::try_from(fds).unwrap_or(usize::MAX);
    let wanted = (wanted_per_listener() * listeners).min(MAX_WORKERS.max(listeners));
    let mut workers = (fds / 4).clamp(1, wanted);
    let mut held = fds - workers;
    if let Some(room) = machine.address_space {
        let room = room.saturating_sub(ADDRESS_SPACE_RESERVE);
        let per_worker = WORKER_STACK as u64 + 2 * max_bytes as u64 + (64 << 10);
        let fit = usize::try_from(room / 2 / per_worker).unwrap_or(usize::MAX);
        workers = workers.min(fit.max(1));
        let left = room.saturating_sub(workers as u64 * per_worker);
        let fit = usize::try_from(left / (max_bytes as u64 + PER_CONNECTION)).unwrap_or(usize::MAX);
        if fit < held {
            notes.push(format!(
                "the address space is limited ({} MiB free): at most {} held at once",
                room >> 20,
                counted(fit.max(1) as u64, "connection", "connections")
            ));
            held = fit.max(1);
        }
    }
    let waiting = match max_conns {
        Some(asked) if asked > held => {
            notes
                .push(format!("--max-conns {asked} is more than the limits allow: at most {held}"));
            held
        }
        Some(asked) => asked,
        None => held,
    };
    notes.push(describe(machine, waiting));
    Ok(Capacity {
        workers_per_listener: (workers / listeners.max(1)).max(1),
        room: Limits { waiting, held },
        notes,
    })
}

/// The line that tells the operator how many connections serv6 can hold.
fn describe(machine: &Machine, waiting: usize) -> String {
    let limit = match (machine.open_file_limit, machine.raised_from) {
        (Some(limit), Some(from)) => {
            format!(" (open files: raised the limit from {from} to {limit})")
        }
        (Some(limit), None) => format!(" (open files: limit {limit})"),
        (None, _) => String::new(),
    };
    format!(
        "up to {} in progress at once{limit}; past that, the one that has waited longest is told busy",
        counted(waiting as u64, "connection", "connections")
    )
}

/// How many descriptors this process has open, from /proc.
fn open_descriptors() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory being read is itself one of them.
    Some(entries.count().saturating_sub(1) as u64)
}

/// The soft limits, by name; an unlimited one has no number.
const LIMITS: &str = "/proc/self/limits";

/// The first number after `name` at the start of a line of the /proc file
/// `path`; `None` if there is none or the file cannot be read.
fn proc_number(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix(name))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Bytes of address space this process may still map, if it is limited:
/// the soft `RLIMIT_AS`, less what is mapped now.
fn address_space_room() -> Option<u64> {
    let limit = proc_number(LIMITS, "Max address space")?;
    let mapped_kib = proc_number("/proc/self/status", "VmSize:")?;
    Some(limit.saturating_sub(mapped_kib * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(limit: u64, open: u64) -> Machine {
        Machine { open_file_limit: Some(limit), raised_from: None, open, address_space: None }
    }

    #[test]
    fn the_descriptors_decide_the_default() {
        let plan = plan(&machine(20_000, 8), None, 65_536, 2).expect("fits");
        let workers = 2 * plan.workers_per_listener;
        assert_eq!(workers, (2 * wanted_per_listener()).min(MAX_WORKERS));
        let free = 20_000 - 8 - RESERVED_FDS as usize;
        assert_eq!(plan.room.held, free - workers);
        assert_eq!(plan.room.waiting, plan.room.held);
    }

    #[test]
    fn a_small_limit_shares_what_there_is() {
        let plan = plan(&machine(64, 8), None, 65_536, 2).expect("fits");
        let workers = 10.min(2 * wanted_per_listener());
        assert_eq!(plan.workers_per_listener, workers / 2);
        assert_eq!(plan.room.held, 40 - workers);
    }

    #[test]
    fn max_conns_is_kept_when_it_fits_and_lowered_when_not() {
        let kept = plan(&machine(20_000, 8), Some(100), 65_536, 2).expect("fits");
        assert_eq!(kept.room.waiting, 100);
        let lowered = plan(&machine(64, 8), Some(1000), 65_536, 2).expect("fits");
        assert_eq!(lowered.room.waiting, lowered.room.held);
        assert!(lowered.notes[0].contains("--max-conns 1000"), "{:?}", lowered.notes);
    }

    #[test]
    fn too_few_descriptors_is_said_plainly() {
        let error = plan(&machine(7, 5), None, 65_536, 2).expect_err("cannot serve");
        assert_eq!(
            error.to_string(),
            "only 7 file descriptors are allowed (ulimit -n) and 5 in use: serv6 needs \
             at least 23 to serve one connection"
        );
    }

    #[test]
    fn an_address_space_limit_lowers_what_is_held() {
        let limited = Machine { address_space: Some(64 << 20), ..machine(20_000, 8) };
        let plan = plan(&limited, None, 65_536, 2).expect("fits");
        assert!(plan.workers_per_listener * 2 < MAX_WORKERS);
        assert!(plan.room.held < 1000, "{plan:?}");
        assert!(plan.notes[0].contains("address space is limited"));
    }
}
