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
use tessera_core::session::{
    Cause, Completion, Config, Failure, Poll, Restored, Session, Step, Ticket,
};
use tessera_core::snapshot::{Key, SnapshotError, WallTime};
use tessera_core::transport::{check_url, AfterCall, Downstream};

use crate::connector::{Connector, Policy, KEPT_CONNECTIONS};
use tessera_core::{
    bearer_header, Bearer, Clock, Credentials, Grant, Instant, Layout, Provider, TokenId,
    TransportError,
};

use crate::error::{Error, Fault};
use crate::http::{ApiRequest, ApiResponse, Exchanged, Outgoing, MAX_EXTRA_HEADERS};
use crate::kept::{Keep, WireStats};
use crate::resources::{CallBuffers, FetchBuffers, Records, Resources, Wipe};

mod call;
mod fetch;
mod refresher;
mod snapshot;

use fetch::Held;

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
    /// How many connections are kept for the next request to their origin, at most
    /// [`KEPT_CONNECTIONS`] (more are not kept). Default [`KEPT_CONNECTIONS`] (2: token host
    /// and API host). Each holds a socket of the stack's pool (and, with MbedTLS, about
    /// 37 KiB of heap); 0 keeps none.
    pub kept_connections: usize,
    /// How long a kept connection waits for its next request at most (less when the
    /// server's `Keep-Alive: timeout=` says so). Default 30 s.
    pub kept_for: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session: Config::default(),
            timeout: Duration::from_secs(10),
            kept_connections: KEPT_CONNECTIONS,
            kept_for: Duration::from_secs(30),
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

/// How many distinct tasks can wait for a fetch without extra wake-ups. More waiters are
/// still woken (all of them, once more), never lost.
const WAITERS: usize = 8;

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

/// An async token client for one provider, shared by tasks through `&Client`.
///
/// - `M`: the raw mutex guarding the session (`CriticalSectionRawMutex` when tasks run on
///   several executors or interrupt priorities, `NoopRawMutex` on one executor). It is
///   held only while the session decides (microseconds), never across network I/O.
/// - `P`: the provider; `N`: the [`Connector`] — the network stack (embassy-net's
///   `TcpClient` and `DnsSocket`) and the TLS backend: [`Plain`](crate::Plain),
///   `EmbeddedTls` (feature `tls`) or `Mbedtls` (feature `mbedtls`); `C`: the lifecycle's
///   clock ([`EmbassyClock`]; tests inject a manual one).
/// - `TOKEN`, `REFRESH`: the session's capacities, from the [`Resources`] given.
pub struct Client<
    'r,
    M: RawMutex,
    P,
    N: Connector<'r>,
    C = EmbassyClock,
    const TOKEN: usize = 2048,
    const REFRESH: usize = 1024,
> {
    shared: Mutex<M, RefCell<Shared<'r, P, TOKEN, REFRESH>>>,
    connector: N,
    clock: C,
    timeout: Duration,
    keep: Keep,
    allow_insecure_http: bool,
    /// embedded-tls's record slots, in the resources (feature `tls`; nothing otherwise).
    records: Records<'r>,
}

/// The optional parts of a [`Client`]: settings, clock. From [`Client::builder`].
pub struct Builder<'r, M, P, N, C, const TOKEN: usize, const REFRESH: usize> {
    mutex: PhantomData<M>,
    provider: P,
    credentials: Credentials,
    connector: N,
    fetch: FetchBuffers<'r>,
    records: Records<'r>,
    seed: u64,
    settings: Settings,
    clock: C,
}

