//! [`Options`]: timeouts, buffers, trust roots and proxies.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tessera_core::session::Config;
use ureq::tls::{Certificate, PemItem};

use crate::error::{Error, TrustError};

/// Network and buffer settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// The token lifecycle's settings. `session.allow_insecure_http` also governs
    /// downstream calls: a bearer token is a secret too.
    pub session: Config,
    /// Seed of the backoff jitter, given to the session. The default is random per process,
    /// so hosts that failed together do not retry together.
    pub jitter_seed: u64,
    /// Connect timeout (name resolution, TCP, proxy, TLS handshake). Default 10 s. A host
    /// name is resolved on a kept resolver thread and waited for at most this long (an IP
    /// literal needs no resolution at all), so a hung DNS server cannot stall a caller.
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, send, receive). Default 30 s.
    pub request_timeout: Duration,
    /// Largest response body read; a larger one is an error, never a memory blow-up.
    /// Default 64 KiB.
    pub max_body: usize,
    /// Buffer for the token request (body and `Authorization`). Default 4 KiB.
    pub request_buffer: usize,
    /// Run a due refresh on a background thread (default), so the caller that triggers it
    /// does not wait; `false` runs it in that caller's thread (single-threaded tools, tests).
    pub refresh_in_background: bool,
    /// Which certificates `https://` servers are checked against. Default
    /// [`Trust::WebPki`]. There is no "verify nothing" setting.
    pub trust: Trust,
    /// Which proxy `https://` requests go through. Default [`Proxy::Env`]. A plaintext
    /// `http://` request never goes through a proxy.
    pub proxy: Proxy,
    /// Where the token is kept beyond this process's memory: a [`FileStore`](crate::FileStore)
    /// for a process that restarts, a `RedisStore` (feature `redis`) for a fleet. Default
    /// none. See [`crate::TokenStore`] for how the client uses it.
    pub store: Option<Arc<dyn crate::TokenStore>>,
    /// The key that seals stored tokens: `None` (default) derives it from the client secret;
    /// an application key (from a secrets manager) protects a weak secret from offline
    /// guessing against a stolen snapshot.
    pub store_key: Option<crate::StoreKey>,
    /// The wall clock: `Retry-After` dates and stored tokens' expiry are read against it.
    /// Default the system's; tests inject one that moves with their monotonic clock.
    pub wall_clock: Arc<dyn crate::WallClock>,
    /// How wrong this host's wall clock may be (NTP's error plus skew between hosts): a
    /// stored token is used for that much less than its life. Default 2 s. A host whose
    /// clock is not kept by NTP should not use a store.
    pub wall_clock_uncertainty: Duration,
}

impl Default for Options {
    fn default() -> Self {
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            // Per-process randomness for the backoff jitter: no two hosts retry in step.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::process::id().into());
            h.finish()
        };
        let session = Config::default();
        Options {
            jitter_seed: seed,
            connect_timeout: Duration::from_secs(10),
            request_timeout: session.fetch_timeout,
            session,
            max_body: 64 * 1024,
            request_buffer: 4096,
            refresh_in_background: true,
            trust: Trust::default(),
            proxy: Proxy::default(),
            store: None,
            store_key: None,
            wall_clock: Arc::new(crate::SystemWallClock),
            wall_clock_uncertainty: Duration::from_secs(2),
        }
    }
}

/// Which roots a server certificate must chain to. The host name is always checked against
/// the certificate's subjectAltNames.
///
/// ```no_run
/// use tessera_std::{Options, Trust};
/// // Only the company's own CA (one or more PEM certificates in the file):
/// let options = Options {
///     trust: Trust::from_pem_file("/etc/payments/ca.pem")?,
///     ..Options::default()
/// };
/// # Ok::<(), tessera_std::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub enum Trust {
    /// Mozilla's roots, compiled in (the `webpki-roots` crate): the same answer on every
    /// machine, whatever its certificate store holds. The default.
    #[default]
    WebPki,
    /// The operating system's certificate store and verifier (`rustls-platform-verifier`):
    /// for hosts whose administrators install a corporate root there.
    Platform,
    /// The application's own roots and nothing else: made by [`Trust::from_pem`] or
    /// [`Trust::from_pem_file`].
    Roots(Roots),
}

