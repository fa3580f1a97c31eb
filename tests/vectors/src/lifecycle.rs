//! Lifecycle scenarios, `no_std`: the same functions run in host tests and in the on-target
//! firmware. Each drives a [`Session`] with a manual clock and returns the first broken
//! expectation. Sessions use small capacities so they fit a 16 KiB micro:bit's stack.

use core::time::Duration;

use tessera_core::session::{Cause, Completion, Config, Poll, Session, Ticket};
use tessera_core::snapshot::{Key, SnapshotError, WallTime};
use tessera_core::{Credentials, ErrorKind, Instant, OAuth2, Setu, Stage, TransportError};

/// A connection reset, the network failure the scenarios inject.
const RESET: TransportError = TransportError::new(Stage::Io, "reset");

type Small = Session<OAuth2<'static>, 512, 256>;

/// A named scenario.
pub struct Scenario {
    /// Its name.
    pub name: &'static str,
    /// Runs it: `Err` names the first broken expectation.
    pub run: fn() -> Result<(), &'static str>,
}

macro_rules! ensure {
    ($cond:expr, $what:expr) => {
        if !$cond {
            return Err($what);
        }
    };
}

const SEC: u64 = 1000;
const T600: &[u8] = br#"{"access_token":"t1","token_type":"Bearer","expires_in":600}"#;
const T600B: &[u8] = br#"{"access_token":"t2","token_type":"Bearer","expires_in":600}"#;
const T0: &[u8] = br#"{"access_token":"t0","token_type":"Bearer","expires_in":0}"#;
const T3600: &[u8] = br#"{"access_token":"t1","token_type":"Bearer","expires_in":3600}"#;

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn session(config: Config) -> Result<Small, &'static str> {
    seeded(config, 1)
}

fn seeded(config: Config, seed: u64) -> Result<Small, &'static str> {
    let creds = Credentials::new("id", "secret").map_err(|_| "credentials")?;
    Ok(Session::new(
        OAuth2::new("https://idp/token"),
        creds,
        config,
        seed,
    ))
}

fn margin_60() -> Config {
    Config {
        refresh_margin: Some(Duration::from_secs(60)),
        ..Config::default()
    }
}

fn fetch(s: &mut Small, now: u64) -> Result<Ticket, &'static str> {
    match s.poll(at(now)) {
        Poll::Fetch(t) => Ok(t),
        _ => Err("expected Fetch"),
    }
}

fn store(s: &mut Small, now: u64, body: &[u8]) -> Result<(), &'static str> {
    let t = fetch(s, now)?;
    match s.on_response(t, at(now), 200, None, body) {
        Completion::Stored => Ok(()),
        _ => Err("grant not stored"),
    }
}

fn ready(s: &mut Small, now: u64, token: &str) -> Result<(), &'static str> {
    match s.poll(at(now)) {
        Poll::Ready(b) if b.token() == token => Ok(()),
        Poll::Ready(_) => Err("wrong token served"),
        _ => Err("expected Ready"),
    }
}

/// Every scenario.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "first fetch, then reuse without a request",
        run: first_fetch_then_reuse,
    },
    Scenario {
        name: "refresh at the margin",
        run: refresh_at_the_margin,
    },
    Scenario {
        name: "failed refresh keeps serving the old token",
        run: failed_refresh_keeps_serving,
    },
    Scenario {
        name: "never served after expiry",
        run: never_served_after_expiry,
    },
    Scenario {
        name: "100 pollers, one fetch",
        run: hundred_pollers_one_fetch,
    },
    Scenario {
        name: "abandoned fetch",
        run: abandoned_fetch,
    },
    Scenario {
        name: "backoff growth, cap and jitter bounds",
        run: backoff_bounds,
    },
    Scenario {
        name: "Retry-After honoured",
        run: retry_after_honoured,
    },
    Scenario {
        name: "invalid credentials tried once per refusal period until replaced",
        run: invalid_credentials_sticky,
    },
    Scenario {
        name: "burst of 401 reports, one refresh",
        run: burst_of_401s,
    },
    Scenario {
        name: "JWT lifetime shorter than expires_in",
        run: jwt_shorter_than_expires_in,
    },
    Scenario {
        name: "token dead on arrival backs off",
        run: dead_on_arrival,
    },
    Scenario {
        name: "clock near u64::MAX",
        run: clock_near_max,
    },
    Scenario {
        name: "snapshot: restored after a restart, served with no fetch",
        run: snapshot_survives_a_restart,
    },
    Scenario {
        name: "snapshot: tampered bytes or no wall clock fall back to a fetch",
        run: snapshot_refusals_fetch,
    },
    Scenario {
        name: "snapshot: an expired token fetches",
        run: snapshot_expired_fetches,
    },
];

