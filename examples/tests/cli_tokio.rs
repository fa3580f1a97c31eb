//! `tessera token … --transport tokio`: the async host client behind the same interface,
//! printing the same lines as `--transport std` for the same outcomes.

use std::io::Write;
use std::process::Stdio;

use tessera_sandbox::{base_url_at, CountingListener, Endpoint, ProviderKind, Sandbox};
use tessera_sandbox::{CLIENT_ID, CLIENT_SECRET};

mod common;

/// Runs `tessera token <args> --transport <transport>` with `secret`: (exit code, stdout).
fn token(args: &[&str], transport: &str, secret: &str) -> (i32, String) {
    token_env(args, transport, secret, &[])
}

/// [`token`] with more environment variables.
fn token_env(args: &[&str], transport: &str, secret: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = common::tessera_command();
    cmd.arg("token").args(args).args(["--transport", transport]);
    cmd.env("TESSERA_CLIENT_SECRET", secret);
    cmd.env_remove("TESSERA_STORE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(b"");
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(
        !stdout.contains(CLIENT_SECRET) && !stderr.contains(CLIENT_SECRET),
        "the secret was printed: {stdout}{stderr}"
    );
    (out.status.code().unwrap(), stdout + &stderr)
}

fn url_flag(kind: ProviderKind) -> &'static str {
    if kind == ProviderKind::OAuth2 {
        "--token-url"
    } else {
        "--base-url"
    }
}

