//! serv6's command line: its flags, their defaults and its help, defined once.

use crate::addr::{Cidr, Endpoint, HostArg};
use crate::args::{self, Arg, DefaultText, Flag, Parser, UsageError};
use crate::exit::{self, Meanings, Status};
use crate::help::Program;
use crate::manpage::Manual;
use crate::protocol::{Service, REPLY_FORM};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

/// What serv6 was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Serve(Options),
    Help,
    Version,
    /// Print the manual page.
    Manual,
}

/// How serv6 serves; every field has a flag in [`FLAGS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// Addresses or host names to listen on; empty means `127.0.0.1` and `::1`.
    pub binds: Vec<String>,
    /// `None`: not given, so `protocol::DEFAULT_PORT`, or the passed sockets' own.
    pub port: Option<u16>,
    pub max_bytes: usize,
    /// `None`: `--pause off`.
    pub pause: Option<Duration>,
    pub deadline: Duration,
    /// `None`: as many as the open-file limit allows (`server::capacity`).
    pub max_conns: Option<usize>,
    /// On a signal, how long exchanges in progress have to finish.
    pub grace: Duration,
    /// The most message bytes an exchange's log line shows.
    pub log_bytes: usize,
    /// Connections the kernel may queue, waiting for `accept`.
    pub backlog: u32,
    pub quiet: bool,
    /// What the bound listeners serve (passed sockets may say otherwise).
    pub service: Service,
    /// Whether a receipt reply also says when it was sent.
    pub send_time: bool,
    /// With `--proxy-protocol`: who may send a PROXY header.
    pub proxy_from: Option<Vec<Cidr>>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
}

impl Default for Options {
    /// The defaults; `FLAGS` shows each as text, and a test checks they agree.
    fn default() -> Self {
        Options {
            binds: Vec::new(),
            port: None,
            max_bytes: 65_536,
            pause: Some(Duration::from_millis(200)),
            deadline: Duration::from_secs(10),
            max_conns: None,
            backlog: 4096,
            grace: Duration::from_secs(5),
            log_bytes: 1024,
            quiet: false,
            service: Service::Receipt,
            send_time: false,
            proxy_from: None,
            metrics: None,
        }
    }
}

/// Limits can be large but not zero, and must fit in memory arithmetic.
const MAX_LIMIT: u64 = 1 << 30;

/// Which of serv6's flags a [`Flag`] is: the parser matches it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Bind,
    Port,
    MaxBytes,
    Pause,
    Deadline,
    MaxConns,
    Grace,
    Backlog,
    ProxyProtocol,
    ProxyFrom,
    LogBytes,
    Metrics,
    Service,
    SendTime,
    Quiet,
    Help,
    Version,
    Manual,
}

