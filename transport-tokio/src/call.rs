//! Downstream calls with the bearer token: [`Client::call`] and [`Client::validate`].

use tessera_core::session::{Cause, Failure};
use tessera_core::transport::{check_url, AfterCall, Downstream};
use tessera_core::{Provider, Shogun, TokenInfo};
use tessera_host::Token;
use zeroize::{Zeroize, Zeroizing};

use crate::client::Client;
use crate::error::Error;
use crate::http::{read_body, BodyError};

impl<P: Provider + Send + 'static, const TOKEN: usize, const REFRESH: usize>
    Client<P, TOKEN, REFRESH>
{
    /// Sends `request` to a downstream API with `Authorization: Bearer <token>` added (it
    /// replaces any `Authorization` the request had) and returns the response, its body
    /// unread (stream it, or read it with the limit you choose).
    ///
    /// Every other header is sent as given. On a 401 the token is reported rejected, a new
    /// one is fetched once and the call is sent once more (so give an idempotency key to a
    /// call that must not run twice; the retry sends the same one). A second 401 is
    /// returned as the response. A request whose body cannot be replayed (a stream) is
    /// sent once: its 401 is returned.
    ///
    /// The URL must be `https://`, or `http://` to a loopback host (or any host with
    /// [`allow_insecure_http`](tessera_core::session::Config::allow_insecure_http)): a
    /// bearer token is a secret. Otherwise [`Error::Insecure`], before any connection.
    /// Redirects are never followed (a 3xx is returned as it is).
    pub async fn call(&self, request: reqwest::Request) -> Result<reqwest::Response, Error> {
        check_url(
            request.url().as_str(),
            self.inner.options.session.allow_insecure_http,
        )
        .map_err(refused)?;
        let mut rule = Downstream::new();
        let mut request = request;
        loop {
            let token = self.token().await?;
            // The copy for a retry, made before this one is sent (none for a stream).
            let again = request.try_clone();
            let response = self.send(request, &token).await?;
            match (rule.after(response.status().as_u16()), again) {
                (AfterCall::RejectAndRetry, Some(again)) => {
                    debug!(
                        "tessera: 401 from a downstream call: token rejected, fetching a new one"
                    );
                    self.reject_and_discard(&token).await;
                    request = again;
                }
                _ => return Ok(response),
            }
        }
    }

    /// A request builder on this client's own reqwest client (its trust roots, timeouts and
    /// proxy rule), for [`Client::call`]: `client.call(client.request(Method::POST,
    /// url).body(…).build()?)`. Any `reqwest::Request` works with `call`; this one needs no
    /// reqwest client of the application's (nor a rustls crypto provider installed for
    /// one).
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        // A URL that does not parse is reported by reqwest when the request is built.
        let https = url
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("https:"));
        self.inner.http.client(https).request(method, url)
    }

    /// Sends `request` with `token` as its bearer, on the client its scheme calls for.
    pub(crate) async fn send(
        &self,
        mut request: reqwest::Request,
        token: &Token,
    ) -> Result<reqwest::Response, Error> {
        request
            .headers_mut()
            .insert(reqwest::header::AUTHORIZATION, bearer(token)?);
        self.inner
            .http
            .execute(request)
            .await
            .map_err(Error::from_send)
    }

    /// Asks Shogun's validate endpoint about the current token. A 401 there means the token
    /// is dead: it is rejected, a new one fetched, and the question asked once more (the
    /// same rule as [`Client::call`]).
    pub async fn validate(&self, shogun: &Shogun<'_>) -> Result<TokenInfo, Error> {
        let mut rule = Downstream::new();
        loop {
            let token = self.token().await?;
            let request = {
                let mut buf = Zeroizing::new(vec![0u8; token.as_str().len() + 16]);
                let request = shogun
                    .validate_request(token.as_str(), &mut buf)
                    .map_err(Error::Core)?;
                request
                    .check_security(self.inner.options.session.allow_insecure_http)
                    .map_err(refused)?;
                let url = reqwest::Url::parse(&request.url.to_string()).map_err(|_| {
                    Error::Core(tessera_core::Error::Malformed {
                        field: Some("url"),
                        problem: tessera_core::Problem::Syntax,
                    })
                })?;
                let method = reqwest::Method::from_bytes(request.method.as_str().as_bytes())
                    .unwrap_or(reqwest::Method::GET);
                let mut out = reqwest::Request::new(method, url);
                // Exactly the core's headers but the bearer, which `send` adds.
                for (name, value) in request.headers() {
                    if name.eq_ignore_ascii_case("authorization") {
                        continue;
                    }
                    if let (Ok(n), Ok(v)) = (
                        reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                        reqwest::header::HeaderValue::from_str(value),
                    ) {
                        out.headers_mut().append(n, v);
                    }
                }
                buf.zeroize();
                out
            };
            let response = self.send(request, &token).await?;
            let status = response.status().as_u16();
            let body = read_body(response, self.inner.options.max_body)
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge => Error::BodyTooLarge {
                        limit: self.inner.options.max_body,
                    },
                    BodyError::Network(e) => Error::from_reqwest(e),
                })?;
            if rule.after(status) == AfterCall::RejectAndRetry {
                debug!("tessera: 401 from validate: token rejected, fetching a new one");
                self.reject_and_discard(&token).await;
                continue;
            }
            return match shogun.parse_validate(status, &body) {
                Ok(r) => {
                    let mut info = TokenInfo::default();
                    info.store(&r).map_err(Error::Core)?;
                    Ok(info)
                }
                Err(e) => Err(Error::Token {
                    failure: Box::new(Failure {
                        // Shogun's validate errors may quote the token they were asked about.
                        cause: Cause::Response(e.to_report_carrying(token.as_str())),
                        at: self.inner.clock.now(),
                    }),
                    retry_in: None,
                    source: None,
                }),
            };
        }
    }
}

/// A URL the core refused: [`Error::Insecure`] for plaintext off the machine, the core's
/// own error (which names what was wrong) for a URL it does not accept.
pub(crate) fn refused(e: tessera_core::Error) -> Error {
    match e {
        tessera_core::Error::Insecure => Error::Insecure,
        e => Error::Core(e),
    }
}

/// `Bearer <token>`, marked sensitive (never printed by `http`'s `Debug`).
pub(crate) fn bearer(token: &Token) -> Result<reqwest::header::HeaderValue, Error> {
    let mut text = Zeroizing::new(String::with_capacity(7 + token.as_str().len()));
    text.push_str("Bearer ");
    text.push_str(token.as_str());
    let mut value = reqwest::header::HeaderValue::from_str(&text).map_err(|_| {
        Error::Core(tessera_core::Error::Malformed {
            field: Some("access_token"),
            problem: tessera_core::Problem::Syntax,
        })
    })?;
    value.set_sensitive(true);
    Ok(value)
}
