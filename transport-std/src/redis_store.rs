//! [`RedisStore`]: one token per credential for a whole fleet (feature `redis`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::store::{Binding, Lease, StoreError, TokenStore};

/// How often a waiting process looks for the lease holder's token.
const POLL: Duration = Duration::from_millis(10);

/// Compare-and-delete: releases a lease only while it still carries this holder's fence.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Shares one token per credential across processes and machines, on Redis.
///
/// Records, for a binding `b` (the credential's fingerprint, no secret), under a prefix
/// (default `tessera`):
///
/// | key | value |
/// |---|---|
/// | `tessera:{b}:token` | the sealed snapshot, expiring with the token |
/// | `tessera:{b}:lease` | the fetch lease's fencing value (`SET NX PX`, ≈ the fetch timeout) |
/// | `tessera:{b}:refused` | the status of a refusal of this credential, for a while |
///
/// The `{b}` is a hash tag: in **Redis Cluster** all three keys of a binding hash to one
/// slot, so they live on one shard (and a future multi-key script stays legal). Managed
/// Redis (ElastiCache, Memorystore, Azure Cache) works as is; use `rediss://` where the
/// service offers TLS, and a prefix per environment when one Redis serves several.
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
    fences: AtomicU64,
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
    /// `user:password@` when needed). Nothing is connected until first use.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::new("open", e))?;
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish()
        };
        Ok(RedisStore {
            client,
            connection: Mutex::new(None),
            timeout: Duration::from_millis(250),
            prefix: "tessera".into(),
            fences: AtomicU64::new(seed),
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
        format!("{}:{{{}}}:{what}", self.prefix, binding.as_str())
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

    fn fence(&self) -> String {
        // Unique per process (random seed) and per lease (counter).
        let n = self
            .fences
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        format!("{:x}-{n:016x}", std::process::id())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl TokenStore for RedisStore {
    fn load(&self, binding: &Binding) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(binding, "token");
        self.with("load", |c| redis::cmd("GET").arg(&key).query(c))
    }

    fn save(&self, binding: &Binding, snapshot: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let key = self.key(binding, "token");
        self.with("save", |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(snapshot)
                .arg("PX")
                .arg(millis(ttl))
                .query(c)
        })
    }

    fn acquire(&self, binding: &Binding, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let key = self.key(binding, "lease");
        let fence = self.fence();
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
            redis::Script::new(RELEASE)
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

    fn refuse(&self, binding: &Binding, status: u16, ttl: Duration) -> Result<(), StoreError> {
        let key = self.key(binding, "refused");
        self.with("refuse", |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(status)
                .arg("PX")
                .arg(millis(ttl))
                .query(c)
        })
    }

    fn refusal(&self, binding: &Binding) -> Result<Option<u16>, StoreError> {
        let key = self.key(binding, "refused");
        self.with("refusal", |c| redis::cmd("GET").arg(&key).query(c))
    }
}
