//! tessera-embassy on a desktop: reqwless over std-embedded-nal-async against the sandbox on
//! loopback, the embassy-time std driver for network timeouts, and the same end-to-end
//! scenarios tessera-std runs (tessera_sandbox::scenarios), each client with its default
//! refresh: `refresher()` running as a task (on its own thread's executor, as a second
//! executor or core would run it). Concurrent callers are futures joined on one executor,
//! as tasks on a device are.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use std_embedded_nal_async::Stack;
use tessera_core::{AnyProvider, Credentials, ProviderKind, Shogun, TokenInfo};
use tessera_embassy::{ApiRequest, CallBuffers, Client, Error, Plain, Resources, Settings};
use tessera_sandbox::scenarios::{self, Called, Failed, Harness, Info, ManualClock, TestClient};
use tessera_sandbox::{Endpoint, Fault, Gate, Sandbox, CLIENT_ID, CLIENT_SECRET};

mod common;
use common::TestRng;

type C = Client<
    'static,
    CriticalSectionRawMutex,
    AnyProvider<'static>,
    Plain<'static, Stack, Stack>,
    ManualClock,
>;
type Stop = Arc<Signal<CriticalSectionRawMutex, ()>>;

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

struct Embassy;

/// A client, its clock, and its refresher task (stopped when the client is dropped).
struct EmbassyClient {
    client: &'static C,
    clock: ManualClock,
    stop: Stop,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EmbassyClient {
    fn drop(&mut self) {
        self.stop.signal(());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
    }
}

fn make(base_url: &str, kind: ProviderKind, secret: &str, insecure: bool) -> EmbassyClient {
    make_with(base_url, kind, secret, insecure, true)
}

/// A client, with or without its refresher task.
fn make_with(
    base_url: &str,
    kind: ProviderKind,
    secret: &str,
    insecure: bool,
    with_refresher: bool,
) -> EmbassyClient {
    scenarios::capture_logs();
    let stack: &'static Stack = Box::leak(Box::default());
    let provider = AnyProvider::new(kind, leak(base_url.to_owned()));
    let resources: &'static mut Resources = Box::leak(Box::new(Resources::new()));
    let mut settings = Settings {
        timeout: embassy_time::Duration::from_millis(500),
        ..Settings::default()
    };
    settings.session.allow_insecure_http = insecure;
    let clock = ManualClock::default();
    let creds = Credentials::new(CLIENT_ID, secret).unwrap();
    let client: &'static C = Box::leak(Box::new(
        Client::builder(
            provider,
            creds,
            Plain::new(stack, stack),
            resources,
            &mut TestRng(7),
        )
        .settings(settings)
        .clock(clock.clone())
        .build(),
    ));
    let stop: Stop = Arc::default();
    let s = Arc::clone(&stop);
    let refresher = with_refresher.then(|| {
        std::thread::spawn(move || {
            async_io::block_on(select(client.refresher(), s.wait()));
        })
    });
    if with_refresher {
        // A refresh is handed over only once the refresher runs (otherwise the caller runs
        // it): wait for its thread to start it, so no scenario races the start-up.
        assert!(
            scenarios::eventually(Duration::from_secs(10), || client.refresher_running()),
            "the refresher task never started"
        );
    }
    EmbassyClient {
        client,
        clock,
        stop,
        refresher,
    }
}

impl Harness for Embassy {
    type Client = EmbassyClient;

    fn client_at(
        &self,
        base_url: &str,
        kind: ProviderKind,
        secret: &str,
        allow_insecure_http: bool,
    ) -> EmbassyClient {
        make(base_url, kind, secret, allow_insecure_http)
    }
}

type Boxed<'a> = Pin<Box<dyn Future<Output = Result<String, Failed>> + 'a>>;

impl EmbassyClient {
    fn failed(&self, e: Error) -> Failed {
        let retry_in = match e {
            Error::Token {
                retry_at: Some(at), ..
            } => Some(at.saturating_duration_since(tessera_core::Clock::now(&self.clock))),
            _ => None,
        };
        let failure = self
            .client
            .failure(|f| f.map(|f| format!("{f} / {f:?}")))
            .unwrap_or_default();
        Failed {
            kind: e.kind(),
            retry_in,
            text: format!("{e} / {e:?} / {failure}"),
            cause: e.stage(),
        }
    }

