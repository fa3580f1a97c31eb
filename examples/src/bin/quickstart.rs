//! Tessera's quickstart.
//!
//! With no arguments it starts the built-in sandbox on loopback and walks every provider
//! through the real flow: first token, cached reuse, proactive refresh, a downstream 401
//! that is refreshed and retried, a payment-style call with an `Idempotency-Key` (request
//! headers out, response headers back), Shogun's validate, a wrong secret (one request, no
//! retry storm) and Shogun's lockout (backoff honoured). It prints what happened and exits
//! non-zero if any step did not behave.
//!
//! ```text
//! quickstart
//! quickstart --provider <shogun|apimw|setu|stonex|oauth2> [--base-url <url> | --token-url <url>]
//!            --client-id <id> [--scope <s>] [--auth basic|body]
//!            [--ca <pem file>] [--allow-insecure-http] [--timeout <seconds>]
//!            (secret in TESSERA_CLIENT_SECRET, or on stdin)
//! ```
//! The second form runs against a real provider instead.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tessera_core::{AnyProvider, Credentials, ErrorKind, ProviderKind, Shogun};
use tessera_examples::{grant_json, read_secret, Target};
use tessera_sandbox::{Endpoint, Sandbox, CLIENT_ID, CLIENT_SECRET};
use tessera_std::{http, Client, Error, Options, OwnedProvider};

/// Lifetime the sandbox gives tokens here: short, so proactive refresh happens in seconds.
const SHORT_LIFETIME_S: u64 = 2;

struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn step(&mut self, what: &str, outcome: Result<String, String>) {
        match outcome {
            Ok(detail) => {
                self.passed += 1;
                println!("  ok    {what}: {detail}");
            }
            Err(why) => {
                self.failed += 1;
                println!("  FAIL  {what}: {why}");
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.is_empty() { tour() } else { live(&args) };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("quickstart: {msg}");
            ExitCode::from(2)
        }
    }
}

fn options() -> Options {
    // Refresh in the caller's thread so the report shows each request as it happens.
    Options {
        refresh_in_background: false,
        ..Options::default()
    }
}

fn client(
    provider: OwnedProvider,
    credentials: Credentials,
    options: Options,
) -> Client<OwnedProvider> {
    Client::with_options(provider, credentials, options)
}

