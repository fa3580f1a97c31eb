//! Grants: what a token endpoint returned. [`GrantRef`] borrows the response body; [`Grant`]
//! owns fixed-capacity copies.
//!
//! Parsing yields a `GrantRef` without copying anything. [`Grant::store`] then checks every
//! field against its capacity *before* writing any of them, so a grant is either fully
//! replaced or left untouched: never half-written. The copy is made straight into the
//! destination, so the stack cost does not depend on the capacities.

use core::fmt;

use crate::error::Error;
use heapless::string::StringView;

use crate::json::{Cursor, DecodeError, JsonStr, Problem};
use crate::jwt;
use crate::request::is_header_token;

/// Lifetime assumed when neither `expires_in` nor the token's claims state one (seconds).
pub const DEFAULT_LIFETIME_S: u64 = 300;
/// Default token capacity: room for real RS256 JWTs (Setu's is 1,238 bytes).
pub const DEFAULT_TOKEN_CAPACITY: usize = 2048;
/// Default refresh-token capacity.
pub const DEFAULT_REFRESH_CAPACITY: usize = 1024;
/// Bytes of scope text a [`Scopes`] holds (separators not counted).
pub const SCOPE_CAPACITY: usize = 256;
/// Number of scopes a [`Scopes`] holds.
pub const MAX_SCOPES: usize = 16;
/// Capacity of a client id echoed in a grant or token info.
pub const GRANT_CLIENT_ID_CAPACITY: usize = 128;

/// How a response lists scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScopeRef<'a> {
    /// No scopes given.
    #[default]
    None,
    /// A JSON array of strings (Shogun's `authorities`); the raw array, already checked.
    List(&'a [u8]),
    /// A space-separated string (OAuth 2.0 / StoneX `scope`).
    Spaced(JsonStr<'a>),
}

impl<'a> ScopeRef<'a> {
    /// Reads an array of strings at the cursor, checking every element is a string.
    pub(crate) fn read_list(c: &mut Cursor<'a>, field: &'static str) -> Result<Self, Error> {
        let start = c.clone();
        c.array(|c| {
            c.string()
                .map(|_| ())
                .map_err(|p| Error::malformed(field, p))
        })?;
        let raw = start.span_to(c);
        Ok(ScopeRef::List(raw))
    }

    /// Calls `f` with each scope's raw string, in order.
    fn each(&self, mut f: impl FnMut(JsonStr<'a>) -> Result<(), Error>) -> Result<(), Error> {
        match self {
            ScopeRef::None => Ok(()),
            ScopeRef::List(raw) => Cursor::new(raw).array(|c| f(c.string()?)),
            ScopeRef::Spaced(s) => f(*s),
        }
    }

    /// Walks the scopes as decoded text: `f(Some(piece))` for text, `f(None)` after each
    /// complete scope. Spaces separate scopes (RFC 6749 §3.3); runs of them are one separator.
    fn walk(&self, field: &'static str, mut f: impl FnMut(Option<&str>)) -> Result<(), Error> {
        self.each(|s| {
            let mut open = false;
            s.chunks(|chunk| {
                // Split on ASCII spaces by hand: `str::split` keeps a panic path on MCUs.
                let mut rest = chunk;
                loop {
                    let space = memchr::memchr(b' ', rest.as_bytes());
                    let end = space.unwrap_or(rest.len());
                    let part = rest.get(..end).unwrap_or_default();
                    if !part.is_empty() {
                        f(Some(part));
                        open = true;
                    }
                    let Some(i) = space else { break };
                    if open {
                        f(None);
                        open = false;
                    }
                    rest = rest.get(i + 1..).unwrap_or_default();
                }
                true
            })
            .map_err(|p| Error::malformed(field, p))?;
            if open {
                f(None);
            }
            Ok(())
        })
    }
}

/// A token response's fields, borrowed from the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantRef<'a> {
    /// The bearer token.
    pub access_token: JsonStr<'a>,
    /// `expires_in` as the provider stated it, in seconds.
    pub expires_in: Option<u64>,
    /// APIMW's (or an OAuth server's) refresh token.
    pub refresh_token: Option<JsonStr<'a>>,
    /// Granted scopes or authorities.
    pub scope: ScopeRef<'a>,
    /// The client id the provider echoes (Shogun).
    pub client_id: Option<JsonStr<'a>>,
}

impl GrantRef<'_> {
    /// The lifetime to trust, in seconds: `expires_in`, or the smaller of `expires_in` and the
    /// JWT's `exp - iat` when the token is a JWT with both claims; [`DEFAULT_LIFETIME_S`]
    /// when neither is known.
    pub fn lifetime_s(&self) -> u64 {
        effective_lifetime(self.expires_in, jwt::lifetime_json(&self.access_token))
    }
}

