//! cli6: sends a message to serv6 and prints its reply.

fn main() -> std::process::ExitCode {
    serv6::client::main(std::env::args_os().skip(1))
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("cli6 runs on 64-bit Linux (x86_64, aarch64, riscv64): see src/lib.rs");