fn tour() -> Result<ExitCode, String> {
    let sb = Sandbox::start().map_err(|e| format!("cannot start the sandbox: {e}"))?;
    println!(
        "Tessera quickstart: every provider against the built-in sandbox at {}",
        sb.origin()
    );
    println!("(client id {CLIENT_ID:?}; the secret never appears below)");
    let mut report = Report {
        passed: 0,
        failed: 0,
    };
    for kind in ProviderKind::ALL {
        println!("\n{kind}");
        sb.set_lifetime(kind, SHORT_LIFETIME_S);
        let base = sb.base_url(kind);
        let credentials = Credentials::new(CLIENT_ID, CLIENT_SECRET).map_err(|e| e.to_string())?;
        let client = client(
            OwnedProvider::new(kind, base.as_str()),
            credentials,
            options(),
        );
        walk(&mut report, &sb, kind, &client);
        idempotent_call(&mut report, &sb, kind, &client);
        if kind == ProviderKind::Shogun {
            validate(&mut report, &client, &base);
        }
        wrong_secret(&mut report, &sb, kind, &base);
        if kind == ProviderKind::Shogun {
            lockout(&mut report, &sb, &base);
        }
    }
    println!(
        "\nquickstart: {} providers, {} passed, {} failed",
        ProviderKind::ALL.len(),
        report.passed,
        report.failed
    );
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn requests(sb: &Sandbox, kind: ProviderKind) -> u64 {
    sb.count(Endpoint::Token(kind))
}

fn walk(report: &mut Report, sb: &Sandbox, kind: ProviderKind, client: &Client<OwnedProvider>) {
    let started = Instant::now();
    let first = client.token();
    let elapsed = started.elapsed();
    report.step(
        "first token",
        match (&first, client.grant()) {
            (Ok(t), Some(g)) => Ok(format!(
                "{} bytes, expires_in {}, trusted lifetime {} s, {} request in {} ms",
                t.as_str().len(),
                g.expires_in().map_or("absent".into(), |e| format!("{e} s")),
                g.lifetime_s(),
                requests(sb, kind),
                elapsed.as_millis()
            )),
            (Err(e), _) => Err(e.to_string()),
            (Ok(_), None) => Err("no grant cached".into()),
        },
    );
    let Ok(first) = first else { return };

    let before = requests(sb, kind);
    let started = Instant::now();
    let same = (0..1000).all(|_| client.token().is_ok_and(|t| t.as_str() == first.as_str()));
    let per_call = started.elapsed() / 1000;
    report.step(
        "cached reuse",
        if same && requests(sb, kind) == before {
            Ok(format!(
                "1000 calls, 0 requests, {} ns per call",
                per_call.as_nanos()
            ))
        } else {
            Err(format!(
                "{} requests for 1000 calls",
                requests(sb, kind) - before
            ))
        },
    );

    // The margin is capped at half the lifetime: a 2 s token is refreshed after 1 s.
    std::thread::sleep(Duration::from_millis(SHORT_LIFETIME_S * 1000 / 2 + 50));
    let during = client.token();
    let after = client.token();
    report.step(
        "proactive refresh",
        match (during, after) {
            (Ok(d), Ok(a)) if d.as_str() == first.as_str() && a.as_str() != first.as_str() => Ok(format!(
                "at half its life the old token was still served while 1 request fetched its successor ({} requests so far)",
                requests(sb, kind)
            )),
            (Ok(_), Ok(_)) => Err("the token did not change".into()),
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        },
    );

    sb.revoke_all(kind);
    let before = requests(sb, kind);
    let protected_before = sb.count(Endpoint::Protected(kind));
    let call = http::Request::get(sb.protected_url(kind))
        .body(Vec::<u8>::new())
        .map_err(|e| e.to_string())
        .and_then(|request| client.call(request).map_err(|e| e.to_string()));
    report.step(
        "downstream 401 -> refresh -> retry",
        match call {
            Ok(r) if r.status() == 200 => Ok(format!(
                "the provider revoked the token; the call got 401, fetched {} new token and its retry got 200 ({} calls)",
                requests(sb, kind) - before,
                sb.count(Endpoint::Protected(kind)) - protected_before
            )),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(e),
        },
    );
}

/// A payment-style call: the caller's own headers (an `Idempotency-Key`, so a retried
/// payment is not charged twice) go out beside the bearer token, and the response's headers
/// come back.
fn idempotent_call(
    report: &mut Report,
    sb: &Sandbox,
    kind: ProviderKind,
    client: &Client<OwnedProvider>,
) {
    let key = format!("quickstart-{kind}-0001");
    let outcome = http::Request::get(sb.protected_url(kind))
        .header("Idempotency-Key", key.as_str())
        .body(Vec::<u8>::new())
        .map_err(|e| e.to_string())
        .and_then(|request| client.call(request).map_err(|e| e.to_string()))
        .and_then(|response| {
            let seen = sb.last_headers(Endpoint::Protected(kind));
            let arrived = seen
                .iter()
                .any(|(k, v)| k == "idempotency-key" && *v == key);
            let request_id = response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok());
            match (response.status().as_u16(), arrived, request_id) {
                (200, true, Some(id)) => Ok(format!(
                    "Idempotency-Key {key} reached the API; it answered 200 with X-Request-Id {id}"
                )),
                (status, arrived, id) => Err(format!(
                    "HTTP {status}, key arrived: {arrived}, X-Request-Id {id:?}"
                )),
            }
        });
    report.step("call with an Idempotency-Key", outcome);
}

fn validate(report: &mut Report, client: &Client<OwnedProvider>, base: &str) {
    let shogun = Shogun::with_base_url(base);
    report.step(
        "validate",
        match client.validate(&shogun) {
            Ok(info) if info.has_scope("TRANSACTION_WRITE") => Ok(format!(
                "client {} may {:?}; expires {} s after issue",
                info.client_id,
                info.scopes.iter().collect::<Vec<_>>(),
                info.expires_at - info.issued_at
            )),
            Ok(info) => Err(format!("TRANSACTION_WRITE missing from {:?}", info.scopes)),
            Err(e) => Err(e.to_string()),
        },
    );
}

fn wrong_secret(report: &mut Report, sb: &Sandbox, kind: ProviderKind, base: &str) {
    let Ok(credentials) = Credentials::new(CLIENT_ID, "not the secret") else {
        return;
    };
    let client = client(OwnedProvider::new(kind, base), credentials, options());
    let before = requests(sb, kind);
    let errors: Vec<Error> = (0..10).filter_map(|_| client.token().err()).collect();
    let sent = requests(sb, kind) - before;
    report.step(
        "wrong secret",
        match errors.first() {
            Some(e)
                if errors.len() == 10 && e.kind() == ErrorKind::InvalidCredentials && sent == 1 =>
            {
                Ok(format!("10 calls, {sent} request: {e}"))
            }
            Some(e) => Err(format!("{} errors, {sent} requests: {e}", errors.len())),
            None => Err("a wrong secret got a token".into()),
        },
    );
}