pub(crate) const FLAGS: &[Flag<Key>] = &[
    Flag {
        key: Key::Bind,
        short: Some('b'),
        long: "bind",
        value: Some("ADDR"),
        help: "listen on ADDR, an IP address or host name; repeat for more",
        default: DefaultText::Described("127.0.0.1 and ::1; '::' serves the network"),
    },
    Flag {
        key: Key::Port,
        short: Some('p'),
        long: "port",
        value: Some("PORT"),
        help: "TCP port; 0 picks a free one",
        default: DefaultText::Value("5006"),
    },
    Flag {
        key: Key::MaxBytes,
        short: None,
        long: "max-bytes",
        value: Some("N"),
        help: "longest message accepted, in bytes",
        default: DefaultText::Value("65536"),
    },
    Flag {
        key: Key::Pause,
        short: None,
        long: "pause",
        value: Some("SECS"),
        help: "silence that ends a message once bytes have arrived; shorter than the deadline; \
               'off': only an LF or EOF ends a message, so a pause in the network cannot cut \
               it short, but a plain send-then-recv client gets 'error: no message within N s' \
               at the deadline",
        default: DefaultText::Value("0.2"),
    },
    Flag {
        key: Key::Deadline,
        short: None,
        long: "deadline",
        value: Some("SECS"),
        help: "time a client has to complete its message",
        default: DefaultText::Value("10"),
    },
    Flag {
        key: Key::MaxConns,
        short: None,
        long: "max-conns",
        value: Some("N"),
        help: "connections in progress at once; beyond, the one that has waited longest \
               for its message is told 'error: server busy' and closed, so that a new \
               client always gets a place",
        default: DefaultText::Described("as many as the open-file limit allows"),
    },
    Flag {
        key: Key::Grace,
        short: None,
        long: "grace",
        value: Some("SECS"),
        help: "on SIGTERM, SIGINT or SIGHUP, the time exchanges in progress have to finish \
               before they are told 'error: server shutting down'; a second signal exits at once",
        default: DefaultText::Value("5"),
    },
    Flag {
        key: Key::Backlog,
        short: None,
        long: "backlog",
        value: Some("N"),
        help: "connections the kernel queues until a worker takes them (Linux caps it at \
               net.core.somaxconn); sockets passed by systemd keep the socket unit's Backlog=",
        default: DefaultText::Value("4096"),
    },
    Flag {
        key: Key::ProxyProtocol,
        short: None,
        long: "proxy-protocol",
        value: None,
        help: "every connection starts with a PROXY protocol header (v1 or v2, as HAProxy, \
               nginx and cloud load balancers send) naming the client, which the log shows; \
               a connection without a valid one is refused",
        default: DefaultText::None,
    },
    Flag {
        key: Key::ProxyFrom,
        short: None,
        long: "proxy-from",
        value: Some("ADDR[/PREFIX]"),
        help: "with --proxy-protocol: who may send the header; repeat for more; others are \
               refused",
        default: DefaultText::Described("127.0.0.0/8 and ::1, a balancer on this machine"),
    },
    Flag {
        key: Key::LogBytes,
        short: None,
        long: "log-bytes",
        value: Some("N"),
        help: "the most message bytes a log line shows; the rest is counted, not shown (the \
               reply and the logged length are unaffected)",
        default: DefaultText::Value("1024"),
    },
    Flag {
        key: Key::Metrics,
        short: None,
        long: "metrics",
        value: Some("ADDR:PORT"),
        help: "serve Prometheus metrics at http://ADDR:PORT/metrics (one request at a time, \
               bounded in size and time, so it cannot slow the exchanges); keep ADDR on \
               loopback unless a firewall guards it",
        default: DefaultText::Described("off"),
    },
    Flag {
        key: Key::Service,
        short: None,
        long: "service",
        value: Some("NAME"),
        help: "what to serve: 'receipt' (the reply above), 'daytime' (RFC 867: on connect, one \
               line with the time, then close) or 'time' (RFC 868: on connect, 4 bytes of \
               seconds since 1900, as rdate reads them); sockets passed by systemd named \
               'daytime' or 'time' (FileDescriptorName=) serve that",
        default: DefaultText::Value("receipt"),
    },
    Flag {
        key: Key::SendTime,
        short: None,
        long: "send-time",
        value: None,
        help: "add when the reply was sent: 'received <N> bytes at <T>, sent at <T3>', so that \
               a client's clock offset need not include the server's own time (cli6 uses it)",
        default: DefaultText::None,
    },
    Flag {
        key: Key::Quiet,
        short: Some('q'),
        long: "quiet",
        value: None,
        help: "do not log exchanges on standard output",
        default: DefaultText::None,
    },
    args::help(Key::Help),
    args::version(Key::Version),
    args::generate_man(Key::Manual),
];

/// What serv6's exit statuses mean.
pub(crate) const EXIT: Meanings = [
    (Status::Success, "after a clean shutdown"),
    (
        Status::Failure,
        "if it cannot serve (the port is in use, a passed socket is not a listening TCP \
         socket, too few file descriptors), or on a second stopping signal",
    ),
    (Status::Usage, "for bad usage"),
];

