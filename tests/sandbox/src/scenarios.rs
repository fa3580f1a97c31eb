//! The end-to-end scenarios every transport must pass, written once: tessera-std,
//! tessera-tokio and tessera-embassy each implement [`Harness`] and run them all with
//! [`scenario_tests!`](crate::scenario_tests).
//!
//! Lifecycle time is a [`ManualClock`] the harness gives its client; network timeouts are
//! real. No scenario sleeps to make time pass. Clients run with their transport's default
//! refresh (a background refresher), so what a refresh does is awaited with [`eventually`],
//! a bounded condition wait, and a held refresh is a [`Gate`] the scenario releases.
//!
//! The hostile-server suite: a plaintext token URL off the machine refused with no
//! connection made, the insecure opt-in, every transport failure classified (timeout,
//! connect, tls, protocol), an echoed secret never shown, a huge `Retry-After` capped,
//! extra request headers sent and response headers read, and a held refresh blocking no one.

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use tessera_core::{ErrorKind, Stage};

use crate::{
    base_url_at, CountingListener, Endpoint, Fault, Gate, ProviderKind, Sandbox, CLIENT_ID,
    CLIENT_SECRET, SCOPES,
};

pub use crate::ManualClock;

/// A failed call, as a scenario sees it.
#[derive(Debug)]
pub struct Failed {
    /// The kind.
    pub kind: ErrorKind,
    /// When the next attempt is allowed, if the client is backing off.
    pub retry_in: Option<Duration>,
    /// Everything the client says about it (Display and Debug), to check for secrets.
    pub text: String,
    /// The transport stage that failed, when `kind` is [`ErrorKind::Transport`].
    pub cause: Option<Stage>,
}

/// A downstream call's answer.
#[derive(Debug)]
pub struct Called {
    /// The status.
    pub status: u16,
    /// The response headers, names lowercase, in the order received.
    pub headers: Vec<(String, String)>,
}

/// What Shogun's validate said.
#[derive(Debug)]
pub struct Info {
    /// `client_id`.
    pub client_id: String,
    /// `authorities`.
    pub scopes: Vec<String>,
    /// `expires_at - issued_at`.
    pub lifetime_s: i64,
}

/// One transport's client, driven synchronously.
pub trait TestClient {
    /// A bearer token.
    fn token(&self) -> Result<String, Failed>;
    /// 64 callers asking at the same moment (threads, or tasks joined on one executor).
    fn tokens_at_once(&self) -> Vec<Result<String, Failed>>;
    /// A GET with the bearer token (401 → refetch once, retry once): the status.
    fn call(&self, url: &str) -> Result<u16, Failed>;
    /// [`TestClient::call`] with extra request headers: the status and response headers
    /// (names lowercase).
    fn call_with(&self, url: &str, headers: &[(&str, &str)]) -> Result<Called, Failed>;
    /// `n / 2` [`TestClient::token`] and `n / 2` [`TestClient::call`]`(url)` at the same
    /// moment (threads, or tasks joined on one executor): a token's result is the token, a
    /// call's is `format!("status {status}")`.
    fn token_and_calls_at_once(&self, n: usize, url: &str) -> Vec<Result<String, Failed>>;
    /// Shogun's validate, through the client.
    fn validate(&self, shogun_base: &str) -> Result<Info, Failed>;
    /// "Try again", once.
    fn retry(&self);
    /// Rotated credentials.
    fn set_secret(&self, secret: &str);
    /// The client's manual clock.
    fn clock(&self) -> &ManualClock;
    /// The client's `Debug`.
    fn describe(&self) -> String;
}

/// Makes clients of one transport.
pub trait Harness {
    /// The client type.
    type Client: TestClient;
    /// A client for `kind` on `sb` with `secret`; network timeouts of 500 ms; the
    /// transport's default refresh (in the background).
    fn client(&self, sb: &Sandbox, kind: ProviderKind, secret: &str) -> Self::Client {
        self.client_at(&sb.base_url(kind), kind, secret, false)
    }
    /// Like [`Harness::client`], with the provider's base URL `base_url` (see
    /// [`base_url_at`]) and the session's `allow_insecure_http`.
    fn client_at(
        &self,
        base_url: &str,
        kind: ProviderKind,
        secret: &str,
        allow_insecure_http: bool,
    ) -> Self::Client;
}

/// Waits until `cond` holds, for `limit` at most: whether it did. A bounded condition wait
/// for what a background refresh does; it never decides an outcome by sleeping.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How long a scenario waits for a background refresh, at most.
const SETTLE: Duration = Duration::from_secs(10);

/// A hold released this soon after the caller returned ended well inside the harness's
/// 500 ms network timeout, so the held fetch must land.
const HELD_WELL_WITHIN_TIMEOUT: Duration = Duration::from_millis(400);

