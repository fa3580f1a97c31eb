//! `tessera token … --transport embassy --ca …`: the terminal's client (tessera-embassy,
//! MbedTLS) run from the CLI against the sandbox over HTTPS, with an RSA-2048 chain whose
//! host is only in subjectAltName; a chain from another root is refused with cause `tls`
//! before any request; `https://` without `--ca` is a usage error.

use std::io::Write;
use std::process::Stdio;

use tessera_core::ProviderKind;
use tessera_sandbox::pki::{matrix, Case, HOST};
use tessera_sandbox::{base_url_at, Endpoint, Sandbox, CLIENT_ID, CLIENT_SECRET};

mod common;

/// `tessera token oauth2 --token-url URL --client-id … --transport embassy` plus `extra`,
/// the secret on stdin: (exit code, stdout, stderr).
fn token_embassy(url: &str, extra: &[&str]) -> (i32, String, String) {
    let mut cmd = common::tessera_command();
    cmd.args([
        "token",
        "oauth2",
        "--token-url",
        url,
        "--client-id",
        CLIENT_ID,
    ])
    .args(["--transport", "embassy"])
    .args(extra)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(CLIENT_SECRET.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A sandbox serving `case`'s chain, and its OAuth 2.0 token URL by the matrix's host name.
fn serve(case: &Case) -> (Sandbox, String) {
    let sb = Sandbox::start_tls_with(&case.chain, case.versions).unwrap();
    let url = base_url_at(
        &format!("https://{HOST}:{}", sb.addr().port()),
        ProviderKind::OAuth2,
    );
    (sb, url)
}

#[test]
fn the_terminal_client_fetches_over_https_with_the_given_roots() {
    let m = matrix();
    let dir = std::env::temp_dir().join(format!("tessera-cli-embassy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("roots.pem");
    std::fs::write(&ca, &m.roots_pem).unwrap();
    let ca = ca.to_str().unwrap();

    // RSA-2048 with an intermediate, the host only in SAN, over TLS 1.2.
    let (sb, url) = serve(&m.cases[0]);
    let (code, out, err) = token_embassy(&url, &["--ca", ca]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(r#"{"ok":true,"#), "{out}");
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 1);

    // The same call against a chain from a root that is not in the file.
    let rogue = m.cases.iter().find(|c| c.name == "untrusted root").unwrap();
    let (sb, url) = serve(rogue);
    let (code, out, _) = token_embassy(&url, &["--ca", ca]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(r#""kind":"transport","cause":"tls","detail":"certificate not trusted""#),
        "{out}"
    );
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 0);

    // https:// with no roots: the terminal has no system store to fall back on.
    let (code, _, err) = token_embassy(&url, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs --ca"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `tessera call … --repeat 10` against the sandbox over HTTPS prints ten answered calls and
/// the summary `1 connection, 1 full handshake` on both transports (the token fetch's
/// connection carries the ten calls), as the server counted too; the token is never printed.
#[test]
fn call_repeat_keeps_one_connection_on_both_transports() {
    let m = matrix();
    let dir = std::env::temp_dir().join(format!("tessera-cli-call-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("roots.pem");
    std::fs::write(&ca, &m.roots_pem).unwrap();
    let ca = ca.to_str().unwrap();
    for transport in ["std", "embassy"] {
        let (sb, url) = serve(&m.cases[0]);
        let api = format!("https://{HOST}:{}/oauth2/protected", sb.addr().port());
        let mut cmd = common::tessera_command();
        cmd.args([
            "call",
            "oauth2",
            "--token-url",
            &url,
            "--client-id",
            CLIENT_ID,
        ])
        .args(["--url", &api, "--repeat", "10", "--ca", ca])
        .args(["--header", "Idempotency-Key: k-1", "--transport", transport])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(CLIENT_SECRET.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(0), "{transport}: {stdout}{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 11, "{transport}: {stdout}");
        for line in &lines[..10] {
            assert!(line.contains(r#""status":200"#), "{transport}: {line}");
            assert!(
                line.contains(r#""connection":"reused""#),
                "{transport}: {line}"
            );
        }
        assert_eq!(
            lines[10], r#"{"calls":10,"connections":1,"handshakes":{"full":1,"resumed":0}}"#,
            "{transport}"
        );
        let w = sb.wire();
        assert_eq!((w.connections, w.full), (1, 1), "{transport}: {w:?}");
        assert_eq!(sb.count(Endpoint::Protected(ProviderKind::OAuth2)), 10);
        for token in tessera_sandbox::issued_tokens() {
            assert!(
                !stdout.contains(&token),
                "{transport}: the token was printed"
            );
        }
    }
}
