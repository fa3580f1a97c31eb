//! [`Client`]: the token lifecycle driven on tokio: the session behind a `std` mutex held
//! only for the core's decisions (never across an await), fetches on the network with no
//! lock held, a [`Notify`] for tasks waiting on a fetch and for the refresher.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tessera_core::session::{Cause, Completion, Failure, Poll, Session, Step, Ticket};
use tessera_core::transport::{body_too_large, retry_after};
use tessera_core::{
    Bearer, Clock, Credentials, ErrorKind, Grant, Instant, Layout, Provider, Stage, TransportError,
    DEFAULT_REFRESH_CAPACITY, DEFAULT_TOKEN_CAPACITY,
};
use tessera_host::{StdClock, Token};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::error::{cause, Error};
use crate::fleet;
use crate::http::{read_body, wiped_bytes, BodyError, Http, SendError};
use crate::options::Options;
use crate::store::TokenStore;

/// The network error behind the session's last failure, kept for [`Error::Token`]'s
/// `source()`.
struct LastError {
    /// The failure's instant, so an error is never attached to a later failure.
    at: Instant,
    error: Arc<reqwest::Error>,
}

pub(crate) struct Inner<P, const TOKEN: usize, const REFRESH: usize> {
    session: Mutex<Session<P, TOKEN, REFRESH>>,
    /// The last token handed out, shared with the next caller that gets the same one.
    /// Locked only while `session` is held.
    handed_out: Mutex<Option<Token>>,
    /// Locked only while `session` is held.
    last_error: Mutex<Option<LastError>>,
    /// Notified whenever a fetch completes or is given back, or the credentials change.
    changed: Notify,
    /// Token requests this client sent to the provider.
    requests: AtomicU64,
    /// The token store failed and has not answered since (warned once).
    pub(crate) store_down: AtomicBool,
    /// The fleet's lease was held past the wait (warned once until a lease is had again).
    pub(crate) lease_stuck: AtomicBool,
    /// The session's refusal is the fleet's (adopted from the store, or stored there): it
    /// ends when the store's record goes.
    pub(crate) refusal_shared: AtomicBool,
    /// The store's record of the cached token, as this process restored or saved it.
    pub(crate) record: Mutex<Option<fleet::Record>>,
    pub(crate) http: Http,
    pub(crate) clock: Arc<dyn Clock + Send + Sync>,
    pub(crate) options: Options,
}

