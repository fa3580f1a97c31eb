//! Token stores on the async client against the sandbox over loopback and a real
//! `redis-server`: the store scenarios every transport with stores runs (a file, plain
//! Redis, Redis over TLS), and a fleet of blocking (tessera-std) and async (tessera-tokio)
//! clients with one credential sharing one token: one upstream request.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tessera_core::{Credentials, ProviderKind};
use tessera_sandbox::scenarios::{capture_logs, logs, Failed, ManualClock};
use tessera_sandbox::store_scenarios::{StoreAt, StoreClient, StoreHarness, WALL_START_MS};
use tessera_sandbox::{Endpoint, RedisServer, Sandbox, CLIENT_ID, CLIENT_SECRET};
use tessera_tokio::{
    Client, Error, FileStore, Options, OwnedProvider, RedisStore, TokenStore, Trust, WallClock,
};

const KIND: ProviderKind = ProviderKind::OAuth2;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// The fleet's wall clock: a fixed start plus a manual clock's reading (as tessera-std's
/// store tests), so a host's wall clock moves with its monotonic one.
#[derive(Debug)]
struct Wall(ManualClock);

impl WallClock for Wall {
    fn unix_ms(&self) -> Option<u64> {
        Some(WALL_START_MS + tessera_core::Clock::now(&self.0).as_millis())
    }
}

fn options(store: Arc<dyn TokenStore>, clock: &ManualClock) -> Options {
    Options {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        store: Some(store),
        wall_clock: Arc::new(Wall(clock.clone())),
        ..Options::default()
    }
}

fn failed(e: Error) -> Failed {
    let retry_in = match &e {
        Error::Token { retry_in, .. } => *retry_in,
        _ => None,
    };
    Failed {
        kind: e.kind(),
        retry_in,
        cause: e.transport().map(|t| t.stage),
        text: format!("{e} / {e:?}"),
    }
}

fn open_store(at: &StoreAt) -> Arc<dyn TokenStore> {
    match at {
        StoreAt::File(path) => Arc::new(FileStore::new(path)),
        StoreAt::Redis { url, ca_pem } => {
            let trust = match ca_pem {
                Some(pem) => Trust::from_pem(pem.as_bytes()).unwrap(),
                None => Trust::WebPki,
            };
            Arc::new(RedisStore::open_with(url, &trust).unwrap())
        }
    }
}

struct Tokio;

struct TokioStoreClient {
    client: Client<OwnedProvider>,
    clock: ManualClock,
}

impl StoreHarness for Tokio {
    type Client = TokioStoreClient;

    fn client_with_store(
        &self,
        sb: &Sandbox,
        kind: ProviderKind,
        secret: &str,
        store: &StoreAt,
    ) -> TokioStoreClient {
        capture_logs();
        let clock = ManualClock::default();
        let creds = Credentials::new(CLIENT_ID, secret).unwrap();
        let provider = OwnedProvider::new(kind, sb.base_url(kind));
        let options = options(open_store(store), &clock);
        let client = Client::with_clock(provider, creds, options, Arc::new(clock.clone())).unwrap();
        TokioStoreClient { client, clock }
    }
}

impl StoreClient for TokioStoreClient {
    fn token(&self) -> Result<String, Failed> {
        runtime()
            .block_on(self.client.token())
            .map(|t| t.as_str().to_owned())
            .map_err(failed)
    }

    fn call(&self, url: &str) -> Result<u16, Failed> {
        let request = reqwest::Request::new(reqwest::Method::GET, url.parse().unwrap());
        runtime()
            .block_on(self.client.call(request))
            .map(|r| r.status().as_u16())
            .map_err(failed)
    }

    fn clock(&self) -> &ManualClock {
        &self.clock
    }
}

