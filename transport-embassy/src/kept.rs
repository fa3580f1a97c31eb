//! Kept connections: after an answer whose framing left no doubt, the connection waits,
//! per origin (scheme, host, port), for the next request, up to a fixed number of them and
//! an idle time (30 s, or less when the server's `Keep-Alive: timeout=` says so). Taking one
//! moves it out of the pool: a future dropped while using it drops (closes) it, so a
//! half-used connection is never kept.

use core::time::Duration;

use embassy_time::Instant;
use tessera_core::transport::{Scheme, Target};

/// The longest host name kept (DNS names are at most 253 bytes).
const HOST: usize = 253;

/// Whether a request went on a new connection or a kept one, and what TLS handshake it
/// cost: what [`ApiResponse::connection`](crate::ApiResponse::connection) reports, so a
/// firmware or the CLI can tell (and measure) each case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Connection {
    /// The request went on a kept connection (no TCP connect, no handshake).
    pub reused: bool,
    /// The TLS handshake this request's connection cost.
    pub handshake: Handshake,
}

/// The TLS handshake a request's connection cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Handshake {
    /// None: plain HTTP, or a kept connection.
    None,
    /// A full handshake (key exchange and the certificate chain checked).
    Full,
    /// A resumed handshake: a saved session was offered and the handshake succeeded (with
    /// MbedTLS, whether the server took it is not reported by mbedtls-rs 0.3: one that did
    /// not answers with a full handshake).
    Resumed,
}

impl Connection {
    /// `"new"` or `"reused"`.
    pub const fn as_str(&self) -> &'static str {
        match self.reused {
            true => "reused",
            false => "new",
        }
    }
}

impl Handshake {
    /// `"none"`, `"full"` or `"resumed"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Handshake::None => "none",
            Handshake::Full => "full",
            Handshake::Resumed => "resumed",
        }
    }
}

/// Connections opened and reused, and TLS handshakes, over a client's exchanges so far
/// ([`Client::wire_stats`](crate::Client::wire_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WireStats {
    /// Exchanges on a new connection.
    pub connections: u32,
    /// Exchanges on a kept connection.
    pub reused: u32,
    /// Full TLS handshakes.
    pub full: u32,
    /// Resumed TLS handshakes (a saved session offered; see [`Handshake::Resumed`]).
    pub resumed: u32,
}

impl WireStats {
    pub(crate) fn count(&mut self, c: Connection) {
        let bump = |n: &mut u32| *n = n.saturating_add(1);
        match c.reused {
            true => bump(&mut self.reused),
            false => bump(&mut self.connections),
        }
        match c.handshake {
            Handshake::None => {}
            Handshake::Full => bump(&mut self.full),
            Handshake::Resumed => bump(&mut self.resumed),
        }
    }
}

struct Slot<C> {
    https: bool,
    host: heapless::String<HOST>,
    port: u16,
    until: Instant,
    conn: C,
}

impl<C> Slot<C> {
    fn serves(&self, to: &Target<'_>) -> bool {
        self.https == (to.scheme == Scheme::Https)
            && self.port == to.port
            && self.host.eq_ignore_ascii_case(to.host)
    }
}

/// Up to `N` kept connections.
pub(crate) struct Pool<C, const N: usize> {
    slots: heapless::Vec<Slot<C>, N>,
}

impl<C, const N: usize> Pool<C, N> {
    pub(crate) const fn new() -> Self {
        Pool {
            slots: heapless::Vec::new(),
        }
    }

    /// A kept connection to `to`'s origin that has not idled out, moved out of the pool.
    /// Connections that idled out are dropped (closed) on the way.
    pub(crate) fn take(&mut self, to: &Target<'_>, now: Instant) -> Option<C> {
        self.slots.retain(|s| s.until > now);
        let at = self.slots.iter().position(|s| s.serves(to))?;
        Some(self.slots.swap_remove(at).conn)
    }