/// 2023-11-14T22:13:20Z in Unix ms: the wall clock when the snapshot is written.
const WALL0: u64 = 1_700_000_000_000;

fn wall(unix_ms: u64) -> Option<WallTime> {
    Some(WallTime::new(unix_ms, Duration::from_secs(2)))
}

/// A one-hour token's snapshot, written 100 s into its life, into `buf`; its length.
fn write_snapshot(buf: &mut [u8]) -> Result<usize, &'static str> {
    let mut s = session(Config::default())?;
    let t = fetch(&mut s, 0)?;
    ensure!(
        s.on_response(t, at(0), 200, None, T3600) == Completion::Stored,
        "not stored"
    );
    let w = WallTime::new(WALL0 + 100 * SEC, Duration::ZERO);
    let snap = s
        .snapshot(at(100 * SEC), w, Key::Credentials, buf)
        .map_err(|_| "snapshot not written")?;
    Ok(snap.len())
}

fn snapshot_survives_a_restart() -> Result<(), &'static str> {
    let mut buf = [0u8; 256];
    let len = write_snapshot(&mut buf)?;
    // Rebooted: a new session whose monotonic clock starts again at zero, 20 min later.
    let mut s = session(Config::default())?;
    let bytes = buf.get_mut(..len).ok_or("length")?;
    s.restore(at(0), wall(WALL0 + 1300 * SEC), Key::Credentials, bytes)
        .map_err(|_| "refused")?;
    ensure!(
        matches!(s.poll(at(0)), Poll::Ready(b) if b.token() == "t1"),
        "restored token not served"
    );
    ensure!(
        bytes.iter().all(|&b| b == 0),
        "plaintext left in the buffer"
    );
    // 2300 s left, less 2 s of uncertainty and 2 s of in-flight allowance.
    ensure!(s.grant(at(2295 * SEC)).is_some(), "served too briefly");
    ensure!(s.grant(at(2296 * SEC)).is_none(), "served past expiry");
    ready(&mut s, 0, "t1")
}

fn snapshot_refusals_fetch() -> Result<(), &'static str> {
    let mut buf = [0u8; 256];
    let len = write_snapshot(&mut buf)?;
    let mut tampered = buf;
    if let Some(b) = tampered.get_mut(len / 2) {
        *b ^= 0x20;
    }
    let mut s = session(Config::default())?;
    let r = s.restore(
        at(0),
        wall(WALL0 + 200 * SEC),
        Key::Credentials,
        tampered.get_mut(..len).ok_or("length")?,
    );
    ensure!(r == Err(SnapshotError::Tampered), "tampered bytes accepted");
    ensure!(
        matches!(s.poll(at(0)), Poll::Fetch(_)),
        "no fetch after tampering"
    );
    let mut s = session(Config::default())?;
    let r = s.restore(
        at(0),
        None,
        Key::Credentials,
        buf.get_mut(..len).ok_or("length")?,
    );
    ensure!(
        r == Err(SnapshotError::NoWallClock),
        "kept without a wall clock"
    );
    ensure!(
        matches!(s.poll(at(0)), Poll::Fetch(_)),
        "no fetch without a clock"
    );
    Ok(())
}

fn snapshot_expired_fetches() -> Result<(), &'static str> {
    let mut buf = [0u8; 256];
    let len = write_snapshot(&mut buf)?;
    let mut s = session(Config::default())?;
    let r = s.restore(
        at(0),
        wall(WALL0 + 3600 * SEC),
        Key::Credentials,
        buf.get_mut(..len).ok_or("length")?,
    );
    ensure!(r == Err(SnapshotError::Expired), "expired token restored");
    ensure!(
        matches!(s.poll(at(0)), Poll::Fetch(_)),
        "no fetch after expiry"
    );
    Ok(())
}

fn first_fetch_then_reuse() -> Result<(), &'static str> {
    let mut s = session(Config::default())?;
    store(&mut s, 0, T600)?;
    for ms in [0, 1, 60 * SEC, 500 * SEC] {
        ready(&mut s, ms, "t1")?;
    }
    ensure!(!s.fetching(), "a fetch started while fresh");
    Ok(())
}

fn refresh_at_the_margin() -> Result<(), &'static str> {
    let mut s = session(margin_60())?;
    store(&mut s, 0, T600)?;
    ready(&mut s, 540 * SEC - 1, "t1")?;
    let Poll::Refresh(b, t) = s.poll(at(540 * SEC)) else {
        return Err("no refresh at the margin");
    };
    ensure!(b.token() == "t1", "refresh did not serve the current token");
    ready(&mut s, 540 * SEC + 1, "t1")?;
    ensure!(
        s.on_response(t, at(541 * SEC), 200, None, T600B) == Completion::Stored,
        "refresh not stored"
    );
    ready(&mut s, 541 * SEC, "t2")
}

