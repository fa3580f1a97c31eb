//! Writes the seed corpus the fuzzers start from into `fuzz/corpus/<target>/seed-*`: every
//! provider vector (token and validate responses), the JWTs and timestamps in them, and
//! credentials with every kind of character a request writer must escape.
//!
//! `cargo run -p tessera-fuzz-checks --bin seed-corpus` (run by `scripts/fuzz`).

use std::path::{Path, PathBuf};

use tessera_fuzz_checks::response_input;
use tessera_vectors::{Endpoint, VECTORS};

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(format!("seed-{name}")), data).unwrap();
}

/// Every `"…"` string in `body` that looks like a JWT or an ISO 8601 timestamp.
fn strings(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn main() {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut jwts = 0;
    let mut stamps = 0;
    for v in VECTORS.iter().flat_map(|t| t.iter()) {
        let input = response_input(v.provider, v.status, v.body);
        match v.endpoint {
            Endpoint::Token => write(&dir, "token_response", v.name, &input),
            Endpoint::Validate => write(&dir, "validate_response", v.name, &input[1..]),
        }
        for s in strings(v.body) {
            if s.starts_with("eyJ") && s.matches('.').count() == 2 && jwts < 8 {
                let mut data = vec![1u8];
                data.extend_from_slice(s.as_bytes());
                write(&dir, "jwt_lifetime", &format!("{}-{jwts}", v.name), &data);
                jwts += 1;
            }
            if s.len() >= 19 && s.as_bytes().get(4) == Some(&b'-') && s.contains('T') {
                write(
                    &dir,
                    "timestamp",
                    &format!("{}-{stamps}", v.name),
                    s.as_bytes(),
                );
                stamps += 1;
            }
        }
    }
    let payloads: [&[u8]; 4] = [
        br#"{"exp":1700003600,"iat":1700000000}"#,
        br#"{"iat":0,"sub":"x","exp":18446744073709551615}"#,
        br#"{"exp":1.7e9,"iat":1}"#,
        br#"{"nested":{"exp":5},"exp":10,"iat":4}"#,
    ];
    for (i, p) in payloads.iter().enumerate() {
        let mut data = vec![0u8];
        data.extend_from_slice(p);
        write(&dir, "jwt_lifetime", &format!("payload-{i}"), &data);
    }
    let stamps: [&str; 6] = [
        "2024-02-29T23:59:59Z",
        "1970-01-01T00:00:00Z",
        "2025-06-01T12:00:00.123456+05:30",
        "2025-06-01T12:00:00-08:00",
        "9999-12-31T23:59:59Z",
        "2025-06-01 12:00:00Z",
    ];
    for (i, s) in stamps.iter().enumerate() {
        write(&dir, "timestamp", &format!("edge-{i}"), s.as_bytes());
    }
    let creds: [(&str, &str); 4] = [
        ("client-id", "s3cr3t"),
        ("id with spaces", "p\"a\\s/s\u{0}\u{1f}&=+%é😀"),
        ("", ""),
        ("ü:ber", "line\nbreak\ttab"),
    ];
    for provider in 0..8u8 {
        for (i, (id, secret)) in creds.iter().enumerate() {
            let mut data = vec![provider, 200];
            data.extend_from_slice(id.as_bytes());
            data.push(0);
            data.extend_from_slice(secret.as_bytes());
            write(&dir, "token_request", &format!("p{provider}-{i}"), &data);
        }
    }
}
