//! Tessera on an ESP32-C3, a battery terminal: wake, join Wi-Fi (DHCP, DNS), take the
//! bearer token back from RTC fast memory (no token request while it lives), call a
//! protected endpoint with it, seal the token into RTC fast memory again and deep-sleep.
//! The first boot, or a wake with no usable snapshot, fetches a token as usual. See
//! README.md for flashing, configuration and the wall-clock trust decision.
#![no_std]
#![no_main]

use core::fmt::Write;

use embassy_executor::Spawner;
use embassy_net::dns::DnsSocket;
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_net::{Runner, StackResources};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Duration, Timer};
use esp_hal::clock::CpuClock;
use esp_hal::rng::Rng;
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
    "http://192.168.1.10:8080/oauth2/token",
);
const CLIENT_ID: &str = or(option_env!("TESSERA_CLIENT_ID"), "tessera-sandbox-client");
const CLIENT_SECRET: &str = or(option_env!("TESSERA_CLIENT_SECRET"), "");
const API_URL: &str = or(
    option_env!("TESSERA_API_URL"),
    "http://192.168.1.10:8080/oauth2/protected",
);
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
    // The Wi-Fi driver allocates; tessera itself does not.
    esp_alloc::heap_allocator!(size: 72 * 1024);
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

    // The chip's true RNG (rand_core 0.9) seeds tessera's jitter and the network stack.
    let mut rng = Rng::new();
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
            // The default URLs are plain HTTP to a sandbox on the LAN, which the core refuses
            // for anything but loopback (the secret and the token would cross the network in
            // clear). Opting in is right for a bench sandbox only: point TESSERA_BASE_URL
            // and TESSERA_API_URL at https:// for anything real.
            allow_insecure_http: true,
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
    let buffers = CALL.init(CallBuffers::new());
    // One key per operation (a retried payment is not charged twice), unique across wakes.
    let mut key = heapless::String::<32>::new();
    let _ = write!(key, "till7-{}", rtc.current_time_us() / 1000);
    let headers = [("Idempotency-Key", key.as_str())];
    match tessera
        .call(ApiRequest::get(API_URL).headers(&headers), buffers)
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
