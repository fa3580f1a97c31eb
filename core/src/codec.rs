//! The engine every codec shares: credentials bodies out, grants and errors in.
//!
//! A provider's response contract is data, a [`Schema`]: where the grant sits, what its
//! fields are called, which error codes mean bad credentials. One reader walks every
//! provider's envelope and error shapes:
//!
//! - success flags `status` / `success` when they are booleans (Shogun, APIMW, Setu);
//! - messages: `message`, `error_description`;
//! - `error` as a string (OAuth 2.0, RFC 6749 §5.2) or an object with `code`, `message`,
//!   `detail`, `title` and `traceID` (APIMW, Setu).
//!
//! Classification (PROVIDERS.md): 429 → rate limited; 5xx → server error; an error code the
//! schema lists, or 401 → invalid credentials; any other non-2xx → rejected. A 2xx whose
//! envelope says failure is rejected (or invalid credentials, by code); a 2xx without a usable
//! grant is malformed. Bodies that are not JSON (a proxy's HTML page, nothing, binary) are
//! classified by status alone, and never panic.

use crate::credentials::Credentials;
use crate::error::{DetailRef, Error, ResponseError};
use crate::grant::{GrantRef, ScopeRef};
use crate::json::{parse_uint, Cursor, JsonStr, Kind, Problem};
use crate::request::{Method, Request, Url, JSON};
use crate::write::{json_string, Out};

/// How a response lists scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeForm {
    /// An array of strings.
    List,
    /// One space-separated string.
    Spaced,
}

/// A provider's token response contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schema {
    /// The member holding the grant object, or `None` when the grant is the whole body.
    pub data: Option<&'static str>,
    /// The token's key.
    pub access_token: &'static str,
    /// The lifetime's key (seconds, an integer or a numeric string).
    pub expires_in: &'static str,
    /// The token type's key, when the provider sends one; it must say Bearer (any case).
    pub token_type: Option<&'static str>,
    /// The refresh token's key, when the provider sends one.
    pub refresh_token: Option<&'static str>,
    /// The scope key and its form, when the provider sends scopes.
    pub scope: Option<(&'static str, ScopeForm)>,
    /// The echoed client id's key, when the provider sends one.
    pub client_id: Option<&'static str>,
    /// Error codes that mean the credentials are wrong, whatever the HTTP status.
    pub invalid_credential_codes: &'static [&'static str],
}

/// Writes `{"<id_key>":"<id>","<secret_key>":"<secret>"}` (strict JSON, escaped) into
/// `buf` and returns the POST request for `url`.
///
/// Not inlined, so every provider shares one copy (the keys are not constant-folded).
#[inline(never)]
pub fn json_credentials_request<'a>(
    url: Url<'a>,
    id_key: &str,
    secret_key: &str,
    credentials: &Credentials,
    buf: &'a mut [u8],
) -> Result<Request<'a>, Error> {
    let capacity = buf.len();
    let mut out = Out::new(buf);
    out.byte(b'{');
    json_string(&mut out, id_key);
    out.byte(b':');
    json_string(&mut out, credentials.client_id());
    out.byte(b',');
    json_string(&mut out, secret_key);
    out.byte(b':');
    json_string(&mut out, credentials.expose_secret());
    out.byte(b'}');
    let (body, _) = out.finish().map_err(|needed| Error::Capacity {
        field: "request buffer",
        needed,
        capacity,
    })?;
    Ok(Request {
        method: Method::Post,
        url,
        content_type: Some(JSON),
        authorization: None,
        body,
    })
}

/// What the envelope said besides the grant.
#[derive(Default)]
pub(crate) struct Envelope<'a> {
    /// `status` / `success` booleans, `false` if any said false.
    flag: Option<bool>,
    /// Whether an `error` member was present.
    error: bool,
    detail: DetailRef<'a>,
}

impl<'a> Envelope<'a> {
    /// Reads `key`'s value if it is an envelope member; leaves it unread otherwise.
    fn member(&mut self, c: &mut Cursor<'a>, key: JsonStr<'a>) -> Result<(), Problem> {
        if key.eq_str("status") || key.eq_str("success") {
            if c.kind()? == Kind::Bool {
                let v = c.boolean()?;
                self.flag = Some(self.flag.unwrap_or(true) && v);
            }
        } else if key.eq_str("message") || key.eq_str("error_description") {
            if let Ok(s) = string_if_string(c) {
                self.detail.set_message(s, false);
            }
        } else if key.eq_str("error") {
            match c.kind()? {
                Kind::String => {
                    self.error = true;
                    self.detail.set_code(c.string()?);
                }
                Kind::Object => {
                    self.error = true;
                    c.object(|c, k| self.error_member(c, k))?;
                }
                _ => {}
            }
        } else if is_trace_key(&key) {
            if let Ok(s) = string_if_string(c) {
                self.detail.set_trace_id(s);
            }
        }
        Ok(())
    }

