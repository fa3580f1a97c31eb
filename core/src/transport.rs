//! The rules every transport shares, written once: how a network failure is classified,
//! how a URL is parsed and whether it may carry a secret, how `Retry-After` is read, and the downstream-401 step.
//!
//! A transport owns its sockets, timers, buffers and locking; every decision that two
//! transports would otherwise both write lives here.

use core::fmt;
use core::net::IpAddr;

use crate::ip::{ipv4, ipv6};
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

/// What is wrong with a URL, as [`parse_url`] and [`check_url`] name it in
/// [`Error::Url`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UrlError {
    /// No `scheme://`, or a scheme other than `http` and `https`.
    Scheme,
    /// `user:password@` (or any `@`) in the authority: credentials travel in the
    /// `Authorization` header, never in the URL, and `@` is how a URL hides its real host.
    UserInfo,
    /// No host (`http:///path`, `http://:8080/`).
    EmptyHost,
    /// A host the core does not accept: a character outside letters, digits, `-`, `_` and
    /// `.` (a non-ASCII name must be given in its `xn--` form), an empty or over-long label,
    /// a bad IP literal (an IPv6 zone, octal or short IPv4 forms such as `127.1`).
    Host,
    /// A `%`-escape in the host: the core checks the host as written, so it is never decoded.
    PercentEncoded,
    /// A port that is empty, not decimal, 0, or above 65535.
    Port,
    /// A control character, a space or a non-ASCII byte anywhere in the URL.
    Control,
    /// A backslash anywhere in the URL (some parsers read it as `/`, so two parsers would
    /// disagree about where the host ends).
    Backslash,
}

impl UrlError {
    /// What was wrong, in a few words (`the URL has …`).
    pub const fn describe(self) -> &'static str {
        match self {
            UrlError::Scheme => "a scheme other than http:// or https://",
            UrlError::UserInfo => "user info (`user:password@`)",
            UrlError::EmptyHost => "no host",
            UrlError::Host => "a host name or IP literal the core does not accept",
            UrlError::PercentEncoded => "a %-escape in the host",
            UrlError::Port => "a bad port (empty, not a number, 0 or above 65535)",
            UrlError::Control => "a control character, space or non-ASCII byte",
            UrlError::Backslash => "a backslash",
        }
    }
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Scheme {
    /// `http://`: plaintext.
    Http,
    /// `https://`: TLS.
    Https,
}

impl Scheme {
    /// The port a URL of this scheme uses when it names none: 80 or 443.
    pub const fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A URL as the core parsed and checked it: what a transport connects to, exactly.
///
/// A transport that connects to [`Target::host`] and [`Target::port`] and sends
/// [`Target::path`] then [`Target::query`] as the request target sends the request where the
/// core's check said it may go; two parsers never get to disagree about the host.
///
/// ```
/// use tessera_core::transport::{parse_url, Scheme};
/// let t = parse_url("https://API.example:8443/v1/token?x=1#frag").unwrap();
/// assert_eq!(t.scheme, Scheme::Https);
/// assert_eq!((t.host, t.port), ("API.example", 8443));
/// assert_eq!((t.path, t.query), ("/v1/token", "?x=1"));
/// let t = parse_url("http://[::1]").unwrap();
/// assert_eq!((t.host, t.port, t.path, t.query), ("[::1]", 80, "/", ""));
/// assert_eq!(t.ip(), Some("::1".parse().unwrap()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Target<'a> {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host as written: a DNS name (its case kept), a dotted-quad IPv4 literal, or an
    /// IPv6 literal in brackets. This is the `Host` header's name and the TLS server name.
    pub host: &'a str,
    /// The port: the URL's, or the scheme's default.
    pub port: u16,
    /// The path, starting with `/` (`/` when the URL has none).
    pub path: &'a str,
    /// The query with its leading `?`, or empty. The fragment is never sent.
    pub query: &'a str,
}

