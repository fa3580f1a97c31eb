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
