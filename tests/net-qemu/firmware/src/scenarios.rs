//! The scenarios, run on target against the host's servers. Each prints one line,
//! `@step {json}`, with what happened (`ok`, `kind`, `cause`, the requests the guest sent)
//! and what it cost (instructions, sleep excluded; heap peak; how deep the call went on the
//! stack below its caller, and each task's deepest point at the end of the run); the host
//! checks them against what its servers saw and prints the summary.
//!
//! Two modes, from the configuration's `mode`:
//! - `suite`: the sandbox scenarios (first token per chain and TLS version, a fetch that
//!   resumes the TLS 1.2 session, cached reuse, a refresh in flight while a payment calls, an Idempotency-Key, a 401, a wrong secret,
//!   a 429's Retry-After, an untrusted chain, a held response, a snapshot across restart).
//!   Faults are set by the host when the guest asks over the control connection, so each
//!   is in place before the guest acts.
//! - `endpoint`: any OAuth 2.0 token endpoint: first token, cached reuse, one refresh.

// A scenario's client borrows the rig's buffers for the whole scenario, awaits included:
// one client at a time, by design (a second borrow would panic, and none is made).
#![allow(clippy::await_holding_refcell_ref)]

use core::cell::RefCell;
use core::ffi::CStr;
use core::fmt::Write as _;
use core::net::{IpAddr, SocketAddr};

use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::Stack;
use embassy_time::{Duration, Instant, Timer};
use embedded_nal_async::TcpConnect;
use heapless::String;
use rand_chacha::ChaCha20Rng;
use static_cell::StaticCell;
use tessera_core::snapshot::{Key, WallTime};
use tessera_core::{ProviderKind, Stage};
use tessera_embassy::mbedtls::mbedtls_rs::{
    AuthMode, Certificate, ClientSessionConfig, Session, SessionConfig, TlsReference, TlsVersion,
    X509,
};
use tessera_embassy::mbedtls::Roots;
use tessera_embassy::{CallBuffers, Error, Resources, Settings};

use crate::config::Config;
use crate::platform::{self, println};
use crate::terminal::{self, Net, Terminal};

/// The goldfish RTC as the terminal's wall clock: QEMU gives it the host's UTC time, which
/// the harness vouches for (it is the clock the sandbox minted its certificates with).
pub fn wall_clock() -> WallTime {
    WallTime::new(
        platform::rtc_unix_nanos() / 1_000_000,
        core::time::Duration::from_secs(2),
    )
}

/// The QEMU board's wall clock for the shared application: the goldfish RTC, which a
/// server's `Date` does not move (it is the host's clock already).
struct Goldfish;

impl tessera_terminal::WallClock for Goldfish {
    fn now(&self) -> Option<WallTime> {
        Some(wall_clock())
    }

    fn set(&mut self, _unix_ms: u64) {}
}

/// The QEMU board's snapshot storage: saved as a line the host writes to a file, restored
/// from the bytes the host loads with the next boot's configuration.
struct HostFile {
    loaded: Option<&'static [u8]>,
}

impl tessera_terminal::SnapshotStore for HostFile {
    fn load<'b>(&mut self, room: &'b mut [u8]) -> Option<&'b mut [u8]> {
        let kept = self.loaded.take()?;
        let room = room.get_mut(..kept.len())?;
        room.copy_from_slice(kept);
        Some(room)
    }

    fn store(&mut self, snapshot: &[u8]) -> bool {
        platform::print_hex("@snapshot ", snapshot);
        true
    }
}

/// One scenario's outcome, printed as JSON.
#[derive(Default)]
struct Step {
    name: String<48>,
    ok: bool,
    kind: Option<&'static str>,
    cause: Option<&'static str>,
    requests: u32,
    instructions: u64,
    heap_peak: usize,
    extra: String<160>,
}

impl Step {
    fn new(name: &str) -> Step {
        let mut s = Step::default();
        let _ = s.name.push_str(name);
        s
    }

