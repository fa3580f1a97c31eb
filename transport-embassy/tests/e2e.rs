//! tessera-embassy on a desktop: reqwless over std-embedded-nal-async against the sandbox on
//! loopback, the embassy-time std driver for network timeouts, and the same end-to-end
//! scenarios tessera-std runs (tessera_sandbox::scenarios), driven by async-io's executor.
//! 64 concurrent callers are 64 futures joined on one executor, as tasks on a device are.

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use std_embedded_nal_async::Stack;
use tessera_core::session::Config;
use tessera_core::{AnyProvider, Credentials, Method, ProviderKind, Shogun, TokenInfo};
use tessera_embassy::{ApiRequest, Buffers, CallBuffers, Client, Error, Settings};
use tessera_sandbox::scenarios::{self, Failed, Harness, Info, ManualClock, TestClient};
use tessera_sandbox::{Sandbox, CLIENT_ID};

mod common;
use common::{leak_buf, TestRng};

type C = Client<'static, NoopRawMutex, AnyProvider<'static>, Stack, Stack, ManualClock>;

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

struct Embassy;

struct EmbassyClient {
    client: &'static C,
    clock: ManualClock,
}

impl Harness for Embassy {
    type Client = EmbassyClient;

    fn client(&self, sb: &Sandbox, kind: ProviderKind, secret: &str) -> EmbassyClient {
        scenarios::capture_logs();
        let stack: &'static Stack = Box::leak(Box::default());
        let provider = AnyProvider::new(kind, leak(sb.base_url(kind)));
        let buffers = Buffers {
            request: leak_buf(1024),
            headers: leak_buf(2048),
            body: leak_buf(16 * 1024),
        };
        let settings = Settings {
            session: Config::default(),
            timeout: embassy_time::Duration::from_millis(500),
        };
        let clock = ManualClock::default();
        let creds = Credentials::new(CLIENT_ID, secret).unwrap();
        let client = Client::with_clock(
            provider,
            creds,
            stack,
            stack,
            buffers,
            settings,
            &mut TestRng(7),
            clock.clone(),
        );
        EmbassyClient {
            client: Box::leak(Box::new(client)),
            clock,
        }
    }
}

impl EmbassyClient {
    async fn failed(&self, e: Error) -> Failed {
        let retry_in = match e {
            Error::Token {
                retry_at: Some(at), ..
            } => Some(at.saturating_duration_since(tessera_core::Clock::now(&self.clock))),
            _ => None,
        };
        let failure = self
            .client
            .failure(|f| f.map(|f| format!("{f} / {f:?}")))
            .await
            .unwrap_or_default();
        Failed {
            kind: e.kind(),
            retry_in,
            text: format!("{e} / {e:?} / {failure}"),
        }
    }

    async fn token_async(&self) -> Result<String, Failed> {
        let mut out = heapless::String::<2048>::new();
        match self.client.token(&mut out).await {
            Ok(_) => Ok(out.as_str().to_owned()),
            Err(e) => Err(self.failed(e).await),
        }
    }
}

struct Owned {
    token: heapless::String<2048>,
    authorization: Vec<u8>,
    headers: Vec<u8>,
    body: Vec<u8>,
}

impl Owned {
    fn new() -> Self {
        Owned {
            token: heapless::String::new(),
            authorization: vec![0; 2100],
            headers: vec![0; 2048],
            body: vec![0; 8192],
        }
    }

    fn buffers(&mut self) -> CallBuffers<'_, 2048> {
        CallBuffers {
            token: &mut self.token,
            authorization: &mut self.authorization,
            headers: &mut self.headers,
            body: &mut self.body,
        }
    }
}

impl TestClient for EmbassyClient {
    fn token(&self) -> Result<String, Failed> {
        async_io::block_on(self.token_async())
    }

    fn tokens_at_once(&self) -> Vec<Result<String, Failed>> {
        async_io::block_on(async {
            // Boxed: 64 futures of a debug build do not fit a test thread's stack.
            let callers: [_; 64] = core::array::from_fn(|_| Box::pin(self.token_async()));
            embassy_futures::join::join_array(callers)
                .await
                .into_iter()
                .collect()
        })
    }

    fn call(&self, url: &str) -> Result<u16, Failed> {
        async_io::block_on(async {
            let mut owned = Owned::new();
            let request = ApiRequest {
                method: Method::Get,
                url,
                body: None,
            };
            match self.client.call(request, &mut owned.buffers()).await {
                Ok(r) => Ok(r.status),
                Err(e) => Err(self.failed(e).await),
            }
        })
    }

    fn validate(&self, shogun_base: &str) -> Result<Info, Failed> {
        async_io::block_on(async {
            let mut owned = Owned::new();
            let mut info = TokenInfo::default();
            let shogun = Shogun::with_base_url(shogun_base);
            match self
                .client
                .validate(&shogun, &mut owned.buffers(), &mut info)
                .await
            {
                Ok(()) => Ok(Info {
                    client_id: info.client_id.to_string(),
                    scopes: info.scopes.iter().map(str::to_owned).collect(),
                    lifetime_s: info.expires_at - info.issued_at,
                }),
                Err(e) => Err(self.failed(e).await),
            }
        })
    }

    fn retry(&self) {
        async_io::block_on(self.client.retry());
    }

    fn set_secret(&self, secret: &str) {
        async_io::block_on(
            self.client
                .set_credentials(Credentials::new(CLIENT_ID, secret).unwrap()),
        );
    }

    fn clock(&self) -> &ManualClock {
        &self.clock
    }

    fn describe(&self) -> String {
        async_io::block_on(async {
            let grant = self.client.grant(|g| format!("{g:?}")).await;
            let failure = self.client.failure(|f| format!("{f:?}")).await;
            format!("{grant} {failure}")
        })
    }
}

tessera_sandbox::scenario_tests!(Embassy);

#[test]
fn future_sizes_for_task_arenas() {
    // What a task's future holds for a token() or call(): it lives in the task's static
    // arena on a device (printed with --nocapture; debug build, x86-64).
    let sb = Sandbox::start().unwrap();
    let c = Embassy.client(&sb, ProviderKind::OAuth2, tessera_sandbox::CLIENT_SECRET);
    let mut out = heapless::String::<2048>::new();
    let token = c.client.token(&mut out);
    let token_size = core::mem::size_of_val(&token);
    println!("token() future: {token_size} bytes");
    drop(token);
    let mut owned = Owned::new();
    let mut buffers = owned.buffers();
    let call = c.client.call(
        ApiRequest {
            method: Method::Get,
            url: "http://x/",
            body: None,
        },
        &mut buffers,
    );
    let call_size = core::mem::size_of_val(&call);
    println!("call() future: {call_size} bytes");
    // Budget: a few KiB, never the buffers themselves (they are the caller's).
    assert!(
        token_size <= 4096 && call_size <= 4096,
        "{token_size} / {call_size}"
    );
}
