//! tessera-std against the sandbox over real loopback sockets, for every provider: fetch,
//! reuse, refresh, 401-retry, validate, invalid credentials, lockout and backoff, 64 threads,
//! and every injected fault. Lifecycle time is a manual clock: no test sleeps to make time
//! pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, Once};
use std::time::Duration;

use tessera_core::session::Config;
use tessera_core::{
    AnyProvider, ClientAuth, Clock, Credentials, ErrorKind, Instant, OAuth2, ProviderKind, Shogun,
};
use tessera_sandbox::{Endpoint, Fault, Sandbox, CLIENT_ID, CLIENT_SECRET, SCOPES};
use tessera_std::{Client, Error, Options};

#[derive(Default)]
struct ManualClock(AtomicU64);

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.0.load(Ordering::SeqCst))
    }
}

impl ManualClock {
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

/// Every log line any test produced, at trace level.
static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LOGS.lock()
            .unwrap()
            .push(format!("{} {}", record.target(), record.args()));
    }
    fn flush(&self) {}
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// No log line, and no text given, holds the secret or a token.
fn assert_no_secrets(texts: &[String], tokens: &[String]) {
    let logs = LOGS.lock().unwrap();
    for line in logs.iter().chain(texts) {
        assert!(
            !line.contains(CLIENT_SECRET) && !line.contains("s3cr3t"),
            "secret leaked: {line}"
        );
        for t in tokens {
            assert!(!line.contains(t.as_str()), "token leaked: {line}");
        }
    }
}

type C = Client<AnyProvider<'static>>;

fn options() -> Options {
    Options {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        refresh_in_background: false,
        session: Config {
            jitter_seed: 7,
            ..Config::default()
        },
        ..Options::default()
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn client_with(
    sb: &Sandbox,
    kind: ProviderKind,
    secret: &str,
    options: Options,
) -> (C, Arc<ManualClock>) {
    init_logs();
    let provider = AnyProvider::new(kind, leak(sb.base_url(kind)));
    let clock = Arc::new(ManualClock::default());
    let creds = Credentials::new(CLIENT_ID, secret).unwrap();
    (
        Client::with_clock(provider, creds, options, clock.clone()),
        clock,
    )
}

fn client(sb: &Sandbox, kind: ProviderKind) -> (C, Arc<ManualClock>) {
    client_with(sb, kind, CLIENT_SECRET, options())
}

fn token_count(sb: &Sandbox, kind: ProviderKind) -> u64 {
    sb.count(Endpoint::Token(kind))
}

#[test]
fn every_provider_fetches_reuses_and_authorises_calls() {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let (c, clock) = client(&sb, kind);
        let t = c.token().unwrap();
        assert_eq!(t.as_str().split('.').count(), 3, "{kind}: a JWT");
        for _ in 0..10 {
            clock.advance(Duration::from_secs(60));
            assert_eq!(c.token().unwrap().as_str(), t.as_str(), "{kind}");
        }
        assert_eq!(token_count(&sb, kind), 1, "{kind}: reuse sends no request");
        let r = c.call("GET", &sb.protected_url(kind), None).unwrap();
        assert_eq!(r.status, 200, "{kind}");
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        if matches!(
            kind,
            ProviderKind::Shogun | ProviderKind::StoneX | ProviderKind::OAuth2
        ) {
            assert!(t.has_scope(SCOPES[1]), "{kind}: {:?}", t.scopes());
        }
        assert_eq!(token_count(&sb, kind), 1, "{kind}");
        assert_no_secrets(
            &[format!("{t:?}"), format!("{c:?}")],
            &[t.as_str().to_owned()],
        );
    }
}

#[test]
fn oauth2_body_authentication_and_scope_work_too() {
    let sb = Sandbox::start().unwrap();
    init_logs();
    let idp = OAuth2::new(leak(sb.base_url(ProviderKind::OAuth2)))
        .with_auth(ClientAuth::Body)
        .with_scope("TRANSACTION_READ");
    let c = Client::with_options(
        idp,
        Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap(),
        options(),
    );
    let t = c.token().unwrap();
    assert_eq!(t.scopes(), ["TRANSACTION_READ"]);
    assert_eq!(
        c.call("GET", &sb.protected_url(ProviderKind::OAuth2), None)
            .unwrap()
            .status,
        200
    );
}

#[test]
fn every_provider_refreshes_before_expiry() {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        sb.set_lifetime(kind, 3600);
        let (c, clock) = client(&sb, kind);
        let first = c.token().unwrap();
        // Default margin for a one-hour token: 5 minutes.
        clock.advance(Duration::from_secs(3300) - Duration::from_millis(1));
        assert_eq!(c.token().unwrap().as_str(), first.as_str());
        assert_eq!(token_count(&sb, kind), 1, "{kind}");
        clock.advance(Duration::from_millis(1));
        // The caller that finds it due still gets the current token, and refreshes.
        assert_eq!(c.token().unwrap().as_str(), first.as_str());
        assert_eq!(token_count(&sb, kind), 2, "{kind}: refreshed before expiry");
        let second = c.token().unwrap();
        assert_ne!(second.as_str(), first.as_str(), "{kind}");
        assert_eq!(
            c.call("GET", &sb.protected_url(kind), None).unwrap().status,
            200
        );
    }
}