    fn error(&mut self, e: &Error) {
        self.kind = Some(e.kind().as_str());
        self.cause = e.stage().map(Stage::as_str);
    }

    fn print(&self) {
        let q = |o: Option<&str>| {
            o.map_or(String::<40>::new(), |s| {
                let mut t = String::new();
                let _ = write!(t, "\"{s}\"");
                t
            })
        };
        let null = |o: Option<&str>| if o.is_some() { "" } else { "null" };
        println!(
            "@step {{\"step\":\"{}\",\"ok\":{},\"kind\":{}{},\"cause\":{}{},\"requests\":{},\"instructions\":{},\"heap_peak\":{},\"stack\":{}{}}}",
            self.name,
            self.ok,
            q(self.kind), null(self.kind),
            q(self.cause), null(self.cause),
            self.requests,
            self.instructions,
            self.heap_peak,
            platform::stack_high_water(),
            self.extra,
        );
    }
}

/// The host's control connection: one line out, one line back.
struct Control<'a> {
    socket: TcpSocket<'a>,
}

impl<'a> Control<'a> {
    async fn open(stack: Stack<'a>, rx: &'a mut [u8], tx: &'a mut [u8]) -> Option<Control<'a>> {
        let mut socket = TcpSocket::new(stack, rx, tx);
        socket.set_timeout(Some(Duration::from_secs(60)));
        socket
            .connect((crate::CONTROL_IP, crate::CONTROL_PORT))
            .await
            .ok()?;
        Some(Control { socket })
    }

    /// Sends `command` and returns the host's answer (without the newline).
    async fn ask<'b>(&mut self, command: &str, reply: &'b mut [u8]) -> &'b str {
        let mut sent = 0;
        let line = [command.as_bytes(), b"\n"];
        for part in line {
            while sent < part.len() {
                match self.socket.write(&part[sent..]).await {
                    Ok(n) if n > 0 => sent += n,
                    _ => return "",
                }
            }
            sent = 0;
        }
        let mut len = 0;
        while len < reply.len() {
            match self.socket.read(&mut reply[len..]).await {
                Ok(n) if n > 0 => {
                    len += n;
                    if reply[..len].ends_with(b"\n") {
                        break;
                    }
                }
                _ => break,
            }
        }
        let answer = core::str::from_utf8(&reply[..len]).unwrap_or("").trim_end();
        log::debug!("control: {command} -> {answer}");
        answer
    }

    /// `ask`, expecting a number.
    async fn number(&mut self, command: &str) -> u64 {
        let mut reply = [0u8; 64];
        self.ask(command, &mut reply)
            .await
            .parse()
            .unwrap_or(u64::MAX)
    }

    /// `ask`, expecting `ok`.
    async fn set(&mut self, command: &str) -> bool {
        let mut reply = [0u8; 64];
        self.ask(command, &mut reply).await == "ok"
    }
}

/// HTTP requests `server` has answered so far (token and API endpoints), by the server's
/// count: with kept connections, connections are not requests.
async fn seen(control: &mut Control<'_>, server: &str) -> u64 {
    let mut command: String<48> = String::new();
    let _ = write!(command, "count {server} token");
    let token = control.number(&command).await;
    command.clear();
    let _ = write!(command, "count {server} protected");
    token.saturating_add(control.number(&command).await)
}

/// Everything the scenarios share: the network, the one MbedTLS instance, the roots, the
/// client's buffers (one client at a time).
struct Rig {
    net: &'static Net,
    tls: TlsReference<'static>,
    roots: Roots<'static>,
    ca: &'static CStr,
    /// The shared application's configuration; scenarios change the URL or the secret.
    base: tessera_terminal::Config<'static>,
    secret: &'static str,
    resources: RefCell<&'static mut Resources>,
}

