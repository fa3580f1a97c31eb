//! HTTP plumbing on reqwest: the clients (one that may use a proxy, for `https://`; one that
//! never does, for plaintext), rustls on ring with the roots [`Trust`] names, a bounded name
//! resolver, bodies read within a limit into buffers that are wiped.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tessera_host::Trust;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::options::Options;

/// The clients a [`Client`](crate::Client) sends with.
pub(crate) struct Http {
    /// `http://`: never a proxy (the secret would reach it in plaintext).
    direct: reqwest::Client,
    /// `https://`: the [`Proxy`](tessera_host::Proxy) option's proxy (a `CONNECT` tunnel).
    secure: reqwest::Client,
    /// Connections opened by either client.
    opened: Arc<AtomicU64>,
}

impl Http {
    pub(crate) fn new(options: &Options) -> Result<Http, Error> {
        let tls = tls_config(&options.trust)?;
        let opened = Arc::new(AtomicU64::new(0));
        let builder = || {
            reqwest::Client::builder()
                .connector_layer(Counting(Arc::clone(&opened)))
                .use_preconfigured_tls(tls.clone())
                // A 3xx is an answer, never followed: a 307 would carry the secret (or the
                // bearer token) wherever the server says.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(options.connect_timeout)
                .timeout(options.request_timeout)
                .dns_resolver(Arc::new(Lookup {
                    within: options.connect_timeout,
                }))
                .http1_only()
                .referer(false)
        };
        let setup = |e: reqwest::Error| Error::Setup(Box::new(e));
        let direct = builder().no_proxy().build().map_err(setup)?;
        let secure = match options.proxy.resolve() {
            None => direct.clone(),
            Some(resolved) => {
                let mut proxy =
                    reqwest::Proxy::https(resolved.url.as_str()).map_err(|_| Error::Proxy)?;
                if let Some(list) = &resolved.no_proxy {
                    proxy = proxy.no_proxy(reqwest::NoProxy::from_string(list));
                }
                builder().proxy(proxy).build().map_err(setup)?
            }
        };
        Ok(Http {
            direct,
            secure,
            opened,
        })
    }

    /// How many connections the clients have opened (attempts included).
    pub(crate) fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// The client for `url`: `https://` through the proxy option, anything else directly.
    pub(crate) fn for_url(&self, url: &reqwest::Url) -> &reqwest::Client {
        self.client(url.scheme() == "https")
    }

    /// The client for `https://` (which may take the proxy), or the direct one.
    pub(crate) fn client(&self, https: bool) -> &reqwest::Client {
        if https {
            &self.secure
        } else {
            &self.direct
        }
    }

    /// Sends `request`: `https://` through the proxy option, anything else directly. A
    /// response whose head is larger than [`MAX_HEAD`] is refused.
    pub(crate) async fn execute(
        &self,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, SendError> {
        let response = self
            .for_url(request.url())
            .execute(request)
            .await
            .map_err(SendError::Reqwest)?;
        let head: usize = response
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if head > MAX_HEAD {
            return Err(SendError::HeadTooLarge);
        }
        Ok(response)
    }
}

/// The largest response head (headers) accepted, as tessera-std's: 24 KiB. hyper reads a
/// head of up to its own buffer limit (about 400 KiB, so memory stays bounded) before
/// tessera can look; a larger one is then refused as `response header too large`.
pub(crate) const MAX_HEAD: usize = 24 * 1024;

/// Why a request got no usable response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// reqwest's error (classified by [`crate::classify`]).
    Reqwest(reqwest::Error),
    /// The response head was larger than [`MAX_HEAD`].
    HeadTooLarge,
}

impl SendError {
    /// The core's classification.
    pub(crate) fn classify(&self) -> tessera_core::TransportError {
        match self {
            SendError::Reqwest(e) => crate::classify(e),
            SendError::HeadTooLarge => tessera_core::TransportError::new(
                tessera_core::Stage::Protocol,
                "response header too large",
            ),
        }
    }
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Http")
    }
}

/// A connector layer that counts the connections reqwest asks its connector for: every one
/// is a new connection (kept ones are reused from the pool without asking).
#[derive(Clone)]
struct Counting(Arc<AtomicU64>);

impl<S> tower_layer::Layer<S> for Counting {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            opened: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    opened: Arc<AtomicU64>,
}

impl<S: tower_service::Service<R>, R> tower_service::Service<R> for Counted<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.inner.call(request)
    }
}