impl Target<'_> {
    /// The host as an IP address, when it is an IP literal (IPv6 without its brackets).
    pub fn ip(&self) -> Option<IpAddr> {
        if let Some(v4) = ipv4(self.host) {
            return Some(IpAddr::V4(v4));
        }
        let inner = self.host.strip_prefix('[')?.strip_suffix(']')?;
        ipv6(inner).map(IpAddr::V6)
    }

    /// Whether the host names this machine (see [`is_loopback`]).
    pub fn is_loopback(&self) -> bool {
        is_loopback(self.host)
    }

    /// Whether [`Target::port`] is the scheme's default (80 or 443): a `Host` header then
    /// leaves it out; otherwise it carries `:port`.
    pub const fn port_is_default(&self) -> bool {
        self.port == self.scheme.default_port()
    }
}

/// Parses `url` strictly: `http` or `https`, then an authority of a host and an optional
/// port, and nothing else in it; every transport connects to the pieces returned.
///
/// Refused, with the [`UrlError`] that names why: user info, an empty host, a `%`-escape
/// or any character other than letters, digits, `-`, `_` and `.` in a host name, an
/// IP literal in a form other than dotted-quad IPv4 or bracketed IPv6 without a zone, a
/// bad port, and control characters, spaces, non-ASCII bytes or backslashes anywhere.
/// So `http://127.0.0.1#.attacker.example/` parses as host `127.0.0.1` with a fragment,
/// and `http://127.0.0.1\.attacker.example/` is refused.
///
/// ```
/// use tessera_core::transport::{parse_url, UrlError};
/// use tessera_core::Error;
/// assert_eq!(parse_url("http://127.0.0.1#.attacker.example/").unwrap().host, "127.0.0.1");
/// assert_eq!(parse_url("https://user:pw@api.example/"), Err(Error::Url(UrlError::UserInfo)));
/// assert_eq!(parse_url("https://api.example:0/"), Err(Error::Url(UrlError::Port)));
/// ```
pub fn parse_url(url: &str) -> Result<Target<'_>, Error> {
    let bad = |e| Error::Url(e);
    if let Some(b) = url.bytes().find(|b| !b.is_ascii_graphic() || *b == b'\\') {
        return Err(bad(if b == b'\\' {
            UrlError::Backslash
        } else {
            UrlError::Control
        }));
    }
    // `split_once(':')`, not `("://")`: the substring searcher keeps a panic path.
    let (scheme, rest) = url
        .split_once(':')
        .and_then(|(scheme, rest)| Some((scheme, rest.strip_prefix("//")?)))
        .ok_or(bad(UrlError::Scheme))?;
    let scheme = if scheme.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else if scheme.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else {
        return Err(bad(UrlError::Scheme));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at_checked(end).ok_or(bad(UrlError::Host))?;
    if authority.contains('@') {
        return Err(bad(UrlError::UserInfo));
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(bad(UrlError::Host))?;
        let (host, after) = authority
            .split_at_checked(close + 1)
            .ok_or(bad(UrlError::Host))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(bad(UrlError::Host))?),
        };
        let inner = host.get(1..host.len() - 1).unwrap_or_default();
        if inner.contains('%') {
            // An IPv6 zone (`%25eth0`) names an interface of this machine's choosing.
            return Err(bad(UrlError::Host));
        }
        ipv6(inner).ok_or(bad(UrlError::Host))?;
        (host, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        check_host_name(host)?;
        (host, port)
    };
    let port = match port {
        None => scheme.default_port(),
        Some(p) => parse_port(p).ok_or(bad(UrlError::Port))?,
    };
    let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
    let (path, query) = match tail.find('?') {
        Some(q) => tail.split_at_checked(q).ok_or(bad(UrlError::Host))?,
        None => (tail, ""),
    };
    Ok(Target {
        scheme,
        host,
        port,
        path: if path.is_empty() { "/" } else { path },
        query,
    })
}