/// A client of `rig` for `kind` at `url` with `secret`, on the rig's buffers, as `$t`.
macro_rules! terminal {
    ($t:ident, $rig:expr, $rng:expr, $kind:expr, $url:expr, $secret:expr, $settings:expr) => {
        let mut resources = $rig.resources.borrow_mut();
        let config = tessera_terminal::Config {
            provider: $kind,
            token_url: $url,
            client_secret: $secret,
            ..$rig.base
        };
        let Ok($t) = Terminal::new(
            $rig.net,
            $rig.tls,
            $rig.roots,
            &config,
            $settings,
            &mut resources,
            $rng,
        ) else {
            println!("net-qemu: credentials refused");
            return false;
        };
    };
}

/// Runs the configured mode; true when every step passed its own checks (the host checks
/// the rest).
pub async fn run(
    spawner: Spawner,
    stack: Stack<'static>,
    config: Config,
    mut rng: ChaCha20Rng,
) -> bool {
    let (Some(host), Some(ca), Some(id), Some(secret)) = (
        config.str("host"),
        config.get("ca"),
        config.str("id"),
        config.str("secret"),
    ) else {
        println!("net-qemu: the configuration needs host, ca, id and secret");
        return false;
    };
    let Ok(ca) = CStr::from_bytes_with_nul(ca) else {
        println!("net-qemu: ca is not NUL-terminated");
        return false;
    };
    let base = tessera_terminal::Config {
        provider: ProviderKind::OAuth2,
        token_url: config.str("url").or(config.str("url.rsa13")).unwrap_or(""),
        api_url: config.str("api").unwrap_or(""),
        client_id: id,
        client_secret: secret,
        roots_pem: ca,
        allow_insecure_http: false,
        terminal: "till7",
    };
    // The certificate-date clock from the RTC, before the first handshake.
    tessera_terminal::TLS_CLOCK.set_unix_time(platform::rtc_unix_nanos() / 1_000_000_000);
    let (tls, roots) = match tessera_terminal::tls(&base, &mut rng) {
        Ok(t) => t,
        Err(e) => {
            println!("net-qemu: {:?}", e);
            return false;
        }
    };
    static RESOURCES: StaticCell<Resources> = StaticCell::new();
    let rig = Rig {
        net: terminal::net(stack, host, IpAddr::V4(crate::SERVER_IP)),
        tls,
        roots,
        ca,
        base,
        secret,
        resources: RefCell::new(RESOURCES.init(Resources::new())),
    };

    match config.str("mode") {
        Some("suite") => suite(&rig, spawner, stack, &config, &mut rng).await,
        Some("restore") => restore(&rig, stack, &config, &mut rng).await,
        Some("endpoint") => endpoint(&rig, &config, &mut rng).await,
        other => {
            println!("net-qemu: unknown mode {:?}", other);
            false
        }
    }
}

/// Instructions and heap of `f`, from fresh high-water marks (heap and stack: the step's
/// `stack` is the deepest the one stack went while it ran).
async fn measured<R>(f: impl core::future::Future<Output = R>) -> (R, u64, usize) {
    platform::reset_stack_step();
    platform::reset_heap_peak();
    let i0 = platform::busy_instructions();
    let r = f.await;
    let n = platform::busy_instructions() - i0;
    (r, n, platform::heap_use().1)
}

/// One full TLS handshake to `url`'s server with the client's MbedTLS configuration (the
/// roots, the host check, TLS 1.2 or 1.3), measured alone: instructions and heap. Returns
/// the version negotiated.
async fn handshake(rig: &Rig, url: &str, step: &mut Step) -> Option<TlsVersion> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ip = terminal::resolve(rig.net, host)?;
    let conn = rig.net.tcp.connect(SocketAddr::new(ip, port)).await.ok()?;
    let mut name = [0u8; 64];
    name.get_mut(..host.len())?.copy_from_slice(host.as_bytes());
    let server_name = CStr::from_bytes_until_nul(&name).ok()?;
    platform::reset_heap_peak();
    let roots = Certificate::new(X509::PEM(rig.ca)).ok()?;
    let config = SessionConfig::Client(ClientSessionConfig {
        ca_chain: Some(roots),
        server_name: Some(server_name),
        auth_mode: AuthMode::Required,
        min_version: TlsVersion::Tls1_2,
        max_version: None,
        skip_hostname_verification: false,
        ..ClientSessionConfig::new()
    });
    let mut session = Session::new(rig.tls, conn, &config).ok()?;
    platform::reset_stack_step();
    let i0 = platform::busy_instructions();
    let connected = session.connect().await;
    step.instructions = platform::busy_instructions() - i0;
    step.heap_peak = platform::heap_use().1;
    let version = session.tls_version();
    let _ = session.close().await;
    connected.ok()?;
    version
}