/// Releases a gate after a time limit unless stopped first, so a client that wrongly waits
/// on a held request fails the scenario instead of hanging it.
struct Watchdog {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    fn new(gate: Gate, limit: Duration) -> Watchdog {
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let guard = s.0.lock().unwrap_or_else(|p| p.into_inner());
            let (guard, _) =
                s.1.wait_timeout_while(guard, limit, |stopped| !*stopped)
                    .unwrap_or_else(|p| p.into_inner());
            let fired = !*guard;
            if fired {
                gate.release();
            }
            fired
        });
        Watchdog { stop, thread }
    }

    /// Stops it: whether it had fired.
    fn stop(self) -> bool {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.1.notify_all();
        self.thread.join().unwrap_or(true)
    }
}

fn requests(sb: &Sandbox, kind: ProviderKind) -> u64 {
    sb.count(Endpoint::Token(kind))
}

/// No text holds the secret, nor any token a sandbox of this process issued.
pub fn assert_no_secret(texts: &[String]) {
    let tokens = crate::issued_tokens();
    for t in texts {
        assert!(
            !t.contains(CLIENT_SECRET) && !t.contains("s3cr3t"),
            "secret leaked: {t}"
        );
        // A token's signature is unique to it and never a substring of anything else.
        for token in &tokens {
            let sig = token.rsplit('.').next().unwrap_or(token);
            assert!(!t.contains(sig), "a token leaked: {t}");
        }
    }
}

/// Every log record of this process, at trace level, once [`capture_logs`] ran: (target,
/// line).
static LOGS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Targets of third-party HTTP libraries that hex-dump every byte on the wire at trace
/// level (ureq's protocol layer: the request with its secret, the response with its
/// token). Kept apart by [`logs`] and [`wire_dumps`]: the application's logger has to
/// filter them out, and a test says so on its own.
pub const WIRE_DUMP_TARGETS: [&str; 1] = ["ureq_proto"];

fn is_wire_dump(target: &str) -> bool {
    WIRE_DUMP_TARGETS
        .iter()
        .any(|t| target == *t || target.starts_with(&format!("{t}::")))
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        let target = record.target().to_owned();
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((target, line));
    }
    fn flush(&self) {}
}

/// Captures every log record at trace level from here on (idempotent). Harnesses call it
/// when they make a client, so the whole suite runs with logging on.
pub fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in a test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

fn captured(wire: bool) -> Vec<String> {
    LOGS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(target, _)| is_wire_dump(target) == wire)
        .map(|(_, line)| line.clone())
        .collect()
}

/// The log lines captured so far, every target but the [`WIRE_DUMP_TARGETS`].
pub fn logs() -> Vec<String> {
    captured(false)
}

/// The lines captured from the [`WIRE_DUMP_TARGETS`] (hex dumps of whole requests and
/// responses).
pub fn wire_dumps() -> Vec<String> {
    captured(true)
}

/// The secret-hygiene audit [`scenario_tests!`](crate::scenario_tests) runs after every
/// scenario: no log line so far holds the secret or an issued token.
pub fn audit() {
    assert_no_secret(&logs());
}

/// Fetch, reuse without requests, and an authorised call, for every provider.
pub fn fetch_reuse_call(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let c = h.client(&sb, kind, CLIENT_SECRET);
        let t = c.token().unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        assert_eq!(t.split('.').count(), 3, "{kind}: a JWT");
        for _ in 0..10 {
            c.clock().advance(Duration::from_secs(60));
            assert_eq!(c.token().unwrap(), t, "{kind}");
        }
        assert_eq!(requests(&sb, kind), 1, "{kind}: reuse sends no request");
        assert_eq!(c.call(&sb.protected_url(kind)).unwrap(), 200, "{kind}");
        assert_eq!(requests(&sb, kind), 1, "{kind}");
        let described = c.describe();
        assert!(!described.contains(&t), "{kind}: Debug shows the token");
        assert_no_secret(&[described]);
    }
}

/// Proactive refresh at the margin, for every provider.
pub fn refresh_before_expiry(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        sb.set_lifetime(kind, 3600);
        let c = h.client(&sb, kind, CLIENT_SECRET);
        let first = c.token().unwrap();
        // Default margin for a one-hour token: 5 minutes.
        c.clock()
            .advance(Duration::from_secs(3300) - Duration::from_millis(1));
        assert_eq!(c.token().unwrap(), first);
        assert_eq!(requests(&sb, kind), 1, "{kind}");
        c.clock().advance(Duration::from_millis(1));
        // The caller that finds it due still gets the current token, and it is refreshed.
        assert_eq!(c.token().unwrap(), first, "{kind}");
        assert!(
            eventually(SETTLE, || c.token().unwrap() != first),
            "{kind}: refreshed before expiry"
        );
        assert_eq!(requests(&sb, kind), 2, "{kind}: one refresh");
        assert_eq!(c.call(&sb.protected_url(kind)).unwrap(), 200);
    }
}

/// Setu's envelope overstates the lifetime; the JWT's is used.
pub fn setu_refreshes_by_the_jwt(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    sb.set_lifetime(ProviderKind::Setu, 300);
    let c = h.client(&sb, ProviderKind::Setu, CLIENT_SECRET);
    let first = c.token().unwrap();
    c.clock().advance(Duration::from_secs(270));
    c.token().unwrap();
    assert!(
        eventually(SETTLE, || c.token().unwrap() != first),
        "refresh at 300 - 30 s, not 1800 - 180 s"
    );
    assert_eq!(requests(&sb, ProviderKind::Setu), 2);
}

