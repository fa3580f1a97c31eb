//! Shared pieces of Tessera's host tools: the one-line JSON reports the `tessera` CLI prints,
//! and the provider and network options the CLI and the quickstart share.
//!
//! Keys appear in the documented order, so the output is stable for scripts and tests.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera_core::session::{Cause, Failure};
use tessera_core::{
    ClientAuth, Detail, Error, ErrorKind, Grant, ProviderKind, TokenInfo, TransportError,
};
use tessera_std::{FileStore, Options, OwnedProvider, RedisStore, Trust};

pub mod call;
#[cfg(feature = "embassy")]
pub mod embassy;
pub mod tokio;

/// Writes `{"k":v,...}` with keys in the given order.
fn object(fields: &[(&str, Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::from(*k), v))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

/// `{"ok":true,"access_token":…,"token_type":…,"expires_in":…,"lifetime_s":…,"refresh_token":…,"scope":[…]}`.
/// With `show_token` false the token reads `<redacted>`.
pub fn grant_json(g: &Grant, show_token: bool) -> String {
    grant_fields(g, show_token, None)
}

/// [`grant_json`] with `"cached"`: whether the token came from a `--cache` file or a
/// `--store` without a request to the provider.
pub fn token_json(g: &Grant, show_token: bool, cached: bool) -> String {
    grant_fields(g, show_token, Some(cached))
}

fn grant_fields(g: &Grant, show_token: bool, cached: Option<bool>) -> String {
    let token = if show_token {
        g.access_token()
    } else {
        "<redacted>"
    };
    let refresh = g
        .refresh_token()
        .map(|r| if show_token { r } else { "<redacted>" });
    let mut fields = vec![
        ("ok", true.into()),
        ("access_token", token.into()),
        ("token_type", g.token_type().into()),
        ("expires_in", opt(g.expires_in())),
        ("lifetime_s", g.lifetime_s().into()),
        ("refresh_token", opt(refresh)),
        ("scope", g.scopes().iter().collect::<Vec<_>>().into()),
    ];
    if let Some(cached) = cached {
        fields.push(("cached", cached.into()));
    }
    object(&fields)
}

/// `{"ok":true,"username":…,"client_id":…,"scope":[…],"issued_at":…,"expires_at":…}`.
pub fn info_json(i: &TokenInfo) -> String {
    object(&[
        ("ok", true.into()),
        ("username", i.username.as_str().into()),
        ("client_id", i.client_id.as_str().into()),
        ("scope", i.scopes.iter().collect::<Vec<_>>().into()),
        ("issued_at", i.issued_at.into()),
        ("expires_at", i.expires_at.into()),
    ])
}

/// `{"ok":false,"kind":…,"cause":…,"detail":…,"code":…,"message":…,"trace_id":…,"field":…,"needed":…}`.
///
/// `cause` and `detail` say which network stage failed and how (`"cause":"tls",
/// "detail":"certificate not trusted"`) when `kind` is `transport`, and are null otherwise.
/// `message` is the provider's own text, with the secret already scrubbed by the core.
pub fn error_json(error: &Error, detail: Option<&Detail>) -> String {
    let (field, needed) = match *error {
        Error::Malformed { field, .. } => (field, None),
        Error::Capacity { field, needed, .. } => (Some(field), Some(needed)),
        _ => (None, None),
    };
    error_parts(error.kind(), None, detail, field, needed)
}

fn error_parts(
    kind: ErrorKind,
    transport: Option<TransportError>,
    detail: Option<&Detail>,
    field: Option<&str>,
    needed: Option<usize>,
) -> String {
    object(&[
        ("ok", false.into()),
        ("kind", kind.as_str().into()),
        ("cause", opt(transport.map(|t| t.stage.as_str()))),
        ("detail", opt(transport.map(|t| t.detail))),
        ("code", opt(detail.and_then(|d| d.code()))),
        ("message", opt(detail.and_then(|d| d.message()))),
        ("trace_id", opt(detail.and_then(|d| d.trace_id()))),
        ("field", opt(field)),
        ("needed", opt(needed)),
    ])
}

/// The same line for a transport failure: `"kind":"transport","cause":…,"detail":…`.
pub fn transport_json(error: TransportError) -> String {
    error_parts(ErrorKind::Transport, Some(error), None, None, None)
}

/// The same line for a failure known only by its kind.
pub fn kind_json(kind: ErrorKind) -> String {
    error_parts(kind, None, None, None, None)
}

/// The same line for a lifecycle failure.
pub fn failure_json(failure: &Failure) -> String {
    match &failure.cause {
        Cause::Response(r) => error_json(&r.error, Some(&r.detail)),
        Cause::Local(e) => error_json(e, None),
        Cause::Transport(t) => transport_json(*t),
    }
}

/// The same line for any tessera-std error.
pub fn std_error_json(e: &tessera_std::Error) -> String {
    match e {
        tessera_std::Error::Token { failure, .. } => failure_json(failure),
        tessera_std::Error::Core(e) => error_json(e, None),
        other => match other.transport() {
            Some(t) => transport_json(t),
            None => error_parts(other.kind(), None, None, None, None),
        },
    }
}

/// Which provider, where, and how: the options `tessera token` and `quickstart` share.
#[derive(Debug, Default)]
pub struct Target {
    /// `--base-url` (the documented default when absent).
    pub base_url: Option<String>,
    /// `--token-url`, OAuth 2.0's whole token endpoint.
    pub token_url: Option<String>,
    /// `--scope`, OAuth 2.0 only.
    pub scope: Option<String>,
    /// `--auth basic|body`, OAuth 2.0 only.
    pub auth: Option<String>,
    /// `--ca FILE`: trust exactly the certificates in this PEM file (one or more) instead
    /// of the compiled-in web roots.
    pub ca: Option<String>,
    /// `--allow-insecure-http`: let the secret and tokens travel over plaintext `http://`
    /// to a host that is not loopback (a LAN sandbox only).
    pub allow_insecure_http: bool,
    /// `--timeout SECONDS`: the connect and whole-request timeouts (default 10 s and 30 s).
    pub timeout: Option<Duration>,
    /// `--cache FILE`: keep the token in this file (sealed, mode 0600, never the secret)
    /// so the next run reuses it while it lives.
    pub cache: Option<String>,
    /// `--store redis://host:port[/db]` (or `rediss://`, checked against `--ca`'s roots),
    /// or `TESSERA_STORE`: share the token with every process using the same credential
    /// through Redis (one provider request per token lifetime, fleet-wide).
    pub store: Option<String>,
}

impl Target {
    /// The provider these options describe, owning its strings.
    pub fn provider(&self, kind: ProviderKind) -> Result<OwnedProvider, String> {
        if kind != ProviderKind::OAuth2 {
            if self.token_url.is_some() || self.scope.is_some() || self.auth.is_some() {
                return Err("--token-url, --scope and --auth apply to oauth2 only".into());
            }
            return Ok(match &self.base_url {
                Some(url) => OwnedProvider::new(kind, url.as_str()),
                None => OwnedProvider::default_for(kind),
            });
        }
        let url = match (&self.token_url, &self.base_url) {
            (Some(u), None) | (None, Some(u)) => u,
            (Some(_), Some(_)) => {
                return Err("give oauth2 --token-url or --base-url, not both".into())
            }
            (None, None) => {
                return Err("oauth2 needs --token-url (the token endpoint's whole URL)".into())
            }
        };
        let auth = match self.auth.as_deref() {
            None | Some("basic") => ClientAuth::Basic,
            Some("body") => ClientAuth::Body,
            Some(other) => return Err(format!("--auth `{other}`: expected basic or body")),
        };
        let mut idp = OwnedProvider::new(kind, url.as_str()).with_auth(auth);
        if let Some(scope) = &self.scope {
            idp = idp.with_scope(scope.as_str());
        }
        Ok(idp)
    }

    /// Which store `--cache` / `--store` name, checked (both transports' options read it).
    pub fn store_choice(&self) -> Result<Option<StoreChoice<'_>>, String> {
        match (&self.cache, &self.store) {
            (Some(_), Some(_)) => Err("give --cache or --store, not both".into()),
            (Some(path), None) => Ok(Some(StoreChoice::File(path))),
            (None, Some(url)) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Ok(Some(StoreChoice::Redis(url)))
            }
            (None, Some(_)) => Err("--store takes redis://host:port[/db] (or rediss://)".into()),
            (None, None) => Ok(None),
        }
    }

    /// tessera-std's options for these settings: the trust roots of `--ca`, the insecure
    /// opt-in, the timeouts. A `--ca` file that cannot be read or holds no certificate is
    /// an error here, before any request.
    pub fn options(&self) -> Result<Options, String> {
        let mut options = Options::default();
        if let Some(path) = &self.ca {
            options.trust = Trust::from_pem_file(path).map_err(|e| format!("--ca {path}: {e}"))?;
        }
        options.session.allow_insecure_http = self.allow_insecure_http;
        options.store = match self.store_choice()? {
            Some(StoreChoice::File(path)) => Some(Arc::new(FileStore::new(path))),
            Some(StoreChoice::Redis(url)) => {
                // `rediss://` is checked against the same roots as the provider (`--ca`).
                // The URL may hold a password: shown without it.
                let shown = tessera_core::transport::display_url(url);
                Some(Arc::new(
                    RedisStore::open_with(url, &options.trust)
                        .map_err(|e| format!("--store {shown}: {e}"))?,
                ))
            }
            None => None,
        };
        if let Some(t) = self.timeout {
            options.connect_timeout = t;
            options.request_timeout = t;
        }
        Ok(options)
    }
}

