//! The client's side of a [`TokenStore`]: before a fetch, a stored refusal or a stored token
//! may end it; otherwise the fetch lease decides which process asks the provider; after it,
//! the token (or the refusal) is stored for the others. See [`crate::store`].

use std::sync::atomic::Ordering;

use tessera_core::session::{Completion, Refusal, Ticket};
use tessera_core::snapshot::{Key, WallTime};
use tessera_core::{Provider, TokenId};

use super::Client;
use tessera_host::store::fleet::{self, lease_ttl, patience, Share};

use crate::store::{Binding, Lease, StoreError, TokenStore};
use crate::token::Token;

/// The record this process knows the store holds for its cached token: what it restored or
/// saved, to discard exactly that if an API rejects the token.
pub(super) struct Record {
    id: TokenId,
    sealed: Vec<u8>,
}

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
    /// The fleet's last attempt with this credential was refused, and the refusal holds.
    Refused(Refusal),
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
            Ok(Settle::Refused(r)) => {
                self.inner.refusal_shared.store(true, Ordering::Relaxed);
                self.lock()
                    .on_refused_elsewhere(ticket, now, r.status, r.remaining)
            }
        };
        debug!("tessera: settled by the token store: {completion}");
        Before::Settled
    }

    /// Drives the fleet's steps before a fetch (`tessera_host::store::fleet::Settle`, the
    /// machine tessera-tokio drives too) with this client's store and session.
    fn settle(&self, store: &dyn TokenStore) -> Result<Settle, StoreError> {
        let key = self.store_key();
        let Ok(fingerprint) = self.lock().binding(key) else {
            return Ok(Settle::Fetch(None));
        };
        let binding = Binding::new(fingerprint);
        let mut steps = fleet::Settle::new(
            lease_ttl(self.inner.options.request_timeout),
            patience(self.inner.options.session.fetch_timeout),
            std::time::Instant::now(),
        );
        let mut refusal = None;
        let mut found = fleet::Found::Start;
        loop {
            found = match steps.step(found) {
                fleet::Step::LookForRefusal => {
                    refusal = self.stored_refusal(store, &binding, key)?;
                    fleet::Found::Refusal(refusal.is_some())
                }
                fleet::Step::LookForToken => {
                    fleet::Found::FreshToken(self.restore_fresh(store, &binding, key)?)
                }
                fleet::Step::TakeLease(ttl) => {
                    let lease = store.acquire(&binding, ttl)?;
                    if lease.is_some() {
                        self.inner.lease_stuck.store(false, Ordering::Relaxed);
                    }
                    fleet::Found::Lease(lease)
                }
                fleet::Step::Wait(limit) => {
                    store.wait(&binding, limit)?;
                    fleet::Found::Waited
                }
                fleet::Step::Refused { release } => {
                    if let Some(lease) = release {
                        store.release(&binding, &lease)?;
                    }
                    debug!("tessera: the fleet's last attempt with this credential was refused");
                    return Ok(match refusal {
                        Some(r) => Settle::Refused(r),
                        None => Settle::Fetch(None),
                    });
                }
                fleet::Step::Restored { release } => {
                    if let Some(lease) = release {
                        store.release(&binding, &lease)?;
                    }
                    return Ok(Settle::Restored);
                }
                fleet::Step::Fetch(lease) => {
                    return Ok(Settle::Fetch(lease.map(|lease| Held {
                        binding: binding.clone(),
                        lease,
                    })));
                }
                fleet::Step::FetchAlone(_patience) => {
                    if !self.inner.lease_stuck.swap(true, Ordering::Relaxed) {
                        warn!(
                            "tessera: the fleet's fetch lease was not given back within {_patience:?}; \
                             fetching alone (each fetch waits that long at most while it stays held)"
                        );
                    } else {
                        debug!("tessera: the fleet's fetch lease is still held; fetching alone");
                    }
                    return Ok(Settle::Fetch(None));
                }
            };
        }
    }

    /// The refusal stored for `binding`, if it is Tessera's and still holds.
    fn stored_refusal(
        &self,
        store: &dyn TokenStore,
        binding: &Binding,
        key: Key<'_>,
    ) -> Result<Option<Refusal>, StoreError> {
        let Some(mut record) = store.refusal(binding)? else {
            return Ok(None);
        };
        match self.lock().open_refusal(self.wall(), key, &mut record) {
            Ok(r) => Ok(Some(r)),
            Err(_e) => {
                debug!("tessera: stored refusal ignored: {_e}");
                Ok(None)
            }
        }
    }

    /// Whether the fleet's refusal this session adopted or shared is gone from the store
    /// (lapsed, removed, replaced by a token): then the session may try again. A store that
    /// does not answer keeps the refusal.
    pub(super) fn fleet_refusal_gone(&self, store: &dyn TokenStore) -> bool {
        if !self.inner.refusal_shared.load(Ordering::Relaxed) {
            return false;
        }
        let key = self.store_key();
        let Ok(fingerprint) = self.lock().binding(key) else {
            return false;
        };
        match self.stored_refusal(store, &Binding::new(fingerprint), key) {
            Ok(None) => {
                self.inner.refusal_shared.store(false, Ordering::Relaxed);
                debug!("tessera: the fleet's refusal is gone: trying again");
                true
            }
            Ok(Some(_)) => false,
            Err(e) => {
                self.store_failed(&e);
                false
            }
        }
    }

    /// Restores the stored token if there is one not yet due for refresh (and not one this
    /// process saw rejected: the core refuses those).
    fn restore_fresh(
        &self,
        store: &dyn TokenStore,
        binding: &Binding,
        key: Key<'_>,
    ) -> Result<bool, StoreError> {
        let Some(mut bytes) = store.load(binding)? else {
            return Ok(false);
        };
        let sealed = bytes.clone();
        let now = self.inner.clock.now();
        let restored = self.lock().restore(now, self.wall(), key, &mut bytes);
        match restored {
            Ok(r) => {
                self.set_record(Some(Record { id: r.id, sealed }));
                Ok(r.refresh_at > now)
            }
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
            let share = fleet::share(&self.lock(), completion, now, self.wall(), self.store_key());
            match share {
                Share::Token { sealed, life, id } => {
                    store.save(&held.binding, &sealed, life)?;
                    self.set_record(Some(Record { id, sealed }));
                }
                Share::Refusal { sealed, ttl } => {
                    store.refuse(&held.binding, &sealed, ttl)?;
                    self.inner.refusal_shared.store(true, Ordering::Relaxed);
                }
                Share::Nothing => {}
            }
            store.release(&held.binding, &held.lease)
        })();
        match result {
            Ok(()) => self.store_answered(),
            Err(e) => self.store_failed(&e),
        }
    }
}

