//! [`TokenLayer`]: tokens, the 401 rule and the plaintext refusal for an existing
//! `reqwest_middleware::ClientWithMiddleware`.

use http::Extensions;
use reqwest_middleware::{Middleware, Next};
use tessera_core::transport::{check_url, AfterCall, Downstream};
use tessera_core::Provider;

use crate::call::{bearer, refused};
use crate::{Client, Error};

/// A `reqwest_middleware` layer that adds `Authorization: Bearer …` from a [`Client`] to
/// every request, answers a first 401 by rejecting the token, fetching once and sending once
/// more (only when the request's body can be replayed), and refuses a request that would
/// carry the token in plaintext off the machine before it reaches the next layer.
///
/// ```no_run
/// use tessera_tokio::{Client, OwnedProvider, TokenLayer};
/// use tessera_tokio::core::{Credentials, ProviderKind};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let idp = OwnedProvider::new(ProviderKind::OAuth2, "https://idp.example/oauth2/token");
/// let tokens = Client::new(idp, Credentials::new("pos-api", "s3cr3t")?)?;
/// let api = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(TokenLayer::new(tokens))
///     .build();
/// let response = api.get("https://api.example/v1/balance").send().await?;
/// # Ok(())
/// # }
/// ```
///
/// The token request itself goes through the [`Client`]'s own HTTP stack (its trust roots,
/// timeouts and proxy rule), never through the middleware chain. The layer does not choose
/// how the inner client sends: give it one that follows no redirects
/// (`redirect(Policy::none())`) and, for a plaintext loopback sandbox, no proxy, as
/// tessera's own clients do.
pub struct TokenLayer<P, const TOKEN: usize, const REFRESH: usize> {
    client: Client<P, TOKEN, REFRESH>,
}

impl<P, const TOKEN: usize, const REFRESH: usize> TokenLayer<P, TOKEN, REFRESH> {
    /// A layer taking its tokens from `client` (a clone shares the token).
    pub fn new(client: Client<P, TOKEN, REFRESH>) -> Self {
        TokenLayer { client }
    }
}

impl<P: std::fmt::Debug, const TOKEN: usize, const REFRESH: usize> std::fmt::Debug
    for TokenLayer<P, TOKEN, REFRESH>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenLayer")
            .field("client", &self.client)
            .finish()
    }
}

fn refuse(e: Error) -> reqwest_middleware::Error {
    reqwest_middleware::Error::middleware(e)
}

#[async_trait::async_trait]
impl<P, const TOKEN: usize, const REFRESH: usize> Middleware for TokenLayer<P, TOKEN, REFRESH>
where
    P: Provider + Send + Sync + 'static,
{
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let allow = self.client.options().session.allow_insecure_http;
        check_url(request.url().as_str(), allow).map_err(|e| refuse(refused(e)))?;
        let mut rule = Downstream::new();
        let mut request = request;
        loop {
            let token = self.client.token().await.map_err(refuse)?;
            let again = request.try_clone();
            request.headers_mut().insert(
                reqwest::header::AUTHORIZATION,
                bearer(&token).map_err(refuse)?,
            );
            let response = next.clone().run(request, extensions).await?;
            match (rule.after(response.status().as_u16()), again) {
                (AfterCall::RejectAndRetry, Some(again)) => {
                    debug!(
                        "tessera: 401 through the middleware: token rejected, fetching a new one"
                    );
                    self.client.reject_and_discard(&token).await;
                    request = again;
                }
                _ => return Ok(response),
            }
        }
    }
}
