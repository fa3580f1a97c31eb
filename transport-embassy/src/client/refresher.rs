//! The refresher task: keeps the token fresh so no caller waits for a refresh.

use super::*;

impl<'r, M, P, N, C, const TOKEN: usize, const REFRESH: usize>
    Client<'r, M, P, N, C, TOKEN, REFRESH>
where
    M: RawMutex,
    P: Provider,
    N: Connector<'r>,
    C: Clock,
{
    /// Keeps the token fresh: run it in its own task; it never returns. While a token is
    /// cached it sleeps until the refresh point and refreshes (callers that find the token
    /// due hand it the refresh and return at once), backs off after a failed refresh, and
    /// after refused credentials sleeps until [`Client::set_credentials`] or
    /// [`Client::retry`]. With no token (before the first, or once one expired while
    /// refreshes failed) it waits: the next [`Client::token`] or [`Client::call`] fetches,
    /// so nothing is sent that no caller asked for. It sleeps on a timer and a signal; it
    /// never polls.
    pub async fn refresher(&self) -> ! {
        let _running = Running::start(self);
        loop {
            let chore = self.with(|s| {
                let Shared {
                    session,
                    fetch,
                    refresher,
                    ..
                } = s;
                refresher.nudged = false;
                let now = self.clock.now();
                let step = match refresher.handoff.take() {
                    Some(ticket) => Step::Fetch(ticket),
                    None => session.refresher_step(now),
                };
                match step {
                    Step::Fetch(ticket) => match fetch.take() {
                        Some(bufs) => Chore::Fetch(ticket, bufs),
                        None => {
                            let _ = session.release(ticket);
                            Chore::Nudge
                        }
                    },
                    Step::Sleep(at) => Chore::Sleep(at),
                    Step::Park => Chore::Nudge,
                }
            });
            match chore {
                Chore::Fetch(ticket, bufs) => self.run_fetch(Held::new(self, ticket, bufs)).await,
                Chore::Sleep(at) => {
                    select(self.nudged(), Timer::at(self.deadline(at))).await;
                }
                Chore::Nudge => self.nudged().await,
            }
        }
    }

    pub(super) async fn nudged(&self) {
        poll_fn(|cx| {
            self.with(|s| {
                if s.refresher.nudged {
                    s.refresher.nudged = false;
                    TaskPoll::Ready(())
                } else {
                    s.refresher.waker.register(cx.waker());
                    TaskPoll::Pending
                }
            })
        })
        .await
    }
}

/// Marks the refresher running while its future lives; a refresh handed to it and not
/// started is released when it stops.
pub(super) struct Running<
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
    > Running<'c, 'r, M, P, N, C, TOKEN, REFRESH>
{
    pub(super) fn start(client: &'c Client<'r, M, P, N, C, TOKEN, REFRESH>) -> Self {
        client
            .shared
            .lock(|cell| cell.borrow_mut().refresher.running = true);
        Running { client }
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
    > Drop for Running<'_, 'r, M, P, N, C, TOKEN, REFRESH>
{
    fn drop(&mut self) {
        self.client.shared.lock(|cell| {
            let s = &mut *cell.borrow_mut();
            s.refresher.running = false;
            if let Some(ticket) = s.refresher.handoff.take() {
                let _ = s.session.release(ticket);
                s.generation = s.generation.wrapping_add(1);
                s.waiters.wake();
            }
        });
    }
}
