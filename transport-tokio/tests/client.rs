//! What only tessera-tokio has, or what its scenarios cannot show: a future dropped
//! mid-fetch, the refresher task, the `reqwest_middleware` layer, the TLS matrix through
//! reqwest and rustls, proxies, redirects and oversized heads.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::{Credentials, ErrorKind, ProviderKind, Stage};
use tessera_sandbox::pki::{matrix, Expect, HOST};
use tessera_sandbox::scenarios::{assert_no_secret, capture_logs, ManualClock};
use tessera_sandbox::{
    base_url_at, CountingListener, Endpoint, Fault, Gate, Sandbox, CLIENT_ID, CLIENT_SECRET,
};
use tessera_tokio::{Client, Error, Options, OwnedProvider, Proxy, TokenLayer, Trust};

fn creds() -> Credentials {
    Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap()
}

fn options() -> Options {
    Options {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        proxy: Proxy::None,
        ..Options::default()
    }
}

fn oauth(base: String, options: Options) -> Client<OwnedProvider> {
    capture_logs();
    Client::with_options(
        OwnedProvider::new(ProviderKind::OAuth2, base),
        creds(),
        options,
    )
    .unwrap()
}

/// Every text an error can show: Display, Debug, and its source chain.
fn texts(e: &Error) -> Vec<String> {
    let mut out = vec![e.to_string(), format!("{e:?}")];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push(s.to_string());
        src = s.source();
    }
    out
}