/// Settings for the scenarios: the default ones, with a short network timeout for the
/// held response (the host holds it for as long as it takes).
fn settings(timeout_s: u64) -> Settings {
    Settings {
        timeout: Duration::from_secs(timeout_s),
        ..Settings::default()
    }
}

fn named(prefix: &str, label: &str) -> String<48> {
    let mut s = String::new();
    let _ = write!(s, "{prefix}{label}");
    s
}

async fn suite(
    rig: &Rig,
    spawner: Spawner,
    stack: Stack<'static>,
    config: &Config,
    rng: &mut ChaCha20Rng,
) -> bool {
    static CONTROL_BUFS: StaticCell<([u8; 512], [u8; 512])> = StaticCell::new();
    let (crx, ctx) = CONTROL_BUFS.init(([0; 512], [0; 512]));
    let Some(mut control) = Control::open(stack, crx, ctx).await else {
        println!("net-qemu: no control connection");
        return false;
    };
    let url = |name: &str| config.str(name).unwrap_or("");
    let api = url("api");
    let mut all = true;

    // First token per chain and TLS version: the handshake alone, then a whole fetch.
    for (label, server) in [
        ("rsa2048/tls1.3", "rsa13"),
        ("rsa2048/tls1.2", "rsa12"),
        ("p256/tls1.3", "p256"),
    ] {
        let key = named("url.", server);
        let mut step = Step::new(&named("handshake ", label));
        let version = handshake(rig, url(&key), &mut step).await;
        let want = if label.ends_with("1.2") {
            TlsVersion::Tls1_2
        } else {
            TlsVersion::Tls1_3
        };
        step.ok = version == Some(want);
        let _ = write!(step.extra, ",\"server\":\"{server}\"");
        step.print();
        all &= step.ok;

        let mut step = Step::new(&named("first token ", label));
        // Over TLS 1.2 the client keeps no connection, so its next fetch opens a new one
        // and resumes the saved session (measured below).
        let mut s = settings(10);
        if server == "rsa12" {
            s.kept_connections = 0;
        }
        terminal!(t, rig, rng, ProviderKind::OAuth2, url(&key), rig.secret, s);
        let before = seen(&mut control, server).await;
        let (r, n, heap) = measured(t.token()).await;
        step.instructions = n;
        step.heap_peak = heap;
        step.requests = (seen(&mut control, server).await - before) as u32;
        match r {
            Ok(()) => step.ok = step.requests == 1,
            Err(e) => step.error(&e),
        }
        let _ = write!(step.extra, ",\"server\":\"{server}\"");
        step.print();
        all &= step.ok;
        if server == "rsa12" {
            // A new connection to the same origin: an abbreviated TLS 1.2 handshake on the
            // saved session (the server counts it resumed), then the request.
            let mut step = Step::new("token fetch resumed rsa2048/tls1.2");
            t.force_refresh();
            let resumed = control.number("wire rsa12 resumed").await;
            let before = seen(&mut control, server).await;
            let (r, n, heap) = measured(t.token()).await;
            (step.instructions, step.heap_peak) = (n, heap);
            step.requests = (seen(&mut control, server).await - before) as u32;
            let resumed = control
                .number("wire rsa12 resumed")
                .await
                .wrapping_sub(resumed);
            let _ = write!(step.extra, ",\"server\":\"rsa12\",\"resumed\":{resumed}");
            match r {
                Ok(()) => step.ok = step.requests == 1 && resumed == 1,
                Err(e) => step.error(&e),
            }
            step.print();
            all &= step.ok;
        }
        if server != "rsa13" {
            continue;
        }
        // Cached reuse: no request.
        let mut step = Step::new("cached reuse");
        let before = seen(&mut control, server).await;
        let (r, n, heap) = measured(t.token()).await;
        step.instructions = n;
        step.heap_peak = heap;
        step.requests = (seen(&mut control, server).await - before) as u32;
        step.ok = r.is_ok() && step.requests == 0;
        let _ = write!(step.extra, ",\"server\":\"rsa13\"");
        step.print();
        all &= step.ok;
    }

    all &= refresh_in_flight(rig, spawner, &mut control, url("url.rsa13"), rng).await;
    all &= downstream(rig, &mut control, url("url.rsa13"), api, rng).await;
    all &= rejected_401(rig, &mut control, url("url.rsa13"), api, rng).await;

    // A wrong secret: one request, invalid credentials, not retried.
    {
        let mut step = Step::new("wrong secret");
        terminal!(
            t,
            rig,
            rng,
            ProviderKind::OAuth2,
            url("url.rsa13"),
            "not the secret",
            settings(10)
        );
        let before = seen(&mut control, "rsa13").await;
        let (r, n, heap) = measured(t.token()).await;
        let again = t.token().await;
        (step.instructions, step.heap_peak) = (n, heap);
        step.requests = (seen(&mut control, "rsa13").await - before) as u32;
        if let Err(e) = &r {
            step.error(e);
        }
        step.ok = step.kind == Some("invalid_credentials")
            && again.is_err_and(|e| e.kind().as_str() == "invalid_credentials")
            && step.requests == 1;
        step.print();
        all &= step.ok;
    }

    // A 429 with Retry-After: backed off for that long, nothing sent before.
    {
        let mut step = Step::new("retry-after");
        let set = control.set("inject token 429-retry-after-120 1").await;
        terminal!(
            t,
            rig,
            rng,
            ProviderKind::OAuth2,
            url("url.rsa13"),
            rig.secret,
            settings(10)
        );
        let before = seen(&mut control, "rsa13").await;
        let (r, n, heap) = measured(t.token()).await;
        (step.instructions, step.heap_peak) = (n, heap);
        let again = t.token().await;
        step.requests = (seen(&mut control, "rsa13").await - before) as u32;
        let mut wait_s = 0;
        if let Err(e) = &r {
            step.error(e);
            if let Error::Token {
                retry_at: Some(at), ..
            } = e
            {
                wait_s = at.as_millis().saturating_sub(Instant::now().as_millis()) / 1000;
            }
        }
        let _ = write!(step.extra, ",\"retry_in_s\":{wait_s}");
        step.ok = set
            && step.kind == Some("rate_limited")
            && (110..=120).contains(&wait_s)
            && again.is_err()
            && step.requests == 1;
        step.print();
        all &= step.ok;
    }

    // An untrusted chain: refused in the handshake (cause tls), no HTTP request.
    {
        let mut step = Step::new("untrusted chain");
        terminal!(
            t,
            rig,
            rng,
            ProviderKind::OAuth2,
            url("url.untrusted"),
            rig.secret,
            settings(10)
        );
        let before = t.connections();
        let (r, n, heap) = measured(t.token()).await;
        (step.instructions, step.heap_peak) = (n, heap);
        let connections = t.connections() - before;
        if let Err(e) = &r {
            step.error(e);
        }
        step.requests = seen(&mut control, "untrusted").await as u32;
        let _ = write!(step.extra, ",\"connections\":{connections}");
        step.ok = step.kind == Some("transport")
            && step.cause == Some("tls")
            && connections == 1
            && step.requests == 0;
        step.print();
        all &= step.ok;
    }

    // A held response: classified timeout when the client's bound passes.
    {
        let mut step = Step::new("held response");
        let set = control.set("hold token").await;
        terminal!(
            t,
            rig,
            rng,
            ProviderKind::OAuth2,
            url("url.rsa13"),
            rig.secret,
            settings(3)
        );
        let before = seen(&mut control, "rsa13").await;
        let t0 = Instant::now();
        let (r, n, heap) = measured(t.token()).await;
        (step.instructions, step.heap_peak) = (n, heap);
        let waited = t0.elapsed().as_millis();
        let released = control.set("release").await;
        if let Err(e) = &r {
            step.error(e);
        }
        let _ = write!(step.extra, ",\"waited_ms\":{waited}");
        step.requests = (seen(&mut control, "rsa13").await - before) as u32;
        step.ok = set
            && released
            && step.kind == Some("transport")
            && step.cause == Some("timeout")
            && waited >= 3000
            && step.requests == 1;
        step.print();
        all &= step.ok;
    }

    // A snapshot: saved here, restored by the next boot (mode `restore`).
    {
        let mut step = Step::new("snapshot save");
        platform::reset_stack_step();
        terminal!(
            t,
            rig,
            rng,
            ProviderKind::OAuth2,
            url("url.rsa13"),
            rig.secret,
            settings(10)
        );
        let got = t.token().await.is_ok();
        let saved = tessera_terminal::save(&t.client, &Goldfish, &mut HostFile { loaded: None });
        step.ok = got && matches!(saved, tessera_terminal::Saved::Kept(_));
        step.print();
        all &= step.ok;
    }
    all
}

