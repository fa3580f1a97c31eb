//! `tessera token … --transport embassy` (feature `embassy`): the terminal's exact client,
//! tessera-embassy with its `mbedtls` backend, run over the desktop's sockets
//! (std-embedded-nal-async), so an integrator can check, before flashing anything, whether
//! the terminal's TLS stack talks to an endpoint.
//!
//! `https://` needs `--ca FILE`: the PEM bundle the terminal will carry (a terminal has no
//! operating-system store to fall back on). Certificate dates are checked against this
//! machine's clock (`mbedtls-dates`). `localhost` and `*.localhost` resolve to 127.0.0.1
//! here, as tessera-std does; other names through the system resolver.

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_nal_async::{AddrType, Dns};
use std_embedded_nal_async::Stack;
use tessera_core::{Credentials, Provider};
use tessera_embassy::mbedtls::mbedtls_rs::{Tls, TlsReference};
use tessera_embassy::mbedtls::{use_wall_clock, Mbedtls, Rng09, Roots, WallClock};
use tessera_embassy::{Client, Connector, Error, Plain, Resources, Settings};

use crate::{error_json, failure_json, kind_json, token_json, transport_json, Target};

/// The system resolver, except that `localhost` and `*.localhost` are 127.0.0.1 without a
/// lookup (RFC 6761; what tessera-std does).
struct Resolver(Stack);

impl Dns for Resolver {
    type Error = std::io::Error;

    async fn get_host_by_name(&self, host: &str, kind: AddrType) -> Result<IpAddr, Self::Error> {
        let name = host.trim_end_matches('.');
        if name.eq_ignore_ascii_case("localhost")
            || name.to_ascii_lowercase().ends_with(".localhost")
        {
            return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        self.0.get_host_by_name(host, kind).await
    }

    async fn get_host_by_address(
        &self,
        addr: IpAddr,
        out: &mut [u8],
    ) -> Result<usize, Self::Error> {
        self.0.get_host_by_address(addr, out).await
    }
}

static CLOCK: WallClock = WallClock::new();

/// One token fetch with tessera-embassy: `(exit code 0 or 1, the JSON line)`, or a usage
/// error.
pub fn token<P: Provider>(
    provider: P,
    credentials: Credentials,
    target: &Target,
    show_token: bool,
) -> Result<(u8, String), String> {
    if target.cache.is_some() || target.store.is_some() {
        return Err("--cache and --store apply to --transport std".into());
    }
    let https = target
        .token_url
        .as_deref()
        .or(target.base_url.as_deref())
        .is_none_or(|u| {
            u.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        });
    if https && target.ca.is_none() {
        return Err(
            "--transport embassy needs --ca FILE for https:// (the terminal's roots)".into(),
        );
    }
    let roots = match &target.ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("--ca {path}: {e}"))?;
            let pem = CString::new(pem).map_err(|_| format!("--ca {path}: not a PEM file"))?;
            let pem: &'static CString = Box::leak(Box::new(pem));
            Some(Roots::new(pem.as_c_str()).map_err(|e| format!("--ca {path}: {e}"))?)
        }
        None => None,
    };

    let stack = Stack::default();
    let dns = Resolver(Stack::default());
    let mut resources: Box<Resources> = Box::default();
    let settings = settings(target);
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    // The connector is the TLS choice: MbedTLS with the roots given, plain HTTP otherwise.
    Ok(match roots {
        Some(roots) => {
            let https = Mbedtls::new(&stack, &dns, mbedtls()?, roots);
            let client = Client::<NoopRawMutex, _, _>::builder(
                provider,
                credentials,
                https,
                &mut resources,
                &mut rng,
            )
            .settings(settings)
            .build();
            token_with(&client, show_token)
        }
        None => {
            let client = Client::<NoopRawMutex, _, _>::builder(
                provider,
                credentials,
                Plain::new(&stack, &dns),
                &mut resources,
                &mut rng,
            )
            .settings(settings)
            .build();
            token_with(&client, show_token)
        }
    })
}

/// The client's settings from the command line.
fn settings(target: &Target) -> Settings {
    let mut settings = Settings::default();
    settings.session.allow_insecure_http = target.allow_insecure_http;
    if let Some(t) = target.timeout {
        let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        settings.timeout = embassy_time::Duration::from_millis(ms);
    }
    settings
}

/// The program's one MbedTLS instance, its RNG the OS's, certificate dates checked against
/// this machine's clock.
fn mbedtls() -> Result<TlsReference<'static>, String> {
    let tls = Tls::new(Box::leak(Box::new(Rng09(rand_core::UnwrapErr(
        rand_core::OsRng,
    )))))
    .map_err(|e| format!("MbedTLS: {e:?}"))?;
    let tls: &'static Tls<'static> = Box::leak(Box::new(tls));
    use_wall_clock(&CLOCK);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    CLOCK.set_unix_time(now.as_secs());
    Ok(tls.reference())
}

