//! Token stores against the sandbox over loopback: a file a restarted process reuses, and a
//! real `redis-server` (started on a free loopback port, stopped at the end) that a fleet of
//! independent clients shares. Each client here has its own session and single flight, as a
//! separate process would; `examples/tests/fleet.rs` runs the same with real processes.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use tessera_core::{Credentials, ErrorKind, ProviderKind};
use tessera_sandbox::scenarios::{Failed, ManualClock};
use tessera_sandbox::store_scenarios::{StoreAt, StoreClient, StoreHarness, WALL_START_MS};
use tessera_sandbox::{Endpoint, RedisServer, Sandbox, CLIENT_ID, CLIENT_SECRET};
use tessera_std::{
    Binding, Client, Error, FileStore, Options, OwnedProvider, RedisStore, TokenStore, Trust,
    WallClock,
};

const KIND: ProviderKind = ProviderKind::OAuth2;

/// The Redis timeout of the tests' store handles (see `Redis::store`).
const TEST_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// The fleet's wall clock: a fixed start plus a manual clock's reading, so a host's wall
/// clock moves with its monotonic one when a test moves time.
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

/// A client on its own monotonic clock (like a process), its wall clock moving with it.
fn client(
    sb: &Sandbox,
    secret: &str,
    store: Arc<dyn TokenStore>,
) -> (Client<OwnedProvider>, ManualClock) {
    let clock = ManualClock::default();
    let creds = Credentials::new(CLIENT_ID, secret).unwrap();
    let provider = OwnedProvider::new(KIND, sb.base_url(KIND));
    let options = options(store, &clock);
    let c = Client::with_clock(provider, creds, options, Arc::new(clock.clone()));
    (c, clock)
}

fn requests(sb: &Sandbox) -> u64 {
    sb.count(Endpoint::Token(KIND))
}

