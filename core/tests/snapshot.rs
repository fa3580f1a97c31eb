//! Snapshots: a token saved before a restart and restored after it, and every refusal.

use core::time::Duration;

use proptest::prelude::*;
use tessera_core::session::{Config, Poll, Session};
use tessera_core::snapshot::{Key, SnapshotError, WallTime, OVERHEAD};
use tessera_core::{Credentials, Instant, OAuth2};

type S = Session<OAuth2<'static>>;

const SEC: u64 = 1000;
/// 2023-11-14T22:13:20Z, in Unix ms.
const WALL0: u64 = 1_700_000_000_000;
const SECRET: &str = "s3cr3t-4b7e-91d2";
const IDP: &str = "https://idp.example/oauth2/token";
const BODY: &str = r#"{"access_token":"eyJ.tok.sig","token_type":"Bearer","expires_in":3600,"refresh_token":"r\"efresh","scope":"pay:read pay:write"}"#;

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn wall(unix_ms: u64) -> WallTime {
    WallTime::new(unix_ms, Duration::ZERO)
}

fn session_for(idp: OAuth2<'static>, id: &str, secret: &str) -> S {
    Session::new(
        idp,
        Credentials::new(id, secret).unwrap(),
        Config::default(),
        7,
    )
}

fn session() -> S {
    session_for(OAuth2::new(IDP), "terminal-7", SECRET)
}

/// A session holding a one-hour token fetched at monotonic `now`.
fn with_token(now: u64, body: &str) -> S {
    let mut s = session();
    let Poll::Fetch(t) = s.poll(at(now)) else {
        panic!("expected a fetch")
    };
    s.on_response(t, at(now), 200, None, body.as_bytes());
    s
}

/// A snapshot of a one-hour token fetched at wall time WALL0, written `after` ms later.
fn saved(after: u64) -> Vec<u8> {
    let s = with_token(0, BODY);
    let mut buf = [0u8; 512];
    s.snapshot(at(after), wall(WALL0 + after), Key::Credentials, &mut buf)
        .unwrap()
        .to_vec()
}

fn token(s: &mut S, now: u64) -> Option<(String, bool)> {
    match s.poll(at(now)) {
        Poll::Ready(b) => Some((b.token().to_owned(), false)),
        Poll::Refresh(b, _) => Some((b.token().to_owned(), true)),
        _ => None,
    }
}

fn restore_at(bytes: &[u8], wall_now: WallTime) -> (S, Result<(), SnapshotError>) {
    let mut s = session();
    let mut copy = bytes.to_vec();
    let r = s
        .restore(at(0), Some(wall_now), Key::Credentials, &mut copy)
        .map(drop);
    (s, r)
}

#[test]
fn a_restored_token_is_served_with_no_fetch() {
    let snap = saved(0);
    assert!(snap.len() > OVERHEAD);
    // Restarted: the monotonic clock is back at zero, ten minutes of wall time later.
    let (mut s, r) = restore_at(&snap, wall(WALL0 + 600 * SEC));
    r.unwrap();
    assert_eq!(token(&mut s, 0), Some(("eyJ.tok.sig".into(), false)));
    let g = s.grant(at(0)).unwrap();
    assert_eq!(g.refresh_token(), Some("r\"efresh"));
    assert!(g.has_scope("pay:read") && g.has_scope("pay:write"));
    assert_eq!(g.lifetime_s(), 3600);
    // Served until the real expiry, less the in-flight allowance (2 s): 3000 s were left.
    assert!(token(&mut s, 2997 * SEC).is_some());
    assert!(token(&mut s, 2998 * SEC).is_none());
}

#[test]
fn the_snapshot_does_not_show_the_token_or_the_secret() {
    let snap = saved(0);
    let text = String::from_utf8_lossy(&snap);
    for needle in ["eyJ", "tok.sig", "efresh", "pay:read", SECRET, "terminal-7"] {
        assert!(!text.contains(needle), "{needle} readable at rest");
    }
    // Deterministic for the same contents (synthetic nonce), different for different ones.
    assert_eq!(snap, saved(0));
    assert_ne!(snap, saved(1));
}

