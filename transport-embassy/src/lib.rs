//! # tessera-embassy
//!
//! An async Tessera client for embassy firmware. It drives the `tessera-core` [`Session`]
//! over [reqwless](https://docs.rs/reqwless) on any embedded-nal-async `TcpConnect` + `Dns`
//! (embassy-net's `TcpClient` and `DnsSocket` on a board, `std-embedded-nal-async` on a
//! desktop), with `embassy_time::Instant` as the clock. No heap: the caller provides every
//! buffer.
//!
//! - [`Client::token`] copies a fresh bearer token into the caller's buffer. Tasks share the
//!   client through an embassy-sync mutex (the raw mutex is a type parameter): one task
//!   fetches, the others wait for that fetch; they never start their own.
//! - [`Client::call`] attaches the bearer token to a downstream call; on a 401 it reports the
//!   token rejected, fetches a new one once and retries once.
//! - [`Client::refresher`] is a future a task can run to keep the token fresh, so callers
//!   never wait for a fetch.
//! - Every network step is bounded by [`embassy_time::with_timeout`]; backoff waits are the
//!   session's (the caller gets the instant to retry at, and the refresher sleeps until then
//!   with `embassy_time::Timer`); jitter is seeded from an injected `rand_core` RNG.
//!
//! ## TLS (feature `tls`)
//!
//! `Client::with_tls` makes every connection HTTPS through reqwless and embedded-tls,
//! verifying the server against the CA certificate the application gives; there is no
//! "verify nothing" mode. What embedded-tls (0.18, as reqwless 0.14 drives it) checks, and
//! what it does not:
//! - **checks**: the certificate chain's signatures up to the given CA, and the server
//!   name (SNI is sent) against the certificate's *common name*; subjectAltNames are not
//!   consulted, so the server's certificate must carry its host name as its CN;
//! - **TLS 1.3 only**, with `TLS_AES_128_GCM_SHA256`;
//! - **ECDSA certificates only** without a heap (RSA needs embedded-tls's `rsa` feature,
//!   which needs `alloc`): point it at the CA of an ECDSA chain, or terminate TLS in front;
//! - **not checked**: validity dates (it runs without a clock: an expired or not-yet-valid
//!   certificate passes), revocation (no OCSP or CRL), and certificates over 4 KiB;
//! - each connection's randomness comes from a 64-bit seed (reqwless seeds ChaCha8 with a
//!   `u64`); Tessera draws a fresh one from your RNG for every connection.

#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// A diagnostic line to `defmt` and/or `log`, as enabled; nothing otherwise. Arguments are
/// `Display` and `defmt::Format`, and never a secret or a token.
macro_rules! diag {
    ($level:ident, $($t:tt)*) => {{
        #[cfg(feature = "defmt")]
        defmt::$level!($($t)*);
        #[cfg(feature = "log")]
        log::$level!($($t)*);
    }};
}

use ::core::fmt;

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::mutex::Mutex;
use embassy_time::{with_timeout, Duration, Timer};
use embedded_nal_async::{Dns, TcpConnect};
use reqwless::client::HttpClient;
use reqwless::request::{Method as HttpMethod, RequestBuilder};
pub use tessera_core as core;
use tessera_core::session::{Cause, Config, Failure, Poll, Session, Ticket};
use tessera_core::{
    bearer_header, Clock, Credentials, ErrorKind, Instant, Method, Provider, Stage, TokenId,
    TransportError,
};

/// `embassy_time::Instant` as the core's monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmbassyClock;

impl Clock for EmbassyClock {
    fn now(&self) -> Instant {
        Instant::from_millis(embassy_time::Instant::now().as_millis())
    }
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// No token could be had; [`Client::failure`] has the provider's words. `retry_at` is
    /// when the session allows the next fetch (none for refused credentials).
    Token {
        /// The kind of the last failure.
        kind: ErrorKind,
        /// When a fetch will be allowed again.
        retry_at: Option<Instant>,
    },
    /// A downstream call failed on the network.
    Transport,
    /// A downstream call took longer than [`Settings::timeout`].
    Timeout,
    /// A buffer or capacity is too small: which, and how much it needed.
    Core(tessera_core::Error),
}

