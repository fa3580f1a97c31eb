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
//!
//! The application (the client's set-up, the refresher, the payment step, the snapshot
//! restored at wake and saved before sleep, SNTP) is tessera-terminal
//! (examples/terminal-app), shared with the Pico W and the QEMU firmware CI runs; this file
//! is the board: Wi-Fi, the TRNG, the RTC as the wall clock, RTC memory and deep sleep.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::dns::DnsSocket;
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_net::{Runner, StackResources};
use embassy_time::{Duration, Timer};
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
use tessera_core::snapshot::WallTime;
use tessera_embassy::CallBuffers;
use tessera_terminal::{SnapshotStore, Tessera, SNAPSHOT_ROOM, TLS_CLOCK};
use {esp_alloc as _, esp_backtrace as _};

esp_bootloader_esp_idf::esp_app_desc!();

/// Wi-Fi and the board's own settings from the build environment (the rest of the
/// configuration: tessera-terminal's `from_env`).
const fn or(value: Option<&'static str>, default: &'static str) -> &'static str {
    match value {
        Some(v) => v,
        None => default,
    }
}
const WIFI_SSID: &str = or(option_env!("WIFI_SSID"), "set WIFI_SSID");
const WIFI_PASSWORD: &str = or(option_env!("WIFI_PASSWORD"), "");
/// The SNTP server that gives the wall clock after a cold boot.
const NTP_SERVER: &str = or(option_env!("TESSERA_NTP_SERVER"), "pool.ntp.org");
/// The roots servers are verified against, NUL-terminated for MbedTLS.
const ROOTS: &str = concat!(include_str!("../roots.pem"), "\0");
/// Seconds of deep sleep between wakes.
const SLEEP_S: &str = or(option_env!("TESSERA_SLEEP_S"), "30");

/// Room for a snapshot of the default `Resources`' token (3,494 bytes of the C3's 8 KiB of
/// RTC fast memory).
const ROOM: usize = SNAPSHOT_ROOM;

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

/// The snapshot in RTC fast memory.
struct RtcMemory {
    snapshot: &'static mut [u8; ROOM],
    len: &'static mut u32,
}

impl SnapshotStore for RtcMemory {
    /// The snapshot is spent once read (restore wipes what it opened); a fresh one is
    /// written before the sleep.
    fn load<'b>(&mut self, room: &'b mut [u8]) -> Option<&'b mut [u8]> {
        let len = usize::try_from(*self.len).unwrap_or(0).min(ROOM);
        *self.len = 0;
        let kept = room.get_mut(..len).filter(|k| !k.is_empty())?;
        kept.copy_from_slice(&self.snapshot[..len]);
        self.snapshot.fill(0);
        Some(kept)
    }

    fn store(&mut self, snapshot: &[u8]) -> bool {
        let Some(room) = self.snapshot.get_mut(..snapshot.len()) else {
            return false;
        };
        room.copy_from_slice(snapshot);
        *self.len = snapshot.len() as u32;
        true
    }
}

/// The wall clock, when we vouch for it: the RTC (which keeps counting through deep sleep)
/// was set from a `Date` or SNTP since the last cold boot. Its uncertainty: the reading's
/// second and the request's latency (2 s), plus 10% of the time since it was set, for the
/// drift of the RTC's slow clock over deep sleep (the RC oscillator, calibrated at boot, is
/// good to a few percent).
struct RtcClock<'a> {
    rtc: &'a Rtc<'a>,
    set_at_ms: &'static mut u64,
}

impl tessera_terminal::WallClock for RtcClock<'_> {
    fn now(&self) -> Option<WallTime> {
        if *self.set_at_ms == 0 {
            return None;
        }
        let now = self.rtc.current_time_us() / 1000;
        let drift_ms = now.saturating_sub(*self.set_at_ms) / 10;
        let uncertainty = core::time::Duration::from_millis(2000u64.saturating_add(drift_ms));
        Some(WallTime::new(now, uncertainty))
    }

    fn set(&mut self, unix_ms: u64) {
        self.rtc.set_current_time_us(unix_ms.saturating_mul(1000));
        *self.set_at_ms = unix_ms;
    }
}