#[test]
fn wall_clock_edges() {
    let snap = saved(0);
    // Just fresh: restored the moment it was written.
    let (mut s, r) = restore_at(&snap, wall(WALL0));
    r.unwrap();
    assert_eq!(token(&mut s, 0), Some(("eyJ.tok.sig".into(), false)));
    // Just due: the refresh margin is 5 min (life/10 = 360 s, capped at 300 s); with 299 s
    // left the restored token is served and refreshed at once.
    let (mut s, r) = restore_at(&snap, wall(WALL0 + 3301 * SEC));
    r.unwrap();
    assert_eq!(token(&mut s, 0), Some(("eyJ.tok.sig".into(), true)));
    // The last restorable millisecond, and the first that is not: expiry less the 2 s
    // in-flight allowance.
    let last = WALL0 + 3600 * SEC - 2 * SEC - 1;
    assert!(restore_at(&snap, wall(last)).1.is_ok());
    assert_eq!(
        restore_at(&snap, wall(last + 1)).1,
        Err(SnapshotError::Expired)
    );
    // The uncertainty is taken off: the same instant with 1 ms of doubt is refused.
    let doubtful = WallTime::new(last, Duration::from_millis(1));
    assert_eq!(restore_at(&snap, doubtful).1, Err(SnapshotError::Expired));
    // Clock behind the moment the snapshot was written: not trusted.
    assert_eq!(
        restore_at(&snap, wall(WALL0 - 1)).1,
        Err(SnapshotError::ClockBehind)
    );
    // ... unless within the stated uncertainty.
    let fuzzy = WallTime::new(WALL0 - 500, Duration::from_secs(1));
    assert!(restore_at(&snap, fuzzy).1.is_ok());
    // Clock unknown: discarded, and the session fetches.
    let mut s = session();
    let mut copy = snap.clone();
    assert_eq!(
        s.restore(at(0), None, Key::Credentials, &mut copy),
        Err(SnapshotError::NoWallClock)
    );
    assert!(matches!(s.poll(at(0)), Poll::Fetch(_)));
    // Long expired.
    assert_eq!(
        restore_at(&snap, wall(WALL0 + 86_400 * SEC)).1,
        Err(SnapshotError::Expired)
    );
}

#[test]
fn the_remaining_life_not_the_whole_life_is_restored() {
    // Written 50 minutes into the token's life: 10 minutes were left.
    let snap = saved(3000 * SEC);
    let (mut s, r) = restore_at(&snap, wall(WALL0 + 3000 * SEC));
    r.unwrap();
    assert!(token(&mut s, 597 * SEC).is_some());
    assert!(token(&mut s, 598 * SEC).is_none());
}

#[test]
fn foreign_snapshots_are_refused() {
    let snap = saved(0);
    let now = Some(wall(WALL0));
    let cases: Vec<(&str, S)> = vec![
        (
            "another client id",
            session_for(OAuth2::new(IDP), "terminal-8", SECRET),
        ),
        (
            "a rotated secret",
            session_for(OAuth2::new(IDP), "terminal-7", "rotated-77c1"),
        ),
        (
            "another endpoint",
            session_for(
                OAuth2::new("https://other.example/oauth2/token"),
                "terminal-7",
                SECRET,
            ),
        ),
        (
            "another scope",
            session_for(
                OAuth2::new(IDP).with_scope("pay:read"),
                "terminal-7",
                SECRET,
            ),
        ),
    ];
    for (what, mut s) in cases {
        let mut copy = snap.clone();
        assert_eq!(
            s.restore(at(0), now, Key::Credentials, &mut copy),
            Err(SnapshotError::Foreign),
            "{what}"
        );
        assert_eq!(copy, snap, "{what}: bytes touched before authentication");
        assert!(matches!(s.poll(at(0)), Poll::Fetch(_)), "{what}");
    }
    // Another key.
    let app = [7u8; 32];
    let mut copy = snap.clone();
    assert_eq!(
        session().restore(at(0), now, Key::Application(&app), &mut copy),
        Err(SnapshotError::Foreign)
    );
}

