//! Fault injection: what can go wrong with an answer, and the request handler that applies
//! a queued fault before (or instead of) the provider's own answer.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::response::Response;

use crate::providers::{echo, respond, route, JSON_TYPE};
use crate::server::Conn;
use crate::{Endpoint, Gate, ProviderKind};

/// A fault to inject into the next request(s) to an endpoint. New kinds of fault may be
/// added in a minor version (`non_exhaustive`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer with this status and a small JSON error body.
    Status(u16),
    /// 429, with `Retry-After` seconds when given.
    RateLimited {
        /// `Retry-After`, seconds.
        retry_after: Option<u64>,
    },
    /// A proxy's HTML error page with this status.
    Html(u16),
    /// 200 with a `Content-Length` promise, then the connection closes mid-body.
    DropMidBody,
    /// 200, complete HTTP, but the JSON is cut in half.
    Truncated,
    /// 200, complete HTTP, not JSON.
    Malformed,
    /// A normal grant whose (opaque) token has exactly this many bytes.
    OversizedToken(usize),
    /// 200, a normal body sent one byte per interval.
    SlowDrip(Duration),
    /// 200 with a body of this many bytes.
    HugeBody(usize),
    /// A normal answer labelled `Content-Type: text/html`.
    WrongContentType,
    /// Wait at the gate until it is released (other requests go on being served), then
    /// answer normally.
    Hold(Gate),
    /// Wait at the gate until it is released, then answer with the other fault: a test
    /// checks what must hold while a faulty answer has not come yet, without a clock.
    HoldThen(Gate, Box<Fault>),
    /// A hostile provider: 400 in the endpoint's own error envelope (OAuth 2.0's
    /// `invalid_request` with `error_description`, Shogun's `message`, APIMW's
    /// `error.message`, Setu's `error.detail`) whose text repeats the request body and its
    /// `Authorization` header, secret included.
    EchoRequest,
    /// Not HTTP: the status line is garbage (`TESSERA/9 nonsense`), then the connection
    /// closes.
    GarbageStatusLine,
    /// `200` with `Transfer-Encoding: chunked` whose first chunk size is not hexadecimal,
    /// then the connection closes.
    BrokenChunked,
    /// A normal answer with one extra response header (`X-Filler`) of this many bytes.
    HugeHeaders(usize),
    /// `307 Temporary Redirect` to this URL (which keeps the method and the body: a client
    /// that followed it would send the credentials there).
    Redirect(String),
}

/// The raw bytes [`Fault::GarbageStatusLine`] answers with.
pub const GARBAGE_STATUS_LINE: &[u8] =
    b"TESSERA/9 nonsense\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

