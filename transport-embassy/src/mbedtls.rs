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
//! use tessera_embassy::mbedtls::{Mbedtls, MbedtlsBuffers, Rng09, Roots};
//! use tessera_embassy::{Client, Resources};
//! # type TcpClient = std_embedded_nal_async::Stack;
//! # type DnsSocket = std_embedded_nal_async::Stack;
//! type Tessera = Client<'static, CriticalSectionRawMutex, OAuth2<'static>, TcpClient, DnsSocket>;
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
//!     static BUFFERS: StaticCell<MbedtlsBuffers> = StaticCell::new();
//!     static RESOURCES: StaticCell<Resources> = StaticCell::new();
//!     static CLIENT: StaticCell<Tessera> = StaticCell::new();
//!     // Once per program: mbedtls-rs's `Tls` holds the RNG (rand_core 0.10, through Rng09).
//!     let tls = TLS.init(Tls::new(trng).expect("one Tls per program"));
//!     let pem = CStr::from_bytes_with_nul(ROOTS.as_bytes()).expect("NUL-terminated");
//!     let roots = Roots::new(pem).expect("every root parses");
//!     let idp = OAuth2::new("https://idp.example/oauth2/token");
//!     let credentials = Credentials::new("terminal-7", "s3cr3t").unwrap();
//!     let https = Mbedtls::new(tls.reference(), roots, BUFFERS.init(MbedtlsBuffers::new()));
//!     let resources = RESOURCES.init(Resources::new());
//!     let builder = Client::builder(idp, credentials, tcp, dns, resources, rng);
//!     CLIENT.init(builder.mbedtls(https).build())
//! }
//! ```

use core::cell::RefCell;
use core::convert::Infallible;
use core::ffi::CStr;
use core::fmt;

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::with_timeout;
use embedded_nal_async::{Dns, TcpConnect};
use mbedtls_rs::sys;
use mbedtls_rs::{
    AuthMode, Certificate, ClientSessionConfig, SavedSession, Session, SessionConfig, SessionError,
    TlsReference, TlsVersion, X509,
};
use tessera_core::transport::Scheme;
use tessera_core::{Stage, TransportError};

use crate::client::KEPT_CONNECTIONS;
use crate::connect::{connect, server_name, target};
use crate::error::{Fault, TIMED_OUT};
use crate::exchange::{exchange as over, Exchanged, Outgoing as Wired, Reached};
use crate::http::{Outgoing, Wire};
use crate::kept::{idle_for, Connection, Handshake, Pool};
use crate::resources::Wipe;
/// The mbedtls-rs this backend is built on (make the program's `Tls` with it).
pub use mbedtls_rs;

// ---------------------------------------------------------------------------------------
// RNG: the boards' HALs implement rand_core 0.9; mbedtls-rs 0.3 takes a rand_core 0.10 one.
// ---------------------------------------------------------------------------------------

/// A rand_core 0.9 cryptographic RNG (esp-hal's `Trng`, embassy-rp's `Trng`) as the
/// rand_core 0.10 one `mbedtls_rs::Tls::new` takes. Only a 0.9 `CryptoRng` converts: a plain
/// `RngCore` does not type-check. MbedTLS draws every random byte from it directly, so it
/// must be a real CSPRNG (a TRNG, or a ChaCha seeded from one).
pub struct Rng09<R>(pub R);

impl<R: rand_core::RngCore> rand_core_010::TryRng for Rng09<R> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

impl<R: rand_core::CryptoRng> rand_core_010::TryCryptoRng for Rng09<R> {}

impl<R> fmt::Debug for Rng09<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rng09(..)")
    }
}

// ---------------------------------------------------------------------------------------
// Roots
// ---------------------------------------------------------------------------------------

/// The certificates a server's chain must lead to: a PEM bundle (one or more `BEGIN
/// CERTIFICATE` blocks), NUL-terminated, kept where it is (flash) and parsed at the start of
/// each connection (MbedTLS's parsed form is neither `Send` nor `Sync`, and costs heap).
#[derive(Clone, Copy)]
pub struct Roots<'r> {
    pem: &'r CStr,
    count: usize,
}

/// Why a root bundle was refused by [`Roots::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RootsError {
    /// No `BEGIN CERTIFICATE` block.
    Empty,
    /// Block `index` (from 0) is not a certificate MbedTLS can parse.
    Malformed {
        /// Which block.
        index: usize,
    },
    /// Block `index` is longer than the 4 KiB of PEM this check parses one block in.
    TooLarge {
        /// Which block.
        index: usize,
    },
}

