//! Provider test vectors: every example response in the providers' pages plus the edges
//! (escapes, surrogates, unknown nested fields, capacity, truncation, every status class),
//! with the outcome each must produce.
//!
//! `no_std` and heap-free, so the same table runs in host tests and in the on-target test
//! firmware: [`check`] parses one vector and compares every asserted field. The lifecycle
//! scenarios in [`lifecycle`] are shared the same way.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use core::fmt;

use tessera_core::json::JsonStr;
use tessera_core::{
    AnyProvider, Error, Grant, Problem, Provider, ProviderKind, ResponseError, Shogun, TokenInfo,
};

pub mod lifecycle;
mod table;
pub use table::VECTORS;

/// Which endpoint a response came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The token endpoint.
    Token,
    /// Shogun's validate endpoint.
    Validate,
}

/// The token a grant must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// Exactly this text.
    Exact(&'static str),
    /// This many bytes, starting and ending with these.
    Shape {
        /// Decoded length in bytes.
        len: usize,
        /// Its first bytes.
        starts: &'static str,
        /// Its last bytes.
        ends: &'static str,
    },
}

/// An expected grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantExpect {
    /// The access token.
    pub token: Token,
    /// `expires_in` as stated.
    pub expires_in: Option<u64>,
    /// The effective lifetime.
    pub lifetime_s: u64,
    /// The refresh token.
    pub refresh_token: Option<&'static str>,
    /// The scopes, in order.
    pub scopes: &'static [&'static str],
    /// The echoed client id.
    pub client_id: Option<&'static str>,
}

/// Expected validate output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoExpect {
    /// `username`
    pub username: &'static str,
    /// `client_id`
    pub client_id: &'static str,
    /// `authorities`
    pub scopes: &'static [&'static str],
    /// `issued_at`, Unix seconds
    pub issued_at: i64,
    /// `expires_at`, Unix seconds
    pub expires_at: i64,
}

/// An expected error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorExpect {
    /// The classified error.
    pub error: Error,
    /// The provider's code.
    pub code: Option<&'static str>,
    /// The provider's message.
    pub message: Option<&'static str>,
    /// The trace id.
    pub trace_id: Option<&'static str>,
}

/// What a vector must produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A grant (token endpoint).
    Grant(GrantExpect),
    /// Token info (validate endpoint).
    Info(InfoExpect),
    /// An error, from parsing or from storing into the default-capacity grant.
    Error(ErrorExpect),
}

/// One response and its outcome.
#[derive(Clone, Copy, Debug)]
pub struct Vector {
    /// A unique name, `provider-endpoint-case`.
    pub name: &'static str,
    /// The provider.
    pub provider: ProviderKind,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: &'static [u8],
    /// The outcome.
    pub expect: Expect,
}

/// How a vector failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The vector.
    pub vector: &'static str,
    /// What differed.
    pub what: &'static str,
    /// The error the code produced, if it produced one.
    pub got: Option<Error>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.vector, self.what)?;
        if let Some(e) = &self.got {
            write!(f, " (got {e:?})")?;
        }
        Ok(())
    }
}

/// A grant stored before each failing case, to prove a failed store changes nothing.
const SENTINEL: &[u8] = br#"{"access_token":"sentinel","token_type":"Bearer","expires_in":1}"#;

/// Parses `v` and compares every asserted field. `grant` and `info` are scratch space
/// (on a microcontroller, pass statics so the capacity-sized buffers are not on the stack).
pub fn check(v: &Vector, grant: &mut Grant, info: &mut TokenInfo) -> Result<(), Mismatch> {
    let fail = |what, got| {
        Err(Mismatch {
            vector: v.name,
            what,
            got,
        })
    };
    let provider = AnyProvider::default_for(v.provider);
    match v.endpoint {
        Endpoint::Token => {
            let sentinel =
                AnyProvider::default_for(ProviderKind::OAuth2).parse_token(200, SENTINEL);
            match sentinel.map(|s| grant.store(&s)) {
                Ok(Ok(())) => {}
                _ => return fail("sentinel grant did not store", None),
            }
            match (provider.parse_token(v.status, v.body), &v.expect) {
                (Ok(r), Expect::Grant(want)) => match grant.store(&r) {
                    Ok(()) => compare_grant(v.name, grant, want),
                    Err(e) => fail("store failed", Some(e)),
                },
                (Ok(r), Expect::Error(want)) => match grant.store(&r) {
                    Ok(()) => fail("expected an error, got a grant", None),
                    Err(e) if e != want.error => fail("wrong store error", Some(e)),
                    Err(_) if grant.access_token() != "sentinel" => {
                        fail("failed store changed the grant", None)
                    }
                    Err(_) => Ok(()),
                },
                (Err(e), Expect::Error(want)) => compare_error(v.name, &e, want),
                (Err(e), _) => fail("unexpected error", Some(e.error)),
                (Ok(_), Expect::Info(_)) => fail("token vector expects info", None),
            }
        }
        Endpoint::Validate => {
            let shogun = Shogun::new();
            match (shogun.parse_validate(v.status, v.body), &v.expect) {
                (Ok(r), Expect::Info(want)) => match info.store(&r) {
                    Ok(()) => compare_info(v.name, info, want),
                    Err(e) => fail("store failed", Some(e)),
                },
                (Ok(r), Expect::Error(want)) => match info.store(&r) {
                    Ok(()) => fail("expected an error, got info", None),
                    Err(e) if e != want.error => fail("wrong store error", Some(e)),
                    Err(_) => Ok(()),
                },
                (Err(e), Expect::Error(want)) => compare_error(v.name, &e, want),
                (Err(e), _) => fail("unexpected error", Some(e.error)),
                (Ok(_), Expect::Grant(_)) => fail("validate vector expects a grant", None),
            }
        }
    }
}

