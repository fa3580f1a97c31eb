//! [`Options`]: timeouts, buffers, trust roots and proxies.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::session::Config;
use tessera_host::defaults;
pub use tessera_host::{Proxy, ProxyError, ProxyUrl, Roots, Trust};
use ureq::tls::Certificate;

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
        let session = Config::default();
        Options {
            jitter_seed: defaults::jitter_seed(),
            connect_timeout: defaults::CONNECT_TIMEOUT,
            request_timeout: session.fetch_timeout,
            session,
            max_body: defaults::MAX_BODY,
            request_buffer: defaults::REQUEST_BUFFER,
            refresh_in_background: true,
            trust: Trust::default(),
            proxy: Proxy::default(),
            store: None,
            store_key: None,
            wall_clock: Arc::new(crate::SystemWallClock),
            wall_clock_uncertainty: defaults::WALL_CLOCK_UNCERTAINTY,
        }
    }
}

/// The ureq setting for `trust`'s roots.
pub(crate) fn root_certs(trust: &Trust) -> ureq::tls::RootCerts {
    match trust {
        Trust::WebPki => ureq::tls::RootCerts::WebPki,
        Trust::Platform => ureq::tls::RootCerts::PlatformVerifier,
        Trust::Roots(r) => ureq::tls::RootCerts::Specific(Arc::new(
            r.certificates()
                .iter()
                .map(|der| Certificate::from_der(der.as_ref()).to_owned())
                .collect(),
        )),
        // `Trust` may grow; an unknown kind trusts nothing rather than everything.
        #[allow(unreachable_patterns)]
        _ => ureq::tls::RootCerts::Specific(Arc::new(Vec::new())),
    }
}

/// The ureq proxy for `https://` requests. `Proxy::Env` is read by ureq, whose rules are
/// the ones [`Proxy::Env`] documents (`ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`).
pub(crate) fn ureq_proxy(proxy: &Proxy) -> Option<ureq::Proxy> {
    match proxy {
        Proxy::Env => ureq::Proxy::try_from_env(),
        Proxy::None => None,
        // Checked when it was made (tessera-host accepts only forms ureq reads too); should
        // ureq ever refuse one, say so rather than go direct quietly.
        Proxy::Url(p) => match ureq::Proxy::new(p.as_str()) {
            Ok(proxy) => Some(proxy),
            Err(_) => {
                warn!("tessera: ureq cannot use the proxy {p:?}; https goes direct");
                None
            }
        },
        #[allow(unreachable_patterns)]
        _ => None,
    }
}
