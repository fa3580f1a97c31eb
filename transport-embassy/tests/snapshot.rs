//! Snapshots around the embassy client, against the sandbox on loopback: a token saved by
//! one client is restored into a new one (new resources, its monotonic clock back at zero,
//! as after a deep sleep or a reboot) and served with no token request; every refusal falls
//! back to a fetch; a restore wakes callers waiting for a fetch and the refresher.

use std::sync::Arc;
use std::time::Duration;

use embassy_futures::select::select;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use std_embedded_nal_async::Stack;
use tessera_core::session::{Config, Poll, Session};
use tessera_core::snapshot::{Key, SnapshotError, WallTime};
use tessera_core::{AnyProvider, Clock, Credentials, OAuth2, ProviderKind};
use tessera_embassy::{snapshot_capacity, Client, Plain, Resources, Settings};
use tessera_sandbox::scenarios::{self, ManualClock};
use tessera_sandbox::{Endpoint, Fault, Gate, Sandbox, CLIENT_ID, CLIENT_SECRET};

mod common;
use common::TestRng;

type C = Client<
    'static,
    CriticalSectionRawMutex,
    AnyProvider<'static>,
    Plain<'static, Stack, Stack>,
    ManualClock,
>;
type Stop = Arc<Signal<CriticalSectionRawMutex, ()>>;

/// 2023-11-14T22:13:20Z: the wall time of the first client's fetch, in Unix ms.
const WALL0: u64 = 1_700_000_000_000;
const MINUTE: u64 = 60_000;
/// The tokens' lifetime in these tests.
const LIFETIME_S: u64 = 3600;
const ROOM: usize = <Resources>::SNAPSHOT_CAPACITY;

fn wall(unix_ms: u64) -> WallTime {
    WallTime::new(unix_ms, Duration::from_secs(2))
}

/// A client with fresh resources and a manual clock at zero, and its refresher task.
struct Terminal {
    client: &'static C,
    clock: ManualClock,
    stop: Stop,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.stop.signal(());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
    }
}

fn boot(sb: &Sandbox, kind: ProviderKind, secret: &str) -> Terminal {
    scenarios::capture_logs();
    let stack: &'static Stack = Box::leak(Box::default());
    let base: &'static str = Box::leak(sb.base_url(kind).into_boxed_str());
    let resources: &'static mut Resources = Box::leak(Box::new(Resources::new()));
    let settings = Settings {
        timeout: embassy_time::Duration::from_millis(500),
        ..Settings::default()
    };
    let clock = ManualClock::default();
    let client: &'static C = Box::leak(Box::new(
        Client::builder(
            AnyProvider::new(kind, base),
            Credentials::new(CLIENT_ID, secret).unwrap(),
            Plain::new(stack, stack),
            resources,
            &mut TestRng(11),
        )
        .settings(settings)
        .clock(clock.clone())
        .build(),
    ));
    let stop: Stop = Arc::default();
    let s = Arc::clone(&stop);
    let refresher = std::thread::spawn(move || {
        async_io::block_on(select(client.refresher(), s.wait()));
    });
    assert!(
        scenarios::eventually(Duration::from_secs(10), || client.refresher_running()),
        "the refresher task never started"
    );
    Terminal {
        client,
        clock,
        stop,
        refresher: Some(refresher),
    }
}

impl Terminal {
    fn token(&self) -> String {
        let mut out = [0u8; 4096];
        let t = async_io::block_on(self.client.token(&mut out)).unwrap();
        t.as_str().to_owned()
    }

    /// The snapshot of its token, at wall time `unix_ms`.
    fn save(&self, unix_ms: u64) -> Vec<u8> {
        let mut out = [0u8; ROOM];
        self.client
            .save(wall(unix_ms), Key::Credentials, &mut out)
            .unwrap()
            .to_vec()
    }
}

/// A token fetched at wall time WALL0 and saved `after` ms later, and that token.
fn fetched_and_saved(sb: &Sandbox, kind: ProviderKind, after: u64) -> (Vec<u8>, String) {
    let first = boot(sb, kind, CLIENT_SECRET);
    let token = first.token();
    first.clock.advance(Duration::from_millis(after));
    (first.save(WALL0 + after), token)
}