/// Root certificates the application chose (see [`Trust::from_pem`]). `Debug` shows how
/// many.
#[derive(Clone)]
pub struct Roots(pub(crate) Arc<Vec<Certificate<'static>>>);

impl Roots {
    /// How many certificates.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never, for roots made by [`Trust::from_pem`]).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Roots({} certificates)", self.0.len())
    }
}

impl Trust {
    /// Trusts exactly the certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks;
    /// other PEM items, such as keys, are ignored). No certificate, a block that is not
    /// valid PEM, or a certificate that cannot serve as a root is an [`Error::Trust`], here,
    /// so making a client with it cannot fail later.
    pub fn from_pem(pem: &[u8]) -> Result<Trust, Error> {
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(PemItem::Certificate(cert)) => {
                    let der = rustls_pki_der(&cert);
                    if webpki::anchor_from_trusted_cert(&der).is_err() {
                        return Err(Error::Trust(TrustError::BadCertificate {
                            index: certs.len(),
                        }));
                    }
                    certs.push(cert);
                }
                Ok(_) => {}
                Err(_) => return Err(Error::Trust(TrustError::BadPem)),
            }
        }
        if certs.is_empty() {
            return Err(Error::Trust(TrustError::NoCertificate));
        }
        Ok(Trust::Roots(Roots(Arc::new(certs))))
    }

    /// [`Trust::from_pem`] on a file's contents. A file that cannot be read is
    /// [`TrustError::Read`].
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Trust, Error> {
        let pem = std::fs::read(path).map_err(|e| Error::Trust(TrustError::Read(e)))?;
        Self::from_pem(&pem)
    }

    pub(crate) fn root_certs(&self) -> ureq::tls::RootCerts {
        match self {
            Trust::WebPki => ureq::tls::RootCerts::WebPki,
            Trust::Platform => ureq::tls::RootCerts::PlatformVerifier,
            Trust::Roots(r) => ureq::tls::RootCerts::Specific(Arc::clone(&r.0)),
        }
    }
}

fn rustls_pki_der(cert: &Certificate<'_>) -> rustls::pki_types::CertificateDer<'static> {
    rustls::pki_types::CertificateDer::from(cert.der().to_vec())
}

/// Which proxy `https://` requests take.
///
/// Only `https://` requests ever use a proxy, through a `CONNECT` tunnel, so the proxy sees
/// the host name but neither the secret nor the token. A plaintext `http://` request (to a
/// loopback sandbox, or a LAN one with
/// [`allow_insecure_http`](tessera_core::session::Config::allow_insecure_http)) always goes
/// straight to its host, whatever the environment says, so the secret can never reach a
/// proxy in plaintext.
#[derive(Clone, Debug, Default)]
pub enum Proxy {
    /// The environment's proxy for `https://`: the first of `ALL_PROXY`, `HTTPS_PROXY`,
    /// `HTTP_PROXY` (or their lowercase forms) that is set, with `NO_PROXY` honoured, read
    /// when the client is made. The default.
    #[default]
    Env,
    /// No proxy, whatever the environment says.
    None,
    /// This proxy (made by [`Proxy::url`]), whatever the environment says.
    Url(ProxyUrl),
}

/// A proxy address checked by [`Proxy::url`]. `Debug` shows its host and port only (a
/// proxy URL may carry a password).
#[derive(Clone)]
pub struct ProxyUrl(pub(crate) ureq::Proxy);

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({}:{})", self.0.host(), self.0.port())
    }
}

impl Proxy {
    /// The proxy at `url`: `http://host:port` (a `CONNECT` proxy), with optional
    /// `user:password@`. A URL that is not a proxy address is
    /// [`Error::Proxy`].
    pub fn url(url: &str) -> Result<Proxy, Error> {
        ureq::Proxy::new(url)
            .map(|p| Proxy::Url(ProxyUrl(p)))
            .map_err(|_| Error::Proxy)
    }

    /// The ureq proxy setting for `https://` requests.
    pub(crate) fn resolve(&self) -> Option<ureq::Proxy> {
        match self {
            Proxy::Env => ureq::Proxy::try_from_env(),
            Proxy::None => None,
            Proxy::Url(p) => Some(p.0.clone()),
        }
    }
}
