//! [`Proxy`]: which proxy `https://` requests take, and the rule that plaintext never does.

use std::fmt;

/// Which proxy `https://` requests take.
///
/// Only `https://` requests ever use a proxy, through a `CONNECT` tunnel, so the proxy sees
/// the host name but neither the secret nor the token. A plaintext `http://` request (to a
/// loopback sandbox, or a LAN one with
/// [`allow_insecure_http`](tessera_core::session::Config::allow_insecure_http)) always goes
/// straight to its host, whatever the environment says, so the secret can never reach a
/// proxy in plaintext.
#[derive(Clone, Debug, Default)]
pub enum Proxy {
    /// The environment's proxy for `https://`: the first of `ALL_PROXY`, `HTTPS_PROXY`,
    /// `HTTP_PROXY` (or their lowercase forms) that is set, with `NO_PROXY` honoured, read
    /// when the client is made. The default.
    #[default]
    Env,
    /// No proxy, whatever the environment says.
    None,
    /// This proxy (made by [`Proxy::url`]), whatever the environment says.
    Url(ProxyUrl),
}

/// A proxy address checked by [`Proxy::url`]. `Debug` shows its host and port only (a
/// proxy URL may carry a password).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    url: String,
    host: String,
    port: u16,
}

impl ProxyUrl {
    /// The URL as given (it may carry `user:password@`: never log it).
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The proxy's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port (the scheme's default when the URL names none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Checks `url`: `http://host[:port]` (a `CONNECT` proxy; `https://`, `socks4://`,
    /// `socks5://` are accepted too), with optional `user:password@`; a bare `host:port`
    /// means `http://`.
    fn parse(url: &str) -> Option<ProxyUrl> {
        let url = url.trim();
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("http".to_owned(), url),
        };
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            "socks4" | "socks4a" | "socks5" | "socks5h" => 1080,
            _ => return None,
        };
        let authority = rest.split(['/', '?', '#']).next()?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
            let (h, tail) = v6.split_once(']')?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if tail.is_empty() => default_port,
                None => return None,
            };
            (format!("[{h}]"), port)
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().ok()?),
                None => (host_port.to_owned(), default_port),
            }
        };
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        valid.then_some(ProxyUrl { url, host, port })
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({}:{})", self.host, self.port)
    }
}

impl Drop for ProxyUrl {
    fn drop(&mut self) {
        // It may hold the proxy's password.
        zeroize::Zeroize::zeroize(&mut self.url);
    }
}

/// A proxy URL that is not a proxy address ([`Proxy::url`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyError;

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid proxy URL")
    }
}

impl std::error::Error for ProxyError {}

/// The proxy `https://` requests take, as resolved when a client is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The proxy.
    pub url: ProxyUrl,
    /// `NO_PROXY`'s value (hosts that go direct), when the proxy came from the environment.
    pub no_proxy: Option<String>,
}

impl Proxy {
    /// The proxy at `url`: `http://host:port` (a `CONNECT` proxy), with optional
    /// `user:password@`. A URL that is not a proxy address is [`ProxyError`].
    pub fn url(url: &str) -> Result<Proxy, ProxyError> {
        ProxyUrl::parse(url).map(Proxy::Url).ok_or(ProxyError)
    }

    /// The proxy `https://` requests take (`None`: direct), reading the environment for
    /// [`Proxy::Env`]. Plaintext requests never take one, whatever this says.
    pub fn resolve(&self) -> Option<Resolved> {
        match self {
            Proxy::None => None,
            Proxy::Url(url) => Some(Resolved {
                url: url.clone(),
                no_proxy: None,
            }),
            Proxy::Env => from_env(|name| std::env::var(name).ok()),
        }
    }
}

/// The environment's proxy, read through `var`: the order of [`Proxy::Env`]. A variable
/// that is set but is not a proxy address is skipped (the next one is read).
fn from_env(var: impl Fn(&str) -> Option<String>) -> Option<Resolved> {
    let read = |upper: &str| {
        var(upper)
            .or_else(|| var(&upper.to_ascii_lowercase()))
            .filter(|v| !v.trim().is_empty())
    };
    let url = ["ALL_PROXY", "HTTPS_PROXY", "HTTP_PROXY"]
        .iter()
        .filter_map(|name| read(name))
        .find_map(|v| ProxyUrl::parse(&v))?;
    Some(Resolved {
        url,
        no_proxy: read("NO_PROXY"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_checked_and_never_shown_whole() {
        let Proxy::Url(p) = Proxy::url("http://user:pw@proxy.corp:3128").unwrap() else {
            panic!()
        };
        assert_eq!((p.host(), p.port()), ("proxy.corp", 3128));
        assert_eq!(format!("{p:?}"), "ProxyUrl(proxy.corp:3128)");
        let Proxy::Url(p) = Proxy::url("[::1]:8080").unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.host(), p.port(), p.as_str()),
            ("[::1]", 8080, "http://[::1]:8080")
        );
        for bad in [
            "",
            "ftp://proxy:21",
            "http://:80",
            "http://proxy:port",
            "http://a b:1",
        ] {
            assert_eq!(Proxy::url(bad).unwrap_err(), ProxyError, "{bad}");
        }
    }

    #[test]
    fn the_environment_is_read_in_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let r = from_env(env(&[
            ("https_proxy", "http://b:2"),
            ("HTTP_PROXY", "http://c:3"),
            ("NO_PROXY", "localhost,.internal"),
        ]))
        .unwrap();
        assert_eq!(
            (r.url.host(), r.no_proxy.as_deref()),
            ("b", Some("localhost,.internal"))
        );
        let r = from_env(env(&[
            ("ALL_PROXY", "http://a:1"),
            ("HTTPS_PROXY", "http://b:2"),
        ]));
        assert_eq!(r.unwrap().url.host(), "a");
        assert_eq!(from_env(env(&[("HTTPS_PROXY", " ")])), None);
        assert_eq!(from_env(env(&[])), None);
    }
}