    fn error_member(&mut self, c: &mut Cursor<'a>, k: JsonStr<'a>) -> Result<(), Problem> {
        let Ok(s) = string_if_string(c) else {
            return Ok(());
        };
        if k.eq_str("code") {
            self.detail.set_code(s);
        } else if k.eq_str("message") || k.eq_str("detail") {
            self.detail.set_message(s, false);
        } else if k.eq_str("title") {
            self.detail.set_message(s, true);
        } else if is_trace_key(&k) {
            self.detail.set_trace_id(s);
        }
        Ok(())
    }

    fn says_failure(&self) -> bool {
        self.flag == Some(false) || self.error
    }
}

fn is_trace_key(k: &JsonStr<'_>) -> bool {
    k.eq_str("traceID") || k.eq_str("traceId") || k.eq_str("trace_id")
}

/// A string value, or `Err` (value left unread) for any other type.
fn string_if_string<'a>(c: &mut Cursor<'a>) -> Result<JsonStr<'a>, Problem> {
    if c.kind()? == Kind::String {
        c.string()
    } else {
        Err(Problem::Type)
    }
}

/// Walks a response body. Members of the data object (or of the top level, when
/// `data` is `None`) go first to `member`; whatever it leaves unread at the top level goes
/// to the envelope reader. Returns whether the data object was present.
pub(crate) fn walk<'a>(
    body: &'a [u8],
    data: Option<&'static str>,
    env: &mut Envelope<'a>,
    mut member: impl FnMut(&mut Cursor<'a>, JsonStr<'a>) -> Result<(), Error>,
) -> Result<bool, Error> {
    let mut c = Cursor::new(body);
    let mut seen_data = data.is_none();
    c.object(|c, key| {
        match data {
            Some(name) if key.eq_str(name) => {
                // `"data": null` on failures is common: only an object counts.
                if c.kind()? == Kind::Object {
                    once(&mut seen_data, name)?;
                    c.object(&mut member)?;
                }
                return Ok(());
            }
            Some(_) => {}
            None => {
                let before = c.clone();
                member(c, key)?;
                if !before.span_to(c).is_empty() {
                    return Ok(());
                }
            }
        }
        env.member(c, key).map_err(Error::from)
    })?;
    c.finish()?;
    Ok(seen_data)
}

fn once(seen: &mut bool, field: &'static str) -> Result<(), Error> {
    if core::mem::replace(seen, true) {
        Err(Error::malformed(field, Problem::Duplicate))
    } else {
        Ok(())
    }
}

/// Sets a field once; a second occurrence is an error (no silent last-wins).
fn set<T>(slot: &mut Option<T>, v: T, field: &'static str) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::malformed(field, Problem::Duplicate));
    }
    *slot = Some(v);
    Ok(())
}

/// Reads a string member, treating `null` as absent.
fn opt_string<'a>(c: &mut Cursor<'a>, field: &'static str) -> Result<Option<JsonStr<'a>>, Error> {
    let at = |p| Error::malformed(field, p);
    match c.kind().map_err(at)? {
        Kind::Null => c.skip().map(|()| None).map_err(at),
        _ => c.string().map(Some).map_err(at),
    }
}

/// Reads `expires_in`: a non-negative integer, or a string of digits; `null` is absent.
fn seconds(c: &mut Cursor<'_>, field: &'static str) -> Result<Option<u64>, Error> {
    let at = |p| Error::malformed(field, p);
    match c.kind().map_err(at)? {
        Kind::Null => c.skip().map(|()| None).map_err(at),
        Kind::Number => {
            let raw = c.number().map_err(at)?;
            if raw.first() == Some(&b'-') {
                return Err(at(Problem::Range));
            }
            parse_uint(raw).map(Some).map_err(at)
        }
        Kind::String => {
            let s = c.string().map_err(at)?;
            let digits = s.as_str().ok_or(at(Problem::Type))?.trim();
            parse_uint(digits.as_bytes()).map(Some).map_err(at)
        }
        _ => Err(at(Problem::Type)),
    }
}

/// Classifies a failed response.
pub(crate) fn classify(
    status: u16,
    detail: &DetailRef<'_>,
    on_401: Error,
    invalid_codes: &[&str],
) -> Error {
    match status {
        429 => Error::RateLimited,
        500..=599 => Error::ServerError,
        _ if detail.code_is_one_of(invalid_codes) => Error::InvalidCredentials,
        401 => on_401,
        _ => Error::Rejected,
    }
}

