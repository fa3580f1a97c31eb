//! The token lifecycle, driven with a manual clock: every rule to the millisecond, no sleeps.

use core::time::Duration;

use tessera_core::session::{Cause, Completion, Config, Poll, Session, Ticket};
use tessera_core::{
    Credentials, Error, ErrorKind, Instant, OAuth2, Problem, Setu, Stage, TransportError,
};

type S = Session<OAuth2<'static>>;

const SEC: u64 = 1000;

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn session(config: Config) -> S {
    seeded(config, 1)
}

fn seeded(config: Config, seed: u64) -> S {
    Session::new(
        OAuth2::new("https://idp/token"),
        Credentials::new("id", "s3cr3t-7f2a9").unwrap(),
        config,
        seed,
    )
}

fn grant_body(token: &str, expires_in: u64) -> String {
    format!(
        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{expires_in},"scope":"pay:read pay:write"}}"#
    )
}

fn fetch_ticket(s: &mut S, now: Instant) -> Ticket {
    match s.poll(now) {
        Poll::Fetch(t) => t,
        other => panic!("expected Fetch at {now:?}, got {other:?}"),
    }
}

fn ready_token(s: &mut S, now: Instant) -> String {
    match s.poll(now) {
        Poll::Ready(b) => b.token().to_owned(),
        other => panic!("expected Ready at {now:?}, got {other:?}"),
    }
}

/// Fetches `token` with `expires_in` at `now` (sent and answered at the same instant).
fn fetched(s: &mut S, now: Instant, token: &str, expires_in: u64) {
    let t = fetch_ticket(s, now);
    assert_eq!(
        s.on_response(t, now, 200, None, grant_body(token, expires_in).as_bytes()),
        Completion::Stored
    );
}

fn fail_with(
    s: &mut S,
    t: Ticket,
    now: Instant,
    status: u16,
    retry_after: Option<Duration>,
) -> Completion {
    s.on_response(t, now, status, retry_after, b"")
}

#[test]
fn first_fetch_then_reuse_without_a_request() {
    let mut s = session(Config::default());
    let t = fetch_ticket(&mut s, at(0));
    let mut buf = [0u8; 256];
    let req = s.request(&t, &mut buf).unwrap();
    assert_eq!(req.body, b"grant_type=client_credentials");
    assert_eq!(
        s.on_response(t, at(120), 200, None, grant_body("t1", 3600).as_bytes()),
        Completion::Stored
    );
    // Reuse for the whole fresh period: never a ticket.
    for ms in [120, 1_000, 600_000, 3_000_000] {
        assert_eq!(ready_token(&mut s, at(ms)), "t1");
    }
    assert!(!s.fetching());
}

#[test]
fn default_margin_is_a_tenth_of_the_lifetime_clamped() {
    // 3600 s → 360 s, clamped to 5 min: refresh at 3300 s.
    let mut s = session(Config::default());
    fetched(&mut s, at(0), "t1", 3600);
    assert_eq!(ready_token(&mut s, at(3300 * SEC - 1)), "t1");
    assert!(matches!(s.poll(at(3300 * SEC)), Poll::Refresh(..)));
    // 600 s → 60 s: refresh at 540 s.
    let mut s = session(Config::default());
    fetched(&mut s, at(0), "t1", 600);
    assert_eq!(ready_token(&mut s, at(540 * SEC - 1)), "t1");
    assert!(matches!(s.poll(at(540 * SEC)), Poll::Refresh(..)));
    // 120 s → 12 s, clamped up to 30 s: refresh at 90 s.
    let mut s = session(Config::default());
    fetched(&mut s, at(0), "t1", 120);
    assert_eq!(ready_token(&mut s, at(90 * SEC - 1)), "t1");
    assert!(matches!(s.poll(at(90 * SEC)), Poll::Refresh(..)));
    // 20 s: the 30 s floor is capped at half the lifetime: refresh at 10 s, not on arrival.
    let mut s = session(Config::default());
    fetched(&mut s, at(0), "t1", 20);
    assert_eq!(ready_token(&mut s, at(10 * SEC - 1)), "t1");
    assert!(matches!(s.poll(at(10 * SEC)), Poll::Refresh(..)));
}