/// A host that is not a bracketed IPv6 literal: a dotted-quad IPv4 literal or a DNS name of
/// letters, digits, `-` and `_`, in labels of 1 to 63 bytes, 253 bytes at most (one
/// trailing `.` allowed). A name whose last label is numeric must be a dotted-quad address:
/// `127.1`, `0x7f.1` or `0177.0.0.1` mean 127.0.0.1 to some resolvers and a name to others.
fn check_host_name(host: &str) -> Result<(), Error> {
    let bad = |e| Err(Error::Url(e));
    if host.is_empty() {
        return bad(UrlError::EmptyHost);
    }
    if host.contains('%') {
        return bad(UrlError::PercentEncoded);
    }
    if ipv4(host).is_some() {
        return Ok(());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return bad(UrlError::Host);
    }
    for label in name.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return bad(UrlError::Host);
        }
    }
    // Not `rsplit('.').next()` nor `rfind('.')`: their searchers keep panic paths.
    let dot = name.bytes().rposition(|b| b == b'.');
    let last = dot.map_or(name, |i| name.get(i + 1..).unwrap_or_default());
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"));
    if numeric {
        return bad(UrlError::Host);
    }
    Ok(())
}

/// 1 to 5 decimal digits, 1..=65535.
fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&n| n != 0)
}

/// Whether a request to `url` may carry a secret (a client secret, or a bearer token), and
/// the URL as parsed: connect to what this returns.
///
/// The URL must first parse ([`parse_url`]; otherwise [`Error::Url`] says what was wrong).
/// Then `https://` always may. `http://` may only when the host is loopback (`localhost`,
/// `*.localhost`, `127.0.0.0/8`, `[::1]`), because nothing then leaves the machine, or when
/// the application says so with `allow_insecure_http` (a LAN sandbox); otherwise
/// [`Error::Insecure`]. The answer depends on the URL alone: a proxy does not change it.
///
/// ```
/// use tessera_core::transport::check_url;
/// assert!(check_url("https://uat.setu.co/api/v2/auth/token", false).is_ok());
/// assert!(check_url("http://127.0.0.1:8080/token", false).is_ok());
/// assert!(check_url("http://10.0.0.7/token", false).is_err());
/// assert!(check_url("http://10.0.0.7/token", true).is_ok());
/// assert_eq!(check_url("http://127.0.0.1:8080/token", false).unwrap().port, 8080);
/// ```
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<Target<'_>, Error> {
    let target = parse_url(url)?;
    match target.scheme {
        Scheme::Https => Ok(target),
        Scheme::Http if allow_insecure_http || target.is_loopback() => Ok(target),
        Scheme::Http => Err(Error::Insecure),
    }
}

/// The host of `url` as written (no port; an IPv6 literal keeps its brackets), or `None`
/// when the URL does not parse ([`parse_url`]).
///
/// ```
/// use tessera_core::transport::host;
/// assert_eq!(host("https://api.example:8443/v1?x=1"), Some("api.example"));
/// assert_eq!(host("http://[::1]:8080/token"), Some("[::1]"));
/// assert_eq!(host("https://user@api.example/"), None);
/// ```
pub fn host(url: &str) -> Option<&str> {
    parse_url(url).ok().map(|t| t.host)
}

/// `url` for a log line or an error message: any `user:password@` in its authority is left
/// out, whatever the scheme (`redis://:pw@cache:6379/0` shows as `redis://cache:6379/0`).
/// The user info is what comes before the last `@` of the authority, which ends at the
/// first `/`, `?` or `#` as in every URL parser; nothing else is changed.
///
/// ```
/// use tessera_core::transport::display_url;
/// assert_eq!(display_url("rediss://app:s3cret@cache.example:6380/0").to_string(),
///            "rediss://cache.example:6380/0");
/// assert_eq!(display_url("https://api.example/x?a=b@c").to_string(),
///            "https://api.example/x?a=b@c");
/// ```
pub const fn display_url(url: &str) -> DisplayUrl<'_> {
    DisplayUrl(url)
}

/// A URL shown without its user info: see [`display_url`].
#[derive(Clone, Copy)]
pub struct DisplayUrl<'a>(&'a str);

impl DisplayUrl<'_> {
    /// The scheme part up to `://`, and the rest with any user info cut out.
    fn pieces(&self) -> (&str, &str, &str) {
        let url = self.0;
        let (head, rest) = match url.find("://") {
            Some(i) => url.split_at_checked(i + 3).unwrap_or(("", url)),
            None => ("", url),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = rest.get(..end).unwrap_or(rest);
        match authority.rfind('@') {
            Some(at) => (
                head,
                rest.get(at + 1..end).unwrap_or_default(),
                rest.get(end..).unwrap_or_default(),
            ),
            None => (head, authority, rest.get(end..).unwrap_or_default()),
        }
    }
}

