//! [`OwnedProvider`]: a shipped provider built from run-time strings, with no `'static`
//! borrow and no leak.

use std::fmt;

use tessera_core::{
    AnyProvider, ClientAuth, Credentials, GrantRef, OAuth2, Provider, ProviderKind, Request,
    ResponseError, StoneX,
};

/// The strings an [`OwnedProvider`] owns.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Settings {
    kind: ProviderKind,
    /// The base URL (OAuth 2.0: the whole token URL); `None`: the documented default.
    url: Option<String>,
    auth: ClientAuth,
    scope: Option<String>,
    audience: Option<String>,
    token_path: Option<String>,
}

self_cell::self_cell!(
    struct Cell {
        owner: Settings,
        #[covariant]
        dependent: AnyProvider,
    }
);

/// Any shipped provider, owning its URL and parameters: build one from configuration read
/// at run time and give it to a host client (tessera-std's or tessera-tokio's `Client`),
/// which needs a `'static` provider (its refresh runs in the background). The core provider borrowing these strings is
/// built once and kept beside them.
///
/// ```
/// use tessera_host::OwnedProvider;
/// use tessera_host::core::{ClientAuth, ProviderKind};
///
/// let url: String = "https://idp.example/oauth2/token".into(); // from a config file
/// let idp = OwnedProvider::new(ProviderKind::OAuth2, url)
///     .with_auth(ClientAuth::Body)
///     .with_scope("payments:write");
/// assert_eq!(idp.kind(), ProviderKind::OAuth2);
/// ```
pub struct OwnedProvider {
    cell: Cell,
}

impl OwnedProvider {
    /// The provider of `kind` at `base_url` (OAuth 2.0: the whole token URL), as
    /// [`AnyProvider::new`].
    pub fn new(kind: ProviderKind, base_url: impl Into<String>) -> Self {
        Self::build(Settings {
            kind,
            url: Some(base_url.into()),
            auth: ClientAuth::default(),
            scope: None,
            audience: None,
            token_path: None,
        })
    }

    /// The provider of `kind` at its documented default URL, as
    /// [`AnyProvider::default_for`] (OAuth 2.0 has none: use [`OwnedProvider::new`]).
    pub fn default_for(kind: ProviderKind) -> Self {
        Self::build(Settings {
            kind,
            url: None,
            auth: ClientAuth::default(),
            scope: None,
            audience: None,
            token_path: None,
        })
    }

    /// OAuth 2.0 only: how the client authenticates ([`OAuth2::with_auth`]). The other
    /// APIs fix their own and ignore it.
    pub fn with_auth(self, auth: ClientAuth) -> Self {
        self.change(|s| s.auth = auth)
    }

    /// OAuth 2.0 only: the scope to request ([`OAuth2::with_scope`]). The other APIs take
    /// no scope and ignore it.
    pub fn with_scope(self, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        self.change(|s| s.scope = Some(scope))
    }

    /// OAuth 2.0 only: the audience to send ([`OAuth2::with_audience`]).
    pub fn with_audience(self, audience: impl Into<String>) -> Self {
        let audience = audience.into();
        self.change(|s| s.audience = Some(audience))
    }

    /// StoneX only: a token path other than the documented one ([`StoneX::with_path`]).
    pub fn with_token_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.change(|s| s.token_path = Some(path))
    }

    /// Which provider this is.
    pub fn kind(&self) -> ProviderKind {
        self.cell.borrow_owner().kind
    }

    /// The core provider, borrowing this one's strings (for
    /// a client's `validate`, match its `Shogun` case).
    pub fn provider(&self) -> &AnyProvider<'_> {
        self.cell.borrow_dependent()
    }

    fn change(self, f: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.cell.into_owner();
        f(&mut settings);
        Self::build(settings)
    }

    fn build(settings: Settings) -> Self {
        OwnedProvider {
            cell: Cell::new(settings, |s| {
                let p = match &s.url {
                    Some(url) => AnyProvider::new(s.kind, url),
                    None => AnyProvider::default_for(s.kind),
                };
                match p {
                    AnyProvider::OAuth2(o) => {
                        let mut o: OAuth2<'_> = o.with_auth(s.auth);
                        if let Some(scope) = &s.scope {
                            o = o.with_scope(scope);
                        }
                        if let Some(audience) = &s.audience {
                            o = o.with_audience(audience);
                        }
                        AnyProvider::OAuth2(o)
                    }
                    AnyProvider::StoneX(x) => {
                        let x: StoneX<'_> = match &s.token_path {
                            Some(path) => x.with_path(path),
                            None => x,
                        };
                        AnyProvider::StoneX(x)
                    }
                    other => other,
                }
            }),
        }
    }
}

impl Clone for OwnedProvider {
    fn clone(&self) -> Self {
        Self::build(self.cell.borrow_owner().clone())
    }
}

impl fmt::Debug for OwnedProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.cell.borrow_dependent(), f)
    }
}

impl Provider for OwnedProvider {
    fn token_request<'a>(
        &'a self,
        credentials: &Credentials,
        buf: &'a mut [u8],
    ) -> Result<Request<'a>, tessera_core::Error> {
        self.cell.borrow_dependent().token_request(credentials, buf)
    }

    fn parse_token<'b>(
        &self,
        status: u16,
        body: &'b [u8],
    ) -> Result<GrantRef<'b>, ResponseError<'b>> {
        self.cell.borrow_dependent().parse_token(status, body)
    }

    fn identity(&self, feed: &mut dyn FnMut(&[u8])) {
        self.cell.borrow_dependent().identity(feed)
    }
}
