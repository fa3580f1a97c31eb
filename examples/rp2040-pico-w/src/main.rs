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
//!
//! The application (the client's set-up, the refresher, the payment step, the snapshot
//! restored at boot and saved when a token arrives, SNTP) is tessera-terminal
//! (examples/terminal-app), shared with the ESP32-C3 and the QEMU firmware CI runs; this
//! file is the board: Wi-Fi, the RNG, the SNTP-based wall clock and the flash sector.
#![no_std]
#![no_main]

use cyw43::JoinOptions;
use cyw43_pio::{PioSpi, DEFAULT_CLOCK_DIVIDER};
use defmt::{error, info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_net::dns::DnsSocket;
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_net::StackResources;
use embassy_rp::bind_interrupts;
use embassy_rp::clocks::RoscRng;
use embassy_rp::dma;
use embassy_rp::flash::{Blocking, Flash, ERASE_SIZE};
use embassy_rp::gpio::{Level, Output};
use embassy_rp::peripherals::{DMA_CH0, FLASH, PIO0};
use embassy_rp::pio::{InterruptHandler, Pio};
use embassy_time::{Duration, Instant, Timer};
use static_cell::{ConstStaticCell, StaticCell};

use tessera_core::snapshot::WallTime;
use tessera_embassy::CallBuffers;
use tessera_terminal::{SnapshotStore, SntpClock, Tessera, SNAPSHOT_ROOM, TLS_CLOCK};
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

bind_interrupts!(struct Irqs {
    PIO0_IRQ_0 => InterruptHandler<PIO0>;
    DMA_IRQ_0 => dma::InterruptHandler<DMA_CH0>;
});

/// Wi-Fi from the build environment (the rest of the configuration: tessera-terminal's
/// `from_env`).
const fn or(value: Option<&'static str>, default: &'static str) -> &'static str {
    match value {
        Some(v) => v,
        None => default,
    }
}
const WIFI_SSID: &str = or(option_env!("WIFI_SSID"), "set WIFI_SSID");
const WIFI_PASSWORD: &str = or(option_env!("WIFI_PASSWORD"), "");
/// The roots servers are verified against, NUL-terminated for MbedTLS.
const ROOTS: &str = concat!(include_str!("../roots.pem"), "\0");
/// The SNTP server that gives the wall clock.
const NTP_SERVER: &str = or(option_env!("TESSERA_NTP_SERVER"), "pool.ntp.org");

/// Where README.md's probe-rs commands put the CYW43439 blobs, and their sizes.
const FIRMWARE: (usize, usize) = (0x1010_0000, 230_321);
const CLM: (usize, usize) = (0x1014_0000, 4_752);
const NVRAM: (usize, usize) = (0x1014_2000, 746);

type Tcp = TcpClient<'static, 2, 2048, 2048>;
type Terminal = Tessera<'static, Tcp, DnsSocket<'static>>;

/// The Pico W's flash (a W25Q16JV, 2 MiB). memory.x keeps the program under 1 MiB and the
/// CYW43439 blobs at 1 MiB; the snapshot has the last 4 KiB sector to itself.
const FLASH_SIZE: usize = 2 * 1024 * 1024;
const SNAPSHOT_SECTOR: u32 = (FLASH_SIZE - ERASE_SIZE) as u32;
const _: () = assert!(
    4 + SNAPSHOT_ROOM <= ERASE_SIZE,
    "the snapshot must fit its sector"
);

type Storage = Flash<'static, FLASH, Blocking, FLASH_SIZE>;

/// The snapshot in the last flash sector: its length, then the snapshot.
struct FlashSector {
    flash: Storage,
    buf: &'static mut [u8; 4 + SNAPSHOT_ROOM],
}

impl SnapshotStore for FlashSector {
    /// An erased sector reads as all ones, a length out of range: nothing kept.
    fn load<'b>(&mut self, room: &'b mut [u8]) -> Option<&'b mut [u8]> {
        self.flash.blocking_read(SNAPSHOT_SECTOR, self.buf).ok()?;
        let len = u32::from_le_bytes(self.buf[..4].try_into().ok()?) as usize;
        let kept = room.get_mut(..len)?;
        kept.copy_from_slice(self.buf.get(4..4 + len)?);
        self.buf.fill(0);
        Some(kept)
    }

    /// Erases the sector and writes the length and the snapshot. A power cut in between
    /// leaves an erased sector (nothing kept) or a torn snapshot, which restore refuses as
    /// tampered: either way the next boot fetches.
    fn store(&mut self, snapshot: &[u8]) -> bool {
        let len = snapshot.len();
        let Some(body) = self.buf.get_mut(4..4 + len) else {
            return false;
        };
        body.copy_from_slice(snapshot);
        self.buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
        let written = self
            .flash
            .blocking_erase(SNAPSHOT_SECTOR, SNAPSHOT_SECTOR + ERASE_SIZE as u32)
            .and_then(|()| {
                self.flash
                    .blocking_write(SNAPSHOT_SECTOR, &self.buf[..4 + len])
            });
        self.buf.fill(0);
        if let Err(e) = written {
            warn!("flash write failed: {}", e);
        }
        written.is_ok()
    }
}

