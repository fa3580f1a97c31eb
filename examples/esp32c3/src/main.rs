//! Tessera on an ESP32-C3, a battery terminal: wake, join Wi-Fi (DHCP, DNS), take the
//! bearer token back from RTC fast memory (no token request while it lives), call a
//! protected endpoint with it, seal the token into RTC fast memory again and deep-sleep.
//! The first boot, or a wake with no usable snapshot, fetches a token as usual. See
//! README.md for flashing, configuration and the wall-clock trust decision.
//!
//! HTTPS through MbedTLS (tessera-embassy's `mbedtls`, SHA and RSA on the C3's
//! accelerators), verified against `roots.pem`, with certificate dates checked against the
//! wall clock: the RTC after a wake, SNTP after a cold boot. Plain HTTP only to a LAN
//! sandbox, and only when `TESSERA_ALLOW_INSECURE_HTTP=1` says so at build time.
#![no_std]
#![no_main]

use core::fmt::Write;

use embassy_executor::Spawner;
use embassy_net::dns::{DnsQueryType, DnsSocket};
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Runner, Stack, StackResources};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{with_timeout, Duration, Instant, Timer};
use esp_hal::clock::CpuClock;
use esp_hal::rng::{Trng, TrngSource};
use esp_hal::rtc_cntl::sleep::{LowPower, RtcSleepConfig};
use esp_hal::rtc_cntl::{Rtc, SocResetReason};
use esp_hal::timer::timg::TimerGroup;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config, ControllerConfig, Interface, WifiController,
};
use log::{error, info, warn};
use static_cell::StaticCell;
use tessera_core::snapshot::{Key, WallTime};
use tessera_core::timestamp::parse_http_date;
use tessera_core::{AnyProvider, Credentials, ProviderKind};
use tessera_embassy::mbedtls::mbedtls_rs::Tls;
use tessera_embassy::mbedtls::{use_wall_clock, Mbedtls, MbedtlsBuffers, Rng09, Roots, WallClock};
use tessera_embassy::{ApiRequest, CallBuffers, Client, Resources, Settings};
use {esp_alloc as _, esp_backtrace as _};

esp_bootloader_esp_idf::esp_app_desc!();

/// Configuration from the build environment: credentials never live in source control.
const fn or(value: Option<&'static str>, default: &'static str) -> &'static str {
    match value {
        Some(v) => v,
        None => default,
    }
}
const WIFI_SSID: &str = or(option_env!("WIFI_SSID"), "set WIFI_SSID");
const WIFI_PASSWORD: &str = or(option_env!("WIFI_PASSWORD"), "");
const PROVIDER: &str = or(option_env!("TESSERA_PROVIDER"), "oauth2");
const BASE_URL: &str = or(
    option_env!("TESSERA_BASE_URL"),
    "https://idp.example.com/oauth2/token",
);
const CLIENT_ID: &str = or(option_env!("TESSERA_CLIENT_ID"), "tessera-sandbox-client");
const CLIENT_SECRET: &str = or(option_env!("TESSERA_CLIENT_SECRET"), "");
const API_URL: &str = or(
    option_env!("TESSERA_API_URL"),
    "https://api.example.com/v1/status",
);
/// `1` lets the secret and the token travel over plain `http://` to a LAN sandbox.
const ALLOW_INSECURE_HTTP: &str = or(option_env!("TESSERA_ALLOW_INSECURE_HTTP"), "0");
/// The SNTP server that gives the wall clock after a cold boot.
const NTP_SERVER: &str = or(option_env!("TESSERA_NTP_SERVER"), "pool.ntp.org");
/// The roots servers are verified against, NUL-terminated for MbedTLS.
const ROOTS: &str = concat!(include_str!("../roots.pem"), "\0");
/// Seconds of deep sleep between wakes.
const SLEEP_S: &str = or(option_env!("TESSERA_SLEEP_S"), "30");

/// Room for a snapshot of the default `Resources`' token (3,494 bytes of the C3's 8 KiB of
/// RTC fast memory).
const ROOM: usize = <Resources>::SNAPSHOT_CAPACITY;

// RTC fast memory stays powered through deep sleep; esp-hal zeroes these on the first boot
// only (`persistent`). Only `main` touches them, before it sleeps.

/// The sealed snapshot (ChaCha20-Poly1305: the token is not readable at rest).
#[esp_hal::ram(unstable(rtc_fast, persistent))]
static mut SNAPSHOT: [u8; ROOM] = [0; ROOM];
/// Bytes of `SNAPSHOT` in use; 0 for none.
#[esp_hal::ram(unstable(rtc_fast, persistent))]
static mut SNAPSHOT_LEN: u32 = 0;
/// The RTC's wall clock (Unix ms) when it was last set from a server's `Date`; 0 when it was
/// not set since the last cold boot, so it is not trusted.
#[esp_hal::ram(unstable(rtc_fast, persistent))]
static mut CLOCK_SET_AT_MS: u64 = 0;