/// The refresher as the boards run it: its own task, on a client that lives for ever.
#[embassy_executor::task]
async fn refresher_task(client: &'static terminal::Tessera<'static>) -> ! {
    tessera_terminal::refresher(client).await
}

/// The refresh scenario's client, built in place in a static (in its own frame, so the
/// scenario's poll frame does not carry a client-sized temporary). Once.
#[inline(never)]
fn static_client(
    rig: &Rig,
    url: &'static str,
    rng: &mut ChaCha20Rng,
) -> Option<&'static terminal::Tessera<'static>> {
    static RESOURCES: StaticCell<Resources> = StaticCell::new();
    static CLIENT: StaticCell<terminal::Tessera<'static>> = StaticCell::new();
    let config = tessera_terminal::Config {
        token_url: url,
        ..rig.base
    };
    // This client outlives the scenario (its refresher task runs for ever): it keeps no
    // connection, so it holds no socket and no MbedTLS heap while the next ones run.
    let mut quiet = settings(30);
    quiet.kept_connections = 0;
    let built = tessera_terminal::build(
        &config,
        &rig.net.tcp,
        &rig.net.dns,
        (rig.tls, rig.roots),
        quiet,
        RESOURCES.init(Resources::new()),
        rng,
    );
    Some(CLIENT.init(built.ok()?))
}

