//! [`Trust`]: which roots a server certificate must chain to.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Which roots a server certificate must chain to. The host name is always checked against
/// the certificate's subjectAltNames. There is no "verify nothing" setting.
///
/// ```no_run
/// use tessera_host::Trust;
/// // Only the company's own CA (one or more PEM certificates in the file):
/// let trust = Trust::from_pem_file("/etc/payments/ca.pem")?;
/// # Ok::<(), tessera_host::TrustError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub enum Trust {
    /// Mozilla's roots, compiled in (the `webpki-roots` crate): the same answer on every
    /// machine, whatever its certificate store holds. The default.
    #[default]
    WebPki,
    /// The operating system's certificate store and verifier (`rustls-platform-verifier`):
    /// for hosts whose administrators install a corporate root there.
    Platform,
    /// The application's own roots and nothing else: made by [`Trust::from_pem`] or
    /// [`Trust::from_pem_file`].
    Roots(Roots),
}

/// Root certificates the application chose (see [`Trust::from_pem`]). `Debug` shows how
/// many.
#[derive(Clone)]
pub struct Roots(Arc<Vec<CertificateDer<'static>>>);

impl Roots {
    /// How many certificates.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never, for roots made by [`Trust::from_pem`]).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The certificates (DER), each already checked to be usable as a root.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.0
    }
}

impl fmt::Debug for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Roots({} certificates)", self.0.len())
    }
}

impl Trust {
    /// Trusts exactly the certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks;
    /// other PEM items, such as keys, are ignored). No certificate, a block that is not
    /// valid PEM, or a certificate that cannot serve as a root is a [`TrustError`], here,
    /// so making a client with it cannot fail later.
    pub fn from_pem(pem: &[u8]) -> Result<Trust, TrustError> {
        let mut certs = Vec::new();
        for item in CertificateDer::pem_slice_iter(pem) {
            let cert = item.map_err(|_| TrustError::BadPem)?;
            if webpki::anchor_from_trusted_cert(&cert).is_err() {
                return Err(TrustError::BadCertificate { index: certs.len() });
            }
            certs.push(cert);
        }
        if certs.is_empty() {
            return Err(TrustError::NoCertificate);
        }
        Ok(Trust::Roots(Roots(Arc::new(certs))))
    }

    /// [`Trust::from_pem`] on a file's contents. A file that cannot be read is
    /// [`TrustError::Read`].
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Trust, TrustError> {
        let pem = std::fs::read(path).map_err(TrustError::Read)?;
        Self::from_pem(&pem)
    }
}

/// Why trust roots were refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrustError {
    /// The file could not be read.
    Read(std::io::Error),
    /// A `BEGIN CERTIFICATE` block is not valid PEM.
    BadPem,
    /// No certificate at all.
    NoCertificate,
    /// The certificate at `index` (counting from 0) cannot serve as a root (not X.509).
    BadCertificate {
        /// Its position among the certificates.
        index: usize,
    },
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::Read(e) => write!(f, "cannot read the CA file: {}", e.kind()),
            TrustError::BadPem => f.write_str("the CA file is not valid PEM"),
            TrustError::NoCertificate => f.write_str("the CA file holds no certificate"),
            TrustError::BadCertificate { index } => {
                write!(f, "certificate {index} in the CA file is not a usable root")
            }
        }
    }
}

impl std::error::Error for TrustError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrustError::Read(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_roots_are_refused_with_the_reason() {
        assert!(matches!(
            Trust::from_pem(b"no pem here"),
            Err(TrustError::NoCertificate)
        ));
        let not_x509 = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            Trust::from_pem(not_x509),
            Err(TrustError::BadCertificate { index: 0 })
        ));
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(Trust::from_pem(broken), Err(TrustError::BadPem)));
        assert!(matches!(
            Trust::from_pem_file("/nonexistent/ca.pem"),
            Err(TrustError::Read(_))
        ));
    }
}
