//! APIMW: `POST {base}/v1/auth/token` with `{"api_key","api_secret"}`.
//!
//! | response | meaning |
//! |---|---|
//! | 200 `{"success":true,"data":{"access_token","token_type","expires_in","refresh_token"}}` | grant |
//! | 401 `{"success":false,"error":{"code":"INVALID_CREDENTIALS","message"}}` | invalid credentials |
//!
//! The only provider that returns a `refresh_token`. No refresh endpoint is documented, so the
//! grant keeps and exposes it and Tessera never invents a call that uses it. Its examples are
//! PHP, which escapes `/` as `\/`: every string is fully JSON-decoded.

use crate::codec::{self, Schema};
use crate::credentials::Credentials;
use crate::error::{Error, ResponseError};
use crate::grant::GrantRef;
use crate::request::{Request, Url};

use super::Provider;

/// APIMW's documented base URL.
pub const APIMW_BASE_URL: &str = "https://api.apimw.com";
const TOKEN_PATH: &str = "/v1/auth/token";

const SCHEMA: Schema = Schema {
    data: Some("data"),
    access_token: "access_token",
    expires_in: "expires_in",
    token_type: Some("token_type"),
    refresh_token: Some("refresh_token"),
    scope: None,
    client_id: None,
    invalid_credential_codes: &["INVALID_CREDENTIALS"],
};

/// The APIMW API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Apimw<'a> {
    base_url: &'a str,
}

impl Apimw<'static> {
    /// APIMW at its documented base URL.
    pub const fn new() -> Self {
        Apimw {
            base_url: APIMW_BASE_URL,
        }
    }
}

impl Default for Apimw<'static> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Apimw<'a> {
    /// APIMW at another base URL.
    pub const fn with_base_url(base_url: &'a str) -> Self {
        Apimw { base_url }
    }
}

impl Provider for Apimw<'_> {
    fn token_request<'a>(
        &'a self,
        credentials: &Credentials,
        buf: &'a mut [u8],
    ) -> Result<Request<'a>, Error> {
        let url = Url {
            base: self.base_url,
            path: TOKEN_PATH,
        };
        codec::json_credentials_request(url, "api_key", "api_secret", credentials, buf)
    }

    fn parse_token<'b>(
        &self,
        status: u16,
        body: &'b [u8],
    ) -> Result<GrantRef<'b>, ResponseError<'b>> {
        codec::parse_grant(&SCHEMA, status, body)
    }

    fn identity(&self, feed: &mut dyn FnMut(&[u8])) {
        super::identity_piece(feed, "apimw");
        super::identity_piece(feed, self.base_url);
    }
}