/// Waits (bounded, on the runtime's clock) until `cond` holds; whether it did.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..5000 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_dropped_mid_fetch_gives_its_ticket_back() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    let gate = Gate::new();
    sb.inject(Endpoint::Token(kind), Fault::Hold(gate.clone()), 1);
    let c = oauth(sb.base_url(kind), options());
    let fetching = {
        let c = c.clone();
        tokio::spawn(async move { c.token().await })
    };
    // The request is at the provider, held: the fetch is in flight.
    let arrived = tokio::task::spawn_blocking({
        let gate = gate.clone();
        move || gate.wait_arrived(1, Duration::from_secs(10))
    });
    assert!(
        arrived.await.unwrap(),
        "the fetch never reached the provider"
    );
    assert!(c.fetching());
    // A waiter is parked on it, then the fetching future is dropped (a timeout, a select!).
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.token().await })
    };
    fetching.abort();
    assert!(fetching.await.unwrap_err().is_cancelled());
    // The ticket is back: no failure, no backoff, and the waiter fetches at once.
    assert!(c.failure().is_none(), "{:?}", c.failure());
    let token = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter was woken")
        .unwrap()
        .unwrap();
    assert_eq!(token.as_str().split('.').count(), 3);
    assert_eq!(sb.count(Endpoint::Token(kind)), 2, "one new fetch, at once");
    gate.release();

    // The same through tokio::time::timeout on the caller's own future.
    let gate = Gate::new();
    c.reject(&token);
    sb.inject(Endpoint::Token(kind), Fault::Hold(gate.clone()), 1);
    let e = tokio::time::timeout(Duration::from_millis(200), c.token()).await;
    assert!(e.is_err(), "held, so the timeout fires");
    assert!(!c.fetching(), "the dropped future gave its ticket back");
    assert!(c.token().await.is_ok());
    gate.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresher_task_keeps_the_token_fresh() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    sb.set_lifetime(kind, 3600);
    let clock = ManualClock::default();
    capture_logs();
    let c: Client<_> = Client::with_clock(
        OwnedProvider::new(kind, sb.base_url(kind)),
        creds(),
        options(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let first = c.token().await.unwrap();
    let refresher = c.start_refresher();
    clock.advance(Duration::from_secs(3300));
    c.wake_waiters();
    assert!(
        eventually(|| c
            .grant()
            .is_some_and(|g| g.access_token() != first.as_str()))
        .await,
        "the refresher did not refresh"
    );
    drop(refresher);
    assert_ne!(c.token().await.unwrap().as_str(), first.as_str());
    assert_eq!(sb.count(Endpoint::Token(kind)), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middleware_adds_tokens_retries_a_401_once_and_refuses_plaintext() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::Setu;
    // The application's own reqwest (this crate builds reqwest without a crypto provider of
    // its own: tessera gives its clients ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tokens: Client<_> = Client::with_options(
        OwnedProvider::new(kind, sb.base_url(kind)),
        creds(),
        options(),
    )
    .unwrap();
    let api = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    )
    .with(TokenLayer::new(tokens.clone()))
    .build();
    let url = sb.protected_url(kind);
    let r = api
        .get(&url)
        .header("Idempotency-Key", "pay-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sb.revoke_all(kind);
    let r = api
        .get(&url)
        .header("Idempotency-Key", "pay-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "one refetch, one retry");
    assert_eq!(sb.count(Endpoint::Token(kind)), 2);
    assert_eq!(sb.count(Endpoint::Protected(kind)), 3);
    let seen = sb.last_headers(Endpoint::Protected(kind));
    assert!(seen.contains(&("idempotency-key".into(), "pay-2".into())));
    // A persistent 401 is the caller's, after one retry.
    sb.inject(Endpoint::Protected(kind), Fault::Status(401), 2);
    let r = api.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(sb.count(Endpoint::Protected(kind)), 5);
    // Plaintext off the machine: refused before the next layer, no connection.
    let l = CountingListener::start().unwrap();
    let e = api
        .get(format!("http://0.0.0.0:{}/pay", l.port()))
        .send()
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("plaintext") || e.to_string().contains("insecure"),
        "{e}"
    );
    assert_eq!(l.accepted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_certificate_shape_connects_or_is_refused_as_it_must() {
    let m = tokio::task::spawn_blocking(matrix).await.unwrap();
    let trust = Trust::from_pem(m.roots_pem.as_bytes()).unwrap();
    let mut wrong = Vec::new();
    for case in &m.cases {
        let sb = Sandbox::start_tls_with(&case.chain, case.versions).unwrap();
        let origin = format!("https://{HOST}:{}", sb.addr().port());
        let c = oauth(
            base_url_at(&origin, ProviderKind::OAuth2),
            Options {
                trust: trust.clone(),
                ..options()
            },
        );
        let outcome = c.token().await;
        let requests = sb.count(Endpoint::Token(ProviderKind::OAuth2));
        let line = match (outcome, case.expect == Expect::Connect) {
            (Ok(_), true) if requests == 1 => Ok(format!("connected ({requests} request)")),
            (Ok(_), _) => Err(format!("connected, expected {:?}", case.expect)),
            (Err(e), false) => match (e.transport().map(|t| t.stage), requests) {
                (Some(Stage::Tls), 0) => Ok(format!("refused: {e}")),
                _ => Err(format!("refused with {e} after {requests} requests")),
            },
            (Err(e), true) => Err(format!("failed: {e}")),
        };
        println!("{:<62} {}", case.name, line.as_ref().unwrap_or_else(|e| e));
        if let Err(e) = line {
            wrong.push(format!("{}: {e}", case.name));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A fake proxy that refuses every tunnel.
const PROXY_502: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_requests_never_go_through_a_proxy() {
    let sb = Sandbox::start().unwrap();
    let proxy = CountingListener::answering(PROXY_502).unwrap();
    let kind = ProviderKind::OAuth2;
    let with_proxy = |base: String| {
        let options = Options {
            proxy: Proxy::url(&format!("http://{}", proxy.addr())).unwrap(),
            ..options()
        };
        oauth(base, options)
    };
    // Loopback plaintext goes direct, not through the proxy.
    with_proxy(sb.base_url(kind)).token().await.unwrap();
    assert_eq!(sb.count(Endpoint::Token(kind)), 1);
    // Plaintext off the machine is refused: neither the proxy nor the target is reached.
    let target = CountingListener::start().unwrap();
    let c = with_proxy(base_url_at(
        &format!("http://0.0.0.0:{}", target.port()),
        kind,
    ));
    assert_eq!(c.token().await.unwrap_err().kind(), ErrorKind::Insecure);
    assert_eq!(target.accepted(), 0);
    // HTTPS does use it: the proxy is asked for a tunnel, refuses, and that is a failure.
    let c = with_proxy(base_url_at("https://127.0.0.1:9", kind));
    let e = c.token().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert_eq!(
        proxy.accepted(),
        1,
        "only the https request reached the proxy"
    );
    let requests = tokio::task::spawn_blocking(move || {
        proxy.wait_requests(1, Duration::from_secs(5));
        proxy.requests()
    })
    .await
    .unwrap();
    assert!(
        requests[0].starts_with("CONNECT 127.0.0.1:9 "),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_and_huge_headers_are_refused() {
    let sb = Sandbox::start().unwrap();
    let elsewhere = CountingListener::start().unwrap();
    for kind in ProviderKind::ALL {
        // A 307 keeps the method and the body: following it would send the secret there.
        let to = format!(
            "{}/stolen",
            base_url_at(&format!("http://{}", elsewhere.addr()), kind)
        );
        sb.inject(Endpoint::Token(kind), Fault::Redirect(to), 1);
        let c = Client::<_>::with_options(
            OwnedProvider::new(kind, sb.base_url(kind)),
            creds(),
            options(),
        )
        .unwrap();
        let e = c.token().await.expect_err("a redirect is no grant");
        assert_eq!(e.kind(), ErrorKind::Rejected, "{kind}: {e}");
        assert_no_secret(&texts(&e));
        sb.inject(Endpoint::Token(kind), Fault::HugeHeaders(200_000), 1);
        let c = Client::<_>::with_options(
            OwnedProvider::new(kind, sb.base_url(kind)),
            creds(),
            options(),
        )
        .unwrap();
        let e = c.token().await.expect_err("headers over any sane limit");
        assert_eq!(
            (e.kind(), e.transport().map(|t| t.stage)),
            (ErrorKind::Transport, Some(Stage::Protocol)),
            "{kind}: {e}"
        );
        assert_no_secret(&texts(&e));
    }
    assert_eq!(elsewhere.accepted(), 0, "a redirect was followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_says_dns_and_bad_roots_say_why() {
    let c = oauth("https://no-such-host.invalid/token".into(), options());
    let e = c.token().await.unwrap_err();
    assert_eq!(e.transport().map(|t| t.stage), Some(Stage::Dns), "{e}");
    assert!(matches!(
        Trust::from_pem(b"nothing"),
        Err(tessera_tokio::TrustError::NoCertificate)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_fetch_and_ten_calls_keep_one_connection() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::Shogun;
    let c: Client<_> = Client::with_options(
        OwnedProvider::new(kind, sb.base_url(kind)),
        creds(),
        options(),
    )
    .unwrap();
    c.token().await.unwrap();
    assert_eq!(c.connections_opened(), 1);
    for _ in 0..10 {
        let request = c
            .request(reqwest::Method::GET, &sb.protected_url(kind))
            .build()
            .unwrap();
        let response = c.call(request).await.unwrap();
        assert_eq!(response.status(), 200);
        // Read to the end: the connection goes back to the pool.
        response.bytes().await.unwrap();
    }
    assert_eq!(c.connections_opened(), 1, "one connection, kept");
}
