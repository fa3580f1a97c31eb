//! Random interleavings of polls, responses and clock steps against the lifecycle's
//! invariants: never an expired token, never two fetches in flight, never a fetch while
//! backing off, and a bound on fetches for a run of given length.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use tessera_core::session::{Cause, Config, Poll, Session, Ticket};
use tessera_core::{Credentials, Instant, OAuth2, Stage, TransportError};

#[derive(Clone, Debug)]
enum Op {
    /// Move the clock forward.
    Advance(u64),
    /// One caller polls.
    Poll,
    /// The provider answers the oldest outstanding ticket.
    Answer(Answer),
    /// A stale (abandoned) ticket's answer arrives, if there is one.
    AnswerStale,
    /// A downstream call reports the current (or an old) token rejected.
    Reject { current: bool },
    /// The user presses "try again".
    Retry,
}

#[derive(Clone, Debug)]
enum Answer {
    Grant {
        lifetime_s: u64,
    },
    Status {
        status: u16,
        retry_after_s: Option<u64>,
    },
    Network,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![0u64..2_000, 0u64..120_000, 0u64..4_000_000].prop_map(Op::Advance),
        6 => Just(Op::Poll),
        3 => prop_oneof![
            5 => (0u64..=7_200).prop_map(|lifetime_s| Answer::Grant { lifetime_s }),
            3 => (prop::sample::select(vec![400u16, 401, 403, 429, 500, 502, 503]), proptest::option::of(0u64..600))
                .prop_map(|(status, retry_after_s)| Answer::Status { status, retry_after_s }),
            1 => Just(Answer::Network),
        ].prop_map(Op::Answer),
        1 => Just(Op::AnswerStale),
        1 => any::<bool>().prop_map(|current| Op::Reject { current }),
        1 => Just(Op::Retry),
    ]
}

struct Run {
    s: Session<OAuth2<'static>>,
    now: u64,
    start: u64,
    /// Tickets handed out and not yet answered; the session honours only the newest.
    outstanding: Vec<(Ticket, u64)>,
    /// token → (sent, lifetime_s)
    issued: HashMap<String, (u64, u64)>,
    next_token: u32,
    fetches: u64,
    resets: u64,
    last_id: Option<tessera_core::TokenId>,
    old_ids: Vec<tessera_core::TokenId>,
}

const TIMEOUT_MS: u64 = 30_000;

impl Run {
    fn new(seed: u64, start: u64) -> Self {
        let s = Session::new(
            OAuth2::new("https://idp/t"),
            Credentials::new("id", "s").unwrap(),
            Config::default(),
            seed,
        );
        Run {
            s,
            now: start,
            start,
            outstanding: Vec::new(),
            issued: HashMap::new(),
            next_token: 0,
            fetches: 0,
            resets: 0,
            last_id: None,
            old_ids: Vec::new(),
        }
    }

    fn poll(&mut self) -> Result<(), TestCaseError> {
        let now = Instant::from_millis(self.now);
        let backing_off = self.s.backoff_until().is_some_and(|u| now < u);
        let in_flight = self.s.fetching();
        let newest_sent = self.outstanding.last().map(|(_, sent)| *sent);
        let overdue = newest_sent.is_some_and(|sent| self.now >= sent.saturating_add(TIMEOUT_MS));
        let poll = self.s.poll(now);
        let (token, ticket) = match poll {
            Poll::Ready(b) => (Some((b.token().to_owned(), b.id())), None),
            Poll::Refresh(b, t) => (Some((b.token().to_owned(), b.id())), Some(t)),
            Poll::Fetch(t) => (None, Some(t)),
            Poll::Wait(_) | Poll::Backoff { .. } | Poll::Failed(_) => (None, None),
        };
        if let Some((token, id)) = token {
            let (sent, lifetime_s) = self.issued[&token];
            prop_assert!(
                self.now < sent + lifetime_s * 1000,
                "served {token} at {} but it expired at {}",
                self.now,
                sent + lifetime_s * 1000
            );
            if self.last_id != Some(id) {
                if let Some(old) = self.last_id.replace(id) {
                    self.old_ids.push(old);
                }
            }
        }
        if let Some(t) = ticket {
            prop_assert!(
                !in_flight || overdue,
                "a second fetch while one is in flight"
            );
            prop_assert!(!backing_off, "a fetch while backing off");
            self.fetches += 1;
            self.outstanding.push((t, self.now));
        }
        Ok(())
    }

    fn answer(&mut self, a: Answer) {
        let Some((t, sent)) = self.outstanding.pop() else {
            return;
        };
        // Older ones are stale from now on; keep them to answer later.
        let now = Instant::from_millis(self.now);
        match a {
            Answer::Grant { lifetime_s } => {
                self.next_token += 1;
                let token = format!("t{}", self.next_token);
                self.issued.insert(token.clone(), (sent, lifetime_s));
                let body = format!(
                    r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{lifetime_s}}}"#
                );
                self.s.on_response(t, now, 200, None, body.as_bytes());
            }
            Answer::Status {
                status,
                retry_after_s,
            } => {
                let retry_after = retry_after_s.map(Duration::from_secs);
                self.s.on_response(t, now, status, retry_after, b"");
            }
            Answer::Network => {
                self.s.on_failure(
                    t,
                    now,
                    Cause::Transport(TransportError::new(Stage::Io, "reset")),
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn lifecycle_invariants(
        seed in any::<u64>(),
        start in prop_oneof![Just(0u64), 0u64..1u64 << 40],
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let mut run = Run::new(seed, start);
        for op in ops {
            match op {
                Op::Advance(ms) => run.now += ms,
                Op::Poll => run.poll()?,
                Op::Answer(a) => run.answer(a),
                Op::AnswerStale => {
                    if run.outstanding.len() > 1 {
                        let (t, _) = run.outstanding.remove(0);
                        let now = Instant::from_millis(run.now);
                        let body = br#"{"access_token":"stale","token_type":"Bearer","expires_in":99999}"#;
                        prop_assert_eq!(run.s.on_response(t, now, 200, None, body), tessera_core::session::Completion::Stale);
                    }
                }
                Op::Reject { current } => {
                    let id = if current { run.last_id } else { run.old_ids.last().copied() };
                    if let Some(id) = id {
                        if run.s.reject(id) {
                            run.resets += 1;
                        }
                    }
                }
                Op::Retry => {
                    run.s.retry();
                    run.resets += 1;
                }
            }
        }
        // Without rejects or retries, consecutive fetches are at least min(base backoff,
        // half the shortest usable lifetime) apart. The base is 1 s; the shortest grant not
        // dead on arrival lives 1 s and is due for refresh at half its life: 500 ms.
        let elapsed = run.now - run.start;
        let bound = 1 + run.resets + elapsed / 500;
        prop_assert!(run.fetches <= bound, "{} fetches in {} ms with {} resets", run.fetches, elapsed, run.resets);
    }
}
