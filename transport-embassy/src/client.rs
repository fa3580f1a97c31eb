//! The client: the session in a blocking mutex held only for decisions, fetches run by
//! whoever holds the ticket, waiters woken by a signal, and the refresher task.

use core::cell::RefCell;
use core::fmt;
use core::future::poll_fn;
use core::marker::PhantomData;
use core::task::Poll as TaskPoll;

use embassy_futures::select::select;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::waitqueue::{MultiWakerRegistration, WakerRegistration};
use embassy_time::{Duration, Timer};
use embedded_nal_async::{Dns, TcpConnect};
use tessera_core::session::{
    Cause, Completion, Config, Failure, Poll, Restored, Session, Step, Ticket,
};
use tessera_core::snapshot::{Key, SnapshotError, WallTime};
use tessera_core::transport::{check_url, AfterCall, Downstream};
use tessera_core::{
    bearer_header, Bearer, Clock, Credentials, Grant, Instant, Layout, Provider, Stage, TokenId,
    TransportError,
};

use crate::error::{Error, Fault};
use crate::http::{
    exchange, ApiRequest, ApiResponse, Exchanged, Outgoing, TlsConn, Wire, MAX_EXTRA_HEADERS,
};
use crate::kept::{Pool, WireStats};
#[cfg(feature = "mbedtls")]
use crate::mbedtls::{Mbedtls, MbedtlsBuffers, Shared as MbedtlsShared};
use crate::resources::{CallBuffers, FetchBuffers, Resources, Wipe};
#[cfg(feature = "tls")]
use crate::tls::{Tls, TlsBuffers};

/// `embassy_time::Instant` as the core's monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmbassyClock;

impl Clock for EmbassyClock {
    fn now(&self) -> Instant {
        Instant::from_millis(embassy_time::Instant::now().as_millis())
    }
}

/// Client settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// The lifecycle's settings, `allow_insecure_http` included (the jitter seed is drawn
    /// from the RNG given to the constructor).
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

/// A bearer token copied into the caller's buffer, and which token it is (for
/// [`Client::reject`]). `Debug` does not show it.
#[derive(Clone, Copy)]
pub struct Token<'o> {
    text: &'o str,
    id: TokenId,
}

impl<'o> Token<'o> {
    /// The token, for `Authorization: Bearer <token>`.
    pub fn as_str(&self) -> &'o str {
        self.text
    }

    /// Which token this is.
    pub fn id(&self) -> TokenId {
        self.id
    }
}

impl fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("token", &format_args!("<redacted>"))
            .field("id", &self.id)
            .finish()
    }
}

/// How many plain-HTTP connections a client keeps (token host and API host are often two
/// origins). Each is one socket of the network stack's pool while it is kept.
pub const KEPT_CONNECTIONS: usize = 2;

/// How many distinct tasks can wait for a fetch without extra wake-ups. More waiters are
/// still woken (all of them, once more), never lost.
const WAITERS: usize = 8;

/// A downstream `https://` URL, or a token URL, with no TLS to speak it: refused, because
/// plain HTTP would otherwise be spoken to the HTTPS port.
const NO_TLS: TransportError = TransportError::new(
    Stage::Tls,
    "https:// needs a TLS backend (`mbedtls` or `tls`) and its settings",
);

struct RefresherSlot {
    /// A `refresher()` future is running.
    running: bool,
    /// A refresh a caller found due and handed over.
    handoff: Option<Ticket>,
    /// Something changed that the refresher must look at.
    nudged: bool,
    waker: WakerRegistration,
}

impl RefresherSlot {
    fn nudge(&mut self) {
        self.nudged = true;
        self.waker.wake();
    }
}

struct Shared<'r, P, const TOKEN: usize, const REFRESH: usize> {
    session: Session<P, TOKEN, REFRESH>,
    /// The fetch buffers, when no task holds them.
    fetch: Option<FetchBuffers<'r>>,
    /// Bumped whenever a fetch ends (completed, failed or cancelled) or a token is restored.
    generation: u32,
    /// Bumped whenever a new token is cached (fetched or restored).
    stored: u32,
    waiters: MultiWakerRegistration<WAITERS>,
    refresher: RefresherSlot,
    /// The wall clock, once the application set it: Unix seconds then, and when.
    wall: Option<(u64, embassy_time::Instant)>,
    /// Connections opened and reused, and handshakes, so far.
    stats: WireStats,
}

#[cfg(feature = "tls")]
struct TlsShared<'r, M: RawMutex> {
    ca: &'r [u8],
    rng: Mutex<M, RefCell<&'r mut (dyn rand_core::RngCore + Send)>>,
}

#[cfg(feature = "tls")]
impl<M: RawMutex> TlsShared<'_, M> {
    fn seed(&self) -> u64 {
        self.rng.lock(|r| r.borrow_mut().next_u64())
    }
}

/// An async token client for one provider, shared by tasks through `&Client`.
///
/// - `M`: the raw mutex guarding the session (`CriticalSectionRawMutex` when tasks run on
///   several executors or interrupt priorities, `NoopRawMutex` on one executor). It is
///   held only while the session decides (microseconds), never across network I/O.
/// - `P`: the provider; `T` + `D`: the network stack (embassy-net's `TcpClient` and
///   `DnsSocket`); `C`: the lifecycle's clock ([`EmbassyClock`]; tests inject a manual one).
/// - `TOKEN`, `REFRESH`: the session's capacities, from the [`Resources`] given.
pub struct Client<
    'r,
    M: RawMutex,
    P,
    T: TcpConnect + 'r,
    D,
    C = EmbassyClock,
    const TOKEN: usize = 2048,
    const REFRESH: usize = 1024,
