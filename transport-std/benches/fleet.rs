//! A fleet against the sandbox: 8 processes × 16 threads calling `token()` for several
//! token lifetimes, each process with its own client, with and without a Redis store.
//! Prints upstream token requests per lifetime (goal with the store: 1) and `token()`
//! latency p50/p99 (served from the in-process cache either way; the store is consulted only
//! when a token is due).
//!
//! `cargo bench -p tessera-std --features redis --bench fleet`
//!
//! The bench re-runs itself as the worker processes (`TESSERA_FLEET_WORKER=1`).

use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tessera_core::{Credentials, ProviderKind};
use tessera_sandbox::{Endpoint, RedisServer, Sandbox, CLIENT_ID, CLIENT_SECRET};
use tessera_std::{Client, Options, OwnedProvider, RedisStore};

const PROCESSES: usize = 8;
const THREADS: usize = 16;
/// Sandbox tokens live this long, so a run covers several lifetimes.
const LIFETIME_S: u64 = 4;
const LIFETIMES: u64 = 3;
const KIND: ProviderKind = ProviderKind::OAuth2;

fn main() {
    if std::env::var_os("TESSERA_FLEET_WORKER").is_some() {
        return worker();
    }
    // `cargo bench` passes `--bench`; nothing else is taken.
    let sb = Sandbox::start().expect("sandbox");
    sb.set_lifetime(KIND, LIFETIME_S);
    let redis = RedisServer::start();
    println!(
        "{PROCESSES} processes × {THREADS} threads, tokens living {LIFETIME_S} s, for {} s",
        LIFETIME_S * LIFETIMES
    );
    // A token is refreshed 0.5 s before it expires: a new one every 3.5 s of the run.
    let periods = ((LIFETIME_S * LIFETIMES) as f64 / (LIFETIME_S as f64 - 0.5)).ceil();
    println!("| store | upstream requests per token period | token() p50 | token() p99 |");
    println!("|---|---|---|---|");
    for store in [None, Some(redis.url())] {
        sb.reset_counts();
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| {
                let mut cmd = Command::new(std::env::current_exe().expect("own path"));
                cmd.env("TESSERA_FLEET_WORKER", "1")
                    .env("TESSERA_FLEET_URL", sb.base_url(KIND))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit());
                if let Some(url) = &store {
                    cmd.env("TESSERA_FLEET_STORE", url);
                }
                cmd.spawn().expect("worker")
            })
            .collect();
        let mut latencies: Vec<u64> = Vec::new();
        for child in children {
            let out = child.wait_with_output().expect("worker output");
            latencies.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|n| n.parse::<u64>().ok()),
            );
        }
        latencies.sort_unstable();
        let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let requests = sb.count(Endpoint::Token(KIND));
        println!(
            "| {} | {:.1} ({requests} requests, {periods} token periods) | {:.2} µs | {:.2} µs |",
            if store.is_some() {
                "Redis"
            } else {
                "none (in-process only)"
            },
            requests as f64 / periods,
            pick(0.50) as f64 / 1000.0,
            pick(0.99) as f64 / 1000.0,
        );
    }
}

/// One process: a client, 16 threads calling `token()` until the run ends; prints every
/// call's latency in nanoseconds.
fn worker() {
    let url = std::env::var("TESSERA_FLEET_URL").expect("sandbox url");
    let store = std::env::var("TESSERA_FLEET_STORE")
        .ok()
        .map(|u| Arc::new(RedisStore::open(&u).expect("redis url")) as Arc<_>);
    let defaults = Options::default();
    let options = Options {
        store,
        // Refresh 0.5 s before expiry (the default margin is at least 30 s, longer than
        // these 4 s tokens), so each token serves most of its life, as in production.
        session: tessera_core::Config {
            refresh_margin: Some(Duration::from_millis(500)),
            in_flight_allowance: Duration::from_millis(200),
            ..defaults.session
        },
        // One machine, one clock: the processes' wall clocks agree to the millisecond
        // (the default 2 s allowance, nothing against a real token's hour, is half of a
        // 4 s token's life).
        wall_clock_uncertainty: Duration::from_millis(50),
        ..defaults
    };
    let creds = Credentials::new(CLIENT_ID, CLIENT_SECRET).expect("credentials");
    let client = Client::with_options(OwnedProvider::new(KIND, url), creds, options);
    let end = Instant::now() + Duration::from_secs(LIFETIME_S * LIFETIMES);
    let start = Arc::new(Barrier::new(THREADS));
    let latencies: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (client, start) = (&client, start.clone());
                s.spawn(move || {
                    start.wait();
                    let mut mine = Vec::new();
                    while Instant::now() < end {
                        let t = Instant::now();
                        let token = client.token().expect("token");
                        mine.push(t.elapsed().as_nanos() as u64);
                        std::hint::black_box(token);
                        // A payment terminal's backend does other work between calls.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let text: Vec<String> = latencies.iter().map(u64::to_string).collect();
    println!("{}", text.join(" "));
}
