//! Point-of-sale latency: how long `token()` takes while a refresh is in flight.
//!
//! `cargo bench -p tessera-std --bench pos_latency`
//!
//! A client with the defaults (background refresh) holds a cached token; its refresh is
//! started and held at the sandbox's token endpoint by a gate, so it stays in flight for the
//! whole measurement. Then 10,000 `token()` calls are timed one by one on the calling
//! thread; each must return the cached token at once. Prints one line:
//! `std: token() during refresh p50 X µs p99 Y µs max Z µs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::{Credentials, ProviderKind};
use tessera_sandbox::scenarios::ManualClock;
use tessera_sandbox::{Endpoint, Fault, Gate, Sandbox, CLIENT_ID, CLIENT_SECRET};
use tessera_std::{Client, Options, OwnedProvider};

const CALLS: usize = 10_000;
const OAUTH: ProviderKind = ProviderKind::OAuth2;

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours means "not this bench".
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"pos_latency".contains(a.as_str()))
    {
        return;
    }
    let sb = Sandbox::start().expect("sandbox");
    let clock = ManualClock::default();
    let client: Client<OwnedProvider> = Client::with_clock(
        OwnedProvider::new(OAUTH, sb.base_url(OAUTH)),
        Credentials::new(CLIENT_ID, CLIENT_SECRET).expect("credentials"),
        Options::default(),
        Arc::new(clock.clone()),
    );
    let cached = client.token().expect("a first token").id();

    let gate = Gate::new();
    sb.inject(Endpoint::Token(OAUTH), Fault::Hold(gate.clone()), 1);
    // Past the refresh point of a one-hour token: the next call starts the refresh.
    clock.advance(Duration::from_secs(3500));
    assert_eq!(client.token().expect("cached").id(), cached);
    assert!(
        gate.wait_arrived(1, Duration::from_secs(10)),
        "the refresh did not reach the sandbox"
    );

    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let start = Instant::now();
        let token = client.token();
        times.push(start.elapsed());
        assert_eq!(token.expect("cached token").id(), cached);
    }
    assert!(client.fetching(), "the refresh was in flight throughout");
    assert_eq!(sb.count(Endpoint::Token(OAUTH)), 2);
    gate.release();

    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "std: token() during refresh p50 {:.2} µs p99 {:.2} µs max {:.2} µs",
        us(at(0.50)),
        us(at(0.99)),
        us(times[times.len() - 1])
    );
}