#[test]
fn an_application_key_seals_and_binds_too() {
    let app = [0x5au8; 32];
    let s = with_token(0, BODY);
    let mut buf = [0u8; 512];
    let snap = s
        .snapshot(at(0), wall(WALL0), Key::Application(&app), &mut buf)
        .unwrap()
        .to_vec();
    let mut copy = snap.clone();
    let mut s = session();
    let restored = s
        .restore(at(0), Some(wall(WALL0)), Key::Application(&app), &mut copy)
        .unwrap();
    // One hour, less the 5 min margin and the 2 s allowance.
    assert_eq!(restored.refresh_at, at(3300 * SEC));
    assert_eq!(restored.usable_until, at(3598 * SEC));
    assert!(matches!(s.poll(at(0)), Poll::Ready(b) if b.id() == restored.id));
    // The credential still binds it: the same key with a rotated secret is refused.
    let mut other = session_for(OAuth2::new(IDP), "terminal-7", "rotated-77c1");
    let mut copy = snap.clone();
    assert_eq!(
        other.restore(at(0), Some(wall(WALL0)), Key::Application(&app), &mut copy),
        Err(SnapshotError::Foreign)
    );
    // And the credential-derived key cannot read it.
    let mut copy = snap;
    assert_eq!(
        session().restore(at(0), Some(wall(WALL0)), Key::Credentials, &mut copy),
        Err(SnapshotError::Foreign)
    );
}

#[test]
fn damaged_bytes_are_refused_with_the_reason() {
    let snap = saved(0);
    let now = wall(WALL0);
    // Every single-bit flip is caught, with the reason its place implies.
    for i in 0..snap.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = snap.clone();
            bad[i] ^= bit;
            let want = match i {
                0..=2 => SnapshotError::NotSnapshot,
                3 => SnapshotError::Version(snap[3] ^ bit),
                4..=11 => SnapshotError::Foreign,
                _ => SnapshotError::Tampered,
            };
            assert_eq!(restore_at(&bad, now).1, Err(want), "byte {i} bit {bit:#x}");
        }
    }
    // Truncated at every length.
    for len in 0..snap.len() {
        let r = restore_at(&snap[..len], now).1;
        assert!(
            matches!(r, Err(SnapshotError::Truncated | SnapshotError::Tampered)),
            "length {len}: {r:?}"
        );
    }
    // One byte more.
    let mut long = snap.clone();
    long.push(0);
    assert_eq!(restore_at(&long, now).1, Err(SnapshotError::Tampered));
    // Garbage and emptiness.
    assert_eq!(
        restore_at(&[0u8; 200], now).1,
        Err(SnapshotError::NotSnapshot)
    );
    assert_eq!(
        restore_at(b"{\"access_token\":\"x\"}", now).1,
        Err(SnapshotError::NotSnapshot)
    );
    assert_eq!(restore_at(&[], now).1, Err(SnapshotError::Truncated));
}

#[test]
fn a_refused_restore_leaves_the_session_as_it_was() {
    let mut s = with_token(0, BODY);
    let before = token(&mut s, 10).unwrap();
    let mut bad = saved(0);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        s.restore(at(10), Some(wall(WALL0)), Key::Credentials, &mut bad),
        Err(SnapshotError::Tampered)
    );
    assert_eq!(token(&mut s, 10).unwrap(), before);
}

#[test]
fn restored_bytes_are_wiped_once_decrypted() {
    let mut copy = saved(0);
    session()
        .restore(at(0), Some(wall(WALL0)), Key::Credentials, &mut copy)
        .unwrap();
    assert!(copy.iter().all(|&b| b == 0));
    // Expired after decryption: wiped too.
    let mut copy = saved(0);
    let r = session().restore(
        at(0),
        Some(wall(WALL0 + 86_400 * SEC)),
        Key::Credentials,
        &mut copy,
    );
    assert_eq!(r, Err(SnapshotError::Expired));
    assert!(copy.iter().all(|&b| b == 0));
}

