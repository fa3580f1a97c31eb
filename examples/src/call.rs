//! `tessera call`: downstream calls with a token, one JSON line per call and a summary, so
//! an integrator sees what each call cost on the wire (a new or a kept connection, a full,
//! resumed or no TLS handshake). The token is never printed.

use std::time::Duration;

use serde_json::{json, Value};
use tessera_core::Method;

/// What to call, and how often.
#[derive(Clone, Debug)]
pub struct CallSpec {
    /// `--url`.
    pub url: String,
    /// `--method` (default GET, or POST with `--data`).
    pub method: Method,
    /// `--header 'K: V'`, in order.
    pub headers: Vec<(String, String)>,
    /// `--data TEXT|@FILE`: the body (sent as `application/json`, or the `Content-Type`
    /// header given).
    pub data: Option<Vec<u8>>,
    /// `--repeat N` (default 1); a failed call does not stop the others.
    pub repeat: u32,
    /// `--show-body`: the answer's body in each line (as text, lossy).
    pub show_body: bool,
}

impl CallSpec {
    /// The body's media type: a `Content-Type` header given, else JSON.
    pub fn content_type(&self) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map_or("application/json", |(_, v)| v.as_str())
    }

    /// The headers to send besides the body's `Content-Type` (sent with the body).
    pub fn extra_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// `--method`'s value.
pub fn parse_method(m: &str) -> Result<Method, String> {
    Method::parse(&m.to_ascii_uppercase()).ok_or_else(|| {
        format!("--method `{m}`: expected GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS")
    })
}

/// `--header 'Name: value'`.
pub fn parse_header(h: &str) -> Result<(String, String), String> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| format!("--header `{h}`: expected 'Name: value'"))?;
    let (k, v) = (k.trim(), v.trim());
    if k.is_empty() || k.eq_ignore_ascii_case("authorization") {
        return Err(format!(
            "--header `{k}`: a name is needed, and Authorization is Tessera's"
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// `--data TEXT` or `--data @FILE`.
pub fn parse_data(d: &str) -> Result<Vec<u8>, String> {
    match d.strip_prefix('@') {
        Some(path) => std::fs::read(path).map_err(|e| format!("--data @{path}: {e}")),
        None => Ok(d.as_bytes().to_vec()),
    }
}

/// One answered call's line: `{"call":i,"status":…,"ms":…,"connection":"new|reused",
/// "handshake":"full|resumed|none"}` (and `"body"` with `--show-body`).
pub fn answered_json(
    i: u32,
    status: u16,
    took: Duration,
    connection: &str,
    handshake: &str,
    body: Option<&[u8]>,
) -> String {
    let mut line = json!({
        "call": i,
        "status": status,
        "ms": took.as_millis() as u64,
        "connection": connection,
        "handshake": handshake,
    });
    if let (Some(body), Value::Object(map)) = (body, &mut line) {
        map.insert(
            "body".into(),
            Value::from(String::from_utf8_lossy(body).into_owned()),
        );
    }
    line.to_string()
}

/// A failed call's line: the error line the `token` command prints, with `call` and `ms`.
pub fn failed_json(i: u32, took: Duration, error_line: &str) -> String {
    let mut line: Value = serde_json::from_str(error_line).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut line {
        map.insert("call".into(), Value::from(i));
        map.insert("ms".into(), Value::from(took.as_millis() as u64));
    }
    line.to_string()
}

/// The last line: `{"calls":N,"connections":C,"handshakes":{"full":F,"resumed":R}}`.
pub fn summary_json(calls: u32, connections: u64, full: u64, resumed: u64) -> String {
    json!({
        "calls": calls,
        "connections": connections,
        "handshakes": { "full": full, "resumed": resumed },
    })
    .to_string()
}

/// `tessera call … --transport std`: the same calls with tessera-std. Per call,
/// `connection` is `new` when the call opened a connection (ureq's agent keeps them), and
/// `handshake` `full` for a new `https://` connection: rustls may resume a session there,
/// which ureq does not report (the sandbox's handshake count tells). `token_https`: whether
/// the token URL is `https://` (its connection's handshake counts in the summary).
pub fn std_call(
    client: &tessera_std::Client<tessera_std::OwnedProvider>,
    spec: &CallSpec,
    token_https: bool,
    print: &mut dyn FnMut(String),
) -> u8 {
    let https = spec
        .url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    let mut answered_all = true;
    // The token first: its connection is then the calls' to keep when the hosts match.
    let before = client.connections_opened();
    if let Err(e) = client.token() {
        print(failed_json(0, Duration::ZERO, &crate::std_error_json(&e)));
        answered_all = false;
    }
    let mut full = match token_https {
        true => client.connections_opened() - before,
        false => 0,
    };
    for i in 1..=spec.repeat {
        let mut builder = tessera_std::http::Request::builder()
            .method(spec.method.as_str())
            .uri(spec.url.as_str());
        for (k, v) in &spec.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let typed = spec
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if spec.data.is_some() && !typed {
            builder = builder.header("Content-Type", "application/json");
        }
        let started = std::time::Instant::now();
        let request = builder.body(spec.data.clone().unwrap_or_default());
        let before = client.connections_opened();
        let answer = match request {
            Ok(r) => client.call(r),
            Err(e) => {
                let line = json!({"ok": false, "kind": "malformed", "message": e.to_string()});
                print(failed_json(i, started.elapsed(), &line.to_string()));
                answered_all = false;
                continue;
            }
        };
        let took = started.elapsed();
        let new = client.connections_opened() > before;
        let handshake = match (new, https) {
            (true, true) => {
                full += 1;
                "full"
            }
            _ => "none",
        };
        let line = match answer {
            Ok(r) => answered_json(
                i,
                r.status().as_u16(),
                took,
                if new { "new" } else { "reused" },
                handshake,
                spec.show_body.then(|| r.body().as_slice()),
            ),
            Err(e) => {
                answered_all = false;
                failed_json(i, took, &crate::std_error_json(&e))
            }
        };
        print(line);
    }
    print(summary_json(
        spec.repeat,
        client.connections_opened(),
        full,
        0,
    ));
    u8::from(!answered_all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!(parse_method("patch"), Ok(Method::Patch));
        assert!(parse_method("TRACE").is_err());
        assert_eq!(
            parse_header("Idempotency-Key:  k-1 "),
            Ok(("Idempotency-Key".into(), "k-1".into()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Authorization: Bearer x").is_err());
        assert_eq!(parse_data("{}"), Ok(b"{}".to_vec()));
    }

    #[test]
    fn lines() {
        assert_eq!(
            answered_json(1, 200, Duration::from_millis(12), "reused", "none", None),
            r#"{"call":1,"connection":"reused","handshake":"none","ms":12,"status":200}"#
        );
        assert_eq!(
            summary_json(10, 1, 1, 0),
            r#"{"calls":10,"connections":1,"handshakes":{"full":1,"resumed":0}}"#
        );
        let failed = failed_json(
            3,
            Duration::from_millis(5),
            r#"{"ok":false,"kind":"transport"}"#,
        );
        assert!(
            failed.contains(r#""call":3"#) && failed.contains(r#""ms":5"#),
            "{failed}"
        );
    }
}
