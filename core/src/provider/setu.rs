//! Setu: `POST {base}/api/v2/auth/token` with `{"clientID","secret"}`.
//!
//! | response | meaning |
//! |---|---|
//! | 200 `{"status":200,"success":true,"data":{"expiresIn":1800,"token":…}}` | grant (bearer; no `token_type`) |
//! | 400 `{"status":400,"success":false,"error":{"code":"invalid-api-key","detail","title","traceID",…}}` | invalid credentials |
//! | 400 with another code | rejected |
//!
//! Setu's page shows a trailing comma in its request and a `//` comment in its response: both
//! are documentation, not JSON. Tessera sends strict JSON and treats a commented body as
//! malformed. Its example token's claims say 300 s while `expiresIn` says 1800: the grant's
//! lifetime is the smaller. A failure's `traceID` is kept for support.

use crate::codec::{self, Schema};
use crate::credentials::Credentials;
use crate::error::{Error, ResponseError};
use crate::grant::GrantRef;
use crate::request::{Request, Url};

use super::Provider;

/// Setu's sandbox (UAT).
pub const SETU_SANDBOX_URL: &str = "https://uat.setu.co";
/// Setu's production.
pub const SETU_PRODUCTION_URL: &str = "https://prod.setu.co";
const TOKEN_PATH: &str = "/api/v2/auth/token";

const SCHEMA: Schema = Schema {
    data: Some("data"),
    access_token: "token",
    expires_in: "expiresIn",
    token_type: None,
    refresh_token: None,
    scope: None,
    client_id: None,
    invalid_credential_codes: &["invalid-api-key"],
};

/// The Setu API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Setu<'a> {
    base_url: &'a str,
}

impl Setu<'static> {
    /// Setu's sandbox, `https://uat.setu.co`.
    pub const fn sandbox() -> Self {
        Setu {
            base_url: SETU_SANDBOX_URL,
        }
    }

    /// Setu's production, `https://prod.setu.co`.
    pub const fn production() -> Self {
        Setu {
            base_url: SETU_PRODUCTION_URL,
        }
    }
}

impl<'a> Setu<'a> {
    /// Setu at another base URL.
    pub const fn with_base_url(base_url: &'a str) -> Self {
        Setu { base_url }
    }
}

impl Provider for Setu<'_> {
    fn token_request<'a>(
        &'a self,
        credentials: &Credentials,
        buf: &'a mut [u8],
    ) -> Result<Request<'a>, Error> {
        let url = Url {
            base: self.base_url,
            path: TOKEN_PATH,
        };
        codec::json_credentials_request(url, "clientID", "secret", credentials, buf)
    }

    fn parse_token<'b>(
        &self,
        status: u16,
        body: &'b [u8],
    ) -> Result<GrantRef<'b>, ResponseError<'b>> {
        codec::parse_grant(&SCHEMA, status, body)
    }

    fn identity(&self, feed: &mut dyn FnMut(&[u8])) {
        super::identity_piece(feed, "setu");
        super::identity_piece(feed, self.base_url);
    }
}