#[test]
fn proactive_refresh_serves_the_old_token_and_elects_one_refresher() {
    let cfg = Config {
        refresh_margin: Some(Duration::from_secs(60)),
        ..Config::default()
    };
    let mut s = session(cfg);
    fetched(&mut s, at(0), "t1", 600);
    let ticket = match s.poll(at(540 * SEC)) {
        Poll::Refresh(b, t) => {
            assert_eq!(b.token(), "t1");
            t
        }
        other => panic!("{other:?}"),
    };
    // While the refresh is in flight everyone else gets the old token; nobody else refreshes.
    for i in 0..50 {
        assert_eq!(ready_token(&mut s, at(540 * SEC + i)), "t1");
    }
    assert_eq!(
        s.on_response(
            ticket,
            at(541 * SEC),
            200,
            None,
            grant_body("t2", 600).as_bytes()
        ),
        Completion::Stored
    );
    assert_eq!(ready_token(&mut s, at(541 * SEC)), "t2");
    // The new token's lifetime counts from when its request was sent (540 s).
    assert!(matches!(s.poll(at((540 + 540) * SEC)), Poll::Refresh(..)));
}

#[test]
fn failed_refresh_inside_the_window_does_not_fail_callers() {
    let cfg = Config {
        refresh_margin: Some(Duration::from_secs(60)),
        ..Config::default()
    };
    let mut s = session(cfg);
    fetched(&mut s, at(0), "t1", 600);
    let Poll::Refresh(_, t) = s.poll(at(540 * SEC)) else {
        panic!()
    };
    assert_eq!(
        fail_with(&mut s, t, at(541 * SEC), 503, None),
        Completion::Failed
    );
    assert_eq!(s.failure().unwrap().kind(), ErrorKind::ServerError);
    // Old token still served, and no refresh attempt until the backoff ends.
    let until = s.backoff_until().unwrap();
    assert!(until > at(541 * SEC));
    for ms in (541 * SEC..until.as_millis()).step_by(97) {
        assert_eq!(ready_token(&mut s, at(ms)), "t1");
    }
    assert!(matches!(s.poll(until), Poll::Refresh(..)));
}

#[test]
fn a_token_is_never_served_past_its_expiry() {
    let cfg = Config {
        in_flight_allowance: Duration::from_secs(5),
        ..Config::default()
    };
    let mut s = session(cfg);
    fetched(&mut s, at(1_000), "t1", 600);
    // Refresh attempts keep failing: the token is served up to expiry minus the allowance.
    let mut now = 540 * SEC + 1_000;
    loop {
        match s.poll(at(now)) {
            Poll::Ready(b) => assert!(
                now < 1_000 + 595 * SEC,
                "served at {now}: {:?}",
                b.usable_until()
            ),
            Poll::Refresh(b, t) => {
                assert!(now < 1_000 + 595 * SEC);
                assert_eq!(b.usable_until(), at(1_000 + 595 * SEC));
                s.on_failure(
                    t,
                    at(now),
                    Cause::Transport(TransportError::new(Stage::Io, "reset")),
                );
            }
            Poll::Backoff { .. } | Poll::Fetch(_) => {
                assert!(now >= 1_000 + 595 * SEC, "token dropped early at {now}");
                break;
            }
            other => panic!("{other:?}"),
        }
        now += 250;
    }
    assert!(s.grant(at(now)).is_none());
}

#[test]
fn a_hundred_pollers_cause_one_fetch() {
    let mut s = session(Config::default());
    let t = fetch_ticket(&mut s, at(0));
    for i in 0..99 {
        assert!(matches!(s.poll(at(i)), Poll::Wait(until) if until == at(30 * SEC)));
    }
    assert_eq!(
        s.on_response(t, at(200), 200, None, grant_body("t1", 3600).as_bytes()),
        Completion::Stored
    );
    for i in 0..100 {
        assert_eq!(ready_token(&mut s, at(200 + i)), "t1");
    }
}

