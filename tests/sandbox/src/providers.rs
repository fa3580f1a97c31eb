//! Each provider's endpoints: its request shapes, grants and error envelopes.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::jwt::iso8601_no_zone;
use crate::server::Inner;
use crate::{Endpoint, ProviderKind, CLIENT_ID, CLIENT_SECRET, SCOPES};

pub(crate) fn route(method: &Method, path: &str) -> Option<Endpoint> {
    use ProviderKind::*;
    let ep = match (method.as_str(), path) {
        ("POST", "/shogun/api/v1/security/api/generate_token") => Endpoint::Token(Shogun),
        ("GET", "/shogun/api/v1/security/api/validate_token") => Endpoint::Validate,
        ("POST", "/apimw/v1/auth/token") => Endpoint::Token(Apimw),
        ("POST", "/setu/api/v2/auth/token") => Endpoint::Token(Setu),
        ("POST", "/stonex/api/v/authentication") => Endpoint::Token(StoneX),
        ("POST", "/oauth2/token") => Endpoint::Token(OAuth2),
        // Any method: a user's tests POST their payments here.
        (_, p) => {
            let name = p.strip_prefix('/')?.strip_suffix("/protected")?;
            Endpoint::Protected(name.parse().ok()?)
        }
    };
    Some(ep)
}

pub(crate) fn respond(status: u16, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_default()
}

pub(crate) type Answer = (u16, &'static str, String);

pub(crate) const JSON_TYPE: &str = "application/json";

impl Inner {
    fn credentials_ok(&self, kind: ProviderKind, id: &str, secret: &str) -> bool {
        let s = self.lock();
        match s.credentials.get(&kind) {
            Some((i, sec)) => i == id && sec == secret,
            None => id == CLIENT_ID && secret == CLIENT_SECRET,
        }
    }

    pub(crate) fn token(
        &self,
        kind: ProviderKind,
        headers: &HeaderMap,
        body: &[u8],
        oversized: Option<usize>,
    ) -> Answer {
        if kind == ProviderKind::OAuth2 {
            return self.oauth2(headers, body, oversized);
        }
        let (id_key, secret_key) = match kind {
            ProviderKind::Apimw => ("api_key", "api_secret"),
            ProviderKind::Setu => ("clientID", "secret"),
            _ => ("client_id", "client_secret"),
        };
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(id), Some(secret)) = (field(id_key), field(secret_key)) else {
            return (400, JSON_TYPE, json!({"error": "invalid_request", "message": "expected a JSON body with the credentials"}).to_string());
        };
        if kind == ProviderKind::Shogun {
            if let Some(answer) = self.shogun_lockout(&id, &secret) {
                return answer;
            }
        }
        if !self.credentials_ok(kind, &id, &secret) {
            return match kind {
                ProviderKind::Shogun => (401, JSON_TYPE, json!({"status": false, "message": "Invalid credentials"}).to_string()),
                ProviderKind::Apimw => (401, JSON_TYPE, json!({"success": false, "error": {"code": "INVALID_CREDENTIALS", "message": "Invalid API Key or Secret"}}).to_string()),
                ProviderKind::Setu => {
                    // Stable for a sandbox (its key, not the clock), so two runs of a refused
                    // request print the same words whenever the second falls.
                    let [a, b, c, d, ..] = self.key;
                    let trace = format!("{:08x}-sand-box0-0000-{:012x}", u32::from_le_bytes([a, b, c, d]), self.lock().next_jti);
                    (400, JSON_TYPE, json!({"status": 400, "success": false, "error": {
                        "code": "invalid-api-key",
                        "detail": format!("API key invalid [{id}], please recheck your credentials."),
                        "docURL": "", "title": "AUTHENTICATION_ERROR", "errors": [], "traceID": trace}}).to_string())
                }
                _ => (401, JSON_TYPE, json!({"error": "invalid_client", "error_description": "Client authentication failed."}).to_string()),
            };
        }
        let (token, lifetime) = match oversized {
            Some(n) => (
                "A".repeat(n),
                self.lock().lifetimes.get(&kind).copied().unwrap_or(3600),
            ),
            None => self.issue(kind, &id),
        };
        let body = match kind {
            ProviderKind::Shogun => {
                json!({"status": true, "message": "Authentication successful", "data": {
                "access_token": token, "token_type": "Bearer", "expires_in": lifetime,
                "client_id": id, "authorities": SCOPES}})
                .to_string()
            }
            ProviderKind::Apimw => {
                let refresh = format!("rt/{}", self.lock().next_jti);
                let text = json!({"success": true, "data": {
                    "access_token": token, "token_type": "Bearer", "expires_in": lifetime,
                    "refresh_token": refresh}})
                .to_string();
                // APIMW's backend is PHP, whose JSON encoder escapes every `/`.
                text.replace('/', "\\/")
            }
            ProviderKind::Setu => json!({"status": 200, "success": true, "data": {
                "expiresIn": lifetime.saturating_mul(6), "token": token}})
            .to_string(),
            _ => json!({"token_type": "Bearer", "expires_in": lifetime, "access_token": token,
                "scope": SCOPES.join(" ")})
            .to_string(),
        };
        (200, JSON_TYPE, body)
    }

    /// Shogun's lockout, checked before the credentials: `Some` answer while locked.
    fn shogun_lockout(&self, id: &str, secret: &str) -> Option<Answer> {
        let ok = self.credentials_ok(ProviderKind::Shogun, id, secret);
        let mut s = self.lock();
        let now = std::time::Instant::now();
        let locked = json!({"status": false, "message": "Temporarily locked due to too many failed attempts."}).to_string();
        if let Some(until) = s.shogun_locked_until {
            if now < until {
                return Some((429, JSON_TYPE, locked));
            }
            s.shogun_locked_until = None;
            s.shogun_failures = 0;
        }
        if ok {
            s.shogun_failures = 0;
            return None;
        }
        s.shogun_failures += 1;
        if s.shogun_failures >= s.lockout_threshold {
            s.shogun_locked_until = Some(now + s.lockout);
            return Some((429, JSON_TYPE, locked));
        }
        None
    }

    fn oauth2(&self, headers: &HeaderMap, body: &[u8], oversized: Option<usize>) -> Answer {
        let error = |status, code: &str, description: &str| {
            (
                status,
                JSON_TYPE,
                json!({"error": code, "error_description": description}).to_string(),
            )
        };
        let form = form_decode(body);
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        if get("grant_type").as_deref() != Some("client_credentials") {
            return error(
                400,
                "unsupported_grant_type",
                "grant_type must be client_credentials",
            );
        }
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .map(|b64| {
                let raw = STANDARD.decode(b64.trim()).unwrap_or_default();
                let text = String::from_utf8_lossy(&raw).into_owned();
                let (id, secret) = text.split_once(':').unwrap_or((&text, ""));
                (url_decode(id), url_decode(secret))
            });
        let in_body = get("client_id").map(|id| (id, get("client_secret").unwrap_or_default()));
        let (id, secret) = match (basic, in_body) {
            (Some(_), Some(_)) => {
                return error(
                    400,
                    "invalid_request",
                    "use one client authentication method",
                )
            }
            (Some(c), None) | (None, Some(c)) => c,
            (None, None) => return error(401, "invalid_client", "client authentication required"),
        };
        if !self.credentials_ok(ProviderKind::OAuth2, &id, &secret) {
            return error(401, "invalid_client", "Client authentication failed.");
        }
        if let Some(scope) = get("scope") {
            if scope.split(' ').any(|s| !SCOPES.contains(&s)) {
                return error(400, "invalid_scope", "unknown scope");
            }
        }
        let (token, lifetime) = match oversized {
            Some(n) => (
                "A".repeat(n),
                self.lock()
                    .lifetimes
                    .get(&ProviderKind::OAuth2)
                    .copied()
                    .unwrap_or(3600),
            ),
            None => self.issue(ProviderKind::OAuth2, &id),
        };
        let scope = get("scope").unwrap_or_else(|| SCOPES.join(" "));
        (200, JSON_TYPE, json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}).to_string())
    }

    fn bearer(headers: &HeaderMap) -> Option<&str> {
        headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
    }

    pub(crate) fn validate(&self, headers: &HeaderMap) -> Answer {
        let claims = Self::bearer(headers).and_then(|t| self.verify(ProviderKind::Shogun, t));
        let Some(c) = claims else {
            return (
                401,
                JSON_TYPE,
                json!({"status": false, "message": "Invalid authentication token"}).to_string(),
            );
        };
        let iso = |v: &Value| iso8601_no_zone(v.as_u64().unwrap_or(0));
        (
            200,
            JSON_TYPE,
            json!({"status": true, "message": "Token is valid", "data": {
            "username": "sandbox", "client_id": c["sub"], "authorities": SCOPES,
            "issued_at": iso(&c["iat"]), "expires_at": iso(&c["exp"])}})
            .to_string(),
        )
    }

    pub(crate) fn protected(&self, kind: ProviderKind, headers: &HeaderMap) -> Answer {
        match Self::bearer(headers).and_then(|t| self.verify(kind, t)) {
            Some(c) => (
                200,
                JSON_TYPE,
                json!({"ok": true, "provider": kind.name(), "client_id": c["sub"]}).to_string(),
            ),
            None => (
                401,
                JSON_TYPE,
                json!({"error": "invalid_token"}).to_string(),
            ),
        }
    }
}

