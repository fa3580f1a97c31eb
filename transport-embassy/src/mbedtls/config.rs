//! The MbedTLS connector: the network stack, the program's `Tls` and the roots.

use core::fmt;

use embedded_nal_async::{Dns, TcpConnect};
use mbedtls_rs::TlsReference;

use super::roots::Roots;
use super::session::Shared;
use crate::connector::{is_https, sealed, Plain, Policy};
use crate::error::Fault;
use crate::http::{Exchanged, Outgoing};
use crate::resources::Records;

/// HTTPS through MbedTLS over the network stack `tcp` + `dns`: the connector of a
/// [`Client`](crate::Client) whose `https://` requests (token and calls) are verified
/// against `roots`, the host checked against the certificate's subjectAltName (see the
/// [module](crate::mbedtls) docs). Plain `http://` goes through the same stack, kept as
/// with [`Plain`]. TLS connections are kept per origin and TLS 1.2 sessions resumed.
pub struct Mbedtls<'r, T: TcpConnect + 'r, D> {
    plain: Plain<'r, T, D>,
    tls: Shared<'r, T>,
}

impl<'r, T: TcpConnect + 'r, D: Dns> Mbedtls<'r, T, D> {
    /// HTTPS over `tcp` + `dns`, sessions made on `tls` (`Tls::reference()`), servers
    /// verified against `roots`.
    pub fn new(tcp: &'r T, dns: &'r D, tls: TlsReference<'r>, roots: Roots<'r>) -> Self {
        Mbedtls {
            plain: Plain::new(tcp, dns),
            tls: Shared::new(tls, roots),
        }
    }
}

impl<'r, T: TcpConnect + 'r, D: Dns> sealed::Exchange<'r> for Mbedtls<'r, T, D> {
    async fn exchange(
        &self,
        policy: Policy,
        _records: Records<'r>,
        out: Outgoing<'_>,
        rx: &mut [u8],
        into: &mut [u8],
        keep_headers: bool,
        safe: bool,
    ) -> Result<Exchanged, Fault> {
        if !is_https(out.url) {
            return self
                .plain
                .plain(policy, out, rx, into, keep_headers, safe)
                .await;
        }
        let wire = self.plain.wire(policy);
        self.tls
            .exchange(&wire, out, rx, into, keep_headers, safe)
            .await
    }

    fn close_all(&self) {
        sealed::Exchange::close_all(&self.plain);
        self.tls.forget();
    }
}

impl<T: TcpConnect, D> fmt::Debug for Mbedtls<'_, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbedtls").finish_non_exhaustive()
    }
}