impl<P: Provider + Send + 'static, const TOKEN: usize, const REFRESH: usize>
    Client<P, TOKEN, REFRESH>
{
    fn set_record(&self, record: Option<Record>) {
        *self.inner.record.lock().unwrap_or_else(|p| p.into_inner()) = record;
    }

    /// After [`Client::reject`](super::Client::reject) dropped `token`: the store forgets it
    /// too, if it still holds the record this process restored or saved for it (a fresher
    /// record another process stored is kept). The core already refuses to restore it here.
    pub(super) fn discard_rejected(&self, store: &dyn TokenStore, token: &Token) {
        let record = {
            let mut slot = self.inner.record.lock().unwrap_or_else(|p| p.into_inner());
            match slot.take() {
                Some(r) if r.id == token.id() => Some(r),
                other => {
                    *slot = other;
                    None
                }
            }
        };
        let Some(record) = record else { return };
        let Ok(fingerprint) = self.lock().binding(self.store_key()) else {
            return;
        };
        match store.discard(&Binding::new(fingerprint), &record.sealed) {
            Ok(_removed) => {
                self.store_answered();
                debug!(
                    "tessera: rejected token {} the token store",
                    if _removed {
                        "removed from"
                    } else {
                        "no longer in"
                    }
                );
            }
            Err(e) => self.store_failed(&e),
        }
    }
}
