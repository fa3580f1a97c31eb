//! The rules every transport shares, written once: how a network failure is classified,
//! whether a URL may carry a secret, how `Retry-After` is read, and the downstream-401 step.
//!
//! A transport owns its sockets, timers, buffers and locking; every decision that two
//! transports would otherwise both write lives here.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use core::time::Duration;

use crate::error::Error;
use crate::json::parse_uint;
use crate::timestamp::parse_http_date;

/// Where a network exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Stage {
    /// The host name did not resolve.
    Dns,
    /// No TCP connection: refused, unreachable, reset while connecting.
    Connect,
    /// The TLS handshake failed: certificate not trusted, wrong host name, expired,
    /// no common protocol version or cipher.
    Tls,
    /// No answer within the time allowed.
    Timeout,
    /// The peer broke HTTP: bad status line, bad framing, oversized headers, a redirect.
    Protocol,
    /// Reading or writing the connection failed after it was up (reset, closed early).
    Io,
}

impl Stage {
    /// The snake_case name used in the CLI's JSON (`"cause"`) and in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Dns => "dns",
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Timeout => "timeout",
            Stage::Protocol => "protocol",
            Stage::Io => "io",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified transport failure: the stage, and a short description the transport chose
/// from a fixed set (`&'static str`, so it can never carry a secret or server-sent text).
///
/// ```
/// use tessera_core::transport::{Stage, TransportError};
/// let e = TransportError::new(Stage::Tls, "certificate not trusted");
/// assert_eq!(e.to_string(), "network error (tls): certificate not trusted");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TransportError {
    /// Where it failed.
    pub stage: Stage,
    /// What happened, in a few words.
    pub detail: &'static str,
}

impl TransportError {
    /// A failure at `stage`.
    pub const fn new(stage: Stage, detail: &'static str) -> Self {
        TransportError { stage, detail }
    }

    /// The session abandoned a fetch whose answer did not come within
    /// [`Config::fetch_timeout`](crate::session::Config::fetch_timeout).
    pub const ABANDONED: TransportError =
        TransportError::new(Stage::Timeout, "no response before the fetch timeout");
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "network error ({}): {}", self.stage, self.detail)
    }
}

impl core::error::Error for TransportError {}

/// Whether a request to `url` may carry a secret (a client secret, or a bearer token).
///
/// `https://` always may. `http://` may only when the host is loopback (`localhost`,
/// `*.localhost`, `127.0.0.0/8`, `[::1]`), because nothing then leaves the machine, or when
/// the application says so with `allow_insecure_http` (a LAN sandbox). Any other scheme is
/// refused. The answer depends on the URL alone: a proxy does not change it.
///
/// ```
/// use tessera_core::transport::check_url;
/// assert!(check_url("https://uat.setu.co/api/v2/auth/token", false).is_ok());
/// assert!(check_url("http://127.0.0.1:8080/token", false).is_ok());
/// assert!(check_url("http://10.0.0.7/token", false).is_err());
/// assert!(check_url("http://10.0.0.7/token", true).is_ok());
/// ```
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<(), Error> {
    let (scheme, _) = url.split_once("://").ok_or(Error::Insecure)?;
    if scheme.eq_ignore_ascii_case("https") {
        return Ok(());
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(Error::Insecure);
    }
    if allow_insecure_http || host(url).is_some_and(is_loopback) {
        return Ok(());
    }
    Err(Error::Insecure)
}

/// The host of `url` as written (no user info, no port; an IPv6 literal keeps its
/// brackets), or `None` when it has no `scheme://` or no host.
///
/// ```
/// use tessera_core::transport::host;
/// assert_eq!(host("https://user@api.example:8443/v1?x=1"), Some("api.example"));
/// assert_eq!(host("http://[::1]:8080/token"), Some("[::1]"));
/// ```
pub fn host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        let close = host_port.find(']')?;
        host_port.get(..=close)?
    } else {
        host_port.split_once(':').map_or(host_port, |(h, _)| h)
    };
    (!host.is_empty()).then_some(host)
}

/// Whether `host` (as [`host`] returns it) names this machine: `localhost` and
/// `*.localhost` (RFC 6761), `127.0.0.0/8`, `::1`, and IPv4-mapped loopback.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let ends_localhost = host.len() >= 9
        && host
            .get(host.len() - 9..)
            .is_some_and(|t| t.eq_ignore_ascii_case("localhost"));
    if ends_localhost {
        let head = host.get(..host.len() - 9).unwrap_or_default();
        return head.is_empty() || head.ends_with('.');
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return v4.is_loopback();
    }
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match inner.parse::<Ipv6Addr>() {
        Ok(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => false,
    }
}

