//! A terminal's Tessera setup, as the README shows it: one shared client over HTTPS, the
//! refresher in its own task, and a payment call with an idempotency key. On a board the
//! network is embassy-net's `TcpClient` and `DnsSocket` and the functions below are
//! `#[embassy_executor::task]`s; here `main` runs them on the desktop over std sockets:
//!
//! ```sh
//! cargo run -p tessera-embassy --features tls --example terminal -- \
//!     ca.der https://shogun.example/api/v1 https://shogun.example/api/v1/payments
//! ```

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use rand_core::TryRngCore;
use static_cell::StaticCell;
use tessera_embassy::core::{Credentials, Shogun};
use tessera_embassy::{ApiRequest, CallBuffers, Client, Error, Resources, Tls, TlsBuffers};

// On a board: embassy_net::tcp::client::TcpClient and embassy_net::dns::DnsSocket.
type Tcp = std_embedded_nal_async::Stack;
type Dns = std_embedded_nal_async::Stack;
type Rng = dyn rand_core::RngCore + Send;

type Tessera = Client<'static, CriticalSectionRawMutex, Shogun<'static>, Tcp, Dns>;

static RESOURCES: StaticCell<Resources> = StaticCell::new();
static TLS: StaticCell<TlsBuffers> = StaticCell::new();
static CLIENT: StaticCell<Tessera> = StaticCell::new();

/// Once, at boot: the client every task shares.
fn setup(
    shogun: Shogun<'static>,
    credentials: Credentials,
    (tcp, dns): (&'static Tcp, &'static Dns),
    ca: &'static [u8],
    rng: &'static mut Rng,
) -> &'static Tessera {
    let resources = RESOURCES.init(Resources::new());
    let builder = Client::builder(shogun, credentials, tcp, dns, resources, rng);
    let tls = Tls::new(ca, rng, TLS.init(TlsBuffers::new()));
    CLIENT.init(builder.tls(tls).build())
}

/// Its own task: a due token is refreshed here, so no caller ever waits for it.
async fn refresher(client: &'static Tessera) -> ! {
    client.refresher().await
}

/// The payment task: the token goes into this call's buffers only, and is wiped after.
async fn pay(
    client: &Tessera,
    url: &str,
    order: &str,
    buffers: &mut CallBuffers,
    tls: &mut TlsBuffers,
) -> Result<u16, Error> {
    let headers = [("Idempotency-Key", order)];
    let body = br#"{"amount":1250,"currency":"EUR"}"#;
    let request = ApiRequest::post(url, "application/json", body).headers(&headers);
    let response = client.call_tls(request, buffers, tls).await?;
    log::info!(
        "payment answered {} (request id {})",
        response.status(),
        response.header("x-request-id").unwrap_or("-")
    );
    Ok(response.status())
}

// ---- the desktop driver --------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ca, base, url] = args.as_slice() else {
        eprintln!("usage: terminal CA.der SHOGUN_BASE_URL PAYMENT_URL  (TESSERA_CLIENT_ID/SECRET)");
        std::process::exit(2);
    };
    let ca: &'static [u8] = match std::fs::read(ca) {
        Ok(der) => der.leak(),
        Err(e) => {
            eprintln!("{ca}: {e}");
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
    let net: &'static Tcp = Box::leak(Box::default());
    let shogun = Shogun::with_base_url(String::from(base.as_str()).leak());
    let client = setup(
        shogun,
        credentials,
        (net, net),
        ca,
        // The operating system's CSPRNG (on a board: the chip's TRNG).
        Box::leak(Box::new(rand_core::OsRng.unwrap_err())),
    );
    std::thread::spawn(move || async_io::block_on(refresher(client)));
    let mut buffers: Box<CallBuffers> = Box::default();
    let mut tls: Box<TlsBuffers> = Box::default();
    match async_io::block_on(pay(client, url, "order-0042", &mut buffers, &mut tls)) {
        Ok(status) => println!("payment answered {status}"),
        Err(e) => {
            eprintln!("payment failed: {e}");
            std::process::exit(1);
        }
    }
}
