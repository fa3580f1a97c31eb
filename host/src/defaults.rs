//! The defaults both host clients' `Options` start from, so a blocking and an async client
//! made with `Options::default()` behave alike.

use std::time::Duration;

/// Connect timeout (name resolution, TCP, proxy, TLS handshake): 10 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest token or validate answer read: 64 KiB.
pub const MAX_BODY: usize = 64 * 1024;

/// Buffer for the token request (body and `Authorization`): 4 KiB.
pub const REQUEST_BUFFER: usize = 4096;

/// How wrong a host's wall clock may be (NTP's error plus skew between hosts): 2 s.
pub const WALL_CLOCK_UNCERTAINTY: Duration = Duration::from_secs(2);

/// A seed for the backoff jitter, random per process, so hosts that failed together do not
/// retry together.
pub fn jitter_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}
