//! serv6: answers each TCP client's message with the time it was received.

fn main() -> std::process::ExitCode {
    serv6::server::main(std::env::args_os().skip(1))
}
