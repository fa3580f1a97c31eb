//! The provider codecs, behind one trait so applications can add their own.

mod apimw;
mod oauth2;
mod setu;
mod shogun;
mod stonex;

pub use apimw::{Apimw, APIMW_BASE_URL};
pub use oauth2::{ClientAuth, OAuth2};
pub use setu::{Setu, SETU_PRODUCTION_URL, SETU_SANDBOX_URL};
pub use shogun::{Shogun, SHOGUN_BASE_URL};
pub use stonex::{StoneX, STONEX_SANDBOX_URL, STONEX_TOKEN_PATH};

use core::fmt;
use core::str::FromStr;

use crate::credentials::Credentials;
use crate::error::{Error, ResponseError};
use crate::grant::GrantRef;
use crate::request::Request;

/// One token API: how to ask for a token and how to read the answer.
///
/// Implement it for a provider Tessera does not ship; [`crate::codec`] has the building
/// blocks (`json_credentials_request`, a [`crate::codec::Schema`]-driven `parse_grant`).
pub trait Provider {
    /// Builds the token request. The body (and any `Authorization` value) is written into
    /// `buf`; a buffer too small is [`Error::Capacity`] with the bytes needed.
    fn token_request<'a>(
        &'a self,
        credentials: &Credentials,
        buf: &'a mut [u8],
    ) -> Result<Request<'a>, Error>;

    /// Reads the token endpoint's response (HTTP status and body) into a borrowed grant or
    /// a classified error.
    fn parse_token<'b>(
        &self,
        status: u16,
        body: &'b [u8],
    ) -> Result<GrantRef<'b>, ResponseError<'b>>;

    /// Feeds `feed` everything besides the credentials that decides which token this
    /// provider issues: which API it is, its token endpoint, and parameters such as scope,
    /// audience or client authentication. [Snapshots](crate::snapshot) are bound to it, so a
    /// token saved for one endpoint or scope is never restored for another.
    ///
    /// Feed each piece through [`identity_piece`] (length-prefixed, so pieces cannot run
    /// together). The default feeds nothing: a provider that keeps it binds its snapshots to
    /// the credentials alone. Every shipped provider overrides it.
    fn identity(&self, feed: &mut dyn FnMut(&[u8])) {
        let _ = feed;
    }
}

/// Feeds one piece of a [`Provider::identity`], length-prefixed.
pub fn identity_piece(feed: &mut dyn FnMut(&[u8]), piece: &str) {
    let len = u32::try_from(piece.len()).unwrap_or(u32::MAX);
    feed(&len.to_le_bytes());
    feed(piece.as_bytes());
}

impl<P: Provider + ?Sized> Provider for &P {
    fn token_request<'a>(
        &'a self,
        credentials: &Credentials,
        buf: &'a mut [u8],
    ) -> Result<Request<'a>, Error> {
        (**self).token_request(credentials, buf)
    }

    fn parse_token<'b>(
        &self,
        status: u16,
        body: &'b [u8],
    ) -> Result<GrantRef<'b>, ResponseError<'b>> {
        (**self).parse_token(status, body)
    }

    fn identity(&self, feed: &mut dyn FnMut(&[u8])) {
        (**self).identity(feed)
    }
}

/// The providers Tessera ships, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProviderKind {
    /// [`Shogun`]
    Shogun,
    /// [`Apimw`]
    Apimw,
    /// [`Setu`]
    Setu,
    /// [`StoneX`]
    StoneX,
    /// [`OAuth2`]
    OAuth2,
}

impl ProviderKind {
    /// Every kind, in documentation order.
    pub const ALL: [ProviderKind; 5] = [
        ProviderKind::Shogun,
        ProviderKind::Apimw,
        ProviderKind::Setu,
        ProviderKind::StoneX,
        ProviderKind::OAuth2,
    ];

    /// The lowercase name: `shogun`, `apimw`, `setu`, `stonex`, `oauth2`.
    pub const fn name(self) -> &'static str {
        match self {
            ProviderKind::Shogun => "shogun",
            ProviderKind::Apimw => "apimw",
            ProviderKind::Setu => "setu",
            ProviderKind::StoneX => "stonex",
            ProviderKind::OAuth2 => "oauth2",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownProvider;

impl fmt::Display for UnknownProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown provider (expected shogun, apimw, setu, stonex or oauth2)")
    }
}

