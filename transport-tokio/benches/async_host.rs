//! tessera-tokio's figures for BENCHMARKS.md, each measured in one run:
//!
//! - `stampede`: 10,000 tasks on a 2-worker runtime, started together by a barrier, ask a new
//!   client for its first token; the sandbox counts the upstream requests (must be 1). Five
//!   rounds, a new client each.
//! - `held refresh`: the cached token is due and its refresh is held at the provider by a
//!   gate for the whole measurement; 1,000 tasks started together each time 10 `token()`
//!   calls (10,000 samples): p50, p99, max. The gate must still be closed and exactly one
//!   refresh in flight afterwards.
//! - `first fetch`: a new client and one token over loopback, tessera-tokio against the
//!   `oauth2` crate (5.x) with its async reqwest client (no redirects, as its docs ask),
//!   interleaved round by round in the same run: medians and their ratio.
//! - `1,000 calls`: 1,000 calls that each need a token, one client each: tessera-tokio's
//!   cache against oauth2's exchange per call, with the upstream requests counted.
//!
//! `cargo bench -p tessera-tokio --bench async_host`

use std::sync::Arc;
use std::time::{Duration, Instant};

use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, TokenResponse, TokenUrl};
use tessera_core::{Credentials, ProviderKind};
use tessera_sandbox::scenarios::ManualClock;
use tessera_sandbox::{Endpoint, Fault, Gate, Sandbox, CLIENT_ID, CLIENT_SECRET};
use tessera_tokio::{Client, Options, OwnedProvider, Proxy};

const OAUTH: ProviderKind = ProviderKind::OAuth2;

fn options() -> Options {
    Options {
        proxy: Proxy::None,
        ..Options::default()
    }
}

fn tessera(sb: &Sandbox) -> Client<OwnedProvider> {
    Client::with_options(
        OwnedProvider::new(OAUTH, sb.base_url(OAUTH)),
        Credentials::new(CLIENT_ID, CLIENT_SECRET).expect("credentials"),
        options(),
    )
    .expect("a client")
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn stampede(sb: &Sandbox) {
    const TASKS: usize = 10_000;
    let mut times = Vec::new();
    for _ in 0..5 {
        let before = sb.count(Endpoint::Token(OAUTH));
        let client = tessera(sb);
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS + 1));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (c, b) = (client.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    b.wait().await;
                    c.token().await.expect("a token").id()
                })
            })
            .collect();
        barrier.wait().await;
        let start = Instant::now();
        let mut ids = Vec::with_capacity(TASKS);
        for t in tasks {
            ids.push(t.await.expect("the task"));
        }
        times.push(start.elapsed());
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "one token for all");
        let upstream = sb.count(Endpoint::Token(OAUTH)) - before;
        assert_eq!(upstream, 1, "10,000 tasks, one upstream request");
    }
    times.sort_unstable();
    println!(
        "tokio: 10,000 tasks, first token: 1 upstream request per round (5 rounds), all served in median {:.2} ms (min {:.2} ms)",
        times[2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}

async fn held_refresh(sb: &Sandbox) {
    const TASKS: usize = 1_000;
    const EACH: usize = 10;
    let clock = ManualClock::default();
    let client: Client<OwnedProvider> = Client::with_clock(
        OwnedProvider::new(OAUTH, sb.base_url(OAUTH)),
        Credentials::new(CLIENT_ID, CLIENT_SECRET).expect("credentials"),
        options(),
        Arc::new(clock.clone()),
    )
    .expect("a client");
    let cached = client.token().await.expect("a first token").id();
    let before = sb.count(Endpoint::Token(OAUTH));
    let gate = Gate::new();
    sb.inject(Endpoint::Token(OAUTH), Fault::Hold(gate.clone()), 1);
    clock.advance(Duration::from_secs(3500));
    assert_eq!(client.token().await.expect("cached").id(), cached);
    let arrived = tokio::task::spawn_blocking({
        let gate = gate.clone();
        move || gate.wait_arrived(1, Duration::from_secs(10))
    });
    assert!(
        arrived.await.expect("join"),
        "the refresh reached the sandbox"
    );
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (c, b) = (client.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                b.wait().await;
                let mut times = Vec::with_capacity(EACH);
                for _ in 0..EACH {
                    let start = Instant::now();
                    let token = c.token().await;
                    times.push(start.elapsed());
                    assert_eq!(token.expect("the cached token").id(), cached);
                }
                times
            })
        })
        .collect();
    let mut times = Vec::with_capacity(TASKS * EACH);
    for t in tasks {
        times.extend(t.await.expect("the task"));
    }
    assert!(client.fetching(), "the refresh was in flight throughout");
    assert!(!gate.is_released());
    assert_eq!(sb.count(Endpoint::Token(OAUTH)) - before, 1, "one refresh");
    gate.release();
    times.sort_unstable();
    println!(
        "tokio: token() during a held refresh, 1,000 tasks x 10 calls: p50 {:.2} µs p99 {:.2} µs max {:.2} µs",
        us(percentile(&times, 0.50)),
        us(percentile(&times, 0.99)),
        us(times[times.len() - 1])
    );
}

