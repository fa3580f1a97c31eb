//! The token lifecycle: cache, proactive refresh, one fetch at a time, backoff with jitter,
//! lockout safety and rejected-token handling, as a deterministic state machine.
//!
//! Time and bytes go in, decisions come out. A transport is a thin loop around
//! [`Session::poll`]:
//!
//! ```
//! use core::time::Duration;
//! use tessera_core::session::{Config, Poll, Session, Ticket};
//! use tessera_core::{Credentials, Instant, OAuth2, Request};
//!
//! // A stand-in for the network: the provider answers with a one-hour token.
//! fn send(_request: &Request<'_>) -> (u16, &'static [u8]) {
//!     (200, br#"{"access_token":"t0k","token_type":"Bearer","expires_in":3600}"#)
//! }
//!
//! fn fetch(session: &mut Session<OAuth2<'_>>, ticket: Ticket, now: Instant) {
//!     let mut buf = [0u8; 512];
//!     let (status, body) = match session.request(&ticket, &mut buf) {
//!         Ok(request) => send(&request),
//!         Err(e) => return drop(session.on_failure(ticket, now, tessera_core::session::Cause::Local(e))),
//!     };
//!     // `now` should be read again when the response is in.
//!     session.on_response(ticket, now, status, None, body);
//! }
//!
//! let idp = OAuth2::new("https://idp.example/oauth2/token");
//! let creds = Credentials::new("terminal-7", "s3cr3t").unwrap();
//! let mut session: Session<_> = Session::new(idp, creds, Config::default(), 0x5eed);
//! let mut now = Instant::ZERO;
//!
//! let token = loop {
//!     match session.poll(now) {
//!         Poll::Ready(bearer) => break bearer.token().to_owned(),
//!         Poll::Refresh(bearer, ticket) => {
//!             // Still usable: use it, and refresh (here inline, or in a background task).
//!             let token = bearer.token().to_owned();
//!             fetch(&mut session, ticket, now);
//!             break token;
//!         }
//!         Poll::Fetch(ticket) => fetch(&mut session, ticket, now),
//!         Poll::Wait(until) => now = until,            // another caller's fetch is in flight
//!         Poll::Backoff { until, .. } => now = until, // or give up: the failure says why
//!         Poll::Failed(kind) => panic!("{kind}"),     // invalid credentials: no retry loop
//!     }
//! };
//! assert_eq!(token, "t0k");
//! // Served from the cache: no request.
//! assert!(matches!(session.poll(now.saturating_add(Duration::from_secs(60))), Poll::Ready(_)));
//! ```

use core::fmt;
use core::time::Duration;

use crate::credentials::Credentials;
use crate::error::{Error, ErrorKind, ErrorReport};
use crate::grant::Grant;
use crate::json::Problem;
use crate::provider::OAuth2;
use crate::provider::Provider;
use crate::request::{Layout, Request, Span};
use crate::snapshot::{self, Key, Keys, SnapshotError, WallTime};
use crate::time::{millis, Instant};
use crate::transport::TransportError;
use crate::write::{json_escape, json_string, Out};

mod refusal;
pub use refusal::Refusal;

/// Lifecycle settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// How long before expiry to refresh. `None` (default): `clamp(lifetime / 10, 30 s, 5 min)`.
    /// Never more than half the lifetime, so a short-lived token is not refreshed on arrival.
    pub refresh_margin: Option<Duration>,
    /// Time a request carrying the token may take to reach the provider: a token is not served
    /// in its last `in_flight_allowance` (at most a quarter of its lifetime). Default 2 s.
    pub in_flight_allowance: Duration,
    /// A fetch whose response has not arrived after this long is abandoned (and counts as a
    /// transient failure), so the session cannot wedge. Default 30 s.
    pub fetch_timeout: Duration,
    /// First backoff step. Default 1 s.
    pub backoff_base: Duration,
    /// Longest backoff. Default 5 min.
    pub backoff_cap: Duration,
    /// Longest wait a `Retry-After` header can impose. Default 10 min: long enough to sit
    /// out a provider's lockout (Shogun's "temporarily locked"), short enough that one
    /// wrong or hostile header (`Retry-After: 999999999`) cannot park a terminal for days.
    pub retry_after_cap: Duration,
    /// Allow `http://` to a host that is not loopback, so the secret and tokens cross the
    /// network in plaintext. Only for a sandbox on a LAN you control; default `false`.
    /// See [`check_url`](crate::transport::check_url).
    pub allow_insecure_http: bool,
    /// How long refused credentials (`invalid_credentials`) stop fetches before one more
    /// attempt is made by itself. Default 15 min: a provider's transient 401 during an
    /// incident heals without a restart, while a wrong secret costs the provider one attempt
    /// per period (Shogun locks an account out after repeated failed logins; one attempt
    /// every 15 minutes stays far below it). `Duration::ZERO`: never; only
    /// [`Session::retry`] or new credentials try again. With a fleet store the period is
    /// fleet-wide: see [`Session::seal_refusal`].
    pub refusal_retry: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            refresh_margin: None,
            in_flight_allowance: Duration::from_secs(2),
            fetch_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            retry_after_cap: Duration::from_secs(600),
            allow_insecure_http: false,
            refusal_retry: Duration::from_secs(15 * 60),
        }
    }
}

