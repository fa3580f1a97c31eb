//! How long `token()` takes while a refresh is in flight: the point of sale's question.
//!
//! Against the sandbox on loopback, with the refresher task running on its own thread and
//! the refresh held at a gate (`Fault::Hold`) for the whole measurement, so every call
//! below happens during the refresh. Prints one line:
//! `embassy: token() during refresh p50 X µs p99 Y µs max Z µs`.
//!
//! `cargo bench -p tessera-embassy --bench pos_latency` (or `scripts/pos-latency`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use embassy_futures::select::select;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use std_embedded_nal_async::Stack;
use tessera_core::{AnyProvider, Credentials, ProviderKind};
use tessera_embassy::{Client, Plain, Resources, Settings};
use tessera_sandbox::scenarios::ManualClock;
use tessera_sandbox::{Endpoint, Fault, Gate, Sandbox, CLIENT_ID, CLIENT_SECRET};

type C = Client<
    'static,
    CriticalSectionRawMutex,
    AnyProvider<'static>,
    Plain<'static, Stack, Stack>,
    ManualClock,
>;

const CALLS: usize = 10_000;

struct Rng(u64);

impl rand_core::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
        self.0
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(self.next_u32() as u8);
    }
}

fn main() {
    let kind = ProviderKind::OAuth2;
    let sb = Sandbox::start().expect("sandbox");
    sb.set_lifetime(kind, 3600);
    let stack: &'static Stack = Box::leak(Box::default());
    let base: &'static str = Box::leak(sb.base_url(kind).into_boxed_str());
    let resources: &'static mut Resources = Box::leak(Box::default());
    let clock = ManualClock::default();
    let settings = Settings {
        timeout: embassy_time::Duration::from_secs(30),
        ..Settings::default()
    };
    let creds = Credentials::new(CLIENT_ID, CLIENT_SECRET).expect("credentials");
    let client: &'static C = Box::leak(Box::new(
        Client::builder(
            AnyProvider::new(kind, base),
            creds,
            Plain::new(stack, stack),
            resources,
            &mut Rng(1),
        )
        .settings(settings)
        .clock(clock.clone())
        .build(),
    ));
    let stop: Arc<Signal<CriticalSectionRawMutex, ()>> = Arc::default();
    let s = Arc::clone(&stop);
    let refresher = std::thread::spawn(move || {
        async_io::block_on(select(client.refresher(), s.wait()));
    });

    // A due refresh is handed over only once the refresher runs: wait for its start.
    let started = Instant::now();
    while !client.refresher_running() {
        assert!(started.elapsed() < Duration::from_secs(10), "no refresher");
        std::thread::sleep(Duration::from_millis(1));
    }

    let mut out = [0u8; 2048];
    let first = async_io::block_on(client.token(&mut out))
        .expect("first token")
        .as_str()
        .to_owned();
    // Past the refresh point, with the refresh held at the provider.
    let gate = Gate::new();
    sb.inject(Endpoint::Token(kind), Fault::Hold(gate.clone()), 1);
    clock.advance(Duration::from_secs(3400));
    async_io::block_on(client.token(&mut out)).expect("the due token");
    assert!(
        gate.wait_arrived(1, Duration::from_secs(10)),
        "the refresh never reached the provider"
    );

    let mut took = Vec::with_capacity(CALLS);
    async_io::block_on(async {
        for _ in 0..CALLS {
            let started = Instant::now();
            let token = client.token(&mut out).await.expect("token during refresh");
            took.push(started.elapsed());
            assert_eq!(
                token.as_str(),
                first,
                "the cached token, during the refresh"
            );
        }
    });
    // Every call above ran while the refresh was held.
    assert!(!gate.is_released());
    assert_eq!(sb.count(Endpoint::Token(kind)), 2, "one refresh in flight");
    gate.release();
    async_io::block_on(client.settled());
    stop.signal(());
    let _ = refresher.join();

    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "embassy: token() during refresh p50 {:.1} µs p99 {:.1} µs max {:.1} µs",
        us(at(0.50)),
        us(at(0.99)),
        us(took[took.len() - 1])
    );
}
