//! The terminal application, written once for every board: the Raspberry Pi Pico W
//! (examples/rp2040-pico-w), the ESP32-C3 (examples/esp32c3) and the QEMU firmware CI runs
//! (tests/net-qemu/firmware).
//!
//! A board brings up its network device and embassy-net stack, and supplies an RNG, a wall
//! clock ([`WallClock`]) and somewhere to keep a snapshot ([`SnapshotStore`]). This crate
//! does the rest the same way everywhere: MbedTLS with the roots and the certificate-date
//! clock ([`tls`]), the tessera-embassy client ([`build`], [`client`]), the refresher
//! ([`refresher`]), one payment call with its `Idempotency-Key` that also sets the wall
//! clock from the server's `Date` ([`pay`]), the snapshot restored at start and saved
//! before sleep ([`restore`], [`save`]), and SNTP ([`sntp`]) for boards with no clock.
#![no_std]
#![deny(missing_docs)]

use core::ffi::CStr;
use core::fmt::Write as _;

use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{with_timeout, Duration, Instant};
use embedded_nal_async::{Dns, TcpConnect};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use static_cell::StaticCell;
use tessera_core::snapshot::{Key, SnapshotError, WallTime};
use tessera_core::timestamp::parse_http_date;
use tessera_core::{AnyProvider, Credentials, ProviderKind};
use tessera_embassy::mbedtls::mbedtls_rs::{Tls, TlsReference};
use tessera_embassy::mbedtls::{use_wall_clock, Mbedtls, Rng09, Roots};
use tessera_embassy::{ApiRequest, CallBuffers, Client, Error, Resources, Settings};

pub use tessera_embassy;

/// A diagnostic line to defmt or log, as the board chose.
macro_rules! say {
    ($level:ident, $($t:tt)*) => {{
        #[cfg(feature = "defmt")]
        defmt::$level!($($t)*);
        #[cfg(feature = "log")]
        log::$level!($($t)*);
    }};
}

/// What the terminal talks to, and as whom.
#[derive(Clone, Copy)]
pub struct Config<'a> {
    /// The token provider.
    pub provider: ProviderKind,
    /// Its token URL.
    pub token_url: &'a str,
    /// The API the payment step calls.
    pub api_url: &'a str,
    /// The client id.
    pub client_id: &'a str,
    /// The client secret.
    pub client_secret: &'a str,
    /// The roots servers are verified against (PEM, NUL-terminated for MbedTLS).
    pub roots_pem: &'a CStr,
    /// Plain `http://` to a LAN sandbox allowed (never for production).
    pub allow_insecure_http: bool,
    /// This terminal's name, the prefix of every `Idempotency-Key`.
    pub terminal: &'a str,
}

/// Why the terminal could not be set up.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SetupError {
    /// MbedTLS did not start.
    Tls,
    /// The roots are not a PEM bundle MbedTLS can parse.
    Roots,
    /// The credentials were refused (empty id, too long…).
    Credentials,
}

/// The client the terminal uses: any provider, over the board's TCP and DNS.
pub type Tessera<'r, T, D> =
    Client<'r, CriticalSectionRawMutex, AnyProvider<'r>, Mbedtls<'r, T, D>>;

/// The wall clock MbedTLS checks certificate dates against (set by [`WallClock::set`]'s
/// callers here: [`pay`] from a `Date`, the board from its RTC or SNTP).
pub static TLS_CLOCK: tessera_embassy::mbedtls::WallClock =
    tessera_embassy::mbedtls::WallClock::new();

/// The board's wall clock.
pub trait WallClock {
    /// Now, with how wrong it may be; `None` while the board does not vouch for it (a
    /// snapshot is then neither restored nor saved).
    fn now(&self) -> Option<WallTime>;
    /// A server we trust with the token said it is `unix_ms` (its `Date`).
    fn set(&mut self, unix_ms: u64);
}