/// A downstream 401: one refetch, one retry; a persistent 401 is returned, not looped on.
pub fn a_401_refetches_once_and_retries_once(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let c = h.client(&sb, kind, CLIENT_SECRET);
        c.token().unwrap();
        sb.revoke_all(kind);
        assert_eq!(c.call(&sb.protected_url(kind)).unwrap(), 200, "{kind}");
        assert_eq!(requests(&sb, kind), 2, "{kind}");
        assert_eq!(sb.count(Endpoint::Protected(kind)), 2, "{kind}");
        sb.inject(Endpoint::Protected(kind), Fault::Status(401), 2);
        assert_eq!(c.call(&sb.protected_url(kind)).unwrap(), 401, "{kind}");
        assert_eq!(requests(&sb, kind), 3, "{kind}");
        assert_eq!(sb.count(Endpoint::Protected(kind)), 4, "{kind}");
    }
}

/// Shogun's validate: scopes and expiry; a dead token is replaced and asked about again.
pub fn shogun_validate(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    sb.set_lifetime(ProviderKind::Shogun, 86_400);
    let c = h.client(&sb, ProviderKind::Shogun, CLIENT_SECRET);
    let base = sb.base_url(ProviderKind::Shogun);
    let info = c.validate(&base).unwrap();
    assert_eq!(info.client_id, CLIENT_ID);
    assert_eq!(info.scopes, SCOPES);
    assert_eq!(info.lifetime_s, 86_400);
    sb.revoke_all(ProviderKind::Shogun);
    c.validate(&base).unwrap();
    assert_eq!(requests(&sb, ProviderKind::Shogun), 2);
    assert_eq!(sb.count(Endpoint::Validate), 3);
}

/// A validate error that quotes its request (Shogun's do), the bearer token included: the
/// token is in no error text, whole or as any 16 of its bytes (a message is cut to its
/// buffer, so a cut copy must not survive either); `audit` then checks every log line.
pub fn a_token_validate_echoes_is_never_shown(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    let c = h.client(&sb, ProviderKind::Shogun, CLIENT_SECRET);
    let base = sb.base_url(ProviderKind::Shogun);
    let token = c.token().unwrap();
    sb.inject(Endpoint::Validate, Fault::EchoRequest, 1);
    let e = c.validate(&base).unwrap_err();
    assert_eq!(sb.count(Endpoint::Validate), 1, "the echo was served");
    for at in (0..token.len().saturating_sub(16)).step_by(8) {
        let piece = token.get(at..at + 16).unwrap_or_default();
        assert!(!e.text.contains(piece), "token bytes {at}.. in {}", e.text);
    }
}

/// The captured logs record what happened: a refused fetch, a request, a stored token. So
/// the audit after every scenario reads real lines, not an empty capture.
pub fn logs_record_what_happened(h: &impl Harness) {
    invalid_credentials_are_not_retried(h);
    let lines = logs();
    for expected in [
        "token fetch failed",
        "token request POST",
        "new token stored",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(expected)),
            "no {expected:?} line captured"
        );
    }
}

/// Refused credentials: one request however often callers keep asking during the refusal
/// period (`refusal_retry`, 15 min by default), then exactly one more attempt; new ones work
/// at once.
pub fn invalid_credentials_are_not_retried<H: Harness>(h: &H) {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let c = h.client(&sb, kind, "wrong secret");
        let mut texts = Vec::new();
        let mut refused = |c: &H::Client| {
            let e = c.token().unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidCredentials, "{kind}: {}", e.text);
            assert_eq!(e.retry_in, None, "{kind}");
            texts.push(e.text);
        };
        for _ in 0..50 {
            refused(&c);
            c.clock().advance(Duration::from_secs(17));
        }
        assert_eq!(requests(&sb, kind), 1, "{kind}: one attempt in 14 minutes");
        // The period is over: one attempt, refused again, and another period.
        c.clock().advance(Duration::from_secs(50));
        for _ in 0..20 {
            refused(&c);
            c.clock().advance(Duration::from_secs(30));
        }
        assert_eq!(
            requests(&sb, kind),
            2,
            "{kind}: one more attempt per period"
        );
        if kind == ProviderKind::Setu {
            assert!(
                texts[0].contains("trace "),
                "Setu's traceID is kept: {}",
                texts[0]
            );
        }
        c.set_secret(CLIENT_SECRET);
        c.token().unwrap();
        assert_eq!(
            requests(&sb, kind),
            3,
            "{kind}: new credentials, tried at once"
        );
        assert_no_secret(&texts);
    }
}

