//! Server start-up: the listener, plain HTTP or TLS, one task per connection, the shared
//! state the responders read, and the [`Sandbox`] handle tests hold.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::http::header;
use axum::response::Response;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::ServerConfig;

use crate::faults::handle;
use crate::providers::{respond, JSON_TYPE};
use crate::{Endpoint, Fault, ProviderKind};

#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) credentials: HashMap<ProviderKind, (String, String)>,
    pub(crate) lifetimes: HashMap<ProviderKind, u64>,
    pub(crate) counts: HashMap<Endpoint, u64>,
    pub(crate) last_headers: HashMap<Endpoint, Vec<(String, String)>>,
    pub(crate) faults: HashMap<Endpoint, VecDeque<Fault>>,
    /// Tokens issued before this generation are revoked.
    pub(crate) generation: HashMap<ProviderKind, u64>,
    pub(crate) next_jti: u64,
    pub(crate) shogun_failures: u32,
    pub(crate) shogun_locked_until: Option<std::time::Instant>,
    pub(crate) lockout_threshold: u32,
    pub(crate) lockout: Duration,
}

pub(crate) struct Inner {
    pub(crate) key: [u8; 32],
    pub(crate) shared: Mutex<Shared>,
    /// Connections and handshakes on this listener.
    pub(crate) wire: Mutex<Wire>,
    /// Bumped by [`Sandbox::close_idle_connections`]: every connection shuts down
    /// gracefully (an idle one closes at once, one mid-request after its answer).
    pub(crate) close_idle: tokio::sync::watch::Sender<u64>,
}

/// What the listener saw: TCP connections accepted and open, TLS handshakes by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wire {
    /// TCP connections accepted.
    pub connections: u64,
    /// Connections open now.
    pub open: u64,
    /// Full TLS handshakes completed (with or without a HelloRetryRequest).
    pub full: u64,
    /// Resumed TLS handshakes completed (a session ticket or ID the server accepted).
    pub resumed: u64,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Raw bytes to send instead of the next answer on one connection.
type Slot = Arc<Mutex<Option<&'static [u8]>>>;

/// What a request handler sees: the sandbox, and its connection's hijack slot.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) inner: Arc<Inner>,
    slot: Slot,
}

impl Conn {
    /// Answers with `raw` bytes instead of HTTP, then closes the connection.
    pub(crate) fn hijack(&self, raw: &'static [u8]) -> Response {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(raw);
        let mut r = respond(200, JSON_TYPE, "{}".into());
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        r
    }
}