/// Spawns the refresher task (in its own frame: the task's future is made on the stack
/// before it moves into its pool, and the scenario's poll frame should not carry it).
#[inline(never)]
fn spawn_refresher(spawner: Spawner, client: &'static terminal::Tessera<'static>) {
    spawner.spawn(refresher_task(client).unwrap());
}

/// A token from `client` (its text is not kept).
async fn token_of(client: &terminal::Tessera<'_>) -> Result<(), Error> {
    let mut out = [0u8; 2048];
    let r = client.token(&mut out).await.map(|_| ());
    out.fill(0);
    r
}

/// A refresh held on the server while the payment task asks for the token: it is served
/// the cached one at once. The refresher runs in its own task, as on the boards; the
/// latency is on the target's timer.
async fn refresh_in_flight(
    rig: &Rig,
    spawner: Spawner,
    control: &mut Control<'_>,
    url: &'static str,
    rng: &mut ChaCha20Rng,
) -> bool {
    let mut step = Step::new("refresh in flight");
    let Some(client) = static_client(rig, url, rng) else {
        step.print();
        return false;
    };
    // A token that lives 10 s: the refresh starts at 5 s (the margin is at most half the
    // lifetime), and the token is served until 8 s.
    let short = control.set("lifetime 10").await;
    let got = token_of(client).await.is_ok();
    let restored = control.set("lifetime 3600").await;
    if !(short && got && restored && control.set("hold token").await) {
        step.print();
        return false;
    }
    let stored = client.tokens_stored();
    let before = seen(control, "rsa13").await;
    spawn_refresher(spawner, client);
    // The refresher has started the refresh when the server holds it.
    let arrived = control.set("wait-arrived").await;
    platform::reset_stack_step();
    let (t0, i0) = (Instant::now(), platform::busy_instructions());
    let r = token_of(client).await;
    let (latency, n) = (t0.elapsed().as_ticks(), platform::busy_instructions() - i0);
    let released = control.set("release").await;
    // The refreshed token, once the refresh lands.
    while client.tokens_stored() == stored {
        Timer::after_millis(10).await;
    }
    step.instructions = n;
    step.requests = (seen(control, "rsa13").await - before) as u32;
    let _ = write!(step.extra, ",\"token_latency_us\":{}", latency / 10);
    step.ok = arrived && released && r.is_ok() && step.requests == 1;
    step.print();
    step.ok
}

