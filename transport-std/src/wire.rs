//! HTTP plumbing on ureq: the agents (one that may use a proxy, for `https://`; one that
//! never does, for plaintext), a bounded name resolver that keeps its threads, bodies read
//! within a limit.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_core::Request;
use ureq::config::Config;
use ureq::http;
use ureq::tls::TlsConfig;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport,
};
use ureq::{Agent, AsSendBody, Body};
use zeroize::Zeroize;

use crate::error::BodyError;
use crate::options::Options;

/// The agents a client sends with.
pub(crate) struct Http {
    /// `http://`: never a proxy (the secret would reach it in plaintext).
    direct: Agent,
    /// `https://`: the [`Proxy`](crate::Proxy) option's proxy (a `CONNECT` tunnel).
    secure: Agent,
    /// Connections opened so far (both agents). ureq's agents keep connections between
    /// requests (token fetches and calls alike); this counts the new ones.
    opened: Arc<AtomicU64>,
}

impl Http {
    pub(crate) fn new(options: &Options) -> Http {
        let opened = Arc::new(AtomicU64::new(0));
        let config = |proxy: Option<ureq::Proxy>| -> Config {
            Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_connect(Some(options.connect_timeout))
                .timeout_global(Some(options.request_timeout))
                .proxy(proxy)
                // ureq's default is 128 KiB each, zero-filled for every new connection.
                // Token answers and API responses have small heads; the body is read in
                // pieces whatever the size.
                .input_buffer_size(BUFFER)
                .output_buffer_size(BUFFER)
                // Less than the input buffer: a larger head is then refused as such
                // (`response header too large`), not cut off as a closed connection.
                .max_response_header_size(MAX_HEAD)
                .tls_config(
                    TlsConfig::builder()
                        .root_certs(crate::options::root_certs(&options.trust))
                        .build(),
                )
                .build()
        };
        let agent = |proxy| {
            Agent::with_parts(
                config(proxy),
                DefaultConnector::new().chain(Coalescing {
                    opened: Arc::clone(&opened),
                }),
                Lookup { pool: &SYSTEM },
            )
        };
        let direct = agent(None);
        let secure = match crate::options::ureq_proxy(&options.proxy) {
            None => direct.clone(),
            Some(p) => agent(Some(p)),
        };
        Http {
            direct,
            secure,
            opened,
        }
    }

    /// Connections opened so far (a request on a kept connection opens none).
    pub(crate) fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Sends `request`: `https://` through the proxy option, anything else directly.
    ///
    /// A request that went on a kept connection which then failed as a closed connection
    /// does (ureq probes a kept connection before using it, so this is one the server
    /// closed with the request in it) is sent again once, on a new connection, only if
    /// repeating it is harmless: an idempotent method (GET, HEAD, PUT, DELETE, OPTIONS) or an
    /// `Idempotency-Key`. Anything else fails as `io`: a payment never reaches the API twice
    /// without its key. tessera-embassy follows the same rule.
    pub(crate) fn run<B: AsSendBody + Clone>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<Body>, ureq::Error> {
        let agent = if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
            &self.secure
        } else {
            &self.direct
        };
        let safe = repeatable(&request);
        let again = safe.then(|| copy(&request)).flatten();
        let opened = self.connections_opened();
        match (agent.run(request), again) {
            (Err(e), Some(again)) if self.connections_opened() == opened && closed(&e) => {
                debug!("tessera: a kept connection was closed with the request in it; sending it again on a new one");
                agent.run(again)
            }
            (result, _) => result,
        }
    }
}

/// Whether `request` may be sent again after a kept connection died with it: the core's
/// rule, shared with tessera-embassy.
fn repeatable<B>(request: &http::Request<B>) -> bool {
    tessera_core::transport::may_send_again(
        request.method().as_str(),
        request.headers().keys().map(http::HeaderName::as_str),
    )
}

/// A copy of `request`, to send again.
fn copy<B: Clone>(request: &http::Request<B>) -> Option<http::Request<B>> {
    let mut builder = http::Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone())
        .version(request.version());
    if let Some(headers) = builder.headers_mut() {
        *headers = request.headers().clone();
    }
    builder.body(request.body().clone()).ok()
}

