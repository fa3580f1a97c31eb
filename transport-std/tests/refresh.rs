//! The lifecycle over threads, with the defaults (background refresh): no caller waits for a
//! refresh while a token is cached; the refresher sleeps until the refresh point and parks
//! after refused credentials until they change. Lifecycle time is a manual clock; a held
//! refresh is a gate the test releases.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{creds, eventually};
use tessera_core::{Credentials, ErrorKind, ProviderKind};
use tessera_sandbox::scenarios::ManualClock;
use tessera_sandbox::{Endpoint, Fault, Gate, Sandbox, CLIENT_ID};
use tessera_std::{http, Client, Options, OwnedProvider};

const OAUTH: ProviderKind = ProviderKind::OAuth2;

fn client(sb: &Sandbox, clock: &ManualClock, creds: Credentials) -> Client<OwnedProvider> {
    Client::with_clock(
        OwnedProvider::new(OAUTH, sb.base_url(OAUTH)),
        creds,
        Options::default(),
        Arc::new(clock.clone()),
    )
}

#[test]
fn nobody_waits_for_a_held_refresh() {
    let sb = Sandbox::start().unwrap();
    let clock = ManualClock::default();
    let client = client(&sb, &clock, creds());
    let first = client.token().unwrap();
    assert_eq!(sb.count(Endpoint::Token(OAUTH)), 1);

    let gate = Gate::new();
    sb.inject(Endpoint::Token(OAUTH), Fault::Hold(gate.clone()), 1);
    // Past the refresh point (a one-hour token refreshes 5 min before expiry).
    clock.advance(Duration::from_secs(3500));
    assert_eq!(client.token().unwrap().id(), first.id());
    assert!(
        gate.wait_arrived(1, Duration::from_secs(10)),
        "the refresh did not start"
    );

    // While the refresh is held: 16 threads, each token() and call(), all complete with the
    // cached token.
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (client, url) = (client.clone(), sb.protected_url(OAUTH));
            std::thread::spawn(move || {
                let t = client.token().unwrap();
                let r = client
                    .call(http::Request::get(url).body("").unwrap())
                    .unwrap();
                (t.id(), r.status().as_u16())
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), (first.id(), 200));
    }
    assert!(client.fetching());
    assert_eq!(
        sb.count(Endpoint::Token(OAUTH)),
        2,
        "one refresh, however many callers"
    );

    gate.release();
    assert!(eventually(|| client.token().unwrap().id() != first.id()));
    assert_eq!(sb.count(Endpoint::Token(OAUTH)), 2);
}

#[test]
fn the_refresher_sleeps_until_due_and_parks_after_a_refusal() {
    let sb = Sandbox::start().unwrap();
    let clock = ManualClock::default();
    let client = client(&sb, &clock, creds());
    // No token yet: the refresher parks; the first caller fetches, and wakes it.
    let refresher = client.start_refresher();
    let first = client.token().unwrap();
    assert_eq!(sb.count(Endpoint::Token(OAUTH)), 1);

    // Sleeping until the refresh point (one hour less 5 min): moving the clock there wakes
    // it to refresh, with no caller asking.
    clock.advance(Duration::from_secs(3300));
    client.wake_waiters();
    assert!(eventually(|| sb.count(Endpoint::Token(OAUTH)) == 2));
    assert!(eventually(|| client
        .grant()
        .is_some_and(|g| g.access_token() != first.as_str())));

    // The secret is rotated wrongly: the next refresh is refused (the cached token lives
    // on), and the refresher parks: no retry loop however much time passes.
    client.set_credentials(Credentials::new(CLIENT_ID, "not the secret").unwrap());
    clock.advance(Duration::from_secs(3300));
    client.wake_waiters();
    assert!(eventually(|| client
        .failure()
        .is_some_and(|f| f.kind() == ErrorKind::InvalidCredentials)));
    assert_eq!(sb.count(Endpoint::Token(OAUTH)), 3);
    clock.advance(Duration::from_secs(60));
    client.wake_waiters();
    // A negative check (a retry would show as a fourth request once the refresher ran);
    // callers are still served the cached token meanwhile.
    assert!(client.token().is_ok());
    assert_eq!(sb.count(Endpoint::Token(OAUTH)), 3);

    // The right secret wakes it: the due refresh runs at once.
    client.set_credentials(creds());
    assert!(eventually(|| sb.count(Endpoint::Token(OAUTH)) == 4));
    assert!(eventually(|| client.failure().is_none()));
    drop(refresher);
}
