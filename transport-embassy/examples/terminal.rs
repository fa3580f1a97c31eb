//! A terminal's Tessera setup, as the README shows it: one shared client over HTTPS
//! (MbedTLS: the provider's chain checked against your roots, connections kept, TLS 1.2
//! sessions resumed), the refresher in its own task, and a payment call with an idempotency
//! key. Tessera's part is two `StaticCell`s: the resources and the client. On a board the
//! network is embassy-net's `TcpClient` and `DnsSocket` and the functions below are
//! `#[embassy_executor::task]`s; here `main` runs them on the desktop over std sockets:
//!
//! ```sh
//! cargo run -p tessera-embassy --features mbedtls-dates --example terminal -- \
//!     roots.pem https://shogun.example/api/v1 https://shogun.example/api/v1/payments
//! ```

use core::ffi::CStr;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use rand_core::TryRngCore;
use static_cell::StaticCell;
use tessera_embassy::core::{Credentials, Shogun};
use tessera_embassy::mbedtls::mbedtls_rs::Tls;
use tessera_embassy::mbedtls::{use_wall_clock, Mbedtls, Roots, WallClock};
use tessera_embassy::{ApiRequest, CallBuffers, Client, Error, Resources};

// On a board: embassy_net::tcp::client::TcpClient and embassy_net::dns::DnsSocket.
type Tcp = std_embedded_nal_async::Stack;
type Dns = std_embedded_nal_async::Stack;

/// The connector is the TLS choice: `Mbedtls` here (`EmbeddedTls` with feature `tls`,
/// `Plain` for a loopback or LAN sandbox). It holds the network stack and kept connections.
type Tessera =
    Client<'static, CriticalSectionRawMutex, Shogun<'static>, Mbedtls<'static, Tcp, Dns>>;

static RESOURCES: StaticCell<Resources> = StaticCell::new(); // every buffer, sized by const generics
static CLIENT: StaticCell<Tessera> = StaticCell::new();
/// Certificate dates are checked against it: set it from SNTP or an RTC.
static CLOCK: WallClock = WallClock::new();

/// Once, at boot: the client every task shares. `tls` is the program's MbedTLS (made once
/// with the chip's TRNG), `roots` the PEM bundle the terminal trusts.
fn setup(
    shogun: Shogun<'static>,
    credentials: Credentials,
    (tcp, dns): (&'static Tcp, &'static Dns),
    tls: &'static Tls<'static>,
    roots: &'static CStr,
    rng: &mut impl rand_core::RngCore,
) -> Result<&'static Tessera, tessera_embassy::mbedtls::RootsError> {
    let https = Mbedtls::new(tcp, dns, tls.reference(), Roots::new(roots)?);
    let resources = RESOURCES.init(Resources::new());
    Ok(CLIENT.init(Client::new(shogun, credentials, https, resources, rng)))
}

/// Its own task: a due token is refreshed here, so no caller ever waits for it.
async fn refresher(client: &'static Tessera) -> ! {
    client.refresher().await
}

/// The payment task: the token goes into this call's buffers only, and is wiped after. The
/// connection is kept for the next payment: no handshake then.
async fn pay(
    client: &Tessera,
    url: &str,
    order: &str,
    buffers: &mut CallBuffers,
) -> Result<u16, Error> {
    let headers = [("Idempotency-Key", order)];
    let body = br#"{"amount":1250,"currency":"EUR"}"#;
    let request = ApiRequest::post(url, "application/json", body).headers(&headers);
    let response = client.call(request, buffers).await?; // 401 → refetch once, retry once
    log::info!(
        "payment answered {} on a {} connection (request id {})",
        response.status(),
        response.connection().as_str(),
        response.header("x-request-id").unwrap_or("-")
    );
    Ok(response.status())
}

// ---- the desktop driver --------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [roots, base, url] = args.as_slice() else {
        eprintln!(
            "usage: terminal ROOTS.pem SHOGUN_BASE_URL PAYMENT_URL  (TESSERA_CLIENT_ID/SECRET)"
        );
        std::process::exit(2);
    };
    let pem = match std::fs::read(roots).map(std::ffi::CString::new) {
        Ok(Ok(pem)) => Box::leak(pem.into_boxed_c_str()),
        _ => {
            eprintln!("{roots}: not a readable PEM file");
            std::process::exit(2);
        }
    };
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let Ok(credentials) =
        Credentials::new(&env("TESSERA_CLIENT_ID"), &env("TESSERA_CLIENT_SECRET"))
    else {
        eprintln!("set TESSERA_CLIENT_ID and TESSERA_CLIENT_SECRET");
        std::process::exit(2);
    };
    // The operating system's CSPRNG (on a board: the chip's TRNG).
    let trng = tessera_embassy::mbedtls::Rng09(rand_core::OsRng.unwrap_err());
    let Ok(tls) = Tls::new(Box::leak(Box::new(trng))) else {
        eprintln!("MbedTLS could not start");
        std::process::exit(1);
    };
    let tls: &'static Tls<'static> = Box::leak(Box::new(tls));
    use_wall_clock(&CLOCK);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    CLOCK.set_unix_time(now.as_secs());
    let net: &'static Tcp = Box::leak(Box::default());
    let shogun = Shogun::with_base_url(String::from(base.as_str()).leak());
    let mut rng = rand_core::OsRng.unwrap_err();
    let client = match setup(shogun, credentials, (net, net), tls, pem, &mut rng) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("{roots}: {e}");
            std::process::exit(2);
        }
    };
    std::thread::spawn(move || async_io::block_on(refresher(client)));
    let mut buffers: Box<CallBuffers> = Box::default();
    match async_io::block_on(pay(client, url, "order-0042", &mut buffers)) {
        Ok(status) => println!("payment answered {status}"),
        Err(e) => {
            eprintln!("payment failed: {e}");
            std::process::exit(1);
        }
    }
}
