//! `tessera token … --transport tokio`: the async host client, tessera-tokio on reqwest,
//! with the same options as `--transport std` (`--ca`, `--timeout`,
//! `--allow-insecure-http`, proxies from the environment for `https://` only).

use std::sync::Arc;
use std::time::Duration;

use tessera_core::{Credentials, Provider};
use tessera_tokio::{Client, Error, FileStore, Options, RedisStore, Trust};

use crate::{error_json, failure_json, kind_json, token_json, transport_json, StoreChoice, Target};

/// tessera-tokio's options for these settings: the same meaning as [`Target::options`].
pub fn options(target: &Target) -> Result<Options, String> {
    let mut options = Options {
        // One fetch and exit: nothing to refresh in the background.
        refresh_in_background: false,
        ..Options::default()
    };
    if let Some(path) = &target.ca {
        options.trust = Trust::from_pem_file(path).map_err(|e| format!("--ca {path}: {e}"))?;
    }
    options.session.allow_insecure_http = target.allow_insecure_http;
    options.store = match target.store_choice()? {
        Some(StoreChoice::File(path)) => Some(Arc::new(FileStore::new(path))),
        Some(StoreChoice::Redis(url)) => {
            // `rediss://` is checked against the same roots as the provider (`--ca`); the
            // URL may hold a password: shown without it.
            let shown = tessera_core::transport::display_url(url);
            Some(Arc::new(
                RedisStore::open_with(url, &options.trust)
                    .map_err(|e| format!("--store {shown}: {e}"))?,
            ))
        }
        None => None,
    };
    if let Some(t) = target.timeout {
        options.connect_timeout = t;
        options.request_timeout = t;
    }
    Ok(options)
}

/// One token fetch with tessera-tokio: `(exit code 0 or 1, the JSON line)`, or a usage
/// error.
pub fn token<P: Provider + Send + 'static>(
    provider: P,
    credentials: Credentials,
    target: &Target,
    show_token: bool,
) -> Result<(u8, String), String> {
    let options = options(target)?;
    let runtime = ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no tokio runtime: {e}"))?;
    let client: Client<P> = Client::with_options(provider, credentials, options)
        .map_err(|e| format!("--transport tokio: {e}"))?;
    let outcome = runtime.block_on(client.token());
    let line = match outcome.map(|_| client.grant()) {
        Ok(Some(grant)) => {
            let cached = client.token_requests() == 0;
            (0, token_json(&grant, show_token, cached))
        }
        // The token expired between the fetch and this line: only with a lifetime of
        // almost nothing.
        Ok(None) => (
            1,
            error_json(
                &tessera_core::Error::Malformed {
                    field: Some("expires_in"),
                    problem: tessera_core::Problem::Range,
                },
                None,
            ),
        ),
        Err(e) => (1, error_line(&e)),
    };
    // Close the connections before the runtime goes.
    drop(client);
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(line)
}

/// The JSON line for a tessera-tokio error (the same shape as tessera-std's).
pub fn error_line(e: &Error) -> String {
    match e {
        Error::Token { failure, .. } => failure_json(failure),
        Error::Core(e) => error_json(e, None),
        other => match other.transport() {
            Some(t) => transport_json(t),
            None => kind_json(other.kind()),
        },
    }
}

/// `tessera call … --transport tokio`: the token, then `spec.repeat` calls through
/// tessera-tokio, one JSON line each and a summary (the same lines as `--transport std`).
pub fn call<P: Provider + Send + 'static>(
    provider: P,
    credentials: Credentials,
    target: &Target,
    spec: &crate::call::CallSpec,
    print: &mut dyn FnMut(String),
) -> Result<u8, String> {
    use crate::call::{answered_json, failed_json, summary_json};
    let options = options(target)?;
    let runtime = ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no tokio runtime: {e}"))?;
    let client: Client<P> = Client::with_options(provider, credentials, options)
        .map_err(|e| format!("--transport tokio: {e}"))?;
    let https = |url: &str| {
        url.get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    };
    let token_https = target
        .token_url
        .as_deref()
        .or(target.base_url.as_deref())
        .is_none_or(https);
    let code = runtime.block_on(async {
        let mut answered_all = true;
        // The token first: its connection is then the calls' to keep when the hosts match.
        if let Err(e) = client.token().await {
            print(failed_json(0, Duration::ZERO, &error_line(&e)));
            answered_all = false;
        }
        let mut full = match token_https {
            true => client.connections_opened(),
            false => 0,
        };
        let method = reqwest_method(spec.method);
        for i in 1..=spec.repeat {
            let mut builder = client.request(method.clone(), &spec.url);
            // As `--transport std` sends them: every header given, a JSON type for a body
            // that names none.
            for (k, v) in &spec.headers {
                builder = builder.header(k.as_str(), v.as_str());
            }
            let typed = spec
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
            if spec.data.is_some() && !typed {
                builder = builder.header("Content-Type", "application/json");
            }
            if let Some(data) = &spec.data {
                builder = builder.body(data.clone());
            }
            let started = std::time::Instant::now();
            let before = client.connections_opened();
            let request = match builder.build() {
                Ok(r) => r,
                Err(_) => {
                    let line = kind_json(tessera_core::ErrorKind::Malformed);
                    print(failed_json(i, started.elapsed(), &line));
                    answered_all = false;
                    continue;
                }
            };
            let answer = match client.call(request).await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    r.bytes()
                        .await
                        .map(|body| (status, body))
                        .map_err(|e| Error::Transport {
                            error: tessera_tokio::classify(&e),
                            source: Some(e),
                        })
                }
                Err(e) => Err(e),
            };
            let took = started.elapsed();
            let new = client.connections_opened() > before;
            let handshake = match (new, https(&spec.url)) {
                (true, true) => {
                    full += 1;
                    "full"
                }
                _ => "none",
            };
            let line = match answer {
                Ok((status, body)) => answered_json(
                    i,
                    status,
                    took,
                    if new { "new" } else { "reused" },
                    handshake,
                    spec.show_body.then_some(&body[..]),
                ),
                Err(e) => {
                    answered_all = false;
                    failed_json(i, took, &error_line(&e))
                }
            };
            print(line);
        }
        print(summary_json(
            spec.repeat,
            client.connections_opened(),
            full,
            0,
        ));
        u8::from(!answered_all)
    });
    drop(client);
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(code)
}

/// The core's method as reqwest's.
fn reqwest_method(m: tessera_core::Method) -> tessera_tokio::reqwest::Method {
    tessera_tokio::reqwest::Method::from_bytes(m.as_str().as_bytes())
        .unwrap_or(tessera_tokio::reqwest::Method::GET)
}