/// Where the board keeps a snapshot across sleep or reset (RTC memory, a flash sector, a
/// file the emulator loads).
pub trait SnapshotStore {
    /// The kept snapshot, copied into `room`; `None` for none.
    fn load<'b>(&mut self, room: &'b mut [u8]) -> Option<&'b mut [u8]>;
    /// Keeps `snapshot` (replacing any); false when it could not be written.
    fn store(&mut self, snapshot: &[u8]) -> bool;
}

/// Room for a snapshot of the default [`Resources`]' token.
pub const SNAPSHOT_ROOM: usize = <Resources>::SNAPSHOT_CAPACITY;

/// The program's one MbedTLS instance, its RNG (ChaCha20 seeded from the board's RNG, a
/// DRBG over the hardware source), and the roots; installs [`TLS_CLOCK`] as the
/// certificate-date clock. Once per program.
pub fn tls(
    config: &Config<'static>,
    rng: &mut impl RngCore,
) -> Result<(TlsReference<'static>, Roots<'static>), SetupError> {
    static TLS_RNG: StaticCell<Rng09<ChaCha20Rng>> = StaticCell::new();
    static TLS: StaticCell<Tls<'static>> = StaticCell::new();
    use_wall_clock(&TLS_CLOCK);
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let tls_rng = TLS_RNG.init(Rng09(ChaCha20Rng::from_seed(seed)));
    seed.fill(0);
    let tls = Tls::new(tls_rng).map_err(|_| SetupError::Tls)?;
    let roots = Roots::new(config.roots_pem).map_err(|_| SetupError::Roots)?;
    Ok((TLS.init(tls).reference(), roots))
}

/// The client settings for `config`: the defaults, with its insecure-HTTP choice.
pub fn settings(config: &Config<'_>) -> Settings {
    let mut s = Settings::default();
    // Plain HTTP to a sandbox on the LAN is refused for anything but loopback (the secret
    // and the token would cross the network in clear) unless the configuration says so:
    // right for a bench sandbox only.
    s.session.allow_insecure_http = config.allow_insecure_http;
    s
}

/// A client for `config` over `tcp` + `dns` and MbedTLS, on the given buffers.
pub fn build<'r, T: TcpConnect, D: Dns>(
    config: &Config<'r>,
    tcp: &'r T,
    dns: &'r D,
    tls: (TlsReference<'r>, Roots<'r>),
    settings: Settings,
    resources: &'r mut Resources,
    rng: &mut impl RngCore,
) -> Result<Tessera<'r, T, D>, SetupError> {
    let credentials = Credentials::new(config.client_id, config.client_secret)
        .map_err(|_| SetupError::Credentials)?;
    Ok(Client::builder(
        AnyProvider::new(config.provider, config.token_url),
        credentials,
        Mbedtls::new(tcp, dns, tls.0, tls.1),
        resources,
        rng,
    )
    .settings(settings)
    .build())
}

/// The board's one client, on static buffers: [`tls`] then [`build`]. Store it in a
/// `StaticCell` and hand it to the refresher task and the payment loop. Once per program.
pub fn client<T: TcpConnect, D: Dns>(
    config: &Config<'static>,
    tcp: &'static T,
    dns: &'static D,
    rng: &mut impl RngCore,
) -> Result<Tessera<'static, T, D>, SetupError> {
    static RESOURCES: StaticCell<Resources> = StaticCell::new();
    let tls = tls(config, rng)?;
    build(
        config,
        tcp,
        dns,
        tls,
        settings(config),
        RESOURCES.init(Resources::new()),
        rng,
    )
}

/// The refresher's body: run it in its own task, so no caller waits for a refresh.
pub async fn refresher<T: TcpConnect, D: Dns>(client: &Tessera<'_, T, D>) -> ! {
    client.refresher().await
}

