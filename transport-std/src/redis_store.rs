//! [`RedisStore`]: one token per credential for a whole fleet (feature `redis`).

use std::sync::Mutex;
use std::time::Duration;

use tessera_host::store::pem;
use tessera_host::store::redis::{key, millis, Fences, Record, COMPARE_AND_DELETE};
use tessera_host::store::redis::{DEFAULT_PREFIX, DEFAULT_TIMEOUT, POLL};

use crate::options::Trust;
use crate::store::{Binding, Lease, StoreError, TokenStore};

/// Shares one token per credential across processes and machines, on Redis.
///
/// Records, for a binding `b` (the credential's fingerprint, no secret), under a prefix
/// (default `tessera`):
///
/// | key | value |
/// |---|---|
/// | `tessera:{b}:token` | the sealed snapshot, expiring with the token |
/// | `tessera:{b}:lease` | the fetch lease's fencing value (`SET NX PX`, ≈ the fetch timeout) |
/// | `tessera:{b}:refused` | a sealed refusal of this credential, lapsing after the refusal period |
///
/// The `{b}` is a hash tag: in **Redis Cluster** all three keys of a binding hash to one
/// slot, so they live on one shard (and a future multi-key script stays legal). Managed
/// Redis (ElastiCache, Memorystore, Azure Cache) works as is; use `rediss://` (TLS, which
/// they require; the server's certificate is checked like the client's, see
/// [`RedisStore::open_with`]), and a prefix per environment when one Redis serves several.
///
/// Every operation is bounded by the store's timeout (default 250 ms); a failed connection
/// is dropped and made again on the next use. Reading Redis yields neither the token
/// (sealed) nor the secret (never stored).
///
/// ```no_run
/// use std::sync::Arc;
/// use tessera_std::{Client, Options, RedisStore, core::{Credentials, OAuth2}};
///
/// let store = RedisStore::open("redis://cache.internal:6379/0")?;
/// let options = Options { store: Some(Arc::new(store)), ..Options::default() };
/// let creds = Credentials::new("payments-api", &std::env::var("CLIENT_SECRET")?)?;
/// let client = Client::with_options(OAuth2::new("https://idp.example/token"), creds, options);
/// let token = client.token()?; // one provider request per token lifetime, fleet-wide
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisStore {
    client: redis::Client,
    connection: Mutex<Option<redis::Connection>>,
    timeout: Duration,
    prefix: String,
    fences: Fences,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never printed.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://host:port/db`, `rediss://…`, with
    /// `user:password@` when needed); a `rediss://` server's certificate must chain to
    /// the webpki roots ([`Trust::WebPki`]). Nothing is connected until first use.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, &Trust::WebPki)
    }

    /// [`RedisStore::open`], checking a `rediss://` server's certificate against `trust`,
    /// the same setting as the client's ([`Options::trust`](crate::Options)): webpki
    /// roots, the OS's store, or the application's own PEM roots (a private CA, the CLI's
    /// `--ca`). The host name is always checked. `redis://` ignores `trust`.
    pub fn open_with(url: &str, trust: &Trust) -> Result<Self, StoreError> {
        let open = |e: redis::RedisError| StoreError::new("open", e);
        let tls = url
            .get(..9)
            .is_some_and(|s| s.eq_ignore_ascii_case("rediss://"));
        let client = if tls {
            // redis-rs builds its rustls configuration with the process's default crypto
            // provider: the ring provider the HTTP client uses, unless the application
            // installed one.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let root_cert = match trust {
                Trust::WebPki => None,
                Trust::Platform => Some(platform_roots_pem()?),
                Trust::Roots(roots) => Some(pem(roots.certificates().iter().map(|c| c.as_ref()))),
            };
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert,
                },
            )
            .map_err(open)?
        } else {
            redis::Client::open(url).map_err(open)?
        };
        Ok(RedisStore {
            client,
            connection: Mutex::new(None),
            timeout: DEFAULT_TIMEOUT,
            prefix: DEFAULT_PREFIX.into(),
            fences: Fences::new(),
        })
    }

    /// Bounds every Redis operation (connect, read, write). Default 250 ms.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The first part of every key. Default `tessera`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn key(&self, binding: &Binding, what: &str) -> String {
        let record = match what {
            "token" => Record::Token,
            "lease" => Record::Lease,
            _ => Record::Refused,
        };
        key(&self.prefix, binding, record)
    }

    /// Runs `f` on the connection, making one if needed; a failed one is dropped.
    fn with<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut slot = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let c = self
                .client
                .get_connection_with_timeout(self.timeout)
                .map_err(|e| StoreError::new(op, e))?;
            c.set_read_timeout(Some(self.timeout))
                .and_then(|()| c.set_write_timeout(Some(self.timeout)))
                .map_err(|e| StoreError::new(op, e))?;
            *slot = Some(c);
        }
        let Some(c) = slot.as_mut() else {
            return Err(StoreError::new(op, "no connection"));
        };
        match f(c) {
            Ok(v) => Ok(v),
            Err(e) => {
                *slot = None;
                Err(StoreError::new(op, e))
            }
        }
    }
}