/// Whether `e` is a connection that closed under the request (not a timeout, not an
/// answer that broke HTTP).
fn closed(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e, ureq::Error::Io(io) if matches!(
        io.kind(),
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe
    ))
}

/// The input and output buffer of a connection.
const BUFFER: usize = 32 * 1024;

/// The largest response head (status line and headers) read.
const MAX_HEAD: usize = 24 * 1024;

/// Holds the bytes ureq writes for a request (the head, then the body) and sends them in
/// one write when the response is awaited: one segment instead of two, so the server reads
/// the request at once instead of waking twice (on loopback, about a tenth of a first fetch).
#[derive(Debug)]
struct Coalescing {
    /// Counted here: ureq calls a connector only for a new connection.
    opened: Arc<AtomicU64>,
}

impl Connector<Box<dyn Transport>> for Coalescing {
    type Out = Coalesced<Box<dyn Transport>>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if chained.is_some() {
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
        Ok(chained.map(|inner| Coalesced {
            inner,
            held: Vec::with_capacity(HOLD),
        }))
    }
}

/// Most bytes held back before they are sent anyway. The held bytes carry the secret or the
/// token: they are wiped once sent, and never reallocated (so no copy is left behind).
const HOLD: usize = 8 * 1024;

#[derive(Debug)]
struct Coalesced<T> {
    inner: T,
    held: Vec<u8>,
}

impl<T: Transport> Coalesced<T> {
    fn flush(&mut self, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let mut sent = 0;
        let result = loop {
            if sent == self.held.len() {
                break Ok(());
            }
            let out = self.inner.buffers().output();
            let n = out.len().min(self.held.len() - sent);
            out[..n].copy_from_slice(&self.held[sent..sent + n]);
            let result = self.inner.transmit_output(n, timeout);
            // ureq keeps its output buffer with the pooled connection: wipe what was sent.
            self.inner.buffers().output()[..n].zeroize();
            if let Err(e) = result {
                break Err(e);
            }
            sent += n;
        };
        // The used part only: the spare capacity never held anything.
        self.held.as_mut_slice().zeroize();
        self.held.clear();
        result
    }
}

impl<T: Transport> Transport for Coalesced<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        if self.held.len() + amount > self.held.capacity() || self.inner.buffers().can_use_input() {
            // Too much to hold, or input waiting to be used (ureq may not call
            // `await_input` then): send what is held, then this.
            self.flush(timeout)?;
            return self.inner.transmit_output(amount, timeout);
        }
        let out = self.inner.buffers().output();
        self.held.extend_from_slice(&out[..amount]);
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.flush(timeout)?;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// A core request as an `http` request whose body is `body` (the caller's copy of
/// `request.body`, so it can wipe it). Sends exactly [`Request::headers`]; the
/// `Authorization` value is marked sensitive.
pub(crate) fn to_http<'b>(
    request: &Request<'_>,
    body: &'b [u8],
) -> Result<http::Request<&'b [u8]>, http::Error> {
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(request.url.to_string());
    for (name, value) in request.headers() {
        let mut value = http::HeaderValue::from_str(value)?;
        if name.eq_ignore_ascii_case("authorization") {
            value.set_sensitive(true);
        }
        builder = builder.header(name, value);
    }
    builder.body(body)
}

/// Reads the whole body, at most `limit` bytes, into one allocation when the response
/// states its length (a body that grows is copied, and the copies left behind are not
/// wiped: token answers carry the token).
pub(crate) fn read_body(
    response: &mut http::Response<Body>,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    use std::io::Read;
    let stated = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = Vec::with_capacity(stated.min(limit));
    let read = response
        .body_mut()
        .with_config()
        .limit(u64::try_from(limit).unwrap_or(u64::MAX))
        .reader()
        .read_to_end(&mut body);
    match read {
        Ok(_) => Ok(body),
        Err(e) => {
            body.zeroize();
            Err(match ureq::Error::from(e) {
                ureq::Error::BodyExceedsLimit(_) => BodyError::TooLarge,
                e => BodyError::Network(e),
            })
        }
    }
}