impl<
        'r,
        M: RawMutex,
        P: Provider,
        N: Connector<'r>,
        C: Clock,
        const TOKEN: usize,
        const REFRESH: usize,
    > Builder<'r, M, P, N, C, TOKEN, REFRESH>
{
    /// Lifecycle settings and the network timeout.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Another clock for the lifecycle (tests inject a manual one).
    pub fn clock<C2: Clock>(self, clock: C2) -> Builder<'r, M, P, N, C2, TOKEN, REFRESH> {
        Builder {
            mutex: PhantomData,
            provider: self.provider,
            credentials: self.credentials,
            connector: self.connector,
            fetch: self.fetch,
            records: self.records,
            seed: self.seed,
            settings: self.settings,
            clock,
        }
    }

    /// The client.
    pub fn build(self) -> Client<'r, M, P, N, C, TOKEN, REFRESH> {
        Client {
            shared: Mutex::new(RefCell::new(Shared {
                session: Session::new(
                    self.provider,
                    self.credentials,
                    self.settings.session,
                    self.seed,
                ),
                fetch: Some(self.fetch),
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
            connector: self.connector,
            clock: self.clock,
            timeout: self.settings.timeout,
            keep: Keep {
                limit: self.settings.kept_connections,
                idle: core::time::Duration::from_millis(self.settings.kept_for.as_millis()),
            },
            allow_insecure_http: self.settings.session.allow_insecure_http,
            records: self.records,
        }
    }
}

impl<'r, M, P, N, const TOKEN: usize, const REFRESH: usize>
    Client<'r, M, P, N, EmbassyClock, TOKEN, REFRESH>
where
    M: RawMutex,
    P: Provider,
    N: Connector<'r>,
{
    /// A client for `provider` with `credentials`, reaching servers through `connector`
    /// ([`Plain`](crate::Plain), `EmbeddedTls` or `Mbedtls`), with its buffers in
    /// `resources` and the default [`Settings`]. The jitter seed is drawn from `rng` (the
    /// chip's RNG).
    pub fn new<const REQUEST: usize, const HEADERS: usize, const BODY: usize>(
        provider: P,
        credentials: Credentials,
        connector: N,
        resources: &'r mut Resources<TOKEN, REQUEST, HEADERS, BODY, REFRESH>,
        rng: &mut (impl rand_core::RngCore + ?Sized),
    ) -> Self {
        Self::builder(provider, credentials, connector, resources, rng).build()
    }

    /// [`Client::new`] with options: `.settings(…)`, `.clock(…)`, then `.build()`.
    pub fn builder<const REQUEST: usize, const HEADERS: usize, const BODY: usize>(
        provider: P,
        credentials: Credentials,
        connector: N,
        resources: &'r mut Resources<TOKEN, REQUEST, HEADERS, BODY, REFRESH>,
        rng: &mut (impl rand_core::RngCore + ?Sized),
    ) -> Builder<'r, M, P, N, EmbassyClock, TOKEN, REFRESH> {
        let (fetch, records) = resources.split();
        Builder {
            mutex: PhantomData,
            provider,
            credentials,
            connector,
            fetch,
            records,
            seed: rng.next_u64(),
            settings: Settings::default(),
            clock: EmbassyClock,
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

impl<'r, M, P, N, C, const TOKEN: usize, const REFRESH: usize>
    Client<'r, M, P, N, C, TOKEN, REFRESH>
where
    M: RawMutex,
    P: Provider,
    N: Connector<'r>,
    C: Clock,
{
    fn with<R>(&self, f: impl FnOnce(&mut Shared<'r, P, TOKEN, REFRESH>) -> R) -> R {
        self.shared.lock(|cell| f(&mut cell.borrow_mut()))
    }

    fn policy(&self) -> Policy {
        Policy {
            timeout: self.timeout,
            wall_now: self.wall_now(),
            keep: self.keep,
        }
    }

    /// One exchange through the connector (embedded-tls takes a record slot of the
    /// resources for each TLS connection).
    async fn send(
        &self,
        out: Outgoing<'_>,
        rx: &mut [u8],
        into: &mut [u8],
        keep_headers: bool,
        safe: bool,
    ) -> Result<Exchanged, Fault> {
        self.connector
            .exchange(
                self.policy(),
                self.records,
                out,
                rx,
                into,
                keep_headers,
                safe,
            )
            .await
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
        self.connector.close_all();
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

    /// Whether every TLS record slot is home and all zero (feature `tls`): for tests.
    /// `None` while a connection holds one.
    #[cfg(feature = "tls")]
    #[doc(hidden)]
    pub fn tls_records_wiped(&self) -> Option<bool> {
        self.records.wiped()
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
