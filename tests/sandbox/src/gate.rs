//! [`Gate`]: a point where requests wait until the test releases them ([`Fault::Hold`]).
//!
//! [`Fault::Hold`]: crate::Fault::Hold

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A gate held requests wait at until [`Gate::release`]. Clones are the same gate; two gates
/// are equal only if they are the same gate.
///
/// A test injects `Fault::Hold(gate.clone())`, waits with [`Gate::wait_arrived`] until the
/// request is there, checks what must hold while it is held, then releases it.
#[derive(Clone)]
pub struct Gate(Arc<Inner>);

struct Inner {
    state: Mutex<State>,
    /// Signalled whenever `arrived` grows.
    arrivals: Condvar,
    /// `true` once released: what held requests wait on, without blocking a server thread.
    open: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    arrived: usize,
    released: bool,
}

impl Gate {
    /// A closed gate no request has reached.
    pub fn new() -> Gate {
        Gate(Arc::new(Inner {
            state: Mutex::new(State::default()),
            arrivals: Condvar::new(),
            open: tokio::sync::watch::Sender::new(false),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the gate: every held request proceeds, and so does every later one.
    pub fn release(&self) {
        self.state().released = true;
        self.0.open.send_replace(true);
    }

    /// Whether [`Gate::release`] was called.
    pub fn is_released(&self) -> bool {
        self.state().released
    }

    /// How many requests have reached the gate (held, or passed after the release).
    pub fn arrived(&self) -> usize {
        self.state().arrived
    }

    /// Blocks until at least `n` requests have reached the gate, or `timeout` passed:
    /// whether they had. Waits on a condition variable; no polling.
    pub fn wait_arrived(&self, n: usize, timeout: Duration) -> bool {
        let guard = self.state();
        let (guard, _) = self
            .0
            .arrivals
            .wait_timeout_while(guard, timeout, |s| s.arrived < n)
            .unwrap_or_else(|p| p.into_inner());
        guard.arrived >= n
    }

    /// A request reaches the gate: counted, then waits until it is released.
    pub(crate) async fn pass(&self) {
        // Subscribe before counting, so a release after the count is never missed.
        let mut open = self.0.open.subscribe();
        {
            let mut s = self.state();
            s.arrived += 1;
        }
        self.0.arrivals.notify_all();
        // The sender lives as long as `self`, so this ends only when the gate opens.
        let _ = open.wait_for(|released| *released).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state();
        f.debug_struct("Gate")
            .field("arrived", &s.arrived)
            .field("released", &s.released)
            .finish()
    }
}
