//! HTTPS through embedded-tls (feature `tls`): the CA, the RNG and the record buffers.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embedded_nal_async::{Dns, TcpConnect};

use crate::connector::{is_https, sealed, Plain, Policy};
use crate::error::Fault;
use crate::http::{exchange, Exchanged, Outgoing, TlsConn};

/// Bytes of each of embedded-tls's two record buffers (read, write) per connection: any
/// record a server may send (16 KiB of plaintext plus the record overhead).
pub const RECORD_BUFFER: usize = 16640;

/// HTTPS through embedded-tls (feature `tls`) over the network stack `tcp` + `dns`, every
/// server verified against one CA (see the crate docs for what embedded-tls checks). Plain
/// `http://` goes through the same stack, kept as with [`Plain`].
///
/// Each TLS connection runs in one of the two record slots the client's
/// [`Resources`](crate::Resources) hold (a token fetch and a call, or two calls, at once; a
/// third waits for a slot, on a signal). embedded-tls does not resume sessions, and its
/// connections are not kept: each `https://` request is a new connection and a full
/// handshake, and its record slot is wiped when it closes.
pub struct EmbeddedTls<'r, T: TcpConnect + 'r, D> {
    plain: Plain<'r, T, D>,
    ca: &'r [u8],
    rng: Mutex<CriticalSectionRawMutex, RefCell<&'r mut (dyn rand_core::RngCore + Send)>>,
}

impl<'r, T: TcpConnect + 'r, D: Dns> EmbeddedTls<'r, T, D> {
    /// HTTPS over `tcp` + `dns`, servers verified against `ca` (one CA certificate, DER);
    /// each connection's seed drawn from `rng` (the chip's TRNG).
    pub fn new(
        tcp: &'r T,
        dns: &'r D,
        ca: &'r [u8],
        rng: &'r mut (dyn rand_core::RngCore + Send),
    ) -> Self {
        EmbeddedTls {
            plain: Plain::new(tcp, dns),
            ca,
            rng: Mutex::new(RefCell::new(rng)),
        }
    }
}

impl<'r, T: TcpConnect + 'r, D: Dns> sealed::Exchange<'r> for EmbeddedTls<'r, T, D> {
    const RECORDS: bool = true;

    async fn exchange(
        &self,
        policy: Policy,
        records: Option<(&mut [u8], &mut [u8])>,
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
        let Some((read, write)) = records else {
            // The client always passes a slot for https: a bug, refused rather than sent.
            return Err(Fault::Net(crate::connector::PLAIN_ONLY));
        };
        let conn = TlsConn {
            ca: self.ca,
            seed: self.rng.lock(|r| r.borrow_mut().next_u64()),
            read,
            write,
        };
        let wire = self.plain.wire(policy);
        exchange(
            &wire,
            &self.plain.kept,
            Some(conn),
            out,
            rx,
            into,
            keep_headers,
            safe,
        )
        .await
    }

    fn close_all(&self) {
        sealed::Exchange::close_all(&self.plain);
    }
}

/// embedded-tls's crypto for one connection: a ChaCha8 stream seeded from the client's RNG,
/// and the chain checked against the application's CA.
struct Provider {
    rng: rand_chacha::ChaCha8Rng,
    verifier:
        embedded_tls::pki::CertVerifier<embedded_tls::Aes128GcmSha256, embedded_tls::NoClock, 4096>,
}

impl embedded_tls::CryptoProvider for Provider {
    type CipherSuite = embedded_tls::Aes128GcmSha256;
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl embedded_tls::CryptoRngCore {
        &mut self.rng
    }

    fn verifier(
        &mut self,
    ) -> Result<&mut impl embedded_tls::TlsVerifier<Self::CipherSuite>, embedded_tls::TlsError>
    {
        Ok(&mut self.verifier)
    }
}

/// A TLS 1.3 session over `socket` with `host` (SNI and the certificate's name), verified
/// against `conn`'s CA; the handshake's failures are classified (stage `tls`).
pub(crate) async fn open<'a, S>(
    socket: S,
    host: &str,
    conn: crate::http::TlsConn<'a>,
) -> Result<embedded_tls::TlsConnection<'a, S, embedded_tls::Aes128GcmSha256>, crate::error::Fault>
where
    S: embedded_io_async::Read + embedded_io_async::Write + 'a,
{
    use rand_core_06::SeedableRng;
    let config = embedded_tls::TlsConfig::new()
        .with_server_name(host)
        .with_ca(embedded_tls::Certificate::X509(conn.ca));
    let mut session = embedded_tls::TlsConnection::new(socket, conn.read, conn.write);
    let provider = Provider {
        rng: rand_chacha::ChaCha8Rng::seed_from_u64(conn.seed),
        verifier: embedded_tls::pki::CertVerifier::new(),
    };
    session
        .open(embedded_tls::TlsContext::new(&config, provider))
        .await
        .map_err(|e| {
            crate::error::Fault::Net(tessera_core::TransportError::new(
                tessera_core::Stage::Tls,
                crate::error::tls_detail(&e),
            ))
        })?;
    Ok(session)
}
