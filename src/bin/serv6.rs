//! serv6: answers each TCP client's message with the time it was received.

fn main() -> std::process::ExitCode {
    serv6::server::main(std::env::args_os().skip(1))
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("serv6 runs on 64-bit Linux (x86_64, aarch64, riscv64): see src/lib.rs");
