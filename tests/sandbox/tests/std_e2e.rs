//! tessera-std against the sandbox over real loopback sockets: the shared scenarios (every
//! provider: fetch, reuse, refresh, 401-retry, validate, invalid credentials, lockout and
//! backoff, 64 threads, every fault), plus what only the std client has: OAuth 2.0 body
//! authentication, the background refresher, and its logs.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use tessera_core::session::Config;
use tessera_core::{AnyProvider, ClientAuth, Credentials, OAuth2, ProviderKind, Shogun};
use tessera_sandbox::scenarios::{self, Failed, Harness, Info, ManualClock, TestClient};
use tessera_sandbox::{Endpoint, Sandbox, CLIENT_ID, CLIENT_SECRET};
use tessera_std::{Client, Error, Options};

fn options() -> Options {
    Options {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        refresh_in_background: false,
        session: Config {
            allow_insecure_http: false,
            ..Config::default()
        },
        ..Options::default()
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

struct Std;

struct StdClient {
    client: Client<AnyProvider<'static>>,
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
        text: format!("{e} / {e:?}"),
    }
}

impl Harness for Std {
    type Client = StdClient;

    fn client(&self, sb: &Sandbox, kind: ProviderKind, secret: &str) -> StdClient {
        scenarios::capture_logs();
        let provider = AnyProvider::new(kind, leak(sb.base_url(kind)));
        let clock = ManualClock::default();
        let creds = Credentials::new(CLIENT_ID, secret).unwrap();
        let client = Client::with_clock(provider, creds, options(), Arc::new(clock.clone()));
        StdClient { client, clock }
    }
}

impl TestClient for StdClient {
    fn token(&self) -> Result<String, Failed> {
        self.client
            .token()
            .map(|t| t.as_str().to_owned())
            .map_err(failed)
    }

    fn tokens_at_once(&self) -> Vec<Result<String, Failed>> {
        let barrier = Arc::new(Barrier::new(64));
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let (c, b) = (self.client.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    b.wait();
                    c.token().map(|t| t.as_str().to_owned()).map_err(failed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    fn call(&self, url: &str) -> Result<u16, Failed> {
        self.client
            .call("GET", url, None)
            .map(|r| r.status)
            .map_err(failed)
    }

    fn validate(&self, shogun_base: &str) -> Result<Info, Failed> {
        let info = self
            .client
            .validate(&Shogun::with_base_url(shogun_base))
            .map_err(failed)?;
        Ok(Info {
            client_id: info.client_id.to_string(),
            scopes: info.scopes.iter().map(str::to_owned).collect(),
            lifetime_s: info.expires_at - info.issued_at,
        })
    }

    fn retry(&self) {
        self.client.retry();
    }

    fn set_secret(&self, secret: &str) {
        self.client
            .set_credentials(Credentials::new(CLIENT_ID, secret).unwrap());
    }

    fn clock(&self) -> &ManualClock {
        &self.clock
    }

    fn describe(&self) -> String {
        format!("{:?} {:?}", self.client, self.client.token().ok())
    }
}

tessera_sandbox::scenario_tests!(Std);

#[test]
fn oauth2_body_authentication_and_scope_work_too() {
    let sb = Sandbox::start().unwrap();
    scenarios::capture_logs();
    let idp = OAuth2::new(leak(sb.base_url(ProviderKind::OAuth2)))
        .with_auth(ClientAuth::Body)
        .with_scope("TRANSACTION_READ");
    let c = Client::with_options(
        idp,
        Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap(),
        options(),
    );
    let t = c.token().unwrap();
    assert_eq!(t.scopes(), ["TRANSACTION_READ"]);
    assert_eq!(
        c.call("GET", &sb.protected_url(ProviderKind::OAuth2), None)
            .unwrap()
            .status,
        200
    );
}

#[test]
fn the_background_refresher_keeps_the_token_fresh() {
    let sb = Sandbox::start().unwrap();
    sb.set_lifetime(ProviderKind::OAuth2, 3600);
    let c = Std.client(&sb, ProviderKind::OAuth2, CLIENT_SECRET);
    let first = c.token().unwrap();
    let refresher = c.client.start_refresher();
    c.clock.advance(Duration::from_secs(3300));
    // The manual clock jumped: wake the refresher so it reads it again.
    c.client.wake_waiters();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sb.count(Endpoint::Token(ProviderKind::OAuth2)) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresher did not refresh"
        );
        std::thread::yield_now();
    }
    drop(refresher);
    // Callers never waited: the new token is simply there.
    assert_ne!(c.token().unwrap(), first);
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 2);
}

#[test]
fn callers_of_a_cached_token_share_one_copy() {
    let sb = Sandbox::start().unwrap();
    let c = Std.client(&sb, ProviderKind::OAuth2, CLIENT_SECRET);
    let (a, b) = (c.client.token().unwrap(), c.client.token().unwrap());
    assert!(std::ptr::eq(a.as_str(), b.as_str()), "one copy, shared");
    assert!(c.client.reject(&a));
    let fresh = c.client.token().unwrap();
    assert_ne!(
        fresh.as_str(),
        a.as_str(),
        "a new token after the rejection"
    );
    // Copies already handed out stay valid for their holders.
    assert_eq!(a.as_str(), b.as_str());
}