/// What a provider that echoes a bad request back says: its own error envelope, status 400,
/// with the request body and its `Authorization` header (secret included) in the message.
pub(crate) fn echo(kind: ProviderKind, headers: &HeaderMap, body: &[u8]) -> Answer {
    let auth = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let said = format!(
        "bad request: {} (Authorization: {auth})",
        String::from_utf8_lossy(body)
    );
    let body = match kind {
        ProviderKind::Shogun => json!({"status": false, "message": said}),
        ProviderKind::Apimw => {
            json!({"success": false, "error": {"code": "INVALID_REQUEST", "message": said}})
        }
        ProviderKind::Setu => json!({"status": 400, "success": false, "error": {
            "code": "invalid-request", "detail": said, "docURL": "",
            "title": "BAD_REQUEST", "errors": [], "traceID": "echo"}}),
        ProviderKind::StoneX | ProviderKind::OAuth2 => {
            json!({"error": "invalid_request", "error_description": said})
        }
    };
    (400, JSON_TYPE, body.to_string())
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (b[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(h)) => {
                let h = std::str::from_utf8(h).unwrap_or("00");
                out.push(u8::from_str_radix(h, 16).unwrap_or(0));
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_decode(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_decoding() {
        assert_eq!(url_decode("a+b%3Ac%25%E2%82%AC"), "a b:c%€");
        assert_eq!(url_decode("bad%zz%4"), "bad%zz%4");
    }
}