/// The RTC-memory statics, borrowed once by `main`.
struct Kept {
    snapshot: &'static mut [u8; ROOM],
    len: &'static mut u32,
    clock_set_at_ms: &'static mut u64,
}

impl Kept {
    fn take() -> Kept {
        // SAFETY: called once, by `main`, and nothing else (no task, no interrupt) names
        // these statics: the references are unique. Every bit pattern is a valid value.
        unsafe {
            Kept {
                snapshot: &mut *core::ptr::addr_of_mut!(SNAPSHOT),
                len: &mut *core::ptr::addr_of_mut!(SNAPSHOT_LEN),
                clock_set_at_ms: &mut *core::ptr::addr_of_mut!(CLOCK_SET_AT_MS),
            }
        }
    }
}

/// The wall clock, when we vouch for it: the RTC (which keeps counting through deep sleep)
/// was set from a `Date` since the last cold boot. Its uncertainty: the `Date` header's
/// second and the request's latency (2 s), plus 10% of the time since it was set, for the
/// drift of the RTC's slow clock over deep sleep (the RC oscillator, calibrated at boot, is
/// good to a few percent).
fn wall_clock(rtc: &Rtc<'_>, clock_set_at_ms: u64) -> Option<WallTime> {
    if clock_set_at_ms == 0 {
        return None;
    }
    let now = rtc.current_time_us() / 1000;
    let drift_ms = now.saturating_sub(clock_set_at_ms) / 10;
    let uncertainty = core::time::Duration::from_millis(2000u64.saturating_add(drift_ms));
    Some(WallTime::new(now, uncertainty))
}

/// Asks `NTP_SERVER` for the time (SNTPv4, RFC 4330): Unix seconds. The request's transmit
/// time is a random nonce the server must echo, so an off-path sender cannot answer for it;
/// the time is still unauthenticated (README.md says what a forged one can do).
async fn sntp(stack: Stack<'static>, rng: &mut Trng) -> Option<u64> {
    const NTP_TO_UNIX_S: u64 = 2_208_988_800;
    let server = *stack
        .dns_query(NTP_SERVER, DnsQueryType::A)
        .await
        .ok()?
        .first()?;
    let (mut rx_meta, mut tx_meta) = ([PacketMetadata::EMPTY; 1], [PacketMetadata::EMPTY; 1]);
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
    let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    socket.bind(0).ok()?;
    let nonce = rand_core::RngCore::next_u64(rng).to_be_bytes();
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
    let mode = reply[0] & 0x7;
    let stratum = reply[1];
    if n < 48 || from.endpoint.addr != server || mode != 4 || !(1..16).contains(&stratum) {
        return None;
    }
    if reply[24..32] != nonce || sent.elapsed() > Duration::from_secs(2) {
        return None;
    }
    let secs = u64::from(u32::from_be_bytes(reply[40..44].try_into().ok()?));
    // NTP era 0 ends in February 2036; a smaller count is era 1.
    Some(match secs.checked_sub(NTP_TO_UNIX_S) {
        Some(s) => s,
        None => secs + (1 << 32) - NTP_TO_UNIX_S,
    })
}

/// The wall clock MbedTLS checks certificate dates against.
static TLS_CLOCK: WallClock = WallClock::new();

type Tcp = TcpClient<'static, 2, 2048, 2048>;
type Tessera =
    Client<'static, CriticalSectionRawMutex, AnyProvider<'static>, Tcp, DnsSocket<'static>>;

#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) {
    loop {
        match controller.connect_async().await {
            Ok(_) => {
                info!("Wi-Fi connected");
                let _ = controller.wait_for_disconnect_async().await;
                warn!("Wi-Fi disconnected");
            }
            Err(e) => warn!("Wi-Fi connection failed: {e:?}"),
        }
        Timer::after(Duration::from_secs(5)).await;
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) {
    runner.run().await
}

#[embassy_executor::task]
async fn refresher(tessera: &'static Tessera) {
    tessera.refresher().await
}