fn failed_refresh_keeps_serving() -> Result<(), &'static str> {
    let mut s = session(margin_60())?;
    store(&mut s, 0, T600)?;
    let Poll::Refresh(_, t) = s.poll(at(540 * SEC)) else {
        return Err("no refresh");
    };
    s.on_response(t, at(540 * SEC), 503, None, b"");
    ensure!(
        s.failure()
            .is_some_and(|f| f.kind() == ErrorKind::ServerError),
        "failure not kept"
    );
    let until = s.backoff_until().ok_or("no backoff")?;
    ready(&mut s, until.as_millis() - 1, "t1")?;
    ensure!(
        matches!(s.poll(until), Poll::Refresh(..)),
        "no retry after the backoff"
    );
    Ok(())
}

fn never_served_after_expiry() -> Result<(), &'static str> {
    let mut s = session(Config::default())?;
    store(&mut s, 0, T600)?;
    // Default allowance 2 s: served until 598 s, never at or after.
    let mut now = 540 * SEC;
    while now < 700 * SEC {
        match s.poll(at(now)) {
            Poll::Ready(_) => ensure!(now < 598 * SEC, "served after expiry"),
            Poll::Refresh(_, t) => {
                ensure!(now < 598 * SEC, "served after expiry");
                s.on_failure(t, at(now), Cause::Transport(RESET));
            }
            Poll::Fetch(t) => {
                ensure!(now >= 598 * SEC, "dropped before expiry");
                s.on_failure(t, at(now), Cause::Transport(RESET));
            }
            Poll::Backoff { .. } => ensure!(now >= 598 * SEC, "no token before expiry"),
            _ => return Err("unexpected poll"),
        }
        now += 250;
    }
    Ok(())
}

fn hundred_pollers_one_fetch() -> Result<(), &'static str> {
    let mut s = session(Config::default())?;
    let t = fetch(&mut s, 0)?;
    for i in 1..100 {
        ensure!(
            matches!(s.poll(at(i)), Poll::Wait(u) if u == at(30 * SEC)),
            "a second fetch"
        );
    }
    ensure!(
        s.on_response(t, at(100), 200, None, T600) == Completion::Stored,
        "not stored"
    );
    for i in 0..100 {
        ready(&mut s, 100 + i, "t1")?;
    }
    Ok(())
}

fn abandoned_fetch() -> Result<(), &'static str> {
    let cfg = Config {
        fetch_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let mut s = session(cfg)?;
    let stale = fetch(&mut s, 0)?;
    ensure!(
        matches!(s.poll(at(9_999)), Poll::Wait(_)),
        "abandoned early"
    );
    ensure!(
        matches!(
            s.poll(at(10_000)),
            Poll::Backoff {
                kind: ErrorKind::Transport,
                ..
            }
        ),
        "not abandoned at the timeout"
    );
    ensure!(
        s.on_response(stale, at(10_001), 200, None, T600) == Completion::Stale,
        "late answer not ignored"
    );
    ensure!(s.grant(at(10_001)).is_none(), "late answer stored");
    Ok(())
}

fn backoff_bounds() -> Result<(), &'static str> {
    let base = Config {
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(60),
        ..Config::default()
    };
    for seed in 0..16 {
        let mut s = seeded(base, seed)?;
        let mut now = 0;
        for attempt in 0..10u32 {
            let t = fetch(&mut s, now)?;
            s.on_response(t, at(now), 500, None, b"");
            let delay = s.backoff_until().ok_or("no backoff")?.as_millis() - now;
            let step = (1000u64 << attempt).min(60_000);
            ensure!(
                (1000..=step).contains(&delay),
                "delay outside [base, min(cap, base*2^n)]"
            );
            ensure!(
                matches!(s.poll(at(now + delay - 1)), Poll::Backoff { .. }),
                "fetch while backing off"
            );
            now += delay;
        }
    }
    Ok(())
}

fn retry_after_honoured() -> Result<(), &'static str> {
    let mut s = session(Config::default())?;
    let t = fetch(&mut s, 0)?;
    s.on_response(t, at(0), 429, Some(Duration::from_secs(120)), b"");
    ensure!(
        s.backoff_until() == Some(at(120 * SEC)),
        "Retry-After not honoured"
    );
    ensure!(
        matches!(
            s.poll(at(119_999)),
            Poll::Backoff {
                kind: ErrorKind::RateLimited,
                ..
            }
        ),
        "fetch before Retry-After"
    );
    fetch(&mut s, 120 * SEC).map(drop)
}

