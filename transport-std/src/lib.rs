//! # tessera-std
//!
//! A blocking, thread-safe Tessera client for host applications: it drives the
//! `tessera-core` [`Session`] over [ureq](https://docs.rs/ureq) with `std::time::Instant`.
//!
//! - [`Client::token`] returns a bearer token: cached, refreshed before expiry (in the
//!   background, so no caller waits for a refresh), and fetched once however many threads
//!   ask at the same moment: the others wait for that fetch, they do not start their own.
//! - [`Client::call`] attaches `Authorization: Bearer …` to a downstream call; on a 401 it
//!   reports the token rejected, fetches a new one once and retries once.
//! - [`Client::start_refresher`] keeps the token fresh from a background thread.
//!
//! ```no_run
//! use tessera_std::{Client, core::{Credentials, OAuth2}};
//!
//! let idp = OAuth2::new("https://idp.example/oauth2/token").with_scope("payments");
//! let creds = Credentials::new("terminal-7", &std::env::var("CLIENT_SECRET")?)?;
//! let client = Client::new(idp, creds);
//! let response = client.call("GET", "https://api.example/v1/balance", None)?;
//! println!("{} {}", response.status, String::from_utf8_lossy(&response.body));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

pub use tessera_core as core;
use tessera_core::session::{Cause, Completion, Config, Failure, Poll, Session, Ticket};
use tessera_core::{
    Bearer, Clock, Credentials, ErrorKind, Grant, Instant, Provider, Shogun, Stage, TokenId,
    TokenInfo, TransportError, DEFAULT_REFRESH_CAPACITY, DEFAULT_TOKEN_CAPACITY,
};
use ureq::http;
use zeroize::Zeroize;

/// `log::debug!` with the `log` feature; without it the arguments are type-checked, never
/// evaluated.
macro_rules! debug {
    ($($t:tt)*) => {{
        #[cfg(feature = "log")]
        {
            log::debug!($($t)*);
        }
        #[cfg(not(feature = "log"))]
        {
            if false {
                let _ = format_args!($($t)*);
            }
        }
    }};
}

/// `log::warn!`, likewise.
macro_rules! warn {
    ($($t:tt)*) => {{
        #[cfg(feature = "log")]
        {
            log::warn!($($t)*);
        }
        #[cfg(not(feature = "log"))]
        {
            if false {
                let _ = format_args!($($t)*);
            }
        }
    }};
}

/// `std::time::Instant` as the core's monotonic clock (milliseconds since the client was
/// made).
#[derive(Clone, Copy, Debug)]
pub struct StdClock {
    origin: std::time::Instant,
}

impl StdClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        StdClock {
            origin: std::time::Instant::now(),
        }
    }

    /// The `std` instant of a core instant on this clock.
    pub fn to_std(&self, at: Instant) -> std::time::Instant {
        self.origin + Duration::from_millis(at.as_millis())
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for StdClock {
    fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// Network and buffer settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// The token lifecycle's settings.
    pub session: Config,
    /// Seed of the backoff jitter. The default is random per process, so hosts that failed
    /// together do not retry together.
    pub jitter_seed: u64,
    /// Connect timeout. Default 10 s.
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, send, receive). Default 30 s.
    pub request_timeout: Duration,
    /// Largest response body read; a larger one is an error, never a memory blow-up.
    /// Default 64 KiB.
    pub max_body: usize,
    /// Buffer for the token request (body and `Authorization`). Default 4 KiB.
    pub request_buffer: usize,
    /// Run a due refresh on a background thread (default), so the caller that triggers it
    /// does not wait; `false` runs it in that caller's thread (single-threaded tools, tests).
    pub refresh_in_background: bool,
}

impl Default for Options {
    fn default() -> Self {
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            // Per-process randomness for the backoff jitter: no two hosts retry in step.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::process::id().into());
            h.finish()
        };
        let session = Config::default();
        Options {
            jitter_seed: seed,
            connect_timeout: Duration::from_secs(10),
            request_timeout: session.fetch_timeout,
            session,
            max_body: 64 * 1024,
            request_buffer: 4096,
            refresh_in_background: true,
        }
    }
}