/// Shogun's lockout is backed off, never hammered.
pub fn lockout_is_backed_off(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    sb.set_lockout(3, Duration::from_secs(3600));
    let kind = ProviderKind::Shogun;
    let c = h.client(&sb, kind, "wrong");
    for attempt in 1..=3 {
        let e = c.token().unwrap_err();
        let want = if attempt < 3 {
            ErrorKind::InvalidCredentials
        } else {
            ErrorKind::RateLimited
        };
        assert_eq!(e.kind, want, "attempt {attempt}: {}", e.text);
        c.retry();
    }
    c.set_secret(CLIENT_SECRET);
    let e = c.token().unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    let wait = e.retry_in.expect("a backoff");
    assert!(wait >= Duration::from_secs(1), "{wait:?}");
    assert_eq!(requests(&sb, kind), 4);
    for _ in 0..20 {
        assert_eq!(c.token().unwrap_err().kind, ErrorKind::RateLimited);
    }
    c.clock().advance(wait - Duration::from_millis(1));
    assert!(c.token().is_err());
    assert_eq!(
        requests(&sb, kind),
        4,
        "nothing sent before the backoff ends"
    );
    c.clock().advance(Duration::from_millis(1));
    let wait2 = c.token().unwrap_err().retry_in.expect("a longer backoff");
    assert_eq!(requests(&sb, kind), 5);
    sb.unlock();
    c.clock().advance(wait2);
    c.token().unwrap();
    assert_eq!(requests(&sb, kind), 6);
}

/// 64 callers at once: exactly one token request, one token for all.
pub fn many_callers_one_request(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let c = h.client(&sb, kind, CLIENT_SECRET);
        sb.inject(
            Endpoint::Token(kind),
            Fault::Delay(Duration::from_millis(300)),
            1,
        );
        let tokens: Vec<String> = c.tokens_at_once().into_iter().map(|t| t.unwrap()).collect();
        assert_eq!(tokens.len(), 64);
        assert!(
            tokens.windows(2).all(|w| w[0] == w[1]),
            "{kind}: one token for all"
        );
        assert_eq!(requests(&sb, kind), 1, "{kind}: exactly one token request");
    }
}

/// Every injected fault: the expected typed error, then recovery.
///
/// No clock decides: a provider that never answers is held at a gate the test opens only
/// once the client has given up by itself (its 500 ms timeout), so a client that waited for
/// the answer would get the token and fail the typed-error check; a slow drip would likewise
/// end in a token. A watchdog opens the gate after 10 s, so a hung client fails rather
/// than hangs the suite.
pub fn every_fault_is_typed_then_recovers(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    let faults = [
        // The gate is replaced by a fresh one for each case.
        (Fault::Hold(Gate::new()), Some(ErrorKind::Transport)),
        (Fault::Status(500), Some(ErrorKind::ServerError)),
        (Fault::Status(503), Some(ErrorKind::ServerError)),
        (Fault::Status(404), Some(ErrorKind::Rejected)),
        (
            Fault::RateLimited {
                retry_after: Some(7),
            },
            Some(ErrorKind::RateLimited),
        ),
        (Fault::Html(502), Some(ErrorKind::ServerError)),
        (Fault::DropMidBody, Some(ErrorKind::Transport)),
        (Fault::Truncated, Some(ErrorKind::Malformed)),
        (Fault::Malformed, Some(ErrorKind::Malformed)),
        // One byte over the client's 2,048-byte token capacity, and exactly at it.
        (Fault::OversizedToken(2049), Some(ErrorKind::Capacity)),
        (Fault::OversizedToken(2048), None),
        (
            Fault::SlowDrip(Duration::from_millis(100)),
            Some(ErrorKind::Transport),
        ),
        (Fault::HugeBody(10 * 1024 * 1024), Some(ErrorKind::Capacity)),
        (Fault::WrongContentType, None),
    ];
    let mut texts = Vec::new();
    for kind in ProviderKind::ALL {
        for (fault, want) in &faults {
            let c = h.client(&sb, kind, CLIENT_SECRET);
            let gate = Gate::new();
            let fault = match fault {
                Fault::Hold(_) => Fault::Hold(gate.clone()),
                other => other.clone(),
            };
            sb.inject(Endpoint::Token(kind), fault.clone(), 1);
            let watchdog = Watchdog::new(gate.clone(), SETTLE);
            let got = c.token();
            gate.release();
            watchdog.stop();
            match (got, want) {
                (Ok(_), None) => {}
                (Err(e), Some(k)) => {
                    assert_eq!(e.kind, *k, "{kind} {fault:?}: {}", e.text);
                    if let Fault::RateLimited { .. } = fault {
                        assert_eq!(
                            e.retry_in,
                            Some(Duration::from_secs(7)),
                            "{kind}: Retry-After"
                        );
                    }
                    texts.push(e.text);
                    c.retry();
                    c.token()
                        .unwrap_or_else(|e| panic!("{kind} {fault:?}: no recovery: {}", e.text));
                    assert_eq!(c.call(&sb.protected_url(kind)).unwrap(), 200);
                }
                (got, want) => panic!("{kind} {fault:?}: got {got:?}, wanted {want:?}"),
            }
        }
    }
    assert_no_secret(&texts);
}

