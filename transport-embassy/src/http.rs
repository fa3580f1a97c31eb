//! One HTTP exchange on the wire (reqwless over embedded-nal-async), bounded by a timeout,
//! with every failure classified; and the downstream request and response types.

use core::fmt;

use embassy_time::{with_timeout, Duration};
use embedded_nal_async::{Dns, TcpConnect};
use reqwless::client::HttpClient;
use reqwless::request::{Method as HttpMethod, RequestBuilder};
use tessera_core::transport::{body_too_large, retry_after};
use tessera_core::Method;

use crate::error::{classify, Fault, Phase, TIMED_OUT};

/// How many extra headers a downstream call may carry.
pub const MAX_EXTRA_HEADERS: usize = 8;

/// A downstream request for [`Client::call`](crate::Client::call): method, URL, extra
/// headers and body. The bearer token is added by the client.
///
/// ```
/// use tessera_embassy::ApiRequest;
/// let headers = [("Idempotency-Key", "7f3c-0042")];
/// let pay = ApiRequest::post("https://api.example/v1/payments", "application/json", b"{}")
///     .headers(&headers);
/// let status = ApiRequest::get("https://api.example/v1/status");
/// # let _ = (pay, status);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ApiRequest<'r> {
    /// `GET` or `POST`.
    pub method: Method,
    /// The whole URL. An `http://` URL whose host is not loopback is refused (a bearer token
    /// is a secret) unless the settings allow insecure HTTP.
    pub url: &'r str,
    /// Extra request headers (`Idempotency-Key`, …), at most [`MAX_EXTRA_HEADERS`].
    pub headers: &'r [(&'r str, &'r str)],
    /// Content type and body, for a `POST`.
    pub body: Option<(&'r str, &'r [u8])>,
}

impl<'r> ApiRequest<'r> {
    /// A `GET` of `url`.
    pub const fn get(url: &'r str) -> Self {
        ApiRequest {
            method: Method::Get,
            url,
            headers: &[],
            body: None,
        }
    }

    /// A `POST` of `body` (of media type `content_type`) to `url`.
    pub const fn post(url: &'r str, content_type: &'r str, body: &'r [u8]) -> Self {
        ApiRequest {
            method: Method::Post,
            url,
            headers: &[],
            body: Some((content_type, body)),
        }
    }

    /// With extra request headers.
    pub const fn headers(mut self, headers: &'r [(&'r str, &'r str)]) -> Self {
        self.headers = headers;
        self
    }
}

/// A downstream response, borrowing the call's [`CallBuffers`](crate::CallBuffers).
#[derive(Clone, Copy)]
pub struct ApiResponse<'b> {
    status: u16,
    /// `name:value\n` lines, names lowercased.
    head: &'b str,
    body: &'b [u8],
}

impl<'b> ApiResponse<'b> {
    pub(crate) fn new(status: u16, head: &'b [u8], body: &'b [u8]) -> Self {
        ApiResponse {
            status,
            head: core::str::from_utf8(head).unwrap_or_default(),
            body,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body.
    pub fn body(&self) -> &'b [u8] {
        self.body
    }

    /// The first value of header `name` (any case). Headers whose value is not UTF-8 are
    /// not kept.
    pub fn header(&self, name: &str) -> Option<&'b str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header kept, in order, names lowercased.
    pub fn headers(&self) -> impl Iterator<Item = (&'b str, &'b str)> + 'b {
        self.head.lines().filter_map(|l| l.split_once(':'))
    }
}

impl fmt::Debug for ApiResponse<'_> {
    /// Status, header names and body length: the values may carry anything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .field("headers", &format_args!("{} kept", self.headers().count()))
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// The network stack and the bound on one exchange.
pub(crate) struct Wire<'a, T, D> {
    pub(crate) tcp: &'a T,
    pub(crate) dns: &'a D,
    pub(crate) timeout: Duration,
}

/// What TLS a connection needs: the CA, a fresh seed and the record buffers.
#[cfg(feature = "tls")]
pub(crate) struct TlsConn<'a> {
    pub(crate) ca: &'a [u8],
    pub(crate) seed: u64,
    pub(crate) read: &'a mut [u8],
    pub(crate) write: &'a mut [u8],
}

/// No TLS without the feature: a connection is always plain.
#[cfg(not(feature = "tls"))]
pub(crate) enum TlsConn<'a> {
    #[allow(dead_code)]
    Never(core::convert::Infallible, core::marker::PhantomData<&'a ()>),
}

/// One request on the wire.
pub(crate) struct Outgoing<'r> {
    pub(crate) method: Method,
    pub(crate) url: &'r str,
    pub(crate) headers: &'r [(&'r str, &'r str)],
    pub(crate) body: &'r [u8],
}

