//! Errors: a small `Copy` [`Error`], its [`ErrorKind`], and [`ResponseError`], which adds the
//! HTTP status and the provider's own code, message and trace id.
//!
//! No error text ever contains a credential: the core never copies a secret or a token into
//! an error, and provider messages are kept only from error responses.

use core::fmt;

use crate::credentials::Credentials;
use crate::json::{JsonStr, Problem};
use crate::redact::{scrub, scrub_token};

/// What went wrong with a token request or response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The provider refused the credentials. Retrying will not help and may lock the account.
    InvalidCredentials,
    /// Too many requests (HTTP 429), including Shogun's lockout after failed logins.
    RateLimited,
    /// The provider failed (HTTP 5xx).
    ServerError,
    /// Any other refusal: another 4xx, or a 2xx whose envelope says failure.
    Rejected,
    /// The token presented to a validate endpoint is dead (expired or revoked).
    TokenInvalid,
    /// The response is not what the provider's contract says.
    Malformed {
        /// The field at fault, when one is.
        field: Option<&'static str>,
        /// What was wrong.
        problem: Problem,
    },
    /// The URL would carry a secret in plaintext off the machine (`http://` to a host that
    /// is not loopback) and the application did not opt in; refused before any connection.
    /// See [`check_url`](crate::transport::check_url).
    Insecure,
    /// The URL does not parse as the core requires (user info, a bad host or port, a
    /// backslash, a control character…): refused before any connection. See
    /// [`parse_url`](crate::transport::parse_url).
    Url(crate::transport::UrlError),
    /// A value did not fit its fixed-capacity buffer. Nothing was written.
    Capacity {
        /// Which field or buffer.
        field: &'static str,
        /// Bytes (or entries, for `scope count`) it needed.
        needed: usize,
        /// What the buffer holds.
        capacity: usize,
    },
}

/// The groups callers act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ErrorKind {
    /// Wrong id or secret: surface it, never retry in a loop.
    InvalidCredentials,
    /// Back off, honouring `Retry-After`.
    RateLimited,
    /// Back off and retry.
    ServerError,
    /// A refusal that retrying will not change.
    Rejected,
    /// Not the documented shape.
    Malformed,
    /// A fixed-capacity buffer is too small.
    Capacity,
    /// The token is dead: fetch a new one.
    TokenInvalid,
    /// The network failed (used by the transports).
    Transport,
    /// A secret would have gone out in plaintext: fix the URL (or opt in for a LAN sandbox).
    Insecure,
    /// The URL is malformed or has parts the core refuses: fix it.
    InvalidUrl,
}

impl ErrorKind {
    /// The snake_case name used in the CLI's JSON and in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidCredentials => "invalid_credentials",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::ServerError => "server_error",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Capacity => "capacity",
            ErrorKind::TokenInvalid => "token_invalid",
            ErrorKind::Transport => "transport",
            ErrorKind::Insecure => "insecure",
            ErrorKind::InvalidUrl => "invalid_url",
        }
    }

    /// Whether backing off and trying again can help (rate limit, server error, network).
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited | ErrorKind::ServerError | ErrorKind::Transport
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The group this error belongs to.
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidCredentials => ErrorKind::InvalidCredentials,
            Error::RateLimited => ErrorKind::RateLimited,
            Error::ServerError => ErrorKind::ServerError,
            Error::Rejected => ErrorKind::Rejected,
            Error::TokenInvalid => ErrorKind::TokenInvalid,
            Error::Malformed { .. } => ErrorKind::Malformed,
            Error::Capacity { .. } => ErrorKind::Capacity,
            Error::Insecure => ErrorKind::Insecure,
            Error::Url(_) => ErrorKind::InvalidUrl,
        }
    }

    pub(crate) const fn malformed(field: &'static str, problem: Problem) -> Self {
        Error::Malformed {
            field: Some(field),
            problem,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidCredentials => f.write_str("invalid credentials"),
            Error::RateLimited => f.write_str("rate limited"),
            Error::ServerError => f.write_str("server error"),
            Error::Rejected => f.write_str("rejected"),
            Error::TokenInvalid => f.write_str("token invalid or expired"),
            Error::Insecure => f.write_str(
                "refused: the URL would send a secret in plaintext (use https://, or opt in to insecure http for a LAN sandbox)",
            ),
            Error::Url(e) => write!(f, "refused: the URL has {e}"),
            Error::Malformed {
                field: Some(field),
                problem,
            } => {
                write!(f, "malformed response: `{field}`: {}", problem.describe())
            }
            Error::Malformed {
                field: None,
                problem,
            } => {
                write!(f, "malformed response: {}", problem.describe())
            }
            Error::Capacity {
                field,
                needed,
                capacity,
            } => {
                write!(
                    f,
                    "`{field}` needs {needed} but its buffer holds {capacity}"
                )
            }
        }
    }
}

impl core::error::Error for Error {}

impl From<Problem> for Error {
    /// A problem not tied to one field (e.g. a syntax error between members).
    fn from(problem: Problem) -> Self {
        Error::Malformed {
            field: None,
            problem,
        }
    }
}