/// The faults a refresh can meet, each with the error it must be typed as.
fn refresh_faults() -> Vec<(Fault, ErrorKind)> {
    vec![
        (Fault::Status(500), ErrorKind::ServerError),
        (Fault::Html(502), ErrorKind::ServerError),
        (Fault::DropMidBody, ErrorKind::Transport),
        (Fault::Truncated, ErrorKind::Malformed),
        (Fault::Malformed, ErrorKind::Malformed),
        (Fault::OversizedToken(2049), ErrorKind::Capacity),
        (
            Fault::SlowDrip(Duration::from_millis(100)),
            ErrorKind::Transport,
        ),
        (Fault::HugeBody(10 * 1024 * 1024), ErrorKind::Capacity),
    ]
}

/// A refresh that meets a fault never costs the cached token: callers keep getting it, and
/// calls with it keep working, until a refresh succeeds. A half-read or oversized answer
/// never replaces it.
pub fn a_failed_refresh_keeps_the_cached_token(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        sb.set_lifetime(kind, 3600);
        for (fault, _) in refresh_faults() {
            let c = h.client(&sb, kind, CLIENT_SECRET);
            let first = c.token().unwrap();
            // Past the refresh point (5 minutes before expiry), well before expiry.
            c.clock().advance(Duration::from_secs(3400));
            // The faulty answer waits at a gate the test opens only after the caller has its
            // token: a caller that waited for the refresh would still be waiting (until the
            // watchdog opens the gate, and then fail the check below).
            let gate = Gate::new();
            let held = Fault::HoldThen(gate.clone(), Box::new(fault.clone()));
            sb.inject(Endpoint::Token(kind), held, 1);
            let before = requests(&sb, kind);
            let watchdog = Watchdog::new(gate.clone(), SETTLE);
            let during = c.token();
            assert!(
                !gate.is_released(),
                "{kind} {fault:?}: the caller waited for the refresh"
            );
            gate.release();
            watchdog.stop();
            assert_eq!(
                during.map_err(|e| e.text).as_deref(),
                Ok(first.as_str()),
                "{kind} {fault:?}: a failed refresh must keep serving the cached token"
            );
            assert!(
                eventually(SETTLE, || requests(&sb, kind) == before + 1),
                "{kind} {fault:?}: one refresh (seen {} after {before})",
                requests(&sb, kind)
            );
            assert_eq!(c.token().unwrap(), first, "{kind} {fault:?}: still cached");
            assert_eq!(
                c.call(&sb.protected_url(kind)).unwrap(),
                200,
                "{kind} {fault:?}"
            );
            // Once the fault is gone, "try again" (once the failure has landed) replaces it
            // with a whole new token.
            assert!(
                eventually(SETTLE, || {
                    c.retry();
                    c.token().unwrap() != first
                }),
                "{kind} {fault:?}: refreshed after the retry"
            );
            assert_eq!(
                requests(&sb, kind),
                before + 2,
                "{kind} {fault:?}: refreshed once"
            );
            let second = c.token().unwrap();
            assert_ne!(second, first, "{kind} {fault:?}: refreshed");
            assert_eq!(
                c.call(&sb.protected_url(kind)).unwrap(),
                200,
                "{kind} {fault:?}"
            );
        }
    }
}

/// `expires_in: 0` is dead on arrival: a typed error and a backoff, never a storm of
/// requests nor a token served that is already dead. `u32::MAX` seconds is a token kept for
/// as long as it says, with no overflow anywhere.
pub fn lifetime_edges(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        sb.set_lifetime(kind, 0);
        let c = h.client(&sb, kind, CLIENT_SECRET);
        let e = c
            .token()
            .expect_err("a token dead on arrival is not served");
        assert_eq!(e.kind, ErrorKind::Malformed, "{kind}: {}", e.text);
        assert!(e.retry_in.is_some(), "{kind}: backs off");
        let e = c.token().expect_err("still backing off");
        assert_eq!(
            requests(&sb, kind),
            1,
            "{kind}: no second request while backing off: {}",
            e.text
        );

        sb.set_lifetime(kind, u64::from(u32::MAX));
        c.retry();
        let t = c.token().unwrap();
        for _ in 0..4 {
            // 30 years at a time: 120 years, still inside a life of u32::MAX seconds (136 years).
            c.clock().advance(Duration::from_secs(30 * 365 * 86_400));
            assert_eq!(c.token().unwrap(), t, "{kind}");
        }
        assert_eq!(requests(&sb, kind), 2, "{kind}: one token for 120 years");
    }
}

// ---- the hostile-server suite -------------------------------------------------------------

