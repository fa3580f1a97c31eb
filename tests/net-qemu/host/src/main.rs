//! `net-qemu`: the host side of the terminal on QEMU (tests/net-qemu/firmware).
//!
//! `net-qemu --firmware ELF [--flash BYTES --ram BYTES]` starts the sandbox over HTTPS four
//! times on 127.0.0.1 (RSA-2048 with an intermediate over TLS 1.3 and over TLS 1.2, ECDSA
//! P-256 over TLS 1.3, an untrusted root), boots the firmware on QEMU `virt` with user
//! networking `restrict=on` and one `guestfwd` per server (socat to the loopback port),
//! answers the scenarios' control requests (faults, counts, the held response's gate),
//! boots it a second time with the first boot's snapshot, checks every step and prints
//! them with the summary line.
//!
//! `net-qemu --firmware ELF --token-url https://NAME:PORT/PATH --ca FILE --client-id ID`
//! (secret from `TESSERA_CLIENT_SECRET`) boots the same firmware against that OAuth 2.0
//! token endpoint on 127.0.0.1:PORT: first token, cached reuse, one refresh, one JSON line
//! each.
//!
//! The guest's configuration is data QEMU loads at 0x80f00000 (`-device loader`), written
//! to a private temporary directory; the guest can reach nothing but the forwarded ports.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tessera_sandbox::pki::{self, LeafSpec, Versions};
use tessera_sandbox::{
    certificate_pem, Endpoint, Fault, Gate, ProviderKind, Sandbox, CLIENT_ID, CLIENT_SECRET,
};

/// The guest's address for the forwarded servers, and its control port (firmware main.rs).
const SERVER_IP: &str = "10.0.2.100";
const CONTROL_IP: &str = "10.0.2.101";
const CONTROL_PORT: u16 = 9000;
/// Where the guest reads its configuration (firmware config.rs).
const CONFIG_ADDR: &str = "0x80f00000";
/// The servers' name: the guest maps it to [`SERVER_IP`] itself (no DNS query leaves it). Not
/// under `.localhost`, which a client must resolve to its own loopback (RFC 6761).
const HOST: &str = "api.tessera.test";
/// How long one boot may take before it is stopped.
const BOOT_LIMIT_S: u32 = 120;

struct Args {
    firmware: PathBuf,
    flash: Option<u64>,
    ram: Option<u64>,
    token_url: Option<String>,
    ca: Option<PathBuf>,
    client_id: Option<String>,
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "net-qemu: {msg}\nusage: net-qemu --firmware ELF [--flash BYTES --ram BYTES]\n       \
         net-qemu --firmware ELF --token-url https://NAME:PORT/PATH --ca FILE --client-id ID \
         (secret from TESSERA_CLIENT_SECRET)"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        firmware: PathBuf::new(),
        flash: None,
        ram: None,
        token_url: None,
        ca: None,
        client_id: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            usage(&format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--firmware" => a.firmware = value.into(),
            "--flash" => a.flash = value.parse().ok(),
            "--ram" => a.ram = value.parse().ok(),
            "--token-url" => a.token_url = Some(value),
            "--ca" => a.ca = Some(value.into()),
            "--client-id" => a.client_id = Some(value),
            _ => usage(&format!("unexpected `{flag}`")),
        }
    }
    if a.firmware.as_os_str().is_empty() {
        usage("--firmware is required");
    }
    a
}

/// The configuration record format the guest parses (firmware config.rs).
fn config_bytes(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"TNQ1".to_vec();
    for (name, value) in records.iter().chain([&("end", &b""[..])]) {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

fn seed() -> Vec<u8> {
    let mut s = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut s))
        .expect("the OS's CSPRNG");
    s
}

/// A private directory for the configuration files (they hold the client secret).
fn private_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("net-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    dir
}