fn lockout(report: &mut Report, sb: &Sandbox, base: &str) {
    let kind = ProviderKind::Shogun;
    sb.set_lockout(3, Duration::from_secs(1));
    let Ok(credentials) = Credentials::new(CLIENT_ID, "typo") else {
        return;
    };
    let client = client(OwnedProvider::new(kind, base), credentials, options());
    // A person pressing "try again": each press is one request, and the third locks the account.
    let mut last = None;
    for _ in 0..3 {
        last = client.token().err();
        client.retry();
    }
    if let Ok(c) = Credentials::new(CLIENT_ID, CLIENT_SECRET) {
        client.set_credentials(c);
    }
    let locked = client.token();
    let before = requests(sb, kind);
    let during: usize = (0..20).filter(|_| client.token().is_err()).count();
    let sent_during = requests(sb, kind) - before;
    let outcome = match (&last, &locked) {
        (
            Some(l),
            Err(Error::Token {
                retry_in: Some(wait),
                ..
            }),
        ) if l.kind() == ErrorKind::RateLimited && during == 20 && sent_during == 0 => {
            std::thread::sleep(*wait);
            match client.token() {
                Ok(_) => Ok(format!(
                    "3 failed logins locked the account; backing off {} ms sent 0 of 20 attempts; then a token",
                    wait.as_millis()
                )),
                Err(e) => Err(format!("after the backoff: {e}")),
            }
        }
        _ => Err(format!(
            "last failure {last:?}, then {locked:?}, {sent_during} requests during backoff"
        )),
    };
    report.step("lockout -> backoff", outcome);
}

/// Runs the first part of the tour against a real provider.
fn live(args: &[String]) -> Result<ExitCode, String> {
    let mut target = Target::default();
    let (mut kind, mut client_id) = (None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--provider" => {
                kind = Some(
                    value()?
                        .parse::<ProviderKind>()
                        .map_err(|e| e.to_string())?,
                )
            }
            "--base-url" => target.base_url = Some(value()?),
            "--token-url" => target.token_url = Some(value()?),
            "--client-id" => client_id = Some(value()?),
            "--scope" => target.scope = Some(value()?),
            "--auth" => target.auth = Some(value()?),
            "--ca" => target.ca = Some(value()?),
            "--timeout" => target.timeout = Some(tessera_examples::parse_timeout(&value()?)?),
            "--allow-insecure-http" => target.allow_insecure_http = true,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let kind = kind.ok_or("--provider is required")?;
    let client_id = client_id.ok_or("--client-id is required")?;
    let provider = target.provider(kind)?;
    let shogun_base = match provider.provider() {
        AnyProvider::Shogun(_) => target.base_url.clone(),
        _ => None,
    };
    let options = Options {
        refresh_in_background: false,
        ..target.options()?
    };
    let secret = read_secret()?;
    let credentials = Credentials::new(&client_id, &secret).map_err(|e| e.to_string())?;
    let client = client(provider, credentials, options);
    println!("Tessera quickstart against {kind} as {client_id:?}");
    let mut report = Report {
        passed: 0,
        failed: 0,
    };
    let started = Instant::now();
    let first = client.token();
    report.step(
        "first token",
        match (&first, client.grant()) {
            (Ok(_), Some(g)) => Ok(format!(
                "{} in {} ms",
                grant_json(&g, false),
                started.elapsed().as_millis()
            )),
            (Err(e), _) => Err(e.to_string()),
            (Ok(_), None) => Err("no grant cached".into()),
        },
    );
    if let Ok(first) = first {
        let started = Instant::now();
        let same = (0..1000).all(|_| client.token().is_ok_and(|t| t.as_str() == first.as_str()));
        report.step(
            "cached reuse",
            if same {
                Ok(format!(
                    "1000 calls in {} µs, no request",
                    started.elapsed().as_micros()
                ))
            } else {
                Err("the token changed".into())
            },
        );
        if kind == ProviderKind::Shogun {
            let shogun = match shogun_base.as_deref() {
                Some(url) => Shogun::with_base_url(url),
                None => Shogun::new(),
            };
            report.step(
                "validate",
                client
                    .validate(&shogun)
                    .map(|i| format!("{i:?}"))
                    .map_err(|e| e.to_string()),
            );
        }
    }
    println!(
        "\nquickstart: {} passed, {} failed",
        report.passed, report.failed
    );
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
