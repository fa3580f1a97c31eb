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

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS` (UTC, no zone: Shogun's format).
pub fn iso8601_no_zone(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a civil date `(year, month, day)` (H. Hinnant's algorithm).
/// The sandbox's own copy: it is published and the `tessera-vectors` table is not; the fuzz
/// checks keep theirs in `tessera_vectors::civil_from_days`. Both are written independently
/// of tessera-core's ISO 8601 reader, which is what they test.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
    fn days_become_civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(10_957 + 365), (2000, 12, 31));
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