/// rustls on ring (the provider tessera-std's ureq runs), TLS 1.2 and 1.3, with the roots
/// `trust` names. No ALPN: HTTP/1.1 only.
fn tls_config(trust: &Trust) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let setup = |e: rustls::Error| Error::Setup(Box::new(e));
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(setup)?;
    let config = match trust {
        Trust::WebPki => {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Platform => {
            let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(setup)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        Trust::Roots(roots) => {
            let mut store = rustls::RootCertStore::empty();
            for cert in roots.certificates() {
                store.add(cert.clone()).map_err(setup)?;
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        // `Trust` is exhaustive today; a new kind must be wired here before it is used.
        #[allow(unreachable_patterns)]
        _ => return Err(Error::Setup("unsupported trust setting".into())),
    };
    Ok(config)
}

/// Why a host name gave no address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unresolved {
    /// The resolver found nothing.
    NotFound,
    /// The resolver did not answer within the connect timeout.
    TimedOut,
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unresolved::NotFound => "host not found",
            Unresolved::TimedOut => "name resolution timed out",
        })
    }
}

impl std::error::Error for Unresolved {}

/// Name resolution within the connect timeout.
///
/// `localhost` and `*.localhost` are always `127.0.0.1` then `::1` (RFC 6761), answered
/// here, so no hosts file or DNS server can send plaintext the core let through as loopback
/// elsewhere (IP literals never reach a resolver). Other names are looked up on tokio's
/// blocking pool, waited for at most the connect timeout: a hung DNS server cannot stall a
/// caller.
struct Lookup {
    within: Duration,
}

impl Resolve for Lookup {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let within = self.within;
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                if tessera_core::transport::is_loopback(&host) && host.parse::<IpAddr>().is_err() {
                    vec![
                        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                        SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
                    ]
                } else {
                    match tokio::time::timeout(within, tokio::net::lookup_host((host.as_str(), 0)))
                        .await
                    {
                        Err(_) => return Err(Unresolved::TimedOut.into()),
                        Ok(Err(_)) => return Err(Unresolved::NotFound.into()),
                        Ok(Ok(addrs)) => addrs.take(16).collect(),
                    }
                };
            if found.is_empty() {
                return Err(Unresolved::NotFound.into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// What reading a response body can fail with.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The network failed mid-body.
    Network(reqwest::Error),
}

/// Reads the whole body, at most `limit` bytes, into a buffer that is wiped on drop; one
/// allocation when the response states its length (a buffer that must grow is copied into
/// a larger one and the old one wiped, so no copy of a token answer is left behind).
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let stated = response
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    if stated > limit {
        return Err(BodyError::TooLarge);
    }
    let mut body = Zeroizing::new(Vec::with_capacity(stated));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Network)? {
        let needed = body.len() + chunk.len();
        if needed > limit {
            return Err(BodyError::TooLarge);
        }
        if needed > body.capacity() {
            let grown = needed.max(body.capacity() * 2).clamp(1024, limit);
            let mut bigger = Zeroizing::new(Vec::with_capacity(grown));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `bytes` as shared bytes that are wiped when the last slice of them is dropped (by the
/// HTTP stack, when it is done with a request body).
pub(crate) fn wiped_bytes(bytes: Zeroizing<Vec<u8>>) -> bytes::Bytes {
    bytes::Bytes::from_owner(WipedOnDrop(bytes))
}

struct WipedOnDrop(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for WipedOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_needs_no_lookup_and_unknown_names_say_dns() {
        let lookup = Lookup {
            within: Duration::from_secs(5),
        };
        for host in ["localhost", "sandbox.LOCALHOST", "localhost."] {
            let addrs: Vec<_> = lookup
                .resolve(host.parse().unwrap())
                .await
                .unwrap()
                .map(|a| a.to_string())
                .collect();
            assert_eq!(addrs, ["127.0.0.1:0", "[::1]:0"], "{host}");
        }
        let e = lookup
            .resolve("no-such-host.invalid".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(matches!(
            e.downcast_ref::<Unresolved>(),
            Some(Unresolved::NotFound | Unresolved::TimedOut)
        ));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let ok = http::Response::builder().body("x".repeat(100)).unwrap();
        let body = read_body(reqwest::Response::from(ok), 100).await.unwrap();
        assert_eq!(body.len(), 100);
        let big = http::Response::builder().body("x".repeat(101)).unwrap();
        assert!(matches!(
            read_body(reqwest::Response::from(big), 100).await,
            Err(BodyError::TooLarge)
        ));
    }
}