#[test]
fn a_restarted_process_reuses_the_token_from_its_file() {
    let sb = Sandbox::start().unwrap();
    let dir = std::env::temp_dir().join(format!("tessera-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(&path));
    let first = {
        let (c, _) = client(&sb, CLIENT_SECRET, store.clone());
        c.token().unwrap().as_str().to_owned()
    };
    assert_eq!(requests(&sb), 1);
    // "Restarted": a new client, its monotonic clock at zero again.
    let (c, _) = client(&sb, CLIENT_SECRET, store.clone());
    assert_eq!(c.token().unwrap().as_str(), first);
    assert_eq!(requests(&sb), 1, "the file's token was used");
    // The file holds neither the token nor the secret.
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(&first[..20]) && !text.contains("s3cr3t"));
    // A rotated secret never reuses the old secret's token.
    sb.set_credentials(KIND, CLIENT_ID, "rotated-5e11");
    let (c, _) = client(&sb, "rotated-5e11", store);
    assert_ne!(c.token().unwrap().as_str(), first);
    assert_eq!(requests(&sb), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The test's own `redis-server`, and what a client or an operator sees of it.
struct Redis(RedisServer);

impl Redis {
    fn start() -> Redis {
        Redis(RedisServer::start())
    }

    fn stop(&mut self) {
        self.0.stop();
    }

    fn restart(&mut self) {
        self.0.restart();
    }

    fn url(&self) -> String {
        self.0.url()
    }

    /// A store handle, as a process would open. Its timeout is far above the default
    /// 250 ms: these tests count provider requests, and a loaded CI machine must not turn a
    /// slow Redis answer into a store failure (and a fetch alone). Tests of a failing store
    /// set their own short timeout.
    fn store(&self) -> Arc<dyn TokenStore> {
        Arc::new(
            tessera_std::RedisStore::open(&self.url())
                .unwrap()
                .with_timeout(TEST_STORE_TIMEOUT),
        )
    }

    /// Every key and value in the database.
    fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let mut c = redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        keys.into_iter()
            .map(|k| {
                let v: Vec<u8> = redis::cmd("GET").arg(&k).query(&mut c).unwrap_or_default();
                (k, v)
            })
            .collect()
    }
}

/// `n` clients (each its own session, like `n` processes) asking at the same moment.
fn fleet_tokens(
    sb: &Sandbox,
    redis: &Redis,
    n: usize,
    secret: &str,
) -> Vec<Result<String, ErrorKind>> {
    let barrier = Arc::new(Barrier::new(n));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (c, _) = client(sb, secret, redis.store());
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    c.token()
                        .map(|t| t.as_str().to_owned())
                        .map_err(|e| e.kind())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn a_fleet_makes_one_request_and_shares_one_token() {
    let sb = Sandbox::start().unwrap();
    let redis = Redis::start();
    let tokens = fleet_tokens(&sb, &redis, 12, CLIENT_SECRET);
    assert_eq!(requests(&sb), 1, "one upstream request for the fleet");
    let first = tokens[0].clone().unwrap();
    assert!(tokens.iter().all(|t| t.as_ref() == Ok(&first)), "one token");
    // Nothing readable in Redis: no secret, no client id, no token, in keys or values.
    let dump = redis.dump();
    assert!(!dump.is_empty());
    for (k, v) in &dump {
        let v = String::from_utf8_lossy(v);
        for needle in [
            CLIENT_SECRET,
            "s3cr3t",
            CLIENT_ID,
            &first[..20],
            &first[first.len() - 20..],
        ] {
            assert!(
                !k.contains(needle) && !v.contains(needle),
                "{needle} readable in {k}"
            );
        }
        assert!(k.starts_with("tessera:{") && k.contains("}:"), "{k}");
    }
}

#[test]
fn a_bad_secret_is_tried_once_for_the_fleet_and_a_replaced_one_at_once() {
    let sb = Sandbox::start().unwrap();
    let redis = Redis::start();
    let results = fleet_tokens(&sb, &redis, 8, "wrong-secret-1");
    assert_eq!(requests(&sb), 1, "one failed attempt for the whole fleet");
    assert!(
        results
            .iter()
            .all(|r| *r == Err(ErrorKind::InvalidCredentials)),
        "{results:?}"
    );
    // Later processes with the same bad secret do not try again.
    let again = fleet_tokens(&sb, &redis, 4, "wrong-secret-1");
    assert!(again
        .iter()
        .all(|r| *r == Err(ErrorKind::InvalidCredentials)));
    assert_eq!(requests(&sb), 1);
    // The secret is replaced: tried at once, and it works.
    let fixed = fleet_tokens(&sb, &redis, 4, CLIENT_SECRET);
    assert!(fixed.iter().all(Result::is_ok), "{fixed:?}");
    assert_eq!(requests(&sb), 2);
}

#[test]
fn a_dead_lease_holder_is_replaced_when_its_lease_lapses() {
    let sb = Sandbox::start().unwrap();
    let redis = Redis::start();
    let (c, _) = client(&sb, CLIENT_SECRET, redis.store());
    // A process took the lease and died before storing anything.
    let fingerprint = {
        let probe = tessera_core::Session::<_>::new(
            OwnedProvider::new(KIND, sb.base_url(KIND)),
            Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap(),
            Default::default(),
            1,
        );
        probe
            .binding(tessera_core::snapshot::Key::Credentials)
            .unwrap()
    };
    let store = redis.store();
    let dead = store
        .acquire(&Binding::new(fingerprint), Duration::from_secs(3))
        .unwrap();
    assert!(dead.is_some());
    let binding = Binding::new(fingerprint);
    let lease_key = format!("tessera:{{{binding}}}:lease");
    let mut redis_conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| c.token().map(|t| t.as_str().to_owned()));
        assert!(tessera_sandbox::scenarios::eventually(
            Duration::from_secs(5),
            || c.fetching()
        ));
        // While the dead holder's lease lives, nobody asks the provider. (The count is read
        // first: if the lease was alive after it, it was alive when it was read.)
        let mut observed = 0;
        loop {
            let n = requests(&sb);
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&lease_key)
                .query(&mut redis_conn)
                .unwrap();
            let fence: Option<String> = redis::cmd("GET")
                .arg(&lease_key)
                .query(&mut redis_conn)
                .unwrap();
            if ttl <= 0 || fence.as_deref() != dead.as_ref().map(|l| l.fence()) {
                break;
            }
            assert_eq!(n, 0, "fetched while another process held the lease");
            observed += 1;
            std::thread::yield_now();
        }
        assert!(
            observed > 0,
            "the lease lapsed before the client was checked"
        );
        let token = waiter.join().unwrap().unwrap();
        assert!(!token.is_empty());
    });
    assert_eq!(
        requests(&sb),
        1,
        "the successor fetched once the dead lease lapsed"
    );
}

