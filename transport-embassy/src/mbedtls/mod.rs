//! HTTPS through MbedTLS (feature `mbedtls`): the trust roots, the RNG adapter, the wall
//! clock (feature `mbedtls-dates`) and one exchange over an MbedTLS session.
//!
//! tessera resolves the URL's host (stage `dns`), connects (`connect`), wraps the
//! connection in an MbedTLS client session whose server name is the URL's host (SNI and the
//! certificate's host check), completes the handshake (`tls`) and only then speaks HTTP
//! over the established session (the crate's one HTTP/1.1 exchange). A certificate that is refused therefore
//! never sees a byte of HTTP: no secret and no token leaves the terminal.
//!
//! # What is checked
//!
//! - the chain, up to one of the application's roots ([`Roots`], a PEM bundle of one or
//!   more certificates), RSA or ECDSA, with intermediates (up to 8), chains over 4 KiB
//!   included;
//! - the URL's host against the leaf's **subjectAltName** dNSNames (a wildcard
//!   `*.example.com` matches one label), or its iPAddress for an IP literal; a leaf whose
//!   SAN names another host is refused even when its common name (CN) names this one;
//! - key usage and extended key usage (a client-only certificate is refused);
//! - TLS 1.2 or 1.3, whichever the server prefers; nothing older;
//! - **validity dates only with feature `mbedtls-dates`**: then against the application's
//!   wall clock (a `WallClock` it feeds from SNTP or an RTC, installed with
//!   `use_wall_clock`); until a time is known, every handshake fails closed (cause `tls`,
//!   "no wall clock: certificate dates cannot be checked"). With `mbedtls` alone MbedTLS is
//!   compiled without a clock: **an expired or not-yet-valid certificate is accepted**.
//!   MbedTLS has no run-time switch for this.
//!
//! Not checked: revocation (no OCSP, no CRL).
//!
//! **Known difference from tessera-std (rustls):** a certificate that has *no*
//! subjectAltName extension at all, and whose CN names the host, is accepted (MbedTLS falls
//! back to the CN when there is no SAN; mbedtls-rs 0.3 exposes no verify callback to refuse
//! it). rustls refuses such a certificate. Likewise a dNSName that spells an IP address
//! (`"127.0.0.1"`) matches that IP literal host. Public CAs have not issued either shape
//! for years; a private CA can.
//!
//! # Memory
//!
//! MbedTLS allocates with the C `calloc`/`free` (on a board: `tinyrlibc`'s `alloc` or
//! `esp-alloc` over the Rust global allocator), per connection: nothing stays allocated
//! between connections (the roots are parsed at each connection's start, 1.3–3 KiB each,
//! and freed with it). With this crate's build (the lean algorithm set, a 16 KiB IN and a
//! 4 KiB OUT record buffer) one token fetch with an RSA-2048 chain and an intermediate peaks
//! at 40.6 KiB (TLS 1.3) and 39.8 KiB (TLS 1.2) with three roots; an RSA-4096 chain with
//! three intermediates at 53.6 KiB. Measured by `tests/mbedtls_heap.rs`. The IN buffer
//! stays at 16 KiB because a server may send 16 KiB records and a chain over 4 KiB in one
//! handshake message.
//!
//! # Set-up
//!
//! ```no_run
//! use core::ffi::CStr;
//! use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
//! use static_cell::StaticCell;
//! use tessera_embassy::core::{Credentials, OAuth2};
//! use tessera_embassy::mbedtls::mbedtls_rs::Tls;
//! use tessera_embassy::mbedtls::{Mbedtls, Rng09, Roots};
//! use tessera_embassy::{Client, Resources};
//! # type TcpClient = std_embedded_nal_async::Stack;
//! # type DnsSocket = std_embedded_nal_async::Stack;
//! type Https = Mbedtls<'static, TcpClient, DnsSocket>;
//! type Tessera = Client<'static, CriticalSectionRawMutex, OAuth2<'static>, Https>;
//!
//! /// The roots: a PEM bundle, NUL-terminated (`concat!(include_str!("roots.pem"), "\0")`).
//! # const ROOTS: &str = "\0";
//!
//! /// `trng`: the chip's true RNG (a rand_core 0.9 `CryptoRng`, such as esp-hal's `Trng`)
//! /// for MbedTLS; `rng` seeds the lifecycle's jitter.
//! fn setup<R: rand_core::CryptoRng + Send + 'static>(
//!     tcp: &'static TcpClient,
//!     dns: &'static DnsSocket,
//!     trng: &'static mut Rng09<R>,
//!     rng: &mut impl rand_core::RngCore,
//! ) -> &'static Tessera {
//!     static TLS: StaticCell<Tls<'static>> = StaticCell::new();
//!     static RESOURCES: StaticCell<Resources> = StaticCell::new();
//!     static CLIENT: StaticCell<Tessera> = StaticCell::new();
//!     // Once per program: mbedtls-rs's `Tls` holds the RNG (rand_core 0.10, through Rng09).
//!     let tls = TLS.init(Tls::new(trng).expect("one Tls per program"));
//!     let pem = CStr::from_bytes_with_nul(ROOTS.as_bytes()).expect("NUL-terminated");
//!     let roots = Roots::new(pem).expect("every root parses");
//!     let idp = OAuth2::new("https://idp.example/oauth2/token");
//!     let credentials = Credentials::new("terminal-7", "s3cr3t").unwrap();
//!     let https = Mbedtls::new(tcp, dns, tls.reference(), roots);
//!     let resources = RESOURCES.init(Resources::new());
//!     CLIENT.init(Client::new(idp, credentials, https, resources, rng))
//! }
//! ```

#[cfg(feature = "mbedtls-dates")]
mod clock;
mod config;
mod failure;
mod rng;
mod roots;
mod session;

#[cfg(feature = "mbedtls-dates")]
pub use clock::{use_wall_clock, WallClock};
pub use config::Mbedtls;
/// The mbedtls-rs this backend is built on (make the program's `Tls` with it).
pub use mbedtls_rs;
pub use rng::Rng09;
pub use roots::{Roots, RootsError};