/// Turns a walked response into its outcome: `ok` runs only for a 2xx whose body walked
/// cleanly and whose envelope does not say failure.
pub(crate) fn conclude<'b, T>(
    status: u16,
    walked: Result<bool, Error>,
    env: Envelope<'b>,
    on_401: Error,
    invalid_codes: &[&str],
    ok: impl FnOnce(bool) -> Result<T, Error>,
) -> Result<T, ResponseError<'b>> {
    let fail = |error: Error, detail: DetailRef<'b>| {
        Err(ResponseError {
            status,
            error,
            detail,
        })
    };
    if !(200..300).contains(&status) {
        let error = classify(status, &env.detail, on_401, invalid_codes);
        // A non-JSON error body keeps no detail: its bytes are not the provider's words.
        let detail = if walked.is_ok() {
            env.detail
        } else {
            DetailRef::default()
        };
        return fail(error, detail);
    }
    let seen_data = match walked {
        Ok(seen) => seen,
        Err(e) => return fail(e, DetailRef::default()),
    };
    if env.says_failure() {
        let error = if env.detail.code_is_one_of(invalid_codes) {
            Error::InvalidCredentials
        } else {
            Error::Rejected
        };
        return fail(error, env.detail);
    }
    ok(seen_data).or_else(|e| fail(e, env.detail))
}

/// Parses a token response against `schema`.
///
/// ```
/// use tessera_core::codec::{parse_grant, Schema};
/// const MINE: Schema = Schema {
///     data: Some("result"), access_token: "jwt", expires_in: "ttl", token_type: None,
///     refresh_token: None, scope: None, client_id: None, invalid_credential_codes: &["BAD_KEY"],
/// };
/// let g = parse_grant(&MINE, 200, br#"{"result":{"jwt":"t0k","ttl":"60"}}"#).unwrap();
/// assert_eq!(g.access_token.as_str(), Some("t0k"));
/// assert_eq!(g.lifetime_s(), 60);
/// ```
// Not inlined: each provider passes a constant schema, and inlining would specialise (and
// duplicate) the whole engine per provider in firmware that links several.
#[inline(never)]
pub fn parse_grant<'a>(
    schema: &Schema,
    status: u16,
    body: &'a [u8],
) -> Result<GrantRef<'a>, ResponseError<'a>> {
    let mut env = Envelope::default();
    let mut token = None;
    let mut expires_in = None;
    let mut seen_expiry = false;
    let mut seen_type = false;
    let mut refresh_token = None;
    let mut scope = None;
    let mut client_id = None;
    let walked = walk(body, schema.data, &mut env, |c, key| {
        if key.eq_str(schema.access_token) {
            let s = c
                .string()
                .map_err(|p| Error::malformed(schema.access_token, p))?;
            set(&mut token, s, schema.access_token)?;
        } else if key.eq_str(schema.expires_in) {
            once(&mut seen_expiry, schema.expires_in)?;
            expires_in = seconds(c, schema.expires_in)?;
        } else if let Some(name) = schema.token_type.filter(|n| key.eq_str(n)) {
            once(&mut seen_type, name)?;
            if let Some(t) = opt_string(c, name)? {
                if !t.eq_ignore_ascii_case("bearer") {
                    return Err(Error::malformed(name, Problem::Unsupported));
                }
            }
        } else if let Some(name) = schema.refresh_token.filter(|n| key.eq_str(n)) {
            if let Some(r) = opt_string(c, name)? {
                set(&mut refresh_token, r, name)?;
            }
        } else if let Some((name, form)) = schema.scope.filter(|(n, _)| key.eq_str(n)) {
            let at = |p| Error::malformed(name, p);
            let v = match (c.kind().map_err(at)?, form) {
                (Kind::Null, _) => ScopeRef::None,
                (_, ScopeForm::List) => ScopeRef::read_list(c, name)?,
                (_, ScopeForm::Spaced) => ScopeRef::Spaced(c.string().map_err(at)?),
            };
            if v != ScopeRef::None {
                set(&mut scope, v, name)?;
            }
        } else if let Some(name) = schema.client_id.filter(|n| key.eq_str(n)) {
            if let Some(id) = opt_string(c, name)? {
                set(&mut client_id, id, name)?;
            }
        }
        Ok(())
    });
    conclude(
        status,
        walked,
        env,
        Error::InvalidCredentials,
        schema.invalid_credential_codes,
        |seen_data| {
            let access_token = match (token, schema.data) {
                (Some(t), _) => t,
                (None, Some(data)) if !seen_data => {
                    return Err(Error::malformed(data, Problem::Missing))
                }
                (None, _) => return Err(Error::malformed(schema.access_token, Problem::Missing)),
            };
            Ok(GrantRef {
                access_token,
                expires_in,
                refresh_token,
                scope: scope.unwrap_or_default(),
                client_id,
            })
        },
    )
}
