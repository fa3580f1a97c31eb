//! Token stores: where a host client keeps its token beyond its own memory, so a restarted
//! process reuses it ([`FileStore`]) and a fleet of processes shares one (a `RedisStore`,
//! tessera-std's or tessera-tokio's, feature `redis`). The records, their names and their
//! rules are these, whichever client (blocking or async) reads or writes them: one fleet.
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

/// An application key that seals stored tokens (a client's `Options::store_key`):
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
/// 1. a refusal stored for this credential, sealed by Tessera and not yet lapsed
///    ([`Config::refusal_retry`](tessera_core::session::Config::refusal_retry), default
///    15 min), fails the fetch with no request (the fleet made its one failed attempt
///    already; a replaced secret has another binding and is tried). Once it lapses, or
///    disappears, the next fetch goes on to 2;
/// 2. a stored token that is not due for refresh, and that this process has not seen an
///    API reject, is restored, with no request;
/// 3. otherwise the client takes the fetch lease; the holder asks the provider and stores the
///    token (or the refusal), the others wait for it, and take the lease themselves when it
///    lapses (a holder that died). A lease that never frees costs a fetch at most its wait,
///    and one warning;
/// 4. a token an API answers 401 to is [discarded](TokenStore::discard) from the store, if
///    the store still holds that very record, so no process restores it again while a
///    fresher one another process stored is kept;
/// 5. a store that fails (down, slow, restarted) is logged once and skipped: the client
///    falls back to its own single flight. A store never causes an outage.
///
/// Implementations must be bounded in time: every method may run while a caller of
/// `token()` waits. Records are opaque sealed bytes: a store never needs to read them.
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The sealed snapshot stored for `binding`, if any.
    fn load(&self, binding: &Binding) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `snapshot` for `binding`; it may be dropped after `ttl` (the token's remaining
    /// life). A token supersedes a stored refusal: the refusal record is removed with it.
    fn save(&self, binding: &Binding, snapshot: &[u8], ttl: Duration) -> Result<(), StoreError>;

    /// Removes the snapshot stored for `binding` only if it is still exactly `snapshot`
    /// (compare and delete, atomically): whether it was removed. A record another process
    /// stored since is kept.
    fn discard(&self, binding: &Binding, snapshot: &[u8]) -> Result<bool, StoreError>;

    /// Tries to take the fetch lease for `binding` for `ttl`: `Some` when this process may
    /// ask the provider, `None` when another holds it.
    fn acquire(&self, binding: &Binding, ttl: Duration) -> Result<Option<Lease>, StoreError>;

    /// Gives the lease back, if it is still this holder's.
    fn release(&self, binding: &Binding, lease: &Lease) -> Result<(), StoreError>;

    /// Waits, at most `timeout`, until the lease is free (its holder stores what it fetched
    /// before it releases the lease; a dead holder's lease lapses). Returning early is
    /// always allowed: the client looks again.
    fn wait(&self, binding: &Binding, timeout: Duration) -> Result<(), StoreError>;

    /// Stores the sealed refusal `record` ([`Session::seal_refusal`](tessera_core::Session::seal_refusal))
    /// for `binding`; it may be dropped after `ttl` (`None`: it never lapses).
    fn refuse(
        &self,
        binding: &Binding,
        record: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError>;

    /// The sealed refusal record stored for `binding`, if any.
    fn refusal(&self, binding: &Binding) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The largest record [`FileStore`] reads: far above any snapshot (a few KiB for the largest
/// token capacities), far below what would hurt to hold.
pub const MAX_RECORD: u64 = 256 * 1024;

/// A token kept in one file, so a short-lived process (a cron job, the `tessera` CLI in a
/// script) reuses the token of the previous run instead of asking again.
///
/// The file holds the sealed snapshot only: never the secret, and the token not readably.
/// Writes are atomic: a temporary file with an unpredictable name in the same directory,
/// created exclusively (`O_EXCL`, `O_NOFOLLOW`: never through a planted file or symlink)
/// with mode `0600` from the start, synced, renamed over the old one, and the directory
/// synced; so a crash leaves the old token or the new one, never half of one. Reads take
/// only a regular file of at most 256 KiB: a FIFO, a device (`/dev/zero`) or
/// a directory planted at the path is refused at once, never waited on or read without
/// end. A refusal of the credential is kept beside it (`<file>.refused`), so a job run
/// every minute with a wrong secret asks the provider once per refusal period, not once a
/// minute. It takes no lease: processes sharing one file each fetch when it holds no usable
/// token (for a fleet, use Redis).
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

    /// The refusal record's file: `<file>.refused`.
    pub fn refusal_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".refused");
        PathBuf::from(name)
    }
}

