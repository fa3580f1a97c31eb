//! [`Client`]: the token lifecycle driven over threads: the session behind a mutex held
//! only for the core's decisions, fetches on the network with no lock held, a condvar for
//! callers waiting on a fetch and for the refresher.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tessera_core::session::{Cause, Completion, Failure, Poll, Session, Step, Ticket};
use tessera_core::transport::{body_too_large, retry_after};
use tessera_core::{
    Bearer, Clock, Credentials, ErrorKind, Grant, Instant, Provider, TransportError,
    DEFAULT_REFRESH_CAPACITY, DEFAULT_TOKEN_CAPACITY,
};
use ureq::http;
use zeroize::Zeroizing;

use crate::clock::StdClock;
use crate::error::{cause, BodyError, Error};
use crate::options::Options;
use crate::token::Token;
use crate::wire::{read_body, to_http, Http};

mod fleet;

/// The network error behind the session's last failure, kept for [`Error::Token`]'s
/// `source()`.
struct LastError {
    /// The failure's instant, so an error is never attached to a later failure.
    at: Instant,
    error: Arc<ureq::Error>,
}

pub(crate) struct Inner<P, const TOKEN: usize, const REFRESH: usize> {
    session: Mutex<Session<P, TOKEN, REFRESH>>,
    /// The last token handed out, shared with the next caller that gets the same one.
    /// Locked only while `session` is held.
    handed_out: Mutex<Option<Token>>,
    /// Locked only while `session` is held.
    last_error: Mutex<Option<LastError>>,
    /// Signalled whenever a fetch completes or the credentials change.
    changed: Condvar,
    /// The token store failed and has not answered since (warned once).
    store_down: AtomicBool,
    /// The fleet's lease was held past the wait (warned once until a lease is had again).
    lease_stuck: AtomicBool,
    /// The session's refusal is the fleet's (adopted from the store, or stored there): it
    /// ends when the store's record goes.
    refusal_shared: AtomicBool,
    /// The store's record of the cached token, as this process restored or saved it.
    record: Mutex<Option<fleet::Record>>,
    /// Token requests this client sent to the provider.
    requests: AtomicU64,
    pub(crate) http: Http,
    pub(crate) clock: Arc<dyn Clock + Send + Sync>,
    pub(crate) options: Options,
}

/// A blocking, thread-safe token client for one provider. Cheap to clone: clones share the
/// token and its lifecycle.
///
/// `TOKEN` and `REFRESH` are the largest access and refresh tokens it keeps (bytes; a
/// larger one is a typed `capacity` error, never a truncation): raise `TOKEN` for JWTs with
/// many claims, e.g. `Client<OwnedProvider, 8192>` made with [`Client::with_capacity`].
pub struct Client<
    P,
    const TOKEN: usize = DEFAULT_TOKEN_CAPACITY,
    const REFRESH: usize = DEFAULT_REFRESH_CAPACITY,
> {
    pub(crate) inner: Arc<Inner<P, TOKEN, REFRESH>>,
}

impl<P, const TOKEN: usize, const REFRESH: usize> Clone for Client<P, TOKEN, REFRESH> {
    fn clone(&self) -> Self {
        Client {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P: fmt::Debug, const TOKEN: usize, const REFRESH: usize> fmt::Debug
    for Client<P, TOKEN, REFRESH>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.inner.session)
            .finish()
    }
}

impl<P: Provider + Send + 'static> Client<P> {
    /// A client with the default [`Options`] and token capacities.
    pub fn new(provider: P, credentials: Credentials) -> Self {
        Self::with_options(provider, credentials, Options::default())
    }

    /// A client with explicit options (default token capacities; see
    /// [`Client::with_capacity`] for others).
    pub fn with_options(provider: P, credentials: Credentials, options: Options) -> Self {
        Self::with_capacity(provider, credentials, options)
    }

    /// A client on another monotonic clock (tests drive one by hand).
    pub fn with_clock(
        provider: P,
        credentials: Credentials,
        options: Options,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Self {
        Self::with_capacity_and_clock(provider, credentials, options, clock)
    }
}

