//! Client credentials: an id that may be shown and a secret that never is.

use core::fmt;

use zeroize::Zeroize;

use crate::error::Error;

/// Capacity of a client id, in bytes.
pub const CLIENT_ID_CAPACITY: usize = 128;
/// Capacity of a client secret, in bytes. Real secrets are 36–64 bytes (UUIDs, Okta and
/// Azure keys); 256 leaves room.
pub const SECRET_CAPACITY: usize = 256;

/// A client id and secret.
///
/// The secret is never printed (`Debug` and `defmt` show `<redacted>`), is reachable only
/// through [`Credentials::expose_secret`], and is zeroized when the value is dropped.
///
/// ```
/// use tessera_core::Credentials;
/// let c = Credentials::new("terminal-7", "s3cr3t").unwrap();
/// assert_eq!(format!("{c:?}"), r#"Credentials { client_id: "terminal-7", secret: <redacted> }"#);
/// ```
pub struct Credentials {
    client_id: heapless::String<CLIENT_ID_CAPACITY>,
    secret: [u8; SECRET_CAPACITY],
    secret_len: usize,
}

impl Credentials {
    /// Checks both against their capacities and stores them.
    pub fn new(client_id: &str, secret: &str) -> Result<Self, Error> {
        let mut id = heapless::String::new();
        id.push_str(client_id).map_err(|_| Error::Capacity {
            field: "client_id",
            needed: client_id.len(),
            capacity: CLIENT_ID_CAPACITY,
        })?;
        let mut buf = [0u8; SECRET_CAPACITY];
        let Some(dst) = buf.get_mut(..secret.len()) else {
            return Err(Error::Capacity {
                field: "client_secret",
                needed: secret.len(),
                capacity: SECRET_CAPACITY,
            });
        };
        // A zip, not `copy_from_slice`, so no panic path survives (lengths are equal).
        dst.iter_mut()
            .zip(secret.as_bytes())
            .for_each(|(d, b)| *d = *b);
        Ok(Credentials {
            client_id: id,
            secret: buf,
            secret_len: secret.len(),
        })
    }

    /// The client id (safe to log).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The secret. Call this only to put it on the wire.
    pub fn expose_secret(&self) -> &str {
        self.secret
            .get(..self.secret_len)
            .and_then(|s| core::str::from_utf8(s).ok())
            .unwrap_or_default()
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        self.secret.zeroize();
        self.secret_len = 0;
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id.as_str())
            .field("secret", &format_args!("<redacted>"))
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Credentials {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Credentials {{ client_id: {=str}, secret: <redacted> }}",
            self.client_id.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    #[test]
    fn capacity_errors_name_the_field() {
        let long = "x".repeat(SECRET_CAPACITY + 1);
        assert_eq!(
            Credentials::new("id", &long).unwrap_err(),
            Error::Capacity {
                field: "client_secret",
                needed: 257,
                capacity: 256
            }
        );
        let id = "i".repeat(CLIENT_ID_CAPACITY + 5);
        assert_eq!(
            Credentials::new(&id, "s").unwrap_err(),
            Error::Capacity {
                field: "client_id",
                needed: 133,
                capacity: 128
            }
        );
        let exact = "x".repeat(SECRET_CAPACITY);
        assert_eq!(
            Credentials::new("id", &exact).unwrap().expose_secret(),
            exact
        );
    }

    #[test]
    fn secret_never_in_debug() {
        let c = Credentials::new("id", "hunter2-\"quoted\"").unwrap();
        let dbg = std::format!("{c:?} {c:#?}");
        assert!(!dbg.contains("hunter2"));
        assert_eq!(c.expose_secret(), "hunter2-\"quoted\"");
    }
}
