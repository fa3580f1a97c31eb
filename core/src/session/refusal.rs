//! The fleet's refusal record: "the provider refused this credential", sealed and bound like
//! a token snapshot, so only Tessera with the same credential (and store key) writes one
//! that is believed, and an old one replayed has lapsed.

use core::time::Duration;

use super::{Cause, Completion, Session, Ticket};
use crate::error::{Error, ErrorReport};
use crate::json::parse_uint;
use crate::provider::Provider;
use crate::snapshot::{self, Key, Keys, SnapshotError, WallTime};
use crate::time::{millis, Instant};
use crate::write::Out;

/// The sealed plaintext's start: a token record never starts so (it is a token response).
const PREFIX: &[u8] = b"{\"refused\":";

/// A refusal record read back by [`Session::open_refusal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Refusal {
    /// The HTTP status the provider refused with.
    pub status: u16,
    /// How long the refusal still holds; `None` when it never lapses (its writer had
    /// [`Config::refusal_retry`](super::Config::refusal_retry) zero and so has this one).
    pub remaining: Option<Duration>,
}

impl<P: Provider, const TOKEN: usize, const REFRESH: usize> Session<P, TOKEN, REFRESH> {
    /// Writes a sealed refusal record into `out`: the provider refused this credential with
    /// `status` at wall time `wall`; it lapses after [`Config::refusal_retry`](super::Config::refusal_retry)
    /// (never, when that is zero). A fleet store keeps it so the other processes do not try
    /// the same credential ([`Session::open_refusal`]); once it lapses, the fleet's fetch
    /// lease lets one process try again.
    ///
    /// Sealed and bound like a [snapshot] (the same key, the same binding):
    /// a record written by anything but Tessera with this credential reads as
    /// [`SnapshotError::Foreign`] or [`SnapshotError::Tampered`], and an old one replayed
    /// has lapsed. `out` needs [`snapshot::OVERHEAD`] + 16 bytes.
    pub fn seal_refusal<'o>(
        &self,
        status: u16,
        wall: WallTime,
        key: Key<'_>,
        out: &'o mut [u8],
    ) -> Result<&'o [u8], SnapshotError> {
        let capacity = out.len();
        let too_small = SnapshotError::Capacity {
            field: "refusal record",
            needed: snapshot::OVERHEAD + PREFIX.len() + 6,
            capacity,
        };
        let json = out
            .get_mut(snapshot::HEADER + snapshot::META..)
            .ok_or(too_small)?;
        // The session's one decimal writer, so no second digit loop.
        let mut w = Out::new(json);
        w.bytes(PREFIX);
        super::uint(&mut w, u64::from(status));
        w.byte(b'}');
        let len = w.finish().map_err(|_| too_small)?.0.len();
        let keys = Keys::derive(&self.provider, &self.credentials, key)?;
        let period = millis(self.config.refusal_retry);
        let lapses = if period == 0 {
            u64::MAX
        } else {
            wall.unix_ms.saturating_add(period)
        };
        let total = snapshot::seal(&keys, wall.unix_ms, lapses, len, out)?;
        Ok(out.get(..total).unwrap_or_default())
    }

    /// Reads a refusal record of [`Session::seal_refusal`] at wall time `wall`: the status,
    /// and how long it still holds (never longer than this session's own
    /// [`Config::refusal_retry`](super::Config::refusal_retry) when that is not zero, nor
    /// than the period its writer sealed). A record that is foreign, tampered with, a token
    /// record, or lapsed ([`SnapshotError::Expired`]) is an error: ignore it and fetch.
    /// Without a wall clock records cannot be judged ([`SnapshotError::NoWallClock`]).
    /// `bytes` is opened in place.
    pub fn open_refusal(
        &self,
        wall: Option<WallTime>,
        key: Key<'_>,
        bytes: &mut [u8],
    ) -> Result<Refusal, SnapshotError> {
        let wall = wall.ok_or(SnapshotError::NoWallClock)?;
        let keys = Keys::derive(&self.provider, &self.credentials, key)?;
        let (meta, json) = snapshot::open(&keys, bytes)?;
        let number = json
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_suffix(b"}"))
            .ok_or(SnapshotError::Malformed)?;
        let status = parse_uint(number)
            .ok()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or(SnapshotError::Malformed)?;
        let own = millis(self.config.refusal_retry);
        if meta.expires_at == u64::MAX {
            // Written by a process that never retries: this one still does, after its own
            // period, counted from when the record was written.
            if own == 0 {
                return Ok(Refusal {
                    status,
                    remaining: None,
                });
            }
        }
        let period = meta.expires_at.saturating_sub(meta.written_at);
        let period = if own == 0 { period } else { period.min(own) };
        // Counted on this host's clock from the record's writing: a writer whose clock is
        // ahead never stretches a refusal beyond its period (the record then just started).
        let elapsed = wall.unix_ms.saturating_sub(meta.written_at);
        if elapsed >= period {
            return Err(SnapshotError::Expired);
        }
        Ok(Refusal {
            status,
            remaining: Some(Duration::from_millis(period - elapsed)),
        })
    }

    /// Ends the fetch for `ticket` with another process's refusal of this credential
    /// (`status`, read from the fleet's store with [`Session::open_refusal`]): fetches stop
    /// as after a refusal of this session's own, for `remaining` (`None`: until
    /// [`Session::retry`] or new credentials).
    pub fn on_refused_elsewhere(
        &mut self,
        ticket: Ticket,
        now: Instant,
        status: u16,
        remaining: Option<Duration>,
    ) -> Completion {
        if self.take_fetch(&ticket).is_none() {
            return Completion::Stale;
        }
        let report = ErrorReport {
            status,
            error: Error::InvalidCredentials,
            detail: Default::default(),
        };
        self.fail(now, Cause::Response(report), None);
        self.backoff_until = remaining.map(|r| now.saturating_add_millis(millis(r)));
        Completion::Failed
    }
}