impl Error {
    /// The group callers act on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Token { kind, .. } => *kind,
            Error::Transport | Error::Timeout => ErrorKind::Transport,
            Error::Core(e) => e.kind(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Token { kind, .. } => write!(f, "no token: {kind}"),
            Error::Transport => f.write_str("network error"),
            Error::Timeout => f.write_str("timed out"),
            Error::Core(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl ::core::error::Error for Error {}

/// Client settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// The lifecycle's settings (the jitter seed is drawn from the RNG).
    pub session: Config,
    /// Bound on each network exchange (connect, send, receive). Default 10 s.
    pub timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session: Config::default(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// HTTPS settings (feature `tls`).
#[cfg(feature = "tls")]
pub struct Tls<'b> {
    /// The CA certificate (DER) the server's chain must verify against.
    pub ca: &'b [u8],
    /// embedded-tls's record buffers: 16,640 bytes each hold any record a server may send.
    pub read_buffer: &'b mut [u8],
    /// See `read_buffer`.
    pub write_buffer: &'b mut [u8],
    /// A cryptographically secure RNG (the chip's TRNG): each connection's seed.
    pub rng: &'b mut (dyn rand_core::RngCore + Send),
}

/// What the exchange needs of TLS; nothing without the feature.
#[cfg(feature = "tls")]
type TlsSlot<'x, 'b> = Option<&'x mut Tls<'b>>;
#[cfg(not(feature = "tls"))]
type TlsSlot<'x, 'b> = Option<&'x mut ::core::marker::PhantomData<&'b ()>>;

/// The buffers the token requests use, owned by the caller (statics on a device).
pub struct Buffers<'b> {
    /// The request body and `Authorization` value. 1 KiB is ample.
    pub request: &'b mut [u8],
    /// Response headers. 1 KiB is ample for the providers' responses.
    pub headers: &'b mut [u8],
    /// The response body: the token response's size plus room (Setu's is 1.3 KB).
    pub body: &'b mut [u8],
}

struct State<'b, P, const TOKEN: usize> {
    session: Session<P, TOKEN>,
    buffers: Buffers<'b>,
    url: heapless::String<256>,
    #[cfg(feature = "tls")]
    tls: Option<Tls<'b>>,
}

/// An async token client for one provider, shared by tasks through `&Client`.
///
/// `C` is the lifecycle's clock: [`EmbassyClock`] on a device; tests inject a manual one.
pub struct Client<'b, M: RawMutex, P, T, D, C = EmbassyClock, const TOKEN: usize = 2048> {
    state: Mutex<M, State<'b, P, TOKEN>>,
    tcp: &'b T,
    dns: &'b D,
    clock: C,
    timeout: Duration,
}

/// A downstream response: its status and the body's length in the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// Bytes of body written to the caller's buffer.
    pub body_len: usize,
}

/// A downstream request for [`Client::call`].
#[derive(Clone, Copy, Debug)]
pub struct ApiRequest<'r> {
    /// `GET` or `POST`.
    pub method: Method,
    /// The whole URL.
    pub url: &'r str,
    /// Content type and body, for a `POST`.
    pub body: Option<(&'r str, &'r [u8])>,
}

/// Buffers for one downstream call.
pub struct CallBuffers<'c, const TOKEN: usize> {
    /// The token, copied here for the call.
    pub token: &'c mut heapless::String<TOKEN>,
    /// `Bearer <token>`: the token's capacity plus 7.
    pub authorization: &'c mut [u8],
    /// Response headers.
    pub headers: &'c mut [u8],
    /// The response body.
    pub body: &'c mut [u8],
}

/// What one exchange on the wire produced.
struct Exchange {
    status: u16,
    retry_after: Option<::core::time::Duration>,
    body_len: usize,
}

enum Fault {
    Network,
    Timeout,
    TooLarge { capacity: usize },
}

impl Fault {
    fn too_large(capacity: usize) -> tessera_core::Error {
        tessera_core::Error::Capacity {
            field: "response body",
            needed: capacity.saturating_add(1),
            capacity,
        }
    }
}

impl From<Fault> for Error {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Network => Error::Transport,
            Fault::Timeout => Error::Timeout,
            Fault::TooLarge { capacity } => Error::Core(Fault::too_large(capacity)),
        }
    }
}

/// One request on the wire.
struct Outgoing<'r> {
    method: Method,
    url: &'r str,
    headers: &'r [(&'r str, &'r str)],
    body: &'r [u8],
}

