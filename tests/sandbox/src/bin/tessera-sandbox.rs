//! `tessera-sandbox [--host ADDR] [--port N] [--tls CA_FILE [--tls-name NAME]]`: the sandbox
//! as a standalone server for developing an integration by hand (127.0.0.1 unless told
//! otherwise; `--host 0.0.0.0` serves a board on your LAN). `--tls` serves HTTPS with a
//! certificate for the host address (or for `--tls-name`, a DNS name a client maps to this
//! address itself, as `scripts/net-qemu --token-url` does), signed by a CA made at start-up
//! and written to `CA_FILE` (PEM) for `tessera token … --ca CA_FILE`. Stops with Ctrl-C.

use std::net::{IpAddr, SocketAddr};

use tessera_sandbox::{ProviderKind, Sandbox, CLIENT_ID, CLIENT_SECRET};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut port = 8080u16;
    let mut host = IpAddr::from([127, 0, 0, 1]);
    let mut tls_ca: Option<String> = None;
    let mut tls_name: Option<String> = None;
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--tls", Some(path)) => tls_ca = Some(path),
            ("--tls-name", Some(name)) => tls_name = Some(name),
            ("--port", Some(p)) => match p.parse() {
                Ok(p) => port = p,
                Err(_) => usage(&format!("--port `{p}` is not a port number")),
            },
            ("--host", Some(h)) => match h.parse() {
                Ok(h) => host = h,
                Err(_) => usage(&format!("--host `{h}` is not an IP address")),
            },
            _ => usage(&format!("unexpected `{a}`")),
        }
    }
    let addr = SocketAddr::new(host, port);
    let started = match &tls_ca {
        None => Sandbox::start_on(addr),
        Some(path) => {
            Sandbox::start_tls_on(addr, &tls_name.clone().unwrap_or_else(|| host.to_string()))
                .and_then(|(sb, ca)| {
                    std::fs::write(path, tessera_sandbox::certificate_pem(&ca))?;
                    println!("CA certificate written to {path}");
                    Ok(sb)
                })
        }
    };
    let sandbox = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tessera-sandbox: cannot serve on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("tessera-sandbox listening on {}", sandbox.origin());
    println!("credentials: client id {CLIENT_ID:?}, secret {CLIENT_SECRET:?}");
    for kind in ProviderKind::ALL {
        println!(
            "  {kind:<7} base URL {}   protected {}",
            sandbox.base_url(kind),
            sandbox.protected_url(kind)
        );
    }
    loop {
        std::thread::park();
    }
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "tessera-sandbox: {msg}\nusage: tessera-sandbox [--host ADDR] [--port N] [--tls CA_FILE [--tls-name NAME]]"
    );
    std::process::exit(2);
}
