//! # tessera-sandbox
//!
//! A real HTTP server on loopback (axum) that behaves like every provider Tessera speaks:
//! the exact paths, bodies, envelopes and error shapes of Shogun (token and validate),
//! APIMW, Setu, StoneX and a standard OAuth 2.0 token endpoint. Tokens are real JWTs
//! (HS256, with `iat` and `exp`); each provider's protected endpoint accepts only live
//! tokens it issued. Shogun locks the account after repeated failed logins. Faults can be
//! injected per endpoint, and every request is counted.
//!
//! It runs in-process for tests ([`Sandbox::start`]) and as a binary
//! (`tessera-sandbox --port N`) for developing an integration by hand.
//!
//! | provider | token endpoint | protected endpoint |
//! |---|---|---|
//! | Shogun | `POST /shogun/api/v1/security/api/generate_token` (+ `GET …/validate_token`) | `GET /shogun/protected` |
//! | APIMW | `POST /apimw/v1/auth/token` | `GET /apimw/protected` |
//! | Setu | `POST /setu/api/v2/auth/token` | `GET /setu/protected` |
//! | StoneX | `POST /stonex/api/v/authentication` | `GET /stonex/protected` |
//! | OAuth 2.0 | `POST /oauth2/token` | `GET /oauth2/protected` |

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
pub use tessera_core::ProviderKind;

mod gate;
pub mod scenarios;

pub use gate::Gate;

/// The client id every provider accepts by default.
pub const CLIENT_ID: &str = "tessera-sandbox-client";
/// The secret every provider accepts by default. It holds a quote, a backslash, a colon, a
/// space and non-ASCII text, so every request encoder is exercised end to end.
pub const CLIENT_SECRET: &str = "s3cr3t: \"quoted\" back\\slash é";
/// Scopes granted (OAuth `scope`, StoneX `scope`, Shogun `authorities`).
pub const SCOPES: [&str; 2] = ["TRANSACTION_READ", "TRANSACTION_WRITE"];

/// An endpoint, for counting requests and injecting faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A provider's token endpoint.
    Token(ProviderKind),
    /// Shogun's validate endpoint.
    Validate,
    /// A provider's protected test endpoint.
    Protected(ProviderKind),
}

/// A fault to inject into the next request(s) to an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer with this status and a small JSON error body.
    Status(u16),
    /// 429, with `Retry-After` seconds when given.
    RateLimited {
        /// `Retry-After`, seconds.
        retry_after: Option<u64>,
    },
    /// A proxy's HTML error page with this status.
    Html(u16),
    /// 200 with a `Content-Length` promise, then the connection closes mid-body.
    DropMidBody,
    /// 200, complete HTTP, but the JSON is cut in half.
    Truncated,
    /// 200, complete HTTP, not JSON.
    Malformed,
    /// A normal grant whose (opaque) token has exactly this many bytes.
    OversizedToken(usize),
    /// 200, a normal body sent one byte per interval.
    SlowDrip(Duration),
    /// 200 with a body of this many bytes.
    HugeBody(usize),
    /// A normal answer labelled `Content-Type: text/html`.
    WrongContentType,
    /// Wait at the gate until it is released (other requests go on being served), then
    /// answer normally.
    Hold(Gate),
}