#[test]
fn a_restored_token_is_served_with_no_token_request_for_every_provider() {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        sb.set_lifetime(kind, LIFETIME_S);
        let (saved, token) = fetched_and_saved(&sb, kind, 0);
        assert_eq!(sb.count(Endpoint::Token(kind)), 1, "{kind}");
        assert!(saved.len() <= ROOM, "{kind}: {} bytes", saved.len());
        // The size a real one takes (printed with --nocapture).
        println!(
            "{kind}: snapshot {} bytes for a {}-byte token",
            saved.len(),
            token.len()
        );
        // Sealed: the token is not readable at rest.
        assert!(
            !saved
                .windows(token.len().min(24))
                .any(|w| w == &token.as_bytes()[..token.len().min(24)]),
            "{kind}: the token is readable in the snapshot"
        );
        // Rebooted: new resources, the monotonic clock at zero, ten minutes of wall time on.
        let next = boot(&sb, kind, CLIENT_SECRET);
        let before = next.client.tokens_stored();
        let mut bytes = saved.clone();
        let restored = next
            .client
            .restore(
                Some(wall(WALL0 + 10 * MINUTE)),
                Key::Credentials,
                &mut bytes,
            )
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(bytes.iter().all(|&b| b == 0), "{kind}: snapshot not wiped");
        assert_ne!(next.client.tokens_stored(), before, "{kind}");
        // Due at the usual margin before the expiry it had left (50 minutes, less the
        // clock's uncertainty), on the new client's clock.
        let due = restored.refresh_at.as_millis();
        assert!(
            due > 40 * MINUTE && due < 50 * MINUTE,
            "{kind}: refresh at {due} ms"
        );
        assert_eq!(next.token(), token, "{kind}");
        assert_eq!(next.token(), token, "{kind}");
        async_io::block_on(next.client.settled());
        assert_eq!(
            sb.count(Endpoint::Token(kind)),
            1,
            "{kind}: a token request was sent"
        );
        // The fetch buffers were never needed.
        assert_eq!(next.client.fetch_buffers_wiped(), Some(true), "{kind}");
    }
    scenarios::audit();
}

#[test]
fn a_token_carried_through_many_sleeps_is_never_fetched_again_while_it_lives() {
    // The deep-sleep loop: wake, restore, work, save, sleep, a minute each time. Every
    // hop is a new client with its monotonic clock at zero.
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::Shogun;
    sb.set_lifetime(kind, LIFETIME_S);
    let (mut saved, token) = fetched_and_saved(&sb, kind, 0);
    for hop in 1..=5u64 {
        let now = WALL0 + hop * MINUTE;
        let next = boot(&sb, kind, CLIENT_SECRET);
        let restored = next
            .client
            .restore(Some(wall(now)), Key::Credentials, &mut saved)
            .unwrap_or_else(|e| panic!("hop {hop}: {e}"));
        // Each restore serves the token for the clock's uncertainty (2 s) less; the
        // snapshot saved after it keeps the token's real expiry, so the doubt is taken off
        // once per wake, never added up hop by hop.
        let left_ms = LIFETIME_S * 1000 - hop * MINUTE - 2000;
        assert_eq!(
            restored.refresh_at.as_millis(),
            left_ms - 300_000,
            "hop {hop}: refreshed at the 5-minute margin before what is left"
        );
        assert_eq!(next.token(), token, "hop {hop}");
        saved = next.save(now);
    }
    assert_eq!(
        sb.count(Endpoint::Token(kind)),
        1,
        "one request in five wakes"
    );
}

#[test]
fn tampered_bytes_are_refused_and_the_next_token_is_fetched() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    sb.set_lifetime(kind, LIFETIME_S);
    let (saved, token) = fetched_and_saved(&sb, kind, 0);
    // One bit anywhere in the sealed part or its tag.
    for at in [30, saved.len() / 2, saved.len() - 1] {
        let next = boot(&sb, kind, CLIENT_SECRET);
        let mut bytes = saved.clone();
        bytes[at] ^= 0x10;
        let before = next.client.tokens_stored();
        let refused = next
            .client
            .restore(Some(wall(WALL0 + MINUTE)), Key::Credentials, &mut bytes);
        assert_eq!(refused, Err(SnapshotError::Tampered), "byte {at}");
        assert_eq!(next.client.tokens_stored(), before);
        let count = sb.count(Endpoint::Token(kind));
        assert_ne!(
            next.token(),
            token,
            "byte {at}: the tampered token was served"
        );
        assert_eq!(sb.count(Endpoint::Token(kind)), count + 1, "byte {at}");
    }
    // Garbage and a truncated snapshot: refused with their reasons, never a panic.
    let next = boot(&sb, kind, CLIENT_SECRET);
    let w = Some(wall(WALL0 + MINUTE));
    let mut garbage = vec![0xa5u8; saved.len()];
    assert_eq!(
        next.client.restore(w, Key::Credentials, &mut garbage),
        Err(SnapshotError::NotSnapshot)
    );
    let mut short = saved[..40].to_vec();
    assert_eq!(
        next.client.restore(w, Key::Credentials, &mut short),
        Err(SnapshotError::Truncated)
    );
    scenarios::audit();
}