#[test]
fn an_unanswered_fetch_is_abandoned_and_its_late_answer_ignored() {
    let cfg = Config {
        fetch_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let mut s = session(cfg);
    let stale = fetch_ticket(&mut s, at(0));
    assert!(matches!(s.poll(at(9_999)), Poll::Wait(u) if u == at(10_000)));
    // At the timeout the fetch is abandoned and counts as a transport failure.
    match s.poll(at(10_000)) {
        Poll::Backoff { kind, until } => {
            assert_eq!(kind, ErrorKind::Transport);
            assert!(until >= at(11_000));
        }
        other => panic!("{other:?}"),
    }
    assert!(s.failure().unwrap().cause == Cause::Transport(TransportError::ABANDONED));
    // The late answer is stale: not stored, no state change.
    assert_eq!(
        s.on_response(
            stale,
            at(10_500),
            200,
            None,
            grant_body("late", 60).as_bytes()
        ),
        Completion::Stale
    );
    assert!(s.grant(at(10_500)).is_none());
    let until = s.backoff_until().unwrap();
    let t = fetch_ticket(&mut s, until);
    assert_eq!(
        s.on_response(t, until, 200, None, grant_body("t1", 60).as_bytes()),
        Completion::Stored
    );
}

#[test]
fn backoff_grows_with_full_jitter_between_base_and_cap() {
    let cfg = Config {
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(60),
        ..Config::default()
    };
    for seed in 0..200u64 {
        let mut s = seeded(cfg, seed);
        let mut now = 0;
        for attempt in 0..12u32 {
            let t = fetch_ticket(&mut s, at(now));
            assert_eq!(fail_with(&mut s, t, at(now), 500, None), Completion::Failed);
            let delay = s.backoff_until().unwrap().as_millis() - now;
            let step = (1000u64 << attempt).min(60_000);
            assert!(
                (1000..=step).contains(&delay),
                "seed {seed} attempt {attempt}: {delay} not in 1000..={step}"
            );
            // Never a fetch before the backoff ends.
            assert!(matches!(s.poll(at(now + delay - 1)), Poll::Backoff { .. }));
            now += delay;
        }
    }
}

#[test]
fn jitter_spreads_a_fleet() {
    // 64 devices that failed together do not retry together.
    let mut delays = std::collections::BTreeSet::new();
    for seed in 0..64u64 {
        let mut s = seeded(Config::default(), seed * 7919);
        for _ in 0..5 {
            let until = s.backoff_until().map_or(0, Instant::as_millis);
            let t = fetch_ticket(&mut s, at(until));
            fail_with(&mut s, t, at(until), 503, None);
        }
        delays.insert(s.backoff_until().unwrap().as_millis());
    }
    assert!(
        delays.len() > 50,
        "only {} distinct retry times",
        delays.len()
    );
}

#[test]
fn success_resets_the_backoff() {
    let mut s = session(Config::default());
    for _ in 0..6 {
        let now = s.backoff_until().map_or(0, Instant::as_millis);
        let t = fetch_ticket(&mut s, at(now));
        fail_with(&mut s, t, at(now), 502, None);
    }
    let now = s.backoff_until().unwrap().as_millis();
    fetched(&mut s, at(now), "t1", 60);
    assert!(s.failure().is_none() && s.backoff_until().is_none());
    let id = s.poll(at(now)).bearer_id();
    assert!(s.reject(id));
    let t = fetch_ticket(&mut s, at(now));
    fail_with(&mut s, t, at(now), 502, None);
    // Back to the first step: at most the base.
    assert!(s.backoff_until().unwrap().as_millis() - now <= 1000);
}

trait BearerId {
    fn bearer_id(self) -> tessera_core::TokenId;
}

impl<const T: usize, const R: usize> BearerId for Poll<'_, T, R> {
    fn bearer_id(self) -> tessera_core::TokenId {
        match self {
            Poll::Ready(b) | Poll::Refresh(b, _) => b.id(),
            other => panic!("no bearer: {other:?}"),
        }
    }
}

#[test]
fn retry_after_is_honoured_when_larger() {
    let mut s = session(Config::default());
    let t = fetch_ticket(&mut s, at(0));
    // Shogun's lockout: 429 with Retry-After 120 s.
    s.on_response(
        t,
        at(0),
        429,
        Some(Duration::from_secs(120)),
        br#"{"status":false,"message":"Temporarily locked due to too many failed attempts."}"#,
    );
    assert_eq!(s.backoff_until(), Some(at(120 * SEC)));
    match s.poll(at(119_999)) {
        Poll::Backoff { until, kind } => {
            assert_eq!((until, kind), (at(120 * SEC), ErrorKind::RateLimited))
        }
        other => panic!("{other:?}"),
    }
    let t = fetch_ticket(&mut s, at(120 * SEC));
    // A Retry-After smaller than the jittered step does not shorten it.
    s.on_response(t, at(120 * SEC), 429, Some(Duration::from_millis(1)), b"");
    assert!(s.backoff_until().unwrap() >= at(121 * SEC));
}