/// Every JWT any sandbox in this process issued, for the secret-hygiene audit.
static ISSUED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Every token the sandboxes of this process have issued so far (the signed JWTs; the
/// `OversizedToken` fault's filler tokens are not secrets and are not listed).
pub fn issued_tokens() -> Vec<String> {
    ISSUED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[derive(Default)]
struct Shared {
    credentials: HashMap<ProviderKind, (String, String)>,
    lifetimes: HashMap<ProviderKind, u64>,
    counts: HashMap<Endpoint, u64>,
    faults: HashMap<Endpoint, VecDeque<Fault>>,
    /// Tokens issued before this generation are revoked.
    generation: HashMap<ProviderKind, u64>,
    next_jti: u64,
    shogun_failures: u32,
    shogun_locked_until: Option<std::time::Instant>,
    lockout_threshold: u32,
    lockout: Duration,
}

struct Inner {
    key: [u8; 32],
    shared: Mutex<Shared>,
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
    pub fn start() -> std::io::Result<Sandbox> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts on `addr` (use a loopback address).
    pub fn start_on(addr: SocketAddr) -> std::io::Result<Sandbox> {
        Self::start_inner(addr, None)
    }

    /// Starts an HTTPS sandbox on a free port on 127.0.0.1, with a CA made for it and a
    /// server certificate (ECDSA P-256, TLS 1.3) whose common name is `common_name`.
    /// Returns the sandbox and the CA certificate (DER) clients must trust.
    pub fn start_tls(common_name: &str) -> std::io::Result<(Sandbox, Vec<u8>)> {
        let (ca, config) = tls_identity(common_name).map_err(std::io::Error::other)?;
        let sandbox = Self::start_inner(SocketAddr::from(([127, 0, 0, 1], 0)), Some(config))?;
        Ok((sandbox, ca))
    }

    fn start_inner(
        addr: SocketAddr,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> std::io::Result<Sandbox> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let mut key = [0u8; 32];
        // Unpredictable enough for a test server: a fresh random-keyed hash per byte pair.
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        let shared = Shared {
            lockout_threshold: 5,
            lockout: Duration::from_secs(60),
            ..Shared::default()
        };
        let inner = Arc::new(Inner {
            key,
            shared: Mutex::new(shared),
        });
        let tls_enabled = tls.is_some();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&inner);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("tessera-sandbox".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = Router::new().fallback(handle).with_state(state);
                    match tls {
                        None => tokio::select! {
                            _ = axum::serve(listener, app) => {}
                            _ = rx => {}
                        },
                        Some(config) => tokio::select! {
                            _ = serve_tls(listener, app, config) => {}
                            _ = rx => {}
                        },
                    }
                });
                // Connections still dripping are cut, not awaited.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        let scheme = if tls_enabled { "https" } else { "http" };
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
        let o = self.origin();
        match kind {
            ProviderKind::Shogun => format!("{o}/shogun/api/v1"),
            ProviderKind::Apimw => format!("{o}/apimw"),
            ProviderKind::Setu => format!("{o}/setu"),
            ProviderKind::StoneX => format!("{o}/stonex"),
            ProviderKind::OAuth2 => format!("{o}/oauth2/token"),
        }
    }

    /// The provider's protected test endpoint: 200 for a live token it issued, else 401.
    pub fn protected_url(&self, kind: ProviderKind) -> String {
        format!("{}/{}/protected", self.origin(), kind.name())
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.inner.shared.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Zeroes every count.
    pub fn reset_counts(&self) {
        self.shared().counts.clear();
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

/// Serves `app` over TLS: one task per connection, hyper's HTTP/1 on a rustls stream.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    config: Arc<tokio_rustls::rustls::ServerConfig>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client that rejects the certificate ends here: that is what tests check.
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// A fresh CA, and a server certificate for `common_name` it signed: (CA DER, config).
fn tls_identity(
    common_name: &str,
) -> Result<
    (Vec<u8>, Arc<tokio_rustls::rustls::ServerConfig>),
    Box<dyn std::error::Error + Send + Sync>,
> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::{version, ServerConfig};

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

fn route(method: &Method, path: &str) -> Option<Endpoint> {
    use ProviderKind::*;
    let ep = match (method.as_str(), path) {
        ("POST", "/shogun/api/v1/security/api/generate_token") => Endpoint::Token(Shogun),
        ("GET", "/shogun/api/v1/security/api/validate_token") => Endpoint::Validate,
        ("POST", "/apimw/v1/auth/token") => Endpoint::Token(Apimw),
        ("POST", "/setu/api/v2/auth/token") => Endpoint::Token(Setu),
        ("POST", "/stonex/api/v/authentication") => Endpoint::Token(StoneX),
        ("POST", "/oauth2/token") => Endpoint::Token(OAuth2),
        ("GET", p) => {
            let name = p.strip_prefix('/')?.strip_suffix("/protected")?;
            Endpoint::Protected(name.parse().ok()?)
        }
        _ => return None,
    };
    Some(ep)
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(endpoint) = route(&method, uri.path()) else {
        return respond(404, "application/json", r#"{"error":"not_found"}"#.into());
    };
    let fault = {
        let mut s = inner.lock();
        *s.counts.entry(endpoint).or_default() += 1;
        s.faults.get_mut(&endpoint).and_then(VecDeque::pop_front)
    };
    let mut oversized = None;
    match &fault {
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        Some(Fault::Hold(gate)) => gate.pass().await,
        Some(Fault::OversizedToken(n)) => oversized = Some(*n),
        Some(Fault::Status(code)) => {
            return respond(
                *code,
                "application/json",
                r#"{"error":"injected_fault"}"#.into(),
            )
        }
        Some(Fault::RateLimited { retry_after }) => {
            let mut r = respond(
                429,
                "application/json",
                r#"{"error":"rate_limited"}"#.into(),
            );
            if let Some(s) = retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, (*s).into());
            }
            return r;
        }
        Some(Fault::Html(code)) => {
            let page = format!("<html>\r\n<head><title>{code} Bad Gateway</title></head>\r\n<body><center><h1>{code} Bad Gateway</h1></center><hr><center>nginx</center></body></html>\r\n");
            return respond(*code, "text/html", page);
        }
        Some(Fault::Malformed) => {
            return respond(200, "application/json", "{this is not json".into())
        }
        Some(Fault::HugeBody(n)) => {
            let mut big = String::with_capacity(*n);
            big.push_str(r#"{"access_token":""#);
            big.extend(std::iter::repeat_n('x', n.saturating_sub(big.len())));
            return respond(200, "application/json", big);
        }
        _ => {}
    }
    let (status, content_type, text) = match endpoint {
        Endpoint::Token(kind) => inner.token(kind, &headers, &body, oversized),
        Endpoint::Validate => inner.validate(&headers),
        Endpoint::Protected(kind) => inner.protected(kind, &headers),
    };
    let mut extra_headers = Vec::new();
    if status == 401
        && endpoint == Endpoint::Token(ProviderKind::OAuth2)
        && headers.contains_key(header::AUTHORIZATION)
    {
        // RFC 6749 §5.2: a failed Basic authentication answers with WWW-Authenticate.
        extra_headers.push((header::WWW_AUTHENTICATE, "Basic realm=\"tessera-sandbox\""));
    }
    let mut response = match fault {
        Some(Fault::Truncated) => {
            let cut = text.len() / 2;
            respond(
                status,
                content_type,
                text.get(..cut).unwrap_or_default().to_owned(),
            )
        }
        Some(Fault::WrongContentType) => respond(status, "text/html; charset=utf-8", text),
        Some(Fault::DropMidBody) => {
            let bytes = Bytes::from(text);
            let promised = bytes.len();
            let head = bytes.slice(..promised / 3);
            let stream = futures_util::stream::iter(vec![
                Ok(head),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected: dropped mid-body",
                )),
            ]);
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, content_type)
                .header(header::CONTENT_LENGTH, promised)
                .body(Body::from_stream(stream))
                .unwrap_or_default()
        }
        Some(Fault::SlowDrip(every)) => {
            let bytes = text.into_bytes();
            let len = bytes.len();
            let stream =
                futures_util::stream::unfold((bytes, 0usize), move |(bytes, i)| async move {
                    if i >= bytes.len() {
                        return None;
                    }
                    tokio::time::sleep(every).await;
                    let chunk = Bytes::copy_from_slice(&bytes[i..=i]);
                    Some((Ok::<_, std::io::Error>(chunk), (bytes, i + 1)))
                });
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, content_type)
                .header(header::CONTENT_LENGTH, len)
                .body(Body::from_stream(stream))
                .unwrap_or_default()
        }
        _ => respond(status, content_type, text),
    };
    for (k, v) in extra_headers {
        response
            .headers_mut()
            .insert(k, v.parse().expect("static header value"));
    }
    response
}

