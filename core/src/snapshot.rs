//! Snapshots: a session's token written into caller bytes and read back after a restart,
//! deep sleep or reboot ([`Session::snapshot`](crate::Session::snapshot) and
//! [`Session::restore`](crate::Session::restore)).
//!
//! A monotonic clock restarts with the chip or the process; a wall clock does not. So a
//! snapshot stores the token's expiry as **absolute wall-clock time** (Unix milliseconds),
//! and is restored only when the caller vouches for the wall clock ([`WallTime`]), with an
//! allowance for how wrong that clock may be. Without a wall clock it is discarded.
//!
//! The layout (version 1), all of it authenticated:
//!
//! | bytes | what |
//! |---|---|
//! | 4 | `TSN` and the version |
//! | 8 | binding fingerprint: which key, endpoint, client id, scope and credential |
//! | 12 | nonce |
//! | n | sealed: written-at and expires-at (Unix ms), then the grant as a token response |
//! | 16 | Poly1305 tag |
//!
//! **Sealed**: ChaCha20-Poly1305. The key is derived (HMAC-SHA-256) from the credential (the
//! client secret) or is the application's own 32 bytes ([`Key::Application`]); either way
//! it is bound to the provider's [identity](crate::Provider::identity) (API, endpoint,
//! scope), the client id and the credential, so a different endpoint, client, scope or a
//! rotated secret never reuses a token: its snapshot reads as [`SnapshotError::Foreign`].
//! The nonce is synthetic (an HMAC of the contents), so no RNG is needed and a nonce is never
//! reused for different contents. The fingerprint reveals nothing of the secret.
//!
//! A key derived from the credential is as strong as the secret: a short, guessable secret
//! can be tried offline against a stolen snapshot. Use [`Key::Application`] (a device key
//! from secure storage) where that matters.

use core::fmt;
use core::time::Duration;

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use hmac::{Hmac, Mac};
use poly1305::universal_hash::{KeyInit, UniversalHash};
use poly1305::Poly1305;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::credentials::Credentials;
use crate::provider::Provider;

type HmacSha256 = Hmac<Sha256>;

/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
const MAGIC: &[u8; 3] = b"TSN";
const FINGERPRINT: usize = 8;
const NONCE: usize = 12;
const TAG: usize = 16;
/// Header: magic, version, fingerprint, nonce.
pub(crate) const HEADER: usize = 4 + FINGERPRINT + NONCE;
/// Sealed metadata: written-at and expires-at, Unix ms.
pub(crate) const META: usize = 16;
/// Bytes a snapshot takes besides the grant's JSON: header, metadata and tag (52).
pub const OVERHEAD: usize = HEADER + META + TAG;

/// The wall-clock time, as the caller vouches for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WallTime {
    /// Now, in Unix milliseconds.
    pub unix_ms: u64,
    /// How wrong the clock may be, counting both the time the snapshot was written and now
    /// (RTC drift over a deep sleep, SNTP's error). A restored token is served for that
    /// much less, so it is never served past its real expiry.
    pub uncertainty: Duration,
}

impl WallTime {
    /// A wall time the caller vouches for.
    pub const fn new(unix_ms: u64, uncertainty: Duration) -> Self {
        WallTime {
            unix_ms,
            uncertainty,
        }
    }
}

/// Which key seals a snapshot.
#[derive(Clone, Copy)]
pub enum Key<'k> {
    /// Derived from the client secret (and bound to the provider and client id).
    Credentials,
    /// The application's own 32-byte key (a device key from secure storage); still bound to
    /// the provider, client id and credential.
    Application(&'k [u8; 32]),
}

impl fmt::Debug for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Credentials => f.write_str("Credentials"),
            Key::Application(_) => f.write_str("Application(<redacted>)"),
        }
    }
}

