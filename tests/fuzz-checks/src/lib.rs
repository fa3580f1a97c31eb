//! The properties Tessera's fuzz targets check, one function per target.
//!
//! `fuzz/fuzz_targets/*.rs` call these under libFuzzer (nightly, `cargo fuzz`); the tests in
//! `tests/replay.rs` call them on stable for every file in the checked-in corpus and
//! regressions, and for every provider vector. A property that fails panics, which is what
//! both libFuzzer and the test harness report.
//!
//! What "correct" means is checked against independent oracles where one exists:
//! `serde_json` for JSON, the `base64` crate for JWT payloads and Basic credentials,
//! `form_urlencoded` for form bodies, and `tessera_vectors::civil_from_days` (written
//! independently of tessera-core's reader) for ISO 8601.
//! Where tessera-core is deliberately stricter than an oracle, the check says so.

use base64::Engine as _;
use serde_json::Value;
use tessera_core::json::JsonStr;
use tessera_core::{
    jwt, timestamp, AnyProvider, ClientAuth, Credentials, Error, Grant, OAuth2, Provider,
    ProviderKind, Request, ResponseError, Shogun, TokenInfo, FORM, JSON,
};

/// A fuzz target's property: any bytes in, a panic when the property fails.
pub type Check = fn(&[u8]);

/// Every target, by the name `cargo fuzz` and the corpus folders use.
pub const TARGETS: &[(&str, Check)] = &[
    ("token_response", token_response),
    ("validate_response", validate_response),
    ("timestamp", timestamp_round_trip),
    ("jwt_lifetime", jwt_lifetime),
    ("token_request", token_request),
];

/// Statuses a response input can carry; the second input byte picks one.
pub const STATUSES: &[u16] = &[
    200, 201, 204, 299, 100, 302, 400, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504, 0, 999,
];

/// The provider the first input byte picks.
pub fn kind_of(byte: u8) -> ProviderKind {
    let all = ProviderKind::ALL;
    all[usize::from(byte) % all.len()]
}

/// A response input: provider byte, status byte, body.
///
/// # Panics
/// When `status` is not one of [`STATUSES`].
pub fn response_input(kind: ProviderKind, status: u16, body: &[u8]) -> Vec<u8> {
    let k = ProviderKind::ALL
        .iter()
        .position(|&x| x == kind)
        .unwrap_or(0);
    let s = STATUSES
        .iter()
        .position(|&x| x == status)
        .unwrap_or_else(|| panic!("status {status} is not in STATUSES"));
    let mut v = vec![k as u8, s as u8];
    v.extend_from_slice(body);
    v
}

/// The decoded text of a JSON string, or `None` if it is not UTF-8 once decoded.
pub fn decoded(s: &JsonStr<'_>) -> Option<String> {
    let mut out = String::new();
    s.chunks(|c| {
        out.push_str(c);
        true
    })
    .ok()?;
    Some(out)
}

/// A grant already holding a token, so that a failed store can be seen to change nothing.
fn previous_grant() -> Grant {
    let mut g = Grant::new();
    let body = br#"{"access_token":"previous-token","token_type":"Bearer","expires_in":300,"refresh_token":"previous-refresh","scope":"a b"}"#;
    let parsed = OAuth2::new("http://x")
        .parse_token(200, body)
        .expect("the previous grant parses");
    g.store(&parsed).expect("the previous grant fits");
    g
}

fn error_is_consistent(e: &ResponseError<'_>, status: u16) {
    assert_eq!(
        e.status, status,
        "the error carries the status it was given"
    );
    // Formatting an error never panics and never shows more than the provider said.
    let report = e.to_report();
    let _ = format!("{e:?} {report:?} {report}");
    if (200..300).contains(&status) {
        assert!(
            matches!(
                e.error,
                Error::Malformed { .. } | Error::Rejected | Error::InvalidCredentials
            ),
            "a 2xx fails only as malformed or an envelope refusal: {e:?}"
        );
    }
}

/// Where each provider puts the token in its JSON, for the serde_json oracle.
fn token_path(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        ProviderKind::Shogun | ProviderKind::Apimw => &["data", "access_token"],
        ProviderKind::Setu => &["data", "token"],
        ProviderKind::StoneX | ProviderKind::OAuth2 => &["access_token"],
    }
}

fn at<'v>(mut v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    for key in path {
        v = v.get(key)?;
    }
    Some(v)
}