/// What went wrong.
#[derive(Debug)]
pub enum Error {
    /// No token could be had: the session's last failure (invalid credentials, rate
    /// limited, server error, network, …). `retry_in` is set while fetches back off.
    Token {
        /// Why (boxed: the provider's words make it large).
        failure: Box<Failure>,
        /// When a fetch will be tried again (none for refused credentials).
        retry_in: Option<Duration>,
    },
    /// A downstream call did not complete at the network level.
    Transport(ureq::Error),
    /// A downstream response was larger than [`Options::max_body`].
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A local limit in the core (e.g. an authorization header buffer).
    Core(tessera_core::Error),
}

impl Error {
    /// The group callers act on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Token { failure, .. } => failure.kind(),
            Error::Transport(_) => ErrorKind::Transport,
            Error::BodyTooLarge { .. } => ErrorKind::Capacity,
            Error::Core(e) => e.kind(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Token {
                failure,
                retry_in: Some(d),
            } => {
                write!(
                    f,
                    "no token: {failure}; next attempt in {} ms",
                    d.as_millis()
                )
            }
            Error::Token {
                failure,
                retry_in: None,
            } => write!(f, "no token: {failure}"),
            Error::Transport(e) => write!(f, "network error: {e}"),
            Error::BodyTooLarge { limit } => write!(f, "response body larger than {limit} bytes"),
            Error::Core(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Token { failure, .. } => Some(failure.as_ref()),
            Error::Transport(e) => Some(e),
            _ => None,
        }
    }
}

/// A bearer token handed out by [`Client::token`]. Its `Debug` hides the value, and the
/// value is wiped from memory when the last copy is dropped.
///
/// Cheap to clone: every caller handed the same token shares one copy of it (so the hot path,
/// a cached token, allocates nothing).
#[derive(Clone)]
pub struct Token {
    shared: Arc<Shared>,
    id: TokenId,
}

/// One token's value and scopes, shared by every [`Token`] handed out for it.
struct Shared {
    value: String,
    scopes: Vec<String>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl Token {
    /// The token, for `Authorization: Bearer <token>`.
    pub fn as_str(&self) -> &str {
        &self.shared.value
    }

    /// Which token this is, for [`Client::reject`].
    pub fn id(&self) -> TokenId {
        self.id
    }

    /// Whether the grant carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.shared.scopes.iter().any(|s| s == scope)
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.shared.scopes
    }

    fn from_grant(grant: &Grant, id: TokenId) -> Self {
        Token {
            shared: Arc::new(Shared {
                value: grant.access_token().to_owned(),
                scopes: grant.scopes().iter().map(str::to_owned).collect(),
            }),
            id,
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field(
                "value",
                &format_args!("<redacted {} bytes>", self.shared.value.len()),
            )
            .field("id", &self.id)
            .field("scopes", &self.shared.scopes)
            .finish()
    }
}

/// A downstream response.
#[derive(Clone, Debug)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body (at most [`Options::max_body`] bytes).
    pub body: Vec<u8>,
}

struct Inner<P> {
    session: Mutex<Session<P>>,
    /// The last token handed out, shared with the next caller that gets the same one.
    /// Locked only while `session` is held.
    handed_out: Mutex<Option<Token>>,
    /// Signalled whenever a fetch completes or the credentials change.
    changed: Condvar,
    agent: ureq::Agent,
    clock: Arc<dyn Clock + Send + Sync>,
    options: Options,
}

/// A blocking, thread-safe token client for one provider. Cheap to clone: clones share the
/// token and its lifecycle.
pub struct Client<P> {
    inner: Arc<Inner<P>>,
}

impl<P> Clone for Client<P> {
    fn clone(&self) -> Self {
        Client {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P: fmt::Debug> fmt::Debug for Client<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.inner.session)
            .finish()
    }
}

/// What a finished fetch exchanged on the wire.
struct Exchange {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl<P: Provider + Send + 'static> Client<P> {
    /// A client with the default [`Options`].
    pub fn new(provider: P, credentials: Credentials) -> Self {
        Self::with_options(provider, credentials, Options::default())
    }

    /// A client with explicit options.
    pub fn with_options(provider: P, credentials: Credentials, options: Options) -> Self {
        Self::with_clock(provider, credentials, options, Arc::new(StdClock::new()))
    }

