//! Where a client's message ends, and how a connection can end: the rules.
//!
//! A message ends at the first LF (a CR just before it is dropped), at EOF,
//! or when the client pauses after sending at least one byte. It must be no
//! longer than a limit and complete within a deadline.
//!
//! [`Framer`] applies these rules as a state machine: it is fed bytes with
//! the time they arrived, and told when it must next look at the clock
//! ([`Framer::next_wake`], [`Framer::on_timer`]). It never reads or waits
//! itself, so a worker, the waiting room and tests on a virtual clock all
//! drive the same rules. [`End`] is how a connection ended, whatever ended it.

use super::stats::Ended;
use crate::protocol::Refusal;
use crate::timestamp::Arrival;
use std::io;
use std::time::{Duration, Instant};

/// The limits one exchange is read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// Longest message accepted, in bytes, without its terminator.
    pub max_bytes: usize,
    /// Silence that ends a message once at least one byte has arrived;
    /// `None`: only an LF or EOF ends it.
    pub pause: Option<Duration>,
    /// Time from the start of the exchange to a complete message.
    pub deadline: Duration,
    /// Whether the reply also says when it was sent (`--send-time`).
    pub send_time: bool,
}

/// How a complete message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// At an LF. `trailing` says bytes followed it in the same read, a sign
    /// that the client may still be sending.
    Newline { trailing: bool },
    /// The client shut down its sending side.
    Eof,
    /// The client went quiet for the pause after sending something.
    Pause,
    /// Nothing is read: the daytime and time services talk first.
    Unasked,
}

/// How a connection ended: the one account of it, whoever ended it.
#[derive(Debug)]
pub(crate) enum End {
    /// A whole message: its last byte arrived `at`, and the rules ended it
    /// at `ended` (its LF's or EOF's arrival, or when its pause ran out).
    Message { ending: Ending, at: Arrival, ended: Instant },
    /// Told `error: <why>` instead of a time.
    Refused(Refusal),
    /// A balancer's own connection (PROXY protocol) that ended before any
    /// message byte: counted apart, not logged.
    HealthCheck,
    /// The connection failed (reset, say); nothing can be sent.
    Failed(io::Error),
}

impl End {
    /// How it is counted.
    pub fn counted(&self) -> Ended {
        match self {
            End::Message { .. } => Ended::Served,
            End::Refused(Refusal::Busy) => Ended::Busy,
            End::Refused(Refusal::TooLong { .. }) => Ended::TooLong,
            End::Refused(Refusal::Deadline { .. }) => Ended::Deadline,
            End::Refused(Refusal::ClockOutOfRange) => Ended::Clock,
            End::Refused(Refusal::ShuttingDown) => Ended::ShuttingDown,
            End::Refused(Refusal::UntrustedProxy | Refusal::BadProxyHeader(_)) => Ended::Proxy,
            End::HealthCheck => Ended::HealthCheck,
            End::Failed(_) => Ended::Failed,
        }
    }
}

/// The framing rules as a state machine over one message.
#[derive(Debug)]
pub(crate) struct Framer {
    rules: Rules,
    deadline: Instant,
    last_arrival: Option<Arrival>,
    message: Vec<u8>,
}