/// Why the last fetch failed.
// Stored once per session, and there is no heap to box the report into.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Cause {
    /// The provider answered with an error (or an unusable grant).
    Response(ErrorReport),
    /// The network failed, classified by stage (dns, connect, tls, timeout, protocol, io).
    /// A fetch with no answer within [`Config::fetch_timeout`] is abandoned as
    /// [`TransportError::ABANDONED`].
    Transport(TransportError),
    /// The request could not be built (a buffer too small), or may not be sent
    /// ([`Error::Insecure`]): the error says which.
    Local(Error),
}

/// The last failure, as every caller sees it until a fetch succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Failure {
    /// What went wrong.
    pub cause: Cause,
    /// When.
    pub at: Instant,
}

impl Cause {
    /// The group callers act on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Cause::Response(r) => r.kind(),
            Cause::Transport(_) => ErrorKind::Transport,
            Cause::Local(e) => e.kind(),
        }
    }

    /// The classified network failure, when it was one.
    pub fn transport(&self) -> Option<TransportError> {
        match self {
            Cause::Transport(e) => Some(*e),
            _ => None,
        }
    }
}

impl Failure {
    /// The group callers act on.
    pub fn kind(&self) -> ErrorKind {
        self.cause.kind()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Response(r) => fmt::Display::fmt(r, f),
            Cause::Transport(e) => fmt::Display::fmt(e, f),
            Cause::Local(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for Failure {}

/// Identifies one token the session handed out, to report it rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TokenId(u32);

/// A usable token, borrowed from the session.
#[derive(Clone, Copy)]
pub struct Bearer<'s, const TOKEN: usize, const REFRESH: usize> {
    grant: &'s Grant<TOKEN, REFRESH>,
    timing: Timing,
}

impl<'s, const TOKEN: usize, const REFRESH: usize> Bearer<'s, TOKEN, REFRESH> {
    /// The bearer token, for `Authorization: Bearer <token>`.
    pub fn token(&self) -> &'s str {
        self.grant.access_token()
    }

    /// The whole grant (scopes, refresh token, lifetimes).
    pub fn grant(&self) -> &'s Grant<TOKEN, REFRESH> {
        self.grant
    }

    /// Whether the token carries `scope`; check before a sensitive operation.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.grant.has_scope(scope)
    }

    /// Which token this is, for [`Session::reject`].
    pub fn id(&self) -> TokenId {
        self.timing.id
    }

    /// From this instant the next poll elects a caller to refresh the token.
    pub fn refresh_at(&self) -> Instant {
        self.timing.refresh_at
    }

    /// The session stops serving this token at this instant.
    pub fn usable_until(&self) -> Instant {
        self.timing.usable_until
    }
}

impl<const TOKEN: usize, const REFRESH: usize> fmt::Debug for Bearer<'_, TOKEN, REFRESH> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bearer")
            .field("token", &format_args!("<redacted>"))
            .field("id", &self.timing.id)
            .field("refresh_at", &self.timing.refresh_at)
            .field("usable_until", &self.timing.usable_until)
            .finish()
    }
}

/// The right and duty to run one token request. Not `Clone`: exactly one caller holds it,
/// and it is given back with [`Session::on_response`] or [`Session::on_failure`].
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "a ticket must be completed with on_response or on_failure"]
pub struct Ticket {
    id: u32,
}

/// What a caller should do now.
#[derive(Debug)]
pub enum Poll<'s, const TOKEN: usize, const REFRESH: usize> {
    /// A fresh token: use it.
    Ready(Bearer<'s, TOKEN, REFRESH>),
    /// The token is still usable but due for refresh, and this caller runs the refresh.
    /// Use the token either way; a failed refresh does not fail callers while it lives.
    Refresh(Bearer<'s, TOKEN, REFRESH>, Ticket),
    /// No usable token: this caller fetches one.
    Fetch(Ticket),
    /// No usable token, and another caller's fetch is in flight: wait for it, at most until
    /// this instant (when it is abandoned).
    Wait(Instant),
    /// No usable token; the last fetch failed and the next is allowed at `until`.
    /// [`Session::failure`] has the details.
    Backoff {
        /// When a fetch may be tried again.
        until: Instant,
        /// What kind of failure it was.
        kind: ErrorKind,
    },
    /// No usable token, and nothing to retry in a loop: the credentials were refused (tried
    /// again by itself once [`Config::refusal_retry`] has passed, see
    /// [`Session::backoff_until`]), or the URL may not be used (never tried again). Replace
    /// the credentials ([`Session::set_credentials`]) or ask explicitly
    /// ([`Session::retry`]). [`Session::failure`] has the provider's words.
    Failed(ErrorKind),
}

/// A token [`Session::restore`] adopted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Restored {
    /// Its id, for [`Session::reject`].
    pub id: TokenId,
    /// From when the session asks for a refresh (at once when this is already past).
    pub refresh_at: Instant,
    /// Until when it is served.
    pub usable_until: Instant,
}