fn respond(status: u16, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_default()
}

type Answer = (u16, &'static str, String);

const JSON_TYPE: &str = "application/json";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sign(&self, signing_input: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(signing_input.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Issues a JWT: `(token, lifetime)`.
    fn issue(&self, kind: ProviderKind, client_id: &str) -> (String, u64) {
        let (lifetime, jti, generation) = {
            let mut s = self.lock();
            s.next_jti += 1;
            let life = s.lifetimes.get(&kind).copied().unwrap_or(3600);
            (
                life,
                s.next_jti,
                s.generation.get(&kind).copied().unwrap_or(0),
            )
        };
        let iat = unix_now();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({
            "iss": format!("tessera-sandbox/{kind}"),
            "sub": client_id,
            "iat": iat,
            "exp": iat + lifetime,
            "jti": jti.to_string(),
            "gen": generation,
            "scp": SCOPES,
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let sig = self.sign(&input);
        let token = format!("{input}.{sig}");
        ISSUED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(token.clone());
        (token, lifetime)
    }

    /// The claims of a live token `kind` issued, or `None`.
    fn verify(&self, kind: ProviderKind, token: &str) -> Option<Value> {
        let (input, sig) = token.rsplit_once('.')?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        mac.update(input.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).ok()?).ok()?;
        let payload = input.split('.').nth(1)?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let generation = self.lock().generation.get(&kind).copied().unwrap_or(0);
        let live = claims["exp"].as_u64()? > unix_now()
            && claims["iss"] == format!("tessera-sandbox/{kind}")
            && claims["gen"].as_u64()? >= generation;
        live.then_some(claims)
    }

    fn credentials_ok(&self, kind: ProviderKind, id: &str, secret: &str) -> bool {
        let s = self.lock();
        match s.credentials.get(&kind) {
            Some((i, sec)) => i == id && sec == secret,
            None => id == CLIENT_ID && secret == CLIENT_SECRET,
        }
    }

    fn token(
        &self,
        kind: ProviderKind,
        headers: &HeaderMap,
        body: &[u8],
        oversized: Option<usize>,
    ) -> Answer {
        if kind == ProviderKind::OAuth2 {
            return self.oauth2(headers, body, oversized);
        }
        let (id_key, secret_key) = match kind {
            ProviderKind::Apimw => ("api_key", "api_secret"),
            ProviderKind::Setu => ("clientID", "secret"),
            _ => ("client_id", "client_secret"),
        };
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(id), Some(secret)) = (field(id_key), field(secret_key)) else {
            return (400, JSON_TYPE, json!({"error": "invalid_request", "message": "expected a JSON body with the credentials"}).to_string());
        };
        if kind == ProviderKind::Shogun {
            if let Some(answer) = self.shogun_lockout(&id, &secret) {
                return answer;
            }
        }
        if !self.credentials_ok(kind, &id, &secret) {
            return match kind {
                ProviderKind::Shogun => (401, JSON_TYPE, json!({"status": false, "message": "Invalid credentials"}).to_string()),
                ProviderKind::Apimw => (401, JSON_TYPE, json!({"success": false, "error": {"code": "INVALID_CREDENTIALS", "message": "Invalid API Key or Secret"}}).to_string()),
                ProviderKind::Setu => {
                    let trace = format!("{:08x}-sand-box0-0000-{:012x}", unix_now() & 0xffff_ffff, self.lock().next_jti);
                    (400, JSON_TYPE, json!({"status": 400, "success": false, "error": {
                        "code": "invalid-api-key",
                        "detail": format!("API key invalid [{id}], please recheck your credentials."),
                        "docURL": "", "title": "AUTHENTICATION_ERROR", "errors": [], "traceID": trace}}).to_string())
                }
                _ => (401, JSON_TYPE, json!({"error": "invalid_client", "error_description": "Client authentication failed."}).to_string()),
            };
        }
        let (token, lifetime) = match oversized {
            Some(n) => (
                "A".repeat(n),
                self.lock().lifetimes.get(&kind).copied().unwrap_or(3600),
            ),
            None => self.issue(kind, &id),
        };
        let body = match kind {
            ProviderKind::Shogun => {
                json!({"status": true, "message": "Authentication successful", "data": {
                "access_token": token, "token_type": "Bearer", "expires_in": lifetime,
                "client_id": id, "authorities": SCOPES}})
                .to_string()
            }
            ProviderKind::Apimw => {
                let refresh = format!("rt/{}", self.lock().next_jti);
                let text = json!({"success": true, "data": {
                    "access_token": token, "token_type": "Bearer", "expires_in": lifetime,
                    "refresh_token": refresh}})
                .to_string();
                // APIMW's backend is PHP, whose JSON encoder escapes every `/`.
                text.replace('/', "\\/")
            }
            ProviderKind::Setu => json!({"status": 200, "success": true, "data": {
                "expiresIn": lifetime.saturating_mul(6), "token": token}})
            .to_string(),
            _ => json!({"token_type": "Bearer", "expires_in": lifetime, "access_token": token,
                "scope": SCOPES.join(" ")})
            .to_string(),
        };
        (200, JSON_TYPE, body)
    }

    /// Shogun's lockout, checked before the credentials: `Some` answer while locked.
    fn shogun_lockout(&self, id: &str, secret: &str) -> Option<Answer> {
        let ok = self.credentials_ok(ProviderKind::Shogun, id, secret);
        let mut s = self.lock();
        let now = std::time::Instant::now();
        let locked = json!({"status": false, "message": "Temporarily locked due to too many failed attempts."}).to_string();
        if let Some(until) = s.shogun_locked_until {
            if now < until {
                return Some((429, JSON_TYPE, locked));
            }
            s.shogun_locked_until = None;
            s.shogun_failures = 0;
        }
        if ok {
            s.shogun_failures = 0;
            return None;
        }
        s.shogun_failures += 1;
        if s.shogun_failures >= s.lockout_threshold {
            s.shogun_locked_until = Some(now + s.lockout);
            return Some((429, JSON_TYPE, locked));
        }
        None
    }

    fn oauth2(&self, headers: &HeaderMap, body: &[u8], oversized: Option<usize>) -> Answer {
        let error = |status, code: &str, description: &str| {
            (
                status,
                JSON_TYPE,
                json!({"error": code, "error_description": description}).to_string(),
            )
        };
        let form = form_decode(body);
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        if get("grant_type").as_deref() != Some("client_credentials") {
            return error(
                400,
                "unsupported_grant_type",
                "grant_type must be client_credentials",
            );
        }
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .map(|b64| {
                let raw = STANDARD.decode(b64.trim()).unwrap_or_default();
                let text = String::from_utf8_lossy(&raw).into_owned();
                let (id, secret) = text.split_once(':').unwrap_or((&text, ""));
                (url_decode(id), url_decode(secret))
            });
        let in_body = get("client_id").map(|id| (id, get("client_secret").unwrap_or_default()));
        let (id, secret) = match (basic, in_body) {
            (Some(_), Some(_)) => {
                return error(
                    400,
                    "invalid_request",
                    "use one client authentication method",
                )
            }
            (Some(c), None) | (None, Some(c)) => c,
            (None, None) => return error(401, "invalid_client", "client authentication required"),
        };
        if !self.credentials_ok(ProviderKind::OAuth2, &id, &secret) {
            return error(401, "invalid_client", "Client authentication failed.");
        }
        if let Some(scope) = get("scope") {
            if scope.split(' ').any(|s| !SCOPES.contains(&s)) {
                return error(400, "invalid_scope", "unknown scope");
            }
        }
        let (token, lifetime) = match oversized {
            Some(n) => (
                "A".repeat(n),
                self.lock()
                    .lifetimes
                    .get(&ProviderKind::OAuth2)
                    .copied()
                    .unwrap_or(3600),
            ),
            None => self.issue(ProviderKind::OAuth2, &id),
        };
        let scope = get("scope").unwrap_or_else(|| SCOPES.join(" "));
        (200, JSON_TYPE, json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}).to_string())
    }

    fn bearer(headers: &HeaderMap) -> Option<&str> {
        headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
    }

    fn validate(&self, headers: &HeaderMap) -> Answer {
        let claims = Self::bearer(headers).and_then(|t| self.verify(ProviderKind::Shogun, t));
        let Some(c) = claims else {
            return (
                401,
                JSON_TYPE,
                json!({"status": false, "message": "Invalid authentication token"}).to_string(),
            );
        };
        let iso = |v: &Value| iso8601_no_zone(v.as_u64().unwrap_or(0));
        (
            200,
            JSON_TYPE,
            json!({"status": true, "message": "Token is valid", "data": {
            "username": "sandbox", "client_id": c["sub"], "authorities": SCOPES,
            "issued_at": iso(&c["iat"]), "expires_at": iso(&c["exp"])}})
            .to_string(),
        )
    }

    fn protected(&self, kind: ProviderKind, headers: &HeaderMap) -> Answer {
        match Self::bearer(headers).and_then(|t| self.verify(kind, t)) {
            Some(c) => (
                200,
                JSON_TYPE,
                json!({"ok": true, "provider": kind.name(), "client_id": c["sub"]}).to_string(),
            ),
            None => (
                401,
                JSON_TYPE,
                json!({"error": "invalid_token"}).to_string(),
            ),
        }
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS` (UTC, no zone: Shogun's format).
pub fn iso8601_no_zone(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let secs = unix % 86_400;
    let (y, m, d) = tessera_vectors::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (b[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(h)) => {
                let h = std::str::from_utf8(h).unwrap_or("00");
                out.push(u8::from_str_radix(h, 16).unwrap_or(0));
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_decode(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_round_trip_through_the_core_parser() {
        for unix in [
            0u64,
            951_782_400,
            1_705_314_600,
            4_102_444_800,
            253_402_300_799,
        ] {
            let text = iso8601_no_zone(unix);
            assert_eq!(
                tessera_core::timestamp::parse(&text),
                Ok(unix as i64),
                "{text}"
            );
        }
        assert_eq!(iso8601_no_zone(1_705_314_600), "2024-01-15T10:30:00");
    }

    #[test]
    fn url_decoding() {
        assert_eq!(url_decode("a+b%3Ac%25%E2%82%AC"), "a b:c%€");
        assert_eq!(url_decode("bad%zz%4"), "bad%zz%4");
    }
}
