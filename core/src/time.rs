//! Monotonic time, injected: the core never reads a clock itself.

use core::fmt;
use core::time::Duration;

/// A point on a monotonic clock, in milliseconds from an arbitrary origin (boot, say).
///
/// Arithmetic saturates: no overflow near `u64::MAX`, no panic.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant.
    pub const MAX: Instant = Instant(u64::MAX);

    /// `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        Instant(self.0.saturating_add(millis(d)))
    }

    /// `self + ms` milliseconds, saturating (no `Duration` round trip: on a Cortex-M0 that
    /// costs a 64-bit division).
    pub const fn saturating_add_millis(self, ms: u64) -> Self {
        Instant(self.0.saturating_add(ms))
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    pub fn saturating_sub(self, d: Duration) -> Self {
        Instant(self.0.saturating_sub(millis(d)))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({} ms)", self.0)
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A monotonic clock. Transports implement it over `std::time::Instant` or
/// `embassy_time::Instant`; tests use a manual one.
pub trait Clock {
    /// The current instant. Must never go backwards.
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
}
