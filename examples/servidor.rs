//! El servidor del ejercicio original, paso a paso, con `std::net` solo.
//! Responde como serv6 en el caso sencillo: `received <N> bytes at <T>`.
//! Uso: cargo run --example servidor [-- DIRECCIÓN]   (127.0.0.1:5006)
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:5006".to_string());
    // 1. socket(), bind() y listen(): TcpListener::bind hace los tres.
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| no_puedo_escuchar(&addr, e));
    let local = listener.local_addr().expect("una dirección");
    eprintln!("servidor: escuchando en {local}");
    loop {
        // 2. accept(): espera a un cliente; cada conexión, un socket nuevo.
        let (stream, client) = listener.accept().expect("accept falló");
        if let Err(e) = atender(stream, client) {
            eprintln!("servidor: {client}: {e}");
        }
    }
}

/// Dice por qué, en una línea, y acaba: 2 si la dirección está mal escrita,
/// 1 si no. Lo más común: otro servidor (¿`make servidor`?) escucha ya ahí.
fn no_puedo_escuchar(addr: &str, e: std::io::Error) -> ! {
    let otra = "elige otra: cargo run --example servidor -- 127.0.0.1:5007";
    match e.kind() {
        ErrorKind::AddrInUse => eprintln!("servidor: {addr} ya está en uso; {otra}"),
        ErrorKind::InvalidInput => eprintln!("servidor: {addr}: no es IP:PUERTO; {otra}"),
        _ => eprintln!("servidor: no puedo escuchar en {addr}: {e}"),
    }
    std::process::exit(if e.kind() == ErrorKind::InvalidInput { 2 } else { 1 })
}

fn atender(mut stream: TcpStream, client: SocketAddr) -> std::io::Result<()> {
    // 3. recv(): el mensaje, hasta el salto de línea (LF) o el final (EOF),
    let mut mensaje = Vec::new();
    BufReader::new(&stream).read_until(b'\n', &mut mensaje)?;
    // y la hora a la que lo tenemos entero.
    let hora = hora_utc(SystemTime::now());
    // Sin el LF, ni el CR que telnet pone delante.
    let texto = mensaje.strip_suffix(b"\n").unwrap_or(&mensaje);
    let texto = texto.strip_suffix(b"\r").unwrap_or(texto);
    // El registro: el mensaje tal cual, sin escapar (serv6 sí escapa).
    let escrito = String::from_utf8_lossy(texto);
    println!("{hora} {client} {} bytes \"{escrito}\"", texto.len());
    // 4. send(): la respuesta, una línea.
    writeln!(stream, "received {} bytes at {hora}", texto.len())?;
    // 5. close(): soltar el socket lo cierra.
    drop(stream);
    Ok(())
}

/// La hora en UTC como la escribe serv6 (RFC 3339 con microsegundos):
/// 2026-12-05T03:45:10.123456Z. std no trae calendario: los días desde
/// 1970 pasan a fecha con civil_from_days, de Howard Hinnant.
fn hora_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).expect("un reloj después de 1970");
    let (dias, s) = (d.as_secs() / 86_400 + 719_468, d.as_secs() % 86_400);
    let (era, dia_era) = (dias / 146_097, dias % 146_097);
    let anyo_era = (dia_era - dia_era / 1460 + dia_era / 36_524 - dia_era / 146_096) / 365;
    let dia_anyo = dia_era - (365 * anyo_era + anyo_era / 4 - anyo_era / 100);
    let m = (5 * dia_anyo + 2) / 153; // 0 = marzo ... 11 = febrero
    let dia = dia_anyo - (153 * m + 2) / 5 + 1;
    let mes = if m < 10 { m + 3 } else { m - 9 };
    let anyo = era * 400 + anyo_era + u64::from(mes <= 2);
    let (h, min, seg, us) = (s / 3600, s / 60 % 60, s % 60, d.subsec_micros());
    format!("{anyo:04}-{mes:02}-{dia:02}T{h:02}:{min:02}:{seg:02}.{us:06}Z")
}
