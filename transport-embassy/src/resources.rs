//! Every buffer the client needs, in one value sized by const generics ([`Resources`]), and
//! the buffers of one downstream call ([`CallBuffers`]).

/// Every buffer a [`Client`](crate::Client) needs, like embassy-net's `StackResources`:
/// put one in a `StaticCell` and give it to the client.
///
/// - `TOKEN`: the longest access token the session keeps (2 KiB; a JWT with many claims may
///   need 4 KiB). Responses with a longer one fail with a capacity error, never truncate.
/// - `REQUEST`: the token request as the core writes it (its body, `Authorization` and the
///   token endpoint's URL); 1 KiB is ample.
/// - `HEADERS`: the token response's head as it is read; 1 KiB is ample.
/// - `BODY`: the token response's body (Setu's is 1.3 KB; an OAuth 2.0 response is the
///   token plus about 200 bytes).
/// - `REFRESH`: the longest refresh token kept (most client-credentials grants have none).
///
/// The fetch buffers belong to whichever task runs the token request; they are wiped when
/// it ends, also when its future is dropped.
///
/// With feature `tls`, it also holds embedded-tls's record buffers: two slots of two
/// `RECORD_BUFFER`-byte (16,640) buffers (65 KiB), one per open TLS connection, in use or
/// kept (a token fetch and a call, or two calls, or two kept connections; a TLS exchange
/// that finds none free closes the kept ones, or waits for one on a signal). A slot is
/// taken and given back under a critical section held for that only, belongs to one
/// connection while it is open, and is wiped when it closes, also when a future is
/// dropped. MbedTLS's records are on its heap instead; plain HTTP needs none.
///
/// The buffers of each downstream call's response stay the caller's ([`CallBuffers`]): a
/// call's [`ApiResponse`](crate::ApiResponse) borrows them for as long as the caller reads
/// it, so concurrent calls would otherwise wait for each other's readers, not just for the
/// network.
///
/// ```
/// use tessera_embassy::Resources;
/// // The defaults, in a static (a `StaticCell` on a device: `Resources::new()` is const).
/// let resources: Resources = Resources::new();
/// // Room for 4 KiB tokens:
/// let big: Resources<4096, 1024, 1024, 6144> = Resources::new();
/// # let _ = (resources, big);
/// ```
pub struct Resources<
    const TOKEN: usize = 2048,
    const REQUEST: usize = 1024,
    const HEADERS: usize = 1024,
    const BODY: usize = 4096,
    const REFRESH: usize = 1024,
> {
    pub(crate) request: [u8; REQUEST],
    pub(crate) headers: [u8; HEADERS],
    pub(crate) body: [u8; BODY],
    #[cfg(feature = "tls")]
    records: [[u8; crate::RECORD_BUFFER]; 2 * RECORD_SLOTS],
    #[cfg(feature = "tls")]
    home: crate::tls::RecordHome,
}

/// How many embedded-tls connections can be open at once (feature `tls`).
#[cfg(feature = "tls")]
pub(crate) const RECORD_SLOTS: usize = 2;

impl<
        const TOKEN: usize,
        const REQUEST: usize,
        const HEADERS: usize,
        const BODY: usize,
        const REFRESH: usize,
    > Resources<TOKEN, REQUEST, HEADERS, BODY, REFRESH>
{
    /// Zeroed buffers.
    pub const fn new() -> Self {
        Resources {
            request: [0; REQUEST],
            headers: [0; HEADERS],
            body: [0; BODY],
            #[cfg(feature = "tls")]
            records: [[0; crate::RECORD_BUFFER]; 2 * RECORD_SLOTS],
            #[cfg(feature = "tls")]
            home: crate::tls::RecordHome::new(),
        }
    }

    /// Bytes a [`Client::save`](crate::Client::save) snapshot of this client's token can
    /// take: [`snapshot_capacity`]`(TOKEN, REFRESH)`. 3,494 for the defaults.
    ///
    /// ```
    /// use tessera_embassy::Resources;
    /// // The defaults (the type's defaults apply in type position: `<Resources>`).
    /// assert_eq!(<Resources>::SNAPSHOT_CAPACITY, 3494);
    /// static KEPT: [u8; <Resources>::SNAPSHOT_CAPACITY] = [0; <Resources>::SNAPSHOT_CAPACITY];
    /// // A 1 KiB token, no refresh token:
    /// assert_eq!(Resources::<1024, 1024, 1024, 2048, 0>::SNAPSHOT_CAPACITY, 1446);
    /// # let _ = &KEPT;
    /// ```
    pub const SNAPSHOT_CAPACITY: usize = snapshot_capacity(TOKEN, REFRESH);

    pub(crate) fn split(&mut self) -> (FetchBuffers<'_>, Records<'_>) {
        #[cfg(feature = "tls")]
        {
            let Resources {
                request,
                headers,
                body,
                records,
                home,
            } = self;
            let home: &crate::tls::RecordHome = home;
            home.lend(records);
            let fetch = FetchBuffers {
                request,
                headers,
                body,
            };
            (fetch, home)
        }
        #[cfg(not(feature = "tls"))]
        {
            let fetch = FetchBuffers {
                request: &mut self.request,
                headers: &mut self.headers,
                body: &mut self.body,
            };
            (fetch, core::marker::PhantomData)
        }
    }
}

