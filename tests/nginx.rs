//! serv6 behind a real nginx stream proxy with the PROXY protocol, with
//! `contrib/nginx/serv6.conf` as shipped: every reply reaches a client that
//! half-closes (as cli6 and `nc -N` do), and every log line names the real
//! client. Skipped, with the reason printed, where nginx or its stream
//! module is missing; CI installs them.

use crate::harness::*;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::{Command, Stdio};

/// nginx in the foreground on a free port, in front of `a` and `b`.
struct Nginx {
    child: std::process::Child,
    front: SocketAddr,
    dir: std::path::PathBuf,
}

impl Nginx {
    fn start(a: SocketAddr, b: SocketAddr) -> Option<Nginx> {
        let module = std::path::Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
        if !have("nginx", &["-v"]) || !module.exists() {
            skipped("needs nginx and its stream module (apt-get install nginx-light libnginx-mod-stream)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("serv6-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let front: SocketAddr = format!("127.0.0.1:{}", dead_port()).parse().expect("an address");
        let shipped =
            std::fs::read_to_string("contrib/nginx/serv6.conf").expect("the shipped config");
        let config = shipped
            .replace("@FRONT@", &front.to_string())
            .replace("@A@", &a.to_string())
            .replace("@B@", &b.to_string());
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).expect("a config");
        let globals = format!(
            "daemon off; master_process off; pid {}/nginx.pid; error_log stderr error;",
            dir.display()
        );
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&path)
            .args(["-g", &globals])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx starts");
        // Held at once, so that a failure below still stops nginx.
        let mut nginx = Nginx { child, front, dir };
        if !eventually(PATIENCE, || proc::listening_on(front.port())) {
            let _ = nginx.child.kill();
            let mut said = String::new();
            if let Some(mut stderr) = nginx.child.stderr.take() {
                let _ = stderr.read_to_string(&mut said);
            }
            panic!("nginx did not listen on {front}: {said}");
        }
        Some(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn through_nginx_a_half_closing_client_gets_every_reply_and_is_logged() {
    let start = || Server::start(&["--bind", "127.0.0.1", "--proxy-protocol"]);
    let (a, b) = (start(), start());
    let Some(nginx) = Nginx::start(a.v4(), b.v4()) else {
        return;
    };
    let mut ports = HashSet::new();
    for _ in 0..200 {
        let mut conn = connect(nginx.front);
        ports.insert(conn.local_addr().expect("an address").port());
        conn.write_all(b"hola\n").expect("sends");
        conn.shutdown(Shutdown::Write).expect("half-closes, as cli6 does");
        assert_received(&read_to_end(&mut conn), 4);
    }
    // Each line went out before its reply; the readers may lag a little.
    let mut lines = Vec::new();
    let all = eventually(PATIENCE, || {
        lines.extend(a.pending_log_lines());
        lines.extend(b.pending_log_lines());
        lines.len() >= 200
    });
    assert!(all, "{} of 200 exchanges logged", lines.len());
    for line in &lines {
        let line = text(line);
        let client: SocketAddr = line.split(' ').nth(1).and_then(|a| a.parse().ok()).expect(&line);
        assert!(ports.contains(&client.port()), "{line} is not a client's port");
    }
    drop(nginx);
}
