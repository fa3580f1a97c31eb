//! The TLS matrix (tessera-sandbox's `pki::matrix`) through tessera-std (ureq + rustls) with
//! the application's own roots (`Trust::from_pem`, a bundle of three): every chain that
//! must connect fetches a token; every chain that must be refused fails with cause `tls`
//! before any HTTP request reaches the server (its request count stays 0). Host names are
//! `*.localhost`, which tessera-std resolves to loopback itself.

mod common;

use common::{creds, options};
use tessera_core::{ProviderKind, Stage};
use tessera_sandbox::pki::{matrix, Case, Expect, HOST};
use tessera_sandbox::{base_url_at, Endpoint, Sandbox};
use tessera_std::{Client, Options, OwnedProvider, Proxy, Trust};

/// Runs one case; `Ok(line)` describes what happened, `Err(line)` what went wrong.
fn run(case: &Case, trust: &Trust) -> Result<String, String> {
    let sb = Sandbox::start_tls_with(&case.chain, case.versions).unwrap();
    let origin = format!("https://{HOST}:{}", sb.addr().port());
    let idp = OwnedProvider::new(
        ProviderKind::OAuth2,
        base_url_at(&origin, ProviderKind::OAuth2),
    );
    let opts = Options {
        trust: trust.clone(),
        proxy: Proxy::None,
        ..options()
    };
    let client = Client::<_>::with_options(idp, creds(), opts);
    let outcome = client.token();
    let requests = sb.count(Endpoint::Token(ProviderKind::OAuth2));
    let expect_connect = case.expect == Expect::Connect;
    match (outcome, expect_connect) {
        (Ok(_), true) if requests == 1 => Ok(format!("connected ({requests} request)")),
        (Ok(_), _) => Err(format!(
            "connected ({requests} requests), expected {:?}",
            case.expect
        )),
        (Err(e), false) => {
            let stage = e.transport().map(|t| t.stage);
            match (stage, requests) {
                (Some(Stage::Tls), 0) => Ok(format!("refused: {e}")),
                _ => Err(format!("refused with {e} after {requests} requests")),
            }
        }
        (Err(e), true) => Err(format!("failed: {e}")),
    }
}

#[test]
fn every_certificate_shape_connects_or_is_refused_as_it_must() {
    let m = matrix();
    let trust = Trust::from_pem(m.roots_pem.as_bytes()).unwrap();
    let mut wrong = Vec::new();
    for case in &m.cases {
        // rustls checks dates against the system clock and refuses a leaf without SAN.
        let r = run(case, &trust);
        println!(
            "{:<62} {:>5} B  {}",
            case.name,
            case.chain.wire_len(),
            r.as_ref().unwrap_or_else(|e| e)
        );
        if let Err(e) = r {
            wrong.push(format!("{}: {e}", case.name));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