/// Why a snapshot could not be written or was refused. Nothing in the session changes
/// when it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SnapshotError {
    /// Writing: there is no usable token to save.
    NoToken,
    /// Writing: `out` is too small; restoring: the token does not fit this session's grant.
    Capacity {
        /// What did not fit.
        field: &'static str,
        /// Bytes it needed.
        needed: usize,
        /// Bytes there were.
        capacity: usize,
    },
    /// Shorter than the smallest snapshot.
    Truncated,
    /// Not a Tessera snapshot (garbage, or another format).
    NotSnapshot,
    /// A snapshot of another format version.
    Version(u8),
    /// Written for another provider endpoint, client id, scope, credential or key.
    Foreign,
    /// Its contents were changed or damaged: authentication failed.
    Tampered,
    /// Authentic but unreadable (written by a faulty build).
    Malformed,
    /// No wall clock to judge it by: discarded.
    NoWallClock,
    /// The wall clock reads earlier than when the snapshot was written, or leaves more time
    /// than the token ever had: the clock cannot be trusted, so the token is not.
    ClockBehind,
    /// The token has expired, or would within the clock's uncertainty and the in-flight
    /// allowance.
    Expired,
    /// The token is one this session reported rejected ([`Session::reject`](crate::Session::reject)):
    /// an API refused it, so it is never served again.
    Rejected,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::NoToken => f.write_str("no usable token to save"),
            SnapshotError::Capacity {
                field,
                needed,
                capacity,
            } => write!(
                f,
                "`{field}` needs {needed} but its buffer holds {capacity}"
            ),
            SnapshotError::Truncated => f.write_str("snapshot truncated"),
            SnapshotError::NotSnapshot => f.write_str("not a snapshot"),
            SnapshotError::Version(v) => write!(f, "snapshot format version {v} not supported"),
            SnapshotError::Foreign => {
                f.write_str("snapshot of another endpoint, client, scope, credential or key")
            }
            SnapshotError::Tampered => f.write_str("snapshot damaged or tampered with"),
            SnapshotError::Malformed => f.write_str("snapshot contents unreadable"),
            SnapshotError::NoWallClock => f.write_str("no valid wall clock: snapshot discarded"),
            SnapshotError::ClockBehind => {
                f.write_str("wall clock behind the snapshot: clock not trusted")
            }
            SnapshotError::Expired => f.write_str("snapshot token expired"),
            SnapshotError::Rejected => {
                f.write_str("snapshot token was reported rejected by an API: not used again")
            }
        }
    }
}

impl core::error::Error for SnapshotError {}

/// The keys of one binding; wiped on drop.
pub(crate) struct Keys {
    enc: [u8; 32],
    nonce: [u8; 32],
    fingerprint: [u8; FINGERPRINT],
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.nonce.zeroize();
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Result<[u8; 32], SnapshotError> {
    // HMAC takes a key of any length; the error cannot happen.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| SnapshotError::Malformed)?;
    for p in parts {
        m.update(p);
    }
    Ok(m.finalize().into_bytes().into())
}

impl Keys {
    /// The binding's fingerprint (stored in the clear in every snapshot).
    pub(crate) fn fingerprint(&self) -> [u8; FINGERPRINT] {
        self.fingerprint
    }

    /// The keys for `provider` + `credentials` under `key`.
    pub(crate) fn derive(
        provider: &impl Provider,
        credentials: &Credentials,
        key: Key<'_>,
    ) -> Result<Keys, SnapshotError> {
        // What the token is bound to, besides the secret.
        let mut h = Sha256::new();
        h.update(b"tessera snapshot binding v1");
        let id = credentials.client_id();
        h.update(u32::try_from(id.len()).unwrap_or(u32::MAX).to_le_bytes());
        h.update(id.as_bytes());
        provider.identity(&mut |piece| h.update(piece));
        let binding: [u8; 32] = h.finalize().into();
        // The credential, bound to all of that.
        let mut root = mac(
            credentials.expose_secret().as_bytes(),
            &[b"tessera snapshot credential v1", &binding],
        )?;
        if let Key::Application(app) = key {
            let bound = mac(app, &[b"tessera snapshot application v1", &root])?;
            root.zeroize();
            root = bound;
        }
        let keys = (|| {
            let fp = mac(&root, &[b"fingerprint"])?;
            let mut fingerprint = [0u8; FINGERPRINT];
            fingerprint
                .iter_mut()
                .zip(fp.iter())
                .for_each(|(d, s)| *d = *s);
            Ok(Keys {
                enc: mac(&root, &[b"encryption"])?,
                nonce: mac(&root, &[b"nonce"])?,
                fingerprint,
            })
        })();
        root.zeroize();
        keys
    }
}

/// RFC 8439's ChaCha20-Poly1305, from its two primitives: every step returns an error
/// where the `chacha20poly1305` crate unwraps one (a panic path the firmware must not
/// carry). Checked against RFC 8439's test vector and, in tests, against that crate.
pub(crate) struct Aead<'k> {
    key: &'k [u8; 32],
    nonce: [u8; NONCE],
}

