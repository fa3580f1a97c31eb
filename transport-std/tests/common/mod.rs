//! Helpers shared by the integration tests (each test file includes it as a module).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use tessera_core::{Credentials, ProviderKind};
use tessera_sandbox::{Sandbox, CLIENT_ID, CLIENT_SECRET};
use tessera_std::{Client, Options, OwnedProvider};

pub fn creds() -> Credentials {
    Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap()
}

/// Options for a test: refreshes in the caller's thread, short timeouts (only ever waited
/// out against a listener that never answers).
pub fn options() -> Options {
    Options {
        refresh_in_background: false,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ..Options::default()
    }
}

pub fn oauth(sb: &Sandbox, options: Options) -> Client<OwnedProvider> {
    let idp = OwnedProvider::new(ProviderKind::OAuth2, sb.base_url(ProviderKind::OAuth2));
    Client::with_options(idp, creds(), options)
}

/// `-----BEGIN CERTIFICATE-----` around `der`.
pub fn pem(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

/// Waits (bounded) until `cond` holds; whether it did. For what a background thread does.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

/// Every text an error can show: Display, Debug, and its source chain.
pub fn texts(e: &tessera_std::Error) -> Vec<String> {
    let mut out = vec![e.to_string(), format!("{e:?}")];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push(s.to_string());
        src = s.source();
    }
    out
}

pub fn assert_no_secret(e: &tessera_std::Error) {
    for t in texts(e) {
        assert!(!t.contains(CLIENT_SECRET), "secret in error text: {t}");
        assert!(!t.contains("s3cr3t"), "secret in error text: {t}");
    }
}