#[test]
fn setu_refreshes_by_the_jwt_not_the_envelope() {
    let sb = Sandbox::start().unwrap();
    // The sandbox's Setu states 6 × 300 = 1800 s, like Setu's own example; the JWT says 300.
    sb.set_lifetime(ProviderKind::Setu, 300);
    let (c, clock) = client(&sb, ProviderKind::Setu);
    c.token().unwrap();
    clock.advance(Duration::from_secs(270));
    c.token().unwrap();
    assert_eq!(
        token_count(&sb, ProviderKind::Setu),
        2,
        "refresh at 300 - 30 s, not 1800 - 180 s"
    );
}

#[test]
fn a_401_from_the_api_refetches_once_and_retries_once() {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let (c, _) = client(&sb, kind);
        c.token().unwrap();
        sb.revoke_all(kind);
        let r = c.call("GET", &sb.protected_url(kind), None).unwrap();
        assert_eq!(r.status, 200, "{kind}");
        assert_eq!(token_count(&sb, kind), 2, "{kind}");
        assert_eq!(sb.count(Endpoint::Protected(kind)), 2, "{kind}");
        // A 401 that persists is returned after one retry, not looped on.
        sb.inject(Endpoint::Protected(kind), Fault::Status(401), 2);
        let r = c.call("GET", &sb.protected_url(kind), None).unwrap();
        assert_eq!(r.status, 401, "{kind}");
        assert_eq!(token_count(&sb, kind), 3, "{kind}");
        assert_eq!(sb.count(Endpoint::Protected(kind)), 4, "{kind}");
    }
}

#[test]
fn shogun_validate_reports_scopes_and_expiry_and_recovers_a_dead_token() {
    let sb = Sandbox::start().unwrap();
    sb.set_lifetime(ProviderKind::Shogun, 86_400);
    let (c, _) = client(&sb, ProviderKind::Shogun);
    let shogun = Shogun::with_base_url(leak(sb.base_url(ProviderKind::Shogun)));
    let info = c.validate(&shogun).unwrap();
    assert_eq!(info.client_id, CLIENT_ID);
    assert_eq!(info.username, "sandbox");
    assert!(info.has_scope("TRANSACTION_WRITE"));
    assert_eq!(info.expires_at - info.issued_at, 86_400);
    // The token dies server-side: validate says 401, the client refetches and asks again.
    sb.revoke_all(ProviderKind::Shogun);
    let again = c.validate(&shogun).unwrap();
    assert!(again.issued_at >= info.issued_at);
    assert_eq!(token_count(&sb, ProviderKind::Shogun), 2);
    assert_eq!(sb.count(Endpoint::Validate), 3);
}

#[test]
fn invalid_credentials_are_reported_and_never_retried_in_a_loop() {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let (c, clock) = client_with(&sb, kind, "wrong secret", options());
        let mut texts = Vec::new();
        for _ in 0..50 {
            let e = c.token().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidCredentials, "{kind}: {e}");
            texts.push(e.to_string());
            texts.push(format!("{e:?}"));
            clock.advance(Duration::from_secs(3600));
        }
        assert_eq!(token_count(&sb, kind), 1, "{kind}: one attempt in 50 hours");
        if kind == ProviderKind::Setu {
            assert!(
                texts[0].contains("trace "),
                "Setu's traceID is kept: {}",
                texts[0]
            );
        }
        // Rotated credentials: one fetch, and it works.
        c.set_credentials(Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap());
        c.token().unwrap();
        assert_eq!(token_count(&sb, kind), 2, "{kind}");
        assert_no_secrets(&texts, &[]);
    }
}