/// What one exchange produced; the kept headers and the body are in the caller's buffer.
pub(crate) struct Exchanged {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<core::time::Duration>,
    /// Bytes of kept headers at the start of the body buffer.
    pub(crate) kept: usize,
    /// Bytes of body after them.
    pub(crate) body_len: usize,
}

/// Sends `out` and reads the answer: the head into `rx`, then (when `keep_headers`) the
/// response headers and the body into `into`. Bounded by the wire's timeout.
pub(crate) async fn exchange<T: TcpConnect, D: Dns>(
    wire: &Wire<'_, T, D>,
    tls: Option<TlsConn<'_>>,
    out: Outgoing<'_>,
    rx: &mut [u8],
    into: &mut [u8],
    keep_headers: bool,
) -> Result<Exchanged, Fault> {
    let work = async {
        #[cfg(feature = "tls")]
        let mut http = match tls {
            Some(t) => {
                use reqwless::client::{TlsConfig, TlsVerify};
                let verify = TlsVerify::Certificate {
                    ca: t.ca,
                    cert: None,
                    key: None,
                };
                let config = TlsConfig::new(t.seed, t.read, t.write, verify);
                HttpClient::new_with_tls(wire.tcp, wire.dns, config)
            }
            None => HttpClient::new(wire.tcp, wire.dns),
        };
        #[cfg(not(feature = "tls"))]
        let mut http = match tls {
            Some(TlsConn::Never(never, _)) => match never {},
            None => HttpClient::new(wire.tcp, wire.dns),
        };
        let method = match out.method {
            Method::Get => HttpMethod::GET,
            Method::Post => HttpMethod::POST,
            Method::Put => HttpMethod::PUT,
            Method::Patch => HttpMethod::PATCH,
            Method::Delete => HttpMethod::DELETE,
            Method::Head => HttpMethod::HEAD,
            Method::Options => HttpMethod::OPTIONS,
        };
        let handle = http
            .request(method, out.url)
            .await
            .map_err(|e| Fault::Net(classify(Phase::Connect, &e)))?;
        // An empty body is written as none (reqwless skips a zero-length body).
        let mut handle = handle.headers(out.headers).body(out.body);
        let response = handle
            .send(rx)
            .await
            .map_err(|e| Fault::Net(classify(Phase::Head, &e)))?;
        read_response(response, into, keep_headers).await
    };
    match with_timeout(wire.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Fault::Net(TIMED_OUT)),
    }
}

/// Reads a response whose head is in: the retry-after, then (when `keep_headers`) the
/// response headers and the body into `into`. Shared by every connection kind (plain,
/// embedded-tls, mbedtls).
pub(crate) async fn read_response<C: embedded_io_async::Read>(
    response: reqwless::response::Response<'_, '_, C>,
    into: &mut [u8],
    keep_headers: bool,
) -> Result<Exchanged, Fault> {
    let status = response.status.0;
    let mut retry = None;
    let mut kept = 0usize;
    let mut needed = 0usize;
    // reqwless yields its whole header table; unused slots have an empty name.
    for (name, value) in response.headers().filter(|(n, _)| !n.is_empty()) {
        let Ok(value) = core::str::from_utf8(value) else {
            continue;
        };
        if name.eq_ignore_ascii_case("retry-after") {
            retry = retry_after(value, None);
        }
        if keep_headers {
            let len = name.len() + value.len() + 2;
            needed += len;
            // Once one line did not fit, none is written: the error below says how
            // much was needed.
            let line = match needed == kept + len {
                true => into.get_mut(kept..needed),
                false => None,
            };
            if let Some(line) = line {
                let (n, rest) = line.split_at_mut(name.len());
                n.copy_from_slice(name.as_bytes());
                n.make_ascii_lowercase();
                let (colon, rest) = rest.split_at_mut(1);
                colon[0] = b':';
                let (v, nl) = rest.split_at_mut(value.len());
                v.copy_from_slice(value.as_bytes());
                nl[0] = b'\n';
                kept = needed;
            }
        }
    }
    if needed > kept {
        return Err(Fault::Local(tessera_core::Error::Capacity {
            field: "response headers",
            needed,
            capacity: into.len(),
        }));
    }
    let room = &mut into[kept..];
    let capacity = room.len();
    let body_len = response
        .body()
        .reader()
        .read_to_end(room)
        .await
        .map_err(|e| match e {
            reqwless::Error::BufferTooSmall => Fault::Local(body_too_large(capacity)),
            e => Fault::Net(classify(Phase::Body, &e)),
        })?;
    Ok(Exchanged {
        status,
        retry_after: retry,
        kept,
        body_len,
    })
}
