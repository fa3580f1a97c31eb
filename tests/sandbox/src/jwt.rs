//! The sandbox's tokens: HS256 JWTs signed with a key made at start-up, verified by the
//! protected endpoints, and listed for the secret-hygiene audit.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::server::Inner;
use crate::{ProviderKind, SCOPES};

/// Every JWT any sandbox in this process issued, for the secret-hygiene audit.
static ISSUED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Every token the sandboxes of this process have issued so far (the signed JWTs; the
/// `OversizedToken` fault's filler tokens are not secrets and are not listed).
pub fn issued_tokens() -> Vec<String> {
    ISSUED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A signing key, unpredictable enough for a test server: random-keyed hashes.
pub(crate) fn fresh_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    key
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS` (UTC, no zone: Shogun's format). Past
/// 9999-12-31T23:59:59, the last instant four year digits can write, it stays there.
pub fn iso8601_no_zone(unix: u64) -> String {
    // The calendar is the `time` crate's (here through rcgen already): written independently
    // of tessera-core's ISO 8601 reader, which is what these timestamps test.
    const LAST: u64 = 253_402_300_799;
    let t = i64::try_from(unix.min(LAST))
        .ok()
        .and_then(|unix| time::OffsetDateTime::from_unix_timestamp(unix).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl Inner {
    fn sign(&self, signing_input: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(signing_input.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Issues a JWT: `(token, lifetime)`.
    pub(crate) fn issue(&self, kind: ProviderKind, client_id: &str) -> (String, u64) {
        let (lifetime, jti, generation) = {
            let mut s = self.lock();
            s.next_jti += 1;
            let life = s.lifetimes.get(&kind).copied().unwrap_or(3600);
            (
                life,
                s.next_jti,
                s.generation.get(&kind).copied().unwrap_or(0),
            )
        };
        let iat = unix_now();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({
            "iss": format!("tessera-sandbox/{kind}"),
            "sub": client_id,
            "iat": iat,
            "exp": iat + lifetime,
            "jti": jti.to_string(),
            "gen": generation,
            "scp": SCOPES,
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let sig = self.sign(&input);
        let token = format!("{input}.{sig}");
        ISSUED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(token.clone());
        (token, lifetime)
    }

    /// The claims of a live token `kind` issued, or `None`.
    pub(crate) fn verify(&self, kind: ProviderKind, token: &str) -> Option<Value> {
        let (input, sig) = token.rsplit_once('.')?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        mac.update(input.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).ok()?).ok()?;
        let payload = input.split('.').nth(1)?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let generation = self.lock().generation.get(&kind).copied().unwrap_or(0);
        let live = claims["exp"].as_u64()? > unix_now()
            && claims["iss"] == format!("tessera-sandbox/{kind}")
            && claims["gen"].as_u64()? >= generation;
        live.then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_past_year_9999_stay_at_its_last_second() {
        assert_eq!(iso8601_no_zone(0), "1970-01-01T00:00:00");
        assert_eq!(iso8601_no_zone(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(iso8601_no_zone(253_402_300_800), "9999-12-31T23:59:59");
        assert_eq!(iso8601_no_zone(u64::MAX), "9999-12-31T23:59:59");
    }

    #[test]
    fn iso_dates_round_trip_through_the_core_parser() {
        for unix in [
            0u64,
            951_782_400,
            1_705_314_600,
            4_102_444_800,
            253_402_300_799,
        ] {
            let text = iso8601_no_zone(unix);
            assert_eq!(
                tessera_core::timestamp::parse(&text),
                Ok(unix as i64),
                "{text}"
            );
        }
        assert_eq!(iso8601_no_zone(1_705_314_600), "2024-01-15T10:30:00");
    }
}
