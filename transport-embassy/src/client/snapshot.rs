//! Snapshots: the token sealed into caller bytes and taken back after a restart.

use super::*;

impl<'r, M, P, N, C, const TOKEN: usize, const REFRESH: usize>
    Client<'r, M, P, N, C, TOKEN, REFRESH>
where
    M: RawMutex,
    P: Provider,
    N: Connector<'r>,
    C: Clock,
{
    /// Seals the cached token into `out` (a [snapshot](tessera_core::snapshot)), to
    /// [`Client::restore`] after a deep sleep, a reboot or a restart, and returns the bytes
    /// written. `wall` is the wall-clock time now: the token's expiry is stored as absolute
    /// wall time, since the monotonic clock restarts with the chip. `key` seals it (derived
    /// from the credential, or the application's own device key).
    ///
    /// `out` needs [`Resources::SNAPSHOT_CAPACITY`] for the client's capacities; a smaller
    /// one is [`SnapshotError::Capacity`] with the size needed. With no usable token it is
    /// [`SnapshotError::NoToken`]. On any error `out` is wiped. Nothing waits: the session's
    /// lock is held for the sealing only (a handful of HMAC-SHA-256 and one pass of
    /// ChaCha20-Poly1305 over the token), never across I/O, and the session is left as it
    /// was.
    ///
    /// ```no_run
    /// use core::time::Duration;
    /// use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
    /// use tessera_embassy::core::snapshot::{Key, SnapshotError, WallTime};
    /// use tessera_embassy::core::OAuth2;
    /// use tessera_embassy::{Client, Plain, Resources};
    /// # type Stack = std_embedded_nal_async::Stack;
    /// type Tessera = Client<'static, CriticalSectionRawMutex, OAuth2<'static>, Plain<'static, Stack, Stack>>;
    ///
    /// /// Room for a snapshot of the default `Resources`' token.
    /// const ROOM: usize = <Resources>::SNAPSHOT_CAPACITY;
    ///
    /// /// Before a deep sleep: keep the token where the sleep does not reach (RTC memory, a
    /// /// flash sector). The length kept, 0 for nothing.
    /// fn before_sleep(client: &Tessera, wall_now_ms: u64, kept: &mut [u8; ROOM]) -> usize {
    ///     let wall = WallTime::new(wall_now_ms, Duration::from_secs(2));
    ///     match client.save(wall, Key::Credentials, kept) {
    ///         Ok(bytes) => bytes.len(),
    ///         Err(SnapshotError::NoToken) => 0,
    ///         Err(_other) => 0,
    ///     }
    /// }
    ///
    /// /// On wake: a new client (its monotonic clock at zero) takes the token back, and the
    /// /// first `token()` or `call()` sends no token request while it lives. `wall` is `None`
    /// /// unless the wall clock is known to be right (an RTC kept through the sleep, SNTP).
    /// fn on_wake(client: &Tessera, wall: Option<WallTime>, kept: &mut [u8]) {
    ///     match client.restore(wall, Key::Credentials, kept) {
    ///         Ok(restored) => { /* served until restored.usable_until */ }
    ///         // Refused (no wall clock, expired, tampered, another credential…): the
    ///         // next token() fetches as usual.
    ///         Err(_why) => {}
    ///     }
    /// }
    /// ```
    pub fn save<'o>(
        &self,
        wall: WallTime,
        key: Key<'_>,
        out: &'o mut [u8],
    ) -> Result<&'o [u8], SnapshotError> {
        self.with(|s| s.session.snapshot(self.clock.now(), wall, key, out))
    }

    /// Takes back a token [`Client::save`] sealed (see [`Session::restore`]): served with no
    /// token request while it lives, refreshed at the usual margin before its expiry (by
    /// [`Client::refresher`], which is woken). `wall` is the wall-clock time now, given only
    /// when the caller vouches for it; `None` discards the snapshot
    /// ([`SnapshotError::NoWallClock`]).
    ///
    /// `bytes` is decrypted in place and wiped once it has been (the snapshot is then spent:
    /// [`Client::save`] again before the next sleep). Garbage, truncated, tampered or
    /// foreign bytes, an expired token or an untrustworthy clock are refused with the reason,
    /// the client is left as it was, and the next [`Client::token`] fetches as usual.
    ///
    /// An adopted token counts as a fetched one: callers waiting for a token are woken and
    /// served it, and [`Client::tokens_stored`] changes. A restore is **not** refused while
    /// a fetch is in flight: the callers waiting on that fetch are served the restored token
    /// at once (a point of sale never waits on the network for a token it can have), and
    /// the fetch's answer, when it comes, replaces it with the newer token. It replaces a
    /// token already cached too. Restore once at start-up, before the first `token()`.
    pub fn restore(
        &self,
        wall: Option<WallTime>,
        key: Key<'_>,
        bytes: &mut [u8],
    ) -> Result<Restored, SnapshotError> {
        let restored = self.with(|s| {
            let restored = s.session.restore(self.clock.now(), wall, key, bytes)?;
            s.stored = s.stored.wrapping_add(1);
            // As a completed fetch does: waiters look again, the refresher re-plans.
            s.generation = s.generation.wrapping_add(1);
            s.waiters.wake();
            s.refresher.nudge();
            Ok(restored)
        });
        match &restored {
            Ok(_) => diag!(debug, "tessera: token restored from a snapshot"),
            Err(_e) => diag!(info, "tessera: snapshot not restored: {}", _e),
        }
        restored
    }

    /// How many tokens this client has cached (fetched or restored) since it was built: it
    /// changes whenever the token does. Save a snapshot to flash only when it changed, so a
    /// sector is erased once per token lifetime, not once per wake.
    pub fn tokens_stored(&self) -> u32 {
        self.with(|s| s.stored)
    }
}
