//! `tessera-sandbox [--host ADDR] [--port N]`: the sandbox as a standalone server for
//! developing an integration by hand (127.0.0.1 unless told otherwise; `--host 0.0.0.0`
//! serves a board on your LAN). Stops with Ctrl-C.

use std::net::{IpAddr, SocketAddr};

use tessera_sandbox::{ProviderKind, Sandbox, CLIENT_ID, CLIENT_SECRET};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut port = 8080u16;
    let mut host = IpAddr::from([127, 0, 0, 1]);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
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
    let sandbox = match Sandbox::start_on(SocketAddr::new(host, port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tessera-sandbox: cannot listen on {host}:{port}: {e}");
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
    eprintln!("tessera-sandbox: {msg}\nusage: tessera-sandbox [--host ADDR] [--port N]");
    std::process::exit(2);
}
