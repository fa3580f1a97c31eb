//! Tessera on a Raspberry Pi Pico W: join Wi-Fi (DHCP, DNS), fetch a bearer token from the
//! configured provider, keep it fresh from a background task, and call a protected endpoint
//! with it in a loop, logging with defmt. The token is sealed into the last flash sector
//! whenever a new one arrives, and restored from it at boot once SNTP has given the wall
//! clock, so a reboot does not cost a token request. See README.md for flashing,
//! configuration and why the restore waits for SNTP.
//!
//! HTTPS through MbedTLS (tessera-embassy's `mbedtls`, on a 56 KiB heap), verified against
//! `roots.pem`, with certificate dates checked against SNTP's time: SNTP is asked at boot,
//! before the first handshake. Plain HTTP only to a LAN sandbox, and only when
//! `TESSERA_ALLOW_INSECURE_HTTP=1` says so at build time.
#![no_std]
#![no_main]

use core::fmt::Write;
use cyw43::JoinOptions;
use cyw43_pio::{PioSpi, DEFAULT_CLOCK_DIVIDER};
use defmt::{error, info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_net::dns::{DnsQueryType, DnsSocket};
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Stack, StackResources};
use embassy_rp::bind_interrupts;
use embassy_rp::clocks::RoscRng;
use embassy_rp::dma;
use embassy_rp::flash::{Blocking, Flash, ERASE_SIZE};
use embassy_rp::gpio::{Level, Output};
use embassy_rp::peripherals::{DMA_CH0, FLASH, PIO0};
use embassy_rp::pio::{InterruptHandler, Pio};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{with_timeout, Duration, Instant, Timer};
use static_cell::{ConstStaticCell, StaticCell};

use tessera_core::snapshot::{Key, SnapshotError, WallTime};
use tessera_core::{AnyProvider, Config, Credentials, ProviderKind};
use tessera_embassy::mbedtls::mbedtls_rs::Tls;
use tessera_embassy::mbedtls::{use_wall_clock, Mbedtls, MbedtlsBuffers, Rng09, Roots};
use tessera_embassy::{ApiRequest, CallBuffers, Client, Resources, Settings};
use {defmt_rtt as _, panic_probe as _, tinyrlibc as _};

/// MbedTLS's heap: one connection peaks at about 40 KiB (tests/mbedtls_heap.rs), plus the
/// allocator's own overhead.
const HEAP_SIZE: usize = 56 * 1024;
#[global_allocator]
static HEAP: embedded_alloc::LlffHeap = embedded_alloc::LlffHeap::empty();

/// MbedTLS's debug and self-test code refers to `printf` and `puts`; nothing calls them
/// with debug output off. They print nothing.
#[no_mangle]
extern "C" fn printf(_format: *const u8) -> i32 {
    0
}
#[no_mangle]
extern "C" fn puts(_s: *const u8) -> i32 {
    0
}

/// The wall clock MbedTLS checks certificate dates against.
static TLS_CLOCK: tessera_embassy::mbedtls::WallClock = tessera_embassy::mbedtls::WallClock::new();

bind_interrupts!(struct Irqs {
    PIO0_IRQ_0 => InterruptHandler<PIO0>;
    DMA_IRQ_0 => dma::InterruptHandler<DMA_CH0>;
});

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
/// The roots servers are verified against, NUL-terminated for MbedTLS.
const ROOTS: &str = concat!(include_str!("../roots.pem"), "\0");

/// The SNTP server that gives the wall clock.
const NTP_SERVER: &str = or(option_env!("TESSERA_NTP_SERVER"), "pool.ntp.org");

/// Where README.md's probe-rs commands put the CYW43439 blobs, and their sizes.
const FIRMWARE: (usize, usize) = (0x1010_0000, 230_321);
const CLM: (usize, usize) = (0x1014_0000, 4_752);
const NVRAM: (usize, usize) = (0x1014_2000, 746);

type Tcp = TcpClient<'static, 2, 2048, 2048>;
type Tessera =
    Client<'static, CriticalSectionRawMutex, AnyProvider<'static>, Tcp, DnsSocket<'static>>;

/// The Pico W's flash (a W25Q16JV, 2 MiB). memory.x keeps the program under 1 MiB and the
/// CYW43439 blobs at 1 MiB; the snapshot has the last 4 KiB sector to itself.
const FLASH_SIZE: usize = 2 * 1024 * 1024;
const SNAPSHOT_SECTOR: u32 = (FLASH_SIZE - ERASE_SIZE) as u32;
/// Room for a snapshot of the default `Resources`' token (3,494 bytes), after its length.
const ROOM: usize = <Resources>::SNAPSHOT_CAPACITY;
const _: () = assert!(4 + ROOM <= ERASE_SIZE, "the snapshot must fit its sector");