/// Token responses, every provider and status: a parse never panics; success only on 2xx;
/// a stored grant holds exactly the token serde_json reads at the provider's path; a store
/// that fails is a typed error that left the previous grant untouched.
pub fn token_response(data: &[u8]) {
    let [k, s, body @ ..] = data else { return };
    let kind = kind_of(*k);
    let status = STATUSES[usize::from(*s) % STATUSES.len()];
    let provider = AnyProvider::default_for(kind);
    let g = match provider.parse_token(status, body) {
        Ok(g) => g,
        Err(e) => return error_is_consistent(&e, status),
    };
    assert!((200..300).contains(&status), "{kind}: success on {status}");
    let lifetime = g.lifetime_s();
    if let Some(e) = g.expires_in {
        assert!(lifetime <= e, "the lifetime never exceeds expires_in");
    }
    let mut grant = previous_grant();
    let before = grant.clone();
    if let Err(e) = grant.store(&g) {
        assert!(
            matches!(e, Error::Capacity { .. } | Error::Malformed { .. }),
            "{kind}: store failed with {e:?}"
        );
        assert!(grant == before, "{kind}: a failed store changed the grant");
        return;
    }
    let token = decoded(&g.access_token).expect("a stored token decodes");
    assert_eq!(grant.access_token(), token);
    assert!(
        token.bytes().all(|b| b.is_ascii_graphic()),
        "{kind}: a stored token would break the Authorization header: {token:?}"
    );
    assert_eq!(grant.lifetime_s(), lifetime);
    // An empty refresh token is stored as none (`Grant::refresh_token`).
    let refresh = g.refresh_token.map(|r| decoded(&r).expect("stored"));
    let refresh = refresh.filter(|r| !r.is_empty());
    assert_eq!(grant.refresh_token(), refresh.as_deref());
    // The oracle: what serde_json reads at the same place. It has the last duplicate key
    // win; tessera-core refuses duplicated token fields, so when both succeed they agree.
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let theirs = at(&v, token_path(kind)).and_then(Value::as_str);
        assert_eq!(
            theirs,
            Some(token.as_str()),
            "{kind}: serde_json reads another token"
        );
    }
}

/// Shogun's validate responses: the same properties, into a [`TokenInfo`].
pub fn validate_response(data: &[u8]) {
    let [s, body @ ..] = data else { return };
    let status = STATUSES[usize::from(*s) % STATUSES.len()];
    let r = match Shogun::new().parse_validate(status, body) {
        Ok(r) => r,
        Err(e) => {
            error_is_consistent(&e, status);
            return;
        }
    };
    assert!((200..300).contains(&status), "validate success on {status}");
    let mut info = TokenInfo {
        issued_at: 1,
        expires_at: 2,
        ..TokenInfo::default()
    };
    let _ = info.username.push_str("previous");
    let before = info.clone();
    if let Err(e) = info.store(&r) {
        assert!(matches!(
            e,
            Error::Capacity { .. } | Error::Malformed { .. }
        ));
        assert!(info == before, "a failed store changed the info");
        return;
    }
    let client_id = decoded(&r.client_id).expect("stored");
    assert_eq!(info.client_id.as_str(), client_id);
    assert_eq!(
        (info.issued_at, info.expires_at),
        (r.issued_at, r.expires_at)
    );
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let theirs = at(&v, &["data", "client_id"]).and_then(Value::as_str);
        assert_eq!(theirs, Some(client_id.as_str()), "serde_json disagrees");
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = tessera_vectors::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// ISO 8601: whatever the reader accepts, formatted back as UTC, reads as the same instant;
/// a plain `…Z` timestamp formats back to itself.
pub fn timestamp_round_trip(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = timestamp::parse(s) else { return };
    let back = format_utc(t);
    if t >= 253_402_300_800 {
        // `9999-12-31T23:59:60Z` is the first second of year 10000: not writable in 4 digits.
        return;
    }
    assert_eq!(timestamp::parse(&back), Ok(t), "{s:?} → {t} → {back:?}");
    let plain = s.len() == 20
        && s.ends_with('Z')
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => true,
            _ => b.is_ascii_digit(),
        });
    if plain && !s.contains(":60Z") {
        assert_eq!(back, s, "{s:?} read as {t}");
    } else if plain {
        // A leap second reads as the second after :59 (POSIX time has no :60).
        let before = s.replace(":60Z", ":59Z");
        assert_eq!(timestamp::parse(&before).map(|b| b + 1), Ok(t), "{s:?}");
    }
}

