//! HTTP plumbing on ureq: the agents (one that may use a proxy, for `https://`; one that
//! never does, for plaintext), a bounded name resolver that keeps its threads, bodies read
//! within a limit.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tessera_core::Request;
use ureq::config::Config;
use ureq::http;
use ureq::tls::TlsConfig;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use ureq::{Agent, AsSendBody, Body};

use crate::error::BodyError;
use crate::options::Options;

/// The agents a client sends with.
pub(crate) struct Http {
    /// `http://`: never a proxy (the secret would reach it in plaintext).
    direct: Agent,
    /// `https://`: the [`Proxy`](crate::Proxy) option's proxy (a `CONNECT` tunnel).
    secure: Agent,
}

impl Http {
    pub(crate) fn new(options: &Options) -> Http {
        let config = |proxy: Option<ureq::Proxy>| -> Config {
            Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_connect(Some(options.connect_timeout))
                .timeout_global(Some(options.request_timeout))
                .proxy(proxy)
                .tls_config(
                    TlsConfig::builder()
                        .root_certs(options.trust.root_certs())
                        .build(),
                )
                .build()
        };
        let agent = |proxy| Agent::with_parts(config(proxy), DefaultConnector::new(), Lookup);
        let direct = agent(None);
        let secure = match options.proxy.resolve() {
            None => direct.clone(),
            Some(p) => agent(Some(p)),
        };
        Http { direct, secure }
    }

    /// Sends `request`: `https://` through the proxy option, anything else directly.
    pub(crate) fn run(
        &self,
        request: http::Request<impl AsSendBody>,
    ) -> Result<http::Response<Body>, ureq::Error> {
        let agent = if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
            &self.secure
        } else {
            &self.direct
        };
        agent.run(request)
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

/// Reads the whole body, at most `limit` bytes.
pub(crate) fn read_body(
    response: &mut http::Response<Body>,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => BodyError::TooLarge,
            e => BodyError::Network(e),
        })
}

/// Name resolution within ureq's time bound, without a new thread per lookup.
///
/// An IP literal (`127.0.0.1`, `[::1]`) needs no lookup and gets none. A name is looked up
/// on a resolver thread kept for the next lookup, and the caller waits for it at most until
/// the connect or request timeout: a hung lookup cannot stall a caller. A thread stuck in a
/// lookup is simply not reused until it comes back; the next lookup takes another.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lookup;

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
            Err(_) => {
                let name = format!("{host}:{port}");
                if timeout.after.is_not_happening() {
                    name.to_socket_addrs()?.collect()
                } else {
                    lookup(name, *timeout.after, timeout.reason)?
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

/// Resolver threads waiting for work, shared by every client in the process.
fn idle() -> &'static Mutex<Vec<mpsc::Sender<Job>>> {
    static IDLE: OnceLock<Mutex<Vec<mpsc::Sender<Job>>>> = OnceLock::new();
    IDLE.get_or_init(|| Mutex::new(Vec::new()))
}

/// Looks `name` up on a kept resolver thread, waiting at most `within`.
fn lookup(
    name: String,
    within: Duration,
    reason: ureq::Timeout,
) -> Result<Vec<SocketAddr>, ureq::Error> {
    let (reply, answer) = mpsc::sync_channel(1);
    let mut job = Job { name, reply };
    loop {
        let worker = idle().lock().unwrap_or_else(|p| p.into_inner()).pop();
        match worker {
            Some(w) => match w.send(job) {
                Ok(()) => break,
                // That thread is gone: try the next.
                Err(mpsc::SendError(back)) => job = back,
            },
            None => {
                spawn_resolver(job)?;
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

/// A resolver thread that runs `first`, then waits in the idle list for the next lookup.
fn spawn_resolver(first: Job) -> Result<(), ureq::Error> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("tessera-resolve".into())
        .spawn(move || {
            let mut job = first;
            loop {
                let found = job.name.to_socket_addrs().map(Iterator::collect);
                // The caller may have stopped waiting: nothing to do then.
                let _ = job.reply.send(found);
                idle()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(tx.clone());
                match rx.recv() {
                    Ok(next) => job = next,
                    Err(_) => return,
                }
            }
        })
        .map(drop)
        .map_err(ureq::Error::Io)
}