impl fmt::Display for RootsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootsError::Empty => f.write_str("no certificate in the root bundle"),
            RootsError::Malformed { index } => {
                write!(f, "root certificate {index} could not be parsed")
            }
            RootsError::TooLarge { index } => {
                write!(f, "root certificate {index} is over 4 KiB of PEM")
            }
        }
    }
}

impl core::error::Error for RootsError {}

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";

impl<'r> Roots<'r> {
    /// Checks every certificate of `pem` now (so a bad block is an error here, not a
    /// silently shorter list later: MbedTLS itself skips blocks it cannot parse), then keeps
    /// the bundle. Needs heap while it checks (freed before it returns).
    pub fn new(pem: &'r CStr) -> Result<Self, RootsError> {
        let text = pem.to_bytes();
        let mut count = 0;
        let mut at = 0;
        while let Some(start) = find(&text[at..], BEGIN) {
            let start = at + start;
            let end = find(&text[start..], END).ok_or(RootsError::Malformed { index: count })?
                + start
                + END.len();
            let block = &text[start..end];
            let mut one = [0u8; 4096];
            let room = one
                .get_mut(..=block.len())
                .ok_or(RootsError::TooLarge { index: count })?;
            room[..block.len()].copy_from_slice(block);
            let one = CStr::from_bytes_with_nul(room)
                .map_err(|_| RootsError::Malformed { index: count })?;
            Certificate::new(X509::PEM(one)).map_err(|_| RootsError::Malformed { index: count })?;
            count += 1;
            at = end;
        }
        if count == 0 {
            return Err(RootsError::Empty);
        }
        Ok(Roots { pem, count })
    }

    /// How many certificates.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none (never, for roots [`Roots::new`] accepted).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn parse(&self) -> Result<Certificate<'static>, TransportError> {
        Certificate::new(X509::PEM(self.pem)).map_err(|e| {
            TransportError::new(
                Stage::Tls,
                code_detail(e.code(), cfg!(feature = "mbedtls-dates")),
            )
        })
    }
}

impl fmt::Debug for Roots<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Roots({} certificates)", self.count)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Wall clock (feature `mbedtls-dates`)
// ---------------------------------------------------------------------------------------

/// The wall clock MbedTLS checks certificate dates against (feature `mbedtls-dates`): the
/// application sets the time (SNTP, an RTC) with [`WallClock::set_unix_time`]; it then
/// advances with `embassy_time`. Until it is set, every handshake fails closed.
///
/// ```
/// use tessera_embassy::mbedtls::{use_wall_clock, WallClock};
/// static CLOCK: WallClock = WallClock::new();
/// use_wall_clock(&CLOCK); // once, at start-up: handshakes fail closed from here
/// # let sntp_seconds = 1_767_225_600;
/// CLOCK.set_unix_time(sntp_seconds); // when SNTP (or the RTC) gives the time
/// assert!(CLOCK.unix_time().is_some_and(|t| t >= sntp_seconds));
/// ```
#[cfg(feature = "mbedtls-dates")]
pub struct WallClock {
    /// Unix seconds at an embassy instant; `None` until set.
    at: critical_section::Mutex<core::cell::Cell<Option<(u64, embassy_time::Instant)>>>,
}

#[cfg(feature = "mbedtls-dates")]
impl WallClock {
    /// A clock whose time is not known yet.
    pub const fn new() -> Self {
        WallClock {
            at: critical_section::Mutex::new(core::cell::Cell::new(None)),
        }
    }

    /// The time now is `unix_seconds` (UTC).
    pub fn set_unix_time(&self, unix_seconds: u64) {
        let now = embassy_time::Instant::now();
        critical_section::with(|cs| self.at.borrow(cs).set(Some((unix_seconds, now))));
    }

    /// Forgets the time: handshakes fail closed until it is set again.
    pub fn forget(&self) {
        critical_section::with(|cs| self.at.borrow(cs).set(None));
    }

    /// Unix seconds now, if known.
    pub fn unix_time(&self) -> Option<u64> {
        let (base, at) = critical_section::with(|cs| self.at.borrow(cs).get())?;
        base.checked_add(
            embassy_time::Instant::now()
                .saturating_duration_since(at)
                .as_secs(),
        )
    }
}