/// Takes back the kept token, before anything asks for one; true when it was (the next
/// `token()` then sends no request while it lives). The snapshot is spent either way.
pub fn restore<T: TcpConnect, D: Dns>(
    client: &Tessera<'_, T, D>,
    clock: &impl WallClock,
    store: &mut impl SnapshotStore,
) -> bool {
    let mut room = [0u8; SNAPSHOT_ROOM];
    let Some(kept) = store.load(&mut room) else {
        return false;
    };
    let restored = match client.restore(clock.now(), Key::Credentials, kept) {
        Ok(r) => {
            let now_ms = Instant::now().as_millis();
            let _due_s = r.refresh_at.as_millis().saturating_sub(now_ms) / 1000;
            say!(
                info,
                "token restored, no token request (refresh in {} s)",
                _due_s
            );
            true
        }
        Err(_e) => {
            say!(
                info,
                "snapshot not restored ({}): the first call fetches a token",
                _e
            );
            false
        }
    };
    room.fill(0);
    restored
}

/// What [`save`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Saved {
    /// Sealed and kept.
    Kept(usize),
    /// No token to keep.
    NoToken,
    /// No wall clock the board vouches for: nothing kept.
    NoClock,
    /// The snapshot could not be made or written.
    Failed,
}

/// Seals the token and keeps it (before a sleep, or when a new token arrived).
pub fn save<T: TcpConnect, D: Dns>(
    client: &Tessera<'_, T, D>,
    clock: &impl WallClock,
    store: &mut impl SnapshotStore,
) -> Saved {
    let Some(wall) = clock.now() else {
        say!(warn, "no wall clock: token not kept");
        return Saved::NoClock;
    };
    let mut room = [0u8; SNAPSHOT_ROOM];
    let saved = match client.save(wall, Key::Credentials, &mut room) {
        Ok(bytes) if store.store(bytes) => {
            say!(info, "token sealed and kept ({} bytes)", bytes.len());
            Saved::Kept(bytes.len())
        }
        Ok(_) => Saved::Failed,
        Err(SnapshotError::NoToken) => Saved::NoToken,
        Err(_e) => {
            say!(warn, "token not saved: {}", _e);
            Saved::Failed
        }
    };
    room.fill(0);
    saved
}

/// One payment call: `GET api_url` with the token and `Idempotency-Key: <terminal>-<n>` (one
/// key per operation, so a retried payment is not charged twice). The server's `Date`
/// sets the wall clock (the server we already trust with the token). The status.
pub async fn pay<T: TcpConnect, D: Dns>(
    client: &Tessera<'_, T, D>,
    config: &Config<'_>,
    n: u64,
    clock: &mut impl WallClock,
    buffers: &mut CallBuffers,
) -> Result<u16, Error> {
    let mut key = heapless::String::<48>::new();
    let _ = write!(key, "{}-{n}", config.terminal);
    let headers = [("Idempotency-Key", key.as_str())];
    let request = ApiRequest::get(config.api_url).headers(&headers);
    match client.call(request, buffers).await {
        Ok(r) => {
            say!(
                info,
                "{} answered {} ({} bytes, request id {})",
                config.api_url,
                r.status(),
                r.body().len(),
                r.header("x-request-id").unwrap_or("-")
            );
            if let Some(unix_s) = r
                .header("date")
                .and_then(|d| parse_http_date(d).ok())
                .and_then(|s| u64::try_from(s).ok())
            {
                clock.set(unix_s.saturating_mul(1000));
                TLS_CLOCK.set_unix_time(unix_s);
            }
            Ok(r.status())
        }
        Err(e) => {
            say!(warn, "call failed: {}", e);
            client.failure(|f| {
                if let Some(_f) = f {
                    say!(warn, "last token failure: {}", _f)
                }
            });
            Err(e)
        }
    }
}

/// A wall-clock reading from SNTP, carried forward by the monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct SntpClock {
    /// Unix ms at `at`.
    pub unix_ms: u64,
    /// When it was read.
    pub at: Instant,
}

impl SntpClock {
    /// How wrong it may be, counting the snapshot's writing and its restore: each SNTP
    /// reading is within 1 s (the server) plus half its round trip (at most 2 s, longer
    /// answers are refused), a crystal drifts ±50 ppm (under 0.2 s over the hour a reading
    /// is used for), twice over, rounded up.
    pub const UNCERTAINTY: core::time::Duration = core::time::Duration::from_secs(10);