#[test]
fn backoff_caps_and_survives_many_failures() {
    let cfg = Config {
        backoff_cap: Duration::from_secs(300),
        ..Config::default()
    };
    let mut s = session(cfg);
    let mut now = 0;
    for _ in 0..200 {
        let t = fetch_ticket(&mut s, at(now));
        s.on_failure(
            t,
            at(now),
            Cause::Transport(TransportError::new(Stage::Io, "reset")),
        );
        let delay = s.backoff_until().unwrap().as_millis() - now;
        assert!(delay <= 300 * SEC);
        now += delay;
    }
}

#[test]
fn invalid_credentials_are_never_refetched_until_replaced() {
    // `refusal_retry` zero: never tried again by itself.
    let mut s = session(Config {
        refusal_retry: Duration::ZERO,
        ..Config::default()
    });
    let t = fetch_ticket(&mut s, at(0));
    s.on_response(
        t,
        at(0),
        401,
        None,
        br#"{"error":"invalid_client","error_description":"bad secret"}"#,
    );
    let failure = s.failure().unwrap();
    assert_eq!(failure.kind(), ErrorKind::InvalidCredentials);
    assert_eq!(
        failure.to_string(),
        "invalid credentials (HTTP 401, code invalid_client: bad secret)"
    );
    // Days of polling: never another request.
    for hour in 0..24 * 7 {
        assert!(matches!(
            s.poll(at(hour * 3600 * SEC)),
            Poll::Failed(ErrorKind::InvalidCredentials)
        ));
    }
    // New credentials: one fetch.
    s.set_credentials(Credentials::new("id", "new-secret").unwrap());
    let t = fetch_ticket(&mut s, at(7 * 24 * 3600 * SEC));
    let mut buf = [0u8; 128];
    assert!(s.request(&t, &mut buf).unwrap().authorization.is_some());
    s.on_response(t, at(0), 200, None, grant_body("t1", 60).as_bytes());
}

#[test]
fn refused_credentials_are_tried_once_per_refusal_period() {
    let mut s = session(Config::default());
    let refused = br#"{"error":"invalid_client"}"#;
    let t = fetch_ticket(&mut s, at(0));
    s.on_response(t, at(0), 401, None, refused);
    assert_eq!(s.backoff_until(), Some(at(900 * SEC)));
    // Fifteen minutes of polling: nothing sent.
    for sec in (0..900).step_by(7) {
        assert!(
            matches!(
                s.poll(at(sec * SEC)),
                Poll::Failed(ErrorKind::InvalidCredentials)
            ),
            "{sec}"
        );
    }
    // Then exactly one attempt; other callers wait for it.
    let t = fetch_ticket(&mut s, at(900 * SEC));
    assert!(matches!(s.poll(at(900 * SEC)), Poll::Wait(_)));
    // Refused again: another period.
    s.on_response(t, at(901 * SEC), 401, None, refused);
    assert!(matches!(s.poll(at(1800 * SEC)), Poll::Failed(_)));
    let t = fetch_ticket(&mut s, at(1801 * SEC));
    // The provider is back: the token is served.
    s.on_response(
        t,
        at(1801 * SEC),
        200,
        None,
        grant_body("t1", 600).as_bytes(),
    );
    assert_eq!(ready_token(&mut s, at(1802 * SEC)), "t1");
    // A URL refusal never lapses.
    let mut s: Session<OAuth2<'static>> = Session::new(
        OAuth2::new("http://10.0.0.7/token"),
        Credentials::new("c", "s").unwrap(),
        Config::default(),
        1,
    );
    let t = fetch_ticket(&mut s, at(0));
    let mut buf = [0u8; 256];
    let e = s.request(&t, &mut buf).unwrap_err();
    s.on_failure(t, at(0), tessera_core::session::Cause::Local(e));
    assert!(matches!(
        s.poll(at(3600 * 24 * SEC)),
        Poll::Failed(ErrorKind::Insecure)
    ));
}