/// A downstream POST with an Idempotency-Key: the server saw the key.
async fn downstream(
    rig: &Rig,
    control: &mut Control<'_>,
    url: &str,
    api: &str,
    rng: &mut ChaCha20Rng,
) -> bool {
    let mut step = Step::new("idempotency key");
    terminal!(
        t,
        rig,
        rng,
        ProviderKind::OAuth2,
        url,
        rig.secret,
        settings(10)
    );
    // The shared payment step: GET the API with `Idempotency-Key: till7-42`.
    let key = "till7-42";
    let config = tessera_terminal::Config {
        api_url: api,
        ..rig.base
    };
    let mut call = CallBuffers::new();
    let before = seen(control, "rsa13").await;
    let mut clock = Goldfish;
    let pay = tessera_terminal::pay(&t.client, &config, 42, &mut clock, &mut call);
    let (r, n, heap) = measured(pay).await;
    (step.instructions, step.heap_peak) = (n, heap);
    step.requests = (seen(control, "rsa13").await - before) as u32;
    let mut reply = [0u8; 64];
    let key_seen = control
        .ask("header protected idempotency-key", &mut reply)
        .await;
    match r {
        Ok(status) => step.ok = status == 200 && key_seen == key && step.requests == 2,
        Err(e) => step.error(&e),
    }
    step.print();

    // The next payment, as a till makes it seconds later: the token cached, the connection
    // kept. What it costs is the call alone: no handshake, no new connection, no token request.
    let mut kept = Step::new("payment on a kept connection");
    let wire = t.client.wire_stats();
    let before = seen(control, "rsa13").await;
    let pay = tessera_terminal::pay(&t.client, &config, 44, &mut clock, &mut call);
    let (r, n, heap) = measured(pay).await;
    (kept.instructions, kept.heap_peak) = (n, heap);
    kept.requests = (seen(control, "rsa13").await - before) as u32;
    let after = t.client.wire_stats();
    let reused = after.reused - wire.reused;
    let new = after.connections - wire.connections;
    let handshakes = (after.full + after.resumed) - (wire.full + wire.resumed);
    let _ = write!(
        kept.extra,
        ",\"reused\":{reused},\"connections\":{new},\"handshakes\":{handshakes}"
    );
    match r {
        Ok(status) => {
            kept.ok =
                status == 200 && kept.requests == 1 && reused == 1 && new == 0 && handshakes == 0
        }
        Err(e) => kept.error(&e),
    }
    kept.print();
    step.ok && kept.ok
}