/// One boot: QEMU with the configuration loaded, every `(guest port, host port)` forwarded
/// from the server address (and the control port when given); the guest's lines.
fn boot(
    firmware: &Path,
    config: &Path,
    forwards: &[(u16, u16)],
    control: Option<u16>,
) -> (bool, Vec<String>) {
    let mut netdev = String::from("user,id=n0,restrict=on");
    for (guest, host) in forwards {
        netdev.push_str(&format!(
            ",guestfwd=tcp:{SERVER_IP}:{guest}-cmd:socat STDIO TCP:127.0.0.1:{host}"
        ));
    }
    if let Some(port) = control {
        netdev.push_str(&format!(
            ",guestfwd=tcp:{CONTROL_IP}:{CONTROL_PORT}-cmd:socat STDIO TCP:127.0.0.1:{port}"
        ));
    }
    let mut child = Command::new("timeout")
        .arg(BOOT_LIMIT_S.to_string())
        .arg("qemu-system-riscv32")
        .args(["-machine", "virt", "-cpu", "rv32,a=false,f=false,d=false"])
        .args(["-m", "128M", "-bios", "none", "-display", "none"])
        .args(["-serial", "none", "-monitor", "none"])
        // Exact instruction counts: one instruction, one nanosecond of virtual time.
        .args(["-icount", "shift=0"])
        .args(["-semihosting-config", "enable=on,target=native"])
        // Modern virtio-mmio (version 2) unless NET_QEMU_VIRTIO=legacy asks for QEMU's
        // default, version 1: the driver handles both.
        .args([
            "-global",
            match std::env::var("NET_QEMU_VIRTIO").as_deref() {
                Ok("legacy") => "virtio-mmio.force-legacy=true",
                _ => "virtio-mmio.force-legacy=false",
            },
        ])
        .args(["-global", "virtio-net-device.event_idx=off"])
        .args(["-netdev", &netdev, "-device", "virtio-net-device,netdev=n0"])
        .arg("-device")
        .arg(format!(
            "loader,file={},addr={CONFIG_ADDR}",
            config.display()
        ))
        .arg("-kernel")
        .arg(firmware)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("qemu-system-riscv32 (Debian: qemu-system-misc)");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        if !line.starts_with("@snapshot ") {
            eprintln!("  guest: {line}");
        }
        lines.push(line);
    }
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    (ok, lines)
}

/// The four HTTPS servers and the roots the guest trusts.
struct Servers {
    by_name: BTreeMap<&'static str, Sandbox>,
    roots_pem: String,
    gate: Mutex<Option<Gate>>,
}

impl Servers {
    /// Mints the chains (the TLS matrix's keys and issuers, for [`HOST`]) and starts a
    /// sandbox for each.
    fn start() -> Servers {
        let spec = LeafSpec {
            sans: &[HOST],
            ..LeafSpec::default()
        };
        let root_rsa = pki::root("Tessera Test Root RSA-2048", pki::rsa_key("r2048_root"));
        let inter_rsa = pki::intermediate(
            "Tessera Test Intermediate RSA-2048",
            pki::rsa_key("r2048_inter"),
            &root_rsa,
        );
        let rsa = pki::chain(
            &spec,
            pki::rsa_key("r2048_leaf"),
            &inter_rsa,
            &[inter_rsa.der()],
        );
        let root_ec = pki::root("Tessera Test Root P-256", pki::ec_key());
        let inter_ec =
            pki::intermediate("Tessera Test Intermediate P-256", pki::ec_key(), &root_ec);
        let p256 = pki::chain(&spec, pki::ec_key(), &inter_ec, &[inter_ec.der()]);
        let rogue = pki::root("Rogue Root (not trusted)", pki::ec_key());
        let untrusted = pki::chain(&spec, pki::ec_key(), &rogue, &[]);
        let mut by_name = BTreeMap::new();
        for (name, chain, versions) in [
            ("rsa13", &rsa, Versions::Tls13),
            ("rsa12", &rsa, Versions::Tls12),
            ("p256", &p256, Versions::Tls13),
            ("untrusted", &untrusted, Versions::Tls13),
        ] {
            by_name.insert(
                name,
                Sandbox::start_tls_with(chain, versions).expect("sandbox"),
            );
        }
        Servers {
            by_name,
            roots_pem: certificate_pem(root_rsa.der()) + &certificate_pem(root_ec.der()),
            gate: Mutex::new(None),
        }
    }