#[test]
fn an_explicit_retry_allows_exactly_one_attempt() {
    let mut s: Session<Setu<'static>> = Session::new(
        Setu::sandbox(),
        Credentials::new("c", "s").unwrap(),
        Config::default(),
        1,
    );
    let Poll::Fetch(t) = s.poll(at(0)) else {
        panic!()
    };
    let setu_400 = include_bytes!("../../tests/vectors/fixtures/setu-token-400.json");
    s.on_response(t, at(0), 400, None, setu_400);
    assert_eq!(s.failure().unwrap().kind(), ErrorKind::InvalidCredentials);
    assert!(matches!(s.poll(at(5)), Poll::Failed(_)));
    s.retry();
    let Poll::Fetch(t) = s.poll(at(10)) else {
        panic!()
    };
    s.on_response(t, at(10), 400, None, setu_400);
    assert!(matches!(s.poll(at(10 + 899 * SEC)), Poll::Failed(_)));
    // The merchant's support reference survives in the failure.
    let tessera_core::session::Cause::Response(r) = &s.failure().unwrap().cause else {
        panic!()
    };
    assert_eq!(
        r.detail.trace_id(),
        Some("8b7bd233-5231-4bdd-8d48-aa4c0dae07b9")
    );
}

#[test]
fn invalid_credentials_during_refresh_keep_serving_until_expiry() {
    let mut s = session(Config::default());
    fetched(&mut s, at(0), "t1", 600);
    let Poll::Refresh(_, t) = s.poll(at(540 * SEC)) else {
        panic!()
    };
    s.on_response(t, at(540 * SEC), 401, None, b"");
    assert_eq!(ready_token(&mut s, at(590 * SEC)), "t1");
    assert!(matches!(
        s.poll(at(600 * SEC)),
        Poll::Failed(ErrorKind::InvalidCredentials)
    ));
}

#[test]
fn a_burst_of_401_reports_for_one_token_causes_one_refresh() {
    let mut s = session(Config::default());
    fetched(&mut s, at(0), "t1", 3600);
    let old = s.poll(at(10)).bearer_id();
    // Twenty in-flight calls all come back 401 with the same token.
    assert!(s.reject(old));
    let t = fetch_ticket(&mut s, at(11));
    for _ in 0..19 {
        assert!(!s.reject(old));
        assert!(matches!(s.poll(at(12)), Poll::Wait(_)));
    }
    s.on_response(t, at(20), 200, None, grant_body("t2", 3600).as_bytes());
    // Late reports about the old token do not drop the new one.
    assert!(!s.reject(old));
    assert_eq!(ready_token(&mut s, at(21)), "t2");
    let new = s.poll(at(22)).bearer_id();
    assert_ne!(old, new);
}

#[test]
fn jwt_lifetime_shorter_than_expires_in_wins() {
    let mut s: Session<Setu<'static>> = Session::new(
        Setu::sandbox(),
        Credentials::new("c", "s").unwrap(),
        Config::default(),
        1,
    );
    let Poll::Fetch(t) = s.poll(at(0)) else {
        panic!()
    };
    let body = include_bytes!("../../tests/vectors/fixtures/setu-token-200.json");
    assert_eq!(s.on_response(t, at(0), 200, None, body), Completion::Stored);
    // expiresIn says 1800 s; the claims say 300 s. Margin 30 s, allowance 2 s.
    assert!(matches!(s.poll(at(269_999)), Poll::Ready(_)));
    let Poll::Refresh(_, t) = s.poll(at(270 * SEC)) else {
        panic!()
    };
    s.on_failure(
        t,
        at(270 * SEC),
        Cause::Transport(TransportError::new(Stage::Io, "reset")),
    );
    assert!(s.grant(at(297_999)).is_some());
    assert!(s.grant(at(298 * SEC)).is_none());
}

#[test]
fn a_token_dead_on_arrival_is_a_failure_not_a_fetch_loop() {
    let mut s = session(Config::default());
    let t = fetch_ticket(&mut s, at(0));
    assert_eq!(
        s.on_response(t, at(50), 200, None, grant_body("t0", 0).as_bytes()),
        Completion::Failed
    );
    let Cause::Response(r) = &s.failure().unwrap().cause else {
        panic!()
    };
    assert_eq!(
        r.error,
        Error::Malformed {
            field: Some("expires_in"),
            problem: Problem::Range
        }
    );
    assert!(matches!(s.poll(at(51)), Poll::Backoff { .. }));
    // u32::MAX seconds is simply a long life, with no overflow.
    let until = s.backoff_until().unwrap();
    let t = fetch_ticket(&mut s, until);
    assert_eq!(
        s.on_response(
            t,
            until,
            200,
            None,
            grant_body("t1", u64::from(u32::MAX)).as_bytes()
        ),
        Completion::Stored
    );
    assert!(matches!(
        s.poll(until.saturating_add(Duration::from_secs(100 * 365 * 86400))),
        Poll::Ready(_)
    ));
}