type OAuthClient = oauth2::basic::BasicClient<
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

async fn oauth2_first_token(token_url: &str) -> usize {
    let client: OAuthClient = BasicClient::new(ClientId::new(CLIENT_ID.into()))
        .set_client_secret(ClientSecret::new(CLIENT_SECRET.into()))
        .set_token_uri(TokenUrl::new(token_url.to_owned()).expect("a URL"));
    let http = oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest");
    let token = client
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .expect("oauth2 obtains a token");
    token.access_token().secret().len()
}

async fn first_fetch(sb: &Sandbox) {
    const ROUNDS: usize = 300;
    let url = sb.base_url(OAUTH);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS + 30 {
        let start = Instant::now();
        let n = tessera(sb).token().await.expect("a token").as_str().len();
        let t = start.elapsed();
        let start = Instant::now();
        let m = oauth2_first_token(&url).await;
        let o = start.elapsed();
        std::hint::black_box((n, m));
        // The first 30 rounds warm both up (page faults, the sandbox's threads).
        if round >= 30 {
            ours.push(t);
            theirs.push(o);
        }
    }
    ours.sort_unstable();
    theirs.sort_unstable();
    let (a, b) = (percentile(&ours, 0.5), percentile(&theirs, 0.5));
    println!(
        "tokio: first fetch over loopback (new client, one token), median of {ROUNDS}: tessera-tokio {:.1} µs, oauth2 5 + reqwest {:.1} µs, oauth2 / tessera {:.2}x",
        us(a),
        us(b),
        b.as_secs_f64() / a.as_secs_f64()
    );
}

/// 1,000 calls that each need a token, on one client each: tessera-tokio fetches once and
/// hands out its cached token; oauth2 has no cache, so each call is an exchange (on a
/// kept-alive connection).
async fn thousand_calls(sb: &Sandbox) {
    const CALLS: usize = 1_000;
    let url = sb.base_url(OAUTH);
    let before = sb.count(Endpoint::Token(OAUTH));
    let start = Instant::now();
    let client = tessera(sb);
    let mut n = 0;
    for _ in 0..CALLS {
        n += client.token().await.expect("a token").as_str().len();
    }
    let ours = start.elapsed();
    let ours_upstream = sb.count(Endpoint::Token(OAUTH)) - before;
    let before = sb.count(Endpoint::Token(OAUTH));
    let start = Instant::now();
    let oauth: OAuthClient = BasicClient::new(ClientId::new(CLIENT_ID.into()))
        .set_client_secret(ClientSecret::new(CLIENT_SECRET.into()))
        .set_token_uri(TokenUrl::new(url).expect("a URL"));
    let http = oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest");
    let mut m = 0;
    for _ in 0..CALLS {
        let token = oauth
            .exchange_client_credentials()
            .request_async(&http)
            .await
            .expect("a token");
        m += token.access_token().secret().len();
    }
    let theirs = start.elapsed();
    let theirs_upstream = sb.count(Endpoint::Token(OAUTH)) - before;
    std::hint::black_box((n, m));
    println!(
        "tokio: 1,000 calls that need a token: tessera-tokio {:.2} ms ({ours_upstream} upstream), oauth2 5 + reqwest {:.2} ms ({theirs_upstream} upstream), oauth2 / tessera {:.0}x",
        ours.as_secs_f64() * 1e3,
        theirs.as_secs_f64() * 1e3,
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours means "not this bench".
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"async_host".contains(a.as_str()))
    {
        return;
    }
    let sb = Sandbox::start().expect("sandbox");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        stampede(&sb).await;
        held_refresh(&sb).await;
        first_fetch(&sb).await;
        thousand_calls(&sb).await;
    });
}