#[test]
fn a_fleet_refresh_is_made_once_and_shared() {
    let sb = Sandbox::start().unwrap();
    let redis = Redis::start();
    let (a, clock_a) = client(&sb, CLIENT_SECRET, redis.store());
    let (b, clock_b) = client(&sb, CLIENT_SECRET, redis.store());
    let t0 = a.token().unwrap().as_str().to_owned();
    assert_eq!(b.token().unwrap().as_str(), t0);
    assert_eq!(requests(&sb), 1);
    // Both are due for refresh (sandbox tokens live 1 h; the margin is 5 min).
    clock_a.advance(Duration::from_secs(3400));
    clock_b.advance(Duration::from_secs(3400));
    let _ = a.token().unwrap(); // served at once; refreshed in the background
    assert!(tessera_sandbox::scenarios::eventually(
        Duration::from_secs(5),
        || requests(&sb) == 2 && !a.fetching()
    ));
    let t1 = a.token().unwrap().as_str().to_owned();
    assert_ne!(t1, t0);
    // B's refresh finds A's token in the store: no second request.
    let _ = b.token().unwrap();
    assert!(tessera_sandbox::scenarios::eventually(
        Duration::from_secs(5),
        || !b.fetching()
    ));
    assert_eq!(b.token().unwrap().as_str(), t1);
    assert_eq!(requests(&sb), 2);
}

#[test]
fn redis_stopped_mid_run_never_stops_tokens() {
    let sb = Sandbox::start().unwrap();
    let mut redis = Redis::start();
    let (c, clock) = client(&sb, CLIENT_SECRET, redis.store());
    let t0 = c.token().unwrap().as_str().to_owned();
    redis.stop();
    // The token dies; Redis is gone: the client fetches alone.
    clock.advance(Duration::from_secs(7200));
    let t1 = c.token().unwrap().as_str().to_owned();
    assert_ne!(t0, t1);
    assert_eq!(requests(&sb), 2);
    // Redis comes back (empty): the next fetch uses it again.
    redis.restart();
    clock.advance(Duration::from_secs(7200));
    // Another process, its clocks reading what c's read.
    let (d, d_clock) = client(&sb, CLIENT_SECRET, redis.store());
    d_clock.advance(Duration::from_secs(2 * 7200));
    let t2 = c.token().unwrap().as_str().to_owned();
    assert_eq!(
        d.token().unwrap().as_str(),
        t2,
        "shared through the restarted Redis"
    );
    assert_eq!(requests(&sb), 3);
}

#[test]
fn a_redis_that_hangs_up_costs_no_outage() {
    let sb = Sandbox::start().unwrap();
    // Accepts connections and hangs up without a word: a broken Redis.
    let hung = tessera_sandbox::CountingListener::start().unwrap();
    let store = tessera_std::RedisStore::open(&format!("redis://127.0.0.1:{}/0", hung.port()))
        .unwrap()
        .with_timeout(Duration::from_millis(100));
    let (c, _) = client(&sb, CLIENT_SECRET, Arc::new(store));
    let token = c.token().unwrap();
    assert!(!token.as_str().is_empty());
    assert_eq!(requests(&sb), 1, "fetched alone");
    assert!(hung.accepted() >= 1, "the store was tried");
}

// ---- the store scenarios every transport with stores runs --------------------------------

struct Std;

struct StdStoreClient {
    client: Client<OwnedProvider>,
    clock: ManualClock,
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
            Arc::new(
                RedisStore::open_with(url, &trust)
                    .unwrap()
                    .with_timeout(TEST_STORE_TIMEOUT),
            )
        }
    }
}

impl StoreHarness for Std {
    type Client = StdStoreClient;

