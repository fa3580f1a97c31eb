//! Downstream calls with the bearer token written into the call's own buffers, and the
//! 401 rule.

use super::*;

impl<'r, M, P, N, C, const TOKEN: usize, const REFRESH: usize>
    Client<'r, M, P, N, C, TOKEN, REFRESH>
where
    M: RawMutex,
    P: Provider,
    N: Connector<'r>,
    C: Clock,
{
    /// Reports token `id` rejected by a downstream API (a 401): dropped if it is still the
    /// cached one, so the next [`Client::token`] fetches a new one. Whether it was.
    pub fn reject(&self, id: TokenId) -> bool {
        self.with(|s| {
            let dropped = s.session.reject(id);
            if dropped {
                s.refresher.nudge();
            }
            dropped
        })
    }

    /// Sends a downstream call with the bearer token written straight into `buffers` (no
    /// other copy), plus the request's extra headers. On a first 401 the token is reported
    /// rejected, a new one is fetched once and the call is sent once more.
    ///
    /// An `http://` URL whose host is not loopback is refused before connecting unless
    /// the settings allow insecure HTTP. An `https://` one goes through the client's
    /// connector: `Mbedtls` or `EmbeddedTls` (a [`Plain`](crate::Plain) client refuses it,
    /// stage `tls`, before sending anything).
    ///
    /// `buffers` stay the caller's (a task's local, or a `StaticCell`): the response
    /// borrows them while it is read, and concurrent calls never wait for each other's.
    pub async fn call<'b, const HEAD: usize, const BODY: usize>(
        &self,
        request: ApiRequest<'_>,
        buffers: &'b mut CallBuffers<HEAD, BODY>,
    ) -> Result<ApiResponse<'b>, Error> {
        let CallBuffers { head, body } = buffers;
        let body: &'b mut [u8] = body;
        check_url(request.url, self.allow_insecure_http).map_err(Error::Core)?;
        if request.headers.len() > MAX_EXTRA_HEADERS {
            return Err(Error::Core(tessera_core::Error::Capacity {
                field: "request headers",
                needed: request.headers.len(),
                capacity: MAX_EXTRA_HEADERS,
            }));
        }
        // Sent again on a new connection if a kept one is found closed: only when repeating
        // it is harmless (issue: a payment never reaches the API twice without its key).
        let safe = tessera_core::transport::may_send_again(
            request.method.as_str(),
            request.headers.iter().map(|(name, _)| *name),
        );
        let mut rule = Downstream::new();
        let head = Wipe(head);
        let done = loop {
            let (id, auth) = self
                .bearer(|b| (b.id(), bearer_header(b.token(), head.0).map(str::len)))
                .await?;
            let auth = auth.map_err(Error::Core)?;
            let (auth, rx) = head.0.split_at_mut(auth);
            let auth = utf8(Some(auth));
            let mut list: heapless::Vec<(&str, &str), { MAX_EXTRA_HEADERS + 2 }> =
                heapless::Vec::new();
            let _ = list.push(("Authorization", auth));
            if let Some((ct, _)) = request.body {
                let _ = list.push(("Content-Type", ct));
            }
            for h in request.headers {
                // Room checked above.
                let _ = list.push(*h);
            }
            let out = Outgoing {
                method: request.method,
                url: request.url,
                headers: &list,
                body: request.body.map_or(&[][..], |(_, b)| b),
            };
            let x = self
                .send(out, rx, body, true, safe)
                .await
                .map_err(Error::from)?;
            self.with(|s| s.stats.count(x.connection));
            match rule.after(x.status) {
                AfterCall::Done => break x,
                AfterCall::RejectAndRetry => {
                    diag!(
                        debug,
                        "tessera: 401 from a call: token rejected, fetching a new one"
                    );
                    self.reject(id);
                }
            }
        };
        drop(head);
        let body: &'b [u8] = body;
        let (kept, rest) = body.split_at(done.kept.min(body.len()));
        Ok(ApiResponse::new(
            done.status,
            done.connection,
            kept,
            rest.get(..done.body_len).unwrap_or_default(),
        ))
    }

    /// Asks Shogun's validate endpoint about the current token, into `info`. It is a
    /// [`Client::call`]: a 401 (the token is dead) rejects the token, fetches a new one
    /// once and asks once more.
    pub async fn validate<const HEAD: usize, const BODY: usize>(
        &self,
        shogun: &tessera_core::Shogun<'_>,
        buffers: &mut CallBuffers<HEAD, BODY>,
        info: &mut tessera_core::TokenInfo,
    ) -> Result<(), Error> {
        let mut url: heapless::String<512> = heapless::String::new();
        shogun
            .validate_url()
            .write_into(&mut url)
            .map_err(Error::Core)?;
        let response = self.call(ApiRequest::get(&url), buffers).await?;
        match shogun.parse_validate(response.status(), response.body()) {
            Ok(r) => info.store(&r).map_err(Error::Core),
            Err(e) => Err(Error::Token {
                kind: e.kind(),
                retry_at: None,
                transport: None,
            }),
        }
    }
}