/// The directory `path` is in (`.` for a bare name).
fn directory(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A name no other process or attacker can guess: 128 bits from the standard library's
/// randomly keyed hasher (seeded from the OS's random source per thread), beside `path`.
fn unpredictable_sibling(path: &Path) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "token".into());
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_usize(i);
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        *w = h.finish();
    }
    directory(path).join(format!(".{name}.{:016x}{:016x}.tmp", words[0], words[1]))
}

/// Writes `bytes` to `path` atomically (see [`FileStore`]).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = unpredictable_sibling(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    let mut file = options.open(&tmp)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable (best effort: not every platform can sync a
        // directory).
        if let Ok(d) = std::fs::File::open(directory(path)) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The contents of the regular file at `path` (`None` when there is none), at most
/// [`MAX_RECORD`] bytes. Anything else at the path is an error at once: the open does not
/// wait for a FIFO's writer, and a device is never read.
fn read_regular(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::{Error, ErrorKind, Read};
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!(
                "{} is not a regular file (a FIFO, device or directory is never read)",
                path.display()
            ),
        ));
    }
    let too_large = || {
        Error::new(
            ErrorKind::InvalidData,
            format!("{} is larger than {MAX_RECORD} bytes", path.display()),
        )
    };
    if meta.len() > MAX_RECORD {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_RECORD + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

/// Removes `path` only if it holds `expected`. The file is first renamed aside (atomic: from
/// then on no one else can replace what is compared), then compared; a record someone
/// stored in between is put back, unless an even newer one is there already.
fn compare_and_delete(path: &Path, expected: &[u8]) -> std::io::Result<bool> {
    if read_regular(path)?.as_deref() != Some(expected) {
        return Ok(false);
    }
    let aside = unpredictable_sibling(path);
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    let taken = read_regular(&aside);
    if matches!(&taken, Ok(Some(b)) if b.as_slice() == expected) {
        std::fs::remove_file(&aside)?;
        return Ok(true);
    }
    // Not ours: a fresher record arrived between the look and the rename. Put it back
    // without replacing a still newer one (a hard link never overwrites).
    match std::fs::hard_link(&aside, path) {
        Ok(()) => std::fs::remove_file(&aside)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::remove_file(&aside)?,
        // No hard links here (some file systems): rename it back.
        Err(_) => std::fs::rename(&aside, path)?,
    }
    taken.map(|_| false)
}

impl TokenStore for FileStore {
    fn load(&self, _: &Binding) -> Result<Option<Vec<u8>>, StoreError> {
        read_regular(&self.path).map_err(|e| StoreError::new("load", e))
    }

    fn save(&self, _: &Binding, snapshot: &[u8], _: Duration) -> Result<(), StoreError> {
        write_atomically(&self.path, snapshot).map_err(|e| StoreError::new("save", e))?;
        match std::fs::remove_file(self.refusal_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::new("save", e)),
            _ => Ok(()),
        }
    }

    fn discard(&self, _: &Binding, snapshot: &[u8]) -> Result<bool, StoreError> {
        compare_and_delete(&self.path, snapshot).map_err(|e| StoreError::new("discard", e))
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

    fn refuse(&self, _: &Binding, record: &[u8], _: Option<Duration>) -> Result<(), StoreError> {
        // The sealed record carries its own lapse; the file needs no expiry.
        write_atomically(&self.refusal_path(), record).map_err(|e| StoreError::new("refuse", e))
    }

    fn refusal(&self, _: &Binding) -> Result<Option<Vec<u8>>, StoreError> {
        read_regular(&self.refusal_path()).map_err(|e| StoreError::new("refusal", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding::new([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3])
    }

    /// A fresh directory of this test's own.
    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tessera-filestore-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_binding_is_hex() {
        assert_eq!(binding().as_str(), "deadbeef00010203");
    }

    #[test]
    fn the_file_is_replaced_whole_and_private() {
        let dir = dir("replace");
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
        assert_eq!(names(&dir), vec![std::ffi::OsString::from("token")]);
        // A directory that does not exist: a typed error, nothing written.
        let bad = FileStore::new(dir.join("missing/token"));
        let e = bad
            .save(&binding(), b"x", Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(e.op, "save");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_are_unpredictable_and_never_reused() {
        let path = Path::new("/var/cache/job/token");
        let a = unpredictable_sibling(path);
        let b = unpredictable_sibling(path);
        assert_ne!(a, b);
        assert_eq!(a.parent(), path.parent());
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".token.") && name.ends_with(".tmp"),
            "{name}"
        );
        // 128 bits of randomness (32 hex digits), not a process id.
        let random = &name[".token.".len()..name.len() - ".tmp".len()];
        assert_eq!(random.len(), 32);
        assert!(random.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_temporary_file_or_symlink_is_never_written_through() {
        // create_new (O_EXCL) with O_NOFOLLOW: an existing name, a symlink above all, fails
        // instead of being followed. The store picks a fresh name each time, so probe the
        // flags on a name we plant ourselves.
        let dir = dir("planted");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let planted = dir.join("planted");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        {
            use std::os::unix::fs::OpenOptionsExt;
            options
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        }
        assert!(options.open(&planted).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        // A symlink planted at the store's own path is replaced by the rename, not
        // written through.
        let path = dir.join("token");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        FileStore::new(&path)
            .save(&binding(), b"sealed", Duration::from_secs(1))
            .unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_a_device_at_the_path_is_refused_at_once() {
        let dir = dir("special");
        // A FIFO with no writer: opening it for reading would block for ever without
        // O_NONBLOCK; it is refused instead.
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = FileStore::new(&fifo).load(&binding()).unwrap_err();
        assert_eq!(e.op, "load");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // /dev/zero behind a symlink: never read (it would never end).
        let zero = dir.join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = FileStore::new(&zero).load(&binding()).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // The refusal record is read the same way.
        let store = FileStore::new(dir.join("token"));
        std::os::unix::fs::symlink("/dev/zero", store.refusal_path()).unwrap();
        assert_eq!(store.refusal(&binding()).unwrap_err().op, "refusal");
        // A directory.
        let e = FileStore::new(&dir).load(&binding()).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_larger_than_any_record_is_refused() {
        let dir = dir("large");
        let path = dir.join("token");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_RECORD + 1).unwrap();
        let e = FileStore::new(&path).load(&binding()).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        file.set_len(MAX_RECORD).unwrap();
        assert_eq!(
            FileStore::new(&path)
                .load(&binding())
                .unwrap()
                .map(|b| b.len()),
            Some(MAX_RECORD as usize)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn discard_keeps_a_record_that_changed() {
        let dir = dir("discard");
        let store = FileStore::new(dir.join("token"));
        let b = binding();
        store.save(&b, b"rejected", Duration::from_secs(1)).unwrap();
        store.save(&b, b"fresh", Duration::from_secs(1)).unwrap();
        assert!(!store.discard(&b, b"rejected").unwrap());
        assert_eq!(store.load(&b).unwrap().as_deref(), Some(&b"fresh"[..]));
        assert!(store.discard(&b, b"fresh").unwrap());
        assert_eq!(store.load(&b).unwrap(), None);
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The rules of a fleet's records on Redis, shared by tessera-std's blocking `RedisStore`
/// and tessera-tokio's async one, so both read and write the same keys the same way.
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
/// The `{b}` is a hash tag: in Redis Cluster all three keys of a binding hash to one slot.
pub mod redis {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::Binding;

    /// The first part of every key, unless the application sets another.
    pub const DEFAULT_PREFIX: &str = "tessera";

    /// The bound on every Redis operation (connect, read, write), unless set otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

    /// How often a waiting process looks whether the lease holder is done.
    pub const POLL: Duration = Duration::from_millis(10);

    /// Compare-and-delete: deletes a key only while it still holds this value. Releases a
    /// lease only while it carries this holder's fence, and discards a rejected token only
    /// while the record is that token's (never a fresher one another process stored since).
    pub const COMPARE_AND_DELETE: &str =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

    /// Which of a binding's records.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Record {
        /// The sealed token.
        Token,
        /// The fetch lease.
        Lease,
        /// The sealed refusal.
        Refused,
    }

    /// The key of `record` for `binding` under `prefix`: `prefix:{binding}:token`.
    pub fn key(prefix: &str, binding: &Binding, record: Record) -> String {
        let what = match record {
            Record::Token => "token",
            Record::Lease => "lease",
            Record::Refused => "refused",
        };
        format!("{prefix}:{{{}}}:{what}", binding.as_str())
    }

    /// A time to live in whole milliseconds, at least 1 (`PX 0` is an error in Redis).
    pub fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Fencing values unique per process (a random seed) and per lease (a counter).
    #[derive(Debug)]
    pub struct Fences(AtomicU64);

    impl Fences {
        /// A generator seeded at random for this process.
        pub fn new() -> Self {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            Fences(AtomicU64::new(h.finish()))
        }

        /// The next fencing value.
        pub fn next(&self) -> String {
            let n = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
            format!("{:x}-{n:016x}", std::process::id())
        }
    }

    impl Default for Fences {
        fn default() -> Self {
            Self::new()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keys_carry_the_binding_as_a_hash_tag() {
            let b = Binding::new([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
            assert_eq!(
                key("tessera", &b, Record::Token),
                "tessera:{deadbeef00010203}:token"
            );
            assert_eq!(
                key("prod", &b, Record::Lease),
                "prod:{deadbeef00010203}:lease"
            );
            assert_eq!(
                key("tessera", &b, Record::Refused),
                "tessera:{deadbeef00010203}:refused"
            );
            let f = Fences::new();
            assert_ne!(f.next(), f.next());
            assert_eq!(millis(Duration::ZERO), 1);
        }
    }
}

/// How a client drives its store around a fetch: the waits and sizes both clients use.
pub mod fleet {
    use std::time::Duration;

    use super::Lease;

    /// How long a fetch lease lasts: the request timeout and a second, so a holder that
    /// died frees it soon after its request would have timed out anyway.
    pub fn lease_ttl(request_timeout: Duration) -> Duration {
        request_timeout + Duration::from_secs(1)
    }

    /// How long a process waits for another's lease before fetching alone: well inside the
    /// session's fetch timeout (after which the session would abandon this fetch).
    pub fn patience(fetch_timeout: Duration) -> Duration {
        fetch_timeout.mul_f32(0.75)
    }

    /// Room for the sealed snapshot of a token of up to `token` bytes with a refresh token
    /// of up to `refresh` bytes (their JSON escapes included).
    pub fn snapshot_capacity(token: usize, refresh: usize) -> usize {
        2 * token + 6 * refresh + 2048 + tessera_core::snapshot::OVERHEAD
    }

    /// Room for a sealed refusal record.
    pub const REFUSAL_CAPACITY: usize = 128;

    /// What a process that ran the fleet's fetch leaves in the store for the others.
    #[derive(Debug)]
    pub enum Share {
        /// A new token: its sealed snapshot, kept for the token's life; `id` is the session's
        /// id of that token (to discard exactly this record if an API rejects it).
        Token {
            /// The sealed snapshot.
            sealed: Vec<u8>,
            /// How long the store may keep it.
            life: Duration,
            /// The token it holds.
            id: tessera_core::TokenId,
        },
        /// The credential was refused: the sealed refusal, lapsing after `ttl` (`None`: the
        /// session's `refusal_retry` is zero, it never lapses).
        Refusal {
            /// The sealed refusal record.
            sealed: Vec<u8>,
            /// How long the store may keep it.
            ttl: Option<Duration>,
        },
        /// Nothing to share (a transient failure, a stale or given-back fetch, no wall
        /// clock to seal against).
        Nothing,
    }

    /// What to share after a fetch that ended in `completion`, read from `session` (under
    /// the caller's lock) at `now` against the wall clock `wall`, sealed with `key`. Both
    /// host clients call this and only do the store's I/O with the answer.
    pub fn share<P: tessera_core::Provider, const TOKEN: usize, const REFRESH: usize>(
        session: &tessera_core::Session<P, TOKEN, REFRESH>,
        completion: &tessera_core::session::Completion,
        now: tessera_core::Instant,
        wall: Option<tessera_core::snapshot::WallTime>,
        key: tessera_core::snapshot::Key<'_>,
    ) -> Share {
        use tessera_core::session::{Cause, Completion};
        match completion {
            Completion::Stored => {
                let mut buf = zeroize::Zeroizing::new(vec![0u8; snapshot_capacity(TOKEN, REFRESH)]);
                let sealed = wall.and_then(|wall| {
                    session
                        .snapshot(now, wall, key, &mut buf)
                        .ok()
                        .map(<[u8]>::to_vec)
                });
                let life = session
                    .grant(now)
                    .map(|g| Duration::from_secs(g.lifetime_s()));
                match (sealed, life, session.token_id(now)) {
                    (Some(sealed), Some(life), Some(id)) => Share::Token { sealed, life, id },
                    _ => Share::Nothing,
                }
            }
            Completion::Failed => {
                let refused = session
                    .failure()
                    .filter(|f| f.kind() == tessera_core::ErrorKind::InvalidCredentials)
                    .and_then(|f| match &f.cause {
                        Cause::Response(r) => Some(r.status),
                        _ => None,
                    });
                let period = session.config().refusal_retry;
                let sealed = match (refused, wall) {
                    (Some(status), Some(wall)) => {
                        let mut buf = [0u8; REFUSAL_CAPACITY];
                        session
                            .seal_refusal(status, wall, key, &mut buf)
                            .ok()
                            .map(<[u8]>::to_vec)
                    }
                    _ => None,
                };
                match sealed {
                    Some(sealed) => Share::Refusal {
                        sealed,
                        ttl: (!period.is_zero()).then_some(period),
                    },
                    None => Share::Nothing,
                }
            }
            _ => Share::Nothing,
        }
    }

    /// The steps a client takes with its store before a fetch, as a machine both clients
    /// drive: tessera-std blocking, tessera-tokio awaiting. It decides; the client does the
    /// I/O (its store, its session) and reports back. So the fleet's rules, and every race
    /// found in them, live here once.
    ///
    /// 1. A refusal stored for this credential ends the fetch (the fleet made its one
    ///    failed attempt).
    /// 2. A stored token not yet due is restored, with no request.
    /// 3. Otherwise the fetch lease is tried. Once it is taken, 1 and 2 are looked at
    ///    again (the last holder may have stored a token or a refusal and released the
    ///    lease between the looks and the lease): either ends the fetch and the lease is
    ///    given back; else this process asks the provider, holding the lease.
    /// 4. A lease another process holds is waited for, at most until the patience runs
    ///    out; then this process fetches alone (and says so once).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tessera_host::store::fleet::{Found, Settle, Step};
    /// use tessera_host::store::Lease;
    ///
    /// let mut settle = Settle::new(Duration::from_secs(31), Duration::from_secs(22), Instant::now());
    /// assert_eq!(settle.step(Found::Start), Step::LookForRefusal);
    /// assert_eq!(settle.step(Found::Refusal(false)), Step::LookForToken);
    /// assert_eq!(settle.step(Found::FreshToken(false)), Step::TakeLease(Duration::from_secs(31)));
    /// let lease = Lease::new("fence-1");
    /// assert_eq!(settle.step(Found::Lease(Some(lease.clone()))), Step::LookForRefusal);
    /// assert_eq!(settle.step(Found::Refusal(false)), Step::LookForToken);
    /// assert_eq!(settle.step(Found::FreshToken(false)), Step::Fetch(Some(lease)));
    /// ```
    #[derive(Debug)]
    pub struct Settle {
        lease_ttl: Duration,
        deadline: std::time::Instant,
        patience: Duration,
        /// The lease once taken (the looks after it are the second ones).
        held: Option<Lease>,
    }

    /// What the client found, for [`Settle::step`].
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Found {
        /// Nothing yet: the first step.
        Start,
        /// Whether a refusal of this credential is stored and holds (the client opened
        /// it with its session).
        Refusal(bool),
        /// Whether a stored token was restored and is not yet due.
        FreshToken(bool),
        /// The lease, if the store gave it.
        Lease(Option<Lease>),
        /// The wait for another's lease is over (released, lapsed, or timed out).
        Waited,
    }

    /// What the client does next.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Step {
        /// Read the stored refusal and open it; report [`Found::Refusal`].
        LookForRefusal,
        /// Read the stored token and restore it; report [`Found::FreshToken`].
        LookForToken,
        /// Try to take the lease for this long; report [`Found::Lease`].
        TakeLease(Duration),
        /// Wait at most this long for the lease to be free; report [`Found::Waited`].
        Wait(Duration),
        /// Done: the stored refusal holds. Give `release` back first, if any.
        Refused {
            /// The lease to give back.
            release: Option<Lease>,
        },
        /// Done: the stored token was restored. Give `release` back first, if any.
        Restored {
            /// The lease to give back.
            release: Option<Lease>,
        },
        /// Done: ask the provider, holding this lease (none: alone).
        Fetch(Option<Lease>),
        /// Done: the lease was not given back within the patience; ask the provider
        /// alone (the client warns once while this lasts).
        FetchAlone(Duration),
    }

    impl Settle {
        /// The steps before one fetch: `lease_ttl` from [`lease_ttl`], `patience` from
        /// [`patience`], counted from `now`.
        pub fn new(lease_ttl: Duration, patience: Duration, now: std::time::Instant) -> Self {
            Settle {
                lease_ttl,
                deadline: now + patience,
                patience,
                held: None,
            }
        }

        /// The next step, given what the last one found (read the clock for the waits).
        pub fn step(&mut self, found: Found) -> Step {
            self.step_at(found, std::time::Instant::now())
        }

        /// [`Settle::step`] at `now`.
        pub fn step_at(&mut self, found: Found, now: std::time::Instant) -> Step {
            match found {
                Found::Start | Found::Waited => Step::LookForRefusal,
                Found::Refusal(true) => Step::Refused {
                    release: self.held.take(),
                },
                Found::Refusal(false) => Step::LookForToken,
                Found::FreshToken(true) => Step::Restored {
                    release: self.held.take(),
                },
                Found::FreshToken(false) => match self.held.take() {
                    Some(lease) => Step::Fetch(Some(lease)),
                    None => Step::TakeLease(self.lease_ttl),
                },
                Found::Lease(Some(lease)) => {
                    self.held = Some(lease);
                    Step::LookForRefusal
                }
                Found::Lease(None) if now >= self.deadline => Step::FetchAlone(self.patience),
                Found::Lease(None) => Step::Wait((self.deadline - now).min(self.lease_ttl)),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::time::Instant;

        const TTL: Duration = Duration::from_secs(31);

        #[test]
        fn a_refusal_stored_just_before_the_lease_is_taken_is_honoured() {
            let t0 = Instant::now();
            let mut s = Settle::new(TTL, Duration::from_secs(22), t0);
            assert_eq!(s.step_at(Found::Start, t0), Step::LookForRefusal);
            assert_eq!(s.step_at(Found::Refusal(false), t0), Step::LookForToken);
            assert_eq!(
                s.step_at(Found::FreshToken(false), t0),
                Step::TakeLease(TTL)
            );
            let lease = Lease::new("f");
            assert_eq!(
                s.step_at(Found::Lease(Some(lease.clone())), t0),
                Step::LookForRefusal
            );
            // The last holder stored its refusal between the first look and the lease.
            assert_eq!(
                s.step_at(Found::Refusal(true), t0),
                Step::Refused {
                    release: Some(lease)
                }
            );
        }

        #[test]
        fn a_token_stored_just_before_the_lease_is_restored_and_the_lease_given_back() {
            let t0 = Instant::now();
            let mut s = Settle::new(TTL, Duration::from_secs(22), t0);
            s.step_at(Found::Start, t0);
            s.step_at(Found::Refusal(false), t0);
            s.step_at(Found::FreshToken(false), t0);
            let lease = Lease::new("f");
            s.step_at(Found::Lease(Some(lease.clone())), t0);
            s.step_at(Found::Refusal(false), t0);
            assert_eq!(
                s.step_at(Found::FreshToken(true), t0),
                Step::Restored {
                    release: Some(lease)
                }
            );
        }

        #[test]
        fn a_held_lease_is_waited_for_within_the_patience_then_fetched_alone() {
            let t0 = Instant::now();
            let patience = Duration::from_secs(22);
            let mut s = Settle::new(TTL, patience, t0);
            s.step_at(Found::Start, t0);
            s.step_at(Found::Refusal(false), t0);
            s.step_at(Found::FreshToken(false), t0);
            assert_eq!(s.step_at(Found::Lease(None), t0), Step::Wait(patience));
            assert_eq!(s.step_at(Found::Waited, t0), Step::LookForRefusal);
            s.step_at(Found::Refusal(false), t0);
            s.step_at(Found::FreshToken(false), t0);
            let later = t0 + patience;
            assert_eq!(
                s.step_at(Found::Lease(None), later),
                Step::FetchAlone(patience)
            );
            // With no lease ever held, nothing is given back.
            let mut s = Settle::new(TTL, patience, t0);
            assert_eq!(
                s.step_at(Found::FreshToken(true), t0),
                Step::Restored { release: None }
            );
        }
    }
}

/// Certificates (DER) as PEM `CERTIFICATE` blocks: how redis-rs takes the roots a
/// `rediss://` server must chain to.
pub fn pem<'a>(certs: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for der in certs {
        out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let mut line = 0;
        for chunk in der.chunks(3) {
            let b = [
                chunk.first().copied().unwrap_or(0),
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                let c = if i <= chunk.len() {
                    ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]
                } else {
                    b'='
                };
                out.push(c);
            }
            line += 4;
            if line == 64 {
                out.push(b'\n');
                line = 0;
            }
        }
        if line > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    out
}

#[cfg(test)]
mod pem_tests {
    #[test]
    fn pem_is_standard_base64_in_64_column_lines() {
        let der: Vec<u8> = (0u8..=100).collect();
        let text = String::from_utf8(super::pem([&der[..], b"ab"].into_iter())).unwrap();
        let blocks: Vec<&str> = text.split("-----END CERTIFICATE-----\n").collect();
        assert_eq!(blocks.len(), 3);
        let body: String = blocks[0]
            .trim_start_matches("-----BEGIN CERTIFICATE-----\n")
            .lines()
            .inspect(|l| assert!(l.len() <= 64))
            .collect();
        assert_eq!(&body[..8], "AAECAwQF");
        assert!(body.ends_with("Y2Q="), "{body}");
        assert!(blocks[1].ends_with("YWI=\n"));
    }
}