/// A 401 from the API: the token is rejected, fetched once more, the call retried once.
async fn rejected_401(
    rig: &Rig,
    control: &mut Control<'_>,
    url: &str,
    api: &str,
    rng: &mut ChaCha20Rng,
) -> bool {
    let mut step = Step::new("401 refetch retry");
    terminal!(
        t,
        rig,
        rng,
        ProviderKind::OAuth2,
        url,
        rig.secret,
        settings(10)
    );
    if t.token().await.is_err() || !control.set("inject protected 401 1").await {
        step.print();
        return false;
    }
    let before_token = control.number("count rsa13 token").await;
    let before_api = control.number("count rsa13 protected").await;
    let config = tessera_terminal::Config {
        api_url: api,
        ..rig.base
    };
    let mut call = CallBuffers::new();
    let mut clock = Goldfish;
    let pay = tessera_terminal::pay(&t.client, &config, 43, &mut clock, &mut call);
    let (r, n, heap) = measured(pay).await;
    (step.instructions, step.heap_peak) = (n, heap);
    let tokens = control.number("count rsa13 token").await - before_token;
    let calls = control.number("count rsa13 protected").await - before_api;
    step.requests = (tokens + calls) as u32;
    let _ = write!(
        step.extra,
        ",\"token_requests\":{tokens},\"api_requests\":{calls}"
    );
    match r {
        Ok(status) => step.ok = status == 200 && tokens == 1 && calls == 2,
        Err(e) => step.error(&e),
    }
    step.print();
    step.ok
}

/// The second boot: the snapshot the first one printed, restored with no request.
async fn restore(
    rig: &Rig,
    _stack: Stack<'static>,
    config: &Config,
    rng: &mut ChaCha20Rng,
) -> bool {
    let mut step = Step::new("snapshot restore");
    let Some(snapshot) = config.get("snapshot") else {
        println!("net-qemu: no snapshot loaded");
        return false;
    };
    let mut bytes = [0u8; <Resources>::SNAPSHOT_CAPACITY];
    let Some(kept) = bytes.get_mut(..snapshot.len()) else {
        return false;
    };
    kept.copy_from_slice(snapshot);
    terminal!(
        t,
        rig,
        rng,
        ProviderKind::OAuth2,
        config.str("url.rsa13").unwrap_or(""),
        rig.secret,
        settings(10)
    );
    let restored = t
        .client
        .restore(Some(wall_clock()), Key::Credentials, kept)
        .is_ok();
    let before = t.connections();
    let (r, n, heap) = measured(t.token()).await;
    (step.instructions, step.heap_peak) = (n, heap);
    // No connection at all; the host checks the server saw no request either.
    step.requests = t.connections() - before;
    step.ok = restored && r.is_ok() && step.requests == 0;
    step.print();
    step.ok
}

async fn endpoint(rig: &Rig, config: &Config, rng: &mut ChaCha20Rng) -> bool {
    let url = config.str("url").unwrap_or("");
    terminal!(
        t,
        rig,
        rng,
        ProviderKind::OAuth2,
        url,
        rig.secret,
        settings(10)
    );
    let mut all = true;
    for name in ["first token", "cached reuse", "refresh"] {
        let mut step = Step::new(name);
        if name == "refresh" {
            t.force_refresh();
        }
        let stored = t.client.tokens_stored();
        let (r, n, heap) = measured(t.token()).await;
        (step.instructions, step.heap_peak) = (n, heap);
        // A server we do not control cannot be asked: the guest counts the token responses
        // it received (a new token, or a refusal the server answered with).
        step.requests = t.client.tokens_stored() - stored;
        match r {
            Ok(()) => step.ok = step.requests == u32::from(name != "cached reuse"),
            Err(e) => {
                step.error(&e);
                step.requests += u32::from(e.stage().is_none());
            }
        }
        step.print();
        all &= step.ok;
    }
    all
}
