//! The client's side of a [`TokenStore`]: before a fetch, a stored refusal or a stored token
//! may end it; otherwise the fetch lease decides which process asks the provider; after it,
//! the token (or the refusal) is stored for the others. See [`crate::store`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use tessera_core::session::{Cause, Completion, Ticket};
use tessera_core::snapshot::{Key, WallTime};
use tessera_core::{Detail, Error as CoreError, ErrorKind, ErrorReport, Provider};
use zeroize::Zeroizing;

use super::Client;
use crate::store::{Binding, Lease, StoreError, TokenStore};

/// How long a refusal stays stored: the fleet does not try the same credential again for
/// this long (a replaced secret has another binding and is tried at once).
pub(super) const REFUSAL_TTL: Duration = Duration::from_secs(600);

/// What the store said before a fetch.
pub(super) enum Before {
    /// Settled without a request (a token restored, a refusal adopted): ticket handed back.
    Settled,
    /// This process asks the provider; with the lease when it holds one.
    Fetch(Ticket, Option<Held>),
}

/// A lease this process holds for a fetch.
pub(super) struct Held {
    binding: Binding,
    lease: Lease,
}

/// What the store's records decide.
enum Settle {
    /// A stored token, not yet due, is now the session's.
    Restored,
    /// The fleet's last attempt with this credential was refused (HTTP status).
    Refused(u16),
    /// Ask the provider (holding the lease, or alone after waiting too long).
    Fetch(Option<Held>),
}

impl<P: Provider + Send + 'static, const TOKEN: usize, const REFRESH: usize>
    Client<P, TOKEN, REFRESH>
{
    fn store_key(&self) -> Key<'_> {
        match &self.inner.options.store_key {
            Some(k) => Key::Application(&k.0),
            None => Key::Credentials,
        }
    }

    fn wall(&self) -> Option<WallTime> {
        let ms = self.inner.options.wall_clock.unix_ms()?;
        Some(WallTime::new(ms, self.inner.options.wall_clock_uncertainty))
    }

    /// A store failure: a warning the first time, then quiet until the store answers.
    fn store_failed(&self, _e: &StoreError) {
        if !self.inner.store_down.swap(true, Ordering::Relaxed) {
            warn!("tessera: {_e}; carrying on without the store until it answers");
        } else {
            debug!("tessera: {_e}");
        }
    }

    fn store_answered(&self) {
        if self.inner.store_down.swap(false, Ordering::Relaxed) {
            warn!("tessera: the token store answers again");
        }
    }

    /// Consults the store before the fetch for `ticket`.
    pub(super) fn before_fetch(&self, store: &dyn TokenStore, ticket: Ticket) -> Before {
        let settled = self.settle(store);
        if settled.is_ok() {
            self.store_answered();
        }
        let now = self.inner.clock.now();
        let completion = match settled {
            Ok(Settle::Fetch(held)) => return Before::Fetch(ticket, held),
            Err(e) => {
                self.store_failed(&e);
                return Before::Fetch(ticket, None);
            }
            Ok(Settle::Restored) => self.lock().release(ticket),
            Ok(Settle::Refused(status)) => {
                let report = ErrorReport {
                    status,
                    error: CoreError::InvalidCredentials,
                    detail: Detail::default(),
                };
                self.lock().on_failure(ticket, now, Cause::Response(report))
            }
        };
        debug!("tessera: settled by the token store: {completion}");
        Before::Settled
    }

    fn settle(&self, store: &dyn TokenStore) -> Result<Settle, StoreError> {
        let key = self.store_key();
        let Ok(fingerprint) = self.lock().binding(key) else {
            return Ok(Settle::Fetch(None));
        };
        let binding = Binding::new(fingerprint);
        let lease_ttl = self.inner.options.request_timeout + Duration::from_secs(1);
        // Wait for another holder at most this long, well inside the session's fetch
        // timeout (after which it would abandon this fetch).
        let patience = self.inner.options.session.fetch_timeout.mul_f32(0.75);
        let deadline = std::time::Instant::now() + patience;
        loop {
            if let Some(status) = store.refusal(&binding)? {
                debug!("tessera: the fleet's last attempt with this credential was refused");
                return Ok(Settle::Refused(status));
            }
            if self.restore_fresh(store, &binding, key)? {
                return Ok(Settle::Restored);
            }
            if let Some(lease) = store.acquire(&binding, lease_ttl)? {
                // The last holder may have stored its token and released the lease between
                // the look above and this lease: look once more before asking the provider.
                if self.restore_fresh(store, &binding, key)? {
                    store.release(&binding, &lease)?;
                    return Ok(Settle::Restored);
                }
                return Ok(Settle::Fetch(Some(Held { binding, lease })));
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                warn!(
                    "tessera: the fleet's fetch lease was not given back in time; fetching alone"
                );
                return Ok(Settle::Fetch(None));
            }
            store.wait(&binding, (deadline - now).min(lease_ttl))?;
        }
    }

    /// Restores the stored token if there is one not yet due for refresh.
    fn restore_fresh(
        &self,
        store: &dyn TokenStore,
        binding: &Binding,
        key: Key<'_>,
    ) -> Result<bool, StoreError> {
        let Some(mut bytes) = store.load(binding)? else {
            return Ok(false);
        };
        let now = self.inner.clock.now();
        match self.lock().restore(now, self.wall(), key, &mut bytes) {
            Ok(r) => Ok(r.refresh_at > now),
            Err(_e) => {
                debug!("tessera: stored token not used: {_e}");
                Ok(false)
            }
        }
    }

    /// After this process's fetch: share what it learnt, and give the lease back.
    pub(super) fn after_fetch(
        &self,
        store: &dyn TokenStore,
        held: Option<Held>,
        completion: &Completion,
    ) {
        let Some(held) = held else { return };
        let result = (|| -> Result<(), StoreError> {
            let now = self.inner.clock.now();
            let session = self.lock();
            match completion {
                Completion::Stored => {
                    let size = 2 * TOKEN + 6 * REFRESH + 2048 + tessera_core::snapshot::OVERHEAD;
                    let mut buf = Zeroizing::new(vec![0u8; size]);
                    let sealed = self.wall().and_then(|wall| {
                        session
                            .snapshot(now, wall, self.store_key(), &mut buf)
                            .ok()
                            .map(<[u8]>::to_vec)
                    });
                    let life = session
                        .grant(now)
                        .map(|g| Duration::from_secs(g.lifetime_s()));
                    drop(session);
                    if let (Some(sealed), Some(life)) = (sealed, life) {
                        store.save(&held.binding, &sealed, life)?;
                    }
                }
                Completion::Failed => {
                    let refused = session
                        .failure()
                        .filter(|f| f.kind() == ErrorKind::InvalidCredentials)
                        .and_then(|f| match &f.cause {
                            Cause::Response(r) => Some(r.status),
                            _ => None,
                        });
                    drop(session);
                    if let Some(status) = refused {
                        store.refuse(&held.binding, status, REFUSAL_TTL)?;
                    }
                }
                Completion::Stale | Completion::Released => drop(session),
            }
            store.release(&held.binding, &held.lease)
        })();
        match result {
            Ok(()) => self.store_answered(),
            Err(e) => self.store_failed(&e),
        }
    }
}