/// Reads a `Retry-After` header value: delay-seconds, or an HTTP date when the wall clock
/// (`wall_now`, Unix seconds) is known (a date in the past means "now"). Anything else, or
/// a date with no wall clock, is `None`.
///
/// The value is not capped here: [`Session`](crate::Session) caps it with
/// [`Config::retry_after_cap`](crate::session::Config::retry_after_cap).
///
/// ```
/// use core::time::Duration;
/// use tessera_core::transport::retry_after;
/// assert_eq!(retry_after(" 120 ", None), Some(Duration::from_secs(120)));
/// let date = "Sun, 06 Nov 1994 08:49:37 GMT";
/// assert_eq!(retry_after(date, Some(784_111_717)), Some(Duration::from_secs(60)));
/// assert_eq!(retry_after(date, None), None);
/// ```
pub fn retry_after(value: &str, wall_now: Option<u64>) -> Option<Duration> {
    let value = value.trim();
    // Saturates: more digits than u64 holds means "a very long time"; the session caps it.
    if let Ok(secs) = parse_uint(value.as_bytes()) {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value).ok()?;
    let now = i64::try_from(wall_now?).ok()?;
    Some(Duration::from_secs(
        u64::try_from(at.saturating_sub(now)).unwrap_or(0),
    ))
}

/// What a transport does after a downstream call's response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AfterCall {
    /// Hand the response to the caller.
    Done,
    /// A first 401: report the token rejected ([`Session::reject`](crate::Session::reject)),
    /// get a token again and send the call once more.
    RejectAndRetry,
}

/// The downstream-401 rule, for one call: reject once, refetch once, retry once.
///
/// ```
/// use tessera_core::transport::{AfterCall, Downstream};
/// let mut call = Downstream::new();
/// assert_eq!(call.after(401), AfterCall::RejectAndRetry);
/// assert_eq!(call.after(401), AfterCall::Done); // the second 401 goes to the caller
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Downstream {
    retried: bool,
}

impl Downstream {
    /// A call not yet sent.
    pub const fn new() -> Self {
        Downstream { retried: false }
    }

    /// What to do with a response of `status`.
    pub fn after(&mut self, status: u16) -> AfterCall {
        if status == 401 && !self.retried {
            self.retried = true;
            AfterCall::RejectAndRetry
        } else {
            AfterCall::Done
        }
    }
}

/// The error for a response body larger than the `capacity` a transport reads.
pub const fn body_too_large(capacity: usize) -> Error {
    Error::Capacity {
        field: "response body",
        needed: capacity.saturating_add(1),
        capacity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_or_loopback_may_carry_a_secret() {
        for ok in [
            "https://api.example/token",
            "HTTPS://api.example",
            "http://localhost/token",
            "http://LOCALHOST:8080",
            "http://sandbox.localhost:1/x",
            "http://127.0.0.1/",
            "http://127.255.0.9:80",
            "http://[::1]:8080/token",
            "http://[::ffff:127.0.0.1]/",
            "http://user:pw@localhost/x",
        ] {
            assert_eq!(check_url(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "http://10.255.255.1/token",
            "http://api.example/token",
            "http://localhost.evil.example/",
            "http://evillocalhost/",
            "http://127.0.0.1.evil.example/",
            "http://localhost@evil.example/",
            "http://[::2]/",
            "http://128.0.0.1/",
            "ftp://localhost/",
            "api.example/token",
            "http:///path",
        ] {
            assert_eq!(check_url(bad, false), Err(Error::Insecure), "{bad}");
        }
        assert_eq!(check_url("http://10.0.0.7/", true), Ok(()));
        assert_eq!(check_url("ftp://10.0.0.7/", true), Err(Error::Insecure));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("0", None), Some(Duration::ZERO));
        assert_eq!(
            retry_after("99999999999999999999999", None),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(retry_after("-1", None), None);
        assert_eq!(retry_after("1.5", None), None);
        assert_eq!(retry_after("", None), None);
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(retry_after(date, Some(784_111_800)), Some(Duration::ZERO));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 PST", Some(0)), None);
    }

    #[test]
    fn the_second_401_is_the_callers() {
        let mut d = Downstream::new();
        assert_eq!(d.after(200), AfterCall::Done);
        assert_eq!(d.after(401), AfterCall::RejectAndRetry);
        assert_eq!(d.after(401), AfterCall::Done);
    }
}