/// The store `--cache` or `--store` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreChoice<'a> {
    /// `--cache FILE`.
    File(&'a str),
    /// `--store redis://…` (or `rediss://…`).
    Redis(&'a str),
}

/// `--timeout`'s value: seconds, fractions allowed (`0.5`), more than zero.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("--timeout `{text}`: expected seconds, e.g. 0.5 or 30"))
}

/// The client secret: `TESSERA_CLIENT_SECRET` if set, otherwise [`secret_from_stdin`].
pub fn read_secret() -> Result<String, String> {
    match std::env::var("TESSERA_CLIENT_SECRET") {
        Ok(s) => Ok(s),
        Err(_) => secret_from_stdin(),
    }
}

/// All of stdin, less one final newline (and nothing else: a secret may end in spaces).
pub fn secret_from_stdin() -> Result<String, String> {
    let mut raw = Vec::new();
    std::io::stdin()
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading the secret from stdin: {e}"))?;
    let mut s =
        String::from_utf8(raw).map_err(|_| "the secret on stdin is not UTF-8".to_owned())?;
    if s.ends_with('\n') {
        s.pop();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_failure_names_its_stage() {
        let line = transport_json(TransportError::new(
            tessera_core::Stage::Tls,
            "certificate not trusted",
        ));
        assert_eq!(
            line,
            r#"{"ok":false,"kind":"transport","cause":"tls","detail":"certificate not trusted","code":null,"message":null,"trace_id":null,"field":null,"needed":null}"#
        );
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("30"), Ok(Duration::from_secs(30)));
        for bad in ["0", "-1", "x", "NaN", "inf", "1e9"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn providers_own_their_urls() {
        let url = String::from("https://idp.example/oauth2/token");
        let target = Target {
            token_url: Some(url),
            scope: Some("read".into()),
            ..Target::default()
        };
        let p = target.provider(ProviderKind::OAuth2).unwrap();
        drop(target);
        assert_eq!(p.kind(), ProviderKind::OAuth2);
        let bad = Target {
            scope: Some("x".into()),
            ..Target::default()
        };
        assert!(bad.provider(ProviderKind::Setu).is_err());
        let missing = Target {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Target::default()
        };
        assert!(missing.options().unwrap_err().starts_with("--ca "));
    }
}