/// A port on 127.0.0.1 nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// A token URL with the secret over plaintext to a host that is not loopback is refused
/// before any connection (and stays refused); so is a downstream call that would carry the
/// bearer token there. `0.0.0.0:PORT` would reach the counting listener if anything
/// connected.
pub fn plaintext_off_the_machine_is_refused_before_connecting(h: &impl Harness) {
    let l = CountingListener::start().unwrap();
    let off_machine = format!("http://0.0.0.0:{}", l.port());
    let mut texts = Vec::new();
    for kind in ProviderKind::ALL {
        let c = h.client_at(&base_url_at(&off_machine, kind), kind, CLIENT_SECRET, false);
        for attempt in 0..3 {
            let e = c.token().expect_err("refused");
            assert_eq!(e.kind, ErrorKind::Insecure, "{kind} #{attempt}: {}", e.text);
            assert_eq!(e.cause, None, "{kind}: refused, not a network failure");
            assert_eq!(e.retry_in, None, "{kind}: nothing to wait for");
            texts.push(e.text);
            c.clock().advance(Duration::from_secs(3600));
        }
    }
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    let c = h.client(&sb, kind, CLIENT_SECRET);
    c.token().unwrap();
    let e = c
        .call(&format!("{off_machine}/oauth2/protected"))
        .expect_err("a bearer token in plaintext off the machine");
    assert_eq!(e.kind, ErrorKind::Insecure, "{}", e.text);
    texts.push(e.text);
    assert_eq!(l.accepted(), 0, "a connection was made");
    assert_no_secret(&texts);
}

/// With the explicit opt-in (a LAN sandbox), the same URL is used: the request reaches the
/// listener, which hangs up without answering (a transport failure).
pub fn the_insecure_opt_in_reaches_a_lan_host(h: &impl Harness) {
    let l = CountingListener::start().unwrap();
    let kind = ProviderKind::OAuth2;
    let base = base_url_at(&format!("http://0.0.0.0:{}", l.port()), kind);
    let c = h.client_at(&base, kind, CLIENT_SECRET, true);
    let e = c.token().expect_err("the listener never answers");
    assert_eq!(e.kind, ErrorKind::Transport, "{}", e.text);
    assert!(e.cause.is_some(), "classified: {}", e.text);
    assert_eq!(l.accepted(), 1);
    assert!(l.wait_requests(1, SETTLE), "no request arrived");
    let head = &l.requests()[0];
    assert!(
        head.starts_with("POST /oauth2/token HTTP/1.1\r\n"),
        "{head}"
    );
    assert_no_secret(&[e.text]);
}

fn expect_cause(what: &str, got: Result<String, Failed>, stage: Stage) -> String {
    let e = got.expect_err(what);
    assert_eq!(e.kind, ErrorKind::Transport, "{what}: {}", e.text);
    assert_eq!(e.cause, Some(stage), "{what}: {}", e.text);
    e.text
}

/// Every network failure names its stage: a server slower than the timeout `timeout`, a
/// closed port `connect`, TLS spoken to a plain HTTP server `tls`, a garbage status line and
/// broken chunked framing `protocol`.
pub fn each_transport_failure_is_classified(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    let mut texts = Vec::new();
    for kind in ProviderKind::ALL {
        sb.inject(
            Endpoint::Token(kind),
            Fault::Delay(Duration::from_secs(3)),
            1,
        );
        let c = h.client(&sb, kind, CLIENT_SECRET);
        // Answered after 3 s, so only the 500 ms timeout makes this fail.
        texts.push(expect_cause(
            &format!("{kind}: slow server"),
            c.token(),
            Stage::Timeout,
        ));

        let closed = format!("http://127.0.0.1:{}", closed_port());
        let c = h.client_at(&base_url_at(&closed, kind), kind, CLIENT_SECRET, false);
        texts.push(expect_cause(
            &format!("{kind}: closed port"),
            c.token(),
            Stage::Connect,
        ));

        let tls_to_plain = format!("https://{}", sb.addr());
        let c = h.client_at(
            &base_url_at(&tls_to_plain, kind),
            kind,
            CLIENT_SECRET,
            false,
        );
        texts.push(expect_cause(
            &format!("{kind}: TLS to a plain server"),
            c.token(),
            Stage::Tls,
        ));

        for fault in [Fault::GarbageStatusLine, Fault::BrokenChunked] {
            sb.inject(Endpoint::Token(kind), fault.clone(), 1);
            let c = h.client(&sb, kind, CLIENT_SECRET);
            texts.push(expect_cause(
                &format!("{kind}: {fault:?}"),
                c.token(),
                Stage::Protocol,
            ));
            // Nothing sticks: the next attempt works.
            c.retry();
            c.token()
                .unwrap_or_else(|e| panic!("{kind} {fault:?}: no recovery: {}", e.text));
        }
    }
    assert_no_secret(&texts);
}

/// A token fetch and ten calls to the same origin go on one TCP connection, kept between
/// them; once the server closes idle connections, the next call opens one more and works (a
/// GET found on a dead kept connection is sent again). Not in `scenario_tests!`: a transport
/// opts in with its own `#[test]` once it keeps connections.
pub fn calls_share_one_kept_connection(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    let c = h.client(&sb, kind, CLIENT_SECRET);
    let url = sb.protected_url(kind);
    for i in 0..10 {
        assert_eq!(c.call(&url).unwrap(), 200, "call {i}");
    }
    let wire = sb.wire();
    assert_eq!(
        (wire.connections, sb.count(Endpoint::Protected(kind))),
        (1, 10),
        "one connection for the token and ten calls: {wire:?}"
    );
    sb.close_idle_connections();
    assert_eq!(c.call(&url).unwrap(), 200);
    assert_eq!(sb.wire().connections, 2, "{:?}", sb.wire());
    assert_eq!(sb.count(Endpoint::Protected(kind)), 11);
}