#[cfg(feature = "mbedtls-dates")]
impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "mbedtls-dates")]
impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WallClock")
            .field("unix_time", &self.unix_time())
            .finish()
    }
}

#[cfg(feature = "mbedtls-dates")]
impl sys::hook::wall_clock::MbedtlsWallClock for WallClock {
    fn instant(&self) -> Option<sys::tm> {
        self.unix_time().and_then(tm_from_unix)
    }
}

/// Installs `clock` as the wall clock every MbedTLS certificate check in the program reads
/// (feature `mbedtls-dates`). Call it once at start-up, before the first connection; until
/// it is called, or while the clock returns no time, every handshake fails closed.
#[cfg(feature = "mbedtls-dates")]
pub fn use_wall_clock(clock: &'static (dyn sys::hook::wall_clock::MbedtlsWallClock + Send + Sync)) {
    // SAFETY: the hook is a `&'static` clock that is `Send + Sync`, stored under a critical
    // section by mbedtls-rs-sys; replacing it between handshakes only changes which clock
    // the next date check reads. The function is `unsafe` for that ordering contract alone.
    #[allow(unsafe_code)]
    unsafe {
        sys::hook::wall_clock::hook_wall_clock(Some(clock));
    }
}

/// Unix seconds as a UTC `struct tm` (days to civil date, proleptic Gregorian); `None`
/// past what `tm_year` holds.
#[cfg(feature = "mbedtls-dates")]
fn tm_from_unix(secs: u64) -> Option<sys::tm> {
    let days = i64::try_from(secs / 86_400).ok()?;
    let rem = (secs % 86_400) as i32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let mday = doy - (153 * mp + 2) / 5 + 1;
    let mon = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(mon <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const CUM: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = CUM[(mon - 1) as usize] + mday - 1 + i64::from(leap && mon > 2);
    Some(sys::tm {
        tm_sec: rem % 60,
        tm_min: (rem / 60) % 60,
        tm_hour: rem / 3600,
        tm_mday: mday as i32,
        tm_mon: mon as i32 - 1,
        tm_year: i32::try_from(year - 1900).ok()?,
        tm_wday: (days + 4).rem_euclid(7) as i32,
        tm_yday: yday as i32,
        tm_isdst: 0,
    })
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// The buffer the server name is written in for MbedTLS (which copies it), wiped after
/// every exchange. The request itself is written in the call's head buffer and sent in one
/// write (one or two TLS records); MbedTLS's record buffers are on its heap, not here.
pub struct MbedtlsBuffers<const TX: usize = 1024> {
    pub(crate) tx: [u8; TX],
}

impl<const TX: usize> MbedtlsBuffers<TX> {
    /// A zeroed buffer.
    pub const fn new() -> Self {
        MbedtlsBuffers { tx: [0; TX] }
    }
}

impl<const TX: usize> MbedtlsBuffers<TX> {
    /// Whether the buffer is all zero (nothing it held is left): for tests.
    #[doc(hidden)]
    pub fn is_wiped(&self) -> bool {
        self.tx.iter().all(|&b| b == 0)
    }
}

impl<const TX: usize> Default for MbedtlsBuffers<TX> {
    fn default() -> Self {
        Self::new()
    }
}

/// HTTPS through MbedTLS for a [`Client`](crate::Client): the program's `mbedtls_rs::Tls`
/// (by reference), the roots, and the buffer token requests are written in. Give it to
/// [`Builder::mbedtls`](crate::Builder::mbedtls); calls use
/// [`Client::call_mbedtls`](crate::Client::call_mbedtls) with their own buffer.
pub struct Mbedtls<'r> {
    pub(crate) tls: TlsReference<'r>,
    pub(crate) roots: Roots<'r>,
    pub(crate) tx: &'r mut [u8],
}

impl<'r> Mbedtls<'r> {
    /// Servers verified against `roots`, sessions made on `tls` (`Tls::reference()`),
    /// token requests gathered in `buffers`.
    pub fn new<const TX: usize>(
        tls: TlsReference<'r>,
        roots: Roots<'r>,
        buffers: &'r mut MbedtlsBuffers<TX>,
    ) -> Self {
        Mbedtls {
            tls,
            roots,
            tx: &mut buffers.tx,
        }
    }
}

impl fmt::Debug for Mbedtls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbedtls")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

/// What the client keeps: the reference and roots, the token requests' buffer while no
/// fetch holds it (one fetch at a time: the session's ticket), the sessions kept open per
/// origin, and per origin the last session's parameters for resumption.
pub(crate) struct Shared<'r, M: RawMutex, T: TcpConnect + 'r> {
    tls: TlsReference<'r>,
    roots: Roots<'r>,
    tx: Mutex<M, RefCell<Option<&'r mut [u8]>>>,
    kept: Mutex<M, RefCell<Pool<Kept<'r, T::Connection<'r>>, KEPT_CONNECTIONS>>>,
    saved: Mutex<M, RefCell<Pool<Saved, KEPT_CONNECTIONS>>>,
}

/// A session kept open in the pool.
struct Kept<'r, C: embedded_io_async::Read + embedded_io_async::Write>(Session<'r, C>);