#[test]
fn without_a_wall_clock_the_snapshot_is_discarded_and_a_token_fetched() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::Shogun;
    sb.set_lifetime(kind, LIFETIME_S);
    let (saved, token) = fetched_and_saved(&sb, kind, 0);
    let next = boot(&sb, kind, CLIENT_SECRET);
    let mut bytes = saved.clone();
    assert_eq!(
        next.client.restore(None, Key::Credentials, &mut bytes),
        Err(SnapshotError::NoWallClock)
    );
    assert_eq!(bytes, saved, "refused before opening: left as it was");
    assert_ne!(next.token(), token);
    assert_eq!(sb.count(Endpoint::Token(kind)), 2);
}

#[test]
fn an_expired_snapshot_is_refused_and_a_token_fetched() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::Apimw;
    sb.set_lifetime(kind, LIFETIME_S);
    // Saved 20 minutes after its fetch; restored when its hour is over.
    let (saved, token) = fetched_and_saved(&sb, kind, 20 * MINUTE);
    for late in [LIFETIME_S * 1000, LIFETIME_S * 1000 + 5 * MINUTE] {
        let next = boot(&sb, kind, CLIENT_SECRET);
        let mut bytes = saved.clone();
        assert_eq!(
            next.client
                .restore(Some(wall(WALL0 + late)), Key::Credentials, &mut bytes),
            Err(SnapshotError::Expired),
            "{late} ms after the fetch"
        );
        let count = sb.count(Endpoint::Token(kind));
        assert_ne!(next.token(), token);
        assert_eq!(sb.count(Endpoint::Token(kind)), count + 1);
    }
}

#[test]
fn another_secret_key_or_provider_never_reuses_the_token() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::StoneX;
    sb.set_lifetime(kind, LIFETIME_S);
    let (saved, _) = fetched_and_saved(&sb, kind, 0);
    let w = Some(wall(WALL0 + MINUTE));
    // The secret was rotated: the old secret's token is not the new one's.
    let rotated = boot(&sb, kind, "a rotated secret");
    let mut bytes = saved.clone();
    assert_eq!(
        rotated.client.restore(w, Key::Credentials, &mut bytes),
        Err(SnapshotError::Foreign)
    );
    assert_eq!(rotated.client.tokens_stored(), 0);
    // Sealed with the credential, opened with a device key.
    let same = boot(&sb, kind, CLIENT_SECRET);
    let mut bytes = saved.clone();
    assert_eq!(
        same.client
            .restore(w, Key::Application(&[7; 32]), &mut bytes),
        Err(SnapshotError::Foreign)
    );
    // Another provider with the same client id and secret.
    let other = boot(&sb, ProviderKind::OAuth2, CLIENT_SECRET);
    let mut bytes = saved.clone();
    assert_eq!(
        other.client.restore(w, Key::Credentials, &mut bytes),
        Err(SnapshotError::Foreign)
    );
    // A device key works both ways.
    let device = [0x42u8; 32];
    let mut out = [0u8; ROOM];
    let sealed = same
        .client
        .save(wall(WALL0), Key::Application(&device), &mut out);
    assert_eq!(
        sealed,
        Err(SnapshotError::NoToken),
        "nothing restored, nothing fetched"
    );
    let first = boot(&sb, kind, CLIENT_SECRET);
    first.token();
    let sealed = first
        .client
        .save(wall(WALL0), Key::Application(&device), &mut out)
        .unwrap()
        .to_vec();
    let count = sb.count(Endpoint::Token(kind));
    let next = boot(&sb, kind, CLIENT_SECRET);
    let mut bytes = sealed;
    next.client
        .restore(w, Key::Application(&device), &mut bytes)
        .unwrap();
    next.token();
    assert_eq!(sb.count(Endpoint::Token(kind)), count);
    scenarios::audit();
}

