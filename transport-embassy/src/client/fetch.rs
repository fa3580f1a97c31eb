//! Getting a token: the cached one at once, or one fetch however many callers ask, run by
//! whoever holds the ticket with the fetch buffers (wiped and returned by `Held`).

use super::*;

impl<'r, M, P, N, C, const TOKEN: usize, const REFRESH: usize>
    Client<'r, M, P, N, C, TOKEN, REFRESH>
where
    M: RawMutex,
    P: Provider,
    N: Connector<'r>,
    C: Clock,
{
    /// Copies a fresh bearer token into `out` and says which it is.
    ///
    /// A cached token is returned at once, also while it is being refreshed. When it is
    /// due, the refresh is handed to [`Client::refresher`] if one runs (otherwise this
    /// caller runs it, and returns the current token after). With no token, one caller
    /// fetches and the others wait for that fetch's end (a signal, not a timer).
    ///
    /// `out` then holds the token: wipe it when done (or use [`Client::call`], which keeps
    /// the token in the call's own buffer and wipes it).
    pub async fn token<'o>(&self, out: &'o mut [u8]) -> Result<Token<'o>, Error> {
        let capacity = out.len();
        let copied = self
            .bearer(|b| {
                let token = b.token().as_bytes();
                match out.get_mut(..token.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(token);
                        Ok((b.id(), token.len()))
                    }
                    None => Err(Error::Core(tessera_core::Error::Capacity {
                        field: "token buffer",
                        needed: token.len(),
                        capacity,
                    })),
                }
            })
            .await?;
        let (id, len) = copied?;
        let text = out
            .get(..len)
            .and_then(|t| core::str::from_utf8(t).ok())
            .unwrap_or_default();
        Ok(Token { text, id })
    }

    /// Runs `use_it` on a usable bearer token (under the lock: it must be quick).
    pub(super) async fn bearer<R>(
        &self,
        mut use_it: impl FnMut(&Bearer<'_, TOKEN, REFRESH>) -> R,
    ) -> Result<R, Error> {
        loop {
            let next = self.with(|s| {
                let Shared {
                    session,
                    fetch,
                    generation,
                    refresher,
                    ..
                } = s;
                match session.poll(self.clock.now()) {
                    Poll::Ready(b) => Next::Done(use_it(&b), None),
                    Poll::Refresh(b, ticket) => {
                        let r = use_it(&b);
                        if refresher.running {
                            refresher.handoff = Some(ticket);
                            refresher.nudge();
                            Next::Done(r, None)
                        } else {
                            match fetch.take() {
                                Some(bufs) => Next::Done(r, Some((ticket, bufs))),
                                None => {
                                    let _ = session.release(ticket);
                                    Next::Done(r, None)
                                }
                            }
                        }
                    }
                    Poll::Fetch(ticket) => match fetch.take() {
                        Some(bufs) => Next::Fetch(ticket, bufs),
                        // An abandoned fetch still has the buffers: wait for them.
                        None => {
                            let _ = session.release(ticket);
                            Next::Wait(*generation, None)
                        }
                    },
                    Poll::Wait(until) => Next::Wait(*generation, Some(until)),
                    Poll::Backoff { until, kind } => Next::Fail(Error::Token {
                        kind,
                        retry_at: Some(until),
                        transport: last_transport(session),
                    }),
                    Poll::Failed(kind) => Next::Fail(Error::Token {
                        kind,
                        retry_at: None,
                        transport: last_transport(session),
                    }),
                }
            });
            match next {
                Next::Done(r, None) => return Ok(r),
                Next::Done(r, Some((ticket, bufs))) => {
                    self.run_fetch(Held::new(self, ticket, bufs)).await;
                    return Ok(r);
                }
                Next::Fetch(ticket, bufs) => self.run_fetch(Held::new(self, ticket, bufs)).await,
                Next::Wait(seen, until) => self.fetch_ended(seen, until).await,
                Next::Fail(e) => return Err(e),
            }
        }
    }

    /// Waits until a fetch ends after `seen`, or (as a bound) until `until` on the client's
    /// clock, when the session would abandon the fetch in flight.
    pub(super) async fn fetch_ended(&self, seen: u32, until: Option<Instant>) {
        let ended = poll_fn(|cx| {
            self.with(|s| {
                if s.generation != seen {
                    TaskPoll::Ready(())
                } else {
                    s.waiters.register(cx.waker());
                    TaskPoll::Pending
                }
            })
        });
        match until {
            None => ended.await,
            Some(at) => {
                select(ended, Timer::at(self.deadline(at))).await;
            }
        }
    }

    /// The embassy instant matching `at` on the client's clock.
    pub(super) fn deadline(&self, at: Instant) -> embassy_time::Instant {
        let ms = at.saturating_duration_since(self.clock.now()).as_millis();
        let wait = u64::try_from(ms)
            .ok()
            .and_then(Duration::try_from_millis)
            .unwrap_or(Duration::MAX);
        embassy_time::Instant::now()
            .checked_add(wait)
            .unwrap_or(embassy_time::Instant::MAX)
    }

    /// Runs the token request `held` has the ticket and buffers for, hands the answer to
    /// the session, and (through `held`'s drop) wipes and returns the buffers.
    pub(super) async fn run_fetch(&self, mut held: Held<'_, 'r, M, P, N, C, TOKEN, REFRESH>) {
        let (Some(ticket), Some(bufs)) = (held.ticket.as_ref(), held.bufs.as_mut()) else {
            return;
        };
        // Written under the lock into the request buffer; the layout says where.
        let prepared = self.with(|s| s.session.write_request(ticket, bufs.request));
        let outcome = match prepared {
            Err(e) => Err(Cause::Local(e)),
            Ok(p) => self.send_token_request(&p, bufs).await,
        };
        let arrived = self.clock.now();
        let Some(ticket) = held.ticket.take() else {
            return;
        };
        let body: &[u8] = held.bufs.as_ref().map_or(&[], |b| &*b.body);
        let completion = self.with(|s| {
            if let Ok(x) = &outcome {
                s.stats.count(x.connection);
            }
            let completion = match outcome {
                Ok(x) => s.session.on_response(
                    ticket,
                    arrived,
                    x.status,
                    x.retry_after,
                    body.get(..x.body_len).unwrap_or_default(),
                ),
                Err(cause) => s.session.on_failure(ticket, arrived, cause),
            };
            if completion == Completion::Stored {
                s.stored = s.stored.wrapping_add(1);
            }
            if completion == Completion::Failed {
                if let Some(_f) = s.session.failure() {
                    diag!(warn, "tessera: {}: {}", completion, _f);
                }
            }
            completion
        });
        if completion != Completion::Failed {
            diag!(debug, "tessera: {}", completion);
        }
        drop(held);
    }

    pub(super) async fn send_token_request(
        &self,
        layout: &Layout,
        bufs: &mut FetchBuffers<'r>,
    ) -> Result<Exchanged, Cause> {
        let FetchBuffers {
            request,
            headers,
            body,
        } = bufs;
        let request: &[u8] = request;
        let req = layout.request(request);
        let url = layout.url(request);
        // The host and path the core parsed: never a URL's `user:password@` (refused by
        // the core anyway) nor its query in a log line.
        if let Ok(_to) = tessera_core::transport::parse_url(url) {
            diag!(
                debug,
                "tessera: token request {} {}{}",
                layout.method.as_str(),
                _to.host,
                _to.path
            );
        }
        // At most three: Accept, Content-Type, Authorization.
        let list: heapless::Vec<(&str, &str), 3> = req.headers().collect();
        let out = Outgoing {
            method: layout.method,
            url,
            headers: &list,
            body: req.body,
        };
        // A token request (a POST with no Idempotency-Key) is not sent again when a kept
        // connection is found closed: the server may have taken it before the connection
        // died (a refusal counts towards a lockout), so it fails as `io` and the session's
        // backoff (with the cached token still served) decides the next attempt.
        self.send(out, headers, body, false, false)
            .await
            .map_err(|f| match f {
                Fault::Net(e) => Cause::Transport(e),
                Fault::Local(e) => Cause::Local(e),
            })
    }
}