    async fn token_async(&self) -> Result<String, Failed> {
        let mut out = [0u8; 4096];
        match self.client.token(&mut out).await {
            Ok(t) => Ok(t.as_str().to_owned()),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn call_async(&self, url: &str, headers: &[(&str, &str)]) -> Result<Called, Failed> {
        let mut buffers: Box<CallBuffers> = Box::default();
        let request = ApiRequest::get(url).headers(headers);
        match self.client.call(request, &mut buffers).await {
            Ok(r) => Ok(Called {
                status: r.status(),
                headers: r
                    .headers()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            }),
            Err(e) => Err(self.failed(e)),
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
        async_io::block_on(self.call_async(url, &[])).map(|c| c.status)
    }

    fn call_with(&self, url: &str, headers: &[(&str, &str)]) -> Result<Called, Failed> {
        async_io::block_on(self.call_async(url, headers))
    }

    fn token_and_calls_at_once(&self, n: usize, url: &str) -> Vec<Result<String, Failed>> {
        async_io::block_on(async {
            let mut tasks: Vec<Boxed<'_>> = Vec::new();
            for _ in 0..n / 2 {
                tasks.push(Box::pin(self.token_async()));
                tasks.push(Box::pin(async {
                    self.call_async(url, &[])
                        .await
                        .map(|c| format!("status {}", c.status))
                }));
            }
            join_all(tasks).await
        })
    }

    fn validate(&self, shogun_base: &str) -> Result<Info, Failed> {
        async_io::block_on(async {
            let mut buffers: Box<CallBuffers> = Box::default();
            let mut info = TokenInfo::default();
            let shogun = Shogun::with_base_url(shogun_base);
            match self.client.validate(&shogun, &mut buffers, &mut info).await {
                Ok(()) => Ok(Info {
                    client_id: info.client_id.to_string(),
                    scopes: info.scopes.iter().map(str::to_owned).collect(),
                    lifetime_s: info.expires_at - info.issued_at,
                }),
                Err(e) => Err(self.failed(e)),
            }
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
        let grant = self.client.grant(|g| format!("{g:?}"));
        let failure = self.client.failure(|f| format!("{f:?}"));
        format!("{grant} {failure}")
    }
}

/// Polls every future until all are done, on one executor.
async fn join_all<O>(mut tasks: Vec<Pin<Box<dyn Future<Output = O> + '_>>>) -> Vec<O> {
    let mut done: Vec<Option<O>> = tasks.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (task, out) in tasks.iter_mut().zip(done.iter_mut()) {
            if out.is_none() {
                if let std::task::Poll::Ready(o) = task.as_mut().poll(cx) {
                    *out = Some(o);
                }
            }
        }
        match done.iter().all(Option::is_some) {
            true => std::task::Poll::Ready(()),
            false => std::task::Poll::Pending,
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

tessera_sandbox::scenario_tests!(Embassy);

/// Resolves when `gate` has seen `n` requests (a thread waits on the gate's condition
/// variable and signals).
fn arrived(gate: &Gate, n: usize) -> Stop {
    let signal: Stop = Arc::default();
    let (g, s) = (gate.clone(), Arc::clone(&signal));
    std::thread::spawn(move || {
        if g.wait_arrived(n, Duration::from_secs(10)) {
            s.signal(());
        }
    });
    signal
}

#[test]
fn a_token_future_dropped_mid_fetch_releases_its_ticket_and_wipes_its_buffers() {
    let sb = Sandbox::start().unwrap();
    for (kind, with_refresher) in ProviderKind::ALL
        .into_iter()
        .flat_map(|k| [(k, false), (k, true)])
    {
        let before = sb.count(Endpoint::Token(kind));
        let c = make_with(
            &sb.base_url(kind),
            kind,
            CLIENT_SECRET,
            false,
            with_refresher,
        );
        let gate = Gate::new();
        sb.inject(Endpoint::Token(kind), Fault::Hold(gate.clone()), 1);
        let at_gate = arrived(&gate, 1);
        let dropped = async_io::block_on(async {
            let mut out = [0u8; 4096];
            // `select` drops the token() future once the request is held at the gate: the
            // fetch is cancelled mid-exchange, as an embassy `select` with a timeout would.
            match select(c.client.token(&mut out), at_gate.wait()).await {
                Either::First(r) => panic!("{kind}: answered while held: {r:?}"),
                Either::Second(()) => true,
            }
        });
        assert!(dropped);
        // The buffers are home and zero: the request (secret) and everything else. (With
        // a refresher, it has no token to keep fresh, so it takes nothing.)
        assert_eq!(c.client.fetch_buffers_wiped(), Some(true), "{kind}");
        // The ticket was released: the next caller fetches at once (no 30 s wait for
        // the abandoned fetch, and no backoff), on the same manual time.
        let next = async_io::block_on(embassy_time::with_timeout(
            embassy_time::Duration::from_secs(5),
            c.token_async(),
        ));
        let token = next
            .unwrap_or_else(|_| panic!("{kind}: still waiting for the dropped fetch"))
            .unwrap_or_else(|e| panic!("{kind}: {}", e.text));
        assert_eq!(token.split('.').count(), 3, "{kind}");
        assert_eq!(
            sb.count(Endpoint::Token(kind)) - before,
            2,
            "{kind}: two requests"
        );
        async_io::block_on(c.client.settled());
        assert_eq!(c.client.fetch_buffers_wiped(), Some(true), "{kind}");
        gate.release();
    }
    scenarios::audit();
}

#[test]
fn a_call_future_dropped_mid_exchange_wipes_its_buffers() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    let c = Embassy.client(&sb, kind, CLIENT_SECRET);
    c.token().unwrap();
    let gate = Gate::new();
    sb.inject(Endpoint::Protected(kind), Fault::Hold(gate.clone()), 1);
    let at_gate = arrived(&gate, 1);
    let url = sb.protected_url(kind);
    let mut buffers: Box<CallBuffers> = Box::default();
    async_io::block_on(async {
        match select(
            c.client.call(ApiRequest::get(&url), &mut buffers),
            at_gate.wait(),
        )
        .await
        {
            Either::First(r) => panic!("answered while held: {r:?}"),
            Either::Second(()) => {}
        }
    });
    assert!(
        buffers.is_wiped(),
        "the bearer token stayed in the call's buffers"
    );
    gate.release();
    // The call finished: the token is still in the response buffers only as what the
    // server sent; the head (with `Bearer …`) is wiped.
    let r = async_io::block_on(c.client.call(ApiRequest::get(&url), &mut buffers)).unwrap();
    assert_eq!(r.status(), 200);
    scenarios::audit();
}

#[test]
fn future_sizes_for_task_arenas() {
    // What a task's future holds for a token() or call(): it lives in the task's static
    // arena on a device (printed with --nocapture; debug build, x86-64).
    let sb = Sandbox::start().unwrap();
    let c = Embassy.client(&sb, ProviderKind::OAuth2, CLIENT_SECRET);
    let mut out = [0u8; 2048];
    let token = c.client.token(&mut out);
    let token_size = core::mem::size_of_val(&token);
    println!("token() future: {token_size} bytes");
    drop(token);
    let mut buffers: Box<CallBuffers> = Box::default();
    let call = c.client.call(ApiRequest::get("http://x/"), &mut buffers);
    let call_size = core::mem::size_of_val(&call);
    println!("call() future: {call_size} bytes");
    // Budget: a few KiB, never the buffers themselves (they are the caller's).
    assert!(
        token_size <= 4096 && call_size <= 4096,
        "{token_size} / {call_size}"
    );
}

#[test]
fn without_a_refresher_only_the_caller_running_the_refresh_waits_for_it() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::Shogun;
    sb.set_lifetime(kind, 3600);
    let c = make_with(&sb.base_url(kind), kind, CLIENT_SECRET, false, false);
    let first = c.token().unwrap();
    let gate = Gate::new();
    sb.inject(Endpoint::Token(kind), Fault::Hold(gate.clone()), 1);
    c.clock.advance(Duration::from_secs(3400));
    let at_gate = arrived(&gate, 1);
    let url = sb.protected_url(kind);
    let (refreshing, others) = async_io::block_on(embassy_futures::join::join(
        // This caller finds the token due and, with no refresher, runs the refresh itself:
        // it gets the current token once the held refresh is answered.
        c.token_async(),
        async {
            at_gate.wait().await;
            // While it is held, 16 other tasks get the cached token and make calls.
            let mut tasks: Vec<Boxed<'_>> = Vec::new();
            for _ in 0..8 {
                tasks.push(Box::pin(c.token_async()));
                tasks.push(Box::pin(async {
                    c.call_async(&url, &[])
                        .await
                        .map(|r| format!("status {}", r.status))
                }));
            }
            let done = join_all(tasks).await;
            let held = !gate.is_released();
            gate.release();
            (done, held)
        },
    ));
    let (done, held) = others;
    assert!(held, "the 16 completed while the refresh was held");
    for r in done {
        let r = r.unwrap_or_else(|e| panic!("{}", e.text));
        assert!(r == first || r == "status 200", "{r}");
    }
    assert_eq!(refreshing.unwrap(), first);
    let second = c.token().unwrap();
    assert_ne!(second, first, "the refresh landed");
    assert_eq!(sb.count(Endpoint::Token(kind)), 2);
    assert_eq!(c.client.fetch_buffers_wiped(), Some(true));
}

#[test]
fn a_refused_refresh_parks_the_refresher_until_new_credentials_wake_it() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    sb.set_lifetime(kind, 3600);
    let c = Embassy.client(&sb, kind, CLIENT_SECRET);
    let first = c.token().unwrap();
    // The secret is rotated on the provider's side before the refresh: it is refused.
    c.set_secret("an old secret");
    c.clock().advance(Duration::from_secs(3400));
    assert_eq!(c.token().unwrap(), first, "the due token, at once");
    assert!(
        scenarios::eventually(Duration::from_secs(10), || {
            c.client.failure(|f| {
                f.is_some_and(|f| f.kind() == tessera_core::ErrorKind::InvalidCredentials)
            })
        }),
        "the refresh was refused"
    );
    // Parked: however long callers keep using the cached token, nothing is sent.
    for _ in 0..20 {
        c.clock().advance(Duration::from_secs(5));
        assert_eq!(c.token().unwrap(), first);
    }
    async_io::block_on(c.client.settled());
    assert_eq!(sb.count(Endpoint::Token(kind)), 2, "one refused refresh");
    // New credentials wake the refresher: it refreshes with no caller asking.
    c.set_secret(CLIENT_SECRET);
    assert!(
        scenarios::eventually(Duration::from_secs(10), || sb.count(Endpoint::Token(kind))
            == 3),
        "the refresher did not wake"
    );
    async_io::block_on(c.client.settled());
    assert_ne!(c.token().unwrap(), first, "refreshed");
    assert_eq!(sb.count(Endpoint::Token(kind)), 3);
    scenarios::audit();
}

#[test]
fn hostile_answers_are_read_alike() {
    scenarios::hostile_answers_are_read_alike(&Embassy);
    scenarios::audit();
}

/// A `Retry-After` sent as an HTTP date is read once the application set the wall clock;
/// before that only delay-seconds are (the date is ignored: the session's own backoff).
#[test]
fn retry_after_as_a_date_needs_the_wall_clock() {
    use tessera_sandbox::HostileServer;
    let answer =
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            .to_vec();
    let server = HostileServer::raw(answer).unwrap();
    let kind = ProviderKind::OAuth2;
    let base = tessera_sandbox::base_url_at(&server.origin(), kind);
    let retry_in = |wall: Option<u64>| {
        let c = make_with(&base, kind, CLIENT_SECRET, false, false);
        if let Some(secs) = wall {
            c.client.set_wall_time(secs);
        }
        let mut out = [0u8; 64];
        let e = async_io::block_on(c.client.token(&mut out)).expect_err("a 429");
        match e {
            Error::Token {
                retry_at: Some(at), ..
            } => at.saturating_duration_since(tessera_core::Clock::now(&c.clock)),
            other => panic!("{other:?}"),
        }
    };
    // 600 s before the date: the session waits 600 s (its cap), not its short backoff.
    let dated = retry_in(Some(784_111_717 - 600));
    assert!(
        dated >= Duration::from_secs(590) && dated <= Duration::from_secs(600),
        "{dated:?}"
    );
    let undated = retry_in(None);
    assert!(undated < Duration::from_secs(60), "{undated:?}");
}

#[test]
fn calls_share_one_kept_connection() {
    scenarios::calls_share_one_kept_connection(&Embassy);
    scenarios::audit();
}

/// A kept connection the server closed while idle is seen closed before anything is sent
/// on it (a read polled once finds the end of the stream, as ureq probes): the POST goes on
/// a new connection, once. One that dies with the request in it (the server read it and
/// closed without a byte of answer): a POST without an `Idempotency-Key` is an `io` failure
/// and the API saw it once; with a key it is sent again once, on a new connection, and
/// answered. Each call says which connection it had.
#[test]
fn a_dead_kept_connection_resends_only_what_may_be_repeated() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    let c = make_with(&sb.base_url(kind), kind, CLIENT_SECRET, false, false);
    let post = |url: &str, headers: &[(&str, &str)]| {
        async_io::block_on(async {
            let mut buffers: Box<CallBuffers> = Box::default();
            let request =
                ApiRequest::post(url, "application/json", b"{\"amount\":1}").headers(headers);
            c.client
                .call(request, &mut buffers)
                .await
                .map(|r| (r.status(), r.connection()))
        })
    };
    let url = sb.protected_url(kind);
    let (status, first) = post(&url, &[]).unwrap();
    assert_eq!((status, first.reused), (200, true), "after the token fetch");
    assert_eq!(sb.wire().connections, 1);
    sb.close_idle_connections();
    let (status, after) = post(&url, &[]).unwrap();
    assert_eq!(
        (status, after.reused),
        (200, false),
        "closed: a new connection"
    );
    assert_eq!(sb.count(Endpoint::Protected(kind)), 2, "each POST once");

    let answer =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            .to_vec();
    let api = tessera_sandbox::HostileServer::answer_once_then_drop(answer).unwrap();
    let url = format!("{}/pay", api.origin());
    assert_eq!(post(&url, &[]).unwrap().0, 200);
    let e = post(&url, &[]).expect_err("a POST without a key is not sent again");
    assert_eq!(e.stage(), Some(tessera_core::Stage::Io), "{e}");
    assert_eq!(api.requests(), 2, "the API saw it once");

    let (status, fresh) = post(&url, &[]).unwrap();
    assert_eq!((status, fresh.reused), (200, false));
    let keyed = [("Idempotency-Key", "order-0042")];
    let (status, again) = post(&url, &keyed).unwrap();
    assert_eq!(
        (status, again.reused),
        (200, false),
        "sent again once, on a new connection"
    );
    assert_eq!(
        api.requests(),
        5,
        "the keyed POST reached the API twice: the lost one and the resend"
    );
}

/// A call dropped mid-exchange on a kept connection closes that connection: it is never
/// put back half-used (its answer would be read by the next call). The next call opens a
/// new one and gets its own answer.
#[test]
fn a_call_dropped_on_a_kept_connection_never_leaves_it_half_used() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    let c = make_with(&sb.base_url(kind), kind, CLIENT_SECRET, false, false);
    let url = sb.protected_url(kind);
    let call = || {
        async_io::block_on(async {
            let mut buffers: Box<CallBuffers> = Box::default();
            c.client
                .call(ApiRequest::get(&url), &mut buffers)
                .await
                .map(|r| {
                    (
                        r.status(),
                        r.connection().reused,
                        r.header("x-request-id").map(str::to_owned),
                    )
                })
        })
    };
    let (status, reused, _) = call().unwrap();
    assert_eq!((status, reused), (200, true));
    let gate = Gate::new();
    sb.inject(Endpoint::Protected(kind), Fault::Hold(gate.clone()), 1);
    let at_gate = arrived(&gate, 1);
    async_io::block_on(async {
        let mut buffers: Box<CallBuffers> = Box::default();
        match select(
            c.client.call(ApiRequest::get(&url), &mut buffers),
            at_gate.wait(),
        )
        .await
        {
            Either::First(r) => panic!("answered while held: {r:?}"),
            Either::Second(()) => {}
        }
    });
    // The held answer is let go after its connection was dropped: nobody reads it.
    gate.release();
    let (status, reused, id) = call().unwrap();
    assert_eq!(
        (status, reused),
        (200, false),
        "a new connection, not the half-used one"
    );
    assert_eq!(id.as_deref(), Some("req-3"), "its own answer");
    assert_eq!(sb.wire().connections, 2);
}

/// The keep-or-close verdict on a server that keeps every connection open: an exact answer
/// is kept for the next call; one whose framing was in doubt (chunked with a
/// Content-Length, `Transfer-Encoding: identity`, bytes after the body, `Connection: close`,
/// HTTP/1.0, a body to the close) is closed, and the next call opens another connection.
#[test]
fn only_an_exactly_framed_answer_keeps_its_connection() {
    use tessera_sandbox::HostileServer;
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    let c = make_with(&sb.base_url(kind), kind, CLIENT_SECRET, false, false);
    let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
    let cases = [
        (format!("{ok}Content-Length: 2\r\n\r\n{{}}"), true),
        (
            format!("{ok}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"),
            true,
        ),
        (
            format!(
                "{ok}Transfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
            ),
            false,
        ),
        (
            format!("{ok}Transfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n{{}}"),
            false,
        ),
        (format!("{ok}Content-Length: 2\r\n\r\n{{}}XYZ"), false),
        (
            format!("{ok}Connection: close\r\nContent-Length: 2\r\n\r\n{{}}"),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_owned(),
            false,
        ),
    ];
    for (answer, kept) in cases {
        let api = HostileServer::keep_answering(answer.clone().into_bytes()).unwrap();
        let url = format!("{}/pay", api.origin());
        for _ in 0..2 {
            let status = async_io::block_on(async {
                let mut buffers: Box<CallBuffers> = Box::default();
                c.client
                    .call(ApiRequest::get(&url), &mut buffers)
                    .await
                    .map(|r| r.status())
            });
            assert_eq!(status, Ok(200), "{answer:?}");
        }
        let expected = if kept { 1 } else { 2 };
        assert_eq!(api.connections(), expected, "{answer:?}");
    }
}