type Tcp = TcpClient<'static, 2, 2048, 2048>;
type Terminal = Tessera<'static, Tcp, DnsSocket<'static>>;

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
async fn refresher(terminal: &'static Terminal) {
    tessera_terminal::refresher(terminal).await
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
    // SAFETY: once, by `main`, and nothing else (no task, no interrupt) names these
    // statics: the references are unique. Every bit pattern is a valid value.
    let (mut store, set_at_ms) = unsafe {
        (
            RtcMemory {
                snapshot: &mut *core::ptr::addr_of_mut!(SNAPSHOT),
                len: &mut *core::ptr::addr_of_mut!(SNAPSHOT_LEN),
            },
            &mut *core::ptr::addr_of_mut!(CLOCK_SET_AT_MS),
        )
    };
    // Only a wake from our own deep sleep keeps the RTC's wall clock and the snapshot we
    // wrote. After any other reset (power-on, brown-out, watchdog, panic) trust neither:
    // the clock may have restarted from zero. The first token is then fetched.
    let woke = esp_hal::system::reset_reason() == Some(SocResetReason::CoreDeepSleep);
    if !woke {
        *store.len = 0;
        store.snapshot.fill(0);
        *set_at_ms = 0;
    }
    let mut clock = RtcClock {
        rtc: &rtc,
        set_at_ms,
    };

    // The chip's true RNG (rand_core 0.9), the ADC as its entropy source for as long as the
    // program runs: tessera's jitter, the network stack, SNTP's nonce and MbedTLS's seed.
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
    use tessera_terminal::WallClock as _;
    if clock.now().is_none() {
        match tessera_terminal::sntp(stack, NTP_SERVER, &mut rng).await {
            Some(c) => {
                clock.set(c.now().unix_ms);
                info!("wall clock from SNTP");
            }
            None => warn!("no wall clock from SNTP: HTTPS fails until one is known"),
        }
    }
    if let Some(wall) = clock.now() {
        TLS_CLOCK.set_unix_time(wall.unix_ms / 1000);
    }

    let Ok(roots) = core::ffi::CStr::from_bytes_with_nul(ROOTS.as_bytes()) else {
        panic!("roots.pem holds a NUL byte");
    };
    let config = match tessera_terminal::from_env(roots) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let Some(sleep_s) = SLEEP_S.parse::<u64>().ok().filter(|&s| s > 0) else {
        panic!("TESSERA_SLEEP_S `{SLEEP_S}` is not a positive number of seconds");
    };
    static TERMINAL: StaticCell<Terminal> = StaticCell::new();
    let terminal = match tessera_terminal::client(&config, tcp, dns, &mut rng) {
        Ok(c) => TERMINAL.init(c),
        Err(e) => panic!("set-up: {e:?}"),
    };

    // The token from before the sleep, before anything asks for one.
    let restored = u32::from(tessera_terminal::restore(terminal, &clock, &mut store));
    spawner.spawn(refresher(terminal).unwrap());

    // This task's call buffers: the bearer token is written here, and wiped after each call.
    static CALL: StaticCell<CallBuffers> = StaticCell::new();
    let buffers = CALL.init(CallBuffers::new());
    // One key per operation, unique across wakes: the RTC's milliseconds.
    let operation = rtc.current_time_us() / 1000;
    if tessera_terminal::pay(terminal, &config, operation, &mut clock, buffers)
        .await
        .is_err()
    {
        error!("no payment call this wake");
    }
    info!(
        "tokens fetched this wake: {}",
        terminal.tokens_stored().saturating_sub(restored)
    );

    // Seal the token into RTC memory, then sleep. With no trusted wall clock (no `Date`
    // or SNTP seen since the cold boot) nothing is kept: the next wake fetches.
    tessera_terminal::save(terminal, &clock, &mut store);
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