// SAFETY: mbedtls-rs's `Session` is not `Send` only because it holds its MbedTLS contexts
// (SSL, configuration, DRBG) through raw pointers. They are heap memory owned by this one
// session alone, with no thread-local state; the random numbers come through mbedtls-rs's
// own `RngPtr`, which it declares `Send`. A `Kept` is only ever moved (into and out of the
// pool, under the client's mutex), never shared. The stream must be `Send` by itself: with a
// stack whose connections are not (embassy-net), the client stays on one executor as before.
#[allow(unsafe_code)]
unsafe impl<C: embedded_io_async::Read + embedded_io_async::Write + Send> Send for Kept<'_, C> {}

/// A saved session (TLS 1.2), for resumption.
struct Saved(SavedSession);

// SAFETY: `SavedSession` is one heap `mbedtls_ssl_session` (and a copy of the server name)
// owned alone, freed with MbedTLS's `free`; it is moved into and out of the pool under the
// client's mutex, never shared.
#[allow(unsafe_code)]
unsafe impl Send for Saved {}

/// How long a saved session is offered for resumption. The server decides whether it still
/// takes it (its ticket lifetime or session cache); one it refuses costs a full handshake,
/// and the new session replaces it.
const SAVED_FOR: core::time::Duration = core::time::Duration::from_secs(12 * 3600);