#[test]
fn a_restore_serves_callers_waiting_on_a_held_fetch_at_once() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::Setu;
    sb.set_lifetime(kind, LIFETIME_S);
    let (saved, token) = fetched_and_saved(&sb, kind, 0);
    let next = boot(&sb, kind, CLIENT_SECRET);
    // The new client's first fetch is held at the provider.
    let gate = Gate::new();
    sb.inject(Endpoint::Token(kind), Fault::Hold(gate.clone()), 1);
    let at_gate: Stop = Arc::default();
    {
        let (g, s) = (gate.clone(), Arc::clone(&at_gate));
        std::thread::spawn(move || {
            if g.wait_arrived(1, Duration::from_secs(10)) {
                s.signal(());
            }
        });
    }
    let (fetching, waiting) = async_io::block_on(embassy_futures::join::join(
        // This caller runs the held fetch.
        async {
            let mut out = [0u8; 4096];
            let r = next.client.token(&mut out).await;
            r.map(|t| t.as_str().to_owned())
        },
        async {
            at_gate.wait().await;
            // This one waits for that fetch (on the client's signal) …
            let mut out = [0u8; 4096];
            let waiter = next.client.token(&mut out);
            let restore = async {
                // … until the snapshot is restored, which wakes it.
                let mut bytes = saved.clone();
                next.client
                    .restore(Some(wall(WALL0 + MINUTE)), Key::Credentials, &mut bytes)
                    .unwrap();
            };
            let (got, ()) = embassy_futures::join::join(waiter, restore).await;
            let got = got.map(|t| t.as_str().to_owned());
            let held = !gate.is_released();
            gate.release();
            (got, held)
        },
    ));
    let (got, held) = waiting;
    assert!(held, "the waiter was served while the fetch was still held");
    assert_eq!(got.unwrap(), token, "the restored token");
    // The held fetch then answered, and its newer token replaced the restored one.
    let fetched = fetching.unwrap();
    assert_ne!(fetched, token);
    assert_eq!(next.token(), fetched);
    assert_eq!(sb.count(Endpoint::Token(kind)), 2);
}

#[test]
fn a_restored_token_already_due_wakes_the_refresher_which_refreshes_it() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    sb.set_lifetime(kind, LIFETIME_S);
    let (saved, token) = fetched_and_saved(&sb, kind, 0);
    // Restored with 4 minutes left: within the refresh margin (5 minutes for an hour), so
    // due at once, still usable.
    let next = boot(&sb, kind, CLIENT_SECRET);
    let mut bytes = saved;
    let restored = next
        .client
        .restore(
            Some(wall(WALL0 + LIFETIME_S * 1000 - 4 * MINUTE)),
            Key::Credentials,
            &mut bytes,
        )
        .unwrap();
    assert!(restored.refresh_at <= next.clock.now());
    assert!(restored.usable_until > next.clock.now());
    // The parked refresher was nudged: it refreshes with no caller asking.
    assert!(
        scenarios::eventually(Duration::from_secs(10), || sb.count(Endpoint::Token(kind))
            == 2),
        "the refresher did not refresh the restored token"
    );
    async_io::block_on(next.client.settled());
    assert_ne!(next.token(), token);
    assert_eq!(sb.count(Endpoint::Token(kind)), 2);
}

#[test]
fn snapshot_capacity_is_exactly_what_a_full_grant_takes() {
    // Every field at its capacity: a 64-byte token, a 32-byte refresh token, the longest
    // lifetime and 16 scopes of 16 bytes (256, the scope capacity).
    let access = "a".repeat(64);
    let refresh = "r".repeat(32);
    let scopes: Vec<String> = (0..16).map(|i| format!("scope-{i:02}-padding")).collect();
    assert!(scopes.iter().all(|s| s.len() == 16));
    let body = format!(
        r#"{{"access_token":"{access}","token_type":"Bearer","expires_in":4294967295,"refresh_token":"{refresh}","scope":"{}"}}"#,
        scopes.join(" ")
    );
    let mut s: Session<OAuth2<'static>, 64, 32> = Session::new(
        OAuth2::new("http://127.0.0.1:9/token"),
        Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap(),
        Config::default(),
        1,
    );
    let now = tessera_core::Instant::ZERO;
    let Poll::Fetch(t) = s.poll(now) else {
        panic!("expected a fetch")
    };
    s.on_response(t, now, 200, None, body.as_bytes());
    assert!(s.grant(now).is_some(), "{:?}", s.failure());
    let room = snapshot_capacity(64, 32);
    assert_eq!(
        room,
        Resources::<64, 1024, 1024, 4096, 32>::SNAPSHOT_CAPACITY
    );
    let mut out = vec![0u8; room];
    let len = s
        .snapshot(now, wall(WALL0), Key::Credentials, &mut out)
        .unwrap()
        .len();
    assert_eq!(len, room);
    let mut out = vec![0u8; room - 1];
    assert_eq!(
        s.snapshot(now, wall(WALL0), Key::Credentials, &mut out),
        Err(SnapshotError::Capacity {
            field: "snapshot",
            needed: room,
            capacity: room - 1
        })
    );
    assert_eq!(<Resources>::SNAPSHOT_CAPACITY, 3494);
}