impl<P: Provider + Send + 'static, const TOKEN: usize, const REFRESH: usize>
    Client<P, TOKEN, REFRESH>
{
    /// A client keeping tokens of up to `TOKEN` bytes (refresh tokens up to `REFRESH`),
    /// named by the type:
    ///
    /// ```
    /// use tessera_std::{Client, Options, OwnedProvider};
    /// use tessera_std::core::{Credentials, ProviderKind};
    ///
    /// let idp = OwnedProvider::new(ProviderKind::OAuth2, "https://idp.example/oauth2/token");
    /// let creds = Credentials::new("terminal-7", "s3cr3t")?;
    /// // JWTs with many claims: 8 KiB.
    /// let client: Client<_, 8192> = Client::with_capacity(idp, creds, Options::default());
    /// # Ok::<(), tessera_std::core::Error>(())
    /// ```
    pub fn with_capacity(provider: P, credentials: Credentials, options: Options) -> Self {
        Self::with_capacity_and_clock(provider, credentials, options, Arc::new(StdClock::new()))
    }

    /// [`Client::with_capacity`] on another monotonic clock.
    pub fn with_capacity_and_clock(
        provider: P,
        credentials: Credentials,
        options: Options,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Self {
        let session = Session::new(provider, credentials, options.session, options.jitter_seed);
        Client {
            inner: Arc::new(Inner {
                session: Mutex::new(session),
                handed_out: Mutex::new(None),
                last_error: Mutex::new(None),
                changed: Condvar::new(),
                store_down: AtomicBool::new(false),
                lease_stuck: AtomicBool::new(false),
                refusal_shared: AtomicBool::new(false),
                record: Mutex::new(None),
                requests: AtomicU64::new(0),
                http: Http::new(&options),
                clock,
                options,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Session<P, TOKEN, REFRESH>> {
        // A panic while holding the lock cannot leave the session inconsistent (every
        // transition is a few assignments), so a poisoned lock is still usable.
        self.inner.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'g>(
        &self,
        session: MutexGuard<'g, Session<P, TOKEN, REFRESH>>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'g, Session<P, TOKEN, REFRESH>> {
        let changed = &self.inner.changed;
        match timeout {
            Some(t) => match changed.wait_timeout(session, t.max(Duration::from_millis(1))) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            },
            None => changed.wait(session).unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// A bearer token: the cached one while it is fresh; otherwise this thread fetches one
    /// (or waits for the thread already fetching). When the token is due for refresh it is
    /// returned at once and refreshed on a background thread (or in this one, without
    /// [`Options::refresh_in_background`]).
    pub fn token(&self) -> Result<Token, Error> {
        let mut session = self.lock();
        // The fleet's refusal is looked up at most once per call, so a record that reads
        // as gone can never turn one call into a loop of requests.
        let mut looked = false;
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
                        // If no thread can be had, the ticket is dropped with the closure
                        // and the session abandons it after `fetch_timeout`: never a panic
                        // in a caller that has its token.
                        let _ = std::thread::Builder::new()
                            .name("tessera-refresh".into())
                            .spawn(move || me.fetch(ticket));
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
                    session = self.wait(session, Some(until.saturating_duration_since(now)));
                }
                Poll::Backoff { until, .. } => {
                    let retry_in = Some(until.saturating_duration_since(now));
                    return Err(self.token_error(&session, retry_in));
                }
                Poll::Failed(kind) => {
                    let store = self.inner.options.store.clone();
                    if let (ErrorKind::InvalidCredentials, Some(store), false) =
                        (kind, store, looked)
                    {
                        looked = true;
                        drop(session);
                        let gone = self.fleet_refusal_gone(store.as_ref());
                        session = self.lock();
                        if gone {
                            session.retry();
                            continue;
                        }
                    }
                    return Err(self.token_error(&session, None));
                }
            }
        }
    }

    /// The [`Token`] for `bearer`: the copy already handed out when it is the same token.
    fn hand_out(&self, bearer: Bearer<'_, TOKEN, REFRESH>) -> Token {
        let mut last = self
            .inner
            .handed_out
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some(t) if t.id() == bearer.id() => t.clone(),
            _ => {
                let t = Token::from_grant(bearer.grant(), bearer.id());
                *last = Some(t.clone());
                t
            }
        }
    }

    fn token_error(
        &self,
        session: &Session<P, TOKEN, REFRESH>,
        retry_in: Option<Duration>,
    ) -> Error {
        let failure = session.failure().cloned().unwrap_or(Failure {
            cause: Cause::Transport(TransportError::ABANDONED),
            at: Instant::ZERO,
        });
        let source = match &*self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            Some(last) if last.at == failure.at && failure.cause.transport().is_some() => {
                Some(Arc::clone(&last.error))
            }
            _ => None,
        };
        Error::Token {
            failure: Box::new(failure),
            retry_in,
            source,
        }
    }

    /// Runs the token request for `ticket` and hands the outcome back to the session.
    /// The session lock is not held while on the network.
    pub(crate) fn fetch(&self, ticket: Ticket) {
        let store = self.inner.options.store.clone();
        let (ticket, held) = match &store {
            Some(store) => match self.before_fetch(store.as_ref(), ticket) {
                fleet::Before::Settled => {
                    self.inner.changed.notify_all();
                    return;
                }
                fleet::Before::Fetch(ticket, held) => (ticket, held),
            },
            None => (ticket, None),
        };
        let outcome = self.exchange(&ticket);
        let now = self.inner.clock.now();
        let mut session = self.lock();
        let completion = match outcome {
            Outcome::Response {
                status,
                retry_after,
                body,
            } => session.on_response(ticket, now, status, retry_after, &body),
            Outcome::Local(e) => session.on_failure(ticket, now, Cause::Local(e)),
            Outcome::Network(e) => {
                let completion = session.on_failure(ticket, now, cause(&e));
                if completion == Completion::Failed {
                    *self
                        .inner
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(LastError {
                        at: now,
                        error: Arc::new(e),
                    });
                }
                completion
            }
        };
        match (&completion, session.failure()) {
            (Completion::Failed, Some(_failure)) => warn!("tessera: {completion}: {_failure}"),
            _ => debug!("tessera: {completion}"),
        }
        drop(session);
        if let Some(store) = &store {
            self.after_fetch(store.as_ref(), held, &completion);
        }
        self.inner.changed.notify_all();
    }

    /// The token request for `ticket` on the wire. Every buffer that held the secret or the
    /// token is wiped.
    fn exchange(&self, ticket: &Ticket) -> Outcome {
        let max_body = self.inner.options.max_body;
        let mut buf = Zeroizing::new(vec![0u8; self.inner.options.request_buffer]);
        // The request, written into `buf` under the lock; the layout says where its pieces
        // are, so the lock goes before the network and nothing is copied (`buf` is wiped
        // when the exchange ends).
        let layout = {
            let session = self.lock();
            session.write_request(ticket, &mut buf)
        };
        let layout = match layout {
            Err(e) => return Outcome::Local(e),
            Ok(layout) => layout,
        };
        let request = match to_http(&layout.request(&buf), layout.body(&buf)) {
            Err(e) => return Outcome::Network(ureq::Error::Http(e)),
            Ok(request) => request,
        };
        debug!(
            "tessera: token request {} {}",
            request.method(),
            tessera_core::transport::display_url(&request.uri().to_string())
        );
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let sent = self.inner.http.run(request);
        // The request (the secret in it) is sent: wiped now, not after the answer.
        drop(buf);
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::Network(e),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                retry_after(
                    v,
                    self.inner.options.wall_clock.unix_ms().map(|ms| ms / 1000),
                )
            });
        match read_body(&mut response, max_body) {
            Ok(body) => Outcome::Response {
                status,
                retry_after,
                body: Zeroizing::new(body),
            },
            Err(BodyError::TooLarge) => Outcome::Local(body_too_large(max_body)),
            Err(BodyError::Network(e)) => Outcome::Network(e),
        }
    }

    /// Reports `token` rejected by a downstream API: it is dropped if it is still the cached
    /// one, so the next [`Client::token`] fetches a new one. Returns whether it was dropped.
    ///
    /// It is never served again: the session refuses to restore it, and a store that still
    /// holds the record this client restored or saved for it has that record removed (only
    /// that one: a fresher token another process stored is kept).
    pub fn reject(&self, token: &Token) -> bool {
        let mut session = self.lock();
        let mut last = self
            .inner
            .handed_out
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.as_ref().is_some_and(|t| t.id() == token.id()) {
            *last = None;
        }
        drop(last);
        let dropped = session.reject(token.id());
        drop(session);
        if dropped {
            if let Some(store) = &self.inner.options.store {
                self.discard_rejected(store.as_ref(), token);
            }
        }
        dropped
    }

    /// Replaces the credentials (secret rotation); wakes any waiting caller and the
    /// refresher.
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
    pub fn grant(&self) -> Option<Box<Grant<TOKEN, REFRESH>>> {
        let now = self.inner.clock.now();
        self.lock().grant(now).map(|g| Box::new(g.clone()))
    }

    /// The last failure, until a fetch succeeds.
    pub fn failure(&self) -> Option<Failure> {
        self.lock().failure().cloned()
    }

    /// Whether a token fetch is in flight.
    pub fn fetching(&self) -> bool {
        self.lock().fetching()
    }

    /// The clock the client runs on.
    pub fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    /// How many token requests this client has sent to the provider: `0` when every
    /// token it handed out came from its store (or there was none to hand out yet).
    pub fn token_requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// How many connections this client has opened (token fetches and calls alike). ureq's
    /// agent keeps a connection after a complete answer and sends the next request to the
    /// same origin on it (up to 3 idle per host, 15 s idle), so ten calls after a token
    /// fetch on one host open one connection; one the server closed while idle is replaced.
    pub fn connections_opened(&self) -> u64 {
        self.inner.http.connections_opened()
    }

    /// The options the client was made with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Starts a thread that keeps the cached token fresh: it refreshes it when due, so no
    /// caller meets a due token, and sleeps otherwise ([`Session::refresher_step`]). With
    /// no token (none yet, or refused credentials) it waits for a caller's fetch, new
    /// credentials or [`Client::retry`]: it never sends what no caller asked for. It stops
    /// when the returned handle is dropped.
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

    /// The refresher: the core's [`Session::refresher_step`], with the thread's sleeping.
    fn refresh_loop(&self, stop: &AtomicBool) {
        let mut session = self.lock();
        while !stop.load(Ordering::Acquire) {
            let now = self.inner.clock.now();
            session = match session.refresher_step(now) {
                Step::Fetch(ticket) => {
                    drop(session);
                    self.fetch(ticket);
                    self.lock()
                }
                Step::Sleep(until) => {
                    self.wait(session, Some(until.saturating_duration_since(now)))
                }
                // No token to keep fresh: until a fetch completes, the credentials
                // change, a retry, or the stop (each notifies `changed`).
                Step::Park => self.wait(session, None),
            };
        }
    }
}

/// What a token request came to.
enum Outcome {
    /// An HTTP response.
    Response {
        status: u16,
        retry_after: Option<Duration>,
        body: Zeroizing<Vec<u8>>,
    },
    /// Not sent: the core refused or could not build it, or the answer was too large.
    Local(tessera_core::Error),
    /// The network failed.
    Network(ureq::Error),
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