impl fmt::Display for DisplayUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, authority, tail) = self.pieces();
        write!(f, "{head}{authority}{tail}")
    }
}

impl fmt::Debug for DisplayUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
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
    if let Some(v4) = ipv4(host) {
        return v4.is_loopback();
    }
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match ipv6(inner) {
        Some(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        None => false,
    }
}

/// Whether a request found on a dead kept connection (closed by the server with the request
/// in it, before any byte of the answer) may be sent again on a new one: only when sending
/// it twice has the effect of sending it once, by its method (RFC 9110 §9.2.2: `GET`,
/// `HEAD`, `PUT`, `DELETE`, `OPTIONS`) or by the caller's `Idempotency-Key`. Otherwise the
/// caller gets an `io` failure: a payment never reaches an API twice without its key. One
/// rule for every transport that keeps connections.
///
/// ```
/// use tessera_core::transport::may_send_again;
/// assert!(may_send_again("GET", []));
/// assert!(!may_send_again("POST", ["Content-Type"]));
/// assert!(may_send_again("POST", ["content-type", "Idempotency-Key"]));
/// assert!(!may_send_again("BREW", []));
/// ```
pub fn may_send_again<'a>(method: &str, header_names: impl IntoIterator<Item = &'a str>) -> bool {
    crate::Method::parse(method).is_some_and(crate::Method::is_idempotent)
        || header_names
            .into_iter()
            .any(|name| name.eq_ignore_ascii_case("idempotency-key"))
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
    use std::string::ToString;

    #[test]
    fn only_tls_or_loopback_may_carry_a_secret() {
        for ok in [
            "https://api.example/token",
            "HTTPS://api.example",
            "http://localhost/token",
            "http://LOCALHOST:8080",
            "http://sandbox.localhost:1/x",
            "http://localhost./x",
            "http://127.0.0.1/",
            "http://127.255.0.9:80",
            "http://[::1]:8080/token",
            "http://[::ffff:127.0.0.1]/",
            "http://127.0.0.1#.attacker.example/",
            "http://127.0.0.1?.attacker.example/",
        ] {
            assert!(check_url(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.255.255.1/token",
            "http://api.example/token",
            "http://localhost.evil.example/",
            "http://evillocalhost/",
            "http://127.0.0.1.evil.example/",
            "http://[::2]/",
            "http://128.0.0.1/",
        ] {
            assert_eq!(check_url(bad, false), Err(Error::Insecure), "{bad}");
        }
        assert!(check_url("http://10.0.0.7/", true).is_ok());
        assert_eq!(
            check_url("ftp://10.0.0.7/", true),
            Err(Error::Url(UrlError::Scheme))
        );
    }

    #[test]
    fn the_authority_is_parsed_strictly_and_the_refusal_names_why() {
        use UrlError::*;
        for (url, why) in [
            ("ftp://localhost/", Scheme),
            ("api.example/token", Scheme),
            ("http:/localhost/", Scheme),
            ("javascript://localhost/", Scheme),
            ("http:///path", EmptyHost),
            ("http://:8080/", EmptyHost),
            ("https://", EmptyHost),
            ("http://user:pw@localhost/x", UserInfo),
            ("http://localhost@evil.example/", UserInfo),
            ("https://@api.example/", UserInfo),
            ("https://a:b@c@api.example/", UserInfo),
            ("http://127.0.0.1\\.attacker.example/", Backslash),
            ("https://api.example/a\\b", Backslash),
            ("http://127.0.0.1 .attacker.example/", Control),
            ("http://127.0.0.1\t/", Control),
            ("http://127.0.0.1\r\nHost: x/", Control),
            ("http://127.0.0.1\0.attacker.example/", Control),
            ("https://b\u{fc}cher.example/", Control),
            ("http://127.0.0.1%2eattacker.example/", PercentEncoded),
            ("http://%6c%6f%63%61%6c%68%6f%73%74/", PercentEncoded),
            ("http://localhost:/", Port),
            ("http://localhost:0/", Port),
            ("http://localhost:65536/", Port),
            ("http://localhost:080800/", Port),
            ("http://localhost:+80/", Port),
            ("http://localhost:8o/", Port),
            ("http://localhost:80:81/", Port),
            ("http://[::1]:/", Port),
            ("http://127.0.0.1;.attacker.example/", Host),
            ("http://127.1/", Host),
            ("http://0x7f.0.0.1/", Host),
            ("http://0177.0.0.1/", Host),
            ("http://2130706433/", Host),
            ("http://a..b/", Host),
            ("http://.localhost/", Host),
            ("http://localhost../", Host),
            ("http://[::1/", Host),
            ("http://[::1]x/", Host),
            ("http://[fe80::1%25eth0]/", Host),
            ("http://[127.0.0.1]/", Host),
            ("http://[]/", Host),
            ("http://exa*mple/", Host),
        ] {
            assert_eq!(parse_url(url), Err(Error::Url(why)), "{url}");
            assert_eq!(check_url(url, true), Err(Error::Url(why)), "{url}");
        }
        let long_label = "a".repeat(64);
        let url = std::format!("https://{long_label}.example/");
        assert_eq!(parse_url(&url), Err(Error::Url(Host)));
        let ok_label = "a".repeat(63);
        let url = std::format!("https://{ok_label}.example/");
        assert_eq!(parse_url(&url).unwrap().host.len(), 63 + 8);
    }

    #[test]
    fn the_parsed_pieces_are_what_a_transport_connects_to() {
        let t = check_url("http://127.0.0.1#.attacker.example/", false).unwrap();
        assert_eq!(
            t,
            Target {
                scheme: Scheme::Http,
                host: "127.0.0.1",
                port: 80,
                path: "/",
                query: "",
            }
        );
        assert_eq!(t.ip(), Some(IpAddr::V4(core::net::Ipv4Addr::LOCALHOST)));
        let t = parse_url("https://api_1.example.:65535?a=1&b=/c#x?y").unwrap();
        assert_eq!(
            (t.host, t.port, t.path, t.query),
            ("api_1.example.", 65535, "/", "?a=1&b=/c")
        );
        assert!(!t.port_is_default());
        assert_eq!(t.ip(), None);
        let t = parse_url("HTTP://[::ffff:127.0.0.1]:1/a/b?").unwrap();
        assert_eq!(t.scheme, Scheme::Http);
        assert_eq!(
            (t.host, t.port, t.path, t.query),
            ("[::ffff:127.0.0.1]", 1, "/a/b", "?")
        );
        assert!(t.is_loopback());
        assert!(parse_url("https://api.example:443/")
            .unwrap()
            .port_is_default());
        // A path may hold what an authority may not.
        let t = parse_url("https://api.example/u/a@b:c%20d").unwrap();
        assert_eq!((t.host, t.path), ("api.example", "/u/a@b:c%20d"));
        assert_eq!(host("http://[::1]:8080/token"), Some("[::1]"));
        assert_eq!(host("http://user@localhost/"), None);
    }

    #[test]
    fn display_url_never_shows_user_info() {
        for (url, shown) in [
            ("redis://:s3cret@cache:6379/0", "redis://cache:6379/0"),
            (
                "rediss://app:s3cret@cache.example:6380",
                "rediss://cache.example:6380",
            ),
            ("https://a:b@c@api.example/x", "https://api.example/x"),
            ("https://api.example/u/a@b", "https://api.example/u/a@b"),
            ("https://api.example?x=a@b", "https://api.example?x=a@b"),
            ("https://api.example", "https://api.example"),
            ("user:pw@host/x", "host/x"),
            ("", ""),
            ("redis://@", "redis://"),
        ] {
            assert_eq!(display_url(url).to_string(), shown, "{url}");
            assert_eq!(
                std::format!("{:?}", display_url(url)),
                std::format!("{shown:?}")
            );
        }
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
