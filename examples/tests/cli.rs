//! The `tessera` CLI's exact interface: output lines and exit codes.

use std::io::Write;
use std::process::Stdio;

mod common;

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
            r#"{"ok":false,"kind":"token_invalid","cause":null,"detail":null,"code":null,"message":"Invalid authentication token","trace_id":null,"field":null,"needed":null}"#,
        ),
        (
            &["parse", "shogun", "--status", "429"],
            "shogun-token-429.json",
            1,
            r#"{"ok":false,"kind":"rate_limited","cause":null,"detail":null,"code":null,"message":"Temporarily locked due to too many failed attempts.","trace_id":null,"field":null,"needed":null}"#,
        ),
        (
            &["parse", "setu", "--status", "400"],
            "setu-token-400.json",
            1,
            r#"{"ok":false,"kind":"invalid_credentials","cause":null,"detail":null,"code":"invalid-api-key","message":"API key invalid [cd4ea398-7ab3-47de-aa50-7c3b9b3f0a21], please recheck your credentials.","trace_id":"8b7bd233-5231-4bdd-8d48-aa4c0dae07b9","field":null,"needed":null}"#,
        ),
        (
            &["parse", "setu", "--status", "200"],
            "setu-token-200-as-published.json",
            1,
            r#"{"ok":false,"kind":"malformed","cause":null,"detail":null,"code":null,"message":null,"trace_id":null,"field":null,"needed":null}"#,
        ),
        (
            &["parse", "oauth2", "--status", "200"],
            "oauth2-token-over-capacity.json",
            1,
            r#"{"ok":false,"kind":"capacity","cause":null,"detail":null,"code":null,"message":null,"trace_id":null,"field":"access_token","needed":2049}"#,
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
    let mut cmd = common::tessera_command();
    cmd.args(args);
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
    assert!(
        out.contains(r#""kind":"transport","cause":"connect","detail":""#),
        "{out}"
    );
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

fn token_args<'a>(kind: &'a str, flag: &'a str, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "token",
        kind,
        flag,
        url,
        "--client-id",
        tessera_sandbox::CLIENT_ID,
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs `tessera token` with the sandbox's secret: (exit code, the JSON line, stderr).
fn token_json(args: &[&str]) -> (i32, serde_json::Value, String) {
    let secret = tessera_sandbox::CLIENT_SECRET;
    let (code, out, err) = run_env(args, &[("TESSERA_CLIENT_SECRET", secret)], b"");
    assert!(
        !out.contains(secret) && !err.contains(secret) && !out.contains("s3cr3t"),
        "{args:?}: the secret was printed: {out}{err}"
    );
    let v = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    (code, v, format!("{out}{err}"))
}

fn pem(der: &[u8]) -> String {
    tessera_sandbox::certificate_pem(der)
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("tessera-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn token_over_tls_trusts_exactly_the_ca_file() {
    use tessera_sandbox::{ProviderKind, Sandbox};
    let (sb, ca) = Sandbox::start_tls("127.0.0.1").unwrap();
    let (_unrelated, other_ca) = Sandbox::start_tls("127.0.0.1").unwrap();
    let url = sb.base_url(ProviderKind::OAuth2);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // One or more certificates: the sandbox's CA among others.
    let both = TempFile::new("both.pem", &(pem(&other_ca) + &pem(&ca)));
    let args = token_args("oauth2", "--token-url", &url, &["--ca", both.path()]);
    let (code, v, all) = token_json(&args);
    assert_eq!((code, &v["ok"]), (0, &true.into()), "{all}");
    assert_eq!(
        sb.count(tessera_sandbox::Endpoint::Token(ProviderKind::OAuth2)),
        1
    );
    // Without --ca: the web roots, which do not hold the sandbox's CA.
    let (code, v, all) = token_json(&token_args("oauth2", "--token-url", &url, &[]));
    assert_eq!(code, 1, "{all}");
    assert_eq!(
        (v["kind"].as_str(), v["cause"].as_str()),
        (Some("transport"), Some("tls")),
        "{all}"
    );
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{all}");
    // Exactly the file's roots: another CA alone does not vouch for this server.
    let other = TempFile::new("other.pem", &pem(&other_ca));
    let args = token_args("oauth2", "--token-url", &url, &["--ca", other.path()]);
    let (code, v, all) = token_json(&args);
    assert_eq!((code, v["cause"].as_str()), (1, Some("tls")), "{all}");
    // No request reached the HTTP layer for the refused handshakes.
    assert_eq!(
        sb.count(tessera_sandbox::Endpoint::Token(ProviderKind::OAuth2)),
        1
    );
    // A file with no certificate, or none at all: a usage error before any request.
    let junk = TempFile::new("junk.pem", "not a certificate\n");
    for path in [junk.path(), "/nonexistent/tessera/ca.pem"] {
        let args = token_args("oauth2", "--token-url", &url, &["--ca", path]);
        let (code, _, all) = token_json(&args);
        assert_eq!(code, 2, "{path}: {all}");
        assert!(all.contains("--ca"), "{all}");
    }
}

#[test]
fn plaintext_off_the_machine_is_refused_without_connecting() {
    use tessera_sandbox::{base_url_at, CountingListener, ProviderKind};
    let l = CountingListener::start().unwrap();
    let origin = format!("http://0.0.0.0:{}", l.port());
    for kind in ProviderKind::ALL {
        let url = base_url_at(&origin, kind);
        let flag = if kind == ProviderKind::OAuth2 {
            "--token-url"
        } else {
            "--base-url"
        };
        let (code, v, all) = token_json(&token_args(kind.name(), flag, &url, &[]));
        assert_eq!(
            (code, v["kind"].as_str()),
            (1, Some("insecure")),
            "{kind}: {all}"
        );
        assert_eq!(v["cause"], serde_json::Value::Null, "{all}");
    }
    // A URL whose authority the core does not accept: refused before connecting, even on
    // loopback and with the opt-in, and its user:password@ is never printed.
    let port = l.port();
    for url in [
        format!("http://user:hunter2@127.0.0.1:{port}/oauth2/token"),
        format!("http://127.0.0.1:{port}@evil.example:{port}/oauth2/token"),
        format!("http://127.0.0.1:0{port}0/oauth2/token"),
        format!("http://127.1:{port}/oauth2/token"),
    ] {
        let args = token_args("oauth2", "--token-url", &url, &["--allow-insecure-http"]);
        let (code, v, all) = token_json(&args);
        assert_eq!(
            (code, v["kind"].as_str()),
            (1, Some("invalid_url")),
            "{url}: {all}"
        );
        assert!(!all.contains("hunter2"), "{all}");
    }
    assert_eq!(l.accepted(), 0, "a connection was made");
    // The explicit opt-in for a LAN sandbox does connect (and this listener hangs up).
    let url = base_url_at(&origin, ProviderKind::OAuth2);
    let args = token_args("oauth2", "--token-url", &url, &["--allow-insecure-http"]);
    let (code, v, all) = token_json(&args);
    assert_eq!((code, v["kind"].as_str()), (1, Some("transport")), "{all}");
    assert!(v["cause"].is_string(), "{all}");
    assert_eq!(l.accepted(), 1);
}

#[test]
fn a_timeout_says_timeout() {
    use tessera_sandbox::{Endpoint, Fault, ProviderKind, Sandbox};
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::Setu;
    sb.inject(
        Endpoint::Token(kind),
        Fault::Delay(std::time::Duration::from_secs(5)),
        1,
    );
    let url = sb.base_url(kind);
    let args = token_args("setu", "--base-url", &url, &["--timeout", "0.5"]);
    // Answered after 5 s: without the 0.5 s timeout this would be a token.
    let (code, v, all) = token_json(&args);
    assert_eq!(code, 1, "{all}");
    assert_eq!(
        (v["kind"].as_str(), v["cause"].as_str()),
        (Some("transport"), Some("timeout")),
        "{all}"
    );
    let (code, _, all) = token_json(&token_args(
        "setu",
        "--base-url",
        &url,
        &["--timeout", "soon"],
    ));
    assert_eq!(code, 2, "{all}");
}

#[test]
fn hostile_answers_are_classified_and_an_echoed_secret_is_not_printed() {
    use tessera_sandbox::{Endpoint, Fault, ProviderKind, Sandbox};
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let url = sb.base_url(kind);
        let flag = if kind == ProviderKind::OAuth2 {
            "--token-url"
        } else {
            "--base-url"
        };
        for (fault, cause) in [
            (Fault::GarbageStatusLine, "protocol"),
            (Fault::BrokenChunked, "protocol"),
        ] {
            sb.inject(Endpoint::Token(kind), fault.clone(), 1);
            let (code, v, all) = token_json(&token_args(kind.name(), flag, &url, &[]));
            assert_eq!(code, 1, "{kind} {fault:?}: {all}");
            assert_eq!(v["cause"].as_str(), Some(cause), "{kind} {fault:?}: {all}");
        }
        // The provider repeats the request, secret and Basic header included, in its
        // message: the message is printed, the secret is not (token_json checks).
        sb.inject(Endpoint::Token(kind), Fault::EchoRequest, 1);
        let (code, v, all) = token_json(&token_args(kind.name(), flag, &url, &[]));
        assert_eq!(code, 1, "{kind}: {all}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.contains("bad request"), "{kind}: {all}");
        let basic = sb
            .last_headers(Endpoint::Token(kind))
            .into_iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v);
        if let Some(b64) = basic.as_deref().and_then(|v| v.strip_prefix("Basic ")) {
            assert!(
                !all.contains(&b64[..12]),
                "{kind}: Basic credentials printed: {all}"
            );
        }
    }
}

#[test]
fn proxies_from_the_environment_never_carry_plaintext() {
    use tessera_sandbox::{base_url_at, CountingListener, Endpoint, ProviderKind, Sandbox};
    const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
    let proxy = CountingListener::answering(BAD_GATEWAY).unwrap();
    let proxy_url = format!("http://{}", proxy.addr());
    let env: Vec<(&str, &str)> = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"]
        .into_iter()
        .map(|k| (k, proxy_url.as_str()))
        .chain([("TESSERA_CLIENT_SECRET", tessera_sandbox::CLIENT_SECRET)])
        .collect();
    let run = |url: &str, extra: &[&str]| {
        let (code, out, err) = run_env(&token_args("oauth2", "--token-url", url, extra), &env, b"");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        (code, v, format!("{out}{err}"))
    };
    // Plaintext off the machine: refused, through no proxy and to no target.
    let target = CountingListener::start().unwrap();
    let off = base_url_at(
        &format!("http://0.0.0.0:{}", target.port()),
        ProviderKind::OAuth2,
    );
    let (code, v, all) = run(&off, &[]);
    assert_eq!((code, v["kind"].as_str()), (1, Some("insecure")), "{all}");
    // Even opted in, plaintext goes direct, never through the proxy.
    let (code, v, all) = run(&off, &["--allow-insecure-http"]);
    assert_eq!((code, v["kind"].as_str()), (1, Some("transport")), "{all}");
    assert_eq!(target.accepted(), 1, "the opted-in request went direct");
    // Loopback plaintext: direct too.
    let sb = Sandbox::start().unwrap();
    let (code, _, all) = run(&sb.base_url(ProviderKind::OAuth2), &[]);
    assert_eq!(code, 0, "{all}");
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 1);
    assert_eq!(proxy.accepted(), 0, "plaintext reached the proxy");
    // HTTPS uses the proxy from the environment: a tunnel is asked for, and refused.
    let (code, v, all) = run("https://127.0.0.1:9/oauth2/token", &[]);
    assert_eq!((code, v["kind"].as_str()), (1, Some("transport")), "{all}");
    assert_eq!(proxy.accepted(), 1, "{all}");
}
