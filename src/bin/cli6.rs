//! cli6: sends a message to serv6 and prints its reply.

fn main() -> std::process::ExitCode {
    serv6::client::main(std::env::args_os().skip(1))
}