/// The lifetime rule shared by borrowed and owned grants.
pub fn effective_lifetime(expires_in: Option<u64>, jwt_lifetime: Option<u64>) -> u64 {
    match (expires_in, jwt_lifetime) {
        (Some(e), Some(j)) => e.min(j),
        (Some(e), None) => e,
        (None, Some(j)) => j,
        (None, None) => DEFAULT_LIFETIME_S,
    }
}

/// A list of scopes (authorities) in fixed capacity.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    text: heapless::String<SCOPE_CAPACITY>,
    ends: heapless::Vec<u16, MAX_SCOPES>,
}

impl Scopes {
    /// No scopes.
    pub const fn new() -> Self {
        Scopes {
            text: heapless::String::new(),
            ends: heapless::Vec::new(),
        }
    }

    /// The scopes in the order the provider gave them.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |&end| {
            let end = usize::from(end);
            let s = self.text.get(start..end).unwrap_or_default();
            start = end;
            s
        })
    }

    /// Whether `scope` was granted (exact, case-sensitive match).
    pub fn contains(&self, scope: &str) -> bool {
        self.iter().any(|s| s == scope)
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no scope was granted.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Validates `src` and checks it fits, writing nothing.
    pub(crate) fn check(src: &ScopeRef<'_>, field: &'static str) -> Result<(), Error> {
        let (mut bytes, mut entries) = (0usize, 0usize);
        src.walk(field, |piece| match piece {
            Some(text) => bytes = bytes.saturating_add(text.len()),
            None => entries += 1,
        })?;
        check(field, bytes, SCOPE_CAPACITY)?;
        check("scope count", entries, MAX_SCOPES)
    }

    /// Replaces the contents with `src`, which [`Scopes::check`] accepted.
    pub(crate) fn write(&mut self, src: &ScopeRef<'_>, field: &'static str) -> Result<(), Error> {
        self.text.clear();
        self.ends.clear();
        src.walk(field, |piece| match piece {
            // Capacity was checked: these pushes cannot fail.
            Some(text) => {
                let _ = self.text.push_str(text);
            }
            None => {
                let end = u16::try_from(self.text.len()).unwrap_or(u16::MAX);
                let _ = self.ends.push(end);
            }
        })
    }

    /// Checks, then replaces the contents (nothing written on error).
    #[cfg(test)]
    pub(crate) fn store(&mut self, src: &ScopeRef<'_>, field: &'static str) -> Result<(), Error> {
        Self::check(src, field)?;
        self.write(src, field)
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Scopes {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "[");
        for (i, s) in self.iter().enumerate() {
            if i > 0 {
                defmt::write!(f, ", ");
            }
            defmt::write!(f, "{=str}", s);
        }
        defmt::write!(f, "]");
    }
}

fn check(field: &'static str, needed: usize, capacity: usize) -> Result<(), Error> {
    if needed > capacity {
        Err(Error::Capacity {
            field,
            needed,
            capacity,
        })
    } else {
        Ok(())
    }
}

fn decoded_len(s: &JsonStr<'_>, field: &'static str) -> Result<usize, Error> {
    s.decoded_len().map_err(|p| Error::malformed(field, p))
}

/// Decodes a string already checked by [`decoded_len`] and [`check`].
fn copy(s: &JsonStr<'_>, dest: &mut StringView, field: &'static str) -> Result<(), Error> {
    s.decode_into_view(dest).map_err(|e| match e {
        DecodeError::Invalid(p) => Error::malformed(field, p),
        DecodeError::Capacity(needed) => Error::Capacity {
            field,
            needed,
            capacity: dest.capacity(),
        },
    })
}

