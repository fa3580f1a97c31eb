//! Token stores for the async client: the same records, names and rules as tessera-std's
//! (they come from one place, `tessera_host::store`), behind an async trait, so blocking
//! and async processes with one credential form one fleet and share one token.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use tessera_host::store::{Binding, FileStore, Lease, StoreError, StoreKey};

/// A store operation's future: bounded in time, `Send`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where an async client keeps its token beyond its own memory: a [`FileStore`], or a
/// `RedisStore` (feature `redis`) for a fleet. The methods mean what tessera-std's
/// `TokenStore`'s do (see `tessera_host::store::TokenStore` for the rules the client
/// follows around a fetch); only they are awaited.
///
/// Implementations must be bounded in time: every method may run while a caller of
/// `token()` waits. Records are opaque sealed bytes: a store never needs to read them.
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// The sealed snapshot stored for `binding`, if any.
    fn load<'a>(&'a self, binding: &'a Binding) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Stores `snapshot` for `binding` for `ttl`; a token supersedes a stored refusal.
    fn save<'a>(
        &'a self,
        binding: &'a Binding,
        snapshot: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, ()>;

    /// Removes the snapshot stored for `binding` only if it is still exactly `snapshot`.
    fn discard<'a>(&'a self, binding: &'a Binding, snapshot: &'a [u8]) -> StoreFuture<'a, bool>;

    /// Tries to take the fetch lease for `binding` for `ttl`.
    fn acquire<'a>(&'a self, binding: &'a Binding, ttl: Duration)
        -> StoreFuture<'a, Option<Lease>>;

    /// Gives the lease back, if it is still this holder's.
    fn release<'a>(&'a self, binding: &'a Binding, lease: &'a Lease) -> StoreFuture<'a, ()>;

    /// Waits, at most `timeout`, until the lease is free; returning early is allowed.
    fn wait<'a>(&'a self, binding: &'a Binding, timeout: Duration) -> StoreFuture<'a, ()>;

    /// Stores the sealed refusal `record` for `binding` for `ttl` (`None`: no lapse).
    fn refuse<'a>(
        &'a self,
        binding: &'a Binding,
        record: &'a [u8],
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()>;

    /// The sealed refusal record stored for `binding`, if any.
    fn refusal<'a>(&'a self, binding: &'a Binding) -> StoreFuture<'a, Option<Vec<u8>>>;
}

/// Runs one of [`FileStore`]'s (blocking, local-disk) operations on tokio's blocking pool.
fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> StoreFuture<'static, T> {
    Box::pin(async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StoreError::new(op, e))?
    })
}

/// The same file, the same atomic writes and checks as tessera-std's `FileStore` (it is
/// that type), each operation run on tokio's blocking pool.
impl TokenStore for FileStore {
    fn load<'a>(&'a self, binding: &'a Binding) -> StoreFuture<'a, Option<Vec<u8>>> {
        let (store, binding) = (self.clone(), binding.clone());
        blocking("load", move || {
            tessera_host::TokenStore::load(&store, &binding)
        })
    }

    fn save<'a>(
        &'a self,
        binding: &'a Binding,
        snapshot: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        let (store, binding, snapshot) = (self.clone(), binding.clone(), snapshot.to_vec());
        blocking("save", move || {
            tessera_host::TokenStore::save(&store, &binding, &snapshot, ttl)
        })
    }

    fn discard<'a>(&'a self, binding: &'a Binding, snapshot: &'a [u8]) -> StoreFuture<'a, bool> {
        let (store, binding, snapshot) = (self.clone(), binding.clone(), snapshot.to_vec());
        blocking("discard", move || {
            tessera_host::TokenStore::discard(&store, &binding, &snapshot)
        })
    }

    fn acquire<'a>(
        &'a self,
        binding: &'a Binding,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<Lease>> {
        let lease = tessera_host::TokenStore::acquire(self, binding, ttl);
        Box::pin(async move { lease })
    }

    fn release<'a>(&'a self, binding: &'a Binding, lease: &'a Lease) -> StoreFuture<'a, ()> {
        let done = tessera_host::TokenStore::release(self, binding, lease);
        Box::pin(async move { done })
    }

    fn wait<'a>(&'a self, binding: &'a Binding, timeout: Duration) -> StoreFuture<'a, ()> {
        let done = tessera_host::TokenStore::wait(self, binding, timeout);
        Box::pin(async move { done })
    }

    fn refuse<'a>(
        &'a self,
        binding: &'a Binding,
        record: &'a [u8],
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        let (store, binding, record) = (self.clone(), binding.clone(), record.to_vec());
        blocking("refuse", move || {
            tessera_host::TokenStore::refuse(&store, &binding, &record, ttl)
        })
    }

    fn refusal<'a>(&'a self, binding: &'a Binding) -> StoreFuture<'a, Option<Vec<u8>>> {
        let (store, binding) = (self.clone(), binding.clone());
        blocking("refusal", move || {
            tessera_host::TokenStore::refusal(&store, &binding)
        })
    }
}
