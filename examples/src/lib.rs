//! Shared pieces of Tessera's host tools: the one-line JSON reports the `tessera` CLI prints.
//!
//! Keys appear in the documented order, so the output is stable for scripts and tests.
#![forbid(unsafe_code)]

use serde_json::Value;
use tessera_core::{Detail, Error, Grant, TokenInfo};

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
    object(&[
        ("ok", false.into()),
        ("kind", error.kind().as_str().into()),
        ("code", opt(detail.and_then(|d| d.code()))),
        ("message", opt(detail.and_then(|d| d.message()))),
        ("trace_id", opt(detail.and_then(|d| d.trace_id()))),
        ("field", opt(field)),
        ("needed", opt(needed)),
    ])
}