/// One token fetch with `client`: `(exit code 0 or 1, the JSON line)`.
fn token_with<'r, P: Provider, N: Connector<'r>>(
    client: &Client<'r, NoopRawMutex, P, N>,
    show_token: bool,
) -> (u8, String) {
    let outcome = async_io::block_on(async {
        let mut out = [0u8; 2048];
        client.token(&mut out).await.map(|_| ())
    });
    match outcome {
        Ok(()) => match client.grant(|g| g.map(|g| token_json(g, show_token, false))) {
            Some(line) => (0, line),
            None => (
                1,
                error_json(
                    &tessera_core::Error::Malformed {
                        field: Some("expires_in"),
                        problem: tessera_core::Problem::Range,
                    },
                    None,
                ),
            ),
        },
        Err(e) => (1, error_line(client, e)),
    }
}

/// `tessera call … --transport embassy`: `spec.repeat` calls with tessera-embassy (MbedTLS
/// for `https://`, `--ca` as the roots), each printed by `print` as it ends, then the
/// summary line. Returns the exit code: 0 when every call was answered (any status), 1
/// otherwise. The token is never printed.
pub fn call<P: Provider + 'static>(
    provider: P,
    credentials: Credentials,
    target: &Target,
    spec: &crate::call::CallSpec,
    print: &mut dyn FnMut(String),
) -> Result<u8, String> {
    let https = |u: &str| {
        u.get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    };
    let token_https = target
        .token_url
        .as_deref()
        .or(target.base_url.as_deref())
        .is_none_or(https);
    if (token_https || https(&spec.url)) && target.ca.is_none() {
        return Err(
            "--transport embassy needs --ca FILE for https:// (the terminal's roots)".into(),
        );
    }
    let roots = match &target.ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("--ca {path}: {e}"))?;
            let pem = CString::new(pem).map_err(|_| format!("--ca {path}: not a PEM file"))?;
            let pem: &'static CString = Box::leak(Box::new(pem));
            Some(Roots::new(pem.as_c_str()).map_err(|e| format!("--ca {path}: {e}"))?)
        }
        None => None,
    };
    let stack: &'static Stack = Box::leak(Box::default());
    let dns: &'static Resolver = Box::leak(Box::new(Resolver(Stack::default())));
    let resources: &'static mut Resources = Box::leak(Box::default());
    let settings = settings(target);
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    match roots {
        Some(roots) => {
            let https = Mbedtls::new(stack, dns, mbedtls()?, roots);
            let client = Client::<NoopRawMutex, _, _>::builder(
                provider,
                credentials,
                https,
                resources,
                &mut rng,
            )
            .settings(settings)
            .build();
            calls_with(&client, spec, print)
        }
        None => {
            let client = Client::<NoopRawMutex, _, _>::builder(
                provider,
                credentials,
                Plain::new(stack, dns),
                resources,
                &mut rng,
            )
            .settings(settings)
            .build();
            calls_with(&client, spec, print)
        }
    }
}

/// `spec.repeat` calls with `client`, each printed as it ends, then the summary line.
fn calls_with<'r, P: Provider, N: Connector<'r>>(
    client: &Client<'r, NoopRawMutex, P, N>,
    spec: &crate::call::CallSpec,
    print: &mut dyn FnMut(String),
) -> Result<u8, String> {
    use tessera_embassy::{ApiRequest, CallBuffers};
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    client.set_wall_time(unix.as_secs());
    let extra: Vec<(&str, &str)> = spec.extra_headers().collect();
    if extra.len() > tessera_embassy::MAX_EXTRA_HEADERS {
        return Err(format!(
            "at most {} --header options (besides Content-Type)",
            tessera_embassy::MAX_EXTRA_HEADERS
        ));
    }
    let mut answered_all = true;
    async_io::block_on(async {
        let mut buffers: Box<CallBuffers> = Box::default();
        for i in 1..=spec.repeat {
            let mut request = ApiRequest::new(spec.method, &spec.url).headers(&extra);
            if let Some(data) = &spec.data {
                request = request.body(spec.content_type(), data);
            }
            let started = std::time::Instant::now();
            let answer = client.call(request, &mut buffers).await;
            let took = started.elapsed();
            let line = match answer {
                Ok(r) => {
                    let c = r.connection();
                    let body = spec.show_body.then(|| r.body());
                    crate::call::answered_json(
                        i,
                        r.status(),
                        took,
                        c.as_str(),
                        c.handshake.as_str(),
                        body,
                    )
                }
                Err(e) => {
                    answered_all = false;
                    crate::call::failed_json(i, took, &error_line(client, e))
                }
            };
            print(line);
        }
    });
    let w = client.wire_stats();
    print(crate::call::summary_json(
        spec.repeat,
        u64::from(w.connections),
        u64::from(w.full),
        u64::from(w.resumed),
    ));
    Ok(if answered_all { 0 } else { 1 })
}

/// The error line of a failed `token()` or `call()`.
fn error_line<'r, P: Provider, N: Connector<'r>>(
    client: &Client<'r, NoopRawMutex, P, N>,
    e: Error,
) -> String {
    match e {
        Error::Token {
            kind, transport, ..
        } => {
            let line = client.failure(|f| f.map(failure_json));
            let line = line.or(transport.map(transport_json));
            line.unwrap_or_else(|| kind_json(kind))
        }
        Error::Transport(t) => transport_json(t),
        Error::Core(e) => error_json(&e, None),
    }
}
