//! What a transport sends: method, URL, headers and body, all borrowed.

use core::fmt;

use crate::error::Error;
use crate::json::Problem;
use crate::write::Out;

/// An HTTP method: every one a payment API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `HEAD`: the answer has no body.
    Head,
    /// `OPTIONS`
    Options,
}

impl Method {
    /// The method's name, as sent: `"GET"`, `"POST"`, …
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
        }
    }

    /// The method named `name` (case-sensitive, as HTTP says), if it is one of these.
    pub fn parse(name: &str) -> Option<Method> {
        [
            Method::Get,
            Method::Post,
            Method::Put,
            Method::Patch,
            Method::Delete,
            Method::Head,
            Method::Options,
        ]
        .into_iter()
        .find(|m| m.as_str() == name)
    }

    /// Whether the request carries a body by definition (`POST`, `PUT`, `PATCH`): its
    /// `Content-Length` is sent even when it is 0.
    pub const fn has_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }

    /// Whether sending the request twice has the effect of sending it once (RFC 9110
    /// §9.2.2): `GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`. A request found on a dead kept
    /// connection is sent again only if this holds or it carries an `Idempotency-Key`.
    pub const fn is_idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Patch)
    }
}

/// A URL as a base (scheme, host, optional prefix) and a path, joined with exactly one `/`.
///
/// ```
/// use tessera_core::Url;
/// let u = Url { base: "https://uat.setu.co/", path: "/api/v2/auth/token" };
/// assert_eq!(u.to_string(), "https://uat.setu.co/api/v2/auth/token");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Url<'a> {
    /// Scheme, host and any path prefix, e.g. `https://api.shogun.io/api/v1`.
    pub base: &'a str,
    /// The endpoint's path; empty when `base` is already the whole URL.
    pub path: &'a str,
}

impl Url<'_> {
    fn parts(&self) -> (&str, &str, &str) {
        let base = self.base.trim_end_matches('/');
        let path = self.path.trim_start_matches('/');
        let sep = if path.is_empty() { "" } else { "/" };
        (base, sep, path)
    }

    /// Length of the joined URL in bytes.
    pub fn len(&self) -> usize {
        let (a, b, c) = self.parts();
        a.len() + b.len() + c.len()
    }

    /// Whether the joined URL is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the joined URL into `dest` (cleared first); on error `dest` is left empty.
    pub fn write_into<const N: usize>(&self, dest: &mut heapless::String<N>) -> Result<(), Error> {
        dest.clear();
        let (a, b, c) = self.parts();
        if self.len() > N {
            return Err(Error::Capacity {
                field: "url",
                needed: self.len(),
                capacity: N,
            });
        }
        // Length checked above.
        let _ = dest.push_str(a).and(dest.push_str(b)).and(dest.push_str(c));
        Ok(())
    }
}

impl Url<'_> {
    /// Writes the joined URL (see [`Url::len`] for its length).
    pub(crate) fn write_to(&self, out: &mut Out<'_>) {
        let (a, b, c) = self.parts();
        out.str(a);
        out.str(b);
        out.str(c);
    }
}

impl fmt::Display for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b, c) = self.parts();
        write!(f, "{a}{b}{c}")
    }
}

/// An HTTP request to send.
///
/// Transports send `Accept: application/json`, the `Content-Type` given here when there is
/// a body, and `Authorization` when given. `Debug` hides the body and the authorization
/// value: both carry credentials.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// Where to send it.
    pub url: Url<'a>,
    /// The body's media type, when there is a body.
    pub content_type: Option<&'static str>,
    /// The whole `Authorization` header value (`Basic …` or `Bearer …`), when needed.
    pub authorization: Option<&'a str>,
    /// The body bytes (empty for `GET`).
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// Every header the request carries, in order: `Accept: application/json`, then
    /// `Content-Type` when there is a body, then `Authorization` when given. Transports send
    /// exactly these.
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            items: [
                Some(("Accept", JSON)),
                self.content_type.map(|ct| ("Content-Type", ct)),
                self.authorization.map(|a| ("Authorization", a)),
            ],
            next: 0,
        }
    }

    /// Whether the request may be sent: see [`check_url`](crate::transport::check_url).
    pub fn check_security(&self, allow_insecure_http: bool) -> Result<(), Error> {
        crate::transport::check_url(self.url.base, allow_insecure_http).map(|_| ())
    }
}