impl<'r, M: RawMutex, T: TcpConnect + 'r> Shared<'r, M, T> {
    pub(crate) fn new(m: Mbedtls<'r>) -> Self {
        Shared {
            tls: m.tls,
            roots: m.roots,
            tx: Mutex::new(RefCell::new(Some(m.tx))),
            kept: Mutex::new(RefCell::new(Pool::new())),
            saved: Mutex::new(RefCell::new(Pool::new())),
        }
    }

    /// Closes the kept sessions (without close_notify) and forgets the saved ones.
    pub(crate) fn forget(&self) {
        self.kept.lock(|k| k.borrow_mut().clear());
        self.saved.lock(|s| s.borrow_mut().clear());
    }

    /// A token request over MbedTLS, in the client's own buffer.
    pub(crate) async fn token_exchange<D: Dns>(
        &self,
        wire: &Wire<'r, T, D>,
        out: Outgoing<'_>,
        rx: &mut [u8],
        into: &mut [u8],
    ) -> Result<Exchanged, Fault> {
        let mut held = Held {
            slot: &self.tx,
            tx: self.tx.lock(|t| t.borrow_mut().take()),
        };
        // One fetch at a time holds the session's ticket, so the buffer is always home.
        let Some(tx) = held.tx.as_deref_mut() else {
            return Err(Fault::Net(TransportError::new(
                Stage::Tls,
                "the TLS buffer is in use",
            )));
        };
        // A token request is a POST without a key: not sent again (see `Client::call`).
        self.exchange(wire, tx, out, rx, into, false, false).await
    }

    /// One exchange over MbedTLS with `tx` for the server name (wiped after): on a kept
    /// session for the origin when there is one (found dead before any byte of the answer:
    /// sent again on a new one only when `safe`), otherwise on a new connection whose
    /// handshake offers the origin's saved session. Bounded by the wire's timeout.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn exchange<D: Dns>(
        &self,
        wire: &Wire<'r, T, D>,
        tx: &mut [u8],
        out: Outgoing<'_>,
        rx: &mut [u8],
        into: &mut [u8],
        keep_headers: bool,
        safe: bool,
    ) -> Result<Exchanged, Fault> {
        let tx = Wipe(tx);
        let work = self.exchange_in(wire, tx.0, out, rx, into, keep_headers, safe);
        match with_timeout(wire.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Fault::Net(TIMED_OUT)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange_in<D: Dns>(
        &self,
        wire: &Wire<'r, T, D>,
        tx: &mut [u8],
        out: Outgoing<'_>,
        rx: &mut [u8],
        into: &mut [u8],
        keep_headers: bool,
        safe: bool,
    ) -> Result<Exchanged, Fault> {
        let to = target(out.url)?;
        if to.scheme != Scheme::Https {
            return Err(Fault::Local(tessera_core::Error::Insecure));
        }
        let wired = Wired {
            method: out.method,
            to,
            headers: out.headers,
            body: out.body,
        };
        let mut reached = Reached::default();
        let now = embassy_time::Instant::now();
        let taken = self.kept.lock(|k| k.borrow_mut().take(&to, now));
        if let Some(Kept(mut session)) = taken {
            let sent = over(
                &mut session,
                true,
                &wired,
                rx,
                into,
                keep_headers,
                wire.wall_now,
                &mut reached,
            )
            .await;
            match sent {
                Ok(mut x) => {
                    x.connection = Connection {
                        reused: true,
                        handshake: Handshake::None,
                    };
                    self.keep(&to, session, &x).await;
                    return Ok(x);
                }
                Err(Fault::Net(e))
                    if matches!(e.stage, Stage::Io | Stage::Tls) && !reached.answered =>
                {
                    drop(session);
                    if !safe {
                        return Err(Fault::Net(crate::http::DEAD_NOT_RESENT));
                    }
                    diag!(
                        debug,
                        "tessera: a kept TLS connection was closed by the server; sending again on a new one"
                    );
                }
                Err(e) => return Err(e),
            }
        }

        // SNI and the host check: the URL's host, NUL-terminated, at the start of the
        // request buffer (not in this future: it stays small in a task's arena). MbedTLS
        // copies it.
        let bytes = server_name(&to).as_bytes();
        let capacity = tx.len();
        let (name, _) = tx
            .split_at_mut_checked(bytes.len() + 1)
            .ok_or(Fault::Local(tessera_core::Error::Capacity {
                field: "TLS request buffer",
                needed: bytes.len() + 1,
                capacity,
            }))?;
        name[..bytes.len()].copy_from_slice(bytes);
        name[bytes.len()] = 0;
        let server_name = CStr::from_bytes_with_nul(name).map_err(|_| {
            Fault::Net(TransportError::new(
                Stage::Protocol,
                "the URL was not understood",
            ))
        })?;
        let opened = match self.open(wire, &to, server_name, now).await {
            // Out of heap with sessions kept for other origins: they go, and the handshake
            // is tried once more (nothing was sent yet).
            Err(e) if e.detail == OUT_OF_MEMORY && self.kept.lock(|k| !k.borrow().is_empty()) => {
                self.kept.lock(|k| k.borrow_mut().clear());
                diag!(
                    debug,
                    "tessera: out of heap for TLS: kept connections closed, trying again"
                );
                self.open(wire, &to, server_name, now).await
            }
            other => other,
        };
        let (mut session, kind) = opened.map_err(Fault::Net)?;
        diag!(
            debug,
            "tessera: TLS established with {} ({})",
            to.host,
            kind.as_str()
        );
        let mut x = over(
            &mut session,
            true,
            &wired,
            rx,
            into,
            keep_headers,
            wire.wall_now,
            &mut reached,
        )
        .await?;
        x.connection = Connection {
            reused: false,
            handshake: kind,
        };
        // Saved after the answer, for TLS 1.2 only (a session ID or ticket the server may
        // take back). TLS 1.3 tickets are not resumed: MbedTLS 3.6 ignores them unless its
        // `conf_tls13_enable_signal_new_session_tickets` is set, which mbedtls-rs 0.3 does
        // not do nor expose (measured: the sandbox's rustls server sees a full handshake).
        let tls12 = session.tls_version() == Some(TlsVersion::Tls1_2);
        if let Some(saved) = tls12.then(|| session.save().ok()).flatten() {
            let now = embassy_time::Instant::now();
            self.saved
                .lock(|s| s.borrow_mut().put(&to, Saved(saved), SAVED_FOR, now));
        }
        self.keep(&to, session, &x).await;
        Ok(x)
    }

    /// A new connection to `to` and its handshake, offering the origin's saved session
    /// (taken out: used for this server name only, as mbedtls-rs checks, and dropped if the
    /// handshake fails).
    async fn open<D: Dns>(
        &self,
        wire: &Wire<'r, T, D>,
        to: &tessera_core::transport::Target<'_>,
        server_name: &CStr,
        now: embassy_time::Instant,
    ) -> Result<(Session<'r, T::Connection<'r>>, Handshake), TransportError> {
        let conn = connect(wire.tcp, wire.dns, to).await?;
        // In a block, so the configuration is not kept across the awaits below.
        let mut session = {
            let roots = self.roots.parse()?;
            let config = SessionConfig::Client(ClientSessionConfig {
                ca_chain: Some(roots),
                // Set below: MbedTLS copies it, so the session does not borrow the buffer
                // it is written in and can be kept.
                server_name: None,
                auth_mode: AuthMode::Required,
                min_version: TlsVersion::Tls1_2,
                max_version: None,
                skip_hostname_verification: false,
                ..ClientSessionConfig::new()
            });
            Session::new(self.tls, conn, &config).map_err(|e| handshake_failure(e, 0))?
        };
        session
            .set_server_name(server_name)
            .map_err(|e| handshake_failure(e, 0))?;
        let saved = self.saved.lock(|s| s.borrow_mut().take(to, now));
        let handshake = match &saved {
            Some(Saved(saved)) => session.connect_with_session(saved).await,
            None => session.connect().await,
        };
        if let Err(e) = handshake {
            let flags = session.tls_verification_details();
            return Err(handshake_failure(e, flags));
        }
        let kind = match saved {
            Some(_) => Handshake::Resumed,
            None => Handshake::Full,
        };
        Ok((session, kind))
    }

    /// Keeps `session` for `to`'s origin when the answer allows it; otherwise closes it
    /// (close_notify; a failure there changes nothing, the answer is in).
    async fn keep(
        &self,
        to: &tessera_core::transport::Target<'_>,
        mut session: Session<'r, T::Connection<'r>>,
        x: &Exchanged,
    ) {
        match (x.reusable, idle_for(x.idle_timeout)) {
            (true, Some(idle)) => {
                let now = embassy_time::Instant::now();
                self.kept
                    .lock(|k| k.borrow_mut().put(to, Kept(session), idle, now));
            }
            _ => {
                let _ = session.close().await;
            }
        }
    }
}

/// The token requests' buffer, out of its slot while a fetch uses it; wiped and put back
/// when the fetch ends or its future is dropped.
struct Held<'a, 'r, M: RawMutex> {
    slot: &'a Mutex<M, RefCell<Option<&'r mut [u8]>>>,
    tx: Option<&'r mut [u8]>,
}

impl<M: RawMutex> Drop for Held<'_, '_, M> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.fill(0);
            self.slot.lock(|t| *t.borrow_mut() = Some(tx));
        }
    }
}