> {
    shared: Mutex<M, RefCell<Shared<'r, P, TOKEN, REFRESH>>>,
    tcp: &'r T,
    dns: &'r D,
    clock: C,
    timeout: Duration,
    allow_insecure_http: bool,
    #[cfg(feature = "tls")]
    tls: Option<TlsShared<'r, M>>,
    #[cfg(feature = "mbedtls")]
    mbedtls: Option<MbedtlsShared<'r, M, T>>,
    /// Plain-HTTP connections kept for the next request to their origin.
    kept: Mutex<M, RefCell<Pool<T::Connection<'r>, KEPT_CONNECTIONS>>>,
}

/// The optional parts of a [`Client`]: settings, clock, TLS. From [`Client::builder`].
pub struct Builder<'r, M, P, T, D, C, const TOKEN: usize, const REFRESH: usize> {
    mutex: PhantomData<M>,
    provider: P,
    credentials: Credentials,
    tcp: &'r T,
    dns: &'r D,
    fetch: FetchBuffers<'r>,
    seed: u64,
    settings: Settings,
    clock: C,
    #[cfg(feature = "tls")]
    tls: Option<Tls<'r>>,
    #[cfg(feature = "mbedtls")]
    mbedtls: Option<Mbedtls<'r>>,
}

impl<
        'r,
        M: RawMutex,
        P: Provider,
        T: TcpConnect + 'r,
        D,
        C: Clock,
        const TOKEN: usize,
        const REFRESH: usize,
    > Builder<'r, M, P, T, D, C, TOKEN, REFRESH>
{
    /// Lifecycle settings and the network timeout.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Another clock for the lifecycle (tests inject a manual one).
    pub fn clock<C2: Clock>(self, clock: C2) -> Builder<'r, M, P, T, D, C2, TOKEN, REFRESH> {
        Builder {
            mutex: PhantomData,
            provider: self.provider,
            credentials: self.credentials,
            tcp: self.tcp,
            dns: self.dns,
            fetch: self.fetch,
            seed: self.seed,
            settings: self.settings,
            clock,
            #[cfg(feature = "tls")]
            tls: self.tls,
            #[cfg(feature = "mbedtls")]
            mbedtls: self.mbedtls,
        }
    }

    /// HTTPS: token requests and calls verified against `tls`'s CA (see the crate docs).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: Tls<'r>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// HTTPS through MbedTLS: token requests and calls (through
    /// [`Client::call_mbedtls`]) verified against `mbedtls`'s roots, the host checked against
    /// the certificate's subjectAltName (see [`crate::mbedtls`]). Takes precedence over
    /// `.tls(…)` when both are given.
    #[cfg(feature = "mbedtls")]
    pub fn mbedtls(mut self, mbedtls: Mbedtls<'r>) -> Self {
        self.mbedtls = Some(mbedtls);
        self
    }

    /// The client.
    pub fn build(self) -> Client<'r, M, P, T, D, C, TOKEN, REFRESH> {
        #[allow(unused_mut)]
        let mut fetch = self.fetch;
        #[cfg(feature = "tls")]
        let tls = self.tls.map(|t| {
            fetch.tls = Some(t.buffers);
            TlsShared {
                ca: t.ca,
                rng: Mutex::new(RefCell::new(t.rng)),
            }
        });
        Client {
            shared: Mutex::new(RefCell::new(Shared {
                session: Session::new(
                    self.provider,
                    self.credentials,
                    self.settings.session,
                    self.seed,
                ),
                fetch: Some(fetch),
                generation: 0,
                stored: 0,
                waiters: MultiWakerRegistration::new(),
                wall: None,
                stats: WireStats::default(),
                refresher: RefresherSlot {
                    running: false,
                    handoff: None,
                    nudged: false,
                    waker: WakerRegistration::new(),
                },
            })),
            tcp: self.tcp,
            dns: self.dns,
            clock: self.clock,
            timeout: self.settings.timeout,
            allow_insecure_http: self.settings.session.allow_insecure_http,
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "mbedtls")]
            mbedtls: self.mbedtls.map(MbedtlsShared::new),
            kept: Mutex::new(RefCell::new(Pool::new())),
        }
    }
}

impl<'r, M, P, T, D, const TOKEN: usize, const REFRESH: usize>
    Client<'r, M, P, T, D, EmbassyClock, TOKEN, REFRESH>
where
    M: RawMutex,
    P: Provider,
    T: TcpConnect,
    D: Dns,
{
    /// A client for `provider` with `credentials` on the network stack `tcp` + `dns`, with
    /// its buffers in `resources` and the default [`Settings`]. The jitter seed is drawn
    /// from `rng` (the chip's RNG).
    pub fn new<const REQUEST: usize, const HEADERS: usize, const BODY: usize, const URL: usize>(
        provider: P,
        credentials: Credentials,
        tcp: &'r T,
        dns: &'r D,
        resources: &'r mut Resources<TOKEN, REQUEST, HEADERS, BODY, URL, REFRESH>,
        rng: &mut (impl rand_core::RngCore + ?Sized),
    ) -> Self {
        Self::builder(provider, credentials, tcp, dns, resources, rng).build()
    }

    /// [`Client::new`] with options: `.settings(…)`, `.clock(…)`, `.tls(…)`, then `.build()`.
    pub fn builder<
        const REQUEST: usize,
        const HEADERS: usize,
        const BODY: usize,
        const URL: usize,
    >(
        provider: P,
        credentials: Credentials,
        tcp: &'r T,
        dns: &'r D,
        resources: &'r mut Resources<TOKEN, REQUEST, HEADERS, BODY, URL, REFRESH>,
        rng: &mut (impl rand_core::RngCore + ?Sized),
    ) -> Builder<'r, M, P, T, D, EmbassyClock, TOKEN, REFRESH> {
        Builder {
            mutex: PhantomData,
            provider,
            credentials,
            tcp,
            dns,
            fetch: resources.split(),
            seed: rng.next_u64(),
            settings: Settings::default(),
            clock: EmbassyClock,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "mbedtls")]
            mbedtls: None,
        }
    }
}