/// A grant's fields through capacity-erased views, so storing is one non-generic function.
struct Slots<'g> {
    access_token: &'g mut StringView,
    refresh_token: &'g mut StringView,
    client_id: &'g mut StringView,
    scopes: &'g mut Scopes,
    expires_in: &'g mut Option<u64>,
    lifetime_s: &'g mut u64,
}

impl Slots<'_> {
    /// Checks every field of `src` first, then writes: on error nothing changes.
    #[inline(never)]
    fn store(self, src: &GrantRef<'_>) -> Result<(), Error> {
        let fits = |s: &JsonStr<'_>, field, dest: &StringView| {
            check(field, decoded_len(s, field)?, dest.capacity())
        };
        // One pass over the token: its decoded length, and whether it can go into a header
        // (visible ASCII only: CR/LF would inject headers). Nothing is written yet.
        let (mut token_len, mut visible) = (0usize, true);
        src.access_token
            .chunks(|c| {
                token_len = token_len.saturating_add(c.len());
                visible &= is_header_token(c);
                true
            })
            .map_err(|p| Error::malformed("access_token", p))?;
        check("access_token", token_len, self.access_token.capacity())?;
        if token_len == 0 {
            return Err(Error::malformed("access_token", Problem::Missing));
        }
        if !visible {
            return Err(Error::malformed("access_token", Problem::Charset));
        }
        if let Some(r) = &src.refresh_token {
            fits(r, "refresh_token", self.refresh_token)?;
        }
        if let Some(c) = &src.client_id {
            fits(c, "client_id", self.client_id)?;
        }
        Scopes::check(&src.scope, "scope")?;
        copy(&src.access_token, self.access_token, "access_token")?;
        self.refresh_token.clear();
        if let Some(r) = &src.refresh_token {
            copy(r, self.refresh_token, "refresh_token")?;
        }
        self.client_id.clear();
        if let Some(c) = &src.client_id {
            copy(c, self.client_id, "client_id")?;
        }
        self.scopes.write(&src.scope, "scope")?;
        *self.expires_in = src.expires_in;
        *self.lifetime_s = effective_lifetime(src.expires_in, jwt::lifetime(self.access_token));
        Ok(())
    }
}

/// An owned token grant with fixed capacities (`TOKEN` for the access token, `REFRESH` for
/// the refresh token).
///
/// `Debug` and `defmt` show the token's length, never the token.
///
/// ```
/// use tessera_core::{Grant, Provider, Shogun};
/// let body = br#"{"status":true,"message":"ok","data":{"access_token":"abc","token_type":"Bearer",
///   "expires_in":86400,"client_id":"c1","authorities":["TRANSACTION_READ"]}}"#;
/// let mut grant: Grant = Grant::new();
/// grant.store(&Shogun::new().parse_token(200, body).unwrap()).unwrap();
/// assert_eq!(grant.access_token(), "abc");
/// assert!(grant.has_scope("TRANSACTION_READ"));
/// assert_eq!(grant.lifetime_s(), 86400);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Grant<
    const TOKEN: usize = DEFAULT_TOKEN_CAPACITY,
    const REFRESH: usize = DEFAULT_REFRESH_CAPACITY,
> {
    access_token: heapless::String<TOKEN>,
    refresh_token: heapless::String<REFRESH>,
    client_id: heapless::String<GRANT_CLIENT_ID_CAPACITY>,
    scopes: Scopes,
    expires_in: Option<u64>,
    lifetime_s: u64,
}

impl<const TOKEN: usize, const REFRESH: usize> Default for Grant<TOKEN, REFRESH> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const TOKEN: usize, const REFRESH: usize> Grant<TOKEN, REFRESH> {
    /// An empty grant (no token).
    pub const fn new() -> Self {
        Grant {
            access_token: heapless::String::new(),
            refresh_token: heapless::String::new(),
            client_id: heapless::String::new(),
            scopes: Scopes::new(),
            expires_in: None,
            lifetime_s: 0,
        }
    }

