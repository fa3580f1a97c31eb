//! End to end over loopback against the sandbox's OAuth 2.0 endpoint: tessera-std against
//! the `oauth2` crate (5.x, its client-credentials flow over its ureq client), the usual
//! choice on a host. `cargo bench -p tessera-std --bench loopback`; figures in BENCHMARKS.md.
//!
//! - `first fetch`: a new client, one token: connection, request, parse (`127.0.0.1`).
//! - `first fetch by name`: the same at `localhost`, so the name is resolved.
//! - `10k calls`: 10,000 calls that each need a token. tessera-std hands out its cached token;
//!   oauth2 has no cache, so each call is an exchange (on a kept-alive connection).
//! - `64 threads`: 1,000 calls spread over 64 threads at once. The upstream requests they
//!   caused are counted by the sandbox and written to
//!   `target/criterion/loopback-upstream.json` for `scripts/bench-report`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, TokenResponse, TokenUrl};
use tessera_core::{Credentials, ProviderKind};
use tessera_sandbox::{base_url_at, Endpoint, Sandbox, CLIENT_ID, CLIENT_SECRET};
use tessera_std::{Client, Options, OwnedProvider};

const THREADS: usize = 64;
const CALLS: usize = 1_000;

fn tessera(sb: &Sandbox) -> Client<OwnedProvider> {
    tessera_at(sb.base_url(ProviderKind::OAuth2))
}

fn tessera_at(token_url: String) -> Client<OwnedProvider> {
    let options = Options {
        refresh_in_background: false,
        ..Options::default()
    };
    Client::with_options(
        OwnedProvider::new(ProviderKind::OAuth2, token_url),
        Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap(),
        options,
    )
}

type OAuthClient = oauth2::basic::BasicClient<
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn oauth(sb: &Sandbox) -> OAuthClient {
    oauth_at(sb.base_url(ProviderKind::OAuth2))
}

fn oauth_at(token_url: String) -> OAuthClient {
    BasicClient::new(ClientId::new(CLIENT_ID.into()))
        .set_client_secret(ClientSecret::new(CLIENT_SECRET.into()))
        .set_token_uri(TokenUrl::new(token_url).unwrap())
}

/// An agent as oauth2's documentation asks for: no redirects.
fn agent() -> oauth2::ureq::Agent {
    oauth2::ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(5))
        .build()
}

fn oauth_token(client: &OAuthClient, agent: &oauth2::ureq::Agent) -> String {
    let t = client
        .exchange_client_credentials()
        .request(agent)
        .expect("oauth2 obtains a token");
    t.access_token().secret().clone()
}

fn first_fetch(c: &mut Criterion) {
    let sb = Sandbox::start().unwrap();
    let mut g = c.benchmark_group("loopback/first fetch");
    g.bench_function("tessera-std", |b| {
        b.iter(|| tessera(&sb).token().unwrap().as_str().len())
    });
    g.bench_function("oauth2", |b| {
        b.iter(|| oauth_token(&oauth(&sb), &agent()).len())
    });
    g.finish();
    // The same through a host name: tessera-std resolves it on a kept resolver thread,
    // within its timeout; oauth2's ureq 2 on the calling thread, with no bound.
    let by_name = base_url_at(
        &format!("http://localhost:{}", sb.addr().port()),
        ProviderKind::OAuth2,
    );
    let mut g = c.benchmark_group("loopback/first fetch by name");
    g.bench_function("tessera-std", |b| {
        b.iter(|| tessera_at(by_name.clone()).token().unwrap().as_str().len())
    });
    g.bench_function("oauth2", |b| {
        b.iter(|| oauth_token(&oauth_at(by_name.clone()), &agent()).len())
    });
    g.finish();
}

fn ten_thousand_calls(c: &mut Criterion) {
    let sb = Sandbox::start().unwrap();
    let mut g = c.benchmark_group("loopback/10k calls");
    g.sample_size(10);
    let t = tessera(&sb);
    t.token().unwrap();
    g.bench_function("tessera-std", |b| {
        b.iter(|| {
            (0..10_000)
                .map(|_| t.token().unwrap().as_str().len())
                .sum::<usize>()
        })
    });
    let (o, a) = (oauth(&sb), agent());
    g.bench_function("oauth2", |b| {
        b.iter(|| {
            (0..10_000)
                .map(|_| black_box(oauth_token(&o, &a)).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

/// 1,000 calls over 64 threads; returns how many token requests reached the sandbox.
fn burst(sb: &Sandbox, call: Arc<dyn Fn() -> usize + Send + Sync>) -> u64 {
    let before = sb.count(Endpoint::Token(ProviderKind::OAuth2));
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (call, barrier) = (Arc::clone(&call), Arc::clone(&barrier));
            // 1,000 calls in all: the first 40 threads make 16, the rest 15.
            let n = CALLS / THREADS + usize::from(i < CALLS % THREADS);
            std::thread::spawn(move || {
                barrier.wait();
                (0..n).map(|_| call()).sum::<usize>()
            })
        })
        .collect();
    for h in handles {
        black_box(h.join().unwrap());
    }
    sb.count(Endpoint::Token(ProviderKind::OAuth2)) - before
}

fn sixty_four_threads(c: &mut Criterion) {
    let sb = Sandbox::start().unwrap();
    let mut g = c.benchmark_group("loopback/64 threads x 1000 calls");
    g.sample_size(10);
    let mut upstream = Vec::new();
    // A new tessera client per burst, so each burst starts with no token (the worst case).
    let t_calls = {
        let sb = &sb;
        move || {
            let t = tessera(sb);
            let call: Arc<dyn Fn() -> usize + Send + Sync> =
                Arc::new(move || t.token().unwrap().as_str().len());
            call
        }
    };
    upstream.push(("tessera-std", burst(&sb, t_calls())));
    g.bench_function("tessera-std", |b| b.iter(|| burst(&sb, t_calls())));
    let o_calls = || {
        let (o, a) = (oauth(&sb), agent());
        let call: Arc<dyn Fn() -> usize + Send + Sync> =
            Arc::new(move || oauth_token(&o, &a).len());
        call
    };
    upstream.push(("oauth2", burst(&sb, o_calls())));
    g.bench_function("oauth2", |b| b.iter(|| burst(&sb, o_calls())));
    g.finish();
    let json = format!(
        "{{{}}}\n",
        upstream
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    eprintln!("upstream token requests per {CALLS} calls over {THREADS} threads: {json}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("loopback-upstream.json"), json).unwrap();
}

criterion_group!(benches, first_fetch, ten_thousand_calls, sixty_four_threads);
criterion_main!(benches);
