//! Downstream calls with the bearer token: [`Client::call`] and [`Client::validate`].

use tessera_core::session::{Cause, Failure};
use tessera_core::transport::{check_url, AfterCall, Downstream};
use tessera_core::{Provider, Shogun, TokenInfo};
use ureq::http;
use zeroize::{Zeroize, Zeroizing};

use crate::client::Client;
use crate::error::{BodyError, Error};
use crate::token::Token;
use crate::wire::{read_body, to_http};

impl<P: Provider + Send + 'static, const TOKEN: usize, const REFRESH: usize>
    Client<P, TOKEN, REFRESH>
{
    /// Sends `request` to a downstream API with `Authorization: Bearer <token>` added (it
    /// replaces any `Authorization` the request had), and returns the response with its
    /// headers and its body (at most [`Options::max_body`](crate::Options) bytes).
    ///
    /// Every other header is sent as given. On a 401 the token is reported rejected, a new
    /// one is fetched once and the call is sent once more (so give an idempotency key to a
    /// call that must not run twice; the retry sends the same one). A second 401 is
    /// returned as the response.
    ///
    /// The URL must be `https://`, or `http://` to a loopback host (or any host with
    /// [`allow_insecure_http`](tessera_core::session::Config::allow_insecure_http)): a
    /// bearer token is a secret. Otherwise [`Error::Insecure`], before any connection.
    pub fn call<B: AsRef<[u8]>>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<Vec<u8>>, Error> {
        let (parts, body) = request.into_parts();
        check_url(
            &parts.uri.to_string(),
            self.inner.options.session.allow_insecure_http,
        )
        .map_err(refused)?;
        let mut rule = Downstream::new();
        loop {
            let token = self.token()?;
            let mut request = http::Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone())
                .version(parts.version)
                .body(body.as_ref())
                .map_err(|e| Error::from_ureq(ureq::Error::Http(e)))?;
            *request.headers_mut() = parts.headers.clone();
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, bearer(&token)?);
            let mut response = self.inner.http.run(request).map_err(Error::from_ureq)?;
            match rule.after(response.status().as_u16()) {
                AfterCall::Done => {
                    let body = read_body(&mut response, self.inner.options.max_body)
                        .map_err(|e| self.body_error(e))?;
                    let (parts, _) = response.into_parts();
                    return Ok(http::Response::from_parts(parts, body));
                }
                AfterCall::RejectAndRetry => {
                    debug!(
                        "tessera: 401 from a downstream call: token rejected, fetching a new one"
                    );
                    self.reject(&token);
                }
            }
        }
    }

    /// Asks Shogun's validate endpoint about the current token. A 401 there means the token
    /// is dead: it is rejected, a new one fetched, and the question asked once more (the
    /// same rule as [`Client::call`]).
    pub fn validate(&self, shogun: &Shogun<'_>) -> Result<TokenInfo, Error> {
        let mut rule = Downstream::new();
        loop {
            let token = self.token()?;
            let mut buf = Zeroizing::new(vec![0u8; token.as_str().len() + 16]);
            let request = shogun
                .validate_request(token.as_str(), &mut buf)
                .map_err(Error::Core)?;
            request
                .check_security(self.inner.options.session.allow_insecure_http)
                .map_err(refused)?;
            let sent = to_http(&request, request.body)
                .map_err(|e| Error::from_ureq(ureq::Error::Http(e)))
                .and_then(|r| self.inner.http.run(r).map_err(Error::from_ureq));
            buf.zeroize();
            let mut response = sent?;
            let status = response.status().as_u16();
            let body = Zeroizing::new(
                read_body(&mut response, self.inner.options.max_body)
                    .map_err(|e| self.body_error(e))?,
            );
            if rule.after(status) == AfterCall::RejectAndRetry {
                debug!("tessera: 401 from validate: token rejected, fetching a new one");
                self.reject(&token);
                continue;
            }
            return match shogun.parse_validate(status, &body) {
                Ok(r) => {
                    let mut info = TokenInfo::default();
                    info.store(&r).map_err(Error::Core)?;
                    Ok(info)
                }
                Err(e) => {
                    // Shogun's validate errors may quote the token they were asked about.
                    Err(Error::Token {
                        failure: Box::new(Failure {
                            cause: Cause::Response(e.to_report_carrying(token.as_str())),
                            at: self.inner.clock.now(),
                        }),
                        retry_in: None,
                        source: None,
                    })
                }
            };
        }
    }

    fn body_error(&self, e: BodyError) -> Error {
        match e {
            BodyError::TooLarge => Error::BodyTooLarge {
                limit: self.inner.options.max_body,
            },
            BodyError::Network(e) => Error::from_ureq(e),
        }
    }
}

/// A URL the core refused: [`Error::Insecure`] for plaintext off the machine, the core's
/// own error (which names what was wrong) for a URL that does not parse.
fn refused(e: tessera_core::Error) -> Error {
    match e {
        tessera_core::Error::Insecure => Error::Insecure,
        e => Error::Core(e),
    }
}

/// `Bearer <token>`, marked sensitive (never printed by `http`'s `Debug`).
fn bearer(token: &Token) -> Result<http::HeaderValue, Error> {
    let mut text = Zeroizing::new(String::with_capacity(7 + token.as_str().len()));
    text.push_str("Bearer ");
    text.push_str(token.as_str());
    let mut value = http::HeaderValue::from_str(&text)
        .map_err(|e| Error::from_ureq(ureq::Error::Http(e.into())))?;
    value.set_sensitive(true);
    Ok(value)
}
