//! The token-store scenarios every transport with stores runs, written once, for a file and
//! for Redis: a token an API revoked never comes back from the store, a stale rejection
//! never deletes a fresher token, and a fleet's refusal of a credential lapses (or
//! disappears) and the fleet recovers by itself.
//!
//! Each client a [`StoreHarness`] makes stands for a separate process: its own session,
//! its own handle on the store, its own [`ManualClock`] with a wall clock that moves with it.
//! Orderings that race in production (a rejection arriving after another process stored a
//! fresher token) are produced here in that order, deterministically: the store sees exactly
//! the interleaving that would break a blind delete.

use std::path::PathBuf;
use std::time::Duration;

use tessera_core::ErrorKind;

use crate::scenarios::Failed;
use crate::{Endpoint, ProviderKind, Sandbox, CLIENT_ID, CLIENT_SECRET};

pub use crate::ManualClock;

/// The wall clock every store scenario's clients start at (Unix ms, 2023-11-14T22:13:20Z);
/// each client's wall clock is this plus its [`ManualClock`]'s reading.
pub const WALL_START_MS: u64 = 1_700_000_000_000;

/// Where the clients of a scenario keep their token.
#[derive(Clone, Debug)]
pub enum StoreAt {
    /// One file ([`FileStore`](https://docs.rs/tessera-std) on the host transports).
    File(PathBuf),
    /// A Redis: its URL, and for `rediss://` the CA its certificate chains to (PEM).
    Redis {
        /// `redis://…` or `rediss://…`.
        url: String,
        /// The CA to trust, for `rediss://`.
        ca_pem: Option<String>,
    },
}

/// One transport's client with a store, driven synchronously: what the store scenarios use
/// of it.
pub trait StoreClient {
    /// A bearer token.
    fn token(&self) -> Result<String, Failed>;
    /// A GET with the bearer token (401 → token rejected, refetched once, call retried
    /// once): the status.
    fn call(&self, url: &str) -> Result<u16, Failed>;
    /// The client's manual clock (its wall clock moves with it).
    fn clock(&self) -> &ManualClock;
}

/// Makes clients of one transport that keep their token in a store.
pub trait StoreHarness {
    /// The client type.
    type Client: StoreClient;
    /// A client for `kind` on `sb` with `secret`, keeping its token in `store` through a
    /// store handle of its own (as a separate process would open). Its wall clock is
    /// [`WALL_START_MS`] plus its manual clock; network timeouts of 500 ms; the transport's
    /// default refresh.
    fn client_with_store(
        &self,
        sb: &Sandbox,
        kind: ProviderKind,
        secret: &str,
        store: &StoreAt,
    ) -> Self::Client;
}

const KIND: ProviderKind = ProviderKind::OAuth2;

fn requests(sb: &Sandbox) -> u64 {
    sb.count(Endpoint::Token(KIND))
}

/// An API revokes the token: the call that meets the 401 gets one new token and its retry
/// is answered 200; a second process on the same store gets the new token, not the revoked
/// one, with no request; so does a process started afterwards.
pub fn a_revoked_token_never_comes_back(h: &impl StoreHarness, store: &StoreAt) {
    let sb = Sandbox::start().unwrap();
    let api = sb.protected_url(KIND);
    let a = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    let b = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    let t1 = a.token().unwrap();
    assert_eq!(b.token().unwrap(), t1, "b restores a's token");
    assert_eq!(requests(&sb), 1);
    sb.revoke_all(KIND);
    assert_eq!(a.call(&api).unwrap(), 200, "401, one new token, 200");
    assert_eq!(requests(&sb), 2, "exactly one new token");
    let t2 = a.token().unwrap();
    assert_ne!(t2, t1);
    // The next call goes through with the new token, no request.
    assert_eq!(a.call(&api).unwrap(), 200);
    assert_eq!(requests(&sb), 2);
    // b still holds the revoked token in memory: its call meets the 401, and the store
    // gives it a's new token instead of a request (and never the revoked one).
    assert_eq!(b.call(&api).unwrap(), 200);
    assert_eq!(b.token().unwrap(), t2);
    assert_eq!(requests(&sb), 2, "b took the new token from the store");
    // A process started now restores the new token.
    let c = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    assert_eq!(c.token().unwrap(), t2);
    assert_eq!(c.call(&api).unwrap(), 200);
    assert_eq!(requests(&sb), 2);
    // Revoked again while c is the only one to notice: c's retry is the only request.
    sb.revoke_all(KIND);
    assert_eq!(c.call(&api).unwrap(), 200);
    assert_eq!(requests(&sb), 3);
    let t3 = c.token().unwrap();
    assert!(t3 != t2 && t3 != t1);
    let d = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    assert_eq!(
        d.token().unwrap(),
        t3,
        "never a revoked token from the store"
    );
}