/// Name resolution within ureq's time bound, without a new thread per lookup.
///
/// An IP literal (`127.0.0.1`, `[::1]`) needs no lookup and gets none; neither does
/// `localhost` (nor `*.localhost`), always `127.0.0.1` then `::1`. A name is looked up
/// on a resolver thread kept for the next lookup, and the caller waits for it at most until
/// the connect or request timeout: a hung lookup cannot stall a caller. A thread stuck in a
/// lookup is simply not reused until it comes back; the next lookup takes another.
#[derive(Clone, Copy)]
pub(crate) struct Lookup {
    /// The resolver threads (the system's resolver; tests inject another).
    pool: &'static Pool,
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lookup")
    }
}

impl Resolver for Lookup {
    fn resolve(
        &self,
        uri: &http::Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let bad = || ureq::Error::BadUri(String::from("no scheme or host"));
        let scheme = uri.scheme().ok_or_else(bad)?;
        let authority = uri.authority().ok_or_else(bad)?;
        let port = match authority.port_u16() {
            Some(p) => p,
            None if *scheme == http::uri::Scheme::HTTPS => 443,
            None if *scheme == http::uri::Scheme::HTTP => 80,
            None => return Err(ureq::Error::BadUri(String::from("unknown scheme"))),
        };
        let host = authority.host();
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<IpAddr>();
        let found: Vec<SocketAddr> = match literal {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            // `localhost` and `*.localhost` are this machine (RFC 6761), and the core lets
            // plaintext go to them for that reason: they are answered here, so no hosts
            // file or DNS server can send them elsewhere.
            Err(_) if tessera_core::transport::is_loopback(host) => vec![
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
            ],
            Err(_) => {
                let name = format!("{host}:{port}");
                if timeout.after.is_not_happening() {
                    name.to_socket_addrs()?.collect()
                } else {
                    self.pool.lookup(name, *timeout.after, timeout.reason)?
                }
            }
        };
        let mut out = self.empty();
        for addr in config.ip_family().keep_wanted(found.into_iter()).take(16) {
            out.push(addr);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

type Reply = mpsc::SyncSender<std::io::Result<Vec<SocketAddr>>>;

/// One lookup for a resolver thread.
struct Job {
    name: String,
    reply: Reply,
}

/// How a name becomes addresses (the system's resolver; tests inject their own).
type ResolveFn = fn(&str) -> std::io::Result<Vec<SocketAddr>>;

/// Resolver threads waiting for work.
struct Pool {
    idle: Mutex<Vec<mpsc::Sender<Job>>>,
    resolve: ResolveFn,
}

impl Pool {
    const fn new(resolve: ResolveFn) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            resolve,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::Sender<Job>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks `name` up on a kept resolver thread, waiting at most `within`.
    fn lookup(
        &'static self,
        name: String,
        within: Duration,
        reason: ureq::Timeout,
    ) -> Result<Vec<SocketAddr>, ureq::Error> {
        let (reply, answer) = mpsc::sync_channel(1);
        let mut job = Job { name, reply };
        loop {
            let worker = self.idle().pop();
            match worker {
                Some(w) => match w.send(job) {
                    Ok(()) => break,
                    // That thread is gone: try the next.
                    Err(mpsc::SendError(back)) => job = back,
                },
                None => {
                    self.spawn(job)?;
                    break;
                }
            }
        }
        match answer.recv_timeout(within) {
            Ok(found) => Ok(found?),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ureq::Error::Timeout(reason)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ureq::Error::HostNotFound),
        }
    }

    /// A resolver thread that runs `first`, then waits in the idle list for the next
    /// lookup.
    fn spawn(&'static self, first: Job) -> Result<(), ureq::Error> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tessera-resolve".into())
            .spawn(move || {
                let mut job = first;
                loop {
                    let found = (self.resolve)(&job.name);
                    // The caller may have stopped waiting: nothing to do then.
                    let _ = job.reply.send(found);
                    self.idle().push(tx.clone());
                    match rx.recv() {
                        Ok(next) => job = next,
                        Err(_) => return,
                    }
                }
            })
            .map(drop)
            .map_err(ureq::Error::Io)
    }
}

fn system_resolve(name: &str) -> std::io::Result<Vec<SocketAddr>> {
    name.to_socket_addrs().map(Iterator::collect)
}

/// The resolver threads every client in the process shares.
static SYSTEM: Pool = Pool::new(system_resolve);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Condvar;

    /// A resolver that blocks until released, then finds nothing.
    static RELEASED: Mutex<bool> = Mutex::new(false);
    static RELEASE: Condvar = Condvar::new();
    fn stuck(_: &str) -> std::io::Result<Vec<SocketAddr>> {
        let mut released = RELEASED.lock().unwrap();
        while !*released {
            released = RELEASE.wait(released).unwrap();
        }
        Ok(Vec::new())
    }
    static STUCK: Pool = Pool::new(stuck);

    #[test]
    fn a_hung_lookup_is_bounded_and_does_not_block_the_next() {
        let first = STUCK.lookup(
            "a.invalid:443".into(),
            Duration::from_millis(20),
            ureq::Timeout::Resolve,
        );
        assert!(matches!(
            first,
            Err(ureq::Error::Timeout(ureq::Timeout::Resolve))
        ));
        let te = crate::classify(&first.unwrap_err());
        assert_eq!(te.stage, tessera_core::Stage::Timeout);
        assert_eq!(te.detail, "name resolution timed out");
        // The first thread is still stuck: the next lookup gets its own, bounded too.
        let second = STUCK.lookup(
            "b.invalid:443".into(),
            Duration::from_millis(20),
            ureq::Timeout::Connect,
        );
        assert!(matches!(
            second,
            Err(ureq::Error::Timeout(ureq::Timeout::Connect))
        ));
        *RELEASED.lock().unwrap() = true;
        RELEASE.notify_all();
    }

    /// A resolver that finds nothing for any name.
    fn nothing(_: &str) -> std::io::Result<Vec<SocketAddr>> {
        Ok(Vec::new())
    }
    static NOTHING: Pool = Pool::new(nothing);

    #[test]
    fn threads_are_kept_and_an_unknown_name_says_dns() {
        for _ in 0..3 {
            let found = NOTHING
                .lookup(
                    "c.invalid:443".into(),
                    Duration::from_secs(10),
                    ureq::Timeout::Resolve,
                )
                .unwrap();
            assert!(found.is_empty());
            // The thread came back to the idle list (it pushes itself before the next
            // recv, after replying: wait for it).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while NOTHING.idle().is_empty() && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            assert_eq!(NOTHING.idle().len(), 1, "one thread, reused");
        }
        // A name that resolves to nothing: dns, through the resolver ureq calls.
        let uri: http::Uri = "https://c.invalid/token".parse().unwrap();
        let e = Lookup { pool: &NOTHING }
            .resolve(&uri, &Config::default(), bounded())
            .unwrap_err();
        assert!(matches!(e, ureq::Error::HostNotFound), "{e}");
        let te = crate::classify(&e);
        assert_eq!(
            (te.stage, te.detail),
            (tessera_core::Stage::Dns, "host not found")
        );
    }

    fn bounded() -> NextTimeout {
        NextTimeout {
            after: ureq::unversioned::transport::time::Duration::Exact(Duration::from_secs(1)),
            reason: ureq::Timeout::Resolve,
            ..NextTimeout::default()
        }
    }

    #[test]
    fn ip_literals_need_no_lookup() {
        let config = Config::default();
        let timeout = bounded();
        for (url, want) in [
            ("http://127.0.0.1:8080/x", "127.0.0.1:8080"),
            ("https://[::1]/x", "[::1]:443"),
            ("http://10.1.2.3/x", "10.1.2.3:80"),
        ] {
            let uri: http::Uri = url.parse().unwrap();
            let found = Lookup { pool: &NOTHING }
                .resolve(&uri, &config, timeout)
                .unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(found[0], want.parse::<SocketAddr>().unwrap());
        }
        for url in [
            "http://localhost:9/",
            "http://sandbox.LOCALHOST:9/",
            "http://localhost.:9/",
        ] {
            let uri: http::Uri = url.parse().unwrap();
            let found = Lookup { pool: &NOTHING }
                .resolve(&uri, &config, timeout)
                .unwrap();
            let found: Vec<_> = found.iter().map(ToString::to_string).collect();
            assert_eq!(found, ["127.0.0.1:9", "[::1]:9"], "{url}");
        }
    }
}