/// A failed `Session::new` or handshake as a classified failure; `flags` are the
/// certificate verification flags MbedTLS left.
fn handshake_failure(e: SessionError, flags: u32) -> TransportError {
    use embedded_io::ErrorKind as K;
    match e {
        SessionError::Io(K::TimedOut) => {
            TransportError::new(Stage::Timeout, "TLS handshake timed out")
        }
        SessionError::Io(_) => {
            TransportError::new(Stage::Io, "connection failed during the TLS handshake")
        }
        SessionError::MbedTls(m) => {
            let detail = match m.code() {
                sys::MBEDTLS_ERR_X509_CERT_VERIFY_FAILED => verify_detail(flags),
                code => code_detail(code, cfg!(feature = "mbedtls-dates")),
            };
            TransportError::new(Stage::Tls, detail)
        }
    }
}

const NO_CLOCK: &str = "no wall clock: certificate dates cannot be checked";
const OUT_OF_MEMORY: &str = "out of memory for TLS";

fn code_detail(code: i32, dates: bool) -> &'static str {
    match code {
        // The date hook had no time (verify flags are then all ones). Without the hook it
        // is a chain longer than MbedTLS takes.
        sys::MBEDTLS_ERR_X509_FATAL_ERROR if dates => NO_CLOCK,
        sys::MBEDTLS_ERR_X509_FATAL_ERROR => "certificate chain too long",
        sys::MBEDTLS_ERR_SSL_ALLOC_FAILED | sys::MBEDTLS_ERR_X509_ALLOC_FAILED => OUT_OF_MEMORY,
        c if (-0x2FFF..=-0x2000).contains(&c) => "the server's certificate could not be parsed",
        sys::MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE => "the server refused the TLS handshake",
        sys::MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE | sys::MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION => {
            "no TLS version or cipher suite in common"
        }
        sys::MBEDTLS_ERR_SSL_BAD_CERTIFICATE => "the server's certificate could not be used",
        sys::MBEDTLS_ERR_SSL_CONN_EOF | sys::MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY => {
            "the server closed the connection during the TLS handshake"
        }
        sys::MBEDTLS_ERR_SSL_INVALID_RECORD
        | sys::MBEDTLS_ERR_SSL_DECODE_ERROR
        | sys::MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE => "malformed TLS message from the server",
        // A handshake message larger than the IN record buffer.
        sys::MBEDTLS_ERR_SSL_BAD_INPUT_DATA | sys::MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL => {
            "a TLS message did not fit the record buffer"
        }
        _ => "the TLS handshake failed",
    }
}