#[test]
fn writing_needs_a_token_and_room() {
    let s = session();
    let mut buf = [0u8; 512];
    assert_eq!(
        s.snapshot(at(0), wall(WALL0), Key::Credentials, &mut buf),
        Err(SnapshotError::NoToken)
    );
    let s = with_token(0, BODY);
    let need = saved(0).len();
    let mut small = vec![0xAAu8; need - 1];
    assert_eq!(
        s.snapshot(at(0), wall(WALL0), Key::Credentials, &mut small),
        Err(SnapshotError::Capacity {
            field: "snapshot",
            needed: need,
            capacity: need - 1
        })
    );
    assert!(
        small.iter().all(|&b| b == 0),
        "a failed write leaves no plaintext"
    );
    let mut exact = vec![0u8; need];
    assert!(s
        .snapshot(at(0), wall(WALL0), Key::Credentials, &mut exact)
        .is_ok());
    // An expired token is not saved.
    assert_eq!(
        s.snapshot(at(3600 * SEC), wall(WALL0), Key::Credentials, &mut buf),
        Err(SnapshotError::NoToken)
    );
}

#[test]
fn a_token_too_big_for_the_session_is_a_capacity_error() {
    let snap = saved(0);
    let mut small: Session<OAuth2<'static>, 8> = Session::new(
        OAuth2::new(IDP),
        Credentials::new("terminal-7", SECRET).unwrap(),
        Config::default(),
        1,
    );
    let mut copy = snap;
    assert!(matches!(
        small.restore(at(0), Some(wall(WALL0)), Key::Credentials, &mut copy),
        Err(SnapshotError::Capacity {
            field: "access_token",
            ..
        })
    ));
    assert!(matches!(small.poll(at(0)), Poll::Fetch(_)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever the lifetime, the time it was saved, how long the device slept and how
    /// wrong its clock is (within the stated uncertainty, at write and at read), a restored
    /// token is never served past its real expiry.
    #[test]
    fn restore_never_serves_past_expiry(
        life_s in 1u64..200_000,
        saved_after_frac in 0.0f64..1.0,
        slept_ms in 0u64..300_000_000,
        uncertainty_ms in 0u64..120_000,
        write_err_frac in -1.0f64..1.0,
        read_err_frac in -1.0f64..1.0,
    ) {
        let body = format!(r#"{{"access_token":"t","token_type":"Bearer","expires_in":{life_s}}}"#);
        let s = with_token(0, &body);
        let saved_at = (life_s as f64 * 1000.0 * saved_after_frac) as u64;
        // The errors of the two readings add up to at most the uncertainty.
        let half = uncertainty_ms as f64 / 2.0;
        let write_err = (half * write_err_frac) as i64;
        let read_err = (half * read_err_frac) as i64;
        let true_write = WALL0 + saved_at;
        let real_expiry = WALL0 + life_s * SEC;
        let mut buf = [0u8; 512];
        let Ok(snap) = s.snapshot(
            at(saved_at),
            wall(true_write.saturating_add_signed(write_err)),
            Key::Credentials,
            &mut buf,
        ) else {
            // Nothing to save (already unusable): nothing to check.
            return Ok(());
        };
        let mut copy = snap.to_vec();
        let true_read = true_write + slept_ms;
        let mut r = session();
        let restored = r.restore(
            at(0),
            Some(WallTime::new(
                true_read.saturating_add_signed(read_err),
                Duration::from_millis(uncertainty_ms),
            )),
            Key::Credentials,
            &mut copy,
        );
        if restored.is_ok() {
            let until = match r.poll(at(0)) {
                Poll::Ready(b) | Poll::Refresh(b, _) => b.usable_until().as_millis(),
                other => panic!("restored but not served: {other:?}"),
            };
            prop_assert!(
                true_read + until <= real_expiry,
                "served until {} past the real expiry {real_expiry}",
                true_read + until
            );
        }
    }
}

#[test]
fn the_binding_names_the_credential_not_the_secret() {
    let a = session().binding(Key::Credentials).unwrap();
    assert_eq!(a, session().binding(Key::Credentials).unwrap(), "stable");
    let rotated = session_for(OAuth2::new(IDP), "terminal-7", "rotated-77c1");
    assert_ne!(a, rotated.binding(Key::Credentials).unwrap());
    let scoped = session_for(
        OAuth2::new(IDP).with_scope("pay:read"),
        "terminal-7",
        SECRET,
    );
    assert_ne!(a, scoped.binding(Key::Credentials).unwrap());
    assert_ne!(a, session().binding(Key::Application(&[1; 32])).unwrap());
    // It is the fingerprint the snapshot carries.
    assert_eq!(&saved(0)[4..12], a.as_slice());
}

#[test]
fn saving_a_restored_token_again_keeps_its_real_expiry() {
    // Deep sleep after deep sleep: each wake restores with 2 s of doubt, then saves.
    let mut bytes = saved(0);
    for hop in 1..=5u64 {
        let mut s = session();
        let w = WallTime::new(WALL0 + hop * 60 * SEC, Duration::from_secs(2));
        let r = s
            .restore(at(0), Some(w), Key::Credentials, &mut bytes)
            .unwrap();
        // Served until the real expiry less this wake's doubt and the allowance, every time:
        // the doubt is not taken off again and again.
        assert_eq!(
            r.usable_until,
            at(3600 * SEC - hop * 60 * SEC - 2 * SEC - 2 * SEC),
            "hop {hop}"
        );
        let mut buf = [0u8; 512];
        bytes = s
            .snapshot(
                at(0),
                wall(WALL0 + hop * 60 * SEC),
                Key::Credentials,
                &mut buf,
            )
            .unwrap()
            .to_vec();
    }
}

#[test]
fn a_rejected_token_is_never_restored_again() {
    let bytes = saved(0);
    let (mut s, r) = restore_at(&bytes, wall(WALL0 + 60 * SEC));
    r.unwrap();
    let id = match s.poll(at(0)) {
        Poll::Ready(b) => b.id(),
        _ => panic!("restored token not served"),
    };
    assert_eq!(s.token_id(at(0)), Some(id));
    // An API answered 401 with it.
    assert!(s.reject(id));
    assert_eq!(s.token_id(at(0)), None);
    // The store still holds it: restoring it is refused, and the session fetches.
    let mut copy = bytes.clone();
    assert_eq!(
        s.restore(
            at(1),
            Some(wall(WALL0 + 61 * SEC)),
            Key::Credentials,
            &mut copy
        ),
        Err(SnapshotError::Rejected)
    );
    assert!(matches!(s.poll(at(1)), Poll::Fetch(_)));
    // Another token restores as usual.
    let other = {
        let s = with_token(0, &BODY.replace("eyJ.tok.sig", "eyJ.new.sig"));
        let mut buf = [0u8; 512];
        s.snapshot(at(0), wall(WALL0), Key::Credentials, &mut buf)
            .unwrap()
            .to_vec()
    };
    let mut copy = other.clone();
    s.restore(
        at(2),
        Some(wall(WALL0 + 62 * SEC)),
        Key::Credentials,
        &mut copy,
    )
    .unwrap();
    // The same token with an escape in its JSON is the same token.
    let escaped = with_token(0, &BODY.replace("eyJ.tok.sig", "eyJ.tok\\u002esig"));
    let mut buf = [0u8; 512];
    let mut copy = escaped
        .snapshot(at(0), wall(WALL0), Key::Credentials, &mut buf)
        .unwrap()
        .to_vec();
    let mut s2 = session();
    let mut first = bytes.clone();
    s2.restore(at(0), Some(wall(WALL0)), Key::Credentials, &mut first)
        .unwrap();
    let id = s2.token_id(at(0)).unwrap();
    assert!(s2.reject(id));
    assert_eq!(
        s2.restore(at(0), Some(wall(WALL0)), Key::Credentials, &mut copy),
        Err(SnapshotError::Rejected)
    );
}

#[test]
fn a_refusal_record_is_sealed_bound_and_lapses() {
    let s = session();
    let mut buf = [0u8; 128];
    let record = s
        .seal_refusal(401, wall(WALL0), Key::Credentials, &mut buf)
        .unwrap()
        .to_vec();
    assert_eq!(record.len(), OVERHEAD + 15);
    let open = |s: &S, now: u64, bytes: &[u8]| {
        let mut copy = bytes.to_vec();
        s.open_refusal(Some(wall(now)), Key::Credentials, &mut copy)
    };
    let r = open(&s, WALL0 + 60 * SEC, &record).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.remaining, Some(Duration::from_secs(840)));
    // Lapsed after the period (15 min): a replayed old record is ignored.
    assert_eq!(
        open(&s, WALL0 + 900 * SEC, &record),
        Err(SnapshotError::Expired)
    );
    // A writer whose clock runs ahead never stretches it past the period.
    let r = open(&s, WALL0 - 3600 * SEC, &record).unwrap();
    assert_eq!(r.remaining, Some(Duration::from_secs(900)));
    // A shorter period of the reader's own bounds it.
    let short = Session::new(
        OAuth2::new(IDP),
        Credentials::new("terminal-7", SECRET).unwrap(),
        Config {
            refusal_retry: Duration::from_secs(60),
            ..Config::default()
        },
        7,
    );
    assert_eq!(
        open(&short, WALL0 + 30 * SEC, &record).unwrap().remaining,
        Some(Duration::from_secs(30))
    );
    // Another secret, client or endpoint: foreign. Bytes someone else wrote: not ours.
    let other = session_for(OAuth2::new(IDP), "terminal-7", "another-secret");
    assert_eq!(open(&other, WALL0, &record), Err(SnapshotError::Foreign));
    assert_eq!(open(&s, WALL0, b"401"), Err(SnapshotError::NotSnapshot));
    let mut flipped = record.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert_eq!(open(&s, WALL0, &flipped), Err(SnapshotError::Tampered));
    // A token record is not a refusal, and a refusal is not a token.
    assert_eq!(open(&s, WALL0, &saved(0)), Err(SnapshotError::Malformed));
    let mut copy = record.clone();
    let mut fresh = session();
    assert_eq!(
        fresh.restore(at(0), Some(wall(WALL0)), Key::Credentials, &mut copy),
        Err(SnapshotError::Malformed)
    );
    // No wall clock: cannot be judged.
    let mut copy = record.clone();
    assert_eq!(
        s.open_refusal(None, Key::Credentials, &mut copy),
        Err(SnapshotError::NoWallClock)
    );
    // `refusal_retry` zero on both sides: it never lapses.
    let never = Config {
        refusal_retry: Duration::ZERO,
        ..Config::default()
    };
    let s0: S = Session::new(
        OAuth2::new(IDP),
        Credentials::new("terminal-7", SECRET).unwrap(),
        never,
        7,
    );
    let record = s0
        .seal_refusal(400, wall(WALL0), Key::Credentials, &mut buf)
        .unwrap()
        .to_vec();
    let r = open(&s0, WALL0 + 365 * 24 * 3600 * SEC, &record).unwrap();
    assert_eq!((r.status, r.remaining), (400, None));
    // ... but a reader with a period still tries after its own.
    assert_eq!(
        open(&s, WALL0 + 900 * SEC, &record),
        Err(SnapshotError::Expired)
    );
    assert_eq!(
        s.seal_refusal(401, wall(WALL0), Key::Credentials, &mut [0u8; 40]),
        Err(SnapshotError::Capacity {
            field: "refusal record",
            needed: OVERHEAD + 17,
            capacity: 40
        })
    );
}

#[test]
fn a_refusal_seen_elsewhere_holds_for_its_remaining_time() {
    let mut s = session();
    let Poll::Fetch(t) = s.poll(at(0)) else {
        panic!()
    };
    s.on_refused_elsewhere(t, at(0), 401, Some(Duration::from_secs(100)));
    assert!(matches!(
        s.poll(at(99 * SEC)),
        Poll::Failed(tessera_core::ErrorKind::InvalidCredentials)
    ));
    assert!(matches!(s.poll(at(100 * SEC)), Poll::Fetch(_)));
}