/// The raw bytes [`Fault::BrokenChunked`] answers with.
pub const BROKEN_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
Transfer-Encoding: chunked\r\n\r\nzz\r\n{\"access_token\":\"x\"}\r\n0\r\n\r\n";

/// Answers one request: counts it, records its headers, applies the endpoint's next queued
/// fault, else lets the provider answer.
pub(crate) async fn handle(
    State(conn): State<Conn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inner = &conn.inner;
    let Some(endpoint) = route(&method, uri.path()) else {
        return respond(404, JSON_TYPE, r#"{"error":"not_found"}"#.into());
    };
    let (fault, request_no) = {
        let mut s = inner.lock();
        let count = s.counts.entry(endpoint).or_default();
        *count += 1;
        let request_no = *count;
        let seen = headers
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), v)
            })
            .collect();
        s.last_headers.insert(endpoint, seen);
        let fault = s.faults.get_mut(&endpoint).and_then(VecDeque::pop_front);
        (fault, request_no)
    };
    let kind = match endpoint {
        Endpoint::Token(kind) | Endpoint::Protected(kind) => kind,
        Endpoint::Validate => ProviderKind::Shogun,
    };
    let fault = match fault {
        Some(Fault::HoldThen(gate, then)) => {
            gate.pass().await;
            Some(*then)
        }
        other => other,
    };
    let mut oversized = None;
    match &fault {
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        Some(Fault::Hold(gate)) => gate.pass().await,
        Some(Fault::OversizedToken(n)) => oversized = Some(*n),
        Some(Fault::Status(code)) => {
            return respond(*code, JSON_TYPE, r#"{"error":"injected_fault"}"#.into())
        }
        Some(Fault::RateLimited { retry_after }) => {
            let mut r = respond(429, JSON_TYPE, r#"{"error":"rate_limited"}"#.into());
            if let Some(s) = retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, (*s).into());
            }
            return r;
        }
        Some(Fault::Html(code)) => {
            let page = format!("<html>\r\n<head><title>{code} Bad Gateway</title></head>\r\n<body><center><h1>{code} Bad Gateway</h1></center><hr><center>nginx</center></body></html>\r\n");
            return respond(*code, "text/html", page);
        }
        Some(Fault::Malformed) => return respond(200, JSON_TYPE, "{this is not json".into()),
        Some(Fault::HugeBody(n)) => {
            // One memset, not ten million pushes: a debug build must not stall a worker.
            let mut big = vec![b'x'; *n];
            let head = br#"{"access_token":""#;
            let len = head.len().min(big.len());
            big[..len].copy_from_slice(&head[..len]);
            return Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, JSON_TYPE)
                .body(Body::from(big))
                .unwrap_or_default();
        }
        Some(Fault::EchoRequest) => {
            let (status, content_type, text) = echo(kind, &headers, &body);
            return respond(status, content_type, text);
        }
        Some(Fault::GarbageStatusLine) => return conn.hijack(GARBAGE_STATUS_LINE),
        Some(Fault::BrokenChunked) => return conn.hijack(BROKEN_CHUNKED),
        Some(Fault::Redirect(to)) => {
            let mut r = respond(307, JSON_TYPE, r#"{"error":"moved"}"#.into());
            if let Ok(v) = HeaderValue::from_str(to) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        _ => {}
    }
    let (status, content_type, text) = match endpoint {
        Endpoint::Token(kind) => inner.token(kind, &headers, &body, oversized),
        Endpoint::Validate => inner.validate(&headers),
        Endpoint::Protected(kind) => inner.protected(kind, &headers),
    };
    let mut extra_headers: Vec<(HeaderName, String)> = Vec::new();
    if status == 401
        && endpoint == Endpoint::Token(ProviderKind::OAuth2)
        && headers.contains_key(header::AUTHORIZATION)
    {
        // RFC 6749 §5.2: a failed Basic authentication answers with WWW-Authenticate.
        extra_headers.push((
            header::WWW_AUTHENTICATE,
            "Basic realm=\"tessera-sandbox\"".into(),
        ));
    }
    if let Endpoint::Protected(_) = endpoint {
        // A response header for clients to read back: the request's number at this endpoint.
        extra_headers.push((
            HeaderName::from_static("x-request-id"),
            format!("req-{request_no}"),
        ));
    }
    if let Some(Fault::HugeHeaders(n)) = &fault {
        extra_headers.push((HeaderName::from_static("x-filler"), "A".repeat(*n)));
    }
    let mut response = match fault {
        Some(Fault::Truncated) => {
            let cut = text.len() / 2;
            respond(
                status,
                content_type,
                text.get(..cut).unwrap_or_default().to_owned(),
            )
        }
        Some(Fault::WrongContentType) => respond(status, "text/html; charset=utf-8", text),
        Some(Fault::DropMidBody) => {
            let bytes = Bytes::from(text);
            let promised = bytes.len();
            let head = bytes.slice(..promised / 3);
            let stream = futures_util::stream::iter(vec![
                Ok(head),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected: dropped mid-body",
                )),
            ]);
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, content_type)
                .header(header::CONTENT_LENGTH, promised)
                .body(Body::from_stream(stream))
                .unwrap_or_default()
        }
        Some(Fault::SlowDrip(every)) => {
            let bytes = text.into_bytes();
            let len = bytes.len();
            let stream =
                futures_util::stream::unfold((bytes, 0usize), move |(bytes, i)| async move {
                    if i >= bytes.len() {
                        return None;
                    }
                    tokio::time::sleep(every).await;
                    let chunk = Bytes::copy_from_slice(&bytes[i..=i]);
                    Some((Ok::<_, std::io::Error>(chunk), (bytes, i + 1)))
                });
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, content_type)
                .header(header::CONTENT_LENGTH, len)
                .body(Body::from_stream(stream))
                .unwrap_or_default()
        }
        _ => respond(status, content_type, text),
    };
    for (k, v) in extra_headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            response.headers_mut().insert(k, v);
        }
    }
    response
}