/// The hostile answers of [`Hostile`](crate::Hostile), each from a raw server, through the
/// transport: a `103 Early Hints` or a body followed by stray bytes still gives the token;
/// chunked wins over a `Content-Length` (either order); `Transfer-Encoding: identity` is
/// no coding; an endless `100 Continue` stream waits out the timeout; `Content-Length: +N`
/// is refused. Every transport reads them alike (not in `scenario_tests!`: a transport opts
/// in with its own `#[test]`).
pub fn hostile_answers_are_read_alike(h: &impl Harness) {
    use crate::{Hostile, HostileServer, Outcome};
    let kind = ProviderKind::OAuth2;
    for case in Hostile::ALL {
        let server = HostileServer::start(case).unwrap();
        let c = h.client_at(
            &base_url_at(&server.origin(), kind),
            kind,
            CLIENT_SECRET,
            false,
        );
        let got = c.token();
        match case.outcome() {
            Outcome::Token => assert_eq!(
                got.map_err(|e| e.text).as_deref(),
                Ok("hostile-ok"),
                "{case:?}"
            ),
            Outcome::Fails(stage) => {
                let e = got.expect_err(&format!("{case:?}"));
                assert_eq!(
                    e.cause.map(|s| s.as_str()),
                    Some(stage),
                    "{case:?}: {}",
                    e.text
                );
            }
        }
    }
}

/// A provider that echoes the request (body and `Authorization`, secret included) in its
/// error message: the message is kept, the secret is not, in any form the request used.
pub fn an_echoed_secret_is_never_shown(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        sb.inject(Endpoint::Token(kind), Fault::EchoRequest, 1);
        let c = h.client(&sb, kind, CLIENT_SECRET);
        let e = c.token().expect_err("a 400");
        assert_eq!(requests(&sb, kind), 1, "{kind}");
        assert!(
            e.text.contains("bad request"),
            "{kind}: the provider's message is kept: {}",
            e.text
        );
        let mut texts = vec![e.text, c.describe()];
        c.retry();
        c.token().unwrap();
        texts.push(c.describe());
        texts.extend(logs());
        assert_no_secret(&texts);
        // The Basic credentials the request carried (base64 of `id:secret`) are gone too,
        // even cut short.
        let sent = sb.last_headers(Endpoint::Token(kind));
        let basic = sent
            .iter()
            .find(|(k, _)| k == "authorization")
            .and_then(|(_, v)| v.strip_prefix("Basic "));
        if let Some(b64) = basic {
            let head = b64.get(..12).unwrap_or(b64);
            for t in &texts {
                assert!(!t.contains(head), "{kind}: Basic credentials leaked: {t}");
            }
        }
    }
}

/// `Retry-After: 1000000000` (31 years) is capped by the session's `retry_after_cap`
/// (default 600 s): the client tries again after the cap, not in 31 years.
pub fn a_huge_retry_after_is_capped(h: &impl Harness) {
    let cap = tessera_core::Config::default().retry_after_cap;
    assert_eq!(cap, Duration::from_secs(600));
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        sb.inject(
            Endpoint::Token(kind),
            Fault::RateLimited {
                retry_after: Some(1_000_000_000),
            },
            1,
        );
        let c = h.client(&sb, kind, CLIENT_SECRET);
        let e = c.token().expect_err("rate limited");
        assert_eq!(e.kind, ErrorKind::RateLimited, "{kind}: {}", e.text);
        let wait = e.retry_in.expect("a backoff");
        assert!(
            wait <= cap && wait + Duration::from_secs(1) >= cap,
            "{kind}: waits {wait:?}, cap {cap:?}"
        );
        c.clock().advance(wait);
        c.token()
            .unwrap_or_else(|e| panic!("{kind}: tried again after the cap: {}", e.text));
        assert_eq!(requests(&sb, kind), 2, "{kind}");
    }
}

