//! [`ManualClock`]: the monotonic clock a test moves by hand, so backoffs, expiry and
//! refresh happen when the test says, never after a sleep.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tessera_core::{Clock, Instant};

/// A monotonic clock moved by hand. Clones share one time.
///
/// Give it to a client (`tessera_std::Client::with_clock`) and call [`ManualClock::advance`]
/// to let a backoff run out or a token come due. It starts at 0 ms.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at 0 ms.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves the clock forward (whole milliseconds; saturates rather than wraps).
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.0.load(Ordering::SeqCst))
    }
}