/// A ticket and the fetch buffers, owned by the task running the fetch. Dropped (the fetch
/// ended, or its future was dropped): the buffers are wiped and returned, a ticket still
/// held is released (no failure, no backoff), and waiters are woken.
pub(super) struct Held<
    'c,
    'r,
    M: RawMutex,
    P: Provider,
    N: Connector<'r>,
    C,
    const TOKEN: usize,
    const REFRESH: usize,
> {
    client: &'c Client<'r, M, P, N, C, TOKEN, REFRESH>,
    ticket: Option<Ticket>,
    bufs: Option<FetchBuffers<'r>>,
}

impl<
        'c,
        'r,
        M: RawMutex,
        P: Provider,
        N: Connector<'r>,
        C,
        const TOKEN: usize,
        const REFRESH: usize,
    > Held<'c, 'r, M, P, N, C, TOKEN, REFRESH>
{
    pub(super) fn new(
        client: &'c Client<'r, M, P, N, C, TOKEN, REFRESH>,
        ticket: Ticket,
        bufs: FetchBuffers<'r>,
    ) -> Self {
        Held {
            client,
            ticket: Some(ticket),
            bufs: Some(bufs),
        }
    }
}

impl<
        'r,
        M: RawMutex,
        P: Provider,
        N: Connector<'r>,
        C,
        const TOKEN: usize,
        const REFRESH: usize,
    > Drop for Held<'_, 'r, M, P, N, C, TOKEN, REFRESH>
{
    fn drop(&mut self) {
        if let Some(bufs) = self.bufs.as_mut() {
            bufs.wipe();
        }
        let (ticket, bufs) = (self.ticket.take(), self.bufs.take());
        let _released = self.client.shared.lock(|cell| {
            let s = &mut *cell.borrow_mut();
            let released = ticket.map(|t| s.session.release(t));
            if bufs.is_some() {
                s.fetch = bufs;
            }
            s.generation = s.generation.wrapping_add(1);
            s.waiters.wake();
            s.refresher.nudge();
            released
        });
        if let Some(_c) = _released {
            diag!(debug, "tessera: {}", _c);
        }
    }
}