    fn guest_port(name: &str) -> u16 {
        match name {
            "rsa13" => 4431,
            "rsa12" => 4432,
            "p256" => 4433,
            _ => 4434,
        }
    }

    /// `url` on the sandbox as the guest names it.
    fn guest_url(&self, name: &str, url: &str) -> String {
        let origin = self.by_name[name].origin();
        url.replacen(
            &origin,
            &format!("https://{HOST}:{}", Self::guest_port(name)),
            1,
        )
    }

    fn forwards(&self) -> Vec<(u16, u16)> {
        self.by_name
            .iter()
            .map(|(name, sb)| (Self::guest_port(name), sb.addr().port()))
            .collect()
    }

    /// One control request from the guest; the answer line.
    fn answer(&self, line: &str) -> String {
        let main = &self.by_name["rsa13"];
        let token = Endpoint::Token(ProviderKind::OAuth2);
        let protected = Endpoint::Protected(ProviderKind::OAuth2);
        let endpoint = |name: &str| if name == "token" { token } else { protected };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["hold", "token"] => {
                let gate = Gate::new();
                main.inject(token, Fault::Hold(gate.clone()), 1);
                *self.gate.lock().unwrap() = Some(gate);
                "ok".into()
            }
            ["lifetime", seconds] => match seconds.parse() {
                Ok(s) => {
                    main.set_lifetime(ProviderKind::OAuth2, s);
                    "ok".into()
                }
                Err(_) => "no".into(),
            },
            ["wait-arrived"] => match &*self.gate.lock().unwrap() {
                Some(g) if g.wait_arrived(1, Duration::from_secs(60)) => "ok".into(),
                _ => "no".into(),
            },
            ["release"] => match self.gate.lock().unwrap().take() {
                Some(g) => {
                    g.release();
                    "ok".into()
                }
                None => "no".into(),
            },
            ["inject", which, "429-retry-after-120", times] => {
                let fault = Fault::RateLimited {
                    retry_after: Some(120),
                };
                main.inject(endpoint(which), fault, times.parse().unwrap_or(1));
                "ok".into()
            }
            ["inject", which, status, times] => match status.parse() {
                Ok(s) => {
                    main.inject(
                        endpoint(which),
                        Fault::Status(s),
                        times.parse().unwrap_or(1),
                    );
                    "ok".into()
                }
                Err(_) => "no".into(),
            },
            ["wire", server, "resumed"] => match self.by_name.get(server) {
                Some(sb) => sb.wire().resumed.to_string(),
                None => "no".into(),
            },
            ["count", server, which] => match self.by_name.get(server) {
                Some(sb) => sb.count(endpoint(which)).to_string(),
                None => "no".into(),
            },
            ["header", which, name] => main
                .last_headers(endpoint(which))
                .into_iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
                .unwrap_or_default(),
            _ => "no".into(),
        }
    }
}

/// Serves the guests' control connections, one line in, one line out.
fn control_server(servers: Arc<Servers>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a control port");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let servers = servers.clone();
            std::thread::spawn(move || serve(&servers, stream));
        }
    });
    port
}

fn serve(servers: &Servers, stream: TcpStream) {
    let mut out = stream.try_clone().expect("a socket");
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let answer = servers.answer(&line);
        if writeln!(out, "{answer}").is_err() {
            return;
        }
    }
}

/// The steps a boot printed.
fn steps(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("@step "))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect()
}

fn minstr(step: Option<&Value>) -> String {
    match step.and_then(|s| s["instructions"].as_u64()) {
        // Two decimals below 10 M, where a kept connection's call or a resumed fetch sits.
        Some(n) if n < 10_000_000 => format!("{:.2} Minstr", n as f64 / 1e6),
        Some(n) => format!("{:.1} Minstr", n as f64 / 1e6),
        None => "-".into(),
    }
}

