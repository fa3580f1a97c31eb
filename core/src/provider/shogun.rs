//! Shogun: `POST {base}/security/api/generate_token` with `{"client_id","client_secret"}`,
//! and `GET {base}/security/api/validate_token` with the bearer token.
//!
//! | response | meaning |
//! |---|---|
//! | 200 `{"status":true,"message","data":{"access_token","token_type","expires_in","client_id","authorities":[…]}}` | grant |
//! | 200 `{"status":false,…}` | rejected |
//! | 401 `{"status":false,"message":"Invalid credentials"}` | invalid credentials |
//! | 429 `{"status":false,"message":"Temporarily locked…"}` | rate limited (locked out: back off) |
//! | validate 200 `{"status":true,"data":{"username","client_id","authorities","issued_at","expires_at"}}` | token info; timestamps ISO 8601, no zone = UTC |
//! | validate 401 `{"status":false,"message":"Invalid authentication token"}` | token invalid |

use crate::codec::{self, conclude, walk, Envelope, Schema, ScopeForm};
use crate::credentials::Credentials;
use crate::error::{Error, ResponseError};
use crate::grant::{GrantRef, ScopeRef, TokenInfoRef};
use crate::json::{Cursor, JsonStr, Problem};
use crate::request::{bearer_header, Method, Request, Url};
use crate::timestamp;

use super::Provider;

/// Shogun's documented base URL.
pub const SHOGUN_BASE_URL: &str = "https://api.shogun.io/api/v1";
const TOKEN_PATH: &str = "/security/api/generate_token";
const VALIDATE_PATH: &str = "/security/api/validate_token";

const SCHEMA: Schema = Schema {
    data: Some("data"),
    access_token: "access_token",
    expires_in: "expires_in",
    token_type: Some("token_type"),
    refresh_token: None,
    scope: Some(("authorities", ScopeForm::List)),
    client_id: Some("client_id"),
    invalid_credential_codes: &[],
};

/// The Shogun Integration API.
///
/// ```
/// use tessera_core::{Credentials, Provider, Shogun};
/// let creds = Credentials::new("your-client-id", "your-client-secret").unwrap();
/// let mut buf = [0u8; 256];
/// let shogun = Shogun::new();
/// let req = shogun.token_request(&creds, &mut buf).unwrap();
/// assert_eq!(req.url.to_string(), "https://api.shogun.io/api/v1/security/api/generate_token");
/// assert_eq!(req.body, br#"{"client_id":"your-client-id","client_secret":"your-client-secret"}"#);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shogun<'a> {
    base_url: &'a str,
}

impl Shogun<'static> {
    /// Shogun at its documented base URL.
    pub const fn new() -> Self {
        Shogun {
            base_url: SHOGUN_BASE_URL,
        }
    }
}

impl Default for Shogun<'static> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Shogun<'a> {
    /// Shogun at another base URL (everything before `/security/api/…`).
    pub const fn with_base_url(base_url: &'a str) -> Self {
        Shogun { base_url }
    }

    /// Where the validate endpoint is (a `GET` with the token as bearer).
    pub const fn validate_url(&self) -> Url<'a> {
        Url {
            base: self.base_url,
            path: VALIDATE_PATH,
        }
    }

    /// The validate request for `token`; the `Authorization` value is written into `buf`.
    pub fn validate_request<'b>(
        &'b self,
        token: &str,
        buf: &'b mut [u8],
    ) -> Result<Request<'b>, Error> {
        let authorization = bearer_header(token, buf)?;
        Ok(Request {
            method: Method::Get,
            url: self.validate_url(),
            content_type: None,
            authorization: Some(authorization),
            body: &[],
        })
    }

    /// Reads the validate endpoint's response. A 401 is [`Error::TokenInvalid`]: fetch a new
    /// token.
    pub fn parse_validate<'b>(
        &self,
        status: u16,
        body: &'b [u8],
    ) -> Result<TokenInfoRef<'b>, ResponseError<'b>> {
        let mut env = Envelope::default();
        let mut f = ValidateFields::default();
        let walked = walk(body, Some("data"), &mut env, |c, key| f.member(c, key));
        conclude(status, walked, env, Error::TokenInvalid, &[], |seen_data| {
            if !seen_data {
                return Err(Error::malformed("data", Problem::Missing));
            }
            let req =
                |v: Option<JsonStr<'b>>, field| v.ok_or(Error::malformed(field, Problem::Missing));
            let time = |v: Option<i64>, field| v.ok_or(Error::malformed(field, Problem::Missing));
            Ok(TokenInfoRef {
                username: req(f.username, "username")?,
                client_id: req(f.client_id, "client_id")?,
                scope: f.authorities.unwrap_or_default(),
                issued_at: time(f.issued_at, "issued_at")?,
                expires_at: time(f.expires_at, "expires_at")?,
            })
        })
    }
}

#[derive(Default)]
struct ValidateFields<'b> {
    username: Option<JsonStr<'b>>,
    client_id: Option<JsonStr<'b>>,
    authorities: Option<ScopeRef<'b>>,
    issued_at: Option<i64>,
    expires_at: Option<i64>,
}

impl<'b> ValidateFields<'b> {
    fn member(&mut self, c: &mut Cursor<'b>, key: JsonStr<'b>) -> Result<(), Error> {
        fn string<'b>(
            c: &mut Cursor<'b>,
            slot: &mut Option<JsonStr<'b>>,
            field: &'static str,
        ) -> Result<(), Error> {
            let s = c.string().map_err(|p| Error::malformed(field, p))?;
            set(slot, s, field)
        }
        fn time(
            c: &mut Cursor<'_>,
            slot: &mut Option<i64>,
            field: &'static str,
        ) -> Result<(), Error> {
            let at = |p| Error::malformed(field, p);
            let s = c.string().map_err(at)?;
            // Timestamps never need escapes; an escaped one is not a timestamp.
            let t = timestamp::parse(s.as_str().ok_or(at(Problem::Syntax))?).map_err(at)?;
            set(slot, t, field)
        }
        if key.eq_str("username") {
            string(c, &mut self.username, "username")
        } else if key.eq_str("client_id") {
            string(c, &mut self.client_id, "client_id")
        } else if key.eq_str("authorities") {
            let list = ScopeRef::read_list(c, "authorities")?;
            set(&mut self.authorities, list, "authorities")
        } else if key.eq_str("issued_at") {
            time(c, &mut self.issued_at, "issued_at")
        } else if key.eq_str("expires_at") {
            time(c, &mut self.expires_at, "expires_at")
        } else {
            Ok(())
        }
    }
}

fn set<T>(slot: &mut Option<T>, v: T, field: &'static str) -> Result<(), Error> {
    if slot.replace(v).is_some() {
        return Err(Error::malformed(field, Problem::Duplicate));
    }
    Ok(())
}

impl Provider for Shogun<'_> {
    fn token_request<'a>(
        &'a self,
        credentials: &Credentials,
        buf: &'a mut [u8],
    ) -> Result<Request<'a>, Error> {
        let url = Url {
            base: self.base_url,
            path: TOKEN_PATH,
        };
        codec::json_credentials_request(url, "client_id", "client_secret", credentials, buf)
    }

    fn parse_token<'b>(
        &self,
        status: u16,
        body: &'b [u8],
    ) -> Result<GrantRef<'b>, ResponseError<'b>> {
        codec::parse_grant(&SCHEMA, status, body)
    }

    fn identity(&self, feed: &mut dyn FnMut(&[u8])) {
        super::identity_piece(feed, "shogun");
        super::identity_piece(feed, self.base_url);
    }
}
