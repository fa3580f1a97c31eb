//! Token stores: where a [`Client`](crate::Client) keeps its token beyond its own memory, so
//! a restarted process reuses it ([`FileStore`]) and a fleet of processes shares one
//! (`RedisStore`, feature `redis`).
//!
//! What a store holds is the core's sealed [snapshot](tessera_core::snapshot): the token is
//! not readable at rest, the secret is never stored, and records are named by the
//! credential's [binding](tessera_core::Session::binding) fingerprint, which reveals no
//! secret. A snapshot written for another endpoint, client, scope or a rotated secret is
//! refused when read, so a store shared by many credentials cannot serve the wrong token.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An application key that seals stored tokens ([`Options::store_key`](crate::Options)):
/// 32 bytes from a secrets manager. `Debug` never shows it; it is wiped on drop.
#[derive(Clone)]
pub struct StoreKey(pub [u8; 32]);

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

impl Drop for StoreKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// The name of one credential's records in a store: the hex of its binding fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Binding(String);

impl Binding {
    /// The binding of a fingerprint ([`tessera_core::Session::binding`]).
    pub fn new(fingerprint: [u8; 8]) -> Self {
        Binding(fingerprint.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The fingerprint as 16 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The right to fetch for a binding, until the lease lapses. Its fencing value tells this
/// holder's lease from a successor's, so releasing a lapsed lease never frees another's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    fence: String,
}

impl Lease {
    /// A lease with this fencing value.
    pub fn new(fence: impl Into<String>) -> Self {
        Lease {
            fence: fence.into(),
        }
    }

    /// The fencing value.
    pub fn fence(&self) -> &str {
        &self.fence
    }
}

/// A store operation failed. The client logs it once and falls back to its own single
/// flight; it never reaches a caller of `token()`.
#[derive(Debug)]
pub struct StoreError {
    /// Which operation (`load`, `save`, `lease`, …).
    pub op: &'static str,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// A failure of `op`.
    pub fn new(
        op: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError {
            op,
            source: source.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token store {}: {}", self.op, self.source)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Where a client keeps its token beyond its own memory: a file, or Redis for a fleet.
///
/// The client consults its store around the core's lifecycle, whenever the session elects
/// it to fetch (a first token, or a refresh that is due):
///
/// 1. a refusal stored for this credential fails the fetch with no request (the fleet made
///    its one failed attempt already; a replaced secret has another binding and is tried);
/// 2. a stored token that is not due for refresh is restored, with no request;
/// 3. otherwise the client takes the fetch lease; the holder asks the provider and stores the
///    token (or the refusal), the others wait for it, and take the lease themselves when it
///    lapses (a holder that died);
/// 4. a store that fails (down, slow, restarted) is logged once and skipped: the client
///    falls back to its own single flight. A store never causes an outage.
///
/// Implementations must be bounded in time: every method may run while a caller of
/// `token()` waits.
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The sealed snapshot stored for `binding`, if any.
    fn load(&self, binding: &Binding) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `snapshot` for `binding`; it may be dropped after `ttl` (the token's remaining
    /// life).
    fn save(&self, binding: &Binding, snapshot: &[u8], ttl: Duration) -> Result<(), StoreError>;

    /// Tries to take the fetch lease for `binding` for `ttl`: `Some` when this process may
    /// ask the provider, `None` when another holds it.
    fn acquire(&self, binding: &Binding, ttl: Duration) -> Result<Option<Lease>, StoreError>;

    /// Gives the lease back, if it is still this holder's.
    fn release(&self, binding: &Binding, lease: &Lease) -> Result<(), StoreError>;

    /// Waits, at most `timeout`, until the lease is free (its holder stores what it fetched
    /// before it releases the lease; a dead holder's lease lapses). Returning early is
    /// always allowed: the client looks again.
    fn wait(&self, binding: &Binding, timeout: Duration) -> Result<(), StoreError>;

    /// Records that the provider refused this credential (HTTP `status`), for `ttl`.
    fn refuse(&self, binding: &Binding, status: u16, ttl: Duration) -> Result<(), StoreError>;

    /// The status of a refusal recorded for `binding`, if any.
    fn refusal(&self, binding: &Binding) -> Result<Option<u16>, StoreError>;
}

/// A token kept in one file, so a short-lived process (a cron job, the `tessera` CLI in a
/// script) reuses the token of the previous run instead of asking again.
///
/// The file holds the sealed snapshot only: never the secret, and the token not readably.
/// Writes are atomic (a temporary file in the same directory, synced, then renamed over
/// the old one), so a crash leaves the old token or the new one, never half of one; on
/// Unix the file is created with mode `0600`. It takes no lease and keeps no refusal:
/// processes sharing one file each fetch when it holds no usable token (for a fleet, use
/// Redis).
///
/// ```no_run
/// use std::sync::Arc;
/// use tessera_std::{Client, FileStore, Options, core::{Credentials, OAuth2}};
///
/// let creds = Credentials::new("cron-job", &std::env::var("CLIENT_SECRET")?)?;
/// let options = Options { store: Some(Arc::new(FileStore::new("/var/cache/job/token"))), ..Options::default() };
/// let client = Client::with_options(OAuth2::new("https://idp.example/token"), creds, options);
/// let token = client.token()?; // from the file when the last run's token still lives
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store in the file at `path` (created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_atomically(&self, bytes: &[u8]) -> std::io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "token".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // Make the rename itself durable where the platform allows (best effort).
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

impl TokenStore for FileStore {
    fn load(&self, _: &Binding) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::new("load", e)),
        }
    }

    fn save(&self, _: &Binding, snapshot: &[u8], _: Duration) -> Result<(), StoreError> {
        self.write_atomically(snapshot)
            .map_err(|e| StoreError::new("save", e))
    }

    fn acquire(&self, _: &Binding, _: Duration) -> Result<Option<Lease>, StoreError> {
        Ok(Some(Lease::new("file")))
    }

    fn release(&self, _: &Binding, _: &Lease) -> Result<(), StoreError> {
        Ok(())
    }

    fn wait(&self, _: &Binding, _: Duration) -> Result<(), StoreError> {
        Ok(())
    }

    fn refuse(&self, _: &Binding, _: u16, _: Duration) -> Result<(), StoreError> {
        Ok(())
    }

    fn refusal(&self, _: &Binding) -> Result<Option<u16>, StoreError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding::new([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3])
    }

    #[test]
    fn a_binding_is_hex() {
        assert_eq!(binding().as_str(), "deadbeef00010203");
    }

    #[test]
    fn the_file_is_replaced_whole_and_private() {
        let dir = std::env::temp_dir().join(format!("tessera-filestore-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = FileStore::new(dir.join("token"));
        assert_eq!(store.load(&binding()).unwrap(), None);
        store
            .save(&binding(), b"first", Duration::from_secs(1))
            .unwrap();
        store
            .save(&binding(), b"second", Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            store.load(&binding()).unwrap().as_deref(),
            Some(&b"second"[..])
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("token")]);
        // A directory that does not exist: a typed error, nothing written.
        let bad = FileStore::new(dir.join("missing/token"));
        let e = bad
            .save(&binding(), b"x", Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(e.op, "save");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
