//! Time: the monotonic clock the session runs on, and the wall clock `Retry-After` dates need.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera_core::{Clock, Instant};

/// `std::time::Instant` as the core's monotonic clock (milliseconds since the client was
/// made).
#[derive(Clone, Copy, Debug)]
pub struct StdClock {
    origin: std::time::Instant,
}

impl StdClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        StdClock {
            origin: std::time::Instant::now(),
        }
    }

    /// The `std` instant of a core instant on this clock.
    pub fn to_std(&self, at: Instant) -> std::time::Instant {
        self.origin + Duration::from_millis(at.as_millis())
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for StdClock {
    fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// A wall clock: Unix time, for `Retry-After` dates and stored tokens' expiry.
pub trait WallClock: Send + Sync + std::fmt::Debug {
    /// Now, in Unix milliseconds; `None` when the clock cannot be trusted.
    fn unix_ms(&self) -> Option<u64>;
}

/// The system's wall clock (`SystemTime`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn unix_ms(&self) -> Option<u64> {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok())
    }
}