#[test]
fn an_oversized_token_fails_cleanly_and_keeps_the_old_one() {
    let mut s = session(Config::default());
    fetched(&mut s, at(0), "t1", 600);
    let Poll::Refresh(_, t) = s.poll(at(540 * SEC)) else {
        panic!()
    };
    let big = "x".repeat(2049);
    assert_eq!(
        s.on_response(
            t,
            at(540 * SEC),
            200,
            None,
            grant_body(&big, 600).as_bytes()
        ),
        Completion::Failed
    );
    let Cause::Response(r) = &s.failure().unwrap().cause else {
        panic!()
    };
    assert_eq!(
        r.error,
        Error::Capacity {
            field: "access_token",
            needed: 2049,
            capacity: 2048
        }
    );
    // Inside the backoff that follows, the old token is served.
    assert_eq!(ready_token(&mut s, at(540 * SEC + 999)), "t1");
}

#[test]
fn new_credentials_abandon_a_fetch_made_with_the_old_ones() {
    let mut s = session(Config::default());
    let old = fetch_ticket(&mut s, at(0));
    s.set_credentials(Credentials::new("id", "rotated").unwrap());
    let t = fetch_ticket(&mut s, at(1));
    assert_eq!(s.on_response(old, at(2), 401, None, b""), Completion::Stale);
    assert!(s.failure().is_none());
    assert_eq!(
        s.on_response(t, at(3), 200, None, grant_body("t1", 60).as_bytes()),
        Completion::Stored
    );
}

