//! What the mbedtls tests share: the program's one `mbedtls_rs::Tls`, a resolver that
//! answers 127.0.0.1 for `*.localhost` names (and nothing else: no name is ever looked up on
//! the network), and a client for the sandbox's OAuth 2.0 endpoint over MbedTLS.
#![allow(dead_code)]

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use rand_core::TryRngCore;

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_nal_async::{AddrType, Dns};
use std_embedded_nal_async::Stack;
use tessera_core::{AnyProvider, Credentials, ProviderKind};
use tessera_embassy::mbedtls::mbedtls_rs::{Tls, TlsReference};
use tessera_embassy::mbedtls::{Mbedtls, Rng09, Roots};
use tessera_embassy::{Client, Resources, Settings};
use tessera_sandbox::{base_url_at, Sandbox, CLIENT_ID, CLIENT_SECRET};

/// The program's one `Tls` (mbedtls-rs allows one at a time).
pub fn tls() -> TlsReference<'static> {
    static TLS: OnceLock<&'static Tls<'static>> = OnceLock::new();
    TLS.get_or_init(|| {
        // The OS's CSPRNG (on a board: the chip's TRNG).
        let rng = Box::leak(Box::new(Rng09(rand_core::OsRng.unwrap_err())));
        Box::leak(Box::new(Tls::new(rng).expect("one Tls per program")))
    })
    .reference()
}

/// Resolves `localhost` and `*.localhost` to 127.0.0.1; every other name fails (stage
/// `dns`) without any lookup.
pub struct LocalDns;

impl Dns for LocalDns {
    type Error = std::io::Error;

    async fn get_host_by_name(&self, host: &str, _: AddrType) -> Result<IpAddr, Self::Error> {
        let host = host.trim_end_matches('.');
        if host == "localhost" || host.ends_with(".localhost") {
            Ok(IpAddr::V4(Ipv4Addr::LOCALHOST))
        } else {
            Err(std::io::Error::other("not a test name"))
        }
    }

    async fn get_host_by_address(&self, _: IpAddr, _: &mut [u8]) -> Result<usize, Self::Error> {
        Err(std::io::Error::other("no reverse lookups"))
    }
}

pub type C = Client<'static, NoopRawMutex, AnyProvider<'static>, Mbedtls<'static, Stack, LocalDns>>;

/// Checked roots from a PEM bundle (kept for the program's life, as flash would).
pub fn roots(pem: &str) -> Roots<'static> {
    let pem: &'static CString = Box::leak(Box::new(CString::new(pem).unwrap()));
    Roots::new(pem.as_c_str()).unwrap()
}

/// A client for the sandbox's OAuth 2.0 token endpoint at `https://{host}:{port}`, over
/// MbedTLS with `roots`.
pub fn client(sb: &Sandbox, host: &str, roots: Roots<'static>) -> &'static C {
    let origin = format!("https://{host}:{}", sb.addr().port());
    let base: &'static str = Box::leak(base_url_at(&origin, ProviderKind::OAuth2).into_boxed_str());
    let stack: &'static Stack = Box::leak(Box::default());
    let resources: &'static mut Resources = Box::leak(Box::default());
    let settings = Settings {
        timeout: embassy_time::Duration::from_secs(10),
        ..Settings::default()
    };
    let creds = Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap();
    let c = Client::builder(
        AnyProvider::new(ProviderKind::OAuth2, base),
        creds,
        Mbedtls::new(stack, &LocalDns, tls(), roots),
        resources,
        &mut rand_core::OsRng.unwrap_err(),
    )
    .settings(settings)
    .build();
    Box::leak(Box::new(c))
}
