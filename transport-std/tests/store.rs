//! Token stores against the sandbox over loopback: a file a restarted process reuses, and a
//! real `redis-server` (started on a free loopback port, stopped at the end) that a fleet of
//! independent clients shares. Each client here has its own session and single flight, as a
//! separate process would; `examples/tests/fleet.rs` runs the same with real processes.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use tessera_core::{Credentials, ErrorKind, ProviderKind};
use tessera_sandbox::scenarios::ManualClock;
use tessera_sandbox::{Endpoint, RedisServer, Sandbox, CLIENT_ID, CLIENT_SECRET};
use tessera_std::{Binding, Client, FileStore, Options, OwnedProvider, TokenStore, WallClock};

const KIND: ProviderKind = ProviderKind::OAuth2;

/// The fleet's wall clock: a fixed start plus a manual clock's reading, so a host's wall
/// clock moves with its monotonic one when a test moves time.
#[derive(Debug)]
struct Wall(ManualClock);

impl WallClock for Wall {
    fn unix_ms(&self) -> Option<u64> {
        Some(1_700_000_000_000 + tessera_core::Clock::now(&self.0).as_millis())
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

    fn store(&self) -> Arc<dyn TokenStore> {
        Arc::new(tessera_std::RedisStore::open(&self.url()).unwrap())
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
