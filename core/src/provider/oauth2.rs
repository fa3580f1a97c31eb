//! Standard OAuth 2.0 client credentials (RFC 6749 §4.4).
//!
//! `POST <token_url>` with `Content-Type: application/x-www-form-urlencoded` and body
//! `grant_type=client_credentials[&scope=…][&audience=…]`. The client authenticates with HTTP
//! Basic (default; RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined with `:` and
//! base64-encoded) or with `client_id`/`client_secret` form fields.
//!
//! | response | meaning |
//! |---|---|
//! | 200 `{"access_token","token_type","expires_in","scope","refresh_token"?}` | grant |
//! | 400/401 `{"error":"invalid_client",…}` | invalid credentials |
//! | 401 | invalid credentials |
//! | 400 `{"error":"invalid_scope" / "unauthorized_client" / …,"error_description"}` | rejected |

use crate::codec::{self, Schema, ScopeForm};
use crate::credentials::Credentials;
use crate::error::{Error, ResponseError};
use crate::grant::GrantRef;
use crate::request::{Method, Request, Url, FORM};
use crate::write::{form_encode, Base64, ByteSink, Out};

use super::Provider;

/// The OAuth 2.0 token response (RFC 6749 §5.1), also StoneX's.
pub(crate) const OAUTH_SCHEMA: Schema = Schema {
    data: None,
    access_token: "access_token",
    expires_in: "expires_in",
    token_type: Some("token_type"),
    refresh_token: Some("refresh_token"),
    scope: Some(("scope", ScopeForm::Spaced)),
    client_id: None,
    invalid_credential_codes: &["invalid_client"],
};

/// How the client authenticates to the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientAuth {
    /// `Authorization: Basic …` (RFC 6749 §2.3.1; every server must support it).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// A standard OAuth 2.0 token endpoint.
///
/// ```
/// use tessera_core::{ClientAuth, Credentials, OAuth2, Provider};
/// let creds = Credentials::new("id", "p@ss word").unwrap();
/// let idp = OAuth2::new("https://idp.example/oauth2/token").with_scope("payments:write");
/// let mut buf = [0u8; 256];
/// let req = idp.token_request(&creds, &mut buf).unwrap();
/// assert_eq!(req.body, b"grant_type=client_credentials&scope=payments%3Awrite");
/// assert_eq!(req.authorization, Some("Basic aWQ6cCU0MHNzK3dvcmQ="));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OAuth2<'a> {
    token_url: &'a str,
    auth: ClientAuth,
    scope: Option<&'a str>,
    audience: Option<&'a str>,
}

impl<'a> OAuth2<'a> {
    /// The token endpoint at `token_url` (the whole URL), with HTTP Basic authentication.
    pub const fn new(token_url: &'a str) -> Self {
        OAuth2 {
            token_url,
            auth: ClientAuth::Basic,
            scope: None,
            audience: None,
        }
    }

    /// Chooses how the client authenticates.
    pub const fn with_auth(self, auth: ClientAuth) -> Self {
        OAuth2 { auth, ..self }
    }

    /// Requests `scope` (space-separated scopes).
    pub const fn with_scope(self, scope: &'a str) -> Self {
        OAuth2 {
            scope: Some(scope),
            ..self
        }
    }

    /// Sends `audience` (Auth0 and others require it).
    pub const fn with_audience(self, audience: &'a str) -> Self {
        OAuth2 {
            audience: Some(audience),
            ..self
        }
    }

    fn write_body(&self, out: &mut Out<'_>, credentials: &Credentials) {
        out.str("grant_type=client_credentials");
        let mut field = |name: &str, value: &str| {
            out.byte(b'&');
            out.str(name);
            out.byte(b'=');
            form_encode(out, value);
        };
        if let Some(scope) = self.scope {
            field("scope", scope);
        }
        if let Some(audience) = self.audience {
            field("audience", audience);
        }
        if self.auth == ClientAuth::Body {
            field("client_id", credentials.client_id());
            field("client_secret", credentials.expose_secret());
        }
    }
}

/// Writes `Basic base64(urlencode(id) ":" urlencode(secret))`.
fn write_basic(out: &mut Out<'_>, credentials: &Credentials) {
    out.str("Basic ");
    let mut b64 = Base64::new(out);
    form_encode(&mut b64, credentials.client_id());
    b64.put(b":");
    form_encode(&mut b64, credentials.expose_secret());
    b64.finish();
}

impl Provider for OAuth2<'_> {
    fn token_request<'a>(
        &'a self,
        credentials: &Credentials,
        buf: &'a mut [u8],
    ) -> Result<Request<'a>, Error> {
        let capacity = buf.len();
        let mut out = Out::new(buf);
        self.write_body(&mut out, credentials);
        let basic = self.auth == ClientAuth::Basic;
        let (body, rest) = match out.finish() {
            Ok(split) => split,
            Err(needed) => {
                let mut count = Out::new(&mut []);
                if basic {
                    write_basic(&mut count, credentials);
                }
                let needed = needed.saturating_add(count.needed());
                return Err(Error::Capacity {
                    field: "request buffer",
                    needed,
                    capacity,
                });
            }
        };
        let body_len = body.len();
        let mut authorization = None;
        if basic {
            let mut out = Out::new(rest);
            write_basic(&mut out, credentials);
            let (header, _) = out.finish().map_err(|header| Error::Capacity {
                field: "request buffer",
                needed: body_len.saturating_add(header),
                capacity,
            })?;
            // Only ASCII was written.
            authorization = core::str::from_utf8(header).ok();
        }
        Ok(Request {
            method: Method::Post,
            url: Url {
                base: self.token_url,
                path: "",
            },
            content_type: Some(FORM),
            authorization,
            body,
        })
    }

    fn parse_token<'b>(
        &self,
        status: u16,
        body: &'b [u8],
    ) -> Result<GrantRef<'b>, ResponseError<'b>> {
        codec::parse_grant(&OAUTH_SCHEMA, status, body)
    }

    fn identity(&self, feed: &mut dyn FnMut(&[u8])) {
        let auth = match self.auth {
            ClientAuth::Basic => "basic",
            ClientAuth::Body => "body",
        };
        for piece in [
            "oauth2",
            self.token_url,
            auth,
            self.scope.unwrap_or(""),
            self.audience.unwrap_or(""),
        ] {
            super::identity_piece(feed, piece);
        }
        // An absent scope and an empty one ask for the same token; say which it was anyway.
        feed(&[
            u8::from(self.scope.is_some()),
            u8::from(self.audience.is_some()),
        ]);
    }
}
