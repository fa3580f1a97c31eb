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
    let wrong = Credentials::new(CLIENT_ID, "not the secret").unwrap();
    let client = client(&sb, &clock, wrong);
    let refresher = client.start_refresher();

    // Refused: one attempt, then parked (no retry loop) until the credentials change.
    assert!(eventually(|| client.failure().is_some()));
    assert_eq!(
        client.failure().unwrap().kind(),
        ErrorKind::InvalidCredentials
    );
    // Time passing and wake-ups do not make it try again (a negative check: it would show
    // as a second request once the refresher ran).
    clock.advance(Duration::from_secs(3600));
    client.wake_waiters();
    assert_eq!(
        client.token().unwrap_err().kind(),
        ErrorKind::InvalidCredentials
    );
    assert_eq!(sb.count(Endpoint::Token(OAUTH)), 1);

    client.set_credentials(creds());
    assert!(
        eventually(|| client.grant().is_some()),
        "the refresher fetched"
    );
    assert_eq!(sb.count(Endpoint::Token(OAUTH)), 2);

    // Sleeping until the refresh point: moving the clock there wakes it to refresh.
    let before = client.grant().unwrap().access_token().to_owned();
    clock.advance(Duration::from_secs(3500));
    client.wake_waiters();
    assert!(eventually(|| sb.count(Endpoint::Token(OAUTH)) == 3));
    assert!(eventually(|| client
        .grant()
        .is_some_and(|g| g.access_token() != before)));
    drop(refresher);
}