/// What a background refresher does now: [`Session::refresher_step`].
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Step {
    /// Run this fetch (a first token, or a refresh), then ask again.
    Fetch(Ticket),
    /// Nothing to do until this instant, always in the future (the refresh point, the end
    /// of a backoff, or the deadline of another caller's fetch); sleep, and wake early if
    /// anything changes.
    Sleep(Instant),
    /// No token to keep fresh (none yet, expired, or the credentials were refused): sleep
    /// until something changes (a caller's fetch completes, the credentials are replaced,
    /// a retry is asked for); a transport wakes its refresher on those.
    Park,
}

/// What [`Session::on_response`] and [`Session::on_failure`] did with a ticket.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Completion {
    /// A new token is cached.
    Stored,
    /// The fetch failed; [`Session::failure`] says why.
    Failed,
    /// The ticket was abandoned (timeout or new credentials) before it came back: ignored.
    Stale,
    /// The ticket was given back unused ([`Session::release`]).
    Released,
}

impl fmt::Display for Completion {
    /// The line a transport logs when a fetch completes (with [`Session::failure`] after
    /// it for `Failed`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Completion::Stored => "new token stored",
            Completion::Failed => "token fetch failed",
            Completion::Stale => "late answer to an abandoned fetch ignored",
            Completion::Released => "fetch cancelled; the next caller may fetch at once",
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Timing {
    id: TokenId,
    refresh_at: Instant,
    usable_until: Instant,
    /// When the provider says the token dies (`sent + lifetime`), for snapshots.
    expires: Instant,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    id: u32,
    sent: Instant,
}

/// SplitMix64: tiny, fast, good enough for jitter (not for secrets).
#[derive(Clone, Debug)]
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (milliseconds); `lo` when the range is empty. Spans past
    /// `u32::MAX` ms (49 days) are clamped: a multiply-shift in 32 bits, because a
    /// Cortex-M0 has no divider and a 64-bit `%` costs a kilobyte of flash.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        let span = u32::try_from(hi.saturating_sub(lo)).unwrap_or(u32::MAX);
        let n = u64::from(span) + 1;
        let r = u64::from(self.next() as u32);
        lo.saturating_add((r * n) >> 32)
    }
}

/// One provider's token, its credentials and its lifecycle. No heap: its size is the token
/// capacity plus a small constant (the refresh-token capacity, scopes, credentials, the last
/// error's text).
pub struct Session<P, const TOKEN: usize = 2048, const REFRESH: usize = 1024> {
    provider: P,
    credentials: Credentials,
    config: Config,
    grant: Grant<TOKEN, REFRESH>,
    cached: Option<Timing>,
    fetch: Option<InFlight>,
    next_id: u32,
    attempts: u32,
    backoff_until: Option<Instant>,
    /// Whether the last failure stops automatic retries (invalid credentials).
    sticky: bool,
    failure: Option<Failure>,
    jitter: Jitter,
    /// The wall-clock expiry a restored token came with (its id, Unix ms): saving that
    /// token again writes it back, so the restore's clock allowance is not taken off twice.
    restored_expiry: Option<(TokenId, u64)>,
    /// Digests of the last tokens reported rejected, so no restore brings one back (the
    /// store may still hold it, or another process may store it again). 0 is empty.
    rejected: [u64; REJECTED],
}

/// How many rejected tokens a session remembers.
const REJECTED: usize = 4;

/// A digest of a token, to recognise it again without keeping it: 64-bit FNV-1a.
///
/// Not a cryptographic hash, deliberately: the digest only ever refuses a restore, so a
/// collision can only make a session fetch a token it could have restored (what it does
/// without a snapshot anyway), never accept one it should not; a token is always found again
/// (same bytes, same digest). Accidental collisions among the few remembered tokens are
/// ~2^-62; and whoever could craft a colliding token (the provider that mints them) gains
/// nothing by it. SHA-256 here cost 2.4 KiB of flash on Cortex-M0 in every firmware that
/// reports a 401, snapshots or not (`scripts/footprint`); this is a loop and a multiply.
fn token_digest(chunks: impl FnOnce(&mut dyn FnMut(&[u8]))) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    chunks(&mut |c| {
        for &b in c {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    });
    h.max(1)
}

impl<P: Provider, const TOKEN: usize, const REFRESH: usize> Session<P, TOKEN, REFRESH> {
    /// A session with no token yet. `jitter_seed` seeds the backoff jitter: give each
    /// device or process its own (a hardware RNG, a serial number, a random number) so a
    /// fleet that failed together does not retry together.
    pub fn new(provider: P, credentials: Credentials, config: Config, jitter_seed: u64) -> Self {
        Session {
            provider,
            credentials,
            jitter: Jitter(jitter_seed),
            config,
            grant: Grant::new(),
            cached: None,
            fetch: None,
            next_id: 0,
            attempts: 0,
            backoff_until: None,
            sticky: false,
            failure: None,
            restored_expiry: None,
            rejected: [0; REJECTED],
        }
    }

