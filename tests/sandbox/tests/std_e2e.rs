//! tessera-std against the sandbox over real loopback sockets: the shared scenarios (every
//! provider: fetch, reuse, refresh, 401-retry, validate, invalid credentials, lockout and
//! backoff, 64 threads, every fault, the hostile-server suite), with tessera-std's default
//! background refresh, plus what only the std client has: OAuth 2.0 body authentication, the
//! background refresher thread, proxies, and its logs.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use tessera_core::session::Config;
use tessera_core::{ClientAuth, Credentials, ErrorKind, ProviderKind, Shogun};
use tessera_sandbox::scenarios::{self, Called, Failed, Harness, Info, ManualClock, TestClient};
use tessera_sandbox::{base_url_at, CountingListener, Endpoint, Sandbox, CLIENT_ID, CLIENT_SECRET};
use tessera_std::{http, Client, Error, Options, OwnedProvider, Proxy};

/// The harness's options: 500 ms network timeouts, everything else tessera-std's defaults
/// (background refresh included).
fn options(allow_insecure_http: bool) -> Options {
    let defaults = Options::default();
    Options {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        session: Config {
            allow_insecure_http,
            ..defaults.session
        },
        ..defaults
    }
}

struct Std;

struct StdClient {
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

impl Harness for Std {
    type Client = StdClient;