fn compare_grant(name: &'static str, g: &Grant, want: &GrantExpect) -> Result<(), Mismatch> {
    let fail = |what| {
        Err(Mismatch {
            vector: name,
            what,
            got: None,
        })
    };
    let token_ok = match want.token {
        Token::Exact(t) => g.access_token() == t,
        Token::Shape { len, starts, ends } => {
            g.access_token().len() == len
                && g.access_token().starts_with(starts)
                && g.access_token().ends_with(ends)
        }
    };
    if !token_ok {
        return fail("access_token");
    }
    if g.token_type() != "Bearer" {
        return fail("token_type");
    }
    if g.expires_in() != want.expires_in {
        return fail("expires_in");
    }
    if g.lifetime_s() != want.lifetime_s {
        return fail("lifetime_s");
    }
    if g.refresh_token() != want.refresh_token {
        return fail("refresh_token");
    }
    if !g.scopes().iter().eq(want.scopes.iter().copied()) {
        return fail("scopes");
    }
    if let Some(first) = want.scopes.first() {
        if !g.has_scope(first) {
            return fail("has_scope");
        }
    }
    if g.has_scope("NOT_GRANTED") {
        return fail("has_scope of an ungranted scope");
    }
    if g.client_id() != want.client_id {
        return fail("client_id");
    }
    Ok(())
}

fn compare_info(name: &'static str, i: &TokenInfo, want: &InfoExpect) -> Result<(), Mismatch> {
    let fail = |what| {
        Err(Mismatch {
            vector: name,
            what,
            got: None,
        })
    };
    if i.username != want.username {
        return fail("username");
    }
    if i.client_id != want.client_id {
        return fail("client_id");
    }
    if !i.scopes.iter().eq(want.scopes.iter().copied()) {
        return fail("scopes");
    }
    if i.issued_at != want.issued_at {
        return fail("issued_at");
    }
    if i.expires_at != want.expires_at {
        return fail("expires_at");
    }
    if want.scopes.iter().any(|s| !i.has_scope(s)) {
        return fail("has_scope");
    }
    Ok(())
}

fn compare_error(
    name: &'static str,
    e: &ResponseError,
    want: &ErrorExpect,
) -> Result<(), Mismatch> {
    let fail = |what| {
        Err(Mismatch {
            vector: name,
            what,
            got: Some(e.error),
        })
    };
    if e.error != want.error {
        return fail("error");
    }
    if !same(e.detail.code(), want.code) {
        return fail("code");
    }
    if !same(e.detail.message(), want.message) {
        return fail("message");
    }
    if !same(e.detail.trace_id(), want.trace_id) {
        return fail("trace_id");
    }
    Ok(())
}

fn same(got: Option<JsonStr<'_>>, want: Option<&str>) -> bool {
    match (got, want) {
        (None, None) => true,
        (Some(g), Some(w)) => g.eq_str(w),
        _ => false,
    }
}

/// `Error::Malformed` shorthand for the table.
pub const fn malformed(field: Option<&'static str>, problem: Problem) -> Error {
    Error::Malformed { field, problem }
}

/// Days since 1970-01-01 to a civil date `(year, month, day)` (H. Hinnant's algorithm):
/// the calendar the fuzz checks compare tessera-core's ISO 8601 reader against, written
/// independently of that reader.
///
/// ```
/// assert_eq!(tessera_vectors::civil_from_days(0), (1970, 1, 1));
/// assert_eq!(tessera_vectors::civil_from_days(-1), (1969, 12, 31));
/// assert_eq!(tessera_vectors::civil_from_days(11_016), (2000, 2, 29));
/// ```
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
