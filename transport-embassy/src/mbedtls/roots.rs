//! The certificates a server's chain must lead to.

use core::ffi::CStr;
use core::fmt;

use mbedtls_rs::{Certificate, X509};
use tessera_core::{Stage, TransportError};

use super::failure::code_detail;

/// The certificates a server's chain must lead to: a PEM bundle (one or more `BEGIN
/// CERTIFICATE` blocks), NUL-terminated, kept where it is (flash) and parsed at the start of
/// each connection (MbedTLS's parsed form is neither `Send` nor `Sync`, and costs heap).
#[derive(Clone, Copy)]
pub struct Roots<'r> {
    pem: &'r CStr,
    count: usize,
}

/// Why a root bundle was refused by [`Roots::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RootsError {
    /// No `BEGIN CERTIFICATE` block.
    Empty,
    /// Block `index` (from 0) is not a certificate MbedTLS can parse.
    Malformed {
        /// Which block.
        index: usize,
    },
    /// Block `index` is longer than the 4 KiB of PEM this check parses one block in.
    TooLarge {
        /// Which block.
        index: usize,
    },
}

impl fmt::Display for RootsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootsError::Empty => f.write_str("no certificate in the root bundle"),
            RootsError::Malformed { index } => {
                write!(f, "root certificate {index} could not be parsed")
            }
            RootsError::TooLarge { index } => {
                write!(f, "root certificate {index} is over 4 KiB of PEM")
            }
        }
    }
}

impl core::error::Error for RootsError {}

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";

impl<'r> Roots<'r> {
    /// Checks every certificate of `pem` now (so a bad block is an error here, not a
    /// silently shorter list later: MbedTLS itself skips blocks it cannot parse), then keeps
    /// the bundle. Needs heap while it checks (freed before it returns).
    pub fn new(pem: &'r CStr) -> Result<Self, RootsError> {
        let text = pem.to_bytes();
        let mut count = 0;
        let mut at = 0;
        while let Some(start) = find(&text[at..], BEGIN) {
            let start = at + start;
            let end = find(&text[start..], END).ok_or(RootsError::Malformed { index: count })?
                + start
                + END.len();
            let block = &text[start..end];
            let mut one = [0u8; 4096];
            let room = one
                .get_mut(..=block.len())
                .ok_or(RootsError::TooLarge { index: count })?;
            room[..block.len()].copy_from_slice(block);
            let one = CStr::from_bytes_with_nul(room)
                .map_err(|_| RootsError::Malformed { index: count })?;
            Certificate::new(X509::PEM(one)).map_err(|_| RootsError::Malformed { index: count })?;
            count += 1;
            at = end;
        }
        if count == 0 {
            return Err(RootsError::Empty);
        }
        Ok(Roots { pem, count })
    }

    /// How many certificates.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none (never, for roots [`Roots::new`] accepted).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(super) fn parse(&self) -> Result<Certificate<'static>, TransportError> {
        Certificate::new(X509::PEM(self.pem)).map_err(|e| {
            TransportError::new(
                Stage::Tls,
                code_detail(e.code(), cfg!(feature = "mbedtls-dates")),
            )
        })
    }
}

impl fmt::Debug for Roots<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Roots({} certificates)", self.count)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