    fn client_at(
        &self,
        base_url: &str,
        kind: ProviderKind,
        secret: &str,
        allow_insecure_http: bool,
    ) -> StdClient {
        scenarios::capture_logs();
        let provider = OwnedProvider::new(kind, base_url);
        let clock = ManualClock::default();
        let creds = Credentials::new(CLIENT_ID, secret).unwrap();
        let options = options(allow_insecure_http);
        let client = Client::with_clock(provider, creds, options, Arc::new(clock.clone()));
        StdClient { client, clock }
    }
}

impl StdClient {
    fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Called, Failed> {
        let mut request = http::Request::get(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = self
            .client
            .call(request.body(Vec::<u8>::new()).expect("a valid request"))
            .map_err(failed)?;
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), v)
            })
            .collect();
        Ok(Called {
            status: response.status().as_u16(),
            headers,
        })
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
        self.get(url, &[]).map(|c| c.status)
    }

    fn call_with(&self, url: &str, headers: &[(&str, &str)]) -> Result<Called, Failed> {
        self.get(url, headers)
    }

    fn token_and_calls_at_once(&self, n: usize, url: &str) -> Vec<Result<String, Failed>> {
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let b = Arc::clone(&barrier);
                let c = StdClient {
                    client: self.client.clone(),
                    clock: self.clock.clone(),
                };
                let url = url.to_owned();
                std::thread::spawn(move || {
                    b.wait();
                    if i % 2 == 0 {
                        c.token()
                    } else {
                        c.call(&url).map(|status| format!("status {status}"))
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
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
    let idp = OwnedProvider::new(ProviderKind::OAuth2, sb.base_url(ProviderKind::OAuth2))
        .with_auth(ClientAuth::Body)
        .with_scope("TRANSACTION_READ");
    let c: Client<_> = Client::with_options(
        idp,
        Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap(),
        options(false),
    );
    let t = c.token().unwrap();
    assert_eq!(t.scopes(), ["TRANSACTION_READ"]);
    let request = http::Request::get(sb.protected_url(ProviderKind::OAuth2))
        .body(Vec::<u8>::new())
        .unwrap();
    assert_eq!(c.call(request).unwrap().status(), 200);
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
    assert!(
        scenarios::eventually(Duration::from_secs(10), || c
            .client
            .grant()
            .is_some_and(|g| g.access_token() != first.as_str())),
        "the refresher did not refresh"
    );
    drop(refresher);
    // Callers never waited: the new token is simply there.
    assert_ne!(c.token().unwrap(), first);
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 2);
}

/// A fake proxy that refuses every tunnel.
const PROXY_502: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";

#[test]
fn plaintext_requests_never_go_through_a_proxy() {
    let sb = Sandbox::start().unwrap();
    let proxy = CountingListener::answering(PROXY_502).unwrap();
    let kind = ProviderKind::OAuth2;
    let with_proxy = |base: String| {
        let options = Options {
            proxy: Proxy::url(&format!("http://{}", proxy.addr())).unwrap(),
            ..options(false)
        };
        let creds = Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap();
        Client::<_>::with_options(OwnedProvider::new(kind, base), creds, options)
    };
    // Loopback plaintext goes direct, not through the proxy.
    let c = with_proxy(sb.base_url(kind));
    c.token().unwrap();
    assert_eq!(sb.count(Endpoint::Token(kind)), 1);
    // Plaintext off the machine is refused: neither the proxy nor the target is reached.
    let target = CountingListener::start().unwrap();
    let c = with_proxy(base_url_at(
        &format!("http://0.0.0.0:{}", target.port()),
        kind,
    ));
    assert_eq!(c.token().unwrap_err().kind(), ErrorKind::Insecure);
    assert_eq!(target.accepted(), 0);
    // HTTPS does use it: the proxy is asked for a tunnel, refuses, and that is a failure.
    let c = with_proxy(base_url_at("https://127.0.0.1:9", kind));
    let e = c.token().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert_eq!(
        proxy.accepted(),
        1,
        "only the https request reached the proxy"
    );
    assert!(proxy.wait_requests(1, Duration::from_secs(5)));
    assert!(
        proxy.requests()[0].starts_with("CONNECT 127.0.0.1:9 "),
        "{:?}",
        proxy.requests()
    );
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

#[test]
fn a_redirect_is_not_followed_and_huge_headers_are_refused() {
    use tessera_core::Stage;
    use tessera_sandbox::Fault;
    let sb = Sandbox::start().unwrap();
    let elsewhere = CountingListener::start().unwrap();
    for kind in ProviderKind::ALL {
        // A 307 keeps the method and the body: following it would send the secret there.
        let to = format!(
            "{}/stolen",
            base_url_at(&format!("http://{}", elsewhere.addr()), kind)
        );
        sb.inject(Endpoint::Token(kind), Fault::Redirect(to), 1);
        let c = Std.client(&sb, kind, CLIENT_SECRET);
        let e = c.token().expect_err("a redirect is no grant");
        assert_eq!(e.kind, ErrorKind::Rejected, "{kind}: {}", e.text);
        scenarios::assert_no_secret(&[e.text]);
        assert_eq!(sb.count(Endpoint::Token(kind)), 1, "{kind}");

        sb.inject(Endpoint::Token(kind), Fault::HugeHeaders(200_000), 1);
        let c = Std.client(&sb, kind, CLIENT_SECRET);
        let e = c.token().expect_err("headers over any sane limit");
        assert_eq!(
            (e.kind, e.cause),
            (ErrorKind::Transport, Some(Stage::Protocol)),
            "{kind}: {}",
            e.text
        );
    }
    assert_eq!(elsewhere.accepted(), 0, "a redirect was followed");
}

#[test]
fn hostile_answers_are_read_alike() {
    scenarios::hostile_answers_are_read_alike(&Std);
    scenarios::audit();
}

#[test]
fn calls_share_one_kept_connection() {
    scenarios::calls_share_one_kept_connection(&Std);
    scenarios::audit();
}

/// tessera-std over HTTPS (ureq's agent, rustls): a token fetch and ten calls on one
/// connection and one full handshake; after the server closes idle connections the next
/// call reconnects and rustls resumes the session (the server counts it resumed), on TLS 1.3
/// and TLS 1.2.
#[test]
fn https_calls_keep_one_connection_and_reconnects_resume() {
    use tessera_sandbox::pki::{matrix, Versions, HOST};
    let m = matrix();
    let case = &m.cases[0];
    for versions in [Versions::Tls13, Versions::Tls12] {
        let sb = Sandbox::start_tls_with(&case.chain, versions).unwrap();
        let origin = format!("https://{HOST}:{}", sb.addr().port());
        let opts = Options {
            trust: tessera_std::Trust::from_pem(m.roots_pem.as_bytes()).unwrap(),
            ..options(false)
        };
        let client = Client::<OwnedProvider>::with_options(
            OwnedProvider::new(
                ProviderKind::OAuth2,
                base_url_at(&origin, ProviderKind::OAuth2),
            ),
            Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap(),
            opts,
        );
        let url = format!("{origin}/oauth2/protected");
        let get = || {
            let request = http::Request::get(url.as_str()).body(Vec::new()).unwrap();
            client.call(request).unwrap().status()
        };
        for _ in 0..10 {
            assert_eq!(get(), 200, "{versions:?}");
        }
        let w = sb.wire();
        assert_eq!(
            (w.connections, w.full, w.resumed),
            (1, 1, 0),
            "{versions:?}: {w:?}"
        );
        assert_eq!(client.connections_opened(), 1);
        sb.close_idle_connections();
        assert_eq!(get(), 200, "{versions:?}");
        let w = sb.wire();
        assert_eq!(
            (w.connections, w.full, w.resumed),
            (2, 1, 1),
            "{versions:?}: {w:?}"
        );
        assert_eq!(client.connections_opened(), 2);
    }
}

/// tessera-std with a dead kept connection, the same outcomes as tessera-embassy's test of
/// that name: one the server closed while idle is replaced before anything is sent (ureq
/// probes it); one that dies with the request in it is an `io` failure for a POST without
/// a key (the API saw it once), and sent again once with one.
#[test]
fn a_dead_kept_connection_resends_only_what_may_be_repeated() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    let c = Std.client(&sb, kind, CLIENT_SECRET);
    let post = |url: &str, key: Option<&str>| {
        let mut b = http::Request::post(url).header("Content-Type", "application/json");
        if let Some(k) = key {
            b = b.header("Idempotency-Key", k);
        }
        c.client
            .call(b.body(b"{}".to_vec()).unwrap())
            .map(|r| r.status().as_u16())
    };
    let url = sb.protected_url(kind);
    assert_eq!(post(&url, None).unwrap(), 200);
    sb.close_idle_connections();
    assert_eq!(post(&url, None).unwrap(), 200);
    assert_eq!(sb.count(Endpoint::Protected(kind)), 2, "each POST once");
    assert_eq!(sb.wire().connections, 2);

    let answer =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            .to_vec();
    let api = tessera_sandbox::HostileServer::answer_once_then_drop(answer).unwrap();
    let url = format!("{}/pay", api.origin());
    assert_eq!(post(&url, None).unwrap(), 200);
    let e = post(&url, None).expect_err("a POST without a key is not sent again");
    assert_eq!(
        e.transport().map(|t| t.stage),
        Some(tessera_core::Stage::Io),
        "{e}"
    );
    assert_eq!(api.requests(), 2, "the API saw it once");
    assert_eq!(post(&url, None).unwrap(), 200);
    assert_eq!(
        post(&url, Some("order-0042")).unwrap(),
        200,
        "sent again once, on a new connection"
    );
    assert_eq!(
        api.requests(),
        5,
        "the keyed POST reached the API twice: the lost one and the resend"
    );
}