    /// Replaces this grant with `src`. Every field is checked first: on error nothing changes.
    pub fn store(&mut self, src: &GrantRef<'_>) -> Result<(), Error> {
        Slots {
            access_token: self.access_token.as_mut_view(),
            refresh_token: self.refresh_token.as_mut_view(),
            client_id: self.client_id.as_mut_view(),
            scopes: &mut self.scopes,
            expires_in: &mut self.expires_in,
            lifetime_s: &mut self.lifetime_s,
        }
        .store(src)
    }

    /// Empties the grant.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Whether the grant holds a token.
    pub fn is_empty(&self) -> bool {
        self.access_token.is_empty()
    }

    /// The bearer token.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The token type. Every provider Tessera speaks issues bearer tokens, and the codecs
    /// reject any other `token_type`, so this is always `"Bearer"`.
    pub fn token_type(&self) -> &'static str {
        "Bearer"
    }

    /// `expires_in` as stated, in seconds.
    pub fn expires_in(&self) -> Option<u64> {
        self.expires_in
    }

    /// The lifetime to trust, in seconds (see [`GrantRef::lifetime_s`]).
    pub fn lifetime_s(&self) -> u64 {
        self.lifetime_s
    }

    /// The refresh token (APIMW), kept and exposed; Tessera never calls a refresh endpoint
    /// because none is documented. An empty one (`"refresh_token": ""`) is no refresh token:
    /// `None`, as when the field is absent or `null`.
    pub fn refresh_token(&self) -> Option<&str> {
        (!self.refresh_token.is_empty()).then_some(self.refresh_token.as_str())
    }

    /// The client id the provider echoed, if any.
    pub fn client_id(&self) -> Option<&str> {
        (!self.client_id.is_empty()).then_some(self.client_id.as_str())
    }

    /// The granted scopes (Shogun `authorities`, OAuth `scope`).
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// Whether `scope` was granted; check before a sensitive operation.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

impl<const TOKEN: usize, const REFRESH: usize> fmt::Debug for Grant<TOKEN, REFRESH> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field(
                "access_token",
                &format_args!("<redacted {} bytes>", self.access_token.len()),
            )
            .field(
                "refresh_token",
                &self.refresh_token().map(|_| format_args!("<redacted>")),
            )
            .field("client_id", &self.client_id())
            .field("scopes", &self.scopes)
            .field("expires_in", &self.expires_in)
            .field("lifetime_s", &self.lifetime_s)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl<const TOKEN: usize, const REFRESH: usize> defmt::Format for Grant<TOKEN, REFRESH> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Grant {{ access_token: <redacted {=usize} bytes>, client_id: {}, scopes: {}, expires_in: {}, lifetime_s: {=u64} }}",
            self.access_token.len(),
            self.client_id(),
            self.scopes,
            self.expires_in,
            self.lifetime_s
        )
    }
}

/// What Shogun's validate endpoint says about a live token.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TokenInfo {
    /// The API client's user name.
    pub username: heapless::String<GRANT_CLIENT_ID_CAPACITY>,
    /// The API client's id.
    pub client_id: heapless::String<GRANT_CLIENT_ID_CAPACITY>,
    /// Granted authorities.
    pub scopes: Scopes,
    /// When the token was issued, Unix seconds (UTC).
    pub issued_at: i64,
    /// When the token expires, Unix seconds (UTC).
    pub expires_at: i64,
}

impl TokenInfo {
    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// Validate-endpoint fields borrowed from the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenInfoRef<'a> {
    /// `username`.
    pub username: JsonStr<'a>,
    /// `client_id`.
    pub client_id: JsonStr<'a>,
    /// `authorities`.
    pub scope: ScopeRef<'a>,
    /// `issued_at`, Unix seconds.
    pub issued_at: i64,
    /// `expires_at`, Unix seconds.
    pub expires_at: i64,
}