#[test]
fn callers_can_check_scopes_before_use() {
    let mut s = session(Config::default());
    fetched(&mut s, at(0), "t1", 60);
    match s.poll(at(1)) {
        Poll::Ready(b) => {
            assert!(b.has_scope("pay:write"));
            assert!(!b.has_scope("refund"));
            assert!(
                !format!("{b:?}").contains("t1"),
                "Debug must not show the token"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn clock_values_near_the_u64_limit_do_not_overflow() {
    let cfg = Config {
        fetch_timeout: Duration::from_millis(u64::MAX),
        backoff_cap: Duration::MAX,
        refresh_margin: Some(Duration::MAX),
        ..Config::default()
    };
    let mut s = session(cfg);
    let near = u64::MAX - 5_000;
    let t = fetch_ticket(&mut s, at(near));
    assert!(matches!(s.poll(at(near + 1)), Poll::Wait(u) if u == Instant::MAX));
    s.on_response(
        t,
        at(near + 1),
        200,
        None,
        grant_body("t1", 3600).as_bytes(),
    );
    // Expiry saturates at the end of the clock, so the token is due for refresh at once,
    // and is still served.
    match s.poll(at(near + 2)) {
        Poll::Refresh(b, t) => {
            assert_eq!(b.token(), "t1");
            s.on_failure(
                t,
                at(near + 2),
                Cause::Transport(TransportError::new(Stage::Io, "reset")),
            );
        }
        other => panic!("{other:?}"),
    }
    // Failures at the end of time saturate instead of wrapping into the past.
    let id = s.poll(at(near + 3)).bearer_id();
    assert!(s.reject(id));
    for i in 0..70 {
        let when = s.backoff_until().unwrap_or(at(near));
        let t = fetch_ticket(&mut s, when);
        s.on_failure(
            t,
            at(near + i),
            Cause::Transport(TransportError::new(Stage::Io, "reset")),
        );
        assert!(s.backoff_until().unwrap() >= at(near + i));
    }
    assert_eq!(s.backoff_until(), Some(Instant::MAX));
    assert!(matches!(s.poll(Instant::MAX), Poll::Fetch(_)));
}

#[test]
fn the_session_is_the_token_capacity_plus_a_small_constant() {
    let small = core::mem::size_of::<Session<OAuth2<'static>, 2048>>();
    let large = core::mem::size_of::<Session<OAuth2<'static>, 8192>>();
    assert_eq!(large - small, 8192 - 2048);
    // The constant: refresh token (1 KiB), credentials (384 B), the last error's text
    // (384 B), scopes, client id and bookkeeping. Budget 2.75 KiB.
    let constant = small - 2048;
    println!("Session<OAuth2, 2048> is {small} bytes: token capacity + {constant}");
    assert!(constant <= 2816, "{constant}");
}

#[test]
fn a_released_ticket_lets_the_next_poll_fetch_at_once() {
    let mut s = session(Config::default());
    let t = fetch_ticket(&mut s, at(0));
    // While it is out, others wait.
    assert!(matches!(s.poll(at(1)), Poll::Wait(_)));
    assert_eq!(s.release(t), Completion::Released);
    // No failure, no backoff: the next caller fetches at once.
    assert!(s.failure().is_none());
    assert_eq!(s.backoff_until(), None);
    let t2 = fetch_ticket(&mut s, at(2));
    // A ticket the session no longer tracks (abandoned by new credentials) is stale.
    s.set_credentials(Credentials::new("id", "rotated-9c1e").unwrap());
    assert_eq!(s.release(t2), Completion::Stale);
    assert!(matches!(s.poll(at(3)), Poll::Fetch(_)));
}

#[test]
fn the_refresher_sleeps_until_something_can_change_never_in_the_past() {
    use tessera_core::session::Step;
    let mut s = session(Config::default());
    // No token: the refresher parks; the first caller fetches.
    assert_eq!(s.refresher_step(at(0)), Step::Park);
    let t = fetch_ticket(&mut s, at(0));
    s.on_response(t, at(0), 200, None, grant_body("t1", 3600).as_bytes());
    // Fresh: sleep until the refresh point (one hour less 5 min).
    assert_eq!(s.refresher_step(at(1)), Step::Sleep(at(3300 * SEC)));
    // Due: refresh.
    let Step::Fetch(t) = s.refresher_step(at(3300 * SEC)) else {
        panic!("no refresh")
    };
    // While that refresh is out, another refresher sleeps until its deadline (30 s).
    assert_eq!(
        s.refresher_step(at(3301 * SEC)),
        Step::Sleep(at(3330 * SEC))
    );
    // It fails: sleep until the backoff ends, not the past refresh point.
    assert_eq!(
        fail_with(&mut s, t, at(3302 * SEC), 503, None),
        Completion::Failed
    );
    let until = s.backoff_until().unwrap();
    assert!(until > at(3302 * SEC));
    assert_eq!(s.refresher_step(at(3302 * SEC)), Step::Sleep(until));
    // Then a refusal while the old token lives: park until the credentials change.
    let Step::Fetch(t) = s.refresher_step(until) else {
        panic!("no refresh after the backoff")
    };
    let refused = br#"{"error":"invalid_client"}"#;
    assert_eq!(
        s.on_response(t, until, 401, None, refused),
        Completion::Failed
    );
    assert_eq!(s.refresher_step(until), Step::Park);
    // The token expires: nothing to keep fresh.
    assert_eq!(s.refresher_step(at(3600 * SEC)), Step::Park);
}

#[test]
fn a_refresh_failure_that_quotes_the_cached_token_does_not_keep_it() {
    let mut s = session(Config::default());
    let body = r#"{"access_token":"tok-4f1a9c2e77","token_type":"Bearer","expires_in":600,"refresh_token":"ref-7d21b0a9c3"}"#;
    let t = fetch_ticket(&mut s, at(0));
    s.on_response(t, at(0), 200, None, body.as_bytes());
    let Poll::Refresh(_, t) = s.poll(at(540 * SEC)) else {
        panic!("no refresh")
    };
    let echo = br#"{"error":"invalid_request","error_description":"bad: refresh_token=ref-7d21b0a9c3 for tok-4f1a9c2e77"}"#;
    s.on_response(t, at(540 * SEC), 400, None, echo);
    let text = format!("{} {:?}", s.failure().unwrap(), s.failure().unwrap());
    assert!(
        !text.contains("ref-7d21b0a9c3") && !text.contains("tok-4f1a9c2e77"),
        "{text}"
    );
    assert!(
        text.contains("refresh_token=<redacted> for <redacted>"),
        "{text}"
    );
}