async fn exchange<T: TcpConnect, D: Dns>(
    tcp: &T,
    dns: &D,
    timeout: Duration,
    tls: TlsSlot<'_, '_>,
    out: Outgoing<'_>,
    head_buf: &mut [u8],
    body_buf: &mut [u8],
) -> Result<Exchange, Fault> {
    let Outgoing {
        method,
        url,
        headers,
        body,
    } = out;
    let capacity = body_buf.len();
    let work = async {
        let mut http = match tls {
            #[cfg(feature = "tls")]
            Some(t) => {
                use reqwless::client::{TlsConfig, TlsVerify};
                let verify = TlsVerify::Certificate {
                    ca: t.ca,
                    cert: None,
                    key: None,
                };
                let seed = t.rng.next_u64();
                let config = TlsConfig::new(seed, t.read_buffer, t.write_buffer, verify);
                HttpClient::new_with_tls(tcp, dns, config)
            }
            _ => HttpClient::new(tcp, dns),
        };
        let method = match method {
            Method::Get => HttpMethod::GET,
            Method::Post => HttpMethod::POST,
        };
        // An empty body is written as none (reqwless skips a zero-length body).
        let mut handle = http
            .request(method, url)
            .await
            .map_err(|_| Fault::Network)?
            .headers(headers)
            .body(body);
        let response = handle.send(head_buf).await.map_err(|_| Fault::Network)?;
        let status = response.status.0;
        let retry_after = response
            .headers()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, v)| ::core::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(::core::time::Duration::from_secs);
        let body_len = response
            .body()
            .reader()
            .read_to_end(body_buf)
            .await
            .map_err(|e| match e {
                reqwless::Error::BufferTooSmall => Fault::TooLarge { capacity },
                _ => Fault::Network,
            })?;
        Ok(Exchange {
            status,
            retry_after,
            body_len,
        })
    };
    match with_timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Fault::Timeout),
    }
}

impl<'b, M, P, T, D, const TOKEN: usize> Client<'b, M, P, T, D, EmbassyClock, TOKEN>
where
    M: RawMutex,
    P: Provider,
    T: TcpConnect,
    D: Dns,
{
    /// A client for `provider` with `credentials`, on the network stack `tcp` + `dns`.
    /// The jitter seed is drawn from `rng` (a hardware RNG on a device).
    pub fn new(
        provider: P,
        credentials: Credentials,
        tcp: &'b T,
        dns: &'b D,
        buffers: Buffers<'b>,
        settings: Settings,
        rng: &mut impl rand_core::RngCore,
    ) -> Self {
        Client::with_clock(
            provider,
            credentials,
            tcp,
            dns,
            buffers,
            settings,
            rng,
            EmbassyClock,
        )
    }
}