/// What a caller does after one look at the session.
enum Next<'r, R> {
    /// Done; with a refresh to run first when there is no refresher.
    Done(R, Option<(Ticket, FetchBuffers<'r>)>),
    /// Fetch, then look again.
    Fetch(Ticket, FetchBuffers<'r>),
    /// Wait for the fetch in flight to end (at most until the instant), then look again.
    Wait(u32, Option<Instant>),
    Fail(Error),
}

/// What the refresher does after one look at the session.
enum Chore<'r> {
    Fetch(Ticket, FetchBuffers<'r>),
    Sleep(Instant),
    Nudge,
}

impl<'r, M, P, T, D, C, const TOKEN: usize, const REFRESH: usize>
    Client<'r, M, P, T, D, C, TOKEN, REFRESH>
where
    M: RawMutex,
    P: Provider,
    T: TcpConnect,
    D: Dns,
    C: Clock,
{
    fn with<R>(&self, f: impl FnOnce(&mut Shared<'r, P, TOKEN, REFRESH>) -> R) -> R {
        self.shared.lock(|cell| f(&mut cell.borrow_mut()))
    }

    fn wire(&self) -> Wire<'r, T, D> {
        Wire {
            tcp: self.tcp,
            dns: self.dns,
            timeout: self.timeout,
            wall_now: self.wall_now(),
        }
    }

    /// Connections this client opened and reused, and the TLS handshakes they cost, over
    /// every exchange that got an answer (token requests and calls): what a firmware or
    /// the CLI reports, e.g. "10 calls, 1 connection, 1 full handshake".
    pub fn wire_stats(&self) -> WireStats {
        self.with(|s| s.stats)
    }

    /// Closes every kept connection now (before a deep sleep or a network change; they
    /// would otherwise be closed when they idle out or are found dead).
    pub fn close_connections(&self) {
        self.kept.lock(|p| p.borrow_mut().clear());
        #[cfg(feature = "mbedtls")]
        if let Some(m) = self.mbedtls.as_ref() {
            m.forget();
        }
    }

    /// Sets the wall clock (Unix seconds now, from SNTP or an RTC): a `Retry-After` sent as
    /// an HTTP date is then read too (without it only delay-seconds are, and a date is
    /// ignored). The client counts on from here with its monotonic clock; set it again after
    /// each SNTP sync.
    pub fn set_wall_time(&self, unix_secs: u64) {
        self.with(|s| s.wall = Some((unix_secs, embassy_time::Instant::now())));
    }

    /// The wall clock now, in Unix seconds, if it was set.
    fn wall_now(&self) -> Option<u64> {
        let (at, since) = self.with(|s| s.wall)?;
        Some(at.saturating_add(since.elapsed().as_secs()))
    }

    /// Copies a fresh bearer token into `out` and says which it is.
    ///
    /// A cached token is returned at once, also while it is being refreshed. When it is
    /// due, the refresh is handed to [`Client::refresher`] if one runs (otherwise this
    /// caller runs it, and returns the current token after). With no token, one caller
    /// fetches and the others wait for that fetch's end (a signal, not a timer).
    ///
    /// `out` then holds the token: wipe it when done (or use [`Client::call`], which keeps
    /// the token in the call's own buffer and wipes it).
    pub async fn token<'o>(&self, out: &'o mut [u8]) -> Result<Token<'o>, Error> {
        let capacity = out.len();
        let copied = self
            .bearer(|b| {
                let token = b.token().as_bytes();
                match out.get_mut(..token.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(token);
                        Ok((b.id(), token.len()))
                    }
                    None => Err(Error::Core(tessera_core::Error::Capacity {
                        field: "token buffer",
                        needed: token.len(),
                        capacity,
                    })),
                }
            })
            .await?;
        let (id, len) = copied?;
        let text = out
            .get(..len)
            .and_then(|t| core::str::from_utf8(t).ok())
            .unwrap_or_default();
        Ok(Token { text, id })
    }

    /// Runs `use_it` on a usable bearer token (under the lock: it must be quick).
    async fn bearer<R>(
        &self,
        mut use_it: impl FnMut(&Bearer<'_, TOKEN, REFRESH>) -> R,
    ) -> Result<R, Error> {
        loop {
            let next = self.with(|s| {
                let Shared {
                    session,
                    fetch,
                    generation,
                    refresher,
                    ..
                } = s;
                match session.poll(self.clock.now()) {
                    Poll::Ready(b) => Next::Done(use_it(&b), None),
                    Poll::Refresh(b, ticket) => {
                        let r = use_it(&b);
                        if refresher.running {
                            refresher.handoff = Some(ticket);
                            refresher.nudge();
                            Next::Done(r, None)
                        } else {
                            match fetch.take() {
                                Some(bufs) => Next::Done(r, Some((ticket, bufs))),
                                None => {
                                    let _ = session.release(ticket);
                                    Next::Done(r, None)
                                }
                            }
                        }
                    }
                    Poll::Fetch(ticket) => match fetch.take() {
                        Some(bufs) => Next::Fetch(ticket, bufs),
                        // An abandoned fetch still has the buffers: wait for them.
                        None => {
                            let _ = session.release(ticket);
                            Next::Wait(*generation, None)
                        }
                    },
                    Poll::Wait(until) => Next::Wait(*generation, Some(until)),
                    Poll::Backoff { until, kind } => Next::Fail(Error::Token {
                        kind,
                        retry_at: Some(until),
                        transport: last_transport(session),
                    }),
                    Poll::Failed(kind) => Next::Fail(Error::Token {
                        kind,
                        retry_at: None,
                        transport: last_transport(session),
                    }),
                }
            });
            match next {
                Next::Done(r, None) => return Ok(r),
                Next::Done(r, Some((ticket, bufs))) => {
                    self.run_fetch(Held::new(self, ticket, bufs)).await;
                    return Ok(r);
                }
                Next::Fetch(ticket, bufs) => self.run_fetch(Held::new(self, ticket, bufs)).await,
                Next::Wait(seen, until) => self.fetch_ended(seen, until).await,
                Next::Fail(e) => return Err(e),
            }
        }
    }

    /// Waits until a fetch ends after `seen`, or (as a bound) until `until` on the client's
    /// clock, when the session would abandon the fetch in flight.
    async fn fetch_ended(&self, seen: u32, until: Option<Instant>) {
        let ended = poll_fn(|cx| {
            self.with(|s| {
                if s.generation != seen {
                    TaskPoll::Ready(())
                } else {
                    s.waiters.register(cx.waker());
                    TaskPoll::Pending
                }
            })
        });
        match until {
            None => ended.await,
            Some(at) => {
                select(ended, Timer::at(self.deadline(at))).await;
            }
        }
    }

    /// The embassy instant matching `at` on the client's clock.
    fn deadline(&self, at: Instant) -> embassy_time::Instant {
        let ms = at.saturating_duration_since(self.clock.now()).as_millis();
        let wait = u64::try_from(ms)
            .ok()
            .and_then(Duration::try_from_millis)
            .unwrap_or(Duration::MAX);
        embassy_time::Instant::now()
            .checked_add(wait)
            .unwrap_or(embassy_time::Instant::MAX)
    }

    /// Runs the token request `held` has the ticket and buffers for, hands the answer to
    /// the session, and (through `held`'s drop) wipes and returns the buffers.
    async fn run_fetch(&self, mut held: Held<'_, 'r, M, P, T, D, C, TOKEN, REFRESH>) {
        let (Some(ticket), Some(bufs)) = (held.ticket.as_ref(), held.bufs.as_mut()) else {
            return;
        };
        // Written under the lock into the request buffer; the layout says where.
        let prepared = self.with(|s| s.session.write_request(ticket, bufs.request));
        let outcome = match prepared {
            Err(e) => Err(Cause::Local(e)),
            Ok(p) => self.send_token_request(&p, bufs).await,
        };
        let arrived = self.clock.now();
        let Some(ticket) = held.ticket.take() else {
            return;
        };
        let body: &[u8] = held.bufs.as_ref().map_or(&[], |b| &*b.body);
        let completion = self.with(|s| {
            if let Ok(x) = &outcome {
                s.stats.count(x.connection);
            }
            let completion = match outcome {
                Ok(x) => s.session.on_response(
                    ticket,
                    arrived,
                    x.status,
                    x.retry_after,
                    body.get(..x.body_len).unwrap_or_default(),
                ),
                Err(cause) => s.session.on_failure(ticket, arrived, cause),
            };
            if completion == Completion::Stored {
                s.stored = s.stored.wrapping_add(1);
            }
            if completion == Completion::Failed {
                if let Some(_f) = s.session.failure() {
                    diag!(warn, "tessera: {}: {}", completion, _f);
                }
            }
            completion
        });
        if completion != Completion::Failed {
            diag!(debug, "tessera: {}", completion);
        }
        drop(held);
    }

    async fn send_token_request(
        &self,
        layout: &Layout,
        bufs: &mut FetchBuffers<'r>,
    ) -> Result<Exchanged, Cause> {
        let FetchBuffers {
            request,
            headers,
            body,
            #[cfg(feature = "tls")]
            tls,
            ..
        } = bufs;
        let request: &[u8] = request;
        let req = layout.request(request);
        let url = layout.url(request);
        // The host and path the core parsed: never a URL's `user:password@` (refused by
        // the core anyway) nor its query in a log line.
        if let Ok(_to) = tessera_core::transport::parse_url(url) {
            diag!(
                debug,
                "tessera: token request {} {}{}",
                layout.method.as_str(),
                _to.host,
                _to.path
            );
        }
        // At most three: Accept, Content-Type, Authorization.
        let list: heapless::Vec<(&str, &str), 3> = req.headers().collect();
        #[cfg(feature = "mbedtls")]
        if let (true, Some(m)) = (is_https(url), self.mbedtls.as_ref()) {
            let out = Outgoing {
                method: layout.method,
                url,
                headers: &list,
                body: req.body,
            };
            return m
                .token_exchange(&self.wire(), out, headers, body)
                .await
                .map_err(|f| match f {
                    Fault::Net(e) => Cause::Transport(e),
                    Fault::Local(e) => Cause::Local(e),
                });
        }
        #[cfg(feature = "tls")]
        let record = tls.as_mut().map(|(r, w)| (&mut **r, &mut **w));
        #[cfg(not(feature = "tls"))]
        let record = None;
        let conn = match (is_https(url), self.tls_conn(record)) {
            (false, _) => None,
            (true, Some(conn)) => Some(conn),
            (true, None) => return Err(Cause::Transport(NO_TLS)),
        };
        let out = Outgoing {
            method: layout.method,
            url,
            headers: &list,
            body: req.body,
        };
        // A token request (a POST with no Idempotency-Key) is not sent again when a kept
        // connection is found closed: the server may have taken it before the connection
        // died (a refusal counts towards a lockout), so it fails as `io` and the session's
        // backoff (with the cached token still served) decides the next attempt.
        exchange(
            &self.wire(),
            &self.kept,
            conn,
            out,
            headers,
            body,
            false,
            false,
        )
        .await
        .map_err(|f| match f {
            Fault::Net(e) => Cause::Transport(e),
            Fault::Local(e) => Cause::Local(e),
        })
    }

    #[cfg(feature = "tls")]
    fn tls_conn<'a>(
        &'a self,
        buffers: Option<(&'a mut [u8], &'a mut [u8])>,
    ) -> Option<TlsConn<'a>> {
        let shared = self.tls.as_ref()?;
        let (read, write) = buffers?;
        Some(TlsConn {
            ca: shared.ca,
            seed: shared.seed(),
            read,
            write,
        })
    }

    #[cfg(not(feature = "tls"))]
    fn tls_conn<'a>(&'a self, _: Option<(&'a mut [u8], &'a mut [u8])>) -> Option<TlsConn<'a>> {
        None
    }

    /// Reports token `id` rejected by a downstream API (a 401): dropped if it is still the
    /// cached one, so the next [`Client::token`] fetches a new one. Whether it was.
    pub fn reject(&self, id: TokenId) -> bool {
        self.with(|s| {
            let dropped = s.session.reject(id);
            if dropped {
                s.refresher.nudge();
            }
            dropped
        })
    }

    /// Sends a downstream call with the bearer token written straight into `buffers` (no
    /// other copy), plus the request's extra headers. On a first 401 the token is reported
    /// rejected, a new one is fetched once and the call is sent once more.
    ///
    /// An `http://` URL whose host is not loopback is refused before connecting unless
    /// the settings allow insecure HTTP; an `https://` one needs `Client::call_tls`
    /// (feature `tls`).
    pub async fn call<'b, const HEAD: usize, const BODY: usize>(
        &self,
        request: ApiRequest<'_>,
        buffers: &'b mut CallBuffers<HEAD, BODY>,
    ) -> Result<ApiResponse<'b>, Error> {
        let CallBuffers { head, body } = buffers;
        self.call_in(request, head, body, None).await
    }

    /// [`Client::call`] over HTTPS too, with `tls` as this call's own record buffers (so
    /// concurrent calls and token fetches never wait for each other).
    #[cfg(feature = "tls")]
    pub async fn call_tls<
        'b,
        const HEAD: usize,
        const BODY: usize,
        const R: usize,
        const W: usize,
    >(
        &self,
        request: ApiRequest<'_>,
        buffers: &'b mut CallBuffers<HEAD, BODY>,
        tls: &mut TlsBuffers<R, W>,
    ) -> Result<ApiResponse<'b>, Error> {
        let CallBuffers { head, body } = buffers;
        self.call_in(request, head, body, Some(tls.split())).await
    }

    /// [`Client::call`] over HTTPS through MbedTLS (see [`Builder::mbedtls`]), with
    /// `mbedtls` as this call's own request buffer (so concurrent calls and token fetches
    /// never wait for each other). `http://` URLs are sent as [`Client::call`] sends them.
    #[cfg(feature = "mbedtls")]
    pub async fn call_mbedtls<'b, const HEAD: usize, const BODY: usize, const TX: usize>(
        &self,
        request: ApiRequest<'_>,
        buffers: &'b mut CallBuffers<HEAD, BODY>,
        mbedtls: &mut MbedtlsBuffers<TX>,
    ) -> Result<ApiResponse<'b>, Error> {
        if is_https(request.url) && self.mbedtls.is_none() {
            return Err(Error::Transport(NO_TLS));
        }
        let CallBuffers { head, body } = buffers;
        self.call_in(request, head, body, Some((&mut mbedtls.tx, &mut [])))
            .await
    }

    async fn call_in<'b>(
        &self,
        request: ApiRequest<'_>,
        head: &mut [u8],
        body: &'b mut [u8],
        tls: Option<(&mut [u8], &mut [u8])>,
    ) -> Result<ApiResponse<'b>, Error> {
        check_url(request.url, self.allow_insecure_http).map_err(Error::Core)?;
        if request.headers.len() > MAX_EXTRA_HEADERS {
            return Err(Error::Core(tessera_core::Error::Capacity {
                field: "request headers",
                needed: request.headers.len(),
                capacity: MAX_EXTRA_HEADERS,
            }));
        }
        let https = is_https(request.url);
        // The record buffers held this call's plaintext, token included.
        let mut tls = tls.map(|(r, w)| (Wipe(r), Wipe(w)));
        if https && (tls.is_none() || !self.has_tls()) {
            return Err(Error::Transport(NO_TLS));
        }
        // Sent again on a new connection if a kept one is found closed: only when repeating
        // it is harmless (issue: a payment never reaches the API twice without its key).
        let safe = request.method.is_idempotent()
            || request
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("idempotency-key"));
        let mut rule = Downstream::new();
        let head = Wipe(head);
        let done = loop {
            let (id, auth) = self
                .bearer(|b| (b.id(), bearer_header(b.token(), head.0).map(str::len)))
                .await?;
            let auth = auth.map_err(Error::Core)?;
            let (auth, rx) = head.0.split_at_mut(auth);
            let auth = utf8(Some(auth));
            let mut list: heapless::Vec<(&str, &str), { MAX_EXTRA_HEADERS + 2 }> =
                heapless::Vec::new();
            let _ = list.push(("Authorization", auth));
            if let Some((ct, _)) = request.body {
                let _ = list.push(("Content-Type", ct));
            }
            for h in request.headers {
                // Room checked above.
                let _ = list.push(*h);
            }
            let out = Outgoing {
                method: request.method,
                url: request.url,
                headers: &list,
                body: request.body.map_or(&[][..], |(_, b)| b),
            };
            // The label is only broken out of with the `mbedtls` feature.
            #[allow(unused_labels)]
            let sent = 'sent: {
                // MbedTLS: the call's buffers are (request buffer, nothing).
                #[cfg(feature = "mbedtls")]
                {
                    let record = tls.as_mut().map(|(r, w)| (&mut *r.0, &mut *w.0));
                    if let (true, Some(m), Some((tx, _))) = (https, self.mbedtls.as_ref(), record) {
                        break 'sent m
                            .exchange(&self.wire(), tx, out, rx, body, true, safe)
                            .await;
                    }
                }
                let record = tls.as_mut().map(|(r, w)| (&mut *r.0, &mut *w.0));
                let conn = match https {
                    false => None,
                    true => self.tls_conn(record),
                };
                exchange(&self.wire(), &self.kept, conn, out, rx, body, true, safe).await
            };
            let x = sent.map_err(Error::from)?;
            self.with(|s| s.stats.count(x.connection));
            match rule.after(x.status) {
                AfterCall::Done => break x,
                AfterCall::RejectAndRetry => {
                    diag!(
                        debug,
                        "tessera: 401 from a call: token rejected, fetching a new one"
                    );
                    self.reject(id);
                }
            }
        };
        drop(head);
        drop(tls);
        let body: &'b [u8] = body;
        let (kept, rest) = body.split_at(done.kept.min(body.len()));
        Ok(ApiResponse::new(
            done.status,
            done.connection,
            kept,
            rest.get(..done.body_len).unwrap_or_default(),
        ))
    }

    fn has_tls(&self) -> bool {
        #[cfg(feature = "mbedtls")]
        if self.mbedtls.is_some() {
            return true;
        }
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Keeps the token fresh: run it in its own task; it never returns. While a token is
    /// cached it sleeps until the refresh point and refreshes (callers that find the token
    /// due hand it the refresh and return at once), backs off after a failed refresh, and
    /// after refused credentials sleeps until [`Client::set_credentials`] or
    /// [`Client::retry`]. With no token (before the first, or once one expired while
    /// refreshes failed) it waits: the next [`Client::token`] or [`Client::call`] fetches,
    /// so nothing is sent that no caller asked for. It sleeps on a timer and a signal; it
    /// never polls.
    pub async fn refresher(&self) -> ! {
        let _running = Running::start(self);
        loop {
            let chore = self.with(|s| {
                let Shared {
                    session,
                    fetch,
                    refresher,
                    ..
                } = s;
                refresher.nudged = false;
                let now = self.clock.now();
                let step = match refresher.handoff.take() {
                    Some(ticket) => Step::Fetch(ticket),
                    None => session.refresher_step(now),
                };
                match step {
                    Step::Fetch(ticket) => match fetch.take() {
                        Some(bufs) => Chore::Fetch(ticket, bufs),
                        None => {
                            let _ = session.release(ticket);
                            Chore::Nudge
                        }
                    },
                    Step::Sleep(at) => Chore::Sleep(at),
                    Step::Park => Chore::Nudge,
                }
            });
            match chore {
                Chore::Fetch(ticket, bufs) => self.run_fetch(Held::new(self, ticket, bufs)).await,
                Chore::Sleep(at) => {
                    select(self.nudged(), Timer::at(self.deadline(at))).await;
                }
                Chore::Nudge => self.nudged().await,
            }
        }
    }

    async fn nudged(&self) {
        poll_fn(|cx| {
            self.with(|s| {
                if s.refresher.nudged {
                    s.refresher.nudged = false;
                    TaskPoll::Ready(())
                } else {
                    s.refresher.waker.register(cx.waker());
                    TaskPoll::Pending
                }
            })
        })
        .await
    }

    /// Asks Shogun's validate endpoint about the current token, into `info`. It is a
    /// [`Client::call`]: a 401 (the token is dead) rejects the token, fetches a new one
    /// once and asks once more.
    pub async fn validate<const HEAD: usize, const BODY: usize>(
        &self,
        shogun: &tessera_core::Shogun<'_>,
        buffers: &mut CallBuffers<HEAD, BODY>,
        info: &mut tessera_core::TokenInfo,
    ) -> Result<(), Error> {
        let mut url: heapless::String<512> = heapless::String::new();
        shogun
            .validate_url()
            .write_into(&mut url)
            .map_err(Error::Core)?;
        let response = self.call(ApiRequest::get(&url), buffers).await?;
        match shogun.parse_validate(response.status(), response.body()) {
            Ok(r) => info.store(&r).map_err(Error::Core),
            Err(e) => Err(Error::Token {
                kind: e.kind(),
                retry_at: None,
                transport: None,
            }),
        }
    }

    /// Replaces the credentials (secret rotation); wakes the refresher.
    pub fn set_credentials(&self, credentials: Credentials) {
        self.with(|s| {
            s.session.set_credentials(credentials);
            s.refresher.nudge();
        });
    }

    /// Allows one more attempt after refused credentials or during a backoff (a user's
    /// explicit "try again", never a loop); wakes the refresher.
    pub fn retry(&self) {
        self.with(|s| {
            s.session.retry();
            s.refresher.nudge();
        });
    }

    /// Seals the cached token into `out` (a [snapshot](tessera_core::snapshot)), to
    /// [`Client::restore`] after a deep sleep, a reboot or a restart, and returns the bytes
    /// written. `wall` is the wall-clock time now: the token's expiry is stored as absolute
    /// wall time, since the monotonic clock restarts with the chip. `key` seals it (derived
    /// from the credential, or the application's own device key).
    ///
    /// `out` needs [`Resources::SNAPSHOT_CAPACITY`] for the client's capacities; a smaller
    /// one is [`SnapshotError::Capacity`] with the size needed. With no usable token it is
    /// [`SnapshotError::NoToken`]. On any error `out` is wiped. Nothing waits: the session's
    /// lock is held for the sealing only (a handful of HMAC-SHA-256 and one pass of
    /// ChaCha20-Poly1305 over the token), never across I/O, and the session is left as it
    /// was.
    ///
    /// ```no_run
    /// use core::time::Duration;
    /// use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
    /// use tessera_embassy::core::snapshot::{Key, SnapshotError, WallTime};
    /// use tessera_embassy::core::OAuth2;
    /// use tessera_embassy::{Client, Resources};
    /// # type Stack = std_embedded_nal_async::Stack;
    /// type Tessera = Client<'static, CriticalSectionRawMutex, OAuth2<'static>, Stack, Stack>;
    ///
    /// /// Room for a snapshot of the default `Resources`' token.
    /// const ROOM: usize = <Resources>::SNAPSHOT_CAPACITY;
    ///
    /// /// Before a deep sleep: keep the token where the sleep does not reach (RTC memory, a
    /// /// flash sector). The length kept, 0 for nothing.
    /// fn before_sleep(client: &Tessera, wall_now_ms: u64, kept: &mut [u8; ROOM]) -> usize {
    ///     let wall = WallTime::new(wall_now_ms, Duration::from_secs(2));
    ///     match client.save(wall, Key::Credentials, kept) {
    ///         Ok(bytes) => bytes.len(),
    ///         Err(SnapshotError::NoToken) => 0,
    ///         Err(_other) => 0,
    ///     }
    /// }
    ///
    /// /// On wake: a new client (its monotonic clock at zero) takes the token back, and the
    /// /// first `token()` or `call()` sends no token request while it lives. `wall` is `None`
    /// /// unless the wall clock is known to be right (an RTC kept through the sleep, SNTP).
    /// fn on_wake(client: &Tessera, wall: Option<WallTime>, kept: &mut [u8]) {
    ///     match client.restore(wall, Key::Credentials, kept) {
    ///         Ok(restored) => { /* served until restored.usable_until */ }
    ///         // Refused (no wall clock, expired, tampered, another credential…): the
    ///         // next token() fetches as usual.
    ///         Err(_why) => {}
    ///     }
    /// }
    /// ```
    pub fn save<'o>(
        &self,
        wall: WallTime,
        key: Key<'_>,
        out: &'o mut [u8],
    ) -> Result<&'o [u8], SnapshotError> {
        self.with(|s| s.session.snapshot(self.clock.now(), wall, key, out))
    }

    /// Takes back a token [`Client::save`] sealed (see [`Session::restore`]): served with no
    /// token request while it lives, refreshed at the usual margin before its expiry (by
    /// [`Client::refresher`], which is woken). `wall` is the wall-clock time now, given only
    /// when the caller vouches for it; `None` discards the snapshot
    /// ([`SnapshotError::NoWallClock`]).
    ///
    /// `bytes` is decrypted in place and wiped once it has been (the snapshot is then spent:
    /// [`Client::save`] again before the next sleep). Garbage, truncated, tampered or
    /// foreign bytes, an expired token or an untrustworthy clock are refused with the reason,
    /// the client is left as it was, and the next [`Client::token`] fetches as usual.
    ///
    /// An adopted token counts as a fetched one: callers waiting for a token are woken and
    /// served it, and [`Client::tokens_stored`] changes. A restore is **not** refused while
    /// a fetch is in flight: the callers waiting on that fetch are served the restored token
    /// at once (a point of sale never waits on the network for a token it can have), and
    /// the fetch's answer, when it comes, replaces it with the newer token. It replaces a
    /// token already cached too. Restore once at start-up, before the first `token()`.
    pub fn restore(
        &self,
        wall: Option<WallTime>,
        key: Key<'_>,
        bytes: &mut [u8],
    ) -> Result<Restored, SnapshotError> {
        let restored = self.with(|s| {
            let restored = s.session.restore(self.clock.now(), wall, key, bytes)?;
            s.stored = s.stored.wrapping_add(1);
            // As a completed fetch does: waiters look again, the refresher re-plans.
            s.generation = s.generation.wrapping_add(1);
            s.waiters.wake();
            s.refresher.nudge();
            Ok(restored)
        });
        match &restored {
            Ok(_) => diag!(debug, "tessera: token restored from a snapshot"),
            Err(_e) => diag!(info, "tessera: snapshot not restored: {}", _e),
        }
        restored
    }

    /// How many tokens this client has cached (fetched or restored) since it was built: it
    /// changes whenever the token does. Save a snapshot to flash only when it changed, so a
    /// sector is erased once per token lifetime, not once per wake.
    pub fn tokens_stored(&self) -> u32 {
        self.with(|s| s.stored)
    }

    /// Runs `f` with the last failure (code, message, Setu's trace id), if any. `f` runs
    /// under the client's lock: keep it short, and do not call the client from it.
    pub fn failure<R>(&self, f: impl FnOnce(Option<&Failure>) -> R) -> R {
        self.with(|s| f(s.session.failure()))
    }

    /// Runs `f` with the cached grant while its token is usable. `f` runs under the
    /// client's lock: keep it short, and do not call the client from it.
    pub fn grant<R>(&self, f: impl FnOnce(Option<&Grant<TOKEN, REFRESH>>) -> R) -> R {
        self.with(|s| f(s.session.grant(self.clock.now())))
    }

    /// Waits until no fetch is in flight nor handed over: for tests that check what a
    /// background refresh did. Signal-driven.
    #[doc(hidden)]
    pub async fn settled(&self) {
        loop {
            let (idle, seen) = self.with(|s| {
                let idle = !s.session.fetching() && s.refresher.handoff.is_none();
                (idle, s.generation)
            });
            if idle {
                return;
            }
            self.fetch_ended(seen, None).await;
        }
    }

    /// Whether a [`Client::refresher`] future is running: for tests that must not race
    /// its start.
    #[doc(hidden)]
    pub fn refresher_running(&self) -> bool {
        self.with(|s| s.refresher.running)
    }

    /// Whether the fetch buffers are home and all zero (none held a secret or token after
    /// its fetch ended): for tests. `None` while a task holds them.
    #[doc(hidden)]
    pub fn fetch_buffers_wiped(&self) -> Option<bool> {
        self.with(|s| s.fetch.as_ref().map(FetchBuffers::is_wiped))
    }
}