#[esp_hal::main]
async fn main(spawner: Spawner) -> ! {
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    // The Wi-Fi driver allocates, and MbedTLS (about 40 KiB per connection, with the roots
    // parsed at its start): tessera itself does not.
    esp_alloc::heap_allocator!(size: 136 * 1024);
    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    let rtc = Rtc::new(peripherals.RTC_TIMER);
    let kept = Kept::take();
    // Only a wake from our own deep sleep keeps the RTC's wall clock and the snapshot we
    // wrote. After any other reset (power-on, brown-out, watchdog, panic) trust neither:
    // the clock may have restarted from zero. The first token is then fetched.
    let woke = esp_hal::system::reset_reason() == Some(SocResetReason::CoreDeepSleep);
    if !woke {
        *kept.len = 0;
        *kept.clock_set_at_ms = 0;
        kept.snapshot.fill(0);
    }

    // The chip's true RNG (rand_core 0.9), the ADC as its entropy source for as long as the
    // program runs: tessera's jitter, the network stack, SNTP's nonce and MbedTLS.
    static TRNG_SOURCE: StaticCell<TrngSource<'static>> = StaticCell::new();
    TRNG_SOURCE.init(TrngSource::new(peripherals.RNG, peripherals.ADC1));
    let Ok(mut rng) = Trng::try_new() else {
        panic!("no entropy source for the TRNG");
    };
    let (Ok(ssid), Ok(password)) = (WIFI_SSID.try_into(), WIFI_PASSWORD.try_into()) else {
        panic!("WIFI_SSID or WIFI_PASSWORD is too long");
    };
    let station = Config::Station(
        StationConfig::default()
            .with_ssid(ssid)
            .with_authentication(AuthenticationMethodConfig::Wpa2Personal(password)),
    );
    let controller = match WifiController::new(
        peripherals.WIFI,
        ControllerConfig::default().with_initial_config(station),
    ) {
        Ok(c) => c,
        Err(e) => panic!("Wi-Fi: {e:?}"),
    };
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let config = embassy_net::Config::dhcpv4(Default::default());
    let seed = rand_core::RngCore::next_u64(&mut rng);
    let (stack, runner) = embassy_net::new(
        Interface::station(),
        config,
        RESOURCES.init(StackResources::new()),
        seed,
    );
    spawner.spawn(wifi_task(controller).unwrap());
    spawner.spawn(net_task(runner).unwrap());
    stack.wait_config_up().await;
    info!("network up");

    static TCP_STATE: StaticCell<TcpClientState<2, 2048, 2048>> = StaticCell::new();
    static TCP: StaticCell<Tcp> = StaticCell::new();
    static DNS: StaticCell<DnsSocket<'static>> = StaticCell::new();
    let tcp = TCP.init(TcpClient::new(stack, TCP_STATE.init(TcpClientState::new())));
    let dns = DNS.init(DnsSocket::new(stack));

    // Certificate dates need the time before the first handshake: the RTC when it was set
    // before the sleep, otherwise SNTP (and the RTC from it). Until then every handshake
    // fails closed.
    use_wall_clock(&TLS_CLOCK);
    if let Some(wall) = wall_clock(&rtc, *kept.clock_set_at_ms) {
        TLS_CLOCK.set_unix_time(wall.unix_ms / 1000);
    } else {
        match sntp(stack, &mut rng).await {
            Some(unix_s) => {
                TLS_CLOCK.set_unix_time(unix_s);
                let ms = unix_s.saturating_mul(1000);
                rtc.set_current_time_us(ms.saturating_mul(1000));
                *kept.clock_set_at_ms = ms;
                info!("wall clock from SNTP");
            }
            None => warn!("no wall clock from SNTP: HTTPS fails until one is known"),
        }
    }

    // The program's one MbedTLS instance, the roots, and the buffer token requests are
    // written in.
    static TLS_RNG: StaticCell<Rng09<Trng>> = StaticCell::new();
    static TLS: StaticCell<Tls<'static>> = StaticCell::new();
    static TLS_BUFFERS: StaticCell<MbedtlsBuffers> = StaticCell::new();
    let tls = match Tls::new(TLS_RNG.init(Rng09(rng.clone()))) {
        Ok(tls) => TLS.init(tls),
        Err(e) => panic!("MbedTLS: {e:?}"),
    };
    let roots = match core::ffi::CStr::from_bytes_with_nul(ROOTS.as_bytes()).map(Roots::new) {
        Ok(Ok(roots)) => roots,
        _ => panic!("roots.pem: not a PEM bundle MbedTLS can parse"),
    };
    let https = Mbedtls::new(
        tls.reference(),
        roots,
        TLS_BUFFERS.init(MbedtlsBuffers::new()),
    );

    let Ok(kind) = PROVIDER.parse::<ProviderKind>() else {
        panic!("TESSERA_PROVIDER `{PROVIDER}` is not shogun, apimw, setu, stonex or oauth2");
    };
    let Some(sleep_s) = SLEEP_S.parse::<u64>().ok().filter(|&s| s > 0) else {
        panic!("TESSERA_SLEEP_S `{SLEEP_S}` is not a positive number of seconds");
    };
    let credentials = match Credentials::new(CLIENT_ID, CLIENT_SECRET) {
        Ok(c) => c,
        Err(e) => panic!("credentials: {e}"),
    };
    let settings = Settings {
        session: tessera_core::session::Config {
            // Plain HTTP to a sandbox on the LAN is refused for anything but loopback (the
            // secret and the token would cross the network in clear) unless the build says
            // TESSERA_ALLOW_INSECURE_HTTP=1: right for a bench sandbox only.
            allow_insecure_http: ALLOW_INSECURE_HTTP == "1",
            ..Default::default()
        },
        ..Settings::default()
    };
    static TESSERA_RESOURCES: StaticCell<Resources> = StaticCell::new();
    static TESSERA: StaticCell<Tessera> = StaticCell::new();
    let tessera = TESSERA.init(
        Client::builder(
            AnyProvider::new(kind, BASE_URL),
            credentials,
            tcp,
            dns,
            TESSERA_RESOURCES.init(Resources::new()),
            &mut rng,
        )
        .settings(settings)
        .mbedtls(https)
        .build(),
    );

    // The token from before the sleep, before anything asks for one. The snapshot is spent
    // either way (restore wipes what it opened); a fresh one is written before the sleep.
    let len = usize::try_from(*kept.len).unwrap_or(0).min(ROOM);
    let wall = wall_clock(&rtc, *kept.clock_set_at_ms);
    let restored = match len {
        0 => false,
        _ => match tessera.restore(wall, Key::Credentials, &mut kept.snapshot[..len]) {
            Ok(r) => {
                // The client's clock is embassy-time's, in ms since this boot.
                let now_ms = embassy_time::Instant::now().as_millis();
                let due_s = r.refresh_at.as_millis().saturating_sub(now_ms) / 1000;
                info!("token restored from RTC memory, no token request (refresh in {due_s} s)");
                true
            }
            Err(e) => {
                info!("snapshot not restored ({e}): the first call fetches a token");
                false
            }
        },
    };
    *kept.len = 0;
    let restored_count = u32::from(restored);
    spawner.spawn(refresher(tessera).unwrap());

    // This task's call buffers: the bearer token is written here, and wiped after each call.
    static CALL: StaticCell<CallBuffers> = StaticCell::new();
    static CALL_TLS: StaticCell<MbedtlsBuffers> = StaticCell::new();
    let buffers = CALL.init(CallBuffers::new());
    let call_tls = CALL_TLS.init(MbedtlsBuffers::new());
    // One key per operation (a retried payment is not charged twice), unique across wakes.
    let mut key = heapless::String::<32>::new();
    let _ = write!(key, "till7-{}", rtc.current_time_us() / 1000);
    let headers = [("Idempotency-Key", key.as_str())];
    match tessera
        .call_mbedtls(
            ApiRequest::get(API_URL).headers(&headers),
            buffers,
            call_tls,
        )
        .await
    {
        Ok(r) => {
            info!(
                "{API_URL} answered {} ({} bytes, request id {})",
                r.status(),
                r.body().len(),
                r.header("x-request-id").unwrap_or("-")
            );
            // The wall clock, from the server we already trust with the token (HTTPS in
            // production): see README.md for why this is enough.
            if let Some(unix_s) = r
                .header("date")
                .and_then(|d| parse_http_date(d).ok())
                .and_then(|s| u64::try_from(s).ok())
            {
                let ms = unix_s.saturating_mul(1000);
                rtc.set_current_time_us(ms.saturating_mul(1000));
                *kept.clock_set_at_ms = ms;
                TLS_CLOCK.set_unix_time(unix_s);
            }
        }
        Err(e) => {
            error!("call failed: {e}");
            tessera.failure(|f| {
                if let Some(f) = f {
                    warn!("last token failure: {f}")
                }
            });
        }
    }
    info!(
        "tokens fetched this wake: {}",
        tessera.tokens_stored().saturating_sub(restored_count)
    );

    // Seal the token into RTC memory, then sleep. With no trusted wall clock (no `Date`
    // seen since the cold boot) nothing is kept: the next wake fetches.
    match wall_clock(&rtc, *kept.clock_set_at_ms) {
        Some(wall) => match tessera.save(wall, Key::Credentials, kept.snapshot) {
            Ok(bytes) => {
                *kept.len = u32::try_from(bytes.len()).unwrap_or(0);
                info!("token sealed into RTC memory ({} bytes)", bytes.len());
            }
            Err(e) => warn!("token not saved: {e}"),
        },
        None => warn!("no wall clock yet: token not saved"),
    }
    info!("deep sleep for {sleep_s} s");
    let mut low_power = LowPower::new(peripherals.LPWR);
    low_power.set_wakeup_deadline(
        esp_hal::time::Instant::now() + esp_hal::time::Duration::from_secs(sleep_s),
    );
    let mut sleep = RtcSleepConfig::deep();
    // `deep()` powers RTC fast memory down; keep it up, or the snapshot is lost.
    sleep.set_rtc_fastmem_pd_en(false);
    low_power.sleep_deep(sleep)
}