type Storage = Flash<'static, FLASH, Blocking, FLASH_SIZE>;

/// Reads the kept snapshot into `buf` (its length, then the snapshot); the snapshot's
/// length, 0 for none (an erased sector reads as all ones, a length out of range).
fn read_snapshot(flash: &mut Storage, buf: &mut [u8; 4 + ROOM]) -> usize {
    if flash.blocking_read(SNAPSHOT_SECTOR, buf).is_err() {
        return 0;
    }
    let (head, _) = buf.split_at(4);
    let len = head
        .try_into()
        .map(u32::from_le_bytes)
        .map_or(0, |n| n as usize);
    if len > ROOM {
        return 0;
    }
    len
}

/// Erases the sector and writes `buf[..4 + len]` (length, snapshot) into it. A power cut in
/// between leaves an erased sector (nothing kept) or a torn snapshot, which restore refuses
/// as tampered: either way the next boot fetches.
fn write_snapshot(
    flash: &mut Storage,
    buf: &[u8; 4 + ROOM],
    len: usize,
) -> Result<(), embassy_rp::flash::Error> {
    flash.blocking_erase(SNAPSHOT_SECTOR, SNAPSHOT_SECTOR + ERASE_SIZE as u32)?;
    flash.blocking_write(SNAPSHOT_SECTOR, &buf[..4 + len])
}

/// The wall clock from one SNTP answer, carried forward by the monotonic clock.
#[derive(Clone, Copy)]
struct WallClock {
    unix_ms: u64,
    at: Instant,
}

/// How wrong the wall clock may be, counting the snapshot's writing and its restore: each
/// SNTP reading is within 1 s (the server) plus half its round trip (at most 2 s, longer
/// answers are refused), the RP2040's crystal drifts ±50 ppm (under 0.2 s over the hour a
/// reading is used for), twice over, rounded up.
const UNCERTAINTY: core::time::Duration = core::time::Duration::from_secs(10);
/// A reading older than this is refreshed before a save.
const SNTP_MAX_AGE: Duration = Duration::from_secs(3600);

impl WallClock {
    fn now(&self) -> WallTime {
        let unix_ms = self.unix_ms.saturating_add(self.at.elapsed().as_millis());
        WallTime::new(unix_ms, UNCERTAINTY)
    }
}

/// Asks `NTP_SERVER` for the time (SNTPv4, RFC 4330). The request's transmit time is a
/// random nonce the server must echo, so an off-path sender cannot answer for it; the time
/// is still unauthenticated (README.md says what a forged one can do).
async fn sntp(stack: Stack<'static>, rng: &mut RoscRng) -> Option<WallClock> {
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
    Some(WallClock {
        unix_ms: unix_s * 1000 + ((frac * 1000) >> 32) + half_trip,
        at: received,
    })
}

/// A blob flashed at a fixed address, as the cyw43 driver wants it (4-byte aligned).
fn blob((address, len): (usize, usize)) -> &'static cyw43::Aligned<cyw43::A4, [u8]> {
    let bytes = core::ptr::slice_from_raw_parts(address as *const u8, len);
    // SAFETY: README.md's commands flash `len` bytes at `address`, a 4-aligned address in
    // the XIP flash window that nothing writes while the program runs.
    unsafe { &*(bytes as *const cyw43::Aligned<cyw43::A4, [u8]>) }
}

/// The CLM blob, as a plain slice.
fn clm() -> &'static [u8] {
    let (address, len) = CLM;
    // SAFETY: as for `blob`.
    unsafe { core::slice::from_raw_parts(address as *const u8, len) }
}

#[embassy_executor::task]
async fn wifi_task(
    runner: cyw43::Runner<'static, cyw43::SpiBus<Output<'static>, PioSpi<'static, PIO0, 0>>>,
) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, cyw43::NetDriver<'static>>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn refresher(tessera: &'static Tessera) -> ! {
    tessera.refresher().await
}