/// The manual page's sections beyond the command line (`serv6(8)`).
pub(crate) const MANUAL: Manual = Manual {
    exit: &EXIT,
    section: 8,
    summary: "tell each TCP client when its message arrived",
    sections: &[
        (
            "Protocol",
            "One exchange per TCP connection. The client sends one message; it ends at the \
first LF (a CR just before it is dropped), when the client shuts down its sending side, or \
when the client pauses after sending at least one byte (see --pause).

The server answers with one line and closes the connection:
  received <N> bytes at <YYYY-MM-DDTHH:MM:SS.ffffffZ>

N counts the message's bytes without its terminator; the time, in UTC with microseconds, \
is when the message reached the machine, as the kernel stamped it (SO_TIMESTAMPNS), not when \
serv6 got round to reading it: for a message ended by LF, the arrival of the segment that \
carried the LF (the last one read with it); ended by a pause, the arrival of its last byte; \
ended by EOF, the arrival of its last byte, or for an empty message the moment serv6 saw the \
EOF. Pauses and the deadline are judged by the same arrival times. Where the kernel gives no \
time (not Linux), it is when serv6 read the bytes, and serv6 says so at start. A refused message gets a line starting with \
'error: ' instead: 'error: message longer than N bytes', 'error: no message within S s', \
'error: server busy'.",
        ),
        (
            "Limits",
            "A worker answers each message that has arrived within 1 ms of the connection; \
any other connection waits in one waiting room (epoll, on Linux) for the price of a file \
descriptor and some hundred bytes, not a thread. At start serv6 raises its soft open-file \
limit to the hard limit and says how many connections that allows; --max-conns caps it \
further. When that many wait, or descriptors run out, the connection that has waited \
longest is told 'error: server busy' and closed. Workers are at most 32, whatever the \
options or the clients do.",
        ),
        (
            "Output",
            "Standard output gets one line per exchange, written before the reply is sent: \
the time, the client's address, the length and the message, quoted and escaped. Standard \
error gets the listening addresses (the first line), errors, and a summary on exit.",
        ),
        (
            "Signals",
            "SIGTERM, SIGINT, SIGHUP and SIGPWR stop it: new connections are refused at once, \
those already waiting are told 'error: server shutting down', exchanges in progress have \
--grace to finish and are then told the same; then a summary, and exit status 0. A second \
one exits at once, with status 1, saying how many exchanges it cut. SIGUSR1 writes the \
summary so far to standard error, and serving goes on. SIGUSR2, SIGALRM, SIGVTALRM, \
SIGPROF and the real-time signals are ignored; so is SIGXFSZ, and a log line that would \
pass a file-size limit (ulimit -f) is counted as not written. SIGPIPE is ignored: a log \
reader that went away costs the lines, counted, not the service. SIGQUIT and the signals \
of a fault keep their default (a core dump).",
        ),
        (
            "Metrics",
            "With --metrics ADDR:PORT, GET /metrics there answers in the Prometheus text \
format: serv6_exchanges_total; serv6_refusals_total by reason (too_long, deadline, busy, \
proxy, clock, shutting_down); serv6_connections_failed_total; serv6_health_checks_total; \
the gauges serv6_connections_in_progress, serv6_connections_held and \
serv6_connections_max; serv6_log_lines_written_total, serv6_log_lines_queued, \
serv6_log_lines_dropped_total and serv6_log_lines_not_written_total; \
serv6_error_lines_dropped_total; the histogram serv6_reply_latency_seconds, from a \
message's arrival to its reply; serv6_build_info and process_start_time_seconds.

When NOTIFY_SOCKET is set (systemd Type=notify), serv6 sends READY=1 once it serves, \
STATUS= every 2 s, STOPPING=1 at the first stopping signal, and, with WATCHDOG_USEC, \
WATCHDOG=1 at half that interval while its workers and waiting room are seen to move.",
        ),
        (
            "Environment",
            "LISTEN_PID, LISTEN_FDS: socket activation, as sd_listen_fds(3) describes. When \
LISTEN_PID is serv6's process ID, it serves the LISTEN_FDS listening sockets passed as file \
descriptors 3 onwards instead of binding its own, and --bind and --port are refused. These \
variables, and LISTEN_FDNAMES, are removed from its environment. NOTIFY_SOCKET, \
WATCHDOG_USEC, WATCHDOG_PID: see METRICS.",
        ),
        (
            "Examples",
            "Serve the network on port 7000:
  serv6 --bind :: --port 7000

Ask it with netcat, telnet or cli6:
  echo hola | nc -N localhost 7000
  telnet localhost 7000
  cli6 --port 7000 hola

Run it as a systemd service on port 5006, the socket owned by systemd:
  systemctl enable --now serv6.socket",
        ),
        (
            "See also",
            "cli6(1), nc(1), telnet(1), systemd.socket(5), sd_listen_fds(3)",
        ),
    ],
};