/// A connection whose next write can be replaced by raw bytes (hostile answers HTTP
/// libraries refuse to produce). Once they are sent, the real answer is swallowed.
struct Hijackable<S> {
    io: S,
    slot: Slot,
    raw: Option<(&'static [u8], usize)>,
    sent: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Hijackable<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Hijackable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.sent {
            return Poll::Ready(Ok(buf.len()));
        }
        if this.raw.is_none() {
            let taken = this.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            this.raw = taken.map(|raw| (raw, 0));
        }
        let Some((raw, pos)) = &mut this.raw else {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        };
        while *pos < raw.len() {
            match ready!(Pin::new(&mut this.io).poll_write(cx, &raw[*pos..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *pos += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        this.sent = true;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    scheme: &'static str,
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sandbox {
    /// Starts on a free port on 127.0.0.1.
    pub fn start() -> io::Result<Sandbox> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts on `addr` (use a loopback address).
    pub fn start_on(addr: SocketAddr) -> io::Result<Sandbox> {
        Self::start_inner(addr, None)
    }

    /// Starts an HTTPS sandbox on a free port on 127.0.0.1, with a CA made for it and a
    /// server certificate (ECDSA P-256, TLS 1.3) whose common name is `common_name`.
    /// Returns the sandbox and the CA certificate (DER) clients must trust.
    pub fn start_tls(common_name: &str) -> io::Result<(Sandbox, Vec<u8>)> {
        Self::start_tls_on(SocketAddr::from(([127, 0, 0, 1], 0)), common_name)
    }

    /// [`Sandbox::start_tls`] on `addr`.
    pub fn start_tls_on(addr: SocketAddr, common_name: &str) -> io::Result<(Sandbox, Vec<u8>)> {
        let (ca, config) = tls_identity(common_name).map_err(io::Error::other)?;
        let sandbox = Self::start_inner(addr, Some(config))?;
        Ok((sandbox, ca))
    }

    pub(crate) fn start_inner(
        addr: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
    ) -> io::Result<Sandbox> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            lockout_threshold: 5,
            lockout: Duration::from_secs(60),
            ..Shared::default()
        };
        let inner = Arc::new(Inner {
            key: crate::jwt::fresh_key(),
            shared: Mutex::new(shared),
            wire: Mutex::new(Wire::default()),
            close_idle: tokio::sync::watch::Sender::new(0),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&inner);
        // Enough workers that one busy answer (a 10 MB body) never delays the others.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("tessera-sandbox".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = serve(listener, state, tls) => {}
                        _ = rx => {}
                    }
                });
                // Connections still dripping are cut, not awaited.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(Sandbox {
            scheme,
            addr,
            inner,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (`https` for [`Sandbox::start_tls`]).
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What to give the provider as its base URL (for OAuth 2.0: the whole token URL).
    pub fn base_url(&self, kind: ProviderKind) -> String {
        base_url_at(&self.origin(), kind)
    }

    /// The provider's protected test endpoint: 200 for a live token it issued, else 401.
    /// Every answer carries `X-Request-Id: req-N`, N counting this endpoint's requests.
    pub fn protected_url(&self, kind: ProviderKind) -> String {
        format!("{}/{}/protected", self.origin(), kind.name())
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.inner.lock()
    }

    /// Sets the credentials a provider accepts.
    pub fn set_credentials(&self, kind: ProviderKind, id: &str, secret: &str) {
        self.shared()
            .credentials
            .insert(kind, (id.into(), secret.into()));
    }

    /// Sets the real lifetime of the tokens a provider issues (default 3600 s). Setu states
    /// six times this in `expiresIn`, as its own example does (1800 stated, 300 real).
    pub fn set_lifetime(&self, kind: ProviderKind, seconds: u64) {
        self.shared().lifetimes.insert(kind, seconds);
    }

    /// Shogun's lockout: after `threshold` consecutive failed logins, 429 for `duration`.
    pub fn set_lockout(&self, threshold: u32, duration: Duration) {
        let mut s = self.shared();
        s.lockout_threshold = threshold;
        s.lockout = duration;
    }

    /// Queues `fault` for the next `times` requests to `endpoint`.
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: usize) {
        let mut s = self.shared();
        let q = s.faults.entry(endpoint).or_default();
        q.extend(std::iter::repeat_n(fault, times));
    }

    /// Ends Shogun's lockout now, as if its time had passed.
    pub fn unlock(&self) {
        let mut s = self.shared();
        s.shogun_locked_until = None;
        s.shogun_failures = 0;
    }

    /// Revokes every token `kind` has issued so far (its protected endpoint answers 401).
    pub fn revoke_all(&self, kind: ProviderKind) {
        *self.shared().generation.entry(kind).or_default() += 1;
    }

    /// Requests received by `endpoint`.
    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.shared().counts.get(&endpoint).copied().unwrap_or(0)
    }

    /// The headers of the last request `endpoint` received (names lowercase, in the order
    /// received), or none if it received none.
    pub fn last_headers(&self, endpoint: Endpoint) -> Vec<(String, String)> {
        self.shared()
            .last_headers
            .get(&endpoint)
            .cloned()
            .unwrap_or_default()
    }

    /// Zeroes every count.
    pub fn reset_counts(&self) {
        self.shared().counts.clear();
    }

    /// TCP connections accepted and open, and TLS handshakes full and resumed, on this
    /// sandbox's listener so far.
    pub fn wire(&self) -> Wire {
        *self.inner.wire.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes every idle kept connection, as a server does when its keep-alive timeout
    /// runs out (a connection mid-request closes after its answer), and returns once none
    /// is open (at most 5 s). A client's kept connection is then dead: its next request
    /// finds it closed.
    pub fn close_idle_connections(&self) {
        self.inner.close_idle.send_modify(|g| *g += 1);
        let limit = std::time::Instant::now() + Duration::from_secs(5);
        while self.wire().open > 0 && std::time::Instant::now() < limit {
            std::thread::yield_now();
        }
    }
}

/// What to give a `kind` provider as its base URL when the server is at `origin`
/// (`http://HOST:PORT`); for OAuth 2.0, the whole token URL.
pub fn base_url_at(origin: &str, kind: ProviderKind) -> String {
    let o = origin.trim_end_matches('/');
    match kind {
        ProviderKind::Shogun => format!("{o}/shogun/api/v1"),
        ProviderKind::Apimw => format!("{o}/apimw"),
        ProviderKind::Setu => format!("{o}/setu"),
        ProviderKind::StoneX => format!("{o}/stonex"),
        ProviderKind::OAuth2 => format!("{o}/oauth2/token"),
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections for ever: one task each, hyper's HTTP/1 over the socket (or a rustls
/// stream on it), the router built per connection with its hijack slot.
async fn serve(
    listener: tokio::net::TcpListener,
    inner: Arc<Inner>,
    tls: Option<Arc<ServerConfig>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, say: give the others a moment to close theirs.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (inner, acceptor) = (Arc::clone(&inner), acceptor.clone());
        tokio::spawn(async move {
            let _open = Open::new(&inner);
            let slot = Slot::default();
            let close = inner.close_idle.subscribe();
            let conn = Conn {
                inner: Arc::clone(&inner),
                slot: Arc::clone(&slot),
            };
            let app = Router::new().fallback(handle).with_state(conn);
            match acceptor {
                None => serve_connection(tcp, slot, app, close).await,
                Some(acceptor) => {
                    // A client that rejects the certificate ends here: tests check that.
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        let resumed = matches!(
                            stream.get_ref().1.handshake_kind(),
                            Some(tokio_rustls::rustls::HandshakeKind::Resumed)
                        );
                        {
                            let mut w = inner.wire.lock().unwrap_or_else(|p| p.into_inner());
                            match resumed {
                                true => w.resumed += 1,
                                false => w.full += 1,
                            }
                        }
                        serve_connection(stream, slot, app, close).await;
                    }
                }
            }
        });
    }
}

/// Counts a connection accepted and open, and closed when dropped.
struct Open(Arc<Inner>);

impl Open {
    fn new(inner: &Arc<Inner>) -> Self {
        let mut w = inner.wire.lock().unwrap_or_else(|p| p.into_inner());
        w.connections += 1;
        w.open += 1;
        Open(Arc::clone(inner))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut w = self.0.wire.lock().unwrap_or_else(|p| p.into_inner());
        w.open = w.open.saturating_sub(1);
    }
}

async fn serve_connection<S>(
    io: S,
    slot: Slot,
    app: Router,
    mut close: tokio::sync::watch::Receiver<u64>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = Hijackable {
        io,
        slot,
        raw: None,
        sent: false,
    };
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = close.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// A DER certificate (such as [`Sandbox::start_tls`]'s CA) as one PEM block, the form
/// `--ca` files and most TLS settings take.
pub fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A fresh CA, and a server certificate for `common_name` it signed: (CA DER, config).
fn tls_identity(
    common_name: &str,
) -> Result<(Vec<u8>, Arc<ServerConfig>), Box<dyn std::error::Error + Send + Sync>> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::version;

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tessera-sandbox test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec![common_name.to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let cert = params.signed_by(&key, &issuer)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    Ok((ca_cert.der().to_vec(), Arc::new(config)))
}
