//! The `tessera` CLI's exact interface: output lines and exit codes.

use std::io::Write;
use std::process::{Command, Stdio};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/fixtures");

fn run(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    run_env(args, &[], stdin)
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

fn run_env(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args).env_remove("TESSERA_CLIENT_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn token_fetches_from_every_provider_and_redacts_by_default() {
    use tessera_sandbox::{ProviderKind, Sandbox, CLIENT_ID, CLIENT_SECRET};
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let url = sb.base_url(kind);
        let url_flag = if kind == ProviderKind::OAuth2 {
            "--token-url"
        } else {
            "--base-url"
        };
        let args = [
            "token",
            kind.name(),
            url_flag,
            &url,
            "--client-id",
            CLIENT_ID,
        ];
        let (code, out, err) = run_env(&args, &[("TESSERA_CLIENT_SECRET", CLIENT_SECRET)], b"");
        assert_eq!(code, 0, "{kind}: {out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["access_token"], "<redacted>", "{kind}");
        assert_eq!(v["lifetime_s"], 3600, "{kind}");
        assert!(!out.contains(CLIENT_SECRET) && !err.contains(CLIENT_SECRET));
        // The secret on stdin (one final newline stripped), and the token shown on request.
        let mut shown = args.to_vec();
        shown.push("--show-token");
        let (code, out, _) = run_env(&shown, &[], format!("{CLIENT_SECRET}\n").as_bytes());
        assert_eq!(code, 0, "{kind}: {out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["access_token"].as_str().unwrap().split('.').count(),
            3,
            "{kind}: a JWT"
        );
    }
    let apimw = sb.base_url(ProviderKind::Apimw);
    let (_, out, _) = run_env(
        &[
            "token",
            "apimw",
            "--base-url",
            &apimw,
            "--client-id",
            CLIENT_ID,
            "--show-token",
        ],
        &[],
        CLIENT_SECRET.as_bytes(),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["refresh_token"].as_str().unwrap().starts_with("rt/"),
        "PHP's \\/ decoded: {out}"
    );
}

#[test]
fn token_reports_provider_and_network_errors_as_json() {
    use tessera_sandbox::{Sandbox, CLIENT_ID};
    let sb = Sandbox::start().unwrap();
    let setu = sb.base_url(tessera_sandbox::ProviderKind::Setu);
    let (code, out, _) = run_env(
        &[
            "token",
            "setu",
            "--base-url",
            &setu,
            "--client-id",
            CLIENT_ID,
        ],
        &[("TESSERA_CLIENT_SECRET", "wrong")],
        b"",
    );
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["code"].as_str()),
        (Some("invalid_credentials"), Some("invalid-api-key"))
    );
    assert!(v["trace_id"].is_string());
    // Nothing listens there: a transport error, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/oauth2/token");
    let (code, out, _) = run_env(
        &["token", "oauth2", "--token-url", &url, "--client-id", "c"],
        &[("TESSERA_CLIENT_SECRET", "s")],
        b"",
    );
    assert_eq!(code, 1);
    assert!(out.contains(r#""kind":"transport""#), "{out}");
    // Usage errors.
    for args in [
        &["token", "oauth2", "--client-id", "c"][..],
        &["token", "setu", "--client-id", "c", "--scope", "x"],
        &["token", "setu"],
        &[
            "token",
            "oauth2",
            "--token-url",
            "http://a/t",
            "--base-url",
            "http://b",
            "--client-id",
            "c",
        ],
    ] {
        let (code, _, err) = run_env(args, &[("TESSERA_CLIENT_SECRET", "TOPSECRET")], b"");
        assert_eq!(code, 2, "{args:?}");
        assert!(!err.contains("TOPSECRET"));
    }
}