impl Framer {
    /// Starts reading a message under `rules` at `started`, into `buffer`
    /// (cleared first; lent so that a worker can reuse one allocation).
    pub fn new(rules: &Rules, started: Instant, mut buffer: Vec<u8>) -> Framer {
        buffer.clear();
        let deadline = started + rules.deadline;
        Framer { rules: *rules, deadline, last_arrival: None, message: buffer }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The bytes of the message so far (all of it, once finished).
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// The message buffer, to keep or reuse.
    pub fn into_message(self) -> Vec<u8> {
        self.message
    }

    /// Takes `bytes` that arrived at `at`; empty `bytes` is EOF.
    #[inline]
    pub fn feed(&mut self, bytes: &[u8], at: Arrival) -> Option<End> {
        if let Some(ended) = self.timed_out(at.mono, true) {
            return Some(ended);
        }
        if bytes.is_empty() {
            // Received at the last byte; an empty message, when EOF came.
            return Some(self.finish(Ending::Eof, self.last_arrival.unwrap_or(at), at.mono));
        }
        self.take(bytes, at)
    }

    /// Appends `bytes`, which arrived `at`, up to the first LF. A message
    /// may hold `max_bytes + 1` bytes while incomplete, since a final CR may
    /// yet turn out to belong to a CR LF terminator; anything beyond can
    /// never fit. The buffer grows by `try_reserve`: under an address-space
    /// limit a message that cannot be held is a refusal, never an abort.
    fn take(&mut self, bytes: &[u8], at: Arrival) -> Option<End> {
        let newline = bytes.iter().position(|&b| b == b'\n');
        let wanted = newline.unwrap_or(bytes.len());
        if self.message.len() + wanted > self.rules.max_bytes + 1 {
            return Some(self.too_long());
        }
        if self.message.try_reserve(wanted).is_err() {
            return Some(End::Refused(Refusal::Busy));
        }
        self.message.extend_from_slice(&bytes[..wanted]);
        self.last_arrival = Some(at);
        let Some(lf) = newline else {
            let over = self.message.len() > self.rules.max_bytes;
            return (over && self.message.last() != Some(&b'\r')).then(|| self.too_long());
        };
        if self.message.last() == Some(&b'\r') {
            self.message.pop();
        }
        Some(self.finish(Ending::Newline { trailing: lf + 1 < bytes.len() }, at, at.mono))
    }

    /// When it must next be told the time: at or after it,
    /// [`Framer::on_timer`] finishes.
    pub fn next_wake(&self) -> Instant {
        self.pause_end().map_or(self.deadline, |end| end.min(self.deadline))
    }

    /// Tells it the time is `now`, once what arrived before has been fed.
    pub fn on_timer(&mut self, now: Instant) -> Option<End> {
        self.timed_out(now, false)
    }

    /// Where the pause that would end the message runs out, if one would.
    fn pause_end(&self) -> Option<Instant> {
        self.last_arrival.zip(self.rules.pause).map(|(at, pause)| at.mono + pause)
    }

    /// The message's end by the clock alone, if time `now` has brought one:
    /// a pause that ran out within the deadline, or the deadline. `late`
    /// says `now` is an arrival: bytes that came exactly as the pause ran
    /// out still belong to the message.
    fn timed_out(&self, now: Instant, late: bool) -> Option<End> {
        let past = |end: Instant| if late { now > end } else { now >= end };
        if let (Some(at), Some(end)) = (self.last_arrival, self.pause_end()) {
            if past(end) && end <= self.deadline {
                return Some(self.finish(Ending::Pause, at, end));
            }
        }
        let limit = self.rules.deadline;
        past(self.deadline).then_some(End::Refused(Refusal::Deadline { limit }))
    }

    fn finish(&self, ending: Ending, at: Arrival, ended: Instant) -> End {
        if self.message.len() > self.rules.max_bytes {
            self.too_long()
        } else {
            End::Message { ending, at, ended }
        }
    }

    fn too_long(&self) -> End {
        End::Refused(Refusal::TooLong { max_bytes: self.rules.max_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::XorShift;
    use std::collections::VecDeque;
    use std::time::SystemTime;

    /// Bytes arriving over time: a script on a virtual clock.
    trait Source {
        /// The current time on this source's clock.
        fn now(&self) -> Instant;

        /// Reads into `buf`, waiting at most `wait` (zero: only what has
        /// already arrived), and says when the last byte read arrived. A
        /// length of 0 is EOF; `WouldBlock` means nothing came.
        fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<(usize, Arrival)>;
    }

    /// Reads from `source` into `framer` until it finishes, as serv6's
    /// readers do: once a pause or the deadline is due, what has already
    /// arrived is read first, so a late reader cannot cut a message short.
    fn drive(source: &mut impl Source, framer: &mut Framer, chunk: &mut [u8]) -> End {
        loop {
            let now = source.now();
            if now >= framer.next_wake() {
                match source.read_within(chunk, Duration::ZERO) {
                    Ok((n, at)) => match framer.feed(&chunk[..n], at) {
                        Some(end) => return end,
                        None => continue,
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return End::Failed(e),
                }
                if let Some(end) = framer.on_timer(now) {
                    return end;
                }
            }
            let wake = framer.next_wake();
            match source.read_within(chunk, wake - now) {
                Ok((n, at)) => {
                    if let Some(end) = framer.feed(&chunk[..n], at) {
                        return end;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return End::Failed(e),
            }
        }
    }

    /// Reads one message from `source` into `message` under `rules`.
    fn read_message(
        source: &mut impl Source,
        rules: &Rules,
        message: &mut Vec<u8>,
        chunk: &mut [u8],
    ) -> End {
        let mut framer = Framer::new(rules, source.now(), std::mem::take(message));
        let end = drive(source, &mut framer, chunk);
        *message = framer.into_message();
        end
    }

    const PAUSE: Duration = Duration::from_millis(200);
    const DEADLINE: Duration = Duration::from_secs(10);

    /// Bytes that arrive at `at`; empty means EOF.
    struct Scripted {
        at: Instant,
        bytes: Vec<u8>,
    }

    /// A source on a virtual clock: no test here ever sleeps. The reader's
    /// clock may fall behind the arrivals (`late`): after its `reads`-th
    /// read, the reader stalls for the time given, as a descheduled or
    /// stopped process does, while bytes keep arriving.
    struct Script {
        clock: Instant,
        arrivals: VecDeque<Scripted>,
        reads: usize,
        late: Option<(usize, Duration)>,
    }

    impl Script {
        fn new(arrivals: Vec<(u64, &[u8])>) -> Self {
            let start = Instant::now();
            let mut at = start;
            let arrivals = arrivals
                .into_iter()
                .map(|(ms, bytes)| {
                    at += Duration::from_millis(ms);
                    Scripted { at, bytes: bytes.to_vec() }
                })
                .collect();
            Script { clock: start, arrivals, reads: 0, late: None }
        }
    }

    impl Source for Script {
        fn now(&self) -> Instant {
            self.clock
        }

        fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<(usize, Arrival)> {
            let due = self.clock + wait;
            let Some(next) = self.arrivals.front_mut().filter(|next| next.at <= due) else {
                self.clock = due;
                return Err(io::ErrorKind::WouldBlock.into());
            };
            let at = next.at;
            self.clock = self.clock.max(at);
            let n = next.bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&next.bytes[..n]);
            next.bytes.drain(..n);
            if next.bytes.is_empty() {
                self.arrivals.pop_front();
            }
            self.reads += 1;
            if let Some((after, stall)) = self.late {
                if self.reads == after {
                    self.clock += stall;
                }
            }
            Ok((n, on_both_clocks(at)))
        }
    }

    /// A virtual arrival on both clocks; only the monotonic one matters here.
    fn on_both_clocks(mono: Instant) -> Arrival {
        Arrival { mono, wall: SystemTime::UNIX_EPOCH }
    }

    fn rules(max_len: usize) -> Rules {
        Rules { max_bytes: max_len, pause: Some(PAUSE), deadline: DEADLINE, send_time: false }
    }

    /// Runs the reader and describes the result as the server would act on it.
    fn run(max_len: usize, chunk_len: usize, arrivals: Vec<(u64, &[u8])>) -> String {
        run_script(Script::new(arrivals), &rules(max_len), chunk_len)
    }

    /// Reads `script` under `rules` in reads of `chunk_len` bytes, and says
    /// how the message ended, its text and when, from the script's start.
    fn run_script(mut script: Script, rules: &Rules, chunk_len: usize) -> String {
        let start = script.clock;
        let mut message = Vec::new();
        let mut chunk = vec![0; chunk_len];
        match read_message(&mut script, rules, &mut message, &mut chunk) {
            End::Message { ending, at, .. } => format!(
                "{ending:?} {:?} at {}ms",
                String::from_utf8_lossy(&message),
                (at.mono - start).as_millis()
            ),
            End::Refused(Refusal::TooLong { .. }) => "TooLong".into(),
            End::Refused(Refusal::Deadline { .. }) => "Deadline".into(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn newline_ends_the_message_and_cr_before_it_is_dropped() {
        let got = run(64, 4096, vec![(5, b"hola\r\n")]);
        assert_eq!(got, "Newline { trailing: false } \"hola\" at 5ms");
    }

    #[test]
    fn only_the_first_line_counts() {
        let got = run(64, 4096, vec![(0, b"uno\ndos\n")]);
        assert_eq!(got, "Newline { trailing: true } \"uno\" at 0ms");
    }

    #[test]
    fn a_lone_cr_is_part_of_the_message() {
        assert_eq!(run(64, 4096, vec![(0, b"a\rb"), (0, b"")]), "Eof \"a\\rb\" at 0ms");
        assert_eq!(run(64, 4096, vec![(0, b"ab\r"), (0, b"")]), "Eof \"ab\\r\" at 0ms");
    }

    #[test]
    fn cr_and_lf_split_across_reads() {
        let got = run(64, 4096, vec![(0, b"hola\r"), (50, b"\n")]);
        assert_eq!(got, "Newline { trailing: false } \"hola\" at 50ms");
    }

    #[test]
    fn eof_ends_the_message_even_when_empty() {
        assert_eq!(run(64, 4096, vec![(3, b"")]), "Eof \"\" at 3ms");
        assert_eq!(run(64, 4096, vec![(0, b"ab"), (1, b"")]), "Eof \"ab\" at 0ms");
    }

    #[test]
    fn a_pause_after_some_bytes_ends_the_message_at_the_last_byte() {
        let got = run(64, 4096, vec![(10, b"ho"), (150, b"la"), (1000, b"!\n")]);
        assert_eq!(got, "Pause \"hola\" at 160ms");
    }

    #[test]
    fn silence_before_any_byte_is_not_a_pause() {
        let got = run(64, 4096, vec![(5000, b"hola\n")]);
        assert_eq!(got, "Newline { trailing: false } \"hola\" at 5000ms");
    }

    #[test]
    fn silent_and_trickling_clients_hit_the_deadline() {
        assert_eq!(run(64, 4096, vec![]), "Deadline");
        let trickle: Vec<(u64, &[u8])> = (0..200).map(|_| (100, &b"x"[..])).collect();
        assert_eq!(run(1000, 4096, trickle), "Deadline");
    }

    #[test]
    fn limit_is_inclusive_and_excludes_the_terminator() {
        let exact = [b'a'; 8];
        let mut with_crlf = exact.to_vec();
        with_crlf.extend_from_slice(b"\r\n");
        assert!(run(8, 4096, vec![(0, &with_crlf)]).starts_with("Newline"));
        assert!(run(8, 3, vec![(0, &with_crlf)]).starts_with("Newline"));
        assert!(run(8, 4096, vec![(0, &exact), (0, b"")]).starts_with("Eof"));
        assert_eq!(run(8, 4096, vec![(0, b"aaaaaaaaa\n")]), "TooLong");
        assert_eq!(run(8, 4096, vec![(0, b"aaaaaaaa\r"), (0, b"")]), "TooLong");
        assert_eq!(run(8, 4096, vec![(0, b"aaaaaaaaa")]), "TooLong");
    }

    #[test]
    fn too_long_is_seen_before_the_client_stops() {
        let flood = vec![b'x'; 1 << 20];
        let mut script = Script::new(vec![(0, &flood)]);
        let mut message = Vec::new();
        let mut chunk = [0; 4096];
        let outcome = read_message(&mut script, &rules(65_536), &mut message, &mut chunk);
        assert!(matches!(outcome, End::Refused(Refusal::TooLong { .. })));
        assert!(message.len() <= 65_537, "buffer grew to {}", message.len());
    }

    #[test]
    fn with_the_pause_off_only_lf_or_eof_end_a_message() {
        let no_pause = Rules { pause: None, ..rules(64) };
        let mut script = Script::new(vec![(0, b"ho"), (5_000, b"la\n")]);
        let (mut message, mut chunk) = (Vec::new(), [0; 64]);
        let outcome = read_message(&mut script, &no_pause, &mut message, &mut chunk);
        assert!(matches!(outcome, End::Message { ending: Ending::Newline { .. }, .. }));
        assert_eq!(message, b"hola");
        let mut stalled = Script::new(vec![(0, b"ho")]);
        let outcome = read_message(&mut stalled, &no_pause, &mut message, &mut chunk);
        assert!(matches!(outcome, End::Refused(Refusal::Deadline { .. })));
    }

    #[test]
    fn pause_past_the_deadline_is_a_deadline() {
        let got = run(64, 4096, vec![(9_900, b"ab")]);
        assert_eq!(got, "Deadline");
    }

    #[test]
    fn resets_are_reported() {
        struct Reset;
        impl Source for Reset {
            fn now(&self) -> Instant {
                Instant::now()
            }
            fn read_within(&mut self, _: &mut [u8], _: Duration) -> io::Result<(usize, Arrival)> {
                Err(io::ErrorKind::ConnectionReset.into())
            }
        }
        let outcome = read_message(&mut Reset, &rules(8), &mut Vec::new(), &mut [0; 8]);
        assert!(matches!(outcome, End::Failed(e) if e.kind() == io::ErrorKind::ConnectionReset));
    }

    /// What the framing rules say a script should give, computed on whole
    /// arrivals rather than on the reader's chunks.
    /// Reads begin at each arrival and take at most `chunk_len` bytes, which
    /// decides whether bytes after an LF came "in the same read".
    fn expected(max_len: usize, chunk_len: usize, script: &[(u64, Vec<u8>)]) -> String {
        let (pause, deadline) = (PAUSE.as_millis() as u64, DEADLINE.as_millis() as u64);
        let mut message: Vec<u8> = Vec::new();
        let (mut clock, mut last) = (0, None::<u64>);
        let too_long = |m: &[u8]| {
            m.len() > max_len + 1 || (m.len() == max_len + 1 && m.last() != Some(&b'\r'))
        };
        let ended = |m: &[u8], how: &str, at: u64| match m.len() > max_len {
            true => "TooLong".to_string(),
            false => format!("{how} {:?} at {at}ms", String::from_utf8_lossy(m)),
        };
        for (gap, bytes) in script {
            let arrival = clock + gap;
            if let Some(at) = last {
                if arrival - at > pause && at + pause <= deadline {
                    return ended(&message, "Pause", at);
                }
            }
            if arrival > deadline {
                return "Deadline".into();
            }
            clock = arrival;
            if bytes.is_empty() {
                return ended(&message, "Eof", last.unwrap_or(clock));
            }
            if let Some(at) = bytes.iter().position(|&b| b == b'\n') {
                message.extend_from_slice(&bytes[..at]);
                if message.last() == Some(&b'\r') {
                    message.pop();
                }
                if message.len() > max_len {
                    return "TooLong".into();
                }
                let trailing = at + 1 < bytes.len() && (at + 1) % chunk_len != 0;
                return format!(
                    "Newline {{ trailing: {trailing} }} {:?} at {clock}ms",
                    String::from_utf8_lossy(&message)
                );
            }
            message.extend_from_slice(bytes);
            if too_long(&message) {
                return "TooLong".into();
            }
            last = Some(clock);
        }
        match last {
            Some(at) if at + pause <= deadline => ended(&message, "Pause", at),
            _ => "Deadline".into(),
        }
    }

    #[test]
    fn random_bytes_in_random_splits_with_random_pauses() {
        let alphabet = b"ab\r\n\0\x1b\x7f\xff\xc3";
        for seed in 1..=3_000u64 {
            let mut rng = XorShift::new(seed);
            let max_len = 1 + rng.below(24) as usize;
            let script: Vec<(u64, Vec<u8>)> = (0..1 + rng.below(8))
                .map(|_| {
                    let gap = [0, 1, 50, 199, 200, 201, 400, 4_000][rng.below(8) as usize];
                    let len = rng.below(12) as usize;
                    let bytes = (0..len)
                        .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                        .collect();
                    (gap, bytes)
                })
                .collect();
            let chunk_len = 1 + rng.below(6) as usize;
            let arrivals = script.iter().map(|(g, b)| (*g, b.as_slice())).collect();
            let want = expected(max_len, chunk_len, &script);
            // Chunks smaller than an arrival must not change the outcome.
            let got = run(max_len, chunk_len, arrivals);
            assert_eq!(got, want, "seed {seed}, max {max_len}, chunk {chunk_len}: {script:?}");
        }
    }

    /// Feeds `script` straight to a framer, each arrival split into pieces
    /// of `piece` bytes (0: whole) that all arrive at its time, and asks it
    /// the time only at its wakes, as the waiting room does.
    fn feed_in_pieces(max_len: usize, script: &[(u64, Vec<u8>)], piece: usize) -> String {
        let start = Instant::now();
        let mut framer = Framer::new(&rules(max_len), start, Vec::new());
        let mut clock = start;
        let describe = |outcome: End, framer: &Framer| match outcome {
            // Whether bytes followed the LF depends on the pieces, by design.
            End::Message { ending, at, .. } => format!(
                "{:?} {:?} at {}ms",
                match ending {
                    Ending::Newline { .. } => "Newline",
                    Ending::Eof => "Eof",
                    Ending::Pause => "Pause",
                    Ending::Unasked => "Unasked",
                },
                String::from_utf8_lossy(framer.message()),
                (at.mono - start).as_millis()
            ),
            End::Refused(Refusal::TooLong { .. }) => "TooLong".into(),
            End::Refused(Refusal::Deadline { .. }) => "Deadline".into(),
            other => format!("{other:?}"),
        };
        for (gap, bytes) in script {
            let arrival = clock + Duration::from_millis(*gap);
            while framer.next_wake() < arrival {
                let wake = framer.next_wake();
                if let Some(outcome) = framer.on_timer(wake) {
                    return describe(outcome, &framer);
                }
            }
            clock = arrival;
            let size = if piece == 0 { bytes.len().max(1) } else { piece };
            let pieces: Vec<&[u8]> =
                if bytes.is_empty() { vec![&[]] } else { bytes.chunks(size).collect() };
            for part in pieces {
                if let Some(outcome) = framer.feed(part, on_both_clocks(clock)) {
                    return describe(outcome, &framer);
                }
            }
        }
        loop {
            let wake = framer.next_wake();
            if let Some(outcome) = framer.on_timer(wake) {
                return describe(outcome, &framer);
            }
        }
    }

    /// Runs the reader on `script`, stalling it for `stall` after its
    /// `after`-th read.
    fn run_late(rules: &Rules, arrivals: Vec<(u64, &[u8])>, after: usize, stall: u64) -> String {
        let mut script = Script::new(arrivals);
        script.late = Some((after, Duration::from_millis(stall)));
        run_script(script, rules, 64)
    }

    #[test]
    fn a_late_reader_does_not_cut_a_message_short() {
        // `la` and the LF came 100 ms after `ho`, inside the pause, while
        // the reader was stalled for 350 ms: they belong to the message.
        let got = run_late(&rules(64), vec![(0, b"ho"), (100, b"la\n")], 1, 350);
        assert_eq!(got, "Newline { trailing: false } \"hola\" at 100ms");
        // Bytes that came after the pause ran out still do not.
        let got = run_late(&rules(64), vec![(0, b"ho"), (300, b"la\n")], 1, 350);
        assert_eq!(got, "Pause \"ho\" at 0ms");
    }

    #[test]
    fn a_late_reader_does_not_turn_a_message_into_a_deadline() {
        // The LF came 1 s before the deadline; the reader woke 1 s after it.
        let no_pause = Rules { pause: None, ..rules(64) };
        let got = run_late(&no_pause, vec![(0, b"ho"), (9_000, b"la\n")], 1, 11_000);
        assert_eq!(got, "Newline { trailing: false } \"hola\" at 9000ms");
    }

    #[test]
    fn byte_by_byte_chunk_by_chunk_and_all_at_once_agree() {
        let alphabet = b"ab\r\n\0\xff";
        for seed in 1..=2_000u64 {
            let mut rng = XorShift::new(seed);
            let max_len = 1 + rng.below(16) as usize;
            let script: Vec<(u64, Vec<u8>)> = (0..1 + rng.below(6))
                .map(|_| {
                    let gap = [0, 1, 199, 200, 201, 4_000, 9_999][rng.below(7) as usize];
                    let len = rng.below(10) as usize;
                    let bytes = (0..len)
                        .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                        .collect();
                    (gap, bytes)
                })
                .collect();
            let whole = feed_in_pieces(max_len, &script, 0);
            let chunk = 1 + rng.below(4) as usize;
            assert_eq!(feed_in_pieces(max_len, &script, 1), whole, "seed {seed}: {script:?}");
            assert_eq!(
                feed_in_pieces(max_len, &script, chunk),
                whole,
                "seed {seed}, chunks of {chunk}: {script:?}"
            );
        }
    }

    #[test]
    fn bytes_that_arrive_as_the_pause_ends_belong_to_the_message() {
        let start = Instant::now();
        let mut framer = Framer::new(&rules(64), start, Vec::new());
        assert!(framer.feed(b"ho", on_both_clocks(start)).is_none());
        let end = start + PAUSE;
        assert_eq!(framer.next_wake(), end);
        assert!(framer.feed(b"la", on_both_clocks(end)).is_none());
        assert_eq!(framer.message(), b"hola");
        let late = end + PAUSE + Duration::from_millis(1);
        assert!(matches!(
            framer.feed(b"!", on_both_clocks(late)),
            Some(End::Message { ending: Ending::Pause, .. })
        ));
        assert_eq!(framer.message(), b"hola", "bytes after the pause are not its");
    }
}
