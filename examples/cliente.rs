//! El cliente del ejercicio original, paso a paso, con `std::net` solo.
//! Envía un mensaje a serv6 (o al servidor de ejemplo) y muestra la respuesta.
//! Uso: cargo run --example cliente [-- MENSAJE [DIRECCIÓN]]   (hola, 127.0.0.1:5006)
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mensaje = args.next().unwrap_or_else(|| "hola".to_string());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5006".to_string());
    match preguntar(&addr, &mensaje) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => no_pude_preguntar(&addr, e),
    }
}

/// Dice por qué, en una línea: 2 si la dirección está mal escrita, 1 si no.
/// Lo más común: nadie escucha ahí (¿falta `make servidor`?).
fn no_pude_preguntar(addr: &str, e: std::io::Error) -> ExitCode {
    let otra = "elige otra: cargo run --example cliente -- hola 127.0.0.1:5007";
    match e.kind() {
        ErrorKind::ConnectionRefused => {
            eprintln!("cliente: {addr}: nadie escucha ahí; arranca el servidor o {otra}")
        }
        ErrorKind::InvalidInput => eprintln!("cliente: {addr}: no es IP:PUERTO; {otra}"),
        _ => eprintln!("cliente: {addr}: {e}"),
    }
    ExitCode::from(if e.kind() == ErrorKind::InvalidInput { 2 } else { 1 })
}

fn preguntar(addr: &str, mensaje: &str) -> std::io::Result<()> {
    // 1. connect(): un socket conectado al servidor.
    let mut stream = TcpStream::connect(addr)?;
    // 2. send(): el mensaje y un LF, que le dice al servidor que ya está.
    stream.write_all(format!("{mensaje}\n").as_bytes())?;
    // 3. recv(): la respuesta, hasta que el servidor cierra la conexión.
    let mut respuesta = String::new();
    stream.read_to_string(&mut respuesta)?;
    // 4. La respuesta, en la consola.
    print!("{respuesta}");
    // 5. close(): soltar el socket lo cierra.
    drop(stream);
    Ok(())
}