    fn client_with_store(
        &self,
        sb: &Sandbox,
        kind: ProviderKind,
        secret: &str,
        store: &StoreAt,
    ) -> StdStoreClient {
        let clock = ManualClock::default();
        let creds = Credentials::new(CLIENT_ID, secret).unwrap();
        let provider = OwnedProvider::new(kind, sb.base_url(kind));
        let options = options(open_store(store), &clock);
        let client = Client::with_clock(provider, creds, options, Arc::new(clock.clone()));
        StdStoreClient { client, clock }
    }
}

impl StoreClient for StdStoreClient {
    fn token(&self) -> Result<String, Failed> {
        self.client
            .token()
            .map(|t| t.as_str().to_owned())
            .map_err(failed)
    }

    fn call(&self, url: &str) -> Result<u16, Failed> {
        let request = tessera_std::http::Request::get(url)
            .body(Vec::<u8>::new())
            .unwrap();
        self.client
            .call(request)
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
                "tessera-store-scenario-{}-{}",
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

tessera_sandbox::store_scenario_tests!(Std, store_for, [file, plain_redis, tls_redis]);

// ---- rediss:// ---------------------------------------------------------------------------

#[test]
fn rediss_checks_the_servers_certificate_against_the_clients_trust() {
    let sb = Sandbox::start().unwrap();
    let server = RedisServer::start_tls();
    let trusted = Trust::from_pem(server.ca_pem().as_bytes()).unwrap();
    // The right CA: the token is shared over TLS.
    let good = || -> Arc<dyn TokenStore> {
        Arc::new(
            RedisStore::open_with(&server.tls_url(), &trusted)
                .unwrap()
                .with_timeout(TEST_STORE_TIMEOUT),
        )
    };
    let (a, _) = client(&sb, CLIENT_SECRET, good());
    let (b, _) = client(&sb, CLIENT_SECRET, good());
    let t = a.token().unwrap();
    assert_eq!(b.token().unwrap().as_str(), t.as_str());
    assert_eq!(requests(&sb), 1, "shared through rediss://");
    // Another CA (here: the sandbox's own), or the webpki roots: the handshake is refused,
    // the store is skipped with one warning, and tokens still flow (fetched alone).
    let other = RedisServer::start_tls();
    let wrong = Trust::from_pem(other.ca_pem().as_bytes()).unwrap();
    for trust in [wrong, Trust::WebPki] {
        let store = RedisStore::open_with(&server.tls_url(), &trust).unwrap();
        let binding = Binding::new([1; 8]);
        let e = store.load(&binding).expect_err("an untrusted server");
        assert_eq!(e.op, "load");
        let (c, _) = client(&sb, CLIENT_SECRET, Arc::new(store));
        let before = requests(&sb);
        assert!(c.token().is_ok());
        assert_eq!(
            requests(&sb),
            before + 1,
            "fetched alone: the store was refused"
        );
    }
    // Plaintext to the TLS port is not TLS: refused, never a silent downgrade.
    let plain = server.tls_url().replacen("rediss://", "redis://", 1);
    let store = RedisStore::open_with(&plain, &trusted)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    assert!(store.load(&Binding::new([1; 8])).is_err());
}

// ---- compare-and-delete and the refusal record, as an operator sees Redis ----------------

fn binding_of(sb: &Sandbox, secret: &str) -> Binding {
    let probe = tessera_core::Session::<_>::new(
        OwnedProvider::new(KIND, sb.base_url(KIND)),
        Credentials::new(CLIENT_ID, secret).unwrap(),
        Default::default(),
        1,
    );
    Binding::new(
        probe
            .binding(tessera_core::snapshot::Key::Credentials)
            .unwrap(),
    )
}

#[test]
fn discard_removes_only_the_record_it_was_given() {
    let redis = Redis::start();
    let dir = std::env::temp_dir().join(format!("tessera-discard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _dir = TempDir(dir.clone());
    let stores: [Arc<dyn TokenStore>; 2] =
        [redis.store(), Arc::new(FileStore::new(dir.join("token")))];
    let b = Binding::new([7; 8]);
    for store in stores {
        assert!(!store.discard(&b, b"old").unwrap(), "nothing stored");
        store.save(&b, b"old", Duration::from_secs(60)).unwrap();
        store.save(&b, b"fresh", Duration::from_secs(60)).unwrap();
        assert!(
            !store.discard(&b, b"old").unwrap(),
            "a fresher record is kept"
        );
        assert_eq!(store.load(&b).unwrap().as_deref(), Some(&b"fresh"[..]));
        assert!(store.discard(&b, b"fresh").unwrap());
        assert_eq!(store.load(&b).unwrap(), None);
        // A stored token supersedes a stored refusal.
        store.refuse(&b, b"refusal", None).unwrap();
        assert!(store.refusal(&b).unwrap().is_some());
        store.save(&b, b"token", Duration::from_secs(60)).unwrap();
        assert_eq!(store.refusal(&b).unwrap(), None);
    }
}

#[test]
fn a_refusal_record_someone_else_wrote_is_ignored() {
    let sb = Sandbox::start().unwrap();
    let redis = Redis::start();
    let binding = binding_of(&sb, CLIENT_SECRET);
    let key = format!("tessera:{{{binding}}}:refused");
    let token_key = format!("tessera:{{{binding}}}:token");
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    // What the old format stored, and garbage: neither stops a fetch.
    for forged in [
        &b"401"[..],
        b"TSN\x01garbage-garbage-garbage-garbage-garbage-garbage-garbage",
    ] {
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(forged)
            .query(&mut conn)
            .unwrap();
        let () = redis::cmd("DEL").arg(&token_key).query(&mut conn).unwrap();
        let before = requests(&sb);
        let (c, _) = client(&sb, CLIENT_SECRET, redis.store());
        assert!(c.token().is_ok(), "a forged refusal stopped the fetch");
        assert_eq!(requests(&sb), before + 1);
    }
    // Another credential's genuine refusal, copied under this one's key: foreign, ignored.
    sb.set_credentials(KIND, CLIENT_ID, "only-this-one");
    let (refused, _) = client(&sb, "wrong-one", redis.store());
    assert_eq!(
        refused.token().unwrap_err().kind(),
        ErrorKind::InvalidCredentials
    );
    let other_key = format!("tessera:{{{}}}:refused", binding_of(&sb, "wrong-one"));
    let record: Vec<u8> = redis::cmd("GET").arg(&other_key).query(&mut conn).unwrap();
    assert!(!record.is_empty());
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(&record)
        .query(&mut conn)
        .unwrap();
    sb.set_credentials(KIND, CLIENT_ID, CLIENT_SECRET);
    let () = redis::cmd("DEL").arg(&token_key).query(&mut conn).unwrap();
    let before = requests(&sb);
    let (c, _) = client(&sb, CLIENT_SECRET, redis.store());
    assert!(c.token().is_ok());
    assert_eq!(requests(&sb), before + 1);
    // The refusal record's TTL is the refusal period (15 min by default).
    let ttl: i64 = redis::cmd("PTTL").arg(&other_key).query(&mut conn).unwrap();
    assert!(ttl > 0 && ttl <= 900_000, "{ttl}");
}

#[test]
fn a_lease_held_for_ever_costs_each_fetch_one_wait() {
    let sb = Sandbox::start().unwrap();
    let redis = Redis::start();
    let binding = binding_of(&sb, CLIENT_SECRET);
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    // A lease with no expiry: a stuck key no Tessera process wrote.
    let () = redis::cmd("SET")
        .arg(format!("tessera:{{{binding}}}:lease"))
        .arg("stuck")
        .query(&mut conn)
        .unwrap();
    let clock = ManualClock::default();
    let mut opts = options(redis.store(), &clock);
    // A short fetch timeout keeps the test's waits short: the lease wait is 3/4 of it.
    opts.session.fetch_timeout = Duration::from_millis(400);
    let c = Client::with_clock(
        OwnedProvider::new(KIND, sb.base_url(KIND)),
        Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap(),
        opts,
        Arc::new(clock.clone()),
    );
    #[cfg(feature = "log")]
    tessera_sandbox::scenarios::capture_logs();
    // Each fetch gives up on the lease and fetches alone; tokens never stop.
    let t1 = c.token().unwrap();
    clock.advance(Duration::from_secs(7200));
    let t2 = c.token().unwrap();
    assert_ne!(t1.as_str(), t2.as_str());
    assert_eq!(requests(&sb), 2);
    // One warning for the stuck lease, not one per fetch (with the `log` feature, as the
    // workspace's test build has it).
    #[cfg(feature = "log")]
    {
        let warned = tessera_sandbox::scenarios::logs()
            .iter()
            .filter(|l| l.contains("fetch lease was not given back"))
            .count();
        assert_eq!(warned, 1);
    }
}

// ---- the fleet's races, driven in order ------------------------------------------------

/// A store that runs `before_acquire` once, just before the first `acquire` is answered: the
/// interleaving where another process finishes (stores its token or its refusal, and gives
/// the lease back) between this process's looks and its taking the lease.
struct Interleaved {
    inner: Arc<dyn TokenStore>,
    before_acquire: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Interleaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interleaved")
    }
}

impl TokenStore for Interleaved {
    fn load(&self, b: &Binding) -> Result<Option<Vec<u8>>, tessera_std::StoreError> {
        self.inner.load(b)
    }
    fn save(&self, b: &Binding, s: &[u8], t: Duration) -> Result<(), tessera_std::StoreError> {
        self.inner.save(b, s, t)
    }
    fn discard(&self, b: &Binding, s: &[u8]) -> Result<bool, tessera_std::StoreError> {
        self.inner.discard(b, s)
    }
    fn acquire(
        &self,
        b: &Binding,
        t: Duration,
    ) -> Result<Option<tessera_std::Lease>, tessera_std::StoreError> {
        if let Some(f) = self.before_acquire.lock().unwrap().take() {
            f();
        }
        self.inner.acquire(b, t)
    }
    fn release(&self, b: &Binding, l: &tessera_std::Lease) -> Result<(), tessera_std::StoreError> {
        self.inner.release(b, l)
    }
    fn wait(&self, b: &Binding, t: Duration) -> Result<(), tessera_std::StoreError> {
        self.inner.wait(b, t)
    }
    fn refuse(
        &self,
        b: &Binding,
        r: &[u8],
        t: Option<Duration>,
    ) -> Result<(), tessera_std::StoreError> {
        self.inner.refuse(b, r, t)
    }
    fn refusal(&self, b: &Binding) -> Result<Option<Vec<u8>>, tessera_std::StoreError> {
        self.inner.refusal(b)
    }
}

/// The race behind a flaky `a_bad_secret_is_tried_once_for_the_fleet…`: a process looked
/// for a refusal just before the lease holder stored one and gave the lease back, then took
/// the lease: it must look at the refusal again instead of asking the provider a second
/// time (Shogun counts every failed login towards its lockout).
#[test]
fn a_refusal_stored_just_before_the_lease_is_taken_is_honoured() {
    let sb = Sandbox::start().unwrap();
    let redis = Redis::start();
    sb.set_credentials(KIND, CLIENT_ID, "not-this-secret");
    let binding = binding_of(&sb, CLIENT_SECRET);
    // The holder's attempt: refused, and the refusal stored.
    let (holder, _) = client(&sb, CLIENT_SECRET, redis.store());
    assert_eq!(
        holder.token().unwrap_err().kind(),
        ErrorKind::InvalidCredentials
    );
    assert_eq!(requests(&sb), 1);
    let store = redis.store();
    let record = store
        .refusal(&binding)
        .unwrap()
        .expect("the refusal record");
    // Replay the interleaving: the record appears after the latecomer's first look.
    let _ = redis::cmd("DEL")
        .arg(format!("tessera:{{{binding}}}:refused"))
        .query::<()>(
            &mut redis::Client::open(redis.url())
                .unwrap()
                .get_connection()
                .unwrap(),
        );
    let writer = redis.store();
    let b = binding.clone();
    let late = Interleaved {
        inner: redis.store(),
        before_acquire: std::sync::Mutex::new(Some(Box::new(move || {
            writer.refuse(&b, &record, None).unwrap();
        }))),
    };
    let (latecomer, _) = client(&sb, CLIENT_SECRET, Arc::new(late));
    assert_eq!(
        latecomer.token().unwrap_err().kind(),
        ErrorKind::InvalidCredentials
    );
    assert_eq!(
        requests(&sb),
        1,
        "the fleet's one failed attempt became two"
    );
}
