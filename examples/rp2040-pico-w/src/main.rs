//! Tessera on a Raspberry Pi Pico W: join Wi-Fi (DHCP, DNS), fetch a bearer token from the
//! configured provider, keep it fresh from a background task, and call a protected endpoint
//! with it in a loop, logging with defmt. See README.md for flashing and configuration.
#![no_std]
#![no_main]

use core::fmt::Write;
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
use embassy_rp::gpio::{Level, Output};
use embassy_rp::peripherals::{DMA_CH0, PIO0};
use embassy_rp::pio::{InterruptHandler, Pio};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Duration, Timer};
use static_cell::StaticCell;

use tessera_core::{AnyProvider, Config, Credentials, ProviderKind};
use tessera_embassy::{ApiRequest, CallBuffers, Client, Resources, Settings};
use {defmt_rtt as _, panic_probe as _};

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
    "http://192.168.1.10:8080/oauth2/token",
);
const CLIENT_ID: &str = or(option_env!("TESSERA_CLIENT_ID"), "tessera-sandbox-client");
const CLIENT_SECRET: &str = or(option_env!("TESSERA_CLIENT_SECRET"), "");
const API_URL: &str = or(
    option_env!("TESSERA_API_URL"),
    "http://192.168.1.10:8080/oauth2/protected",
);

/// Where README.md's probe-rs commands put the CYW43439 blobs, and their sizes.
const FIRMWARE: (usize, usize) = (0x1010_0000, 230_321);
const CLM: (usize, usize) = (0x1014_0000, 4_752);
const NVRAM: (usize, usize) = (0x1014_2000, 746);

type Tcp = TcpClient<'static, 2, 2048, 2048>;
type Tessera =
    Client<'static, CriticalSectionRawMutex, AnyProvider<'static>, Tcp, DnsSocket<'static>>;

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
    let mut rng = RoscRng;

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
            // The default URLs are plain HTTP to a sandbox on the LAN, which the core refuses
            // for anything but loopback (the secret and the token would cross the network in
            // clear). Opting in is right for a bench sandbox only: point TESSERA_BASE_URL
            // and TESSERA_API_URL at https:// for anything real.
            allow_insecure_http: true,
            ..Config::default()
        },
        ..Settings::default()
    };
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
        .build(),
    );
    spawner.spawn(unwrap!(refresher(tessera)));

    // This task's call buffers: the bearer token is written here, and wiped after each call.
    static CALL: StaticCell<CallBuffers> = StaticCell::new();
    let buffers = CALL.init(CallBuffers::new());
    let mut n = 0u32;
    loop {
        n = n.wrapping_add(1);
        // One key per operation: a retried payment is not charged twice.
        let mut key = heapless::String::<16>::new();
        let _ = write!(key, "till7-{n}");
        let headers = [("Idempotency-Key", key.as_str())];
        match tessera
            .call(ApiRequest::get(API_URL).headers(&headers), buffers)
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
        Timer::after(Duration::from_secs(30)).await;
    }
}