impl<
        const TOKEN: usize,
        const REQUEST: usize,
        const HEADERS: usize,
        const BODY: usize,
        const REFRESH: usize,
    > Default for Resources<TOKEN, REQUEST, HEADERS, BODY, REFRESH>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes a snapshot ([`Client::save`](crate::Client::save)) of a session with these
/// capacities can take: the snapshot's fixed part
/// ([`OVERHEAD`](tessera_core::snapshot::OVERHEAD), 52) and the grant as a token response
/// with every field at its capacity — the token (`token`), the refresh token (`refresh`),
/// [`SCOPE_CAPACITY`](tessera_core::SCOPE_CAPACITY) bytes of scopes and the JSON around them
/// (114 bytes): `token + refresh + 422`.
///
/// | `Resources` | `TOKEN` | `REFRESH` | snapshot capacity |
/// |---|---|---|---|
/// | the defaults | 2048 | 1024 | 3,494 |
/// | 4 KiB tokens | 4096 | 1024 | 5,542 |
/// | 1 KiB tokens, no refresh token | 1024 | 0 | 1,446 |
///
/// A real snapshot is the token's actual length, its refresh token and scopes, plus about
/// 115 bytes: the sandbox's 297-byte JWTs with two scopes take 457 bytes. The bound holds for tokens and scopes with no character JSON must escape
/// (`"`, `\`, control characters), which covers every RFC 6750 bearer token; a token that
/// needs escaping and does not fit is refused with [`Capacity`](tessera_core::snapshot::SnapshotError::Capacity)
/// and the size it needed, never cut.
pub const fn snapshot_capacity(token: usize, refresh: usize) -> usize {
    // {"access_token":"…","token_type":"Bearer","expires_in":4294967295,
    // "refresh_token":"…","scope":"a b …"}
    const JSON: usize = r#"{"access_token":"","token_type":"Bearer","expires_in":"#.len()
        + 10
        + r#","refresh_token":"""#.len()
        + r#","scope":"""#.len()
        + r#"}"#.len();
    const SCOPES: usize = tessera_core::SCOPE_CAPACITY + tessera_core::MAX_SCOPES - 1;
    tessera_core::snapshot::OVERHEAD + JSON + SCOPES + token + refresh
}

/// The buffers of one token fetch, handed from task to task with the ticket.
pub(crate) struct FetchBuffers<'r> {
    pub(crate) request: &'r mut [u8],
    pub(crate) headers: &'r mut [u8],
    pub(crate) body: &'r mut [u8],
}

/// embedded-tls's record slots, where the client's connector takes them (feature `tls`).
#[cfg(feature = "tls")]
pub(crate) type Records<'r> = &'r crate::tls::RecordHome;

/// No record slots without feature `tls`.
#[cfg(not(feature = "tls"))]
pub(crate) type Records<'r> = core::marker::PhantomData<&'r ()>;

impl FetchBuffers<'_> {
    /// Zeroes every buffer: the request held the secret, the response a token.
    pub(crate) fn wipe(&mut self) {
        self.request.fill(0);
        self.headers.fill(0);
        self.body.fill(0);
    }

    pub(crate) fn is_wiped(&self) -> bool {
        let zero = |b: &[u8]| b.iter().all(|&x| x == 0);
        zero(self.request) && zero(self.headers) && zero(self.body)
    }
}

/// The buffers of one downstream [`call`](crate::Client::call), owned by the caller (a
/// task's local, or a `StaticCell`). Each call has its own, so calls never wait for each
/// other nor for a token fetch.
///
/// - `HEAD`: the request's `Authorization: Bearer …` value, then the response's status
///   line and headers as they are read. The default (3 KiB) holds a 2 KiB token and 1 KiB
///   of response head; the token is written here directly, never copied elsewhere.
/// - `BODY`: the response headers kept for [`ApiResponse::header`](crate::ApiResponse::header)
///   (names lowercased), then the response body.
///
/// Both are wiped when the call ends (the head held the token).
pub struct CallBuffers<const HEAD: usize = 3072, const BODY: usize = 4096> {
    pub(crate) head: [u8; HEAD],
    pub(crate) body: [u8; BODY],
}

impl<const HEAD: usize, const BODY: usize> CallBuffers<HEAD, BODY> {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        CallBuffers {
            head: [0; HEAD],
            body: [0; BODY],
        }
    }
}

impl<const HEAD: usize, const BODY: usize> CallBuffers<HEAD, BODY> {
    /// Whether the head (which held `Bearer …`) is all zero: for tests.
    #[doc(hidden)]
    pub fn is_wiped(&self) -> bool {
        self.head.iter().all(|&b| b == 0)
    }
}

impl<const HEAD: usize, const BODY: usize> Default for CallBuffers<HEAD, BODY> {
    fn default() -> Self {
        Self::new()
    }
}

/// Zeroes a buffer when dropped: a call's head holds the bearer token until the call ends,
/// also when its future is dropped.
pub(crate) struct Wipe<'a>(pub(crate) &'a mut [u8]);

impl Drop for Wipe<'_> {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}