/// serv6's command line, for help and usage errors.
pub(crate) fn program() -> Program<Key> {
    Program {
        name: "serv6",
        synopsis: "serv6 [OPTIONS]",
        about: format!(
            "Answers each TCP client's message with the time the server received it:\n  \
             {REPLY_FORM}\n\n\
             A message ends at the first LF (a CR before it is dropped), when the client\n\
             shuts down its sending side, or when the client pauses after sending bytes."
        ),
        flags: FLAGS,
        after: format!(
            "\
Standard error gets the listening addresses (the first line), errors and a
summary on exit; standard output gets one line per exchange. Neither output
can stop the service: a reader that stalls makes lines wait, then drop.
SIGTERM, SIGINT, SIGHUP or SIGPWR stops it gracefully; a second one at once;
SIGUSR1 prints the summary so far.\nExit status: {}",
            exit::describe(&EXIT)
        ),
    }
}

/// Parses serv6's arguments, without the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut options = Options::default();
    let (mut proxy, mut proxy_from) = (false, Vec::new());
    let mut parser = Parser::new(args, FLAGS);
    while let Some(arg) = parser.next_flag()? {
        let flag = match arg {
            Arg::Flag(flag) => flag,
            Arg::Value(value) => {
                return Err(UsageError::UnexpectedArgument(
                    value.to_string_lossy().into_owned(),
                ))
            }
        };
        match flag.key {
            Key::Bind => options.binds.push(parser.parsed::<HostArg>()?.0),
            Key::Port => options.port = Some(parser.number(0..=u64::from(u16::MAX))?),
            Key::MaxBytes => options.max_bytes = parser.number(1..=MAX_LIMIT)?,
            Key::Pause => options.pause = parser.seconds_or_off()?,
            Key::Deadline => options.deadline = parser.seconds(false)?,
            Key::MaxConns => options.max_conns = Some(parser.number(1..=MAX_LIMIT)?),
            Key::Backlog => options.backlog = parser.number(1..=65_535)?,
            Key::Grace => options.grace = parser.seconds(true)?,
            Key::LogBytes => options.log_bytes = parser.number(0..=MAX_LIMIT)?,
            Key::Quiet => options.quiet = true,
            Key::Service => options.service = parser.parsed()?,
            Key::SendTime => options.send_time = true,
            Key::ProxyProtocol => proxy = true,
            Key::ProxyFrom => proxy_from.push(parser.parsed()?),
            Key::Metrics => options.metrics = Some(parser.parsed::<Endpoint>()?.0),
            Key::Help => return Ok(Command::Help),
            Key::Version => return Ok(Command::Version),
            Key::Manual => return Ok(Command::Manual),
        }
    }
    options.proxy_from = proxy_rules(proxy, proxy_from)?;
    if let Some(pause) = options.pause.filter(|&p| p >= options.deadline) {
        return Err(UsageError::NotShorter {
            option: "--pause",
            value: pause,
            than: "--deadline",
            limit: options.deadline,
        });
    }
    Ok(Command::Serve(options))
}

