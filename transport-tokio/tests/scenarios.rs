//! tessera-tokio against the sandbox over real loopback sockets: the shared scenarios (every
//! provider: fetch, reuse, refresh, 401-retry, validate, invalid credentials, lockout and
//! backoff, 64 tasks, every fault, the hostile-server suite, the held refresh, the log
//! audit), with tessera-tokio's default background refresh on a multi-threaded runtime.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tessera_core::session::Config;
use tessera_core::{Credentials, ProviderKind, Shogun};
use tessera_sandbox::scenarios::{self, Called, Failed, Harness, Info, ManualClock, TestClient};
use tessera_sandbox::CLIENT_ID;
use tessera_tokio::{Client, Error, Options, OwnedProvider};

/// The runtime every client of this test binary runs on: two workers, so a background
/// refresh runs while the test thread waits.
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

/// The harness's options: 500 ms network timeouts, everything else tessera-tokio's defaults
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

struct Tokio;

#[derive(Clone)]
struct TokioClient {
    client: Client<OwnedProvider>,
    clock: ManualClock,
}

fn failed(e: Error) -> Failed {
    let retry_in = match &e {
        Error::Token { retry_in, .. } => *retry_in,
        _ => None,
    };
    let mut text = format!("{e} / {e:?}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(" / {s}"));
        source = s.source();
    }
    Failed {
        kind: e.kind(),
        retry_in,
        cause: e.transport().map(|t| t.stage),
        text,
    }
}

impl Harness for Tokio {
    type Client = TokioClient;

    fn client_at(
        &self,
        base_url: &str,
        kind: ProviderKind,
        secret: &str,
        allow_insecure_http: bool,
    ) -> TokioClient {
        scenarios::capture_logs();
        let provider = OwnedProvider::new(kind, base_url);
        let clock = ManualClock::default();
        let creds = Credentials::new(CLIENT_ID, secret).unwrap();
        let options = options(allow_insecure_http);
        let client = Client::with_clock(provider, creds, options, Arc::new(clock.clone()))
            .expect("a client");
        TokioClient { client, clock }
    }
}

impl TokioClient {
    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Called, Failed> {
        let mut request = reqwest::Request::new(reqwest::Method::GET, url.parse().unwrap());
        for (k, v) in headers {
            request.headers_mut().append(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let response = self.client.call(request).await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), v)
            })
            .collect();
        // Read to the end, so the connection goes back to the pool.
        let _ = response.bytes().await;
        Ok(Called { status, headers })
    }

    async fn token_async(&self) -> Result<String, Failed> {
        self.client
            .token()
            .await
            .map(|t| t.as_str().to_owned())
            .map_err(failed)
    }
}

impl TestClient for TokioClient {
    fn token(&self) -> Result<String, Failed> {
        runtime().block_on(self.token_async())
    }

    fn tokens_at_once(&self) -> Vec<Result<String, Failed>> {
        runtime().block_on(async {
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let c = self.clone();
                    tokio::spawn(async move { c.token_async().await })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
    }

    fn call(&self, url: &str) -> Result<u16, Failed> {
        runtime().block_on(self.get(url, &[])).map(|c| c.status)
    }

    fn call_with(&self, url: &str, headers: &[(&str, &str)]) -> Result<Called, Failed> {
        runtime().block_on(self.get(url, headers))
    }

    fn token_and_calls_at_once(&self, n: usize, url: &str) -> Vec<Result<String, Failed>> {
        runtime().block_on(async {
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let (c, url) = (self.clone(), url.to_owned());
                    tokio::spawn(async move {
                        if i % 2 == 0 {
                            c.token_async().await
                        } else {
                            c.get(&url, &[])
                                .await
                                .map(|called| format!("status {}", called.status))
                        }
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
    }

    fn validate(&self, shogun_base: &str) -> Result<Info, Failed> {
        let info = runtime()
            .block_on(self.client.validate(&Shogun::with_base_url(shogun_base)))
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
        // The handed-out `Token`'s Debug, not its value.
        let token = runtime().block_on(self.client.token()).ok();
        format!("{:?} {token:?}", self.client)
    }
}

tessera_sandbox::scenario_tests!(Tokio);