#[test]
fn shogun_lockout_is_backed_off_not_hammered() {
    let sb = Sandbox::start().unwrap();
    sb.set_lockout(3, Duration::from_secs(3600));
    let (c, clock) = client_with(&sb, ProviderKind::Shogun, "wrong", options());
    // A person pressing "try again" three times locks the account, as Shogun documents.
    for attempt in 1..=3 {
        let e = c.token().unwrap_err();
        let want = if attempt < 3 {
            ErrorKind::InvalidCredentials
        } else {
            ErrorKind::RateLimited
        };
        assert_eq!(e.kind(), want, "attempt {attempt}: {e}");
        c.retry();
    }
    // Right credentials now, but the account is locked: 429 and a backoff.
    c.set_credentials(Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap());
    let Error::Token {
        retry_in: Some(wait),
        failure,
    } = c.token().unwrap_err()
    else {
        panic!()
    };
    assert_eq!(failure.kind(), ErrorKind::RateLimited);
    assert!(wait >= Duration::from_secs(1), "{wait:?}");
    assert_eq!(token_count(&sb, ProviderKind::Shogun), 4);
    // Callers during the backoff get the error without a request.
    for _ in 0..20 {
        assert_eq!(c.token().unwrap_err().kind(), ErrorKind::RateLimited);
    }
    clock.advance(wait - Duration::from_millis(1));
    assert!(c.token().is_err());
    assert_eq!(
        token_count(&sb, ProviderKind::Shogun),
        4,
        "nothing sent before the backoff ends"
    );
    // Still locked at the next attempt: the backoff grows.
    clock.advance(Duration::from_millis(1));
    let Error::Token {
        retry_in: Some(wait2),
        ..
    } = c.token().unwrap_err()
    else {
        panic!()
    };
    assert_eq!(token_count(&sb, ProviderKind::Shogun), 5);
    assert!(wait2 >= Duration::from_secs(1));
    // The lock lifts; the next attempt after the backoff succeeds.
    sb.unlock();
    clock.advance(wait2);
    c.token().unwrap();
    assert_eq!(token_count(&sb, ProviderKind::Shogun), 6);
}

#[test]
fn sixty_four_threads_cause_one_token_request() {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let (c, _) = client(&sb, kind);
        // A slow provider: everyone piles up behind the first fetch.
        sb.inject(
            Endpoint::Token(kind),
            Fault::Delay(Duration::from_millis(300)),
            1,
        );
        let barrier = Arc::new(Barrier::new(64));
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let (c, b) = (c.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    b.wait();
                    c.token().map(|t| t.as_str().to_owned())
                })
            })
            .collect();
        let tokens: Vec<String> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        assert!(
            tokens.windows(2).all(|w| w[0] == w[1]),
            "{kind}: one token for all"
        );
        assert_eq!(
            token_count(&sb, kind),
            1,
            "{kind}: exactly one token request"
        );
    }
}

#[test]
fn every_fault_gives_a_typed_error_then_recovers() {
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
        (Fault::OversizedToken(3000), Some(ErrorKind::Capacity)),
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
            let (c, _) = client(&sb, kind);
            sb.inject(Endpoint::Token(kind), fault.clone(), 1);
            let started = std::time::Instant::now();
            let got = c.token();
            assert!(
                started.elapsed() < Duration::from_millis(2500),
                "{kind} {fault:?} hung: {:?}",
                started.elapsed()
            );
            match (got, want) {
                (Ok(t), None) => texts.push(format!("{t:?}")),
                (Err(e), Some(k)) => {
                    assert_eq!(e.kind(), *k, "{kind} {fault:?}: {e}");
                    if let Fault::RateLimited { .. } = fault {
                        let Error::Token { retry_in, .. } = &e else {
                            panic!()
                        };
                        assert_eq!(
                            *retry_in,
                            Some(Duration::from_secs(7)),
                            "{kind}: Retry-After honoured"
                        );
                    }
                    if let Fault::OversizedToken(n) = fault {
                        assert!(
                            e.to_string().contains(&format!("`access_token` needs {n}")),
                            "{e}"
                        );
                    }
                    texts.push(e.to_string());
                    texts.push(format!("{e:?}"));
                    // Recovers: the next allowed attempt gets a token.
                    c.retry();
                    let t = c
                        .token()
                        .unwrap_or_else(|e| panic!("{kind} {fault:?}: no recovery: {e}"));
                    assert_eq!(
                        c.call("GET", &sb.protected_url(kind), None).unwrap().status,
                        200
                    );
                    texts.push(format!("{t:?}"));
                }
                (got, want) => panic!("{kind} {fault:?}: got {got:?}, wanted {want:?}"),
            }
        }
    }
    assert_no_secrets(&texts, &[]);
    // The capture works: the client's diagnostics are there (without secrets).
    let logs = LOGS.lock().unwrap();
    assert!(
        logs.iter().any(|l| l.contains("token fetch failed")),
        "no diagnostics captured"
    );
    assert!(
        logs.iter().any(|l| l.contains("token request POST")),
        "no diagnostics captured"
    );
}

#[test]
fn the_background_refresher_keeps_the_token_fresh() {
    let sb = Sandbox::start().unwrap();
    sb.set_lifetime(ProviderKind::OAuth2, 3600);
    let (c, clock) = client(&sb, ProviderKind::OAuth2);
    let first = c.token().unwrap();
    let refresher = c.start_refresher();
    clock.advance(Duration::from_secs(3300));
    // The manual clock jumped: wake the refresher so it reads it again.
    c.wake_waiters();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while token_count(&sb, ProviderKind::OAuth2) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresher did not refresh"
        );
        std::thread::yield_now();
    }
    drop(refresher);
    // Callers never waited: the new token is simply there.
    assert_ne!(c.token().unwrap().as_str(), first.as_str());
    assert_eq!(token_count(&sb, ProviderKind::OAuth2), 2);
}
