//! The lifecycle's hot path: `poll` when a cached token is fresh, which every API call pays.
//! `cargo bench -p tessera-core --bench session`; the goal is under 50 ns on a host.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tessera_core::{Config, Credentials, Instant, OAuth2, Poll, Session};

fn poll(c: &mut Criterion) {
    let body = include_bytes!("../../tests/vectors/fixtures/oauth2-token-200-rs256.json");
    let creds = Credentials::new("client", "secret").unwrap();
    let mut s: Session<OAuth2> =
        Session::new(OAuth2::new("https://idp"), creds, Config::default(), 1);
    let t0 = Instant::from_millis(1_000);
    let Poll::Fetch(ticket) = s.poll(t0) else {
        panic!("a new session fetches")
    };
    s.on_response(ticket, t0, 200, None, body);
    let now = Instant::from_millis(60_000);
    assert!(matches!(s.poll(now), Poll::Ready(_)));

    let mut g = c.benchmark_group("session");
    g.bench_function("poll cached token", |b| {
        b.iter(|| match s.poll(black_box(now)) {
            Poll::Ready(bearer) => bearer.token().len(),
            _ => unreachable!(),
        })
    });
    g.bench_function("poll + bearer header", |b| {
        let mut header = [0u8; 2100];
        b.iter(|| match s.poll(black_box(now)) {
            Poll::Ready(bearer) => tessera_core::bearer_header(bearer.token(), &mut header)
                .map(str::len)
                .unwrap_or(0),
            _ => unreachable!(),
        })
    });
    g.finish();
}

criterion_group!(benches, poll);
criterion_main!(benches);