    /// What to do now. See [`Poll`].
    pub fn poll(&mut self, now: Instant) -> Poll<'_, TOKEN, REFRESH> {
        self.abandon_overdue(now);
        self.end_lapsed_refusal(now);
        if self.cached.is_some_and(|t| now >= t.usable_until) {
            self.drop_token();
        }
        if let Some(t) = self.cached {
            let due = now >= t.refresh_at;
            if due && self.fetch.is_none() && !self.sticky && !self.backing_off(now) {
                let ticket = self.start_fetch(now);
                return Poll::Refresh(self.bearer(t), ticket);
            }
            return Poll::Ready(self.bearer(t));
        }
        if let Some(f) = self.fetch {
            return Poll::Wait(f.sent.saturating_add(self.config.fetch_timeout));
        }
        let kind = self.failure.as_ref().map(Failure::kind);
        match (kind, self.backoff_until) {
            (Some(kind), _) if self.sticky => Poll::Failed(kind),
            (Some(kind), Some(until)) if now < until => Poll::Backoff { until, kind },
            _ => Poll::Fetch(self.start_fetch(now)),
        }
    }

    /// Builds the token request for `ticket` into `buf`.
    ///
    /// A request whose URL would carry the secret in plaintext off the machine is refused
    /// with [`Error::Insecure`] (unless [`Config::allow_insecure_http`]); hand that back with
    /// [`Session::on_failure`] as [`Cause::Local`], and nothing is sent.
    pub fn request<'a>(
        &'a self,
        _ticket: &Ticket,
        buf: &'a mut [u8],
    ) -> Result<Request<'a>, Error> {
        let request = self.provider.token_request(&self.credentials, buf)?;
        request.check_security(self.config.allow_insecure_http)?;
        Ok(request)
    }

    /// Writes the token request for `ticket` into `buf` and says where its pieces are: a
    /// small `Copy` [`Layout`] (the pattern of quinn-proto's `poll_transmit` into a caller's
    /// buffer). A transport keeps the layout, lets go of any lock, and reads the URL, the
    /// `Authorization` value and the body back from `buf` with it: no borrowed strings
    /// turned into offsets, no copy of the request. The same refusals as
    /// [`Session::request`]; a buffer too small is [`Error::Capacity`] with the bytes needed:
    /// all of it (the URL included) once the provider's own part fits, only that part when
    /// it does not (the URL's length is known only from a written request), so a buffer
    /// sized from the first error may get a second, larger and final one.
    pub fn write_request(&self, ticket: &Ticket, buf: &mut [u8]) -> Result<Layout, Error> {
        let capacity = buf.len();
        // What the provider writes into the buffer, and what it lends from elsewhere (its
        // URL, a constant): those are copied after it.
        let extra = {
            let base = buf.as_ptr() as usize;
            let inside = |b: &[u8]| {
                let at = b.as_ptr() as usize;
                b.is_empty() || (at >= base && at + b.len() <= base + capacity)
            };
            let r = self.request(ticket, buf)?;
            let mut extra = r.url.len();
            if !inside(r.body) {
                extra += r.body.len();
            }
            if let Some(a) = r.authorization.filter(|a| !inside(a.as_bytes())) {
                extra += a.len();
            }
            extra
        };
        let too_small = |needed: usize| Error::Capacity {
            field: "request buffer",
            needed,
            capacity,
        };
        let split = capacity.checked_sub(extra).ok_or(too_small(extra))?;
        let (front, tail) = buf.split_at_mut(split);
        let base = front.as_ptr() as usize;
        let front_len = front.len();
        let r = self.request(ticket, front).map_err(|e| match e {
            Error::Capacity { needed, .. } => too_small(needed.saturating_add(extra)),
            other => other,
        })?;
        let span_in = |b: &[u8]| {
            let at = b.as_ptr() as usize;
            (b.is_empty() || (at >= base && at + b.len() <= base + front_len)).then(|| {
                match b.is_empty() {
                    true => Span::default(),
                    false => Span::new(at - base, b.len()),
                }
            })
        };
        // The URL, then the pieces the provider lent, into the tail.
        let mut out = Out::new(tail);
        r.url.write_to(&mut out);
        let url = Span::new(split, r.url.len());
        let mut at = split + r.url.len();
        let mut lent = |b: &[u8], out: &mut Out<'_>| {
            out.bytes(b);
            let span = Span::new(at, b.len());
            at += b.len();
            span
        };
        let body = match span_in(r.body) {
            Some(span) => span,
            None => lent(r.body, &mut out),
        };
        let authorization = r.authorization.map(|a| match span_in(a.as_bytes()) {
            Some(span) => span,
            None => lent(a.as_bytes(), &mut out),
        });
        let (method, content_type) = (r.method, r.content_type);
        out.finish().map_err(|_| too_small(capacity + 1))?;
        Ok(Layout::place(
            method,
            content_type,
            url,
            authorization,
            body,
        ))
    }

    /// What a background refresher does now. A refresher keeps a cached token fresh: it
    /// refreshes it when due ([`Step::Fetch`], it then holds the ticket), and otherwise
    /// sleeps until the next instant anything can change ([`Step::Sleep`]: the refresh
    /// point, the end of a backoff after a failed refresh, or the deadline of another
    /// caller's refresh). With no token to keep fresh (none yet, it expired, or the
    /// credentials were refused) it [parks](Step::Park): the next caller fetches, so nothing
    /// is sent that no caller asked for. Both transports' refreshers are this loop.
    pub fn refresher_step(&mut self, now: Instant) -> Step {
        if self.grant(now).is_none() {
            // `poll` would elect the refresher to fetch a first token; callers do that.
            self.abandon_overdue(now);
            return Step::Park;
        }
        let refresh_at = match self.poll(now) {
            Poll::Refresh(_, ticket) => return Step::Fetch(ticket),
            Poll::Ready(bearer) => bearer.refresh_at(),
            // Unreachable with a usable token; parking is the safe answer.
            _ => return Step::Park,
        };
        if refresh_at > now {
            return Step::Sleep(refresh_at);
        }
        // Due, but the session did not elect a refresh: say until when.
        match (self.fetch, self.backoff_until) {
            (Some(f), _) => Step::Sleep(f.sent.saturating_add(self.config.fetch_timeout)),
            (None, _) if self.sticky => Step::Park,
            (None, Some(until)) if until > now => Step::Sleep(until),
            (None, _) => Step::Park,
        }
    }

    /// Hands back `ticket` with the provider's response. `now` is when it arrived; the
    /// token's lifetime counts from when the ticket was issued (the request was sent).
    /// `retry_after` is the response's `Retry-After`, if any.
    pub fn on_response(
        &mut self,
        ticket: Ticket,
        now: Instant,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Completion {
        let Some(sent) = self.take_fetch(&ticket) else {
            return Completion::Stale;
        };
        let id = TokenId(ticket.id);
        let parsed = match self.provider.parse_token(status, body) {
            Ok(grant) => grant,
            Err(e) => {
                self.fail(now, Cause::Response(e.to_report()), retry_after);
                return Completion::Failed;
            }
        };
        let timing = self.timing(id, sent, parsed.lifetime_s());
        let unusable = if timing.usable_until <= now {
            // Dead on arrival (`expires_in: 0`, or a lifetime shorter than the allowance):
            // serving it would fail downstream, fetching again at once would storm.
            Some(Error::Malformed {
                field: Some("expires_in"),
                problem: Problem::Range,
            })
        } else {
            // `store` checks every field before writing: on error the old token is untouched.
            self.grant.store(&parsed).err()
        };
        if let Some(error) = unusable {
            let report = ErrorReport {
                status,
                error,
                detail: Default::default(),
            };
            self.fail(now, Cause::Response(report), retry_after);
            return Completion::Failed;
        }
        self.cached = Some(timing);
        self.attempts = 0;
        self.backoff_until = None;
        self.sticky = false;
        self.failure = None;
        Completion::Stored
    }

    /// Hands back `ticket` when no response came: the network failed, or the request could
    /// not be built.
    pub fn on_failure(&mut self, ticket: Ticket, now: Instant, cause: Cause) -> Completion {
        if self.take_fetch(&ticket).is_none() {
            return Completion::Stale;
        }
        self.fail(now, cause, None);
        Completion::Failed
    }

    /// A downstream call answered 401 with token `id`: drop it if it is still the cached
    /// one, so the next poll fetches a new one. Reports about older tokens are ignored, so
    /// a burst of 401s for one token causes one refresh. Returns whether it was dropped.
    ///
    /// The session remembers the token (a digest of it, for its last few rejections): a
    /// [`Session::restore`] of it is refused with [`SnapshotError::Rejected`], so a store
    /// that still holds it cannot bring it back.
    pub fn reject(&mut self, id: TokenId) -> bool {
        if self.cached.is_some_and(|t| t.id == id) {
            let digest = token_digest(|f| f(self.grant.access_token().as_bytes()));
            // The newest first, the oldest dropped (a shift by hand: `rotate_right` links a
            // 1.3 KiB `memmove` into the firmware).
            let mut carry = digest;
            for slot in self.rejected.iter_mut() {
                carry = core::mem::replace(slot, carry);
            }
            self.drop_token();
            return true;
        }
        false
    }

    /// Writes the cached token into `out` as a sealed snapshot (see [`crate::snapshot`]),
    /// to restore after a restart, reboot or deep sleep with [`Session::restore`]. `wall` is
    /// the wall-clock time now; the token's expiry is stored as absolute wall time.
    ///
    /// `out` needs [`snapshot::OVERHEAD`] plus the token's JSON (its token, refresh token and
    /// scopes, and ~60 bytes); a smaller one is [`SnapshotError::Capacity`] with the size
    /// needed. On any error `out` is wiped.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tessera_core::snapshot::{Key, WallTime};
    /// use tessera_core::{Config, Credentials, Instant, OAuth2, Poll, Session};
    ///
    /// let creds = || Credentials::new("terminal-7", "s3cr3t-9f2c").unwrap();
    /// let idp = OAuth2::new("https://idp.example/token");
    /// let mut s: Session<_> = Session::new(idp, creds(), Config::default(), 1);
    /// # let Poll::Fetch(t) = s.poll(Instant::ZERO) else { unreachable!() };
    /// # s.on_response(t, Instant::ZERO, 200, None, br#"{"access_token":"t0k","token_type":"Bearer","expires_in":3600}"#);
    /// // ... a token was fetched at wall time 1_700_000_000_000 ms ...
    /// let wall = WallTime::new(1_700_000_000_000, Duration::from_secs(2));
    /// let mut buf = [0u8; 256];
    /// let saved = s.snapshot(Instant::ZERO, wall, Key::Credentials, &mut buf).unwrap().to_vec();
    ///
    /// // After a reboot: a new session, its monotonic clock back at zero, ten minutes later.
    /// let mut s: Session<_> = Session::new(idp, creds(), Config::default(), 2);
    /// let later = WallTime::new(1_700_000_600_000, Duration::from_secs(2));
    /// let mut bytes = saved.clone();
    /// let restored = s.restore(Instant::ZERO, Some(later), Key::Credentials, &mut bytes).unwrap();
    /// assert!(restored.usable_until > Instant::ZERO);
    /// assert!(matches!(s.poll(Instant::ZERO), Poll::Ready(b) if b.token() == "t0k"));
    /// ```
    pub fn snapshot<'o>(
        &self,
        now: Instant,
        wall: WallTime,
        key: Key<'_>,
        out: &'o mut [u8],
    ) -> Result<&'o [u8], SnapshotError> {
        let result = self.seal_into(now, wall, key, out);
        match result {
            Ok(len) => Ok(out.get(..len).unwrap_or_default()),
            Err(e) => {
                // It may hold the token in plaintext.
                out.fill(0);
                Err(e)
            }
        }
    }

    fn seal_into(
        &self,
        now: Instant,
        wall: WallTime,
        key: Key<'_>,
        out: &mut [u8],
    ) -> Result<usize, SnapshotError> {
        let t = self
            .cached
            .filter(|t| now < t.usable_until)
            .ok_or(SnapshotError::NoToken)?;
        let capacity = out.len();
        let json_len = {
            let area = out
                .get_mut(snapshot::HEADER + snapshot::META..)
                .unwrap_or_default();
            let mut w = Out::new(area);
            self.write_grant(&mut w);
            let needed = w.needed();
            w.finish()
                .map_err(|_| SnapshotError::Capacity {
                    field: "snapshot",
                    needed: needed.saturating_add(snapshot::OVERHEAD),
                    capacity,
                })?
                .0
                .len()
        };
        let keys = Keys::derive(&self.provider, &self.credentials, key)?;
        let expires_at = match self.restored_expiry {
            // A restored token's expiry is a fact of the token: keep it, rather than
            // re-derive it from a monotonic timing that took the clock's doubt off.
            Some((id, at)) if id == t.id => at,
            _ => {
                let remaining = t.expires.as_millis().saturating_sub(now.as_millis());
                wall.unix_ms.saturating_add(remaining)
            }
        };
        snapshot::seal(&keys, wall.unix_ms, expires_at, json_len, out)
    }

    /// Restores a token from a [`Session::snapshot`], after a restart: served without a
    /// fetch while it lives. `wall` is the wall-clock time now, given only when the caller
    /// vouches for it (SNTP synced, an RTC kept through deep sleep); `None` discards the
    /// snapshot ([`SnapshotError::NoWallClock`]). The token is served until its expiry
    /// minus the clock's uncertainty and the in-flight allowance, and refreshed at the usual
    /// margin before it (at once when that is already past).
    ///
    /// `bytes` is decrypted in place and wiped once it has been: pass a copy of what you
    /// keep in flash or RTC memory. Garbage, truncated, tampered or foreign bytes, an expired
    /// token or an untrustworthy clock are refused with the reason, and the session is left
    /// as it was (it then fetches as usual).
    pub fn restore(
        &mut self,
        now: Instant,
        wall: Option<WallTime>,
        key: Key<'_>,
        bytes: &mut [u8],
    ) -> Result<Restored, SnapshotError> {
        let wall = wall.ok_or(SnapshotError::NoWallClock)?;
        let keys = Keys::derive(&self.provider, &self.credentials, key)?;
        let outcome = match snapshot::open(&keys, &mut *bytes) {
            Err(e) => return Err(e),
            Ok((meta, json)) => self.adopt(now, wall, &meta, json),
        };
        // It held the token in plaintext.
        bytes.fill(0);
        outcome
    }

    /// Gives `ticket` back unused: the fetch was cancelled (its future dropped, the task
    /// stopped) before an answer, so nothing is known about the provider. No failure is
    /// recorded and no backoff starts: the next poll may fetch at once. A transport calls
    /// this from the drop guard of whatever holds the ticket.
    pub fn release(&mut self, ticket: Ticket) -> Completion {
        match self.take_fetch(&ticket) {
            Some(_) => Completion::Released,
            None => Completion::Stale,
        }
    }

    /// Replaces the credentials (secret rotation). Clears a refusal and any backoff, and
    /// abandons a fetch made with the old ones; a cached token stays in use.
    pub fn set_credentials(&mut self, credentials: Credentials) {
        self.credentials = credentials;
        self.fetch = None;
        self.retry();
    }

    /// Allows a fetch at the next poll even after a refusal or during backoff. For an
    /// explicit user action ("try again"), never for a loop.
    pub fn retry(&mut self) {
        self.sticky = false;
        self.backoff_until = None;
    }

    /// The last failure, until a fetch succeeds.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// The cached grant while its token is usable at `now`.
    pub fn grant(&self, now: Instant) -> Option<&Grant<TOKEN, REFRESH>> {
        self.cached
            .filter(|t| now < t.usable_until)
            .map(|_| &self.grant)
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether a fetch is in flight.
    pub fn fetching(&self) -> bool {
        self.fetch.is_some()
    }

    /// Until when fetches are held back after a failure, if they are (after refused
    /// credentials: until the one attempt [`Config::refusal_retry`] allows).
    pub fn backoff_until(&self) -> Option<Instant> {
        self.backoff_until
    }

    /// The id of the cached token while it is usable at `now`: a transport that keeps
    /// something per token (the record it stored) matches it with [`Bearer::id`].
    pub fn token_id(&self, now: Instant) -> Option<TokenId> {
        self.cached.filter(|t| now < t.usable_until).map(|t| t.id)
    }

    fn bearer(&self, t: Timing) -> Bearer<'_, TOKEN, REFRESH> {
        Bearer {
            grant: &self.grant,
            timing: t,
        }
    }

    fn backing_off(&self, now: Instant) -> bool {
        self.backoff_until.is_some_and(|until| now < until)
    }

    fn start_fetch(&mut self, now: Instant) -> Ticket {
        self.next_id = self.next_id.wrapping_add(1);
        self.fetch = Some(InFlight {
            id: self.next_id,
            sent: now,
        });
        Ticket { id: self.next_id }
    }

    fn take_fetch(&mut self, ticket: &Ticket) -> Option<Instant> {
        match self.fetch {
            Some(f) if f.id == ticket.id => {
                self.fetch = None;
                Some(f.sent)
            }
            _ => None,
        }
    }

    fn abandon_overdue(&mut self, now: Instant) {
        if let Some(f) = self.fetch {
            if now >= f.sent.saturating_add(self.config.fetch_timeout) {
                self.fetch = None;
                self.fail(now, Cause::Transport(TransportError::ABANDONED), None);
            }
        }
    }

    /// Ends a refusal whose `refusal_retry` period is over: the next poll fetches once.
    fn end_lapsed_refusal(&mut self, now: Instant) {
        let refused =
            self.failure.as_ref().map(Failure::kind) == Some(ErrorKind::InvalidCredentials);
        if self.sticky && refused && self.backoff_until.is_some_and(|until| now >= until) {
            self.sticky = false;
            self.backoff_until = None;
        }
    }

    fn drop_token(&mut self) {
        self.cached = None;
        self.grant.clear();
    }

    /// When a token fetched at `sent` with `lifetime_s` is due for refresh and stops being
    /// served.
    fn timing(&self, id: TokenId, sent: Instant, lifetime_s: u64) -> Timing {
        let life = lifetime_s.saturating_mul(1000);
        self.timing_until(id, sent.as_millis().saturating_add(life), life)
    }

    /// The timing of a token of lifetime `life` (ms) that expires at `expiry` (ms on the
    /// monotonic clock): the margin and allowance depend on the whole lifetime.
    fn timing_until(&self, id: TokenId, expiry: u64, life: u64) -> Timing {
        let allowance = millis(self.config.in_flight_allowance).min(life / 4);
        let margin = match self.config.refresh_margin {
            Some(m) => millis(m),
            None => (life / 10).clamp(30_000, 300_000),
        }
        .min(life / 2);
        Timing {
            id,
            refresh_at: Instant::from_millis(expiry.saturating_sub(margin)),
            usable_until: Instant::from_millis(expiry.saturating_sub(allowance)),
            expires: Instant::from_millis(expiry),
        }
    }

    /// Adopts an opened snapshot's token if the wall clock says it still lives.
    fn adopt(
        &mut self,
        now: Instant,
        wall: WallTime,
        meta: &snapshot::Meta,
        json: &[u8],
    ) -> Result<Restored, SnapshotError> {
        let uncertainty = millis(wall.uncertainty);
        // Judge by the latest the clock may really read: never serve past expiry.
        let latest = wall.unix_ms.saturating_add(uncertainty);
        if latest < meta.written_at {
            return Err(SnapshotError::ClockBehind);
        }
        let parsed = OAuth2::new("")
            .parse_token(200, json)
            .map_err(|_| SnapshotError::Malformed)?;
        let life = parsed.lifetime_s().saturating_mul(1000);
        let remaining = meta.expires_at.saturating_sub(latest);
        if remaining > life {
            // More time left than the token ever had: the clock ran backwards.
            return Err(SnapshotError::ClockBehind);
        }
        let mut chunks_ok = true;
        let digest = token_digest(|f| {
            chunks_ok = parsed
                .access_token
                .chunks(|c| {
                    f(c.as_bytes());
                    true
                })
                .is_ok();
        });
        if !chunks_ok {
            return Err(SnapshotError::Malformed);
        }
        if self.rejected.contains(&digest) {
            return Err(SnapshotError::Rejected);
        }
        let id = TokenId(self.next_id.wrapping_add(1));
        let timing = self.timing_until(id, now.as_millis().saturating_add(remaining), life);
        if timing.usable_until <= now {
            return Err(SnapshotError::Expired);
        }
        self.grant.store(&parsed).map_err(|e| match e {
            Error::Capacity {
                field,
                needed,
                capacity,
            } => SnapshotError::Capacity {
                field,
                needed,
                capacity,
            },
            _ => SnapshotError::Malformed,
        })?;
        self.next_id = id.0;
        self.cached = Some(timing);
        self.restored_expiry = Some((id, meta.expires_at));
        self.attempts = 0;
        self.backoff_until = None;
        self.sticky = false;
        self.failure = None;
        Ok(Restored {
            id,
            refresh_at: timing.refresh_at,
            usable_until: timing.usable_until,
        })
    }

    /// The fingerprint of this session's snapshot binding under `key` (provider identity,
    /// client id, credential, key): the same for every process sharing the credential, and
    /// different as soon as any of them differs. A store names its records by it (see
    /// [`crate::snapshot`]); it reveals nothing of the secret beyond what an offline guess of
    /// a weak secret could confirm (use [`Key::Application`] where that matters).
    pub fn binding(&self, key: Key<'_>) -> Result<[u8; 8], SnapshotError> {
        Keys::derive(&self.provider, &self.credentials, key).map(|k| k.fingerprint())
    }

    /// Writes the grant as a token response (the snapshot's plaintext) into `out`.
    fn write_grant(&self, out: &mut Out<'_>) {
        let g = &self.grant;
        out.str("{\"access_token\":");
        json_string(out, g.access_token());
        out.str(",\"token_type\":\"Bearer\",\"expires_in\":");
        uint(out, g.lifetime_s());
        if let Some(r) = g.refresh_token() {
            out.str(",\"refresh_token\":");
            json_string(out, r);
        }
        if !g.scopes().is_empty() {
            out.str(",\"scope\":\"");
            for (i, scope) in g.scopes().iter().enumerate() {
                if i > 0 {
                    out.byte(b' ');
                }
                json_escape(out, scope);
            }
            out.byte(b'"');
        }
        out.byte(b'}');
    }

    fn fail(&mut self, now: Instant, mut cause: Cause, retry_after: Option<Duration>) {
        if let Cause::Response(report) = &mut cause {
            // A provider may echo the request, secret included, in its error text; a
            // refresh request carries the refresh token, and the cached token may be quoted.
            report.detail.redact(&self.credentials);
            if self.cached.is_some() {
                report.detail.redact_token(self.grant.access_token());
                if let Some(refresh) = self.grant.refresh_token() {
                    report.detail.redact_token(refresh);
                }
            }
        }
        // Retrying cannot help refused credentials (and may lock the account) nor a URL
        // that may not carry the secret.
        self.sticky = matches!(
            cause.kind(),
            ErrorKind::InvalidCredentials | ErrorKind::Insecure | ErrorKind::InvalidUrl
        );
        if self.sticky {
            // Refused credentials are tried again after `refusal_retry` (a URL never is).
            let period = millis(self.config.refusal_retry);
            self.backoff_until = (cause.kind() == ErrorKind::InvalidCredentials && period > 0)
                .then(|| now.saturating_add_millis(period));
        } else {
            let base = millis(self.config.backoff_base);
            let cap = millis(self.config.backoff_cap).max(base);
            let step = base
                .saturating_mul(1u64.checked_shl(self.attempts).unwrap_or(u64::MAX))
                .min(cap);
            let delay = self
                .jitter
                .between(base.min(step), step)
                .max(retry_after.map_or(0, |d| millis(d).min(millis(self.config.retry_after_cap))));
            self.attempts = self.attempts.saturating_add(1);
            self.backoff_until = Some(now.saturating_add_millis(delay));
        }
        self.failure = Some(Failure { cause, at: now });
    }
}

impl<P: fmt::Debug, const TOKEN: usize, const REFRESH: usize> fmt::Debug
    for Session<P, TOKEN, REFRESH>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("provider", &self.provider)
            .field("credentials", &self.credentials)
            .field("grant", &self.cached.map(|_| &self.grant))
            .field("fetching", &self.fetch.is_some())
            .field("backoff_until", &self.backoff_until)
            .field("failure", &self.failure)
            .finish()
    }
}

/// Writes `v` in decimal, saturated at `u32::MAX` (136 years): no `core::fmt` and no 64-bit
/// division, which cost flash on a Cortex-M0.
fn uint(out: &mut Out<'_>, v: u64) {
    let mut v = u32::try_from(v).unwrap_or(u32::MAX);
    let mut digits = [0u8; 10];
    let mut n = 0;
    loop {
        if let Some(d) = digits.get_mut(n) {
            *d = b'0' + (v % 10) as u8;
        }
        n += 1;
        v /= 10;
        if v == 0 || n >= digits.len() {
            break;
        }
    }
    digits.iter().take(n).rev().for_each(|&d| out.byte(d));
}
