//! Tessera on an ESP32-C3: join Wi-Fi (DHCP, DNS), fetch a bearer token from the configured
//! provider, keep it fresh from a background task, and call a protected endpoint with it in
//! a loop. See README.md for flashing and configuration.
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
use esp_hal::timer::timg::TimerGroup;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config, ControllerConfig, Interface, WifiController,
};
use log::{error, info, warn};
use static_cell::StaticCell;
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
    spawner.spawn(refresher(tessera).unwrap());

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
                "{API_URL} answered {} ({} bytes, request id {})",
                r.status(),
                r.body().len(),
                r.header("x-request-id").unwrap_or("-")
            ),
            Err(e) => {
                error!("call failed: {e}");
                tessera.failure(|f| {
                    if let Some(f) = f {
                        warn!("last token failure: {f}")
                    }
                });
            }
        }
        Timer::after(Duration::from_secs(30)).await;
    }
}
