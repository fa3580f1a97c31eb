//! [`RedisStore`]: one token per credential for a whole fleet, on Redis, async (feature
//! `redis`): the same keys, sealing, lease and fencing as tessera-std's `RedisStore`, so a
//! blocking and an async process with one credential share one token.

use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tessera_host::store::redis::{key, millis, Fences, Record, COMPARE_AND_DELETE};
use tessera_host::store::redis::{DEFAULT_PREFIX, DEFAULT_TIMEOUT, POLL};
use tessera_host::Trust;

use crate::store::{Binding, Lease, StoreError, StoreFuture, TokenStore};

/// Shares one token per credential across processes and machines, on Redis, with redis-rs's
/// tokio connection manager (one multiplexed connection, made again after a failure).
///
/// The records are tessera-std's (`tessera_host::store::redis`): `tessera:{b}:token`,
/// `tessera:{b}:lease`, `tessera:{b}:refused`, for a binding `b` that reveals no secret.
/// Every operation is bounded by the store's timeout (default 250 ms): a Redis that is down
/// or slow costs that wait and one warning, and the client carries on alone.
///
/// ```no_run
/// use std::sync::Arc;
/// use tessera_tokio::{Client, Options, OwnedProvider, RedisStore};
/// use tessera_tokio::core::{Credentials, ProviderKind};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::open("redis://cache.internal:6379/0")?;
/// let options = Options { store: Some(Arc::new(store)), ..Options::default() };
/// let idp = OwnedProvider::new(ProviderKind::OAuth2, "https://idp.example/token");
/// let creds = Credentials::new("payments-api", &std::env::var("CLIENT_SECRET")?)?;
/// let client = Client::with_options(idp, creds, options)?;
/// let token = client.token().await?; // one provider request per token lifetime, fleet-wide
/// # Ok(())
/// # }
/// ```
pub struct RedisStore {
    client: redis::Client,
    connection: OnceLock<ConnectionManager>,
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
    /// `user:password@` when needed); a `rediss://` server's certificate must chain to the
    /// webpki roots. Nothing is connected until first use.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, &Trust::WebPki)
    }

    /// [`RedisStore::open`], checking a `rediss://` server's certificate against `trust`
    /// (the client's own setting: webpki roots, the OS's store, or the application's PEM
    /// roots). The host name is always checked. `redis://` ignores `trust`.
    pub fn open_with(url: &str, trust: &Trust) -> Result<Self, StoreError> {
        let open = |e: redis::RedisError| StoreError::new("open", e);
        let tls = url
            .get(..9)
            .is_some_and(|s| s.eq_ignore_ascii_case("rediss://"));
        let client = if tls {
            // redis-rs builds its rustls configuration with the process's default crypto
            // provider: ring, the one tessera's HTTP clients use, unless the application
            // installed another.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let root_cert = match trust {
                Trust::WebPki => None,
                Trust::Platform => Some(platform_roots_pem()?),
                Trust::Roots(roots) => Some(tessera_host::store::pem(
                    roots.certificates().iter().map(|c| c.as_ref()),
                )),
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
            connection: OnceLock::new(),
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

    /// The first part of every key. Default `tessera` (the same as tessera-std's, so both
    /// share records).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn key(&self, binding: &Binding, record: Record) -> String {
        key(&self.prefix, binding, record)
    }

    /// Runs `f` on the connection manager (made lazily on first use, within a tokio
    /// runtime), bounded by the timeout.
    async fn with<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let manager = match self.connection.get() {
            Some(m) => m.clone(),
            None => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(0);
                let m = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .map_err(|e| StoreError::new(op, e))?;
                self.connection.get_or_init(|| m).clone()
            }
        };
        match tokio::time::timeout(self.timeout, f(manager)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::new(op, e)),
            Err(_) => Err(StoreError::new(op, "no answer within the store's timeout")),
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
    Ok(tessera_host::store::pem(
        found.certs.iter().map(|c| c.as_ref()),
    ))
}

impl TokenStore for RedisStore {
    fn load<'a>(&'a self, binding: &'a Binding) -> StoreFuture<'a, Option<Vec<u8>>> {
        let key = self.key(binding, Record::Token);
        Box::pin(self.with("load", move |mut c| async move {
            redis::cmd("GET").arg(&key).query_async(&mut c).await
        }))
    }

    fn save<'a>(
        &'a self,
        binding: &'a Binding,
        snapshot: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        let key = self.key(binding, Record::Token);
        let refused = self.key(binding, Record::Refused);
        Box::pin(self.with("save", move |mut c| async move {
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
                .query_async(&mut c)
                .await
        }))
    }

    fn discard<'a>(&'a self, binding: &'a Binding, snapshot: &'a [u8]) -> StoreFuture<'a, bool> {
        let key = self.key(binding, Record::Token);
        Box::pin(self.with("discard", move |mut c| async move {
            redis::Script::new(COMPARE_AND_DELETE)
                .key(&key)
                .arg(snapshot)
                .invoke_async::<i64>(&mut c)
                .await
                .map(|n| n == 1)
        }))
    }

    fn acquire<'a>(
        &'a self,
        binding: &'a Binding,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<Lease>> {
        let key = self.key(binding, Record::Lease);
        let fence = self.fences.next();
        Box::pin(async move {
            let set: Option<String> = self
                .with("lease", |mut c| {
                    let fence = fence.clone();
                    async move {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(&fence)
                            .arg("NX")
                            .arg("PX")
                            .arg(millis(ttl))
                            .query_async(&mut c)
                            .await
                    }
                })
                .await?;
            Ok(set.map(|_| Lease::new(fence)))
        })
    }

    fn release<'a>(&'a self, binding: &'a Binding, lease: &'a Lease) -> StoreFuture<'a, ()> {
        let key = self.key(binding, Record::Lease);
        Box::pin(self.with("release", move |mut c| async move {
            redis::Script::new(COMPARE_AND_DELETE)
                .key(&key)
                .arg(lease.fence())
                .invoke_async::<i64>(&mut c)
                .await
                .map(drop)
        }))
    }

    fn wait<'a>(&'a self, binding: &'a Binding, timeout: Duration) -> StoreFuture<'a, ()> {
        let lease = self.key(binding, Record::Lease);
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                // The holder stores its token (or refusal) before it gives the lease back,
                // so a free lease (released, or lapsed with a dead holder) is the moment to
                // look.
                let held: bool = self
                    .with("wait", |mut c| {
                        let lease = lease.clone();
                        async move { redis::cmd("EXISTS").arg(&lease).query_async(&mut c).await }
                    })
                    .await?;
                let now = tokio::time::Instant::now();
                if !held || now >= deadline {
                    return Ok(());
                }
                tokio::time::sleep(POLL.min(deadline - now)).await;
            }
        })
    }

    fn refuse<'a>(
        &'a self,
        binding: &'a Binding,
        record: &'a [u8],
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        let key = self.key(binding, Record::Refused);
        Box::pin(self.with("refuse", move |mut c| async move {
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(record);
            if let Some(ttl) = ttl {
                set.arg("PX").arg(millis(ttl));
            }
            set.query_async(&mut c).await
        }))
    }

    fn refusal<'a>(&'a self, binding: &'a Binding) -> StoreFuture<'a, Option<Vec<u8>>> {
        let key = self.key(binding, Record::Refused);
        Box::pin(self.with("refusal", move |mut c| async move {
            redis::cmd("GET").arg(&key).query_async(&mut c).await
        }))
    }
}
