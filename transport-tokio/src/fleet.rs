//! The async client's side of a [`TokenStore`]: before a fetch, a stored refusal or a stored
//! token may end it; otherwise the fetch lease decides which process asks the provider;
//! after it, the token (or the refusal) is stored for the others.
//!
//! Which step comes next is decided by `tessera_host::store::fleet::Settle`, the machine
//! tessera-std drives too; this file does the I/O (awaited) and the session's part. Every
//! rule is written once: in the core (sealing, bindings, refusals) and in
//! `tessera_host::store` (the steps, record names, lease length, patience, sizes).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tessera_core::session::{Completion, Refusal, Ticket};
use tessera_core::snapshot::{Key, WallTime};
use tessera_core::{Provider, TokenId};
use tessera_host::store::fleet::{self, lease_ttl, patience, Share};
use tessera_host::Token;
use zeroize::Zeroizing;

use crate::client::Client;
use crate::store::{Binding, Lease, StoreError, TokenStore};

/// The record this process knows the store holds for its cached token: what it restored or
/// saved, to discard exactly that if an API rejects the token.
pub(crate) struct Record {
    id: TokenId,
    sealed: Vec<u8>,
}

/// What the store said before a fetch.
pub(crate) enum Before {
    /// Settled without a request (a token restored, a refusal adopted).
    Settled,
    /// This process asks the provider; with the lease when it holds one.
    Fetch(Option<HeldLease>),
}

/// A lease this process holds for a fetch. Dropped unreleased (the fetch's future was
/// cancelled), it is given back from a task, so the fleet does not wait for it to lapse.
pub(crate) struct HeldLease {
    binding: Binding,
    lease: Option<Lease>,
    store: Arc<dyn TokenStore>,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, binding) = (Arc::clone(&self.store), self.binding.clone());
            drop(runtime.spawn(async move {
                let _ = store.release(&binding, &lease).await;
            }));
        }
    }
}

/// What the store's records decide.
enum Settle {
    Restored,
    Refused(Refusal),
    Fetch(Option<HeldLease>),
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

    fn binding(&self) -> Option<Binding> {
        self.lock().binding(self.store_key()).ok().map(Binding::new)
    }

    /// Consults the store before the fetch for `ticket` (which stays with the caller: on
    /// `Settled` it has been given back or completed here).
    pub(crate) async fn before_fetch(
        &self,
        store: &Arc<dyn TokenStore>,
        ticket: &mut Option<Ticket>,
    ) -> Before {
        let settled = self.settle(store).await;
        if settled.is_ok() {
            self.store_answered();
        }
        let now = self.inner.clock.now();
        let Some(t) = ticket.take() else {
            return Before::Settled;
        };
        let completion = match settled {
            Ok(Settle::Fetch(held)) => {
                *ticket = Some(t);
                return Before::Fetch(held);
            }
            Err(e) => {
                self.store_failed(&e);
                *ticket = Some(t);
                return Before::Fetch(None);
            }
            Ok(Settle::Restored) => self.lock().release(t),
            Ok(Settle::Refused(r)) => {
                self.inner.refusal_shared.store(true, Ordering::Relaxed);
                self.lock()
                    .on_refused_elsewhere(t, now, r.status, r.remaining)
            }
        };
        debug!("tessera: settled by the token store: {completion}");
        Before::Settled
    }