/// The headers of a [`Request`], as `(name, value)` pairs. `Debug` hides the
/// `Authorization` value.
#[derive(Clone)]
pub struct Headers<'a> {
    items: [Option<(&'static str, &'a str)>; 3],
    next: usize,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'static str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(slot) = self.items.get(self.next) {
            self.next += 1;
            if let Some(item) = slot {
                return Some(*item);
            }
        }
        None
    }
}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.items.iter().flatten().map(|(name, _)| *name);
        f.debug_list().entries(names).finish()
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("content_type", &self.content_type)
            .field(
                "authorization",
                &self.authorization.map(|_| format_args!("<redacted>")),
            )
            .field(
                "body",
                &format_args!("<{} bytes redacted>", self.body.len()),
            )
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Request<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Request {{ method: {}, url: {}, body: <{=usize} bytes redacted> }}",
            self.method,
            self.url,
            self.body.len()
        )
    }
}

/// Media type of a JSON body.
pub const JSON: &str = "application/json";
/// Media type of a form body.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// Whether every byte of `text` is visible ASCII (`!`..=`~`), so it can follow `Bearer ` in
/// a header without breaking it: no CR/LF (header injection), space, control or non-ASCII
/// byte. RFC 6750's `b64token` is a subset; real providers stay inside it.
pub(crate) fn is_header_token(text: &str) -> bool {
    // Exact 32-byte blocks folded with no early exit inside one, so each block vectorises
    // (tokens are ~1 KB).
    let visible = |ok: bool, b: &u8| ok & (b'!'..=b'~').contains(b);
    let mut blocks = text.as_bytes().chunks_exact(32);
    let ok = blocks
        .by_ref()
        .all(|block| block.iter().fold(true, visible));
    ok && blocks.remainder().iter().fold(true, visible)
}

/// Writes `Bearer <token>` into `buf`, for the `Authorization` header of a downstream call.
///
/// ```
/// let mut buf = [0u8; 64];
/// assert_eq!(tessera_core::bearer_header("abc", &mut buf).unwrap(), "Bearer abc");
/// ```
pub fn bearer_header<'b>(token: &str, buf: &'b mut [u8]) -> Result<&'b str, Error> {
    if token.is_empty() {
        return Err(Error::malformed("access_token", Problem::Missing));
    }
    if !is_header_token(token) {
        return Err(Error::malformed("access_token", Problem::Charset));
    }
    let capacity = buf.len();
    let mut out = Out::new(buf);
    out.str("Bearer ");
    out.str(token);
    let (written, _) = out.finish().map_err(|needed| Error::Capacity {
        field: "authorization header",
        needed,
        capacity,
    })?;
    core::str::from_utf8(written).map_err(|_| Error::Capacity {
        field: "authorization header",
        needed: 0,
        capacity,
    })
}

/// Where one piece of a written request is in the caller's buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Span {
    start: usize,
    len: usize,
}

impl Span {
    /// The piece's byte range in the buffer.
    pub const fn range(&self) -> core::ops::Range<usize> {
        self.start..self.start + self.len
    }

    fn of<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.range()).unwrap_or_default()
    }
}

/// A token request written into a caller's buffer ([`Session::write_request`]), as a small
/// `Copy` value: where the URL, the `Authorization` value and the body are in that buffer.
/// A transport keeps it across any lock it lets go of and reads the pieces back from the
/// buffer: no borrowed strings to turn into offsets and back, no copy of the request.
/// `Debug` shows positions only.
///
/// [`Session::write_request`]: crate::Session::write_request
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Layout {
    /// The method.
    pub method: Method,
    /// The body's media type, when there is a body.
    pub content_type: Option<&'static str>,
    url: Span,
    authorization: Option<Span>,
    body: Span,
}

impl Layout {
    /// The whole URL, from `buf` (the buffer the request was written into).
    pub fn url<'b>(&self, buf: &'b [u8]) -> &'b str {
        core::str::from_utf8(self.url.of(buf)).unwrap_or_default()
    }

    /// The whole `Authorization` value, when the request has one.
    pub fn authorization<'b>(&self, buf: &'b [u8]) -> Option<&'b str> {
        self.authorization
            .map(|a| core::str::from_utf8(a.of(buf)).unwrap_or_default())
    }

    /// The body (empty for none).
    pub fn body<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.body.of(buf)
    }

    /// The request, borrowing `buf`: what [`Request::headers`] lists is what to send.
    pub fn request<'b>(&self, buf: &'b [u8]) -> Request<'b> {
        Request {
            method: self.method,
            url: Url {
                base: self.url(buf),
                path: "",
            },
            content_type: self.content_type,
            authorization: self.authorization(buf),
            body: self.body(buf),
        }
    }

    /// A layout of the pieces' spans (see [`Session::write_request`]).
    ///
    /// [`Session::write_request`]: crate::Session::write_request
    pub(crate) fn place(
        method: Method,
        content_type: Option<&'static str>,
        url: Span,
        authorization: Option<Span>,
        body: Span,
    ) -> Layout {
        Layout {
            method,
            content_type,
            url,
            authorization,
            body,
        }
    }
}

impl Span {
    pub(crate) const fn new(start: usize, len: usize) -> Span {
        Span { start, len }
    }
}
