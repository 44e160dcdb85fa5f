//! serv6's command line: its flags, their defaults, its help and its manual
//! page (the manual's prose is `serv6.8.txt`, next to this file).

use super::framing::Rules;
use crate::addr::{Cidr, Endpoint, HostArg};
use crate::cmdline::{flag, Arg, Flag, Info, Parser, Program, UsageError};
use crate::platform::Signal;
use crate::protocol::{reply_form, Service};
use std::ffi::OsString;
use std::time::Duration;

/// What serv6 was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Serve(Options),
    /// Print the help, the version or the manual page.
    Info(Info),
}

/// How serv6 serves; every field has a flag in [`FLAGS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// Addresses or host names to listen on; empty means `127.0.0.1` and `::1`.
    pub binds: Vec<String>,
    /// `None`: not given, so `protocol::DEFAULT_PORT`, or the passed sockets' own.
    pub port: Option<u16>,
    /// `--max-bytes`, `--pause` (`None`: off), `--deadline`, `--send-time`.
    pub rules: Rules,
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
    /// With `--proxy-protocol`: who may send a PROXY header.
    pub proxy_from: Option<Vec<Cidr>>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<Endpoint>,
}

impl Default for Options {
    /// The defaults; `FLAGS` shows each in its help, and a test checks they agree.
    fn default() -> Self {
        let (pause, deadline) = (Some(Duration::from_millis(200)), Duration::from_secs(10));
        Options {
            binds: Vec::new(),
            port: None,
            rules: Rules { max_bytes: 65_536, pause, deadline, send_time: false },
            max_conns: None,
            backlog: 4096,
            grace: Duration::from_secs(5),
            log_bytes: 1024,
            quiet: false,
            service: Service::Receipt,
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
}

/// serv6's own options, as `--help` lists them (`cmdline` adds `--help`,
/// `--version` and `--generate-man`). A table, an entry a flag: rustfmt
/// would spread each over five lines.
#[rustfmt::skip]
pub(crate) const FLAGS: &[Flag<Key>] = &[
    flag(Key::Bind, "-b, --bind ADDR", "listen on ADDR, an IP address (a link-local one with its \
        interface, as fe80::1%eth0) or host name; repeat for more, up to {max_listeners} addresses")
        .defaults_to("127.0.0.1 and ::1; '::' serves the network"),
    flag(Key::Port, "-p, --port PORT", "TCP port; 0 picks a free one").defaults_to("5006"),
    flag(Key::MaxBytes, "--max-bytes N", "longest message accepted, in bytes").defaults_to("65536"),
    flag(Key::Pause, "--pause SECS", "silence that ends a message once bytes have arrived; \
        shorter than the deadline; 'off': only an LF or EOF ends a message, so a pause in the \
        network cannot cut it short, but a plain send-then-recv client gets 'error: no message \
        within N s' at the deadline").defaults_to("0.2"),
    flag(Key::Deadline, "--deadline SECS", "time a client has to complete its message").defaults_to("10"),
    flag(Key::MaxConns, "--max-conns N", "client connections held at once, from accept to close; \
        beyond, the one that has waited longest for its message is told 'error: server busy' \
        and closed, so that a new client always gets a place").defaults_to("as many as the open-file limit allows"),
    flag(Key::Grace, "--grace SECS", "on {stopping}, the time exchanges in progress have to \
        finish before they are told 'error: server shutting down'; a second signal exits at \
        once").defaults_to("5"),
    flag(Key::Backlog, "--backlog N", "connections the kernel queues until a worker takes them \
        (Linux caps it at net.core.somaxconn; elsewhere std's 128 stays); sockets passed by systemd keep the socket unit's \
        Backlog=").defaults_to("4096"),
    flag(Key::ProxyProtocol, "--proxy-protocol", "every connection starts with a PROXY protocol \
        header (v1 or v2, as HAProxy, nginx and cloud load balancers send) naming the client, \
        which the log shows; a connection without a valid one is refused"),
    flag(Key::ProxyFrom, "--proxy-from ADDR[/PREFIX]", "with --proxy-protocol: who may send the \
        header; repeat for more; others are refused").defaults_to("127.0.0.0/8 and ::1, a balancer on this machine"),
    flag(Key::LogBytes, "--log-bytes N", "the most message bytes a log line shows; the rest is \
        counted, not shown (the reply and the logged length are unaffected)").defaults_to("1024"),
    flag(Key::Metrics, "--metrics ADDR:PORT", "serve Prometheus metrics at \
        http://ADDR:PORT/metrics, ADDR an IP address or a host name (the first address it \
        resolves to) (each request bounded in size and time, {metrics_held} held at most, so it cannot slow \
        the exchanges); keep ADDR on loopback unless a firewall guards it").defaults_to("off"),
    flag(Key::Service, "--service NAME", "what to serve: 'receipt' (the reply above), 'daytime' \
        (RFC 867: on connect, one line with the time, then close) or 'time' (RFC 868: on \
        connect, 4 bytes of seconds since 1900, as rdate reads them); sockets passed by systemd \
        named 'daytime' or 'time' (FileDescriptorName=) serve that").defaults_to("receipt"),
    flag(Key::SendTime, "--send-time", "add when the reply was sent: '{reply_sent}', so that a \
        client's clock offset need not include the server's own time (cli6 uses it)"),
    flag(Key::Quiet, "-q, --quiet", "do not log exchanges on standard output"),
];

/// serv6's command line, its help and its manual page.
pub(crate) fn program() -> Program<Key> {
    Program {
        name: "serv6",
        synopsis: "[OPTIONS]",
        about: "Answers each TCP client's message with the time the server received it:\n  \
             {reply}\n\n\
             A message ends at the first LF (a CR before it is dropped), when the client\n\
             shuts down its sending side, or when the client pauses after sending bytes."
            .into(),
        flags: FLAGS,
        after: "\
Standard error gets the listening addresses (the first line), errors and a
summary on exit; standard output gets one line per exchange. Neither output
can stop the service: a reader that stalls makes lines wait, then drop.
On Linux, {stopping} stops it gracefully; a second one at once;
SIGUSR1 prints the summary so far. Elsewhere each signal ends it at once.
",
        facts: vec![
            ("reply", reply_form(false)),
            ("reply_sent", reply_form(true)),
            ("stopping", Signal::list_stopping("or")),
            ("stopping_and", Signal::list_stopping("and")),
            ("metrics", super::metrics::listed()),
            ("max_listeners", super::capacity::MAX_WORKERS.to_string()),
            ("metrics_held", super::metrics::CONNECTIONS.to_string()),
        ],
        section: 8,
        summary: "tell each TCP client when its message arrived",
        manual: include_str!("serv6.8.txt"),
    }
}

/// Parses serv6's arguments, without the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut options = Options::default();
    let (mut proxy, mut proxy_from) = (false, Vec::new());
    let mut parser = Parser::new(args, FLAGS);
    while let Some(arg) = parser.next()? {
        match arg {
            Arg::Value(value) => {
                let value = value.to_string_lossy();
                return Err(UsageError::Refused(format!("unexpected argument '{value}'")));
            }
            Arg::Info(info) => return Ok(Command::Info(info)),
            Arg::Flag(Key::Bind) => options.binds.push(parser.parsed::<HostArg>()?.0),
            Arg::Flag(Key::Port) => options.port = Some(parser.number(0..=u64::from(u16::MAX))?),
            Arg::Flag(Key::MaxBytes) => options.rules.max_bytes = parser.number(1..=MAX_LIMIT)?,
            Arg::Flag(Key::Pause) => options.rules.pause = parser.seconds_or_off()?,
            Arg::Flag(Key::Deadline) => options.rules.deadline = parser.seconds(false)?,
            Arg::Flag(Key::MaxConns) => options.max_conns = Some(parser.number(1..=MAX_LIMIT)?),
            Arg::Flag(Key::Backlog) => options.backlog = parser.number(1..=65_535)?,
            Arg::Flag(Key::Grace) => options.grace = parser.seconds(true)?,
            Arg::Flag(Key::LogBytes) => options.log_bytes = parser.number(0..=MAX_LIMIT)?,
            Arg::Flag(Key::Quiet) => options.quiet = true,
            Arg::Flag(Key::Service) => options.service = parser.parsed()?,
            Arg::Flag(Key::SendTime) => options.rules.send_time = true,
            Arg::Flag(Key::ProxyProtocol) => proxy = true,
            Arg::Flag(Key::ProxyFrom) => proxy_from.push(parser.parsed()?),
            Arg::Flag(Key::Metrics) => options.metrics = Some(parser.parsed()?),
        }
    }
    if proxy && proxy_from.is_empty() {
        proxy_from = ["127.0.0.0/8", "::1"].into_iter().filter_map(Cidr::parse).collect();
    } else if !proxy && !proxy_from.is_empty() {
        return Err(UsageError::Requires("--proxy-from", "'--proxy-protocol'"));
    }
    options.proxy_from = proxy.then_some(proxy_from);
    let Rules { pause, deadline, .. } = options.rules;
    if let Some(pause) = pause.filter(|&p| p >= deadline) {
        let (pause, deadline) = (pause.as_secs_f64(), deadline.as_secs_f64());
        let why = format!("'--pause' ({pause} s) must be shorter than '--deadline' ({deadline} s)");
        return Err(UsageError::Refused(why));
    }
    Ok(Command::Serve(options))
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

    /// The defaults that help describes in words, not as a value to parse.
    const DESCRIBED: [&str; 4] = ["bind", "max-conns", "proxy-from", "metrics"];

    #[test]
    fn the_help_shows_the_real_defaults() {
        for flag in FLAGS {
            if let Some(text) = flag.default.filter(|_| !DESCRIBED.contains(&flag.long())) {
                let words = format!("--{} {text}", flag.long());
                let Ok(Command::Serve(parsed)) = parse_words(&words) else {
                    panic!("{words}");
                };
                let port = Some(parsed.port.unwrap_or(DEFAULT_PORT));
                let default = Options::default();
                let port_default = Some(default.port.unwrap_or(DEFAULT_PORT));
                assert_eq!(
                    (Options { port, ..parsed }),
                    Options { port: port_default, ..default },
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
            .filter(|f| f.default.is_some() && DESCRIBED.contains(&f.long()))
            .map(|f| f.long())
            .collect();
        assert_eq!(described, DESCRIBED);
        let default = Options::default();
        assert!(default.binds.is_empty(), "listen::bind_all binds loopback for none");
        assert_eq!(default.max_conns, None, "capacity::plan derives it");
        assert_eq!(default.metrics, None, "off");
        let Ok(Command::Serve(proxied)) = parse_words("--proxy-protocol") else {
            panic!("--proxy-protocol alone parses");
        };
        let from: Vec<String> =
            proxied.proxy_from.unwrap_or_default().iter().map(|c| format!("{c:?}")).collect();
        assert_eq!(from.len(), 2, "127.0.0.0/8 and ::1: {from:?}");
        assert!(from[0].contains("127.0.0.0") && from[1].contains("::1"), "{from:?}");
    }

    #[test]
    fn every_flag_is_handled() {
        for flag in FLAGS {
            let long = flag.long();
            let words = match flag.value() {
                Some("ADDR[/PREFIX]") => format!("--{long} 10.0.0.0/8 --proxy-protocol"),
                Some("ADDR:PORT") => format!("--{long} 127.0.0.1:9806"),
                Some("ADDR") => format!("--{long} 127.0.0.1"),
                Some("NAME") => format!("--{long} daytime"),
                Some(_) => format!("--{long} 1"),
                None => format!("--{long}"),
            };
            let parsed = parse_words(&words);
            let default = Command::Serve(Options::default());
            assert!(parsed.as_ref().is_ok_and(|c| *c != default), "{words}: {parsed:?}");
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
            rules: Rules {
                max_bytes: 10,
                pause: Some(Duration::from_millis(50)),
                deadline: Duration::from_millis(2500),
                send_time: true,
            },
            max_conns: Some(3),
            backlog: 4096,
            grace: Duration::from_secs(5),
            log_bytes: 1024,
            quiet: true,
            service: Service::Time,
            proxy_from: None,
            metrics: None,
        };
        assert_eq!(got, Command::Serve(want));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_words("-h").unwrap(), Command::Info(Info::Help));
        assert_eq!(parse_words("--port 1 --help").unwrap(), Command::Info(Info::Help));
        assert_eq!(parse_words("-V").unwrap(), Command::Info(Info::Version));
        assert!(program().help().contains("--max-conns N"));
    }

    #[test]
    fn the_manual_has_every_flag_and_default() {
        crate::cmdline::tests::check_manual(&program());
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
            "invalid value '9806' for '--metrics': give HOST:PORT, as localhost:9806, \
             127.0.0.1:9806 or [::1]:9806"
        );
        assert_eq!(
            parse_words("--metrics localhost:9100"),
            Ok(Command::Serve(Options {
                metrics: Some(Endpoint { host: "localhost".into(), port: 9100 }),
                ..Options::default()
            }))
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
                rules: Rules { pause: None, ..Options::default().rules },
                ..Options::default()
            }))
        );
    }
}