/// The top-level claims a visitor saw: every `iat` and `exp` value, in order.
#[derive(Default)]
struct Seen {
    iat: Vec<Value>,
    exp: Vec<Value>,
}

impl<'de> serde::de::Visitor<'de> for &mut Seen {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a claims object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "iat" => self.iat.push(map.next_value()?),
                "exp" => self.exp.push(map.next_value()?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A NumericDate as tessera-core's contract reads it: a non-negative number, its integer
/// part (RFC 7519 allows fractions). `None` for anything else.
fn numeric_date(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// `exp - iat` as an independent decoder sees it, when it can see it: the payload
/// base64url-decoded by the `base64` crate and read whole by serde_json, with exactly one
/// top-level `iat` and one `exp`. `None` when it cannot tell: tessera-core is deliberately
/// more lenient, because the claims only ever shorten a token's life; it stops reading
/// once it has both claims (so it does not check what follows them), and does not check
/// UTF-8 or control characters in claims it skips. Its answer is then unchecked.
fn oracle_lifetime(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let mut seen = Seen::default();
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    serde::Deserializer::deserialize_map(&mut de, &mut seen).ok()?;
    de.end().ok()?;
    let ([iat], [exp]) = (&seen.iat[..], &seen.exp[..]) else {
        return None;
    };
    // A token that expires before it was issued has lifetime 0 (the documented rule).
    Some(numeric_date(exp)?.saturating_sub(numeric_date(iat)?))
}

/// The JWT lifetime reader. The first byte picks the input's shape: any other text as a
/// token, or (byte 0) the rest as a payload wrapped into a well-formed JWT, so the fuzzer
/// explores claims rather than base64. Where both tessera-core and the oracle read a
/// lifetime they agree; where the oracle reads plain integer claims, tessera-core reads
/// them too.
pub fn jwt_lifetime(data: &[u8]) {
    let [mode, rest @ ..] = data else { return };
    let token = if *mode == 0 {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rest);
        format!("eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln")
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    let ours = jwt::lifetime(&token);
    let theirs = oracle_lifetime(&token);
    if let (Some(l), Some(t)) = (ours, theirs) {
        assert_eq!(l, t, "{token:?}");
    }
    // Where the whole payload is plain (canonical integers), tessera-core must see it too.
    if let (None, Some(t)) = (ours, theirs) {
        let canonical = |claim: &str| {
            let payload = token.split('.').nth(1).unwrap_or_default();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            v.get(claim).is_some_and(Value::is_u64)
        };
        assert!(
            !(canonical("iat") && canonical("exp")),
            "tessera-core missed a lifetime of {t}: {token:?}"
        );
    }
}

const SCOPE: &str = "payments:read refunds+x";
const AUDIENCE: &str = "https://api.example/?a=1&b=é";

/// The request shapes the first input byte picks: every provider as shipped, and OAuth 2.0
/// with body authentication, a scope and an audience. Also the form fields expected after
/// `grant_type` (credentials aside).
fn request_provider(
    byte: u8,
) -> (
    AnyProvider<'static>,
    Option<OAuth2<'static>>,
    &'static [(&'static str, &'static str)],
) {
    let n = byte % 8;
    let idp = OAuth2::new("https://idp.example");
    match ProviderKind::ALL.get(usize::from(n)) {
        Some(&k) => (AnyProvider::default_for(k), None, &[]),
        None if n == 5 => (
            AnyProvider::default_for(ProviderKind::OAuth2),
            Some(idp.with_auth(ClientAuth::Body)),
            &[],
        ),
        None if n == 6 => (
            AnyProvider::default_for(ProviderKind::OAuth2),
            Some(idp.with_scope(SCOPE)),
            &[("scope", SCOPE)],
        ),
        None => (
            AnyProvider::default_for(ProviderKind::OAuth2),
            Some(
                idp.with_auth(ClientAuth::Body)
                    .with_scope(SCOPE)
                    .with_audience(AUDIENCE),
            ),
            &[("scope", SCOPE), ("audience", AUDIENCE)],
        ),
    }
}

fn form_decode(component: &str) -> String {
    form_urlencoded::parse(format!("v={component}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// What the request carries, read back by the oracles: `(id, secret, other form fields)`.
fn read_back(req: &Request<'_>) -> (String, String, Vec<(String, String)>) {
    match req.content_type {
        Some(JSON) => {
            let v: serde_json::Map<String, Value> =
                serde_json::from_slice(req.body).expect("the body is JSON");
            assert_eq!(v.len(), 2, "two members");
            let strings: Vec<(String, String)> = v
                .into_iter()
                .map(|(k, v)| (k, v.as_str().expect("string values").to_owned()))
                .collect();
            let get = |keys: &[&str]| {
                strings
                    .iter()
                    .find(|(k, _)| keys.contains(&k.as_str()))
                    .map(|(_, v)| v.clone())
                    .expect("the member is there")
            };
            (
                get(&["client_id", "api_key", "clientID"]),
                get(&["client_secret", "api_secret", "secret"]),
                Vec::new(),
            )
        }
        Some(FORM) => {
            let body = std::str::from_utf8(req.body).expect("a form body is ASCII");
            assert!(body.is_ascii(), "a form body is ASCII");
            let mut fields: Vec<(String, String)> = form_urlencoded::parse(req.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let mut take = |key: &str| {
                let i = fields.iter().position(|(k, _)| k == key)?;
                Some(fields.remove(i).1)
            };
            let (id, secret) = match (take("client_id"), take("client_secret")) {
                (Some(id), Some(secret)) => (id, secret),
                (None, None) => {
                    let header = req.authorization.expect("Basic when not in the body");
                    let b64 = header.strip_prefix("Basic ").expect("Basic");
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .expect("base64");
                    let raw = String::from_utf8(raw).expect("ASCII");
                    let (id, secret) = raw.split_once(':').expect("id:secret");
                    (form_decode(id), form_decode(secret))
                }
                other => panic!("half the credentials in the body: {other:?}"),
            };
            (id, secret, fields)
        }
        other => panic!("content type {other:?}"),
    }
}

/// Request building with arbitrary credentials: the body parses back (JSON or form, and
/// Basic credentials) to exactly the id and secret given; a buffer too small is a capacity
/// error naming the exact size that then works; `Debug` never shows the secret.
pub fn token_request(data: &[u8]) {
    let [p, size, rest @ ..] = data else { return };
    let (id, secret) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let (id, secret) = (String::from_utf8_lossy(id), String::from_utf8_lossy(secret));
    let creds = match Credentials::new(&id, &secret) {
        Ok(c) => c,
        Err(Error::Capacity {
            needed, capacity, ..
        }) => {
            assert!(needed > capacity && (needed == id.len() || needed == secret.len()));
            return;
        }
        Err(e) => panic!("credentials: {e:?}"),
    };
    let (any, custom, extra) = request_provider(*p);
    let provider: &dyn Provider = match &custom {
        Some(o) => o,
        None => &any,
    };
    let mut big = vec![0u8; 16 * 1024];
    let req = provider
        .token_request(&creds, &mut big)
        .expect("16 KiB holds any request");
    let (rid, rsecret, fields) = read_back(&req);
    assert_eq!((rid.as_str(), rsecret.as_str()), (&*id, &*secret));
    if req.content_type == Some(FORM) {
        assert_eq!(
            fields.first().map(|(k, v)| (k.as_str(), v.as_str())),
            Some(("grant_type", "client_credentials"))
        );
        let rest: Vec<(&str, &str)> = fields[1..]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(rest, extra);
    }
    // Debug depends on the secret's length at most: the same with another secret that long.
    let other = Credentials::new(&id, &"x".repeat(secret.len())).expect("same sizes");
    assert_eq!(format!("{creds:?}"), format!("{other:?}"));
    let shown = format!("{req:?}");
    let expected = format!(
        "Request {{ method: {:?}, url: {:?}, content_type: {:?}, authorization: {}, body: <{} bytes redacted> }}",
        req.method,
        req.url,
        req.content_type,
        if req.authorization.is_some() { "Some(<redacted>)" } else { "None" },
        req.body.len()
    );
    assert_eq!(shown, expected, "Request's Debug shows only its shape");
    // Capacity: the exact size works and gives the same bytes; one less is refused with it.
    let needed = req.body.len() + req.authorization.map_or(0, str::len);
    let (body, auth) = (req.body.to_vec(), req.authorization.map(str::to_owned));
    let n = usize::from(*size) * needed / 255;
    let mut small = vec![0u8; n];
    match provider.token_request(&creds, &mut small) {
        Ok(r) => {
            assert!(n >= needed, "{n} bytes held a request of {needed}");
            assert_eq!((r.body, r.authorization), (&body[..], auth.as_deref()));
        }
        Err(e) => assert_eq!(
            e,
            Error::Capacity {
                field: "request buffer",
                needed,
                capacity: n
            }
        ),
    }
}