/// The verify flags as the one reason that matters most: trust first (an untrusted chain's
/// names and dates mean nothing), then the host, then the dates.
fn verify_detail(flags: u32) -> &'static str {
    const EXPIRED: u32 = sys::MBEDTLS_X509_BADCERT_EXPIRED;
    const FUTURE: u32 = sys::MBEDTLS_X509_BADCERT_FUTURE;
    if flags & (sys::MBEDTLS_X509_BADCERT_NOT_TRUSTED | sys::MBEDTLS_X509_BADCERT_MISSING) != 0 {
        "certificate not trusted"
    } else if flags & sys::MBEDTLS_X509_BADCERT_CN_MISMATCH != 0 {
        "certificate not valid for host"
    } else if flags & (EXPIRED | FUTURE) == EXPIRED | FUTURE {
        NO_CLOCK
    } else if flags & EXPIRED != 0 {
        "certificate expired"
    } else if flags & FUTURE != 0 {
        "certificate not yet valid"
    } else if flags
        & (sys::MBEDTLS_X509_BADCERT_KEY_USAGE
            | sys::MBEDTLS_X509_BADCERT_EXT_KEY_USAGE
            | sys::MBEDTLS_X509_BADCERT_NS_CERT_TYPE)
        != 0
    {
        "certificate not for TLS servers"
    } else if flags
        & (sys::MBEDTLS_X509_BADCERT_BAD_MD
            | sys::MBEDTLS_X509_BADCERT_BAD_PK
            | sys::MBEDTLS_X509_BADCERT_BAD_KEY)
        != 0
    {
        "certificate uses a refused algorithm or key size"
    } else {
        "certificate not trusted"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_flags_name_the_first_reason() {
        assert_eq!(
            verify_detail(
                sys::MBEDTLS_X509_BADCERT_NOT_TRUSTED | sys::MBEDTLS_X509_BADCERT_CN_MISMATCH
            ),
            "certificate not trusted"
        );
        assert_eq!(verify_detail(u32::MAX), "certificate not trusted");
        assert_eq!(
            verify_detail(sys::MBEDTLS_X509_BADCERT_EXPIRED | sys::MBEDTLS_X509_BADCERT_FUTURE),
            NO_CLOCK
        );
        assert_eq!(
            verify_detail(sys::MBEDTLS_X509_BADCERT_EXPIRED),
            "certificate expired"
        );
    }

    #[cfg(feature = "mbedtls-dates")]
    #[test]
    fn unix_time_becomes_a_civil_date() {
        // 2024-02-29T12:34:56Z, a Thursday, day 59 of a leap year.
        let tm = tm_from_unix(1_709_210_096).unwrap();
        assert_eq!(
            (tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec),
            (124, 1, 29, 12, 34, 56)
        );
        assert_eq!((tm.tm_wday, tm.tm_yday), (4, 59));
        let epoch = tm_from_unix(0).unwrap();
        assert_eq!(
            (epoch.tm_year, epoch.tm_mon, epoch.tm_mday, epoch.tm_wday),
            (70, 0, 1, 4)
        );
    }
}