/// Extra request headers (an `Idempotency-Key`) reach the server, on the retry after a 401
/// too; the response's headers come back, names lowercase.
pub fn extra_headers_go_out_and_response_headers_come_back(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let c = h.client(&sb, kind, CLIENT_SECRET);
        let url = sb.protected_url(kind);
        let extra = [("Idempotency-Key", "pay-0001"), ("X-Till", "till 7")];
        for revoked in [false, true] {
            if revoked {
                sb.revoke_all(kind);
            }
            let called = c
                .call_with(&url, &extra)
                .unwrap_or_else(|e| panic!("{kind}: {}", e.text));
            assert_eq!(called.status, 200, "{kind} revoked {revoked}");
            let n = sb.count(Endpoint::Protected(kind));
            assert_eq!(n, if revoked { 3 } else { 1 }, "{kind}");
            assert!(
                called
                    .headers
                    .contains(&("x-request-id".into(), format!("req-{n}"))),
                "{kind}: {:?}",
                called.headers
            );
            assert!(
                called
                    .headers
                    .iter()
                    .all(|(k, _)| *k == k.to_ascii_lowercase()),
                "{kind}: names lowercase: {:?}",
                called.headers
            );
            let seen = sb.last_headers(Endpoint::Protected(kind));
            for (k, v) in extra {
                assert!(
                    seen.contains(&(k.to_ascii_lowercase(), v.to_owned())),
                    "{kind} revoked {revoked}: {k} missing from {seen:?}"
                );
            }
            let bearer = seen
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.as_str());
            assert!(
                bearer.is_some_and(|v| v.starts_with("Bearer ")),
                "{kind}: {seen:?}"
            );
        }
        assert_eq!(requests(&sb, kind), 2, "{kind}: one refetch after the 401");
    }
}

/// The point of sale never waits on a refresh: with the refresh held at the provider, the
/// due token is served at once, and 16 callers of `token()` and `call()` all complete with
/// it; once released, the refresh lands and callers get the new token.
pub fn a_held_refresh_blocks_no_one(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        sb.set_lifetime(kind, 3600);
        let c = h.client(&sb, kind, CLIENT_SECRET);
        let first = c.token().unwrap();
        let gate = Gate::new();
        sb.inject(Endpoint::Token(kind), Fault::Hold(gate.clone()), 1);
        // Past the refresh point (5 minutes before expiry), well before expiry.
        c.clock().advance(Duration::from_secs(3400));
        let watchdog = Watchdog::new(gate.clone(), SETTLE);
        assert_eq!(c.token().unwrap(), first, "{kind}: the due token, at once");
        let returned = std::time::Instant::now();
        assert!(
            gate.wait_arrived(1, SETTLE),
            "{kind}: the refresh never reached the provider"
        );
        let url = sb.protected_url(kind);
        let results = c.token_and_calls_at_once(16, &url);
        assert_eq!(results.len(), 16, "{kind}");
        let (mut tokens, mut calls) = (0, 0);
        for r in results {
            match r {
                Ok(t) if t == first => tokens += 1,
                Ok(s) if s == "status 200" => calls += 1,
                other => panic!("{kind}: {other:?}"),
            }
        }
        assert_eq!((tokens, calls), (8, 8), "{kind}");
        assert_eq!(c.token().unwrap(), first, "{kind}: still the old token");
        assert!(
            !gate.is_released(),
            "{kind}: callers waited for the held refresh"
        );
        assert_eq!(requests(&sb, kind), 2, "{kind}: one refresh in flight");
        gate.release();
        let held_for = returned.elapsed();
        assert!(!watchdog.stop(), "{kind}: the watchdog fired");
        if held_for < HELD_WELL_WITHIN_TIMEOUT {
            // Released well before the client's 500 ms network timeout: the held refresh
            // itself lands (a client that ran it in the caller's thread timed it out while
            // the caller waited, and fails here).
            assert!(
                eventually(SETTLE, || c.token().unwrap() != first),
                "{kind}: the released refresh never landed"
            );
            assert_eq!(requests(&sb, kind), 2, "{kind}: still one refresh");
        } else {
            // A machine so loaded that the hold outlasted the network timeout: the held
            // fetch may have timed out, as it should; "try again" fetches once more.
            assert!(
                eventually(SETTLE, || {
                    c.retry();
                    c.token().unwrap() != first
                }),
                "{kind}: no new token after the release (held {held_for:?})"
            );
            assert!((2..=3).contains(&requests(&sb, kind)), "{kind}");
        }
        assert_eq!(c.call(&url).unwrap(), 200, "{kind}");
        assert_eq!(gate.arrived(), 1, "{kind}");
    }
}

/// One `#[test]` per scenario for a harness.
#[macro_export]
macro_rules! scenario_tests {
    ($harness:expr) => {
        $crate::scenario_tests!(@each $harness;
            fetch_reuse_call, refresh_before_expiry, setu_refreshes_by_the_jwt,
            a_401_refetches_once_and_retries_once, shogun_validate,
            a_token_validate_echoes_is_never_shown, invalid_credentials_are_not_retried, lockout_is_backed_off,
            many_callers_one_request, every_fault_is_typed_then_recovers,
            a_failed_refresh_keeps_the_cached_token, lifetime_edges,
            logs_record_what_happened,
            plaintext_off_the_machine_is_refused_before_connecting,
            the_insecure_opt_in_reaches_a_lan_host, each_transport_failure_is_classified,
            an_echoed_secret_is_never_shown, a_huge_retry_after_is_capped,
            extra_headers_go_out_and_response_headers_come_back,
            a_held_refresh_blocks_no_one);
    };
    (@each $harness:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $crate::scenarios::$name(&$harness);
                $crate::scenarios::audit();
            }
        )*
    };
}