/// A rejection that reaches the store after another process stored a fresher token (the
/// race: both processes met the revoked token; one already replaced it) deletes nothing:
/// the fresher token stays, and the late process uses it with no request.
pub fn a_late_rejection_keeps_the_fresher_token(h: &impl StoreHarness, store: &StoreAt) {
    let sb = Sandbox::start().unwrap();
    let api = sb.protected_url(KIND);
    let a = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    let b = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    let t1 = a.token().unwrap();
    assert_eq!(b.token().unwrap(), t1);
    sb.revoke_all(KIND);
    // a meets the 401 first and stores t2.
    assert_eq!(a.call(&api).unwrap(), 200);
    let t2 = a.token().unwrap();
    assert_eq!(requests(&sb), 2);
    // b's rejection of t1 arrives now: the store holds t2, which b's rejection must keep.
    assert_eq!(b.call(&api).unwrap(), 200);
    assert_eq!(b.token().unwrap(), t2);
    assert_eq!(
        requests(&sb),
        2,
        "b's late rejection deleted a's fresher token"
    );
    let c = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    assert_eq!(
        c.token().unwrap(),
        t2,
        "the store still holds the fresher token"
    );
    assert_eq!(requests(&sb), 2);
}

fn refused(r: Result<String, Failed>) -> bool {
    matches!(r, Err(f) if f.kind == ErrorKind::InvalidCredentials)
}

/// The provider refuses the fleet's credential (a transient 401 during an incident): one
/// request for the whole fleet; nobody tries again while the refusal holds (15 min by
/// default); once it lapses one process tries, and the others take its token from the
/// store.
pub fn a_refusal_lapses_and_the_fleet_recovers(h: &impl StoreHarness, store: &StoreAt) {
    let sb = Sandbox::start().unwrap();
    sb.set_credentials(KIND, CLIENT_ID, "the-provider-forgot-us");
    let a = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    let b = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    assert!(refused(a.token()));
    assert_eq!(requests(&sb), 1);
    assert!(refused(b.token()), "b adopts the fleet's refusal");
    assert_eq!(requests(&sb), 1, "one attempt for the fleet");
    // The incident ends; the refusal still holds for the rest of its period.
    sb.set_credentials(KIND, CLIENT_ID, CLIENT_SECRET);
    for c in [&a, &b] {
        c.clock().advance(Duration::from_secs(899));
        assert!(refused(c.token()));
    }
    assert_eq!(requests(&sb), 1);
    // Lapsed: one process tries, and it works; the other takes its token.
    for c in [&a, &b] {
        c.clock().advance(Duration::from_secs(2));
    }
    let t = a.token().unwrap();
    assert_eq!(b.token().unwrap(), t);
    assert_eq!(requests(&sb), 2, "one attempt after the refusal lapsed");
    // A process started now (its wall clock reading the fleet's) takes it too.
    let c = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    c.clock().advance(Duration::from_secs(901));
    assert_eq!(c.token().unwrap(), t);
    assert_eq!(requests(&sb), 2);
}

/// A refusal record that disappears (an operator deletes it after fixing the credential,
/// or a Redis without persistence restarts): the next fetch of each process tries again,
/// the first one with a request, the others from the store.
pub fn a_vanished_refusal_lets_the_next_fetch_try(
    h: &impl StoreHarness,
    store: &StoreAt,
    wipe: &dyn Fn(),
) {
    let sb = Sandbox::start().unwrap();
    sb.set_credentials(KIND, CLIENT_ID, "rotated-elsewhere");
    let a = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    let b = h.client_with_store(&sb, KIND, CLIENT_SECRET, store);
    assert!(refused(a.token()));
    assert!(refused(b.token()));
    assert_eq!(requests(&sb), 1);
    // Still there: asking again changes nothing.
    assert!(refused(a.token()));
    assert_eq!(requests(&sb), 1);
    sb.set_credentials(KIND, CLIENT_ID, CLIENT_SECRET);
    wipe();
    let t = a.token().unwrap();
    assert_eq!(requests(&sb), 2);
    assert_eq!(b.token().unwrap(), t);
    assert_eq!(requests(&sb), 2);
}

/// Defines a module of `#[test]`s running every store scenario, per store kind:
/// `store_scenario_tests!(harness, store_for, [file, plain_redis, tls_redis])`, where
/// `store_for(kind: &str)` returns `(StoreAt, wipe, guard)`: where the store is, a closure
/// that empties it, and whatever must live as long as the test (a Redis server, a
/// directory).
#[macro_export]
macro_rules! store_scenario_tests {
    ($harness:expr, $store:ident, [$($kind:ident),*]) => {
        $(
            mod $kind {
                use super::*;
                #[test]
                fn a_revoked_token_never_comes_back() {
                    let (at, _wipe, _guard) = $store(stringify!($kind));
                    $crate::store_scenarios::a_revoked_token_never_comes_back(&$harness, &at);
                }
                #[test]
                fn a_late_rejection_keeps_the_fresher_token() {
                    let (at, _wipe, _guard) = $store(stringify!($kind));
                    $crate::store_scenarios::a_late_rejection_keeps_the_fresher_token(&$harness, &at);
                }
                #[test]
                fn a_refusal_lapses_and_the_fleet_recovers() {
                    let (at, _wipe, _guard) = $store(stringify!($kind));
                    $crate::store_scenarios::a_refusal_lapses_and_the_fleet_recovers(&$harness, &at);
                }
                #[test]
                fn a_vanished_refusal_lets_the_next_fetch_try() {
                    let (at, wipe, _guard) = $store(stringify!($kind));
                    $crate::store_scenarios::a_vanished_refusal_lets_the_next_fetch_try(&$harness, &at, &wipe);
                }
            }
        )*
    };
}