impl FromStr for ProviderKind {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or(UnknownProvider)
    }
}

/// Any shipped provider, chosen at run time (from configuration or a command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyProvider<'a> {
    /// Shogun.
    Shogun(Shogun<'a>),
    /// APIMW.
    Apimw(Apimw<'a>),
    /// Setu.
    Setu(Setu<'a>),
    /// StoneX.
    StoneX(StoneX<'a>),
    /// Standard OAuth 2.0 client credentials.
    OAuth2(OAuth2<'a>),
}

impl<'a> AnyProvider<'a> {
    /// The provider of `kind` at `base_url` (for OAuth 2.0: the full token URL), with its
    /// defaults otherwise.
    pub const fn new(kind: ProviderKind, base_url: &'a str) -> Self {
        match kind {
            ProviderKind::Shogun => AnyProvider::Shogun(Shogun::with_base_url(base_url)),
            ProviderKind::Apimw => AnyProvider::Apimw(Apimw::with_base_url(base_url)),
            ProviderKind::Setu => AnyProvider::Setu(Setu::with_base_url(base_url)),
            ProviderKind::StoneX => AnyProvider::StoneX(StoneX::with_base_url(base_url)),
            ProviderKind::OAuth2 => AnyProvider::OAuth2(OAuth2::new(base_url)),
        }
    }

    /// The provider of `kind` at its documented default URL (sandbox where there is one).
    /// OAuth 2.0 has no default and gets an empty token URL: use [`AnyProvider::new`].
    pub const fn default_for(kind: ProviderKind) -> AnyProvider<'static> {
        match kind {
            ProviderKind::Shogun => AnyProvider::Shogun(Shogun::new()),
            ProviderKind::Apimw => AnyProvider::Apimw(Apimw::new()),
            ProviderKind::Setu => AnyProvider::Setu(Setu::sandbox()),
            ProviderKind::StoneX => AnyProvider::StoneX(StoneX::sandbox()),
            ProviderKind::OAuth2 => AnyProvider::OAuth2(OAuth2::new("")),
        }
    }

    /// Which provider this is.
    pub const fn kind(&self) -> ProviderKind {
        match self {
            AnyProvider::Shogun(_) => ProviderKind::Shogun,
            AnyProvider::Apimw(_) => ProviderKind::Apimw,
            AnyProvider::Setu(_) => ProviderKind::Setu,
            AnyProvider::StoneX(_) => ProviderKind::StoneX,
            AnyProvider::OAuth2(_) => ProviderKind::OAuth2,
        }
    }

    fn inner(&self) -> &dyn DynProvider {
        match self {
            AnyProvider::Shogun(p) => p,
            AnyProvider::Apimw(p) => p,
            AnyProvider::Setu(p) => p,
            AnyProvider::StoneX(p) => p,
            AnyProvider::OAuth2(p) => p,
        }
    }
}

/// Object-safe view of [`Provider`] for [`AnyProvider`]'s dispatch.
trait DynProvider {
    fn request<'a>(&'a self, c: &Credentials, buf: &'a mut [u8]) -> Result<Request<'a>, Error>;
    fn parse<'b>(&self, status: u16, body: &'b [u8]) -> Result<GrantRef<'b>, ResponseError<'b>>;
    fn id(&self, feed: &mut dyn FnMut(&[u8]));
}

impl<P: Provider> DynProvider for P {
    fn request<'a>(&'a self, c: &Credentials, buf: &'a mut [u8]) -> Result<Request<'a>, Error> {
        self.token_request(c, buf)
    }

    fn parse<'b>(&self, status: u16, body: &'b [u8]) -> Result<GrantRef<'b>, ResponseError<'b>> {
        self.parse_token(status, body)
    }

    fn id(&self, feed: &mut dyn FnMut(&[u8])) {
        self.identity(feed)
    }
}

impl Provider for AnyProvider<'_> {
    fn token_request<'a>(
        &'a self,
        credentials: &Credentials,
        buf: &'a mut [u8],
    ) -> Result<Request<'a>, Error> {
        self.inner().request(credentials, buf)
    }

    fn parse_token<'b>(
        &self,
        status: u16,
        body: &'b [u8],
    ) -> Result<GrantRef<'b>, ResponseError<'b>> {
        self.inner().parse(status, body)
    }

    fn identity(&self, feed: &mut dyn FnMut(&[u8])) {
        self.inner().id(feed)
    }
}