/// What the provider said about a failure, borrowed from the response body.
///
/// Parsing copies nothing: keep a [`Detail`] (via [`Detail::from`]) to hold it past the
/// body's buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetailRef<'b> {
    code: Option<JsonStr<'b>>,
    message: Option<JsonStr<'b>>,
    trace_id: Option<JsonStr<'b>>,
    /// Whether `message` holds only a title (Setu), to be replaced by a real message.
    title_only: bool,
}

impl<'b> DetailRef<'b> {
    /// The provider's error code (APIMW `INVALID_CREDENTIALS`, Setu `invalid-api-key`,
    /// OAuth `invalid_client`), when given and not empty.
    pub fn code(&self) -> Option<JsonStr<'b>> {
        self.code.filter(|s| !s.raw().is_empty())
    }

    /// The provider's message (Shogun `message`, APIMW `error.message`, Setu `error.detail`
    /// or `title`, OAuth `error_description`), when given and not empty.
    pub fn message(&self) -> Option<JsonStr<'b>> {
        self.message.filter(|s| !s.raw().is_empty())
    }

    /// Setu's `traceID`: what a merchant quotes to support.
    pub fn trace_id(&self) -> Option<JsonStr<'b>> {
        self.trace_id.filter(|s| !s.raw().is_empty())
    }

    /// Whether the provider's error code is one of `codes`.
    pub fn code_is_one_of(&self, codes: &[&str]) -> bool {
        self.code()
            .is_some_and(|c| codes.iter().any(|want| c.eq_str(want)))
    }

    pub(crate) fn set_code(&mut self, s: JsonStr<'b>) {
        self.code = Some(s);
    }

    /// Sets the message; a title is kept only until a real message arrives.
    pub(crate) fn set_message(&mut self, s: JsonStr<'b>, is_title: bool) {
        if is_title && self.message.is_some() && !self.title_only {
            return;
        }
        self.message = Some(s);
        self.title_only = is_title;
    }

    pub(crate) fn set_trace_id(&mut self, s: JsonStr<'b>) {
        self.trace_id = Some(s);
    }
}

/// A failed response: the HTTP status, the classified [`Error`], and the provider's words,
/// borrowed from the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseError<'b> {
    /// The HTTP status of the response.
    pub status: u16,
    /// What it means.
    pub error: Error,
    /// What the provider said, when anything.
    pub detail: DetailRef<'b>,
}

impl ResponseError<'_> {
    /// The group the error belongs to.
    pub const fn kind(&self) -> ErrorKind {
        self.error.kind()
    }

    /// An owned copy that outlives the body.
    pub fn to_report(&self) -> ErrorReport {
        ErrorReport {
            status: self.status,
            error: self.error,
            detail: Detail::from(&self.detail),
        }
    }

    /// [`to_report`](Self::to_report) for the answer to a request that carried `token`
    /// (a downstream call, Shogun's validate): the token is scrubbed from what the API said
    /// ([`Detail::redact_token`]), so every transport keeps the same rule.
    pub fn to_report_carrying(&self, token: &str) -> ErrorReport {
        let mut report = self.to_report();
        report.detail.redact_token(token);
        report
    }
}

impl From<ResponseError<'_>> for Error {
    fn from(e: ResponseError<'_>) -> Self {
        e.error
    }
}

impl fmt::Display for ResponseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_report(), f)
    }
}

impl core::error::Error for ResponseError<'_> {}

/// Capacity of [`Detail::code`].
pub const CODE_CAPACITY: usize = 64;
/// Capacity of [`Detail::message`].
pub const MESSAGE_CAPACITY: usize = 256;
/// Capacity of [`Detail::trace_id`].
pub const TRACE_ID_CAPACITY: usize = 64;

/// An owned copy of a [`DetailRef`].
///
/// These are diagnostics, not data: text longer than its buffer is cut at a character
/// boundary and ends in `…`, so the cut is visible.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Detail {
    code: heapless::String<CODE_CAPACITY>,
    message: heapless::String<MESSAGE_CAPACITY>,
    trace_id: heapless::String<TRACE_ID_CAPACITY>,
}

impl Detail {
    /// The provider's error code.
    pub fn code(&self) -> Option<&str> {
        non_empty(&self.code)
    }

    /// The provider's message.
    pub fn message(&self) -> Option<&str> {
        non_empty(&self.message)
    }

    /// Setu's `traceID`.
    pub fn trace_id(&self) -> Option<&str> {
        non_empty(&self.trace_id)
    }

    /// Replaces the secret of `credentials`, raw or in any encoding a token request carries
    /// it in, with `<redacted>` in the code, message and trace id: a provider that echoes
    /// the request back does not get the secret stored or shown. Whether any was found.
    /// [`Session`](crate::Session) does this to every failure it keeps.
    ///
    /// ```
    /// use tessera_core::{Credentials, Detail};
    /// # let mut detail = Detail::default();
    /// let creds = Credentials::new("terminal-7", "s3cr3t").unwrap();
    /// // ... `detail` from a provider's error that echoed `client_secret=s3cr3t` ...
    /// detail.redact(&creds);
    /// assert!(!format!("{detail:?}").contains("s3cr3t"));
    /// ```
    pub fn redact(&mut self, credentials: &Credentials) -> bool {
        let code = scrub(&mut self.code, credentials);
        let message = scrub(&mut self.message, credentials);
        let trace = scrub(&mut self.trace_id, credentials);
        code | message | trace
    }

