//! A mixed fleet against the sandbox and a real `redis-server`: 4 blocking processes
//! (tessera-std, 16 threads each) and 4 async processes (tessera-tokio, 16 tasks each on a
//! 2-worker runtime), one credential, each process its own client, calling `token()` with
//! 1 ms of other work between calls for 12 s of 4-second tokens (tessera-std's fleet bench,
//! half its processes async). Prints upstream token requests per token period (goal: 1)
//! and `token()` p50/p99 per kind of process.
//!
//! `cargo bench -p tessera-tokio --features redis --bench mixed_fleet`
//!
//! The bench re-runs itself as the worker processes (`TESSERA_FLEET_WORKER=std|tokio`).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::{Credentials, ProviderKind};
use tessera_sandbox::{Endpoint, RedisServer, Sandbox, CLIENT_ID, CLIENT_SECRET};

const PER_KIND: usize = 4;
const CALLERS: usize = 16;
const LIFETIME_S: u64 = 4;
const LIFETIMES: u64 = 3;
const KIND: ProviderKind = ProviderKind::OAuth2;

fn main() {
    match std::env::var("TESSERA_FLEET_WORKER").as_deref() {
        Ok("std") => return std_worker(),
        Ok("tokio") => return tokio_worker(),
        _ => {}
    }
    // `cargo bench` passes `--bench`; a filter that is not ours means "not this bench".
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"mixed_fleet".contains(a.as_str()))
    {
        return;
    }
    let sb = Sandbox::start().expect("sandbox");
    sb.set_lifetime(KIND, LIFETIME_S);
    let redis = RedisServer::start();
    let periods = ((LIFETIME_S * LIFETIMES) as f64 / (LIFETIME_S as f64 - 0.5)).ceil();
    println!(
        "{PER_KIND} blocking + {PER_KIND} async processes × {CALLERS} callers, tokens living {LIFETIME_S} s, for {} s",
        LIFETIME_S * LIFETIMES
    );
    for store in [None, Some(redis.url())] {
        sb.reset_counts();
        let children: Vec<_> = (0..2 * PER_KIND)
            .map(|i| {
                let kind = if i % 2 == 0 { "std" } else { "tokio" };
                let mut cmd = Command::new(std::env::current_exe().expect("own path"));
                cmd.env("TESSERA_FLEET_WORKER", kind)
                    .env("TESSERA_FLEET_URL", sb.base_url(KIND))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit());
                if let Some(url) = &store {
                    cmd.env("TESSERA_FLEET_STORE", url);
                }
                (kind, cmd.spawn().expect("worker"))
            })
            .collect();
        let (mut std_lat, mut tokio_lat): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
        for (kind, child) in children {
            let out = child.wait_with_output().expect("worker output");
            let into = if kind == "std" {
                &mut std_lat
            } else {
                &mut tokio_lat
            };
            into.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|n| n.parse::<u64>().ok()),
            );
        }
        let requests = sb.count(Endpoint::Token(KIND));
        let pick = |v: &mut Vec<u64>, q: f64| {
            v.sort_unstable();
            v[((v.len() - 1) as f64 * q) as usize] as f64 / 1000.0
        };
        println!(
            "mixed fleet, store {}: {requests} upstream requests over {periods} token periods ({:.1} per period); token() p50/p99: std {:.2}/{:.2} µs, tokio {:.2}/{:.2} µs",
            if store.is_some() { "Redis" } else { "none" },
            requests as f64 / periods,
            pick(&mut std_lat, 0.5),
            pick(&mut std_lat, 0.99),
            pick(&mut tokio_lat, 0.5),
            pick(&mut tokio_lat, 0.99),
        );
    }
}

fn session() -> tessera_core::Config {
    // Refresh 0.5 s before expiry (the default margin is at least 30 s, longer than these
    // 4 s tokens), so each token serves most of its life, as in production.
    tessera_core::Config {
        refresh_margin: Some(Duration::from_millis(500)),
        in_flight_allowance: Duration::from_millis(200),
        ..tessera_core::Config::default()
    }
}

/// One machine, one clock: the processes' wall clocks agree to the millisecond.
const WALL_UNCERTAINTY: Duration = Duration::from_millis(50);

fn print(latencies: &[u64]) {
    let text: Vec<String> = latencies.iter().map(u64::to_string).collect();
    println!("{}", text.join(" "));
}

fn std_worker() {
    let url = std::env::var("TESSERA_FLEET_URL").expect("sandbox url");
    let store = std::env::var("TESSERA_FLEET_STORE").ok().map(|u| {
        Arc::new(tessera_std::RedisStore::open(&u).expect("redis url"))
            as Arc<dyn tessera_std::TokenStore>
    });
    let options = tessera_std::Options {
        store,
        session: session(),
        wall_clock_uncertainty: WALL_UNCERTAINTY,
        ..tessera_std::Options::default()
    };
    let creds = Credentials::new(CLIENT_ID, CLIENT_SECRET).expect("credentials");
    let client: tessera_std::Client<_> = tessera_std::Client::with_options(
        tessera_std::OwnedProvider::new(KIND, url),
        creds,
        options,
    );
    let end = Instant::now() + Duration::from_secs(LIFETIME_S * LIFETIMES);
    let latencies: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|_| {
                let client = &client;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    while Instant::now() < end {
                        let t = Instant::now();
                        let token = client.token().expect("token");
                        mine.push(t.elapsed().as_nanos() as u64);
                        std::hint::black_box(token);
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
    print(&latencies);
}

fn tokio_worker() {
    let url = std::env::var("TESSERA_FLEET_URL").expect("sandbox url");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let latencies = runtime.block_on(async {
        let store = std::env::var("TESSERA_FLEET_STORE").ok().map(|u| {
            Arc::new(tessera_tokio::RedisStore::open(&u).expect("redis url"))
                as Arc<dyn tessera_tokio::TokenStore>
        });
        let options = tessera_tokio::Options {
            store,
            session: session(),
            wall_clock_uncertainty: WALL_UNCERTAINTY,
            ..tessera_tokio::Options::default()
        };
        let creds = Credentials::new(CLIENT_ID, CLIENT_SECRET).expect("credentials");
        let client: tessera_tokio::Client<_> = tessera_tokio::Client::with_options(
            tessera_tokio::OwnedProvider::new(KIND, url),
            creds,
            options,
        )
        .expect("a client");
        let end = Instant::now() + Duration::from_secs(LIFETIME_S * LIFETIMES);
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    while Instant::now() < end {
                        let t = Instant::now();
                        let token = client.token().await.expect("token");
                        mine.push(t.elapsed().as_nanos() as u64);
                        std::hint::black_box(token);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all
    });
    print(&latencies);
}