impl TokenInfo {
    /// Replaces this info with `src`; on error nothing changes.
    pub fn store(&mut self, src: &TokenInfoRef<'_>) -> Result<(), Error> {
        check(
            "username",
            decoded_len(&src.username, "username")?,
            GRANT_CLIENT_ID_CAPACITY,
        )?;
        check(
            "client_id",
            decoded_len(&src.client_id, "client_id")?,
            GRANT_CLIENT_ID_CAPACITY,
        )?;
        Scopes::check(&src.scope, "authorities")?;
        copy(&src.username, self.username.as_mut_view(), "username")?;
        copy(&src.client_id, self.client_id.as_mut_view(), "client_id")?;
        self.scopes.write(&src.scope, "authorities")?;
        self.issued_at = src.issued_at;
        self.expires_at = src.expires_at;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Problem;
    extern crate std;
    use std::vec::Vec;

    fn scopes_of(json: &str, list: bool) -> Result<Vec<std::string::String>, Error> {
        let mut c = Cursor::new(json.as_bytes());
        let r = if list {
            ScopeRef::read_list(&mut c, "authorities")?
        } else {
            ScopeRef::Spaced(c.string().unwrap())
        };
        let mut s = Scopes::new();
        s.store(&r, "scope")?;
        Ok(s.iter().map(std::string::String::from).collect())
    }

    #[test]
    fn spaced_scopes_split_on_spaces_and_escapes() {
        assert_eq!(scopes_of(r#""a b  c""#, false).unwrap(), ["a", "b", "c"]);
        assert_eq!(
            scopes_of(r#"" a\u0020b\/c ""#, false).unwrap(),
            ["a", "b/c"]
        );
        assert_eq!(
            scopes_of(r#""x\u00e9y z""#, false).unwrap(),
            ["x\u{e9}y", "z"]
        );
        assert_eq!(
            scopes_of(r#""""#, false).unwrap(),
            Vec::<std::string::String>::new()
        );
    }

    #[test]
    fn list_scopes_keep_order_and_check_types() {
        assert_eq!(
            scopes_of(r#"["TRANSACTION_READ","TRANSACTION_WRITE"]"#, true).unwrap(),
            ["TRANSACTION_READ", "TRANSACTION_WRITE"]
        );
        assert_eq!(
            scopes_of(r#"["A",1]"#, true),
            Err(Error::Malformed {
                field: Some("authorities"),
                problem: Problem::Type
            })
        );
    }

    #[test]
    fn scope_capacity_is_checked_before_writing() {
        let many: Vec<std::string::String> = (0..17).map(|i| std::format!("s{i}")).collect();
        let json = std::format!("\"{}\"", many.join(" "));
        assert_eq!(
            scopes_of(&json, false),
            Err(Error::Capacity {
                field: "scope count",
                needed: 17,
                capacity: MAX_SCOPES
            })
        );
        let long = std::format!("\"{}\"", "x".repeat(SCOPE_CAPACITY + 1));
        assert_eq!(
            scopes_of(&long, false),
            Err(Error::Capacity {
                field: "scope",
                needed: 257,
                capacity: SCOPE_CAPACITY
            })
        );
    }

    #[test]
    fn an_empty_refresh_token_is_none() {
        use crate::{Apimw, Provider};
        let apimw = Apimw::new();
        let mut g: Grant = Grant::new();
        for (refresh, want) in [(r#""rt_1""#, Some("rt_1")), (r#""""#, None), ("null", None)] {
            let body = std::format!(
                r#"{{"success":true,"data":{{"access_token":"t","expires_in":60,"refresh_token":{refresh}}}}}"#
            );
            g.store(&apimw.parse_token(200, body.as_bytes()).unwrap())
                .unwrap();
            assert_eq!(g.refresh_token(), want, "{refresh}");
        }
    }

    #[test]
    fn lifetime_rule() {
        assert_eq!(effective_lifetime(Some(1800), Some(300)), 300);
        assert_eq!(effective_lifetime(Some(60), Some(300)), 60);
        assert_eq!(effective_lifetime(None, Some(300)), 300);
        assert_eq!(effective_lifetime(Some(0), None), 0);
        assert_eq!(effective_lifetime(None, None), DEFAULT_LIFETIME_S);
    }
}