/// An async token client for one provider, for tokio. Cheap to clone: clones share the
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
    /// A client with the default [`Options`] and token capacities. Fails only when the
    /// HTTP client cannot be set up ([`Error::Setup`], [`Error::Proxy`]).
    pub fn new(provider: P, credentials: Credentials) -> Result<Self, Error> {
        Self::with_options(provider, credentials, Options::default())
    }

    /// A client with explicit options (default token capacities; see
    /// [`Client::with_capacity`] for others).
    pub fn with_options(
        provider: P,
        credentials: Credentials,
        options: Options,
    ) -> Result<Self, Error> {
        Self::with_capacity(provider, credentials, options)
    }

    /// A client on another monotonic clock (tests drive one by hand).
    pub fn with_clock(
        provider: P,
        credentials: Credentials,
        options: Options,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Result<Self, Error> {
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
    /// use tessera_tokio::{Client, Options, OwnedProvider};
    /// use tessera_tokio::core::{Credentials, ProviderKind};
    ///
    /// let idp = OwnedProvider::new(ProviderKind::OAuth2, "https://idp.example/oauth2/token");
    /// let creds = Credentials::new("terminal-7", "s3cr3t")?;
    /// // JWTs with many claims: 8 KiB.
    /// let client: Client<_, 8192> = Client::with_capacity(idp, creds, Options::default())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_capacity(
        provider: P,
        credentials: Credentials,
        options: Options,
    ) -> Result<Self, Error> {
        Self::with_capacity_and_clock(provider, credentials, options, Arc::new(StdClock::new()))
    }

    /// [`Client::with_capacity`] on another monotonic clock.
    pub fn with_capacity_and_clock(
        provider: P,
        credentials: Credentials,
        options: Options,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Result<Self, Error> {
        let session = Session::new(provider, credentials, options.session, options.jitter_seed);
        Ok(Client {
            inner: Arc::new(Inner {
                session: Mutex::new(session),
                handed_out: Mutex::new(None),
                last_error: Mutex::new(None),
                changed: Notify::new(),
                requests: AtomicU64::new(0),
                store_down: AtomicBool::new(false),
                lease_stuck: AtomicBool::new(false),
                refusal_shared: AtomicBool::new(false),
                record: Mutex::new(None),
                http: Http::new(&options)?,
                clock,
                options,
            }),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Session<P, TOKEN, REFRESH>> {
        // A panic while holding the lock cannot leave the session inconsistent (every
        // transition is a few assignments), so a poisoned lock is still usable.
        self.inner.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A bearer token: the cached one while it is fresh, with no await on the network;
    /// otherwise this task fetches one, or waits for the task already fetching. A due token
    /// is returned at once and refreshed in a background task (or in this future, without
    /// [`Options::refresh_in_background`]).
    ///
    /// Cancellation-safe: dropped mid-fetch, it gives the fetch back to the session (no
    /// failure, no backoff), so the next caller fetches at once.
    pub async fn token(&self) -> Result<Token, Error> {
        // The fleet's refusal is looked up at most once per call, so a record that reads
        // as gone can never turn one call into a loop of requests.
        let mut looked = false;
        loop {
            // Registered before the session is read, so a fetch that completes between the
            // read and the wait below still wakes this task.
            let changed = self.inner.changed.notified();
            let now = self.inner.clock.now();
            let next = {
                let mut session = self.lock();
                match session.poll(now) {
                    Poll::Ready(bearer) => return Ok(self.hand_out(bearer)),
                    Poll::Refresh(bearer, ticket) => {
                        Next::Refresh(self.hand_out(bearer), Held::new(self, ticket))
                    }
                    Poll::Fetch(ticket) => Next::Fetch(Held::new(self, ticket)),
                    Poll::Wait(until) => Next::Wait(until.saturating_duration_since(now)),
                    Poll::Backoff { until, .. } => {
                        let retry_in = Some(until.saturating_duration_since(now));
                        return Err(self.token_error(&session, retry_in));
                    }
                    Poll::Failed(kind) => {
                        let store = self.inner.options.store.clone();
                        match (kind, store, looked) {
                            (ErrorKind::InvalidCredentials, Some(store), false) => {
                                Next::Refused(store)
                            }
                            _ => return Err(self.token_error(&session, None)),
                        }
                    }
                }
            };
            match next {
                Next::Refresh(token, held) => {
                    self.refresh(held).await;
                    return Ok(token);
                }
                Next::Fetch(held) => self.fetch(held).await,
                Next::Refused(store) => {
                    looked = true;
                    if self.fleet_refusal_gone(store.as_ref()).await {
                        self.lock().retry();
                    }
                }
                Next::Wait(limit) => {
                    // Woken when the fetch lands; at its deadline the session abandons it.
                    let limit = limit.max(Duration::from_millis(1));
                    let _ = tokio::time::timeout(limit, changed).await;
                }
            }
        }
    }

    /// Runs a due refresh: in a background task when the options say so and a tokio
    /// runtime is there to run it, otherwise in this future.
    async fn refresh(&self, held: Held<P, TOKEN, REFRESH>) {
        if self.inner.options.refresh_in_background {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                debug!("tessera: refreshing the token in the background");
                let me = self.clone();
                // A runtime shutting down drops the task, and with it `held`: the ticket
                // goes back to the session.
                drop(runtime.spawn(async move { me.fetch(held).await }));
                return;
            }
        }
        self.fetch(held).await;
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

    /// Runs the token request for `held`'s ticket and hands the outcome back to the
    /// session. No lock is held across an await; dropped before the outcome is in, `held`
    /// gives the ticket back.
    async fn fetch(&self, mut held: Held<P, TOKEN, REFRESH>) {
        let store = self.inner.options.store.clone();
        let lease = match &store {
            Some(store) => match self.before_fetch(store, &mut held.ticket).await {
                fleet::Before::Settled => {
                    self.inner.changed.notify_waiters();
                    return;
                }
                fleet::Before::Fetch(lease) => lease,
            },
            None => None,
        };
        let outcome = self.exchange(held.ticket.as_ref()).await;
        let now = self.inner.clock.now();
        let completion = {
            let mut session = self.lock();
            let Some(ticket) = held.take() else { return };
            let completion = match outcome {
                Outcome::Response {
                    status,
                    retry_after,
                    body,
                } => session.on_response(ticket, now, status, retry_after, &body),
                Outcome::Local(e) => session.on_failure(ticket, now, Cause::Local(e)),
                Outcome::Invalid(e) => session.on_failure(ticket, now, Cause::Transport(e)),
                Outcome::Gone => session.release(ticket),
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
            completion
        };
        // The waiters go on with the session's answer; the fleet hears it after.
        self.inner.changed.notify_waiters();
        if let (Some(store), Some(lease)) = (&store, lease) {
            self.after_fetch(store.as_ref(), lease, &completion).await;
        }
    }

    /// The token request for `ticket` on the wire. Every buffer tessera filled with the
    /// secret or the token is wiped, whether the future completes or is dropped.
    async fn exchange(&self, ticket: Option<&Ticket>) -> Outcome {
        let Some(ticket) = ticket else {
            return Outcome::Gone;
        };
        // Written under the lock into this fetch's buffer; sent from it with no lock held.
        let (layout, buf) = {
            let mut buf = Zeroizing::new(vec![0u8; self.inner.options.request_buffer]);
            let written = self.lock().write_request(ticket, &mut buf);
            match written {
                Ok(layout) => (layout, buf),
                Err(e) => return Outcome::Local(e),
            }
        };
        // The buffer becomes the body's bytes (a slice of it, no copy), wiped when reqwest
        // is done with it.
        let written = wiped_bytes(buf);
        let request = match Self::token_request(&layout, &written) {
            Ok(r) => r,
            Err(e) => return Outcome::Invalid(e),
        };
        // Never a `user:password@` the URL may carry.
        debug!(
            "tessera: token request {} {}",
            layout.method.as_str(),
            tessera_core::transport::display_url(layout.url(&written))
        );
        drop(written);
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let response = match self.inner.http.execute(request).await {
            Ok(r) => r,
            Err(SendError::Reqwest(e)) => return Outcome::Network(e),
            Err(e) => return Outcome::Invalid(e.classify()),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                retry_after(
                    v,
                    self.inner.options.wall_clock.unix_ms().map(|ms| ms / 1000),
                )
            });
        let max_body = self.inner.options.max_body;
        match read_body(response, max_body).await {
            Ok(body) => Outcome::Response {
                status,
                retry_after,
                body,
            },
            Err(BodyError::TooLarge) => Outcome::Local(body_too_large(max_body)),
            Err(BodyError::Network(e)) => Outcome::Network(e),
        }
    }

    /// The core's token request, written into `written` at `layout`, as a reqwest request:
    /// exactly its headers, a credential header marked sensitive, the body a slice of the
    /// written bytes (wiped when reqwest drops them).
    fn token_request(
        layout: &Layout,
        written: &bytes::Bytes,
    ) -> Result<reqwest::Request, TransportError> {
        let invalid = TransportError::new(Stage::Protocol, "invalid request");
        let method =
            reqwest::Method::from_bytes(layout.method.as_str().as_bytes()).map_err(|_| invalid)?;
        let url = reqwest::Url::parse(layout.url(written))
            .map_err(|_| TransportError::new(Stage::Protocol, "invalid url"))?;
        let mut request = reqwest::Request::new(method, url);
        for (name, value) in layout.request(written).headers() {
            let name =
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid)?;
            let mut value = reqwest::header::HeaderValue::from_str(value).map_err(|_| invalid)?;
            if name == reqwest::header::AUTHORIZATION {
                value.set_sensitive(true);
            }
            request.headers_mut().append(name, value);
        }
        let body = layout.body(written);
        if !body.is_empty() {
            *request.body_mut() = Some(reqwest::Body::from(written.slice_ref(body)));
        }
        Ok(request)
    }

    /// Reports `token` rejected by a downstream API: it is dropped if it is still the cached
    /// one, so the next [`Client::token`] fetches a new one. Returns whether it was dropped.
    ///
    /// It is never served again: the session refuses to restore it, and a store that still
    /// holds the record this client restored or saved for it has that record removed (only
    /// that one: a fresher token another process stored is kept).
    pub fn reject(&self, token: &Token) -> bool {
        let dropped = self.drop_rejected(token);
        if let (true, Some(store)) = (dropped, &self.inner.options.store) {
            // The store forgets it too, in a task: `reject` does not wait on the store.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (me, store, token) = (self.clone(), Arc::clone(store), token.clone());
                drop(runtime.spawn(async move {
                    me.discard_rejected(store.as_ref(), &token).await;
                }));
            }
        }
        dropped
    }

    /// [`Client::reject`], waiting until the store has forgotten the token too (the 401
    /// rule of [`Client::call`] uses this, so the retry's refetch cannot restore it).
    pub(crate) async fn reject_and_discard(&self, token: &Token) -> bool {
        let dropped = self.drop_rejected(token);
        if let (true, Some(store)) = (dropped, &self.inner.options.store) {
            self.discard_rejected(store.as_ref(), token).await;
        }
        dropped
    }

    /// The session's side of a rejection.
    fn drop_rejected(&self, token: &Token) -> bool {
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
        session.reject(token.id())
    }

    /// Replaces the credentials (secret rotation); wakes any waiting task and the
    /// refresher.
    pub fn set_credentials(&self, credentials: Credentials) {
        self.lock().set_credentials(credentials);
        self.inner.changed.notify_waiters();
    }

    /// Allows one more attempt after refused credentials or during a backoff. For an
    /// explicit user action, never a loop.
    pub fn retry(&self) {
        self.lock().retry();
        self.inner.changed.notify_waiters();
    }

    /// Wakes the tasks waiting on the session (the refresher, callers waiting for a fetch)
    /// so they read the clock again. Only a clock that jumps, such as a test's manual
    /// clock, needs this: with the real clock their waits end on time by themselves.
    pub fn wake_waiters(&self) {
        self.inner.changed.notify_waiters();
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

    /// How many token requests this client has sent to the provider.
    pub fn token_requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// How many connections this client has opened (token fetches and calls alike, failed
    /// attempts included). reqwest keeps a connection after a complete answer and sends the
    /// next request to the same origin on it, so ten calls after a token fetch on one host
    /// open one connection.
    pub fn connections_opened(&self) -> u64 {
        self.inner.http.connections_opened()
    }

    /// The options the client was made with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Starts a task that keeps the cached token fresh: it refreshes it when due, so no
    /// caller meets a due token, and sleeps otherwise ([`Session::refresher_step`]). With
    /// no token (none yet, or refused credentials) it waits for a caller's fetch, new
    /// credentials or [`Client::retry`]: it never sends what no caller asked for. It stops
    /// when the returned handle is dropped (a refresh it was running is given back).
    ///
    /// Must be called within a tokio runtime.
    pub fn start_refresher(&self) -> Refresher {
        let me = self.clone();
        Refresher {
            task: tokio::spawn(async move { me.refresh_loop().await }),
        }
    }

    /// The refresher: the core's [`Session::refresher_step`], with tokio's sleeping.
    async fn refresh_loop(&self) {
        loop {
            let changed = self.inner.changed.notified();
            let now = self.inner.clock.now();
            let step = {
                let mut session = self.lock();
                match session.refresher_step(now) {
                    Step::Fetch(ticket) => Ok(Held::new(self, ticket)),
                    other => Err(other),
                }
            };
            match step {
                Ok(held) => self.fetch(held).await,
                Err(Step::Sleep(until)) => {
                    let limit = until.saturating_duration_since(now);
                    let _ =
                        tokio::time::timeout(limit.max(Duration::from_millis(1)), changed).await;
                }
                // No token to keep fresh: until a fetch completes, the credentials change,
                // or a retry (each notifies `changed`).
                Err(_) => changed.await,
            }
        }
    }
}

enum Next<P: Provider, const TOKEN: usize, const REFRESH: usize> {
    Refresh(Token, Held<P, TOKEN, REFRESH>),
    /// Refused: ask the store once whether the fleet's refusal is gone.
    Refused(Arc<dyn TokenStore>),
    Fetch(Held<P, TOKEN, REFRESH>),
    Wait(Duration),
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
    /// Not sent: reqwest cannot carry the core's request (classified).
    Invalid(TransportError),
    /// The network failed.
    Network(reqwest::Error),
    /// No ticket to fetch for (never: a fetch holds its ticket until the outcome is in).
    Gone,
}

/// A ticket owned by the future running its fetch. Dropped with the ticket still in it (the
/// future was cancelled, the task aborted, the runtime shut down), it gives the ticket back
/// to the session, so the next caller fetches at once, and wakes the waiters.
struct Held<P: Provider, const TOKEN: usize, const REFRESH: usize> {
    inner: Arc<Inner<P, TOKEN, REFRESH>>,
    ticket: Option<Ticket>,
}

impl<P: Provider, const TOKEN: usize, const REFRESH: usize> Held<P, TOKEN, REFRESH> {
    fn new(client: &Client<P, TOKEN, REFRESH>, ticket: Ticket) -> Self {
        Held {
            inner: Arc::clone(&client.inner),
            ticket: Some(ticket),
        }
    }

    fn take(&mut self) -> Option<Ticket> {
        self.ticket.take()
    }
}

impl<P: Provider, const TOKEN: usize, const REFRESH: usize> Drop for Held<P, TOKEN, REFRESH> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let _released = self
            .inner
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(ticket);
        debug!("tessera: {_released}");
        self.inner.changed.notify_waiters();
    }
}

/// The background refresher task; dropping it stops the task.
pub struct Refresher {
    task: JoinHandle<()>,
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for Refresher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refresher")
            .field("running", &!self.task.is_finished())
            .finish()
    }
}