/// The OS's trusted roots as PEM, for redis-rs.
fn platform_roots_pem() -> Result<Vec<u8>, StoreError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(StoreError::new(
            "open",
            format!("the platform's trusted roots: {why}"),
        ));
    }
    Ok(pem(found.certs.iter().map(|c| c.as_ref())))
}

impl TokenStore for RedisStore {
    fn load(&self, binding: &Binding) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(binding, "token");
        self.with("load", |c| redis::cmd("GET").arg(&key).query(c))
    }

    fn save(&self, binding: &Binding, snapshot: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let key = self.key(binding, "token");
        let refused = self.key(binding, "refused");
        self.with("save", |c| {
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&key)
                .arg(snapshot)
                .arg("PX")
                .arg(millis(ttl))
                .ignore()
                .cmd("DEL")
                .arg(&refused)
                .ignore()
                .query(c)
        })
    }

    fn discard(&self, binding: &Binding, snapshot: &[u8]) -> Result<bool, StoreError> {
        let key = self.key(binding, "token");
        self.with("discard", |c| {
            redis::Script::new(COMPARE_AND_DELETE)
                .key(&key)
                .arg(snapshot)
                .invoke::<i64>(c)
                .map(|n| n == 1)
        })
    }

    fn acquire(&self, binding: &Binding, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let key = self.key(binding, "lease");
        let fence = self.fences.next();
        let set: Option<String> = self.with("lease", |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(&fence)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .query(c)
        })?;
        Ok(set.map(|_| Lease::new(fence)))
    }

    fn release(&self, binding: &Binding, lease: &Lease) -> Result<(), StoreError> {
        let key = self.key(binding, "lease");
        self.with("release", |c| {
            redis::Script::new(COMPARE_AND_DELETE)
                .key(&key)
                .arg(lease.fence())
                .invoke::<i64>(c)
                .map(drop)
        })
    }

    fn wait(&self, binding: &Binding, timeout: Duration) -> Result<(), StoreError> {
        let lease = self.key(binding, "lease");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            // The holder stores its token (or refusal) before it gives the lease back, so a
            // free lease (released, or lapsed with a dead holder) is the moment to look.
            let held: bool = self.with("wait", |c| redis::cmd("EXISTS").arg(&lease).query(c))?;
            let now = std::time::Instant::now();
            if !held || now >= deadline {
                return Ok(());
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    fn refuse(
        &self,
        binding: &Binding,
        record: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let key = self.key(binding, "refused");
        self.with("refuse", |c| {
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(record);
            if let Some(ttl) = ttl {
                set.arg("PX").arg(millis(ttl));
            }
            set.query(c)
        })
    }

    fn refusal(&self, binding: &Binding) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(binding, "refused");
        self.with("refusal", |c| redis::cmd("GET").arg(&key).query(c))
    }
}