impl Aead<'_> {
    /// The cipher positioned at block 1, and the Poly1305 keyed from block 0.
    fn start(&self) -> Result<(ChaCha20, Poly1305), ()> {
        let mut cipher = ChaCha20::new(self.key.into(), (&self.nonce).into());
        let mut block0 = [0u8; 64];
        cipher.try_apply_keystream(&mut block0).map_err(|_| ())?;
        let mut poly_key = [0u8; 32];
        poly_key
            .iter_mut()
            .zip(block0.iter())
            .for_each(|(d, s)| *d = *s);
        let mac = Poly1305::new((&poly_key).into());
        block0.zeroize();
        poly_key.zeroize();
        Ok((cipher, mac))
    }

    fn authenticate(mut mac: Poly1305, aad: &[u8], ciphertext: &[u8]) -> Poly1305 {
        mac.update_padded(aad);
        mac.update_padded(ciphertext);
        let mut lengths = [0u8; 16];
        let (a, c) = lengths.split_at_mut(8);
        a.iter_mut()
            .zip((aad.len() as u64).to_le_bytes())
            .for_each(|(d, s)| *d = s);
        c.iter_mut()
            .zip((ciphertext.len() as u64).to_le_bytes())
            .for_each(|(d, s)| *d = s);
        mac.update_padded(&lengths);
        mac
    }

    /// Encrypts `body` in place; the tag.
    pub(crate) fn seal(&self, aad: &[u8], body: &mut [u8]) -> Result<[u8; TAG], ()> {
        let (mut cipher, mac) = self.start()?;
        cipher.try_apply_keystream(body).map_err(|_| ())?;
        Ok(Self::authenticate(mac, aad, body).finalize().into())
    }

    /// Checks `tag`, then decrypts `body` in place (untouched when the tag is wrong).
    pub(crate) fn open(&self, aad: &[u8], body: &mut [u8], tag: &[u8; TAG]) -> Result<(), ()> {
        let (mut cipher, mac) = self.start()?;
        Self::authenticate(mac, aad, body)
            .verify(tag.into())
            .map_err(|_| ())?;
        cipher.try_apply_keystream(body).map_err(|_| ())
    }
}

/// Seals `meta` + `json` (already written at `out[HEADER + META..][..json_len]`) in place:
/// writes the header, the metadata and the tag. The snapshot's length.
pub(crate) fn seal(
    keys: &Keys,
    written_at: u64,
    expires_at: u64,
    json_len: usize,
    out: &mut [u8],
) -> Result<usize, SnapshotError> {
    let body_len = META + json_len;
    let total = HEADER + body_len + TAG;
    let capacity = out.len();
    let too_small = SnapshotError::Capacity {
        field: "snapshot",
        needed: total,
        capacity,
    };
    let (header, rest) = out.split_at_mut_checked(HEADER).ok_or(too_small)?;
    let (body, rest) = rest.split_at_mut_checked(body_len).ok_or(too_small)?;
    let tag_out = rest.get_mut(..TAG).ok_or(too_small)?;
    let (meta, _) = body.split_at_mut_checked(META).ok_or(too_small)?;
    put(meta, 0, written_at);
    put(meta, 8, expires_at);
    write_prefix(header, &keys.fingerprint);
    // Synthetic nonce: an HMAC of the header so far and the plaintext.
    let digest = mac(
        &keys.nonce,
        &[header.get(..4 + FINGERPRINT).unwrap_or_default(), body],
    )?;
    let mut nonce = [0u8; NONCE];
    nonce
        .iter_mut()
        .zip(digest.iter())
        .for_each(|(d, s)| *d = *s);
    header
        .iter_mut()
        .skip(4 + FINGERPRINT)
        .zip(nonce)
        .for_each(|(d, s)| *d = s);
    let aead = Aead {
        key: &keys.enc,
        nonce,
    };
    let tag = aead.seal(header, body).map_err(|_| too_small)?;
    tag_out
        .iter_mut()
        .zip(tag.iter())
        .for_each(|(d, s)| *d = *s);
    Ok(total)
}

fn write_prefix(header: &mut [u8], fingerprint: &[u8; FINGERPRINT]) {
    let prefix = MAGIC
        .iter()
        .chain(core::iter::once(&VERSION))
        .chain(fingerprint.iter());
    header.iter_mut().zip(prefix).for_each(|(d, s)| *d = *s);
}

/// What a snapshot's sealed metadata says.
pub(crate) struct Meta {
    pub(crate) written_at: u64,
    pub(crate) expires_at: u64,
}