#[embassy_executor::main(
    executor = "embassy_rp::executor::Executor",
    entry = "cortex_m_rt::entry"
)]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    {
        use core::mem::MaybeUninit;
        static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: once, before anything allocates; the array is used by nothing else.
        unsafe { HEAP.init(core::ptr::addr_of_mut!(HEAP_MEM) as usize, HEAP_SIZE) }
    }
    let mut rng = RoscRng;
    let mut flash: Storage = Flash::new_blocking(p.FLASH);

    let pwr = Output::new(p.PIN_23, Level::Low);
    let cs = Output::new(p.PIN_25, Level::High);
    let mut pio = Pio::new(p.PIO0, Irqs);
    let dma = dma::Channel::new(p.DMA_CH0, Irqs);
    let spi = PioSpi::new(
        &mut pio.common,
        pio.sm0,
        DEFAULT_CLOCK_DIVIDER,
        pio.irq0,
        cs,
        p.PIN_24,
        p.PIN_29,
        dma,
    );

    static WIFI: StaticCell<cyw43::State> = StaticCell::new();
    let (device, mut control, runner) = cyw43::new(
        WIFI.init(cyw43::State::new()),
        pwr,
        spi,
        blob(FIRMWARE),
        blob(NVRAM),
    )
    .await;
    spawner.spawn(unwrap!(wifi_task(runner)));
    control.init(clm()).await;
    control
        .set_power_management(cyw43::PowerManagementMode::PowerSave)
        .await;

    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let config = embassy_net::Config::dhcpv4(Default::default());
    let (stack, runner) = embassy_net::new(
        device,
        config,
        RESOURCES.init(StackResources::new()),
        rng.next_u64(),
    );
    spawner.spawn(unwrap!(net_task(runner)));

    while let Err(e) = control
        .join(WIFI_SSID, JoinOptions::new(WIFI_PASSWORD.as_bytes()))
        .await
    {
        warn!("joining {} failed: {}; retrying", WIFI_SSID, e);
        Timer::after(Duration::from_secs(5)).await;
    }
    stack.wait_config_up().await;
    info!("network up");

    static TCP_STATE: StaticCell<TcpClientState<2, 2048, 2048>> = StaticCell::new();
    static TCP: StaticCell<Tcp> = StaticCell::new();
    static DNS: StaticCell<DnsSocket<'static>> = StaticCell::new();
    let tcp = TCP.init(TcpClient::new(stack, TCP_STATE.init(TcpClientState::new())));
    let dns = DNS.init(DnsSocket::new(stack));

    let Ok(kind) = PROVIDER.parse::<ProviderKind>() else {
        error!(
            "TESSERA_PROVIDER `{}` is not shogun, apimw, setu, stonex or oauth2",
            PROVIDER
        );
        return;
    };
    let credentials = match Credentials::new(CLIENT_ID, CLIENT_SECRET) {
        Ok(c) => c,
        Err(e) => {
            error!("credentials: {}", e);
            return;
        }
    };
    let settings = Settings {
        session: Config {
            // Plain HTTP to a sandbox on the LAN is refused for anything but loopback (the
            // secret and the token would cross the network in clear) unless the build says
            // TESSERA_ALLOW_INSECURE_HTTP=1: right for a bench sandbox only.
            allow_insecure_http: ALLOW_INSECURE_HTTP == "1",
            ..Config::default()
        },
        ..Settings::default()
    };
    // Certificate dates need the time before the first handshake, and no RTC survives a
    // reset on this board: SNTP first. Until it answers every handshake fails closed.
    use_wall_clock(&TLS_CLOCK);
    let mut clock = sntp(stack, &mut rng).await;
    match clock {
        Some(c) => TLS_CLOCK.set_unix_time(c.now().unix_ms / 1000),
        None => warn!(
            "no wall clock from SNTP ({}): HTTPS fails until one is known",
            NTP_SERVER
        ),
    }
    // The program's one MbedTLS instance (the ring oscillator's RNG), the roots, and the
    // buffer token requests are written in.
    static TLS_RNG: StaticCell<Rng09<RoscRng>> = StaticCell::new();
    static TLS: StaticCell<Tls<'static>> = StaticCell::new();
    static TLS_BUFFERS: StaticCell<MbedtlsBuffers> = StaticCell::new();
    let tls = match Tls::new(TLS_RNG.init(Rng09(RoscRng))) {
        Ok(tls) => TLS.init(tls),
        Err(e) => defmt::panic!("MbedTLS: {}", defmt::Debug2Format(&e)),
    };
    let roots = match core::ffi::CStr::from_bytes_with_nul(ROOTS.as_bytes()).map(Roots::new) {
        Ok(Ok(roots)) => roots,
        _ => defmt::panic!("roots.pem: not a PEM bundle MbedTLS can parse"),
    };
    let https = Mbedtls::new(
        tls.reference(),
        roots,
        TLS_BUFFERS.init(MbedtlsBuffers::new()),
    );
    static RESOURCES_TESSERA: StaticCell<Resources> = StaticCell::new();
    static TESSERA: StaticCell<Tessera> = StaticCell::new();
    let tessera = TESSERA.init(
        Client::builder(
            AnyProvider::new(kind, BASE_URL),
            credentials,
            tcp,
            dns,
            RESOURCES_TESSERA.init(Resources::new()),
            &mut rng,
        )
        .settings(settings)
        .mbedtls(https)
        .build(),
    );
    // A token kept in flash, restored before anything asks for one. Its expiry is wall
    // time: SNTP's (asked above); without an answer it is discarded.
    static SNAPSHOT: ConstStaticCell<[u8; 4 + ROOM]> = ConstStaticCell::new([0; 4 + ROOM]);
    let kept = SNAPSHOT.take();
    let len = read_snapshot(&mut flash, kept);
    if len > 0 {
        let wall = clock.map(|c| c.now());
        match tessera.restore(wall, Key::Credentials, &mut kept[4..4 + len]) {
            Ok(r) => info!(
                "token restored from flash, no token request (refresh in {} s)",
                r.refresh_at
                    .as_millis()
                    .saturating_sub(Instant::now().as_millis())
                    / 1000
            ),
            Err(e) => info!("token in flash not restored ({}): fetching one", e),
        }
    }
    // What is in flash now: written again only when another token arrives.
    let mut flashed = tessera.tokens_stored();
    spawner.spawn(unwrap!(refresher(tessera)));

    // This task's call buffers: the bearer token is written here, and wiped after each call.
    static CALL: StaticCell<CallBuffers> = StaticCell::new();
    static CALL_TLS: StaticCell<MbedtlsBuffers> = StaticCell::new();
    let buffers = CALL.init(CallBuffers::new());
    let call_tls = CALL_TLS.init(MbedtlsBuffers::new());
    let mut n = 0u32;
    loop {
        n = n.wrapping_add(1);
        // One key per operation: a retried payment is not charged twice.
        let mut key = heapless::String::<16>::new();
        let _ = write!(key, "till7-{n}");
        let headers = [("Idempotency-Key", key.as_str())];
        match tessera
            .call_mbedtls(
                ApiRequest::get(API_URL).headers(&headers),
                buffers,
                call_tls,
            )
            .await
        {
            Ok(r) => info!(
                "{} answered {} ({} bytes, request id {})",
                API_URL,
                r.status(),
                r.body().len(),
                r.header("x-request-id").unwrap_or("-")
            ),
            Err(e) => {
                warn!("call failed: {}", e);
                tessera.failure(|f| {
                    if let Some(f) = f {
                        warn!("last token failure: {}", f)
                    }
                });
            }
        }
        // A new token (fetched, refreshed, or after a 401) goes to flash once: a sector
        // erase per token lifetime, never per call or per boot.
        if tessera.tokens_stored() != flashed {
            if clock.is_none_or(|c| c.at.elapsed() > SNTP_MAX_AGE) {
                clock = sntp(stack, &mut rng).await.or(clock);
                if let Some(c) = clock {
                    TLS_CLOCK.set_unix_time(c.now().unix_ms / 1000);
                }
            }
            let fresh = clock.filter(|c| c.at.elapsed() <= SNTP_MAX_AGE);
            // Read before saving: a token stored meanwhile is written next round.
            let stored = tessera.tokens_stored();
            match fresh {
                None => warn!("no recent wall clock: token not kept (retried next round)"),
                Some(c) => match tessera.save(c.now(), Key::Credentials, &mut kept[4..]) {
                    Ok(bytes) => {
                        let n = bytes.len();
                        kept[..4].copy_from_slice(&(n as u32).to_le_bytes());
                        match write_snapshot(&mut flash, kept, n) {
                            Ok(()) => {
                                flashed = stored;
                                info!("token sealed into flash ({} bytes)", n);
                            }
                            Err(e) => warn!("flash write failed: {}", e),
                        }
                    }
                    // Nothing usable to keep; the next token changes the count again.
                    Err(SnapshotError::NoToken) => flashed = stored,
                    Err(e) => warn!("token not saved: {}", e),
                },
            }
        }
        Timer::after(Duration::from_secs(30)).await;
    }
}