fn suite(a: &Args, dir: &Path) -> bool {
    let servers = Arc::new(Servers::start());
    let control = control_server(servers.clone());
    let mut ca = servers.roots_pem.clone().into_bytes();
    ca.push(0);
    let main = &servers.by_name["rsa13"];
    let mut urls = Vec::new();
    for name in ["rsa13", "rsa12", "p256", "untrusted"] {
        let sb = &servers.by_name[name];
        urls.push((
            format!("url.{name}"),
            servers.guest_url(name, &sb.base_url(ProviderKind::OAuth2)),
        ));
    }
    let api = servers.guest_url("rsa13", &main.protected_url(ProviderKind::OAuth2));
    let seed1 = seed();
    let mut records: Vec<(&str, &[u8])> = vec![
        ("mode", b"suite"),
        (
            "log",
            std::env::var("NET_QEMU_LOG")
                .unwrap_or_default()
                .into_bytes()
                .leak(),
        ),
        ("seed", &seed1),
        ("host", HOST.as_bytes()),
        ("ca", &ca),
        ("id", CLIENT_ID.as_bytes()),
        ("secret", CLIENT_SECRET.as_bytes()),
        ("api", api.as_bytes()),
    ];
    for (k, v) in &urls {
        records.push((k, v.as_bytes()));
    }
    let config = dir.join("suite.cfg");
    std::fs::write(&config, config_bytes(&records)).expect("the configuration file");
    eprintln!("net-qemu: boot 1 (suite)");
    let (ok1, lines) = boot(&a.firmware, &config, &servers.forwards(), Some(control));
    let mut all = steps(&lines);
    // Each task's deepest point over the whole first boot, from the stack watch.
    let tasks: Option<Value> = lines
        .iter()
        .find_map(|l| l.strip_prefix("@tasks "))
        .and_then(|j| serde_json::from_str(j).ok());

    // The VM restarted: the snapshot the first boot printed, loaded with the configuration.
    let snapshot = lines
        .iter()
        .find_map(|l| l.strip_prefix("@snapshot "))
        .and_then(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
        });
    let token_requests_before = main.count(Endpoint::Token(ProviderKind::OAuth2));
    let mut ok2 = false;
    if let Some(snapshot) = &snapshot {
        let seed2 = seed();
        let mut records2 = records.clone();
        records2[0] = ("mode", b"restore");
        records2[2] = ("seed", &seed2);
        records2.push(("snapshot", snapshot));
        std::fs::write(&config, config_bytes(&records2)).expect("the configuration file");
        eprintln!("net-qemu: boot 2 (restore the snapshot)");
        let (ok, lines2) = boot(&a.firmware, &config, &servers.forwards(), Some(control));
        ok2 = ok;
        let mut restored = steps(&lines2);
        // The server's word: no token request during the second boot.
        let sent = main.count(Endpoint::Token(ProviderKind::OAuth2)) - token_requests_before;
        for s in &mut restored {
            s["server_token_requests"] = sent.into();
            if sent != 0 {
                s["ok"] = false.into();
            }
        }
        all.extend(restored);
    }
    let _ = std::fs::remove_file(&config);

    // The servers' word on the first tokens: the token requests rsa12 and p256 answered (the
    // handshake-only steps send none).
    // (rsa12 also answers the resumed fetch: two in all there.)
    for (server, label, want) in [("rsa12", "rsa2048/tls1.2", 2), ("p256", "p256/tls1.3", 1)] {
        let n = servers.by_name[server].count(Endpoint::Token(ProviderKind::OAuth2));
        if let Some(s) = all
            .iter_mut()
            .find(|s| s["step"] == format!("first token {label}"))
        {
            s["server_token_requests"] = n.into();
            if n != want {
                s["ok"] = false.into();
            }
        }
    }

    for s in &all {
        println!("{s}");
    }
    let expected = 18;
    let passed = all.iter().filter(|s| s["ok"] == true).count();
    let find = |name: &str| all.iter().find(|s| s["step"] == name);
    let heap = all
        .iter()
        .filter_map(|s| s["heap_peak"].as_u64())
        .max()
        .unwrap_or(0);
    let stack = all
        .iter()
        .filter_map(|s| s["stack"].as_u64())
        .max()
        .unwrap_or(0);
    let kib = |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.1} KiB", b as f64 / 1024.0));
    let per_task = tasks
        .as_ref()
        .and_then(Value::as_object)
        .map(|t| {
            t.iter()
                .map(|(name, bytes)| {
                    let short = name.split_whitespace().next().unwrap_or(name);
                    format!("{short} {bytes}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    if let Some(t) = &tasks {
        println!("{}", serde_json::json!({ "stack_per_task": t }));
    }
    println!(
        "net-qemu: {passed}/{expected} scenarios; handshake rsa2048/tls1.3 {}, rsa2048/tls1.2 {}, \
         p256/tls1.3 {}; token fetch {}, on a resumed TLS 1.2 session {}; a payment on a kept \
         connection {}; heap peak {}; \
         stack {stack} B below the call (tasks: {per_task}); flash {}; static RAM {}",
        minstr(find("handshake rsa2048/tls1.3")),
        minstr(find("handshake rsa2048/tls1.2")),
        minstr(find("handshake p256/tls1.3")),
        minstr(find("first token rsa2048/tls1.3")),
        minstr(find("token fetch resumed rsa2048/tls1.2")),
        minstr(find("payment on a kept connection")),
        kib(Some(heap)),
        kib(a.flash),
        kib(a.ram),
    );
    ok1 && ok2 && passed == expected && all.len() == expected
}

fn endpoint(a: &Args, dir: &Path, url: &str) -> bool {
    let (Some(ca_path), Some(id)) = (&a.ca, &a.client_id) else {
        usage("--token-url needs --ca and --client-id")
    };
    let Ok(secret) = std::env::var("TESSERA_CLIENT_SECRET") else {
        usage("set TESSERA_CLIENT_SECRET")
    };
    let Some(rest) = url.strip_prefix("https://") else {
        usage("--token-url must be https://NAME:PORT/PATH")
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let Some((name, port)) = authority.rsplit_once(':') else {
        usage("--token-url needs an explicit port (the server listens on 127.0.0.1:PORT)")
    };
    let Ok(port) = port.parse::<u16>() else {
        usage("--token-url's port is not a number")
    };
    let mut ca = match std::fs::read(ca_path) {
        Ok(b) => b,
        Err(e) => usage(&format!("--ca {}: {e}", ca_path.display())),
    };
    ca.push(0);
    let seed = seed();
    let records: Vec<(&str, &[u8])> = vec![
        ("mode", b"endpoint"),
        ("seed", &seed),
        ("host", name.as_bytes()),
        ("ca", &ca),
        ("id", id.as_bytes()),
        ("secret", secret.as_bytes()),
        ("url", url.as_bytes()),
    ];
    let config = dir.join("endpoint.cfg");
    std::fs::write(&config, config_bytes(&records)).expect("the configuration file");
    let (ok, lines) = boot(&a.firmware, &config, &[(port, port)], None);
    let _ = std::fs::remove_file(&config);
    let all = steps(&lines);
    for s in &all {
        let line = serde_json::json!({
            "step": s["step"], "ok": s["ok"], "kind": s["kind"], "cause": s["cause"],
            "requests": s["requests"], "instructions": s["instructions"],
        });
        println!("{line}");
    }
    ok && all.len() == 3 && all.iter().all(|s| s["ok"] == true)
}

fn main() -> ExitCode {
    let a = args();
    let dir = private_dir();
    let ok = match &a.token_url {
        Some(url) => endpoint(&a, &dir, url),
        None => suite(&a, &dir),
    };
    let _ = std::fs::remove_dir(&dir);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