    /// Now.
    pub fn now(&self) -> WallTime {
        let unix_ms = self.unix_ms.saturating_add(self.at.elapsed().as_millis());
        WallTime::new(unix_ms, Self::UNCERTAINTY)
    }
}

/// Asks `server` for the time (SNTPv4, RFC 4330). The request's transmit time is a random
/// nonce the server must echo, so an off-path sender cannot answer for it; the time is
/// still unauthenticated (the boards' READMEs say what a forged one can do).
pub async fn sntp(
    stack: Stack<'static>,
    server: &str,
    rng: &mut impl RngCore,
) -> Option<SntpClock> {
    const NTP_TO_UNIX_S: u64 = 2_208_988_800;
    let server = *stack
        .dns_query(server, embassy_net::dns::DnsQueryType::A)
        .await
        .ok()?
        .first()?;
    let (mut rx_meta, mut tx_meta) = ([PacketMetadata::EMPTY; 1], [PacketMetadata::EMPTY; 1]);
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
    let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    socket.bind(0).ok()?;
    let nonce = rng.next_u64().to_be_bytes();
    let mut request = [0u8; 48];
    request[0] = 0x23; // no leap warning, version 4, client
    request[40..].copy_from_slice(&nonce);
    let sent = Instant::now();
    socket.send_to(&request, (server, 123)).await.ok()?;
    let mut reply = [0u8; 48];
    let (n, from) = with_timeout(Duration::from_secs(2), socket.recv_from(&mut reply))
        .await
        .ok()?
        .ok()?;
    let received = Instant::now();
    let mode = reply[0] & 0x7;
    let stratum = reply[1];
    if n < 48 || from.endpoint.addr != server || mode != 4 || !(1..16).contains(&stratum) {
        return None;
    }
    if reply[24..32] != nonce {
        return None;
    }
    let secs = u64::from(u32::from_be_bytes(reply[40..44].try_into().ok()?));
    let frac = u64::from(u32::from_be_bytes(reply[44..48].try_into().ok()?));
    // NTP era 0 ends in February 2036; a smaller count is era 1.
    let unix_s = match secs.checked_sub(NTP_TO_UNIX_S) {
        Some(s) => s,
        None => secs + (1 << 32) - NTP_TO_UNIX_S,
    };
    let half_trip = received.duration_since(sent).as_millis() / 2;
    Some(SntpClock {
        unix_ms: unix_s * 1000 + ((frac * 1000) >> 32) + half_trip,
        at: received,
    })
}

/// Configuration from the build environment, for the boards (credentials never live in
/// source control): `TESSERA_PROVIDER`, `TESSERA_BASE_URL`, `TESSERA_CLIENT_ID`,
/// `TESSERA_CLIENT_SECRET`, `TESSERA_API_URL`, `TESSERA_ALLOW_INSECURE_HTTP`,
/// `TESSERA_TERMINAL`. `roots_pem` is the board's `roots.pem`, NUL-terminated.
pub fn from_env(roots_pem: &'static CStr) -> Result<Config<'static>, &'static str> {
    const fn or(value: Option<&'static str>, default: &'static str) -> &'static str {
        match value {
            Some(v) => v,
            None => default,
        }
    }
    let provider = or(option_env!("TESSERA_PROVIDER"), "oauth2");
    let Ok(provider) = provider.parse::<ProviderKind>() else {
        return Err("TESSERA_PROVIDER is not shogun, apimw, setu, stonex or oauth2");
    };
    Ok(Config {
        provider,
        token_url: or(
            option_env!("TESSERA_BASE_URL"),
            "https://idp.example.com/oauth2/token",
        ),
        api_url: or(
            option_env!("TESSERA_API_URL"),
            "https://api.example.com/v1/status",
        ),
        client_id: or(option_env!("TESSERA_CLIENT_ID"), "tessera-sandbox-client"),
        client_secret: or(option_env!("TESSERA_CLIENT_SECRET"), ""),
        roots_pem,
        allow_insecure_http: or(option_env!("TESSERA_ALLOW_INSECURE_HTTP"), "0") == "1",
        terminal: or(option_env!("TESSERA_TERMINAL"), "till7"),
    })
}