fn invalid_credentials_sticky() -> Result<(), &'static str> {
    let mut s = session(Config::default())?;
    let refused: &[u8] = br#"{"error":"invalid_client"}"#;
    let t = fetch(&mut s, 0)?;
    s.on_response(t, at(0), 401, None, refused);
    // `refusal_retry` (15 min by default): polled every minute, never a request.
    for minute in 0..15 {
        ensure!(
            matches!(
                s.poll(at(minute * 60 * SEC)),
                Poll::Failed(ErrorKind::InvalidCredentials)
            ),
            "refetched bad credentials within the refusal period"
        );
    }
    // Then exactly one attempt; refused again, another period.
    let t = fetch(&mut s, 15 * 60 * SEC)?;
    s.on_response(t, at(15 * 60 * SEC), 401, None, refused);
    for minute in 16..30 {
        ensure!(
            matches!(
                s.poll(at(minute * 60 * SEC)),
                Poll::Failed(ErrorKind::InvalidCredentials)
            ),
            "refetched bad credentials twice in one period"
        );
    }
    s.set_credentials(Credentials::new("id", "rotated").map_err(|_| "credentials")?);
    store(&mut s, 30 * 60 * SEC, T600)
}

fn burst_of_401s() -> Result<(), &'static str> {
    let mut s = session(Config::default())?;
    store(&mut s, 0, T600)?;
    let old = match s.poll(at(1)) {
        Poll::Ready(b) => b.id(),
        _ => return Err("no token"),
    };
    ensure!(s.reject(old), "first report ignored");
    let t = fetch(&mut s, 2)?;
    for _ in 0..19 {
        ensure!(!s.reject(old), "a repeated report acted on");
        ensure!(matches!(s.poll(at(3)), Poll::Wait(_)), "a second fetch");
    }
    s.on_response(t, at(4), 200, None, T600B);
    ensure!(!s.reject(old), "a late report dropped the new token");
    ready(&mut s, 5, "t2")
}

fn jwt_shorter_than_expires_in() -> Result<(), &'static str> {
    let creds = Credentials::new("c", "s").map_err(|_| "credentials")?;
    let mut s: Session<Setu<'static>, 2048, 64> =
        Session::new(Setu::sandbox(), creds, Config::default(), 1);
    let Poll::Fetch(t) = s.poll(at(0)) else {
        return Err("no fetch");
    };
    let body = include_bytes!("../fixtures/setu-token-200.json");
    ensure!(
        s.on_response(t, at(0), 200, None, body) == Completion::Stored,
        "Setu seed not stored"
    );
    // expiresIn 1800, claims 300: refresh at 270 s (margin 30 s), served until 298 s.
    ensure!(
        matches!(s.poll(at(269_999)), Poll::Ready(_)),
        "not fresh before the margin"
    );
    let Poll::Refresh(_, t) = s.poll(at(270 * SEC)) else {
        return Err("refresh not due by the JWT");
    };
    s.on_failure(t, at(270 * SEC), Cause::Transport(RESET));
    ensure!(s.grant(at(297_999)).is_some(), "dropped early");
    ensure!(
        s.grant(at(298 * SEC)).is_none(),
        "served past the JWT's expiry"
    );
    Ok(())
}

fn dead_on_arrival() -> Result<(), &'static str> {
    let mut s = session(Config::default())?;
    let t = fetch(&mut s, 0)?;
    ensure!(
        s.on_response(t, at(0), 200, None, T0) == Completion::Failed,
        "a dead token stored"
    );
    ensure!(
        matches!(s.poll(at(1)), Poll::Backoff { .. }),
        "refetched at once"
    );
    Ok(())
}

fn clock_near_max() -> Result<(), &'static str> {
    let cfg = Config {
        backoff_cap: Duration::MAX,
        fetch_timeout: Duration::MAX,
        ..Config::default()
    };
    let mut s = session(cfg)?;
    let near = u64::MAX - 5_000;
    let t = fetch(&mut s, near)?;
    ensure!(
        matches!(s.poll(at(near + 1)), Poll::Wait(u) if u == Instant::MAX),
        "deadline wrapped"
    );
    ensure!(
        s.on_response(t, at(near + 1), 200, None, T600) == Completion::Stored,
        "not stored"
    );
    ensure!(
        s.grant(at(near + 2)).is_some(),
        "token lost at the end of the clock"
    );
    for i in 0..70 {
        let when = s.backoff_until().unwrap_or(at(near + 3));
        let (Poll::Refresh(_, t) | Poll::Fetch(t)) = s.poll(when) else {
            continue;
        };
        s.on_failure(t, at(near + i), Cause::Transport(RESET));
        ensure!(
            s.backoff_until().is_some_and(|u| u >= at(near + i)),
            "backoff wrapped into the past"
        );
    }
    Ok(())
}