    /// Drives the fleet's steps before a fetch (`tessera_host::store::fleet::Settle`, the
    /// machine tessera-std drives too) with this client's store and session.
    async fn settle(&self, store: &Arc<dyn TokenStore>) -> Result<Settle, StoreError> {
        let key = self.store_key();
        let Some(binding) = self.binding() else {
            return Ok(Settle::Fetch(None));
        };
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
                    refusal = self.stored_refusal(store.as_ref(), &binding, key).await?;
                    fleet::Found::Refusal(refusal.is_some())
                }
                fleet::Step::LookForToken => fleet::Found::FreshToken(
                    self.restore_fresh(store.as_ref(), &binding, key).await?,
                ),
                fleet::Step::TakeLease(ttl) => {
                    let lease = store.acquire(&binding, ttl).await?;
                    if lease.is_some() {
                        self.inner.lease_stuck.store(false, Ordering::Relaxed);
                    }
                    fleet::Found::Lease(lease)
                }
                fleet::Step::Wait(limit) => {
                    store.wait(&binding, limit).await?;
                    fleet::Found::Waited
                }
                fleet::Step::Refused { release } => {
                    if let Some(lease) = release {
                        store.release(&binding, &lease).await?;
                    }
                    debug!("tessera: the fleet's last attempt with this credential was refused");
                    return Ok(match refusal {
                        Some(r) => Settle::Refused(r),
                        None => Settle::Fetch(None),
                    });
                }
                fleet::Step::Restored { release } => {
                    if let Some(lease) = release {
                        store.release(&binding, &lease).await?;
                    }
                    return Ok(Settle::Restored);
                }
                fleet::Step::Fetch(lease) => {
                    return Ok(Settle::Fetch(lease.map(|lease| HeldLease {
                        binding: binding.clone(),
                        lease: Some(lease),
                        store: Arc::clone(store),
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
    async fn stored_refusal(
        &self,
        store: &dyn TokenStore,
        binding: &Binding,
        key: Key<'_>,
    ) -> Result<Option<Refusal>, StoreError> {
        let Some(mut record) = store.refusal(binding).await? else {
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

    /// Whether the fleet's refusal this session adopted or shared is gone from the store:
    /// then the session may try again. A store that does not answer keeps the refusal.
    pub(crate) async fn fleet_refusal_gone(&self, store: &dyn TokenStore) -> bool {
        if !self.inner.refusal_shared.load(Ordering::Relaxed) {
            return false;
        }
        let Some(binding) = self.binding() else {
            return false;
        };
        match self.stored_refusal(store, &binding, self.store_key()).await {
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

    /// Restores the stored token if there is one not yet due for refresh.
    async fn restore_fresh(
        &self,
        store: &dyn TokenStore,
        binding: &Binding,
        key: Key<'_>,
    ) -> Result<bool, StoreError> {
        let Some(bytes) = store.load(binding).await? else {
            return Ok(false);
        };
        let mut bytes = Zeroizing::new(bytes);
        let sealed = bytes.to_vec();
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
    pub(crate) async fn after_fetch(
        &self,
        store: &dyn TokenStore,
        mut held: HeldLease,
        completion: &Completion,
    ) {
        let Some(lease) = held.lease.take() else {
            return;
        };
        let binding = held.binding.clone();
        let now = self.inner.clock.now();
        let share = fleet::share(&self.lock(), completion, now, self.wall(), self.store_key());
        let result = async {
            match share {
                Share::Token { sealed, life, id } => {
                    store.save(&binding, &sealed, life).await?;
                    self.set_record(Some(Record { id, sealed }));
                }
                Share::Refusal { sealed, ttl } => {
                    store.refuse(&binding, &sealed, ttl).await?;
                    self.inner.refusal_shared.store(true, Ordering::Relaxed);
                }
                Share::Nothing => {}
            }
            store.release(&binding, &lease).await
        }
        .await;
        match result {
            Ok(()) => self.store_answered(),
            Err(e) => self.store_failed(&e),
        }
    }

    fn set_record(&self, record: Option<Record>) {
        *self.inner.record.lock().unwrap_or_else(|p| p.into_inner()) = record;
    }

    /// After [`Client::reject`] dropped `token`: the store forgets it too, if it still
    /// holds the record this process restored or saved for it.
    pub(crate) async fn discard_rejected(&self, store: &dyn TokenStore, token: &Token) {
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
        let Some(binding) = self.binding() else {
            return;
        };
        match store.discard(&binding, &record.sealed).await {
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