/// The sources trusted to send PROXY headers, `None` without the protocol.
fn proxy_rules(proxy: bool, from: Vec<Cidr>) -> Result<Option<Vec<Cidr>>, UsageError> {
    match (proxy, from.is_empty()) {
        (false, true) => Ok(None),
        (false, false) => Err(UsageError::Requires {
            what: &["--proxy-from"],
            needs: "'--proxy-protocol'",
        }),
        (true, false) => Ok(Some(from)),
        (true, true) => Ok(Some(
            ["127.0.0.0/8", "::1"]
                .into_iter()
                .filter_map(Cidr::parse)
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DEFAULT_PORT;

    fn parse_words(words: &str) -> Result<Command, UsageError> {
        parse(words.split_whitespace().map(OsString::from))
    }

    #[test]
    fn defaults() {
        assert_eq!(parse_words("").unwrap(), Command::Serve(Options::default()));
    }

    #[test]
    fn the_help_shows_the_real_defaults() {
        for flag in FLAGS {
            if let DefaultText::Value(text) = flag.default {
                let words = format!("--{} {text}", flag.long);
                let Ok(Command::Serve(parsed)) = parse_words(&words) else {
                    panic!("{words}");
                };
                let port = Some(parsed.port.unwrap_or(DEFAULT_PORT));
                let default = Options::default();
                let port_default = Some(default.port.unwrap_or(DEFAULT_PORT));
                assert_eq!(
                    (Options { port, ..parsed }),
                    Options {
                        port: port_default,
                        ..default
                    },
                    "{words}"
                );
            }
        }
    }

    #[test]
    fn the_described_defaults_are_what_happens() {
        // Each default the help describes in words is one that serv6 works
        // out when the option is absent, not a value parsed here: check
        // that parsing leaves it so, and what it leaves for the proxy.
        let described: Vec<&str> = FLAGS
            .iter()
            .filter(|f| matches!(f.default, DefaultText::Described(_)))
            .map(|f| f.long)
            .collect();
        assert_eq!(described, ["bind", "max-conns", "proxy-from", "metrics"]);
        let default = Options::default();
        assert!(
            default.binds.is_empty(),
            "listen::bind_all binds loopback for none"
        );
        assert_eq!(default.max_conns, None, "capacity::plan derives it");
        assert_eq!(default.metrics, None, "off");
        let Ok(Command::Serve(proxied)) = parse_words("--proxy-protocol") else {
            panic!("--proxy-protocol alone parses");
        };
        let from: Vec<String> = proxied
            .proxy_from
            .unwrap_or_default()
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        assert_eq!(from.len(), 2, "127.0.0.0/8 and ::1: {from:?}");
        assert!(
            from[0].contains("127.0.0.0") && from[1].contains("::1"),
            "{from:?}"
        );
    }

    #[test]
    fn every_flag_is_handled() {
        for flag in FLAGS {
            let words = match flag.value {
                Some("ADDR[/PREFIX]") => format!("--{} 10.0.0.0/8 --proxy-protocol", flag.long),
                Some("ADDR:PORT") => format!("--{} 127.0.0.1:9806", flag.long),
                Some("NAME") => format!("--{} daytime", flag.long),
                Some(_) => format!("--{} 1", flag.long),
                None => format!("--{}", flag.long),
            };
            let parsed = parse_words(&words);
            let default = Command::Serve(Options::default());
            assert!(
                parsed.as_ref().is_ok_and(|c| *c != default),
                "{words}: {parsed:?}"
            );
        }
    }

    #[test]
    fn every_option() {
        let got = parse_words(
            "--bind :: -b 127.0.0.1 --port 0 --max-bytes 10 --pause 0.05 \
             --deadline 2.5 --max-conns 3 -q --service time --send-time",
        )
        .unwrap();
        let want = Options {
            binds: vec!["::".into(), "127.0.0.1".into()],
            port: Some(0),
            max_bytes: 10,
            pause: Some(Duration::from_millis(50)),
            deadline: Duration::from_millis(2500),
            max_conns: Some(3),
            backlog: 4096,
            grace: Duration::from_secs(5),
            log_bytes: 1024,
            quiet: true,
            service: Service::Time,
            send_time: true,
            proxy_from: None,
            metrics: None,
        };
        assert_eq!(got, Command::Serve(want));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_words("-h").unwrap(), Command::Help);
        assert_eq!(parse_words("--port 1 --help").unwrap(), Command::Help);
        assert_eq!(parse_words("-V").unwrap(), Command::Version);
        assert!(program().help().contains("--max-conns N"));
    }

    #[test]
    fn errors_name_the_argument() {
        let err = |words| parse_words(words).unwrap_err().to_string();
        assert_eq!(err("--prot 5"), "unknown option '--prot'");
        assert_eq!(err("extra"), "unexpected argument 'extra'");
        assert_eq!(err("--port"), "option '--port' needs a value");
        assert_eq!(
            err("--port 70000"),
            "invalid value '70000' for '--port': it must be from 0 to 65535"
        );
        assert_eq!(
            err("--metrics 9806"),
            "invalid value '9806' for '--metrics': it is not an IP address and a port, as \
             127.0.0.1:9806 or [::1]:9806"
        );
        assert_eq!(
            err("--max-conns 0"),
            "invalid value '0' for '--max-conns': it must be from 1 to 1073741824"
        );
        assert_eq!(
            err("--deadline 0"),
            "invalid value '0' for '--deadline': it must be more than zero"
        );
        assert_eq!(
            err("--deadline 0.0000001"),
            "invalid value '0.0000001' for '--deadline': it must be at least 0.001 seconds"
        );
        assert_eq!(
            err("--pause 5 --deadline 2"),
            "'--pause' (5 s) must be shorter than '--deadline' (2 s)"
        );
        assert_eq!(
            err("--bind="),
            "invalid value '' for '--bind': it is not a host name or address"
        );
        assert_eq!(
            parse_words("--pause off"),
            Ok(Command::Serve(Options {
                pause: None,
                ..Options::default()
            }))
        );
    }
}