/// Removes a directory at the end of a test.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a store scenario of `kind` runs on: the store, a closure that empties it, and what
/// keeps it alive.
fn store_for(kind: &str) -> (StoreAt, Box<dyn Fn()>, Box<dyn std::any::Any>) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    match kind {
        "file" => {
            let dir = std::env::temp_dir().join(format!(
                "tessera-tokio-store-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("token");
            let wipe_dir = dir.clone();
            let wipe = Box::new(move || {
                for entry in std::fs::read_dir(&wipe_dir).unwrap() {
                    std::fs::remove_file(entry.unwrap().path()).unwrap();
                }
            });
            (StoreAt::File(path), wipe, Box::new(TempDir(dir)))
        }
        "plain_redis" | "tls_redis" => {
            let tls = kind == "tls_redis";
            let server = Arc::new(if tls {
                RedisServer::start_tls()
            } else {
                RedisServer::start()
            });
            let at = StoreAt::Redis {
                url: if tls { server.tls_url() } else { server.url() },
                ca_pem: tls.then(|| server.ca_pem().to_owned()),
            };
            let flushed = Arc::clone(&server);
            (at, Box::new(move || flushed.flush()), Box::new(server))
        }
        other => panic!("no store kind {other}"),
    }
}

tessera_sandbox::store_scenario_tests!(Tokio, store_for, [file, plain_redis, tls_redis]);

/// A blocking client (tessera-std) of the same credential on the same Redis.
fn std_client(
    sb: &Sandbox,
    url: &str,
) -> (tessera_std::Client<tessera_std::OwnedProvider>, ManualClock) {
    let clock = ManualClock::default();
    let options = tessera_std::Options {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        store: Some(Arc::new(tessera_std::RedisStore::open(url).unwrap())),
        wall_clock: Arc::new(Wall(clock.clone())),
        ..tessera_std::Options::default()
    };
    let client = tessera_std::Client::with_clock(
        tessera_std::OwnedProvider::new(KIND, sb.base_url(KIND)),
        Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap(),
        options,
        Arc::new(clock.clone()),
    );
    (client, clock)
}

fn tokio_client(sb: &Sandbox, url: &str) -> TokioStoreClient {
    Tokio.client_with_store(
        sb,
        KIND,
        CLIENT_SECRET,
        &StoreAt::Redis {
            url: url.to_owned(),
            ca_pem: None,
        },
    )
}

#[test]
fn blocking_and_async_processes_share_one_token() {
    let sb = Sandbox::start().unwrap();
    let redis = RedisServer::start();
    // The async process fetches; the blocking one finds its token in Redis, and the other
    // way round after a rejection: one fleet, one request per token.
    let a = tokio_client(&sb, &redis.url());
    let (b, _) = std_client(&sb, &redis.url());
    let first = a.token().unwrap();
    assert_eq!(
        b.token().unwrap().as_str(),
        first,
        "the std client restored it"
    );
    assert_eq!(sb.count(Endpoint::Token(KIND)), 1);
    assert_eq!(b.token_requests(), 0);
    // Four of each, started together, on a fresh credential record: one request.
    redis.flush();
    let before = sb.count(Endpoint::Token(KIND));
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let mut handles = Vec::new();
    for i in 0..8 {
        let (barrier, url) = (Arc::clone(&barrier), redis.url());
        let sb = &sb;
        let token = if i % 2 == 0 {
            let c = tokio_client(sb, &url);
            Box::new(move || c.token().unwrap()) as Box<dyn FnOnce() -> String + Send>
        } else {
            let (c, _) = std_client(sb, &url);
            Box::new(move || c.token().unwrap().as_str().to_owned())
        };
        handles.push(std::thread::spawn(move || {
            barrier.wait();
            token()
        }));
    }
    let tokens: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        tokens.windows(2).all(|w| w[0] == w[1]),
        "one token for the fleet"
    );
    assert_eq!(
        sb.count(Endpoint::Token(KIND)) - before,
        1,
        "4 blocking + 4 async processes, one upstream request"
    );
}

/// The tests whose store fails take turns, so the warnings one of them counts in the
/// process-wide log capture are its own.
static FAILING_STORE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn store_warnings() -> usize {
    logs()
        .iter()
        .filter(|l| l.starts_with("WARN") && l.contains("carrying on without the store"))
        .count()
}

#[test]
fn redis_down_costs_a_bounded_wait_and_one_warning() {
    let _turn = FAILING_STORE.lock().unwrap_or_else(|p| p.into_inner());
    capture_logs();
    let warned_before = store_warnings();
    let sb = Sandbox::start().unwrap();
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let c = tokio_client(&sb, &url);
    // Bounded by the store's own timeout (no wall-clock threshold here): the token comes
    // from the provider, and the store's failure is one warning below.
    c.token().unwrap();
    // More fetches with the store still down: tokens keep coming, no more warnings.
    for _ in 0..3 {
        c.clock.advance(Duration::from_secs(7200));
        c.token().unwrap();
    }
    assert_eq!(sb.count(Endpoint::Token(KIND)), 4);
    assert_eq!(
        store_warnings() - warned_before,
        1,
        "one warning while the store stays down"
    );
}

#[test]
fn a_redis_that_hangs_up_or_never_answers_costs_no_outage() {
    let _turn = FAILING_STORE.lock().unwrap_or_else(|p| p.into_inner());
    let sb = Sandbox::start().unwrap();
    // Accepts connections and hangs up without a word: a broken Redis. Then one that takes
    // the connection and never says anything: a Redis stuck in a long command.
    let hung = tessera_sandbox::CountingListener::start().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for url in [
        format!("redis://127.0.0.1:{}/0", hung.port()),
        format!("redis://{}/0", silent.local_addr().unwrap()),
    ] {
        let before = sb.count(Endpoint::Token(KIND));
        let store = RedisStore::open(&url)
            .unwrap()
            .with_timeout(Duration::from_millis(100));
        let clock = ManualClock::default();
        let client = Client::with_clock(
            OwnedProvider::new(KIND, sb.base_url(KIND)),
            Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap(),
            options(Arc::new(store), &clock),
            Arc::new(clock.clone()),
        )
        .unwrap();
        // The store's 100 ms timeout bounds the wait; the token comes from the provider.
        let token = runtime().block_on(client.token()).unwrap();
        assert!(!token.as_str().is_empty());
        assert_eq!(
            sb.count(Endpoint::Token(KIND)) - before,
            1,
            "{url}: fetched alone"
        );
    }
    assert!(hung.accepted() >= 1, "the store was tried");
}