/// A reading older than this is refreshed before a save.
const SNTP_MAX_AGE: Duration = Duration::from_secs(3600);

/// The wall clock: SNTP's last reading (or a trusted server's `Date`), carried forward by
/// the monotonic clock; vouched for while under an hour old.
struct Clock(Option<SntpClock>);

impl tessera_terminal::WallClock for Clock {
    fn now(&self) -> Option<WallTime> {
        self.0
            .filter(|c| c.at.elapsed() <= SNTP_MAX_AGE)
            .map(|c| c.now())
    }

    fn set(&mut self, unix_ms: u64) {
        self.0 = Some(SntpClock {
            unix_ms,
            at: Instant::now(),
        });
    }
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
async fn refresher(terminal: &'static Terminal) -> ! {
    tessera_terminal::refresher(terminal).await
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
    static SECTOR: ConstStaticCell<[u8; 4 + SNAPSHOT_ROOM]> =
        ConstStaticCell::new([0; 4 + SNAPSHOT_ROOM]);
    let mut store = FlashSector {
        flash: Flash::new_blocking(p.FLASH),
        buf: SECTOR.take(),
    };

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
        rand_core::RngCore::next_u64(&mut rng),
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

    let Ok(roots) = core::ffi::CStr::from_bytes_with_nul(ROOTS.as_bytes()) else {
        defmt::panic!("roots.pem holds a NUL byte");
    };
    let config = match tessera_terminal::from_env(roots) {
        Ok(c) => c,
        Err(e) => {
            error!("{}", e);
            return;
        }
    };
    // Certificate dates need the time before the first handshake, and no RTC survives a
    // reset on this board: SNTP first. Until it answers every handshake fails closed.
    let mut clock = Clock(tessera_terminal::sntp(stack, NTP_SERVER, &mut rng).await);
    match clock.0 {
        Some(c) => TLS_CLOCK.set_unix_time(c.now().unix_ms / 1000),
        None => warn!(
            "no wall clock from SNTP ({}): HTTPS fails until one is known",
            NTP_SERVER
        ),
    }
    static TERMINAL: StaticCell<Terminal> = StaticCell::new();
    let terminal = match tessera_terminal::client(&config, tcp, dns, &mut rng) {
        Ok(c) => TERMINAL.init(c),
        Err(e) => defmt::panic!("set-up: {}", e),
    };
    // A token kept in flash, restored before anything asks for one. Its expiry is wall
    // time: SNTP's (asked above); without an answer it is discarded.
    tessera_terminal::restore(terminal, &clock, &mut store);
    // What is in flash now: written again only when another token arrives.
    let mut flashed = terminal.tokens_stored();
    spawner.spawn(unwrap!(refresher(terminal)));

    // This task's call buffers: the bearer token is written here, and wiped after each call.
    static CALL: StaticCell<CallBuffers> = StaticCell::new();
    let buffers = CALL.init(CallBuffers::new());
    let mut n = 0u64;
    loop {
        n = n.wrapping_add(1);
        let _ = tessera_terminal::pay(terminal, &config, n, &mut clock, buffers).await;
        // A new token (fetched, refreshed, or after a 401) goes to flash once: a sector
        // erase per token lifetime, never per call or per boot.
        if terminal.tokens_stored() != flashed {
            if clock.0.is_none_or(|c| c.at.elapsed() > SNTP_MAX_AGE) {
                if let Some(c) = tessera_terminal::sntp(stack, NTP_SERVER, &mut rng).await {
                    clock.0 = Some(c);
                    TLS_CLOCK.set_unix_time(c.now().unix_ms / 1000);
                }
            }
            // Read before saving: a token stored meanwhile is written next round.
            let stored = terminal.tokens_stored();
            match tessera_terminal::save(terminal, &clock, &mut store) {
                tessera_terminal::Saved::Kept(_) | tessera_terminal::Saved::NoToken => {
                    flashed = stored
                }
                // No recent wall clock, or the write failed: retried next round.
                _ => {}
            }
        }
        Timer::after(Duration::from_secs(30)).await;
    }
}
