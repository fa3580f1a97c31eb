//! Shared pieces of Tessera's host tools: the one-line JSON reports the `tessera` CLI prints.
//!
//! Keys appear in the documented order, so the output is stable for scripts and tests.
#![forbid(unsafe_code)]

use std::io::Read;

use serde_json::Value;
use tessera_core::session::{Cause, Failure};
use tessera_core::{
    AnyProvider, ClientAuth, Detail, Error, ErrorKind, Grant, OAuth2, ProviderKind, TokenInfo,
};

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
    let token = if show_token {
        g.access_token()
    } else {
        "<redacted>"
    };
    let refresh = g
        .refresh_token()
        .map(|r| if show_token { r } else { "<redacted>" });
    object(&[
        ("ok", true.into()),
        ("access_token", token.into()),
        ("token_type", g.token_type().into()),
        ("expires_in", opt(g.expires_in())),
        ("lifetime_s", g.lifetime_s().into()),
        ("refresh_token", opt(refresh)),
        ("scope", g.scopes().iter().collect::<Vec<_>>().into()),
    ])
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

/// `{"ok":false,"kind":…,"code":…,"message":…,"trace_id":…,"field":…,"needed":…}`.
pub fn error_json(error: &Error, detail: Option<&Detail>) -> String {
    let (field, needed) = match *error {
        Error::Malformed { field, .. } => (field, None),
        Error::Capacity { field, needed, .. } => (Some(field), Some(needed)),
        _ => (None, None),
    };
    error_parts(error.kind(), detail, field, needed)
}

fn error_parts(
    kind: ErrorKind,
    detail: Option<&Detail>,
    field: Option<&str>,
    needed: Option<usize>,
) -> String {
    object(&[
        ("ok", false.into()),
        ("kind", kind.as_str().into()),
        ("code", opt(detail.and_then(|d| d.code()))),
        ("message", opt(detail.and_then(|d| d.message()))),
        ("trace_id", opt(detail.and_then(|d| d.trace_id()))),
        ("field", opt(field)),
        ("needed", opt(needed)),
    ])
}

/// The same line for a lifecycle failure (network failures have kind `transport`).
pub fn failure_json(failure: &Failure) -> String {
    match &failure.cause {
        Cause::Response(r) => error_json(&r.error, Some(&r.detail)),
        Cause::Local(e) => error_json(e, None),
        Cause::Transport(_) => error_parts(ErrorKind::Transport, None, None, None),
    }
}

/// The same line for any tessera-std error.
pub fn std_error_json(e: &tessera_std::Error) -> String {
    match e {
        tessera_std::Error::Token { failure, .. } => failure_json(failure),
        tessera_std::Error::Core(e) => error_json(e, None),
        other => error_parts(other.kind(), None, None, None),
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
}

impl Target {
    /// The provider these options describe. Host tools run once per process, so the URL
    /// strings are leaked to give the provider its `'static` borrow.
    pub fn provider(&self, kind: ProviderKind) -> Result<AnyProvider<'static>, String> {
        fn leak(s: &str) -> &'static str {
            Box::leak(s.to_owned().into_boxed_str())
        }
        if kind != ProviderKind::OAuth2 {
            if self.token_url.is_some() || self.scope.is_some() || self.auth.is_some() {
                return Err("--token-url, --scope and --auth apply to oauth2 only".into());
            }
            return Ok(match &self.base_url {
                Some(url) => AnyProvider::new(kind, leak(url)),
                None => AnyProvider::default_for(kind),
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
        let mut idp = OAuth2::new(leak(url)).with_auth(auth);
        if let Some(scope) = &self.scope {
            idp = idp.with_scope(leak(scope));
        }
        Ok(AnyProvider::OAuth2(idp))
    }
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
