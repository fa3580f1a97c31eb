//! [`Options`]: timeouts, buffers, trust roots and proxies: tessera-std's settings, with the
//! same names and meanings.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::session::Config;
use tessera_host::{defaults, Proxy, SystemWallClock, Trust, WallClock};

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
    /// name is resolved on tokio's blocking pool and waited for at most this long (an IP
    /// literal or `localhost` needs no resolution at all).
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, send, receive the whole body). Default 30 s.
    pub request_timeout: Duration,
    /// Largest token or validate answer read; a larger one is an error, never a memory
    /// blow-up. Default 64 KiB. (A [`Client::call`](crate::Client::call) response is
    /// streamed to the caller, who reads it as it likes.)
    pub max_body: usize,
    /// Buffer for the token request (body and `Authorization`). Default 4 KiB.
    pub request_buffer: usize,
    /// Run a due refresh in a background task (default), so the caller that finds it due
    /// does not wait; `false` runs it in that caller's future.
    pub refresh_in_background: bool,
    /// Which certificates `https://` servers are checked against. Default
    /// [`Trust::WebPki`]. There is no "verify nothing" setting.
    pub trust: Trust,
    /// Which proxy `https://` requests go through. Default [`Proxy::Env`]. A plaintext
    /// `http://` request never goes through a proxy.
    pub proxy: Proxy,
    /// Where the token is kept beyond this process's memory: a [`FileStore`](crate::FileStore)
    /// for a process that restarts, a `RedisStore` (feature `redis`) for a fleet. The same
    /// records as tessera-std's, so blocking and async processes share one token. Default
    /// none.
    pub store: Option<Arc<dyn crate::TokenStore>>,
    /// The key that seals stored tokens: `None` (default) derives it from the client secret;
    /// an application key (from a secrets manager) protects a weak secret from offline
    /// guessing against a stolen snapshot.
    pub store_key: Option<crate::StoreKey>,
    /// The wall clock: `Retry-After` dates and stored tokens' expiry are read against it.
    /// Default the system's;
    /// tests inject one that moves with their monotonic clock.
    pub wall_clock: Arc<dyn WallClock>,
    /// How wrong this host's wall clock may be (NTP's error plus skew between hosts): a
    /// stored token is used for that much less than its life. Default 2 s.
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
            wall_clock: Arc::new(SystemWallClock),
            wall_clock_uncertainty: defaults::WALL_CLOCK_UNCERTAINTY,
        }
    }
}
