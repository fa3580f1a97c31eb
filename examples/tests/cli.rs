//! The `tessera` CLI's exact interface: output lines and exit codes.

use std::io::Write;
use std::process::{Command, Stdio};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/fixtures");

fn run(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A usage error exits before reading stdin: a broken pipe here is expected.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

#[test]
fn parse_prints_one_line_per_outcome() {
    let cases: &[(&[&str], &str, i32, &str)] = &[
        (
            &["parse", "apimw", "--status", "200"],
            "apimw-token-200.json",
            0,
            r#"{"ok":true,"access_token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...","token_type":"Bearer","expires_in":3600,"lifetime_s":3600,"refresh_token":"rt_abc123xyz456","scope":[]}"#,
        ),
        (
            &["parse", "shogun", "--status", "200"],
            "shogun-token-200.json",
            0,
            r#"{"ok":true,"access_token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...","token_type":"Bearer","expires_in":86400,"lifetime_s":86400,"refresh_token":null,"scope":["TRANSACTION_READ"]}"#,
        ),
        (
            &["parse", "shogun", "--status", "200", "--validate"],
            "shogun-validate-200.json",
            0,
            r#"{"ok":true,"username":"kidashio","client_id":"kidashio_client","scope":["TRANSACTION_READ","TRANSACTION_WRITE"],"issued_at":1705314600,"expires_at":1705401000}"#,
        ),
        (
            &["parse", "shogun", "--validate", "--status", "401"],
            "shogun-validate-401.json",
            1,
            r#"{"ok":false,"kind":"token_invalid","code":null,"message":"Invalid authentication token","trace_id":null,"field":null,"needed":null}"#,
        ),
        (
            &["parse", "shogun", "--status", "429"],
            "shogun-token-429.json",
            1,
            r#"{"ok":false,"kind":"rate_limited","code":null,"message":"Temporarily locked due to too many failed attempts.","trace_id":null,"field":null,"needed":null}"#,
        ),
        (
            &["parse", "setu", "--status", "400"],
            "setu-token-400.json",
            1,
            r#"{"ok":false,"kind":"invalid_credentials","code":"invalid-api-key","message":"API key invalid [cd4ea398-7ab3-47de-aa50-7c3b9b3f0a21], please recheck your credentials.","trace_id":"8b7bd233-5231-4bdd-8d48-aa4c0dae07b9","field":null,"needed":null}"#,
        ),
        (
            &["parse", "setu", "--status", "200"],
            "setu-token-200-as-published.json",
            1,
            r#"{"ok":false,"kind":"malformed","code":null,"message":null,"trace_id":null,"field":null,"needed":null}"#,
        ),
        (
            &["parse", "oauth2", "--status", "200"],
            "oauth2-token-over-capacity.json",
            1,
            r#"{"ok":false,"kind":"capacity","code":null,"message":null,"trace_id":null,"field":"access_token","needed":2049}"#,
        ),
    ];
    for (args, file, code, line) in cases {
        let (got_code, out, _) = run(args, &fixture(file));
        assert_eq!(
            (got_code, out.as_str()),
            (*code, format!("{line}\n").as_str()),
            "{args:?} < {file}"
        );
    }
}

#[test]
fn parse_reports_setu_lifetime_from_the_jwt() {
    let (code, out, _) = run(
        &["parse", "setu", "--status", "200"],
        &fixture("setu-token-200.json"),
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["expires_in"], 1800);
    assert_eq!(v["lifetime_s"], 300);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["access_token"].as_str().unwrap().len(), 1238);
    assert_eq!(out.lines().count(), 1);
}

#[test]
fn parse_classifies_garbage_by_status() {
    for (status, kind) in [
        ("502", "server_error"),
        ("429", "rate_limited"),
        ("401", "invalid_credentials"),
        ("404", "rejected"),
        ("200", "malformed"),
    ] {
        for body in [&b"<html>502 Bad Gateway</html>"[..], b"", b"\xff\x00\xfe"] {
            let (code, out, _) = run(&["parse", "stonex", "--status", status], body);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                (code, v["kind"].as_str().unwrap()),
                (1, kind),
                "{status} {body:?}"
            );
        }
    }
}

#[test]
fn request_prints_exact_body_bytes() {
    let (code, out, _) = run(&["request", "shogun", "--client-id", "cid"], b"se\"cret\n");
    assert_eq!(
        (code, out.as_str()),
        (0, r#"{"client_id":"cid","client_secret":"se\"cret"}"#)
    );
    // Only one final newline is stripped.
    let (_, out, _) = run(&["request", "apimw", "--client-id", "k"], b"s\n\n");
    assert_eq!(out, r#"{"api_key":"k","api_secret":"s\n"}"#);
    let (_, out, _) = run(&["request", "setu", "--client-id", "c"], b"s\r\n");
    assert_eq!(out, r#"{"clientID":"c","secret":"s\r"}"#);
    let (_, out, _) = run(&["request", "stonex", "--client-id", "c"], b"x");
    assert_eq!(out, r#"{"client_id":"c","client_secret":"x"}"#);
    let (_, out, _) = run(&["request", "oauth2", "--client-id", "c"], b"x\n");
    assert_eq!(out, "grant_type=client_credentials");
    let (_, out, _) = run(
        &[
            "request",
            "oauth2",
            "--client-id",
            "c d",
            "--scope",
            "r w",
            "--auth",
            "body",
        ],
        b"x&y\n",
    );
    assert_eq!(
        out,
        "grant_type=client_credentials&scope=r+w&client_id=c+d&client_secret=x%26y"
    );
}

#[test]
fn usage_errors_exit_2_and_never_echo_the_secret() {
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["parse"],
        &["parse", "paypal", "--status", "200"],
        &["parse", "setu"],
        &["parse", "setu", "--status", "abc"],
        &["parse", "setu", "--status", "999"],
        &["parse", "setu", "--status", "200", "--validate"],
        &["parse", "setu", "--status", "200", "--status", "201"],
        &["parse", "setu", "--status"],
        &["request", "setu"],
        &["request", "setu", "--client-id", "c", "--scope", "x"],
        &["request", "oauth2", "--client-id", "c", "--auth", "digest"],
    ];
    for args in cases {
        let (code, out, err) = run(args, b"TOPSECRET");
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty(), "{args:?}");
        assert!(
            err.contains("usage:") && !err.contains("TOPSECRET"),
            "{args:?}: {err}"
        );
    }
    let long = "x".repeat(300);
    let (code, _, err) = run(&["request", "setu", "--client-id", "c"], long.as_bytes());
    assert_eq!(code, 2);
    assert!(err.contains("client_secret") && !err.contains(&long));
}
