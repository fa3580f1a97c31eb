//! The end-to-end scenarios every transport must pass, written once: tessera-std and
//! tessera-embassy each implement [`Harness`] and run them all with [`scenario_tests!`](crate::scenario_tests).
//!
//! Lifecycle time is a [`ManualClock`] the harness gives its client; network timeouts are
//! real. No scenario sleeps to make time pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use tessera_core::{Clock, ErrorKind, Instant};

use crate::{Endpoint, Fault, ProviderKind, Sandbox, CLIENT_ID, CLIENT_SECRET, SCOPES};

/// A monotonic clock moved by hand.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// A failed call, as a scenario sees it.
#[derive(Debug)]
pub struct Failed {
    /// The kind.
    pub kind: ErrorKind,
    /// When the next attempt is allowed, if the client is backing off.
    pub retry_in: Option<Duration>,
    /// Everything the client says about it (Display and Debug), to check for secrets.
    pub text: String,
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
    /// A client for `kind` on `sb` with `secret`; network timeouts of 500 ms.
    fn client(&self, sb: &Sandbox, kind: ProviderKind, secret: &str) -> Self::Client;
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

/// Every log record of this process, at trace level, once [`capture_logs`] ran.
static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        LOGS.lock().unwrap_or_else(|p| p.into_inner()).push(line);
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

/// The log lines captured so far.
pub fn logs() -> Vec<String> {
    LOGS.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
        assert_eq!(requests(&sb, kind), 2, "{kind}: refreshed before expiry");
        assert_ne!(c.token().unwrap(), first, "{kind}");
        assert_eq!(c.call(&sb.protected_url(kind)).unwrap(), 200);
    }
}

/// Setu's envelope overstates the lifetime; the JWT's is used.
pub fn setu_refreshes_by_the_jwt(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    sb.set_lifetime(ProviderKind::Setu, 300);
    let c = h.client(&sb, ProviderKind::Setu, CLIENT_SECRET);
    c.token().unwrap();
    c.clock().advance(Duration::from_secs(270));
    c.token().unwrap();
    assert_eq!(
        requests(&sb, ProviderKind::Setu),
        2,
        "refresh at 300 - 30 s, not 1800 - 180 s"
    );
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

/// Refused credentials: one request however long callers keep asking; new ones work.
pub fn invalid_credentials_are_not_retried(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let c = h.client(&sb, kind, "wrong secret");
        let mut texts = Vec::new();
        for _ in 0..50 {
            let e = c.token().unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidCredentials, "{kind}: {}", e.text);
            assert_eq!(e.retry_in, None, "{kind}");
            texts.push(e.text);
            c.clock().advance(Duration::from_secs(3600));
        }
        assert_eq!(requests(&sb, kind), 1, "{kind}: one attempt in 50 hours");
        if kind == ProviderKind::Setu {
            assert!(
                texts[0].contains("trace "),
                "Setu's traceID is kept: {}",
                texts[0]
            );
        }
        c.set_secret(CLIENT_SECRET);
        c.token().unwrap();
        assert_eq!(requests(&sb, kind), 2, "{kind}");
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

/// Every injected fault: the expected typed error within the timeout, then recovery.
pub fn every_fault_is_typed_then_recovers(h: &impl Harness) {
    let sb = Sandbox::start().unwrap();
    let faults = [
        (
            Fault::Delay(Duration::from_secs(3)),
            Some(ErrorKind::Transport),
        ),
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
            sb.inject(Endpoint::Token(kind), fault.clone(), 1);
            let started = std::time::Instant::now();
            let got = c.token();
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(2500),
                "{kind} {fault:?} hung for {took:?}"
            );
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
            sb.inject(Endpoint::Token(kind), fault.clone(), 1);
            let before = requests(&sb, kind);
            let started = std::time::Instant::now();
            let during = c.token();
            assert!(
                started.elapsed() < Duration::from_millis(2500),
                "{kind} {fault:?}: the refresh hung"
            );
            assert_eq!(
                during.map_err(|e| e.text).as_deref(),
                Ok(first.as_str()),
                "{kind} {fault:?}: a failed refresh must keep serving the cached token"
            );
            assert_eq!(
                requests(&sb, kind),
                before + 1,
                "{kind} {fault:?}: one refresh"
            );
            assert_eq!(c.token().unwrap(), first, "{kind} {fault:?}: still cached");
            assert_eq!(
                c.call(&sb.protected_url(kind)).unwrap(),
                200,
                "{kind} {fault:?}"
            );
            // Once the fault is gone, the next attempt replaces it with a whole new token
            // (the caller that runs a refresh may be handed the token it replaces).
            c.retry();
            c.token().unwrap();
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

/// One `#[test]` per scenario for a harness.
#[macro_export]
macro_rules! scenario_tests {
    ($harness:expr) => {
        $crate::scenario_tests!(@each $harness;
            fetch_reuse_call, refresh_before_expiry, setu_refreshes_by_the_jwt,
            a_401_refetches_once_and_retries_once, shogun_validate,
            invalid_credentials_are_not_retried, lockout_is_backed_off,
            many_callers_one_request, every_fault_is_typed_then_recovers,
            a_failed_refresh_keeps_the_cached_token, lifetime_edges,
            logs_record_what_happened);
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