impl<'b, M, P, T, D, C, const TOKEN: usize> Client<'b, M, P, T, D, C, TOKEN>
where
    M: RawMutex,
    P: Provider,
    T: TcpConnect,
    D: Dns,
    C: Clock,
{
    /// [`Client::new`] on another clock.
    #[allow(clippy::too_many_arguments)]
    pub fn with_clock(
        provider: P,
        credentials: Credentials,
        tcp: &'b T,
        dns: &'b D,
        buffers: Buffers<'b>,
        settings: Settings,
        rng: &mut impl rand_core::RngCore,
        clock: C,
    ) -> Self {
        Client {
            clock,
            state: Mutex::new(State {
                session: Session::new(provider, credentials, settings.session, rng.next_u64()),
                buffers,
                url: heapless::String::new(),
                #[cfg(feature = "tls")]
                tls: None,
            }),
            tcp,
            dns,
            timeout: settings.timeout,
        }
    }

    /// Makes every connection HTTPS, verified against `tls.ca` (see the crate docs).
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: Tls<'b>) -> Self {
        self.state.get_mut().tls = Some(tls);
        self
    }

    /// Copies a fresh bearer token into `out` and says which token it is (for
    /// [`Client::reject`]). One task fetches; the others wait on the client's mutex for
    /// that fetch. A token due for refresh is refreshed by the caller that finds it so;
    /// run [`Client::refresher`] in a task and callers never wait.
    pub async fn token(&self, out: &mut heapless::String<TOKEN>) -> Result<TokenId, Error> {
        loop {
            let mut state = self.state.lock().await;
            match state.session.poll(self.clock.now()) {
                Poll::Ready(bearer) => return Ok(copy_token(&bearer, out)),
                Poll::Refresh(bearer, ticket) => {
                    let id = copy_token(&bearer, out);
                    self.fetch(&mut state, ticket).await;
                    return Ok(id);
                }
                Poll::Fetch(ticket) => self.fetch(&mut state, ticket).await,
                // Every fetch runs under this mutex, so no other is in flight; poll again.
                Poll::Wait(until) => {
                    drop(state);
                    Timer::after(self.until(until)).await;
                }
                Poll::Backoff { until, kind } => {
                    return Err(Error::Token {
                        kind,
                        retry_at: Some(until),
                    })
                }
                Poll::Failed(kind) => {
                    return Err(Error::Token {
                        kind,
                        retry_at: None,
                    })
                }
            }
        }
    }

    async fn fetch(&self, state: &mut State<'b, P, TOKEN>, ticket: Ticket) {
        #[cfg(feature = "tls")]
        let State {
            session,
            buffers,
            url,
            tls,
        } = state;
        #[cfg(feature = "tls")]
        let tls = tls.as_mut();
        #[cfg(not(feature = "tls"))]
        let State {
            session,
            buffers,
            url,
        } = state;
        #[cfg(not(feature = "tls"))]
        let tls: TlsSlot<'_, '_> = None;
        let outcome = match session.request(&ticket, buffers.request) {
            Err(e) => Err(Cause::Local(e)),
            Ok(req) => match req.url.write_into(url) {
                Err(e) => Err(Cause::Local(e)),
                Ok(()) => {
                    diag!(
                        debug,
                        "tessera: token request {} {}",
                        req.method.as_str(),
                        req.url
                    );
                    let mut headers: heapless::Vec<(&str, &str), 3> = heapless::Vec::new();
                    let _ = headers.push(("Accept", "application/json"));
                    if let Some(ct) = req.content_type {
                        let _ = headers.push(("Content-Type", ct));
                    }
                    if let Some(auth) = req.authorization {
                        let _ = headers.push(("Authorization", auth));
                    }
                    exchange(
                        self.tcp,
                        self.dns,
                        self.timeout,
                        tls,
                        Outgoing {
                            method: req.method,
                            url,
                            headers: &headers,
                            body: req.body,
                        },
                        buffers.headers,
                        buffers.body,
                    )
                    .await
                    .map_err(|f| match f {
                        Fault::Network => {
                            Cause::Transport(TransportError::new(Stage::Io, "network error"))
                        }
                        Fault::Timeout => {
                            Cause::Transport(TransportError::new(Stage::Timeout, "timed out"))
                        }
                        Fault::TooLarge { capacity } => Cause::Local(Fault::too_large(capacity)),
                    })
                }
            },
        };
        // The request held the credentials: wipe it.
        buffers.request.fill(0);
        let arrived = self.clock.now();
        let completion = match outcome {
            Ok(x) => session.on_response(
                ticket,
                arrived,
                x.status,
                x.retry_after,
                buffers.body.get(..x.body_len).unwrap_or_default(),
            ),
            Err(cause) => session.on_failure(ticket, arrived, cause),
        };
        match completion {
            tessera_core::session::Completion::Stored => diag!(debug, "tessera: new token stored"),
            tessera_core::session::Completion::Failed => {
                if let Some(_f) = session.failure() {
                    diag!(warn, "tessera: token fetch failed: {}", _f);
                }
            }
            tessera_core::session::Completion::Stale
            | tessera_core::session::Completion::Released => {
                diag!(debug, "tessera: late answer ignored")
            }
        }
    }

    /// Reports token `id` rejected by a downstream API (a 401): dropped if it is still the
    /// cached one, so the next [`Client::token`] fetches a new one.
    pub async fn reject(&self, id: TokenId) -> bool {
        self.state.lock().await.session.reject(id)
    }

    /// Sends a downstream call with the bearer token. On a 401 the token is reported
    /// rejected, a new one is fetched once and the call is retried once.
    pub async fn call(
        &self,
        request: ApiRequest<'_>,
        buffers: &mut CallBuffers<'_, TOKEN>,
    ) -> Result<ApiResponse, Error> {
        let CallBuffers {
            token,
            authorization,
            headers,
            body,
        } = buffers;
        let mut retried = false;
        loop {
            let id = self.token(token).await?;
            let auth = bearer_header(token, authorization).map_err(Error::Core)?;
            let mut list: heapless::Vec<(&str, &str), 2> = heapless::Vec::new();
            let _ = list.push(("Authorization", auth));
            let payload: &[u8] = match request.body {
                Some((ct, bytes)) => {
                    let _ = list.push(("Content-Type", ct));
                    bytes
                }
                None => &[],
            };
            // With TLS, the connection's record buffers are the client's: hold them for the call.
            #[cfg(feature = "tls")]
            let mut state = self.state.lock().await;
            #[cfg(feature = "tls")]
            let tls = state.tls.as_mut();
            #[cfg(not(feature = "tls"))]
            let tls: TlsSlot<'_, '_> = None;
            let result = exchange(
                self.tcp,
                self.dns,
                self.timeout,
                tls,
                Outgoing {
                    method: request.method,
                    url: request.url,
                    headers: &list,
                    body: payload,
                },
                headers,
                body,
            )
            .await;
            #[cfg(feature = "tls")]
            drop(state);
            let x = result.map_err(Error::from)?;
            if x.status != 401 || retried {
                return Ok(ApiResponse {
                    status: x.status,
                    body_len: x.body_len,
                });
            }
            diag!(
                debug,
                "tessera: 401 from a call: token rejected, fetching a new one"
            );
            self.reject(id).await;
            retried = true;
        }
    }

    /// Keeps the token fresh: fetches at start, sleeps until the refresh point, refreshes,
    /// and backs off on failure. Run it in its own task; it never returns.
    pub async fn refresher(&self) -> ! {
        loop {
            let wake = {
                let mut state = self.state.lock().await;
                match state.session.poll(self.clock.now()) {
                    Poll::Ready(bearer) => Some(bearer.refresh_at()),
                    Poll::Refresh(_, ticket) | Poll::Fetch(ticket) => {
                        self.fetch(&mut state, ticket).await;
                        continue;
                    }
                    Poll::Wait(until) | Poll::Backoff { until, .. } => Some(until),
                    // Refused credentials: look again in a minute (new ones are set through
                    // `set_credentials`, which a poll then notices).
                    Poll::Failed(_) => None,
                }
            };
            match wake {
                Some(at) => Timer::after(self.until(at)).await,
                None => Timer::after(Duration::from_secs(60)).await,
            }
        }
    }

    /// How long from now until `at` on the client's clock.
    fn until(&self, at: Instant) -> Duration {
        Duration::from_millis(at.saturating_duration_since(self.clock.now()).as_millis() as u64)
    }

    /// Asks Shogun's validate endpoint about the current token, into `info`. It is a
    /// [`Client::call`]: a 401 (the token is dead) rejects the token, fetches a new one
    /// once and asks once more.
    pub async fn validate(
        &self,
        shogun: &tessera_core::Shogun<'_>,
        buffers: &mut CallBuffers<'_, TOKEN>,
        info: &mut tessera_core::TokenInfo,
    ) -> Result<(), Error> {
        let mut url: heapless::String<256> = heapless::String::new();
        shogun
            .validate_url()
            .write_into(&mut url)
            .map_err(Error::Core)?;
        let request = ApiRequest {
            method: Method::Get,
            url: &url,
            body: None,
        };
        let response = self.call(request, buffers).await?;
        let body = buffers.body.get(..response.body_len).unwrap_or_default();
        match shogun.parse_validate(response.status, body) {
            Ok(r) => info.store(&r).map_err(Error::Core),
            Err(e) => Err(Error::Token {
                kind: e.kind(),
                retry_at: None,
            }),
        }
    }

    /// Replaces the credentials (secret rotation).
    pub async fn set_credentials(&self, credentials: Credentials) {
        self.state.lock().await.session.set_credentials(credentials);
    }

    /// Allows one more attempt after refused credentials or during a backoff (a user's
    /// explicit "try again", never a loop).
    pub async fn retry(&self) {
        self.state.lock().await.session.retry();
    }

    /// Runs `f` with the last failure (code, message, Setu's trace id), if any.
    pub async fn failure<R>(&self, f: impl FnOnce(Option<&Failure>) -> R) -> R {
        f(self.state.lock().await.session.failure())
    }

    /// Runs `f` with the cached grant while its token is usable.
    pub async fn grant<R>(&self, f: impl FnOnce(Option<&tessera_core::Grant<TOKEN>>) -> R) -> R {
        f(self.state.lock().await.session.grant(self.clock.now()))
    }
}

fn copy_token<const TOKEN: usize>(
    bearer: &tessera_core::Bearer<'_, TOKEN, 1024>,
    out: &mut heapless::String<TOKEN>,
) -> TokenId {
    out.clear();
    // Same capacity as the session's grant: cannot fail.
    let _ = out.push_str(bearer.token());
    bearer.id()
}