    /// Replaces a bearer or refresh `token` an API or a provider echoed (Shogun's validate
    /// errors quote the token they were asked about), raw or in any encoding, with
    /// `<redacted>` in the code, message and trace id. Whether any was found. A transport
    /// does this to the failure of every request that carried a token; tokens shorter than
    /// 8 bytes are not looked for.
    ///
    /// ```
    /// use tessera_core::Detail;
    /// # let mut detail = Detail::default();
    /// // ... `detail` from Shogun's validate error quoting `eyJhbGciOi.payload.sig` ...
    /// detail.redact_token("eyJhbGciOi.payload.sig");
    /// assert!(!format!("{detail:?}").contains("eyJhbGciOi"));
    /// ```
    pub fn redact_token(&mut self, token: &str) -> bool {
        let code = scrub_token(&mut self.code, token);
        let message = scrub_token(&mut self.message, token);
        let trace = scrub_token(&mut self.trace_id, token);
        code | message | trace
    }
}

impl From<&DetailRef<'_>> for Detail {
    fn from(r: &DetailRef<'_>) -> Self {
        let mut d = Detail::default();
        fill_lossy(&mut d.code, r.code());
        fill_lossy(&mut d.message, r.message());
        fill_lossy(&mut d.trace_id, r.trace_id());
        d
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Decodes `s` into `dest`, cutting at a char boundary with a trailing `…` when it is too
/// long; invalid text leaves `dest` empty.
fn fill_lossy<const N: usize>(dest: &mut heapless::String<N>, s: Option<JsonStr<'_>>) {
    dest.clear();
    let Some(s) = s else { return };
    let mut cut = false;
    let res = s.chunks(|chunk| {
        for ch in chunk.chars() {
            if dest.push(ch).is_err() {
                cut = true;
                return false;
            }
        }
        true
    });
    if res.is_err() {
        dest.clear();
        return;
    }
    if cut {
        while dest.len() + '…'.len_utf8() > N && dest.pop().is_some() {}
        // Cannot fail after the loop above unless N < 3, where the text is simply cut.
        let _ = dest.push('…');
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detail")
            .field("code", &self.code())
            .field("message", &self.message())
            .field("trace_id", &self.trace_id())
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Detail {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Detail {{ code: {}, message: {}, trace_id: {} }}",
            self.code(),
            self.message(),
            self.trace_id()
        )
    }
}

/// An owned failed response, to keep and show after the body is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ErrorReport {
    /// The HTTP status of the response.
    pub status: u16,
    /// What it means.
    pub error: Error,
    /// What the provider said, when anything.
    pub detail: Detail,
}

impl ErrorReport {
    /// The group the error belongs to.
    pub const fn kind(&self) -> ErrorKind {
        self.error.kind()
    }
}

impl fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}", self.error, self.status)?;
        if let Some(code) = self.detail.code() {
            write!(f, ", code {code}")?;
        }
        if let Some(msg) = self.detail.message() {
            write!(f, ": {msg}")?;
        }
        if let Some(trace) = self.detail.trace_id() {
            write!(f, "; trace {trace}")?;
        }
        f.write_str(")")
    }
}

impl core::error::Error for ErrorReport {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Cursor;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn long_messages_are_cut_visibly_at_char_boundaries() {
        let mut body = std::string::String::from("\"");
        for _ in 0..200 {
            body.push('é');
        }
        body.push('"');
        let s = Cursor::new(body.as_bytes()).string().unwrap();
        let mut r = DetailRef::default();
        r.set_message(s, false);
        let d = Detail::from(&r);
        let m = d.message().unwrap();
        assert!(m.len() <= MESSAGE_CAPACITY);
        assert!(m.ends_with('…'));
        assert_eq!(
            m.chars().filter(|&c| c == 'é').count(),
            (MESSAGE_CAPACITY - 3) / 2
        );
    }

    #[test]
    fn display_reads_well() {
        let mut e = ResponseError {
            status: 400,
            error: Error::InvalidCredentials,
            detail: DetailRef::default(),
        };
        let code = Cursor::new(br#""invalid-api-key""#).string().unwrap();
        let trace = Cursor::new(br#""8b7b""#).string().unwrap();
        e.detail.set_code(code);
        e.detail.set_trace_id(trace);
        assert_eq!(
            e.to_string(),
            "invalid credentials (HTTP 400, code invalid-api-key; trace 8b7b)"
        );
        let cap = Error::Capacity {
            field: "access_token",
            needed: 3000,
            capacity: 2048,
        };
        assert_eq!(
            cap.to_string(),
            "`access_token` needs 3000 but its buffer holds 2048"
        );
    }
}