    /// Keeps `conn` for `to`'s origin for `idle`, with at most `limit` (and `N`) kept: when
    /// that many are, the one nearest its end is dropped for it. A host name too long to
    /// keep, or a limit of 0, drops `conn` (closed).
    pub(crate) fn put(
        &mut self,
        to: &Target<'_>,
        conn: C,
        idle: Duration,
        now: Instant,
        limit: usize,
    ) {
        let limit = limit.min(N);
        let Ok(host) = heapless::String::try_from(to.host) else {
            return;
        };
        let Some(until) = embassy_time::Duration::try_from(idle)
            .ok()
            .and_then(|d| now.checked_add(d))
        else {
            return;
        };
        if limit == 0 {
            return;
        }
        self.slots.retain(|s| s.until > now);
        while self.slots.len() >= limit {
            let nearest = self
                .slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.until)
                .map(|(i, _)| i);
            match nearest {
                Some(i) => drop(self.slots.swap_remove(i)),
                None => break,
            }
        }
        let _ = self.slots.push(Slot {
            https: to.scheme == Scheme::Https,
            host,
            port: to.port,
            until,
            conn,
        });
    }

    /// Whether no connection is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Drops (closes) every kept connection.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
    }
}

/// What the client keeps: at most `limit` connections, each at most `idle` (from
/// [`Settings`](crate::Settings)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keep {
    pub(crate) limit: usize,
    pub(crate) idle: Duration,
}

impl Keep {
    /// How long to keep a connection after an answer: `idle`, or 1 s less than the server's
    /// `Keep-Alive: timeout=` when shorter (so the client stops using it before the server
    /// closes it); `None` when that leaves nothing.
    pub(crate) fn idle_for(&self, server: Option<Duration>) -> Option<Duration> {
        let idle = match server {
            None => self.idle,
            Some(t) => t.checked_sub(Duration::from_secs(1))?.min(self.idle),
        };
        (!idle.is_zero()).then_some(idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::transport::parse_url;

    const DEFAULT_IDLE: Duration = Duration::from_secs(30);

    #[test]
    fn connections_are_kept_per_origin_until_they_idle_out() {
        let a = parse_url("http://127.0.0.1:8080/x").unwrap();
        let a2 = parse_url("http://127.0.0.1:8080/other?q").unwrap();
        let b = parse_url("http://127.0.0.1:8081/x").unwrap();
        let tls = parse_url("https://127.0.0.1:8080/x").unwrap();
        let t0 = Instant::from_secs(100);
        let mut pool: Pool<u32, 2> = Pool::new();
        pool.put(&a, 1, DEFAULT_IDLE, t0, 2);
        assert_eq!(pool.take(&b, t0), None);
        assert_eq!(pool.take(&tls, t0), None);
        assert_eq!(pool.take(&a2, t0), Some(1));
        assert_eq!(pool.take(&a, t0), None, "taken out");
        pool.put(&a, 2, Duration::from_secs(5), t0, 2);
        assert_eq!(pool.take(&a, Instant::from_secs(105)), None, "idled out");
        // Full: the one nearest its end makes room.
        pool.put(&a, 3, Duration::from_secs(5), t0, 2);
        pool.put(&b, 4, DEFAULT_IDLE, t0, 2);
        pool.put(&tls, 5, DEFAULT_IDLE, t0, 2);
        assert_eq!(pool.take(&a, t0), None);
        assert_eq!(pool.take(&b, t0), Some(4));
        assert_eq!(pool.take(&tls, t0), Some(5));
        let mut none: Pool<u32, 0> = Pool::new();
        none.put(&a, 6, DEFAULT_IDLE, t0, 2);
        assert_eq!(none.take(&a, t0), None);
        // A limit below the capacity: one kept, the newest.
        let mut one: Pool<u32, 2> = Pool::new();
        one.put(&a, 7, DEFAULT_IDLE, t0, 1);
        one.put(&b, 8, DEFAULT_IDLE, t0, 1);
        assert_eq!((one.take(&a, t0), one.take(&b, t0)), (None, Some(8)));
        one.put(&a, 9, DEFAULT_IDLE, t0, 0);
        assert_eq!(one.take(&a, t0), None, "a limit of 0 keeps none");
    }

    #[test]
    fn the_servers_keep_alive_timeout_shortens_the_idle_time() {
        let keep = Keep {
            limit: 2,
            idle: DEFAULT_IDLE,
        };
        assert_eq!(keep.idle_for(None), Some(DEFAULT_IDLE));
        assert_eq!(
            keep.idle_for(Some(Duration::from_secs(5))),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            keep.idle_for(Some(Duration::from_secs(300))),
            Some(DEFAULT_IDLE)
        );
        assert_eq!(keep.idle_for(Some(Duration::from_secs(1))), None);
        assert_eq!(keep.idle_for(Some(Duration::ZERO)), None);
        let zero = Keep {
            limit: 2,
            idle: Duration::ZERO,
        };
        assert_eq!(zero.idle_for(None), None);
    }
}