/// Checks and opens `bytes` in place: the metadata and the grant's JSON (decrypted in
/// `bytes`). On any refusal before decryption `bytes` is unchanged.
pub(crate) fn open<'b>(
    keys: &Keys,
    bytes: &'b mut [u8],
) -> Result<(Meta, &'b [u8]), SnapshotError> {
    if bytes.len() < OVERHEAD {
        if bytes.len() >= 3 && bytes.get(..3) != Some(MAGIC.as_slice()) {
            return Err(SnapshotError::NotSnapshot);
        }
        return Err(SnapshotError::Truncated);
    }
    let (header, rest) = bytes
        .split_at_mut_checked(HEADER)
        .ok_or(SnapshotError::Truncated)?;
    if header.get(..3) != Some(MAGIC.as_slice()) {
        return Err(SnapshotError::NotSnapshot);
    }
    match header.get(3) {
        Some(&VERSION) => {}
        Some(&v) => return Err(SnapshotError::Version(v)),
        None => return Err(SnapshotError::Truncated),
    }
    if header.get(4..4 + FINGERPRINT) != Some(keys.fingerprint.as_slice()) {
        return Err(SnapshotError::Foreign);
    }
    let body_len = rest.len().saturating_sub(TAG);
    let (body, tag) = rest
        .split_at_mut_checked(body_len)
        .ok_or(SnapshotError::Truncated)?;
    let nonce: [u8; NONCE] = header
        .get(4 + FINGERPRINT..)
        .and_then(|n| n.try_into().ok())
        .ok_or(SnapshotError::Truncated)?;
    let tag: [u8; TAG] = (&*tag).try_into().map_err(|_| SnapshotError::Truncated)?;
    let aead = Aead {
        key: &keys.enc,
        nonce,
    };
    aead.open(header, body, &tag)
        .map_err(|_| SnapshotError::Tampered)?;
    let (meta, json) = body
        .split_at_checked(META)
        .ok_or(SnapshotError::Malformed)?;
    let meta = Meta {
        written_at: get(meta, 0),
        expires_at: get(meta, 8),
    };
    Ok((meta, json))
}

fn put(buf: &mut [u8], at: usize, v: u64) {
    if let Some(dst) = buf.get_mut(at..at + 8) {
        dst.iter_mut()
            .zip(v.to_le_bytes())
            .for_each(|(d, s)| *d = s);
    }
}

fn get(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = buf.get(at..at + 8) {
        b.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn unhex(s: &str) -> Vec<u8> {
        let s: std::string::String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn aead_matches_rfc8439_2_8_2() {
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let nonce: [u8; 12] = unhex("070000004041424344454647").try_into().unwrap();
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let mut body = plain.to_vec();
        let aead = Aead { key: &key, nonce };
        let tag = aead.seal(&aad, &mut body).unwrap();
        let want = unhex(
            "d31a8d34648e60db7b86afbc53ef7ec2 a4aded51296e08fea9e2b5a736ee62d6
             3dbea45e8ca9671282fafb69da92728b 1a71de0a9e060b2905d6a5b67ecd3b36
             92ddbd7f2d778b8c9803aee328091b58 fab324e4fad675945585808b4831d7bc
             3ff4def08e4b7a9de576d26586cec64b 6116",
        );
        assert_eq!(body, want);
        assert_eq!(tag.to_vec(), unhex("1ae10b594f09e26a7e902ecbd0600691"));
        aead.open(&aad, &mut body, &tag).unwrap();
        assert_eq!(body, plain);
        // A wrong tag leaves the ciphertext untouched.
        let mut bad = tag;
        bad[0] ^= 1;
        let mut sealed = want.clone();
        assert!(aead.open(&aad, &mut sealed, &bad).is_err());
        assert_eq!(sealed, want);
    }

    #[test]
    fn aead_agrees_with_the_chacha20poly1305_crate() {
        use chacha20poly1305::aead::AeadInPlace;
        use chacha20poly1305::KeyInit as _;
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 200, 1100] {
            let key: [u8; 32] = core::array::from_fn(|i| (i * 7 + len) as u8);
            let nonce: [u8; 12] = core::array::from_fn(|i| (i * 13 + len) as u8);
            let aad: Vec<u8> = (0..(len % 29)).map(|i| i as u8).collect();
            let plain: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let mut ours = plain.clone();
            let tag = Aead { key: &key, nonce }.seal(&aad, &mut ours).unwrap();
            let mut theirs = plain.clone();
            let want = chacha20poly1305::ChaCha20Poly1305::new(&key.into())
                .encrypt_in_place_detached(&nonce.into(), &aad, &mut theirs)
                .unwrap();
            assert_eq!(ours, theirs, "{len}");
            assert_eq!(tag.as_slice(), want.as_slice(), "{len}");
        }
    }
}
