//! StoneX: `POST {base}/api/v/authentication` with `{"client_id","client_secret"}`.
//!
//! | response | meaning |
//! |---|---|
//! | 200 `{"token_type":"Bearer","expires_in":3600,"access_token":…,"scope":"client_credentials"}` | grant (no envelope) |
//! | errors | undocumented: read as OAuth 2.0 (`error`, `error_description`), else by status |
//!
//! The documented path `/api/v/authentication` looks truncated, so both the base URL and the
//! path can be replaced.

use crate::codec;
use crate::credentials::Credentials;
use crate::error::{Error, ResponseError};
use crate::grant::GrantRef;
use crate::request::{Request, Url};

use super::oauth2::OAUTH_SCHEMA;
use super::Provider;

/// StoneX's sandbox.
pub const STONEX_SANDBOX_URL: &str = "https://api.sandbox.payments.stonex.com";
/// The token path as documented.
pub const STONEX_TOKEN_PATH: &str = "/api/v/authentication";

/// The StoneX payments API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StoneX<'a> {
    base_url: &'a str,
    path: &'a str,
}

impl StoneX<'static> {
    /// StoneX's sandbox with the documented path.
    pub const fn sandbox() -> Self {
        StoneX {
            base_url: STONEX_SANDBOX_URL,
            path: STONEX_TOKEN_PATH,
        }
    }
}

impl<'a> StoneX<'a> {
    /// StoneX at another base URL, with the documented path.
    pub const fn with_base_url(base_url: &'a str) -> Self {
        StoneX {
            base_url,
            path: STONEX_TOKEN_PATH,
        }
    }

    /// The same, with another token path.
    pub const fn with_path(self, path: &'a str) -> Self {
        StoneX {
            base_url: self.base_url,
            path,
        }
    }
}

impl Provider for StoneX<'_> {
    fn token_request<'a>(
        &'a self,
        credentials: &Credentials,
        buf: &'a mut [u8],
    ) -> Result<Request<'a>, Error> {
        let url = Url {
            base: self.base_url,
            path: self.path,
        };
        codec::json_credentials_request(url, "client_id", "client_secret", credentials, buf)
    }

    fn parse_token<'b>(
        &self,
        status: u16,
        body: &'b [u8],
    ) -> Result<GrantRef<'b>, ResponseError<'b>> {
        codec::parse_grant(&OAUTH_SCHEMA, status, body)
    }

    fn identity(&self, feed: &mut dyn FnMut(&[u8])) {
        super::identity_piece(feed, "stonex");
        super::identity_piece(feed, self.base_url);
        super::identity_piece(feed, self.path);
    }
}