fn last_transport<P: Provider, const TOKEN: usize, const REFRESH: usize>(
    session: &Session<P, TOKEN, REFRESH>,
) -> Option<TransportError> {
    session.failure().and_then(|f| f.cause.transport())
}

fn utf8(bytes: Option<&[u8]>) -> &str {
    bytes
        .and_then(|b| core::str::from_utf8(b).ok())
        .unwrap_or_default()
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// A ticket and the fetch buffers, owned by the task running the fetch. Dropped (the fetch
/// ended, or its future was dropped): the buffers are wiped and returned, a ticket still
/// held is released (no failure, no backoff), and waiters are woken.
struct Held<
    'c,
    'r,
    M: RawMutex,
    P: Provider,
    T: TcpConnect + 'r,
    D,
    C,
    const TOKEN: usize,
    const REFRESH: usize,
> {
    client: &'c Client<'r, M, P, T, D, C, TOKEN, REFRESH>,
    ticket: Option<Ticket>,
    bufs: Option<FetchBuffers<'r>>,
}

impl<
        'c,
        'r,
        M: RawMutex,
        P: Provider,
        T: TcpConnect + 'r,
        D,
        C,
        const TOKEN: usize,
        const REFRESH: usize,
    > Held<'c, 'r, M, P, T, D, C, TOKEN, REFRESH>
{
    fn new(
        client: &'c Client<'r, M, P, T, D, C, TOKEN, REFRESH>,
        ticket: Ticket,
        bufs: FetchBuffers<'r>,
    ) -> Self {
        Held {
            client,
            ticket: Some(ticket),
            bufs: Some(bufs),
        }
    }
}

impl<
        'r,
        M: RawMutex,
        P: Provider,
        T: TcpConnect + 'r,
        D,
        C,
        const TOKEN: usize,
        const REFRESH: usize,
    > Drop for Held<'_, 'r, M, P, T, D, C, TOKEN, REFRESH>
{
    fn drop(&mut self) {
        if let Some(bufs) = self.bufs.as_mut() {
            bufs.wipe();
        }
        let (ticket, bufs) = (self.ticket.take(), self.bufs.take());
        let _released = self.client.shared.lock(|cell| {
            let s = &mut *cell.borrow_mut();
            let released = ticket.map(|t| s.session.release(t));
            if bufs.is_some() {
                s.fetch = bufs;
            }
            s.generation = s.generation.wrapping_add(1);
            s.waiters.wake();
            s.refresher.nudge();
            released
        });
        if let Some(_c) = _released {
            diag!(debug, "tessera: {}", _c);
        }
    }
}

/// Marks the refresher running while its future lives; a refresh handed to it and not
/// started is released when it stops.
struct Running<
    'c,
    'r,
    M: RawMutex,
    P: Provider,
    T: TcpConnect + 'r,
    D,
    C,
    const TOKEN: usize,
    const REFRESH: usize,
> {
    client: &'c Client<'r, M, P, T, D, C, TOKEN, REFRESH>,
}

impl<
        'c,
        'r,
        M: RawMutex,
        P: Provider,
        T: TcpConnect + 'r,
        D,
        C,
        const TOKEN: usize,
        const REFRESH: usize,
    > Running<'c, 'r, M, P, T, D, C, TOKEN, REFRESH>
{
    fn start(client: &'c Client<'r, M, P, T, D, C, TOKEN, REFRESH>) -> Self {
        client
            .shared
            .lock(|cell| cell.borrow_mut().refresher.running = true);
        Running { client }
    }
}

impl<
        'r,
        M: RawMutex,
        P: Provider,
        T: TcpConnect + 'r,
        D,
        C,
        const TOKEN: usize,
        const REFRESH: usize,
    > Drop for Running<'_, 'r, M, P, T, D, C, TOKEN, REFRESH>
{
    fn drop(&mut self) {
        self.client.shared.lock(|cell| {
            let s = &mut *cell.borrow_mut();
            s.refresher.running = false;
            if let Some(ticket) = s.refresher.handoff.take() {
                let _ = s.session.release(ticket);
                s.generation = s.generation.wrapping_add(1);
                s.waiters.wake();
            }
        });
    }
}