    /// A client on another monotonic clock (tests drive one by hand).
    pub fn with_clock(
        provider: P,
        credentials: Credentials,
        options: Options,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.request_timeout))
            .build()
            .into();
        let session = Session::new(provider, credentials, options.session, options.jitter_seed);
        Client {
            inner: Arc::new(Inner {
                session: Mutex::new(session),
                handed_out: Mutex::new(None),
                changed: Condvar::new(),
                agent,
                clock,
                options,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Session<P>> {
        // A panic while holding the lock cannot leave the session inconsistent (every
        // transition is a few assignments), so a poisoned lock is still usable.
        self.inner.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A bearer token: the cached one while it is fresh; otherwise this thread fetches one
    /// (or waits for the thread already fetching). When the token is due for refresh it is
    /// returned at once and refreshed on a background thread.
    pub fn token(&self) -> Result<Token, Error> {
        let mut session = self.lock();
        loop {
            let now = self.inner.clock.now();
            match session.poll(now) {
                Poll::Ready(bearer) => return Ok(self.hand_out(bearer)),
                Poll::Refresh(bearer, ticket) => {
                    let token = self.hand_out(bearer);
                    drop(session);
                    if self.inner.options.refresh_in_background {
                        debug!("tessera: refreshing the token in the background");
                        let me = self.clone();
                        std::thread::spawn(move || me.fetch(ticket));
                    } else {
                        self.fetch(ticket);
                    }
                    return Ok(token);
                }
                Poll::Fetch(ticket) => {
                    drop(session);
                    self.fetch(ticket);
                    session = self.lock();
                }
                Poll::Wait(until) => {
                    let wait = until
                        .saturating_duration_since(now)
                        .max(Duration::from_millis(1));
                    session = match self.inner.changed.wait_timeout(session, wait) {
                        Ok((guard, _)) => guard,
                        Err(p) => p.into_inner().0,
                    };
                }
                Poll::Backoff { until, .. } => {
                    let retry_in = Some(until.saturating_duration_since(now));
                    return Err(Self::token_error(&session, retry_in));
                }
                Poll::Failed(_) => return Err(Self::token_error(&session, None)),
            }
        }
    }

    /// The [`Token`] for `bearer`: the copy already handed out when it is the same token.
    fn hand_out(
        &self,
        bearer: Bearer<'_, DEFAULT_TOKEN_CAPACITY, DEFAULT_REFRESH_CAPACITY>,
    ) -> Token {
        let mut last = self
            .inner
            .handed_out
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some(t) if t.id == bearer.id() => t.clone(),
            _ => {
                let t = Token::from_grant(bearer.grant(), bearer.id());
                *last = Some(t.clone());
                t
            }
        }
    }

    fn token_error(session: &Session<P>, retry_in: Option<Duration>) -> Error {
        let failure = session.failure().cloned().unwrap_or(Failure {
            cause: Cause::Transport(TransportError::ABANDONED),
            at: Instant::ZERO,
        });
        Error::Token {
            failure: Box::new(failure),
            retry_in,
        }
    }

    /// Runs the token request for `ticket` and hands the outcome back to the session.
    /// The session lock is not held while on the network.
    fn fetch(&self, ticket: Ticket) {
        let mut buf = vec![0u8; self.inner.options.request_buffer];
        let built = {
            let session = self.lock();
            match session.request(&ticket, &mut buf) {
                Ok(r) => Ok((
                    r.method.as_str(),
                    r.url.to_string(),
                    r.content_type,
                    r.authorization.map(str::to_owned),
                    r.body.to_vec(),
                )),
                Err(e) => Err(e),
            }
        };
        buf.zeroize();
        let completion = match built {
            Err(e) => {
                let now = self.inner.clock.now();
                self.lock().on_failure(ticket, now, Cause::Local(e))
            }
            Ok((method, url, content_type, mut authorization, mut body)) => {
                debug!("tessera: token request {method} {url}");
                let result =
                    self.exchange(method, &url, content_type, authorization.as_deref(), &body);
                body.zeroize();
                if let Some(a) = authorization.as_mut() {
                    a.zeroize();
                }
                let now = self.inner.clock.now();
                let mut session = self.lock();
                match result {
                    Ok(x) => session.on_response(ticket, now, x.status, x.retry_after, &x.body),
                    Err(FetchError::TooLarge) => {
                        let error = tessera_core::Error::Capacity {
                            field: "response body",
                            needed: self.inner.options.max_body.saturating_add(1),
                            capacity: self.inner.options.max_body,
                        };
                        session.on_failure(ticket, now, Cause::Local(error))
                    }
                    Err(FetchError::Network) => session.on_failure(
                        ticket,
                        now,
                        Cause::Transport(TransportError::new(Stage::Io, "network error")),
                    ),
                }
            }
        };
        match completion {
            Completion::Stored => debug!("tessera: new token stored"),
            Completion::Failed => warn!("tessera: token fetch failed: {}", self.failure_text()),
            Completion::Stale | Completion::Released => debug!("tessera: {completion}"),
        }
        self.inner.changed.notify_all();
    }

    fn failure_text(&self) -> String {
        self.lock()
            .failure()
            .map(|f| f.to_string())
            .unwrap_or_default()
    }

    fn exchange(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<Exchange, FetchError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .header("Accept", "application/json");
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        let req = req.body(body.to_vec()).map_err(|_| FetchError::Network)?;
        let mut response = self.inner.agent.run(req).map_err(|_e| {
            warn!("tessera: network error: {_e}");
            FetchError::Network
        })?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = read_body(&mut response, self.inner.options.max_body)?;
        Ok(Exchange {
            status,
            retry_after,
            body,
        })
    }

    /// Sends a downstream API call with the bearer token. On a 401, the token is reported
    /// rejected, a new one is fetched once and the call is retried once.
    pub fn call(
        &self,
        method: &str,
        url: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<ApiResponse, Error> {
        let token = self.token()?;
        let first = self.send_with(&token, method, url, body)?;
        if first.status != 401 {
            return Ok(first);
        }
        debug!("tessera: 401 from {url}: token rejected, fetching a new one");
        self.reject(&token);
        let token = self.token()?;
        self.send_with(&token, method, url, body)
    }

    fn send_with(
        &self,
        token: &Token,
        method: &str,
        url: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<ApiResponse, Error> {
        let mut bearer = format!("Bearer {}", token.as_str());
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .header("Authorization", bearer.as_str());
        bearer.zeroize();
        let payload = match body {
            Some((content_type, bytes)) => {
                req = req.header("Content-Type", content_type);
                bytes.to_vec()
            }
            None => Vec::new(),
        };
        let req = req
            .body(payload)
            .map_err(|e| Error::Transport(ureq::Error::Http(e)))?;
        let mut response = self.inner.agent.run(req).map_err(Error::Transport)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_body(&mut response, self.inner.options.max_body).map_err(|e| match e {
            FetchError::TooLarge => Error::BodyTooLarge {
                limit: self.inner.options.max_body,
            },
            FetchError::Network => Error::Transport(ureq::Error::ConnectionFailed),
        })?;
        Ok(ApiResponse {
            status,
            content_type,
            body,
        })
    }

    /// Reports `token` rejected by a downstream API: it is dropped if it is still the cached
    /// one, so the next [`Client::token`] fetches a new one. Returns whether it was dropped.
    pub fn reject(&self, token: &Token) -> bool {
        let mut session = self.lock();
        self.forget(token.id());
        session.reject(token.id())
    }

    /// Drops the client's shared copy of token `id` (callers' copies live on until dropped).
    fn forget(&self, id: TokenId) {
        let mut last = self
            .inner
            .handed_out
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.as_ref().is_some_and(|t| t.id == id) {
            *last = None;
        }
    }

    /// Asks Shogun's validate endpoint about the current token. A 401 there means the token
    /// is dead: it is rejected, a new one fetched, and the question asked once more.
    pub fn validate(&self, shogun: &Shogun<'_>) -> Result<TokenInfo, Error> {
        let mut retried = false;
        loop {
            let token = self.token()?;
            let mut buf = vec![0u8; token.as_str().len() + 16];
            let req = shogun
                .validate_request(token.as_str(), &mut buf)
                .map_err(Error::Core)?;
            let x = self
                .exchange(
                    req.method.as_str(),
                    &req.url.to_string(),
                    None,
                    req.authorization,
                    &[],
                )
                .map_err(|e| match e {
                    FetchError::TooLarge => Error::BodyTooLarge {
                        limit: self.inner.options.max_body,
                    },
                    FetchError::Network => Error::Transport(ureq::Error::ConnectionFailed),
                });
            buf.zeroize();
            let x = x?;
            match shogun.parse_validate(x.status, &x.body) {
                Ok(r) => {
                    let mut info = TokenInfo::default();
                    info.store(&r).map_err(Error::Core)?;
                    return Ok(info);
                }
                Err(e) if e.kind() == ErrorKind::TokenInvalid && !retried => {
                    self.reject(&token);
                    retried = true;
                }
                Err(e) => {
                    let now = self.inner.clock.now();
                    return Err(Error::Token {
                        failure: Box::new(Failure {
                            cause: Cause::Response(e.to_report()),
                            at: now,
                        }),
                        retry_in: None,
                    });
                }
            }
        }
    }

    /// Replaces the credentials (secret rotation); wakes any waiting caller.
    pub fn set_credentials(&self, credentials: Credentials) {
        self.lock().set_credentials(credentials);
        self.inner.changed.notify_all();
    }

    /// Allows one more attempt after refused credentials or during a backoff. For an
    /// explicit user action, never a loop.
    pub fn retry(&self) {
        self.lock().retry();
        self.inner.changed.notify_all();
    }

    /// Wakes the threads waiting on the session (the refresher, callers waiting for a
    /// fetch) so they read the clock again. Only a clock that jumps, such as a test's manual
    /// clock, needs this: with the real clock their waits end on time by themselves.
    pub fn wake_waiters(&self) {
        let _held = self.lock();
        self.inner.changed.notify_all();
    }

    /// A copy of the cached grant (expiry, refresh token, scopes) while its token is usable.
    pub fn grant(&self) -> Option<Box<Grant>> {
        let now = self.inner.clock.now();
        self.lock().grant(now).map(|g| Box::new(g.clone()))
    }

    /// The last failure, until a fetch succeeds.
    pub fn failure(&self) -> Option<Failure> {
        self.lock().failure().cloned()
    }

    /// The clock the client runs on.
    pub fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    /// Starts a thread that keeps the token fresh, so callers never wait for a fetch. It
    /// stops when the returned handle is dropped.
    pub fn start_refresher(&self) -> Refresher {
        let stop = Arc::new(AtomicBool::new(false));
        let client = self.clone();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || client.refresh_loop(&flag));
        let client = self.clone();
        // Notify under the lock: the thread is then either before its stop check or
        // waiting, never in between, so the wake-up cannot be lost.
        let wake = Box::new(move || {
            let _held = client.lock();
            client.inner.changed.notify_all();
        });
        Refresher {
            stop,
            thread: Some(thread),
            wake,
        }
    }

    fn refresh_loop(&self, stop: &AtomicBool) {
        let mut session = self.lock();
        while !stop.load(Ordering::Acquire) {
            let now = self.inner.clock.now();
            let sleep_until = match session.poll(now) {
                Poll::Ready(bearer) => Some(bearer.refresh_at()),
                Poll::Refresh(_, ticket) | Poll::Fetch(ticket) => {
                    drop(session);
                    self.fetch(ticket);
                    session = self.lock();
                    continue;
                }
                Poll::Wait(until) | Poll::Backoff { until, .. } => Some(until),
                // Refused credentials: sleep until they change.
                Poll::Failed(_) => None,
            };
            let wait = sleep_until.map_or(Duration::from_secs(3600), |u| {
                u.saturating_duration_since(now)
            });
            session = match self
                .inner
                .changed
                .wait_timeout(session, wait.max(Duration::from_millis(1)))
            {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

enum FetchError {
    Network,
    TooLarge,
}

fn read_body(
    response: &mut http::Response<ureq::Body>,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge,
            _ => FetchError::Network,
        })
}

/// `Retry-After` in seconds (the HTTP-date form needs a wall clock and is ignored).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// The background refresher; dropping it stops the thread.
pub struct Refresher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    wake: Box<dyn Fn() + Send>,
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        (self.wake)();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl fmt::Debug for Refresher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refresher")
            .field("running", &!self.stop.load(Ordering::Relaxed))
            .finish()
    }
}