#[test]
fn every_provider_and_every_refusal_prints_what_std_prints() {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        let url = sb.base_url(kind);
        let args = [kind.name(), url_flag(kind), &url, "--client-id", CLIENT_ID];
        let (code, tokio_line) = token(&args, "tokio", CLIENT_SECRET);
        assert_eq!(code, 0, "{kind}: {tokio_line}");
        let (_, std_line) = token(&args, "std", CLIENT_SECRET);
        assert_eq!(tokio_line, std_line, "{kind}");
        // A refused secret: the provider's words, as std prints them.
        let (code, tokio_line) = token(&args, "tokio", "wrong");
        assert_eq!(code, 1, "{kind}: {tokio_line}");
        assert_eq!(tokio_line, token(&args, "std", "wrong").1, "{kind}");
    }
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::Setu)), 4);
    // Nothing listens there: connect, as std says.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/oauth2/token");
    let args = ["oauth2", "--token-url", &url, "--client-id", "c"];
    let (code, line) = token(&args, "tokio", "s");
    assert_eq!(code, 1);
    assert!(
        line.contains(r#""kind":"transport","cause":"connect","detail":""#),
        "{line}"
    );
    assert_eq!(line, token(&args, "std", "s").1);
    // Plaintext off the machine: refused, nothing connects.
    let l = CountingListener::start().unwrap();
    let off = base_url_at(
        &format!("http://0.0.0.0:{}", l.port()),
        ProviderKind::OAuth2,
    );
    let args = ["oauth2", "--token-url", &off, "--client-id", "c"];
    let (code, line) = token(&args, "tokio", "s");
    assert_eq!(code, 1);
    assert!(line.contains(r#""kind":"insecure""#), "{line}");
    assert_eq!(l.accepted(), 0);
}

#[test]
fn tls_trusts_exactly_the_ca_file() {
    let (sb, ca) = Sandbox::start_tls("127.0.0.1").unwrap();
    let url = sb.base_url(ProviderKind::OAuth2);
    let path = std::env::temp_dir().join(format!("tessera-cli-tokio-{}.pem", std::process::id()));
    std::fs::write(&path, tessera_sandbox::certificate_pem(&ca)).unwrap();
    let ca_path = path.to_str().unwrap();
    let args = ["oauth2", "--token-url", &url, "--client-id", CLIENT_ID];
    let mut with_ca = args.to_vec();
    with_ca.extend(["--ca", ca_path]);
    let (code, line) = token(&with_ca, "tokio", CLIENT_SECRET);
    assert_eq!(code, 0, "{line}");
    // Without it: the web roots, which do not hold the sandbox's CA.
    let (code, line) = token(&args, "tokio", CLIENT_SECRET);
    assert_eq!(code, 1);
    assert!(line.contains(r#""cause":"tls""#), "{line}");
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 1);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_cache_or_a_store_is_shared_by_std_and_tokio_runs() {
    let sb = Sandbox::start().unwrap();
    let url = sb.base_url(ProviderKind::OAuth2);
    let file = std::env::temp_dir().join(format!("tessera-cli-tokio-cache-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let cache = file.to_str().unwrap();
    let args = [
        "oauth2",
        "--token-url",
        &url,
        "--client-id",
        CLIENT_ID,
        "--cache",
        cache,
    ];
    // A std run fetches and keeps the token; a tokio run reuses it, and the other way round.
    let (code, line) = token(&args, "std", CLIENT_SECRET);
    assert_eq!(code, 0, "{line}");
    assert!(line.contains(r#""cached":false"#), "{line}");
    let (code, line) = token(&args, "tokio", CLIENT_SECRET);
    assert_eq!(code, 0, "{line}");
    assert!(line.contains(r#""cached":true"#), "{line}");
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 1);
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(format!("{cache}.refused"));
    // The same through Redis: tokio stores, std restores.
    let redis = tessera_sandbox::RedisServer::start();
    let store = redis.url();
    let args = [
        "oauth2",
        "--token-url",
        &url,
        "--client-id",
        CLIENT_ID,
        "--store",
        &store,
    ];
    let (code, line) = token(&args, "tokio", CLIENT_SECRET);
    assert_eq!(code, 0, "{line}");
    assert!(line.contains(r#""cached":false"#), "{line}");
    let (code, line) = token(&args, "std", CLIENT_SECRET);
    assert_eq!(code, 0, "{line}");
    assert!(line.contains(r#""cached":true"#), "{line}");
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 2);
    // TESSERA_STORE (a password kept out of the argument list) serves --transport tokio too.
    let args = ["oauth2", "--token-url", &url, "--client-id", CLIENT_ID];
    let (code, line) = token_env(&args, "tokio", CLIENT_SECRET, &[("TESSERA_STORE", &store)]);
    assert_eq!(code, 0, "{line}");
    assert!(line.contains(r#""cached":true"#), "{line}");
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 2);
}

/// Runs `tessera call <args> --transport <transport>`: (exit code, stdout lines).
fn call(args: &[&str], transport: &str) -> (i32, Vec<serde_json::Value>) {
    let mut cmd = common::tessera_command();
    cmd.arg("call").args(args).args(["--transport", transport]);
    cmd.env("TESSERA_CLIENT_SECRET", CLIENT_SECRET);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains(CLIENT_SECRET));
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (out.status.code().unwrap(), lines)
}

#[test]
fn call_keeps_one_connection_and_sends_the_key_as_std_does() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::Shogun;
    let base = sb.base_url(kind);
    let url = sb.protected_url(kind);
    let args = [
        kind.name(),
        "--base-url",
        &base,
        "--client-id",
        CLIENT_ID,
        "--url",
        &url,
        "--method",
        "POST",
        "--data",
        r#"{"amount":1250}"#,
        "--header",
        "Idempotency-Key: order-7",
        "--repeat",
        "5",
    ];
    let (code, lines) = call(&args, "tokio");
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines.len(), 6, "{lines:?}");
    for (i, line) in lines[..5].iter().enumerate() {
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["call"], i as u64 + 1);
        // The token fetch opened the one connection; every call reuses it.
        assert_eq!(line["connection"], "reused", "{line}");
    }
    assert_eq!(lines[5]["connections"], 1, "{:?}", lines[5]);
    let seen = sb.last_headers(Endpoint::Protected(kind));
    assert!(
        seen.contains(&("idempotency-key".into(), "order-7".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("content-type".into(), "application/json".into())),
        "{seen:?}"
    );
    // The same lines' shape as std's, call for call.
    let (code, std_lines) = call(&args, "std");
    assert_eq!(code, 0);
    let shape = |v: &serde_json::Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    for (a, b) in lines.iter().zip(&std_lines) {
        assert_eq!(shape(a), shape(b), "{a} vs {b}");
    }
}

#[test]
fn a_rediss_store_with_a_password_is_checked_against_ca_and_shared_with_std() {
    let sb = Sandbox::start().unwrap();
    let password = "redis-pw-5c1e07";
    let redis = tessera_sandbox::RedisServer::start_tls_with_password(password);
    let other = tessera_sandbox::RedisServer::start_tls();
    let dir = std::env::temp_dir().join(format!("tessera-cli-tokio-rediss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, wrong_ca) = (dir.join("redis-ca.pem"), dir.join("other-ca.pem"));
    std::fs::write(&ca, redis.ca_pem()).unwrap();
    std::fs::write(&wrong_ca, other.ca_pem()).unwrap();
    let store = redis
        .tls_url()
        .replacen("rediss://", &format!("rediss://:{password}@"), 1);
    let url = sb.base_url(ProviderKind::OAuth2);
    let run = |transport: &str, ca: &std::path::Path| {
        let args = [
            "oauth2",
            "--token-url",
            &url,
            "--client-id",
            CLIENT_ID,
            "--allow-insecure-http",
            "--ca",
            ca.to_str().unwrap(),
        ];
        // --ca is for the store's TLS here (the sandbox speaks plain HTTP on loopback).
        token_env(
            &args,
            transport,
            CLIENT_SECRET,
            &[("TESSERA_STORE", &store)],
        )
    };
    let (code, line) = run("tokio", &ca);
    assert_eq!(code, 0, "{line}");
    assert!(line.contains(r#""cached":false"#), "{line}");
    let (_, line) = run("std", &ca);
    assert!(
        line.contains(r#""cached":true"#),
        "std restores tokio's token: {line}"
    );
    let (_, line) = run("tokio", &ca);
    assert!(line.contains(r#""cached":true"#), "{line}");
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 1);
    // A server the --ca roots do not vouch for: the store is refused, the token fetched alone.
    let (code, line) = run("tokio", &wrong_ca);
    assert_eq!(code, 0, "{line}");
    assert!(line.contains(r#""cached":false"#), "{line}");
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 2);
    assert!(!line.contains(password));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn four_blocking_and_four_async_processes_started_together_make_one_request() {
    let sb = Sandbox::start().unwrap();
    // Each token request takes a while, so all eight processes ask while it is in flight.
    sb.inject(
        Endpoint::Token(ProviderKind::OAuth2),
        tessera_sandbox::Fault::Delay(std::time::Duration::from_millis(300)),
        1,
    );
    let redis = tessera_sandbox::RedisServer::start();
    let url = sb.base_url(ProviderKind::OAuth2);
    let store = redis.url();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let transport = if i % 2 == 0 { "std" } else { "tokio" };
            let mut cmd = common::tessera_command();
            cmd.args([
                "token",
                "oauth2",
                "--token-url",
                &url,
                "--client-id",
                CLIENT_ID,
            ])
            .args(["--store", &store, "--show-token", "--transport", transport])
            .env("TESSERA_CLIENT_SECRET", CLIENT_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let line = String::from_utf8(out.stdout).unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(v["ok"], true, "{line}");
            v["access_token"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(
        tokens.windows(2).all(|w| w[0] == w[1]),
        "one token for the fleet"
    );
    assert_eq!(
        sb.count(Endpoint::Token(ProviderKind::OAuth2)),
        1,
        "8 processes, blocking and async, one upstream request"
    );
}
