//! `tessera`: a thin host tool over tessera-core.
//!
//! ```text
//! tessera parse <provider> --status <code> [--validate]      response body on stdin
//! tessera request <provider> --client-id <id> [--scope <s>] [--auth basic|body]
//!                                                          secret on stdin
//! tessera token <provider> [--base-url <url> | --token-url <url>] --client-id <id>
//!               [--scope <s>] [--auth basic|body] [--show-token]
//!               [--ca <pem file>] [--allow-insecure-http] [--timeout <seconds>]
//!               [--cache <file> | --store redis://host:port[/db]]
//!               [--transport std|tokio|embassy]
//!                               secret in TESSERA_CLIENT_SECRET, or on stdin
//! ```
//! `parse` and `token` print one line of JSON; exit 0 for a grant or token info, 1 for a
//! provider (or network) error, 2 for a usage error. `request` prints the exact request
//! body bytes.
//!
//! A network failure prints `"kind":"transport"` with `"cause"` (`dns`, `connect`, `tls`,
//! `timeout`, `protocol` or `io`) and a short `"detail"`. An `http://` URL to a host that is
//! not loopback is refused before connecting (`"kind":"insecure"`) unless
//! `--allow-insecure-http` says it is a LAN sandbox. `--ca` trusts exactly the certificates
//! in the file instead of the compiled-in web roots. `--cache FILE` keeps the token (sealed,
//! never the secret) for the next run, which then prints `"cached":true` and sends no
//! request; `--store redis://…` (or `rediss://`, checked against `--ca`'s roots; also read
//! from `TESSERA_STORE`, so a password need not sit in the argument list) shares it with
//! every process using the same credential. Proxies come from `HTTPS_PROXY` /
//! `ALL_PROXY` (and `NO_PROXY`) for `https://` URLs; plaintext requests never use one.
//!
//! `--transport tokio` fetches with the async host client, tessera-tokio on reqwest, with the
//! same options and output as `std`.
//!
//! `--transport embassy` (built with `--features embassy`) fetches with the terminal's own
//! client instead, tessera-embassy with its MbedTLS backend over this machine's sockets: the
//! exact TLS stack a terminal runs, to check an endpoint before flashing. Its `https://`
//! needs `--ca` (the terminal's root bundle); certificate dates are checked against this
//! machine's clock; no proxy is used.

use std::io::{Read, Write};
use std::process::ExitCode;

use tessera_core::{
    AnyProvider, ClientAuth, Credentials, Detail, Grant, OAuth2, Provider, ProviderKind, Shogun,
    TokenInfo,
};
use tessera_examples::{
    error_json, grant_json, info_json, parse_timeout, read_secret, secret_from_stdin,
    std_error_json, token_json, Target,
};

const USAGE: &str = "usage:
  tessera parse <shogun|apimw|setu|stonex|oauth2> --status <code> [--validate]   (body on stdin)
  tessera request <shogun|apimw|setu|stonex|oauth2> --client-id <id> [--scope <s>] [--auth basic|body]
                                                                          (secret on stdin)
  tessera token <shogun|apimw|setu|stonex|oauth2> [--base-url <url> | --token-url <url>]
                --client-id <id> [--scope <s>] [--auth basic|body] [--show-token]
                [--ca <pem file>] [--allow-insecure-http] [--timeout <seconds>]
                [--cache <file> | --store redis://host:port[/db]] [--transport std|tokio|embassy]
                                  (secret in TESSERA_CLIENT_SECRET, or on stdin)
  tessera call <shogun|apimw|setu|stonex|oauth2> [--base-url <url> | --token-url <url>]
                --client-id <id> [--scope <s>] [--auth basic|body] --url <url> [--method <m>]
                [--header 'Name: value']... [--data <text>|@<file>] [--repeat <n>]
                [--ca <pem file>] [--allow-insecure-http] [--timeout <seconds>]
                [--transport std|tokio|embassy] [--show-body]
                                  (one JSON line per call, then a summary; never the token)";

/// A usage error: printed with the usage text, exit 2.
struct Usage(String);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("tessera: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, Usage> {
    let (command, rest) = args
        .split_first()
        .ok_or_else(|| Usage("no command".into()))?;
    match command.as_str() {
        "parse" => parse(rest),
        "request" => request(rest),
        "token" => token(rest),
        "call" => call(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(Usage(format!("unknown command `{other}`"))),
    }
}

/// Parsed `<provider> [--flag value | --switch]...`.
struct Args<'a> {
    provider: ProviderKind,
    options: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> Args<'a> {
    fn new(rest: &'a [String], with_value: &[&str], switches: &[&str]) -> Result<Self, Usage> {
        let (name, flags) = rest
            .split_first()
            .ok_or_else(|| Usage("no provider".into()))?;
        let provider = name.parse().map_err(|e| Usage(format!("`{name}`: {e}")))?;
        let mut options = Vec::new();
        let mut it = flags.iter();
        while let Some(flag) = it.next() {
            let flag = flag.as_str();
            if options.iter().any(|(f, _)| *f == flag) {
                return Err(Usage(format!("{flag} given twice")));
            }
            if with_value.contains(&flag) {
                let v = it
                    .next()
                    .ok_or_else(|| Usage(format!("{flag} needs a value")))?;
                options.push((flag, Some(v.as_str())));
            } else if switches.contains(&flag) {
                options.push((flag, None));
            } else {
                return Err(Usage(format!("unknown option `{flag}`")));
            }
        }
        Ok(Args { provider, options })
    }

    fn value(&self, flag: &str) -> Option<&'a str> {
        self.options
            .iter()
            .find(|(f, _)| *f == flag)
            .and_then(|(_, v)| *v)
    }

    fn has(&self, flag: &str) -> bool {
        self.options.iter().any(|(f, _)| *f == flag)
    }
}

fn stdin_bytes() -> Result<Vec<u8>, Usage> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| Usage(format!("reading stdin: {e}")))?;
    Ok(buf)
}

fn parse(rest: &[String]) -> Result<ExitCode, Usage> {
    let args = Args::new(rest, &["--status"], &["--validate"])?;
    let status = args
        .value("--status")
        .ok_or_else(|| Usage("--status is required".into()))?;
    let status: u16 = status
        .parse()
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| Usage(format!("--status `{status}` is not an HTTP status")))?;
    if args.has("--validate") && args.provider != ProviderKind::Shogun {
        return Err(Usage(
            "--validate is Shogun's validate endpoint: use it with shogun".into(),
        ));
    }
    let body = stdin_bytes()?;
    let line = if args.has("--validate") {
        let mut info = TokenInfo::default();
        match Shogun::new().parse_validate(status, &body) {
            Ok(r) => match info.store(&r) {
                Ok(()) => Ok(info_json(&info)),
                Err(e) => Err(error_json(&e, None)),
            },
            Err(e) => Err(error_json(&e.error, Some(&Detail::from(&e.detail)))),
        }
    } else {
        let mut grant: Box<Grant> = Box::default();
        match AnyProvider::default_for(args.provider).parse_token(status, &body) {
            Ok(r) => match grant.store(&r) {
                Ok(()) => Ok(grant_json(&grant, true)),
                Err(e) => Err(error_json(&e, None)),
            },
            Err(e) => Err(error_json(&e.error, Some(&Detail::from(&e.detail)))),
        }
    };
    Ok(match line {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(line) => {
            println!("{line}");
            ExitCode::from(1)
        }
    })
}

fn request(rest: &[String]) -> Result<ExitCode, Usage> {
    let args = Args::new(rest, &["--client-id", "--scope", "--auth"], &[])?;
    let client_id = args
        .value("--client-id")
        .ok_or_else(|| Usage("--client-id is required".into()))?;
    let oauth = args.provider == ProviderKind::OAuth2;
    if !oauth && (args.has("--scope") || args.has("--auth")) {
        return Err(Usage("--scope and --auth apply to oauth2 only".into()));
    }
    let auth = match args.value("--auth") {
        None | Some("basic") => ClientAuth::Basic,
        Some("body") => ClientAuth::Body,
        Some(other) => return Err(Usage(format!("--auth `{other}`: expected basic or body"))),
    };
    let secret = secret_from_stdin().map_err(Usage)?;
    let credentials = Credentials::new(client_id, &secret).map_err(|e| Usage(e.to_string()))?;
    let provider = match args.provider {
        // The body does not depend on the URL; the CLI's `token` command takes the real one.
        ProviderKind::OAuth2 => {
            let p = OAuth2::new("").with_auth(auth);
            AnyProvider::OAuth2(match args.value("--scope") {
                Some(scope) => p.with_scope(scope),
                None => p,
            })
        }
        kind => AnyProvider::default_for(kind),
    };
    let mut buf = vec![0u8; 4096];
    let req = provider
        .token_request(&credentials, &mut buf)
        .map_err(|e| Usage(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    out.write_all(req.body)
        .and_then(|()| out.flush())
        .map_err(|e| Usage(format!("stdout: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

fn token(rest: &[String]) -> Result<ExitCode, Usage> {
    let args = Args::new(
        rest,
        &[
            "--base-url",
            "--token-url",
            "--client-id",
            "--scope",
            "--auth",
            "--ca",
            "--timeout",
            "--cache",
            "--store",
            "--transport",
        ],
        &["--show-token", "--allow-insecure-http"],
    )?;
    let client_id = args
        .value("--client-id")
        .ok_or_else(|| Usage("--client-id is required".into()))?;
    let target = Target {
        base_url: args.value("--base-url").map(str::to_owned),
        token_url: args.value("--token-url").map(str::to_owned),
        scope: args.value("--scope").map(str::to_owned),
        auth: args.value("--auth").map(str::to_owned),
        ca: args.value("--ca").map(str::to_owned),
        allow_insecure_http: args.has("--allow-insecure-http"),
        timeout: args
            .value("--timeout")
            .map(parse_timeout)
            .transpose()
            .map_err(Usage)?,
        cache: args.value("--cache").map(str::to_owned),
        store: args.value("--store").map(str::to_owned),
    };
    let provider = target.provider(args.provider).map_err(Usage)?;
    match args.value("--transport") {
        None | Some("std") => {}
        Some("embassy") => return token_embassy(&provider, client_id, &target, &args),
        Some("tokio") => {
            let mut target = target;
            store_from_env(&mut target);
            let secret = read_secret().map_err(Usage)?;
            let credentials =
                Credentials::new(client_id, &secret).map_err(|e| Usage(e.to_string()))?;
            let show = args.has("--show-token");
            let (code, line) = tessera_examples::tokio::token(provider, credentials, &target, show)
                .map_err(Usage)?;
            println!("{line}");
            return Ok(ExitCode::from(code));
        }
        Some(other) => {
            return Err(Usage(format!(
                "--transport `{other}`: expected std, tokio or embassy"
            )))
        }
    }
    let mut target = target;
    store_from_env(&mut target);
    let options = tessera_std::Options {
        // One fetch and exit: nothing to refresh in the background.
        refresh_in_background: false,
        ..target.options().map_err(Usage)?
    };
    let secret = read_secret().map_err(Usage)?;
    let credentials = Credentials::new(client_id, &secret).map_err(|e| Usage(e.to_string()))?;
    let client: tessera_std::Client<_> =
        tessera_std::Client::with_options(provider, credentials, options);
    match client.token().map(|_| client.grant()) {
        Ok(Some(grant)) => {
            let cached = client.token_requests() == 0;
            println!("{}", token_json(&grant, args.has("--show-token"), cached));
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            // The token expired between the fetch and this line: only with a lifetime of
            // almost nothing.
            println!(
                "{}",
                error_json(
                    &tessera_core::Error::Malformed {
                        field: Some("expires_in"),
                        problem: tessera_core::Problem::Range
                    },
                    None
                )
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            println!("{}", std_error_json(&e));
            Ok(ExitCode::from(1))
        }
    }
}

/// `call`: `--repeat` downstream calls with a token, one JSON line each (status, ms, a new
/// or kept connection, the TLS handshake it cost), then the summary line.
fn call(rest: &[String]) -> Result<ExitCode, Usage> {
    use tessera_examples::call::{parse_data, parse_header, parse_method, CallSpec};
    // --header may be given again and again: taken out first.
    let mut headers = Vec::new();
    let mut others = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        if a == "--header" {
            let v = it
                .next()
                .ok_or_else(|| Usage("--header needs a value".into()))?;
            headers.push(parse_header(v).map_err(Usage)?);
        } else {
            others.push(a.clone());
        }
    }
    let args = Args::new(
        &others,
        &[
            "--base-url",
            "--token-url",
            "--client-id",
            "--scope",
            "--auth",
            "--ca",
            "--timeout",
            "--transport",
            "--url",
            "--method",
            "--data",
            "--repeat",
        ],
        &["--allow-insecure-http", "--show-body"],
    )?;
    let client_id = args
        .value("--client-id")
        .ok_or_else(|| Usage("--client-id is required".into()))?;
    let url = args
        .value("--url")
        .ok_or_else(|| Usage("--url is required".into()))?;
    let data = args
        .value("--data")
        .map(parse_data)
        .transpose()
        .map_err(Usage)?;
    let method = match args.value("--method") {
        Some(m) => parse_method(m).map_err(Usage)?,
        None if data.is_some() => tessera_core::Method::Post,
        None => tessera_core::Method::Get,
    };
    let repeat = match args.value("--repeat") {
        None => 1,
        Some(n) => n
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Usage(format!("--repeat `{n}`: expected a count from 1")))?,
    };
    let spec = CallSpec {
        url: url.to_owned(),
        method,
        headers,
        data,
        repeat,
        show_body: args.has("--show-body"),
    };
    let target = Target {
        base_url: args.value("--base-url").map(str::to_owned),
        token_url: args.value("--token-url").map(str::to_owned),
        scope: args.value("--scope").map(str::to_owned),
        auth: args.value("--auth").map(str::to_owned),
        ca: args.value("--ca").map(str::to_owned),
        allow_insecure_http: args.has("--allow-insecure-http"),
        timeout: args
            .value("--timeout")
            .map(parse_timeout)
            .transpose()
            .map_err(Usage)?,
        cache: None,
        store: None,
    };
    let provider = target.provider(args.provider).map_err(Usage)?;
    let secret = read_secret().map_err(Usage)?;
    let credentials = Credentials::new(client_id, &secret).map_err(|e| Usage(e.to_string()))?;
    let mut print = |line: String| println!("{line}");
    let code = match args.value("--transport") {
        None | Some("std") => {
            let token_https = target
                .token_url
                .as_deref()
                .or(target.base_url.as_deref())
                .is_none_or(|u| {
                    u.get(..8)
                        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
                });
            let options = tessera_std::Options {
                refresh_in_background: false,
                ..target.options().map_err(Usage)?
            };
            let client = tessera_std::Client::with_options(provider, credentials, options);
            tessera_examples::call::std_call(&client, &spec, token_https, &mut print)
        }
        Some("embassy") => call_embassy(provider, credentials, &target, &spec, &mut print)?,
        Some("tokio") => {
            tessera_examples::tokio::call(provider, credentials, &target, &spec, &mut print)
                .map_err(Usage)?
        }
        Some(other) => {
            return Err(Usage(format!(
                "--transport `{other}`: expected std, tokio or embassy"
            )))
        }
    };
    Ok(ExitCode::from(code))
}

/// `call` with tessera-embassy (`--transport embassy`).
#[cfg(feature = "embassy")]
fn call_embassy(
    provider: tessera_std::OwnedProvider,
    credentials: Credentials,
    target: &Target,
    spec: &tessera_examples::call::CallSpec,
    print: &mut dyn FnMut(String),
) -> Result<u8, Usage> {
    // The process's one client: its provider lives as long.
    let provider: &'static tessera_std::OwnedProvider = Box::leak(Box::new(provider));
    tessera_examples::embassy::call(*provider.provider(), credentials, target, spec, print)
        .map_err(Usage)
}

/// Without the `embassy` feature: a usage error that says how to build it.
#[cfg(not(feature = "embassy"))]
fn call_embassy(
    _: tessera_std::OwnedProvider,
    _: Credentials,
    _: &Target,
    _: &tessera_examples::call::CallSpec,
    _: &mut dyn FnMut(String),
) -> Result<u8, Usage> {
    Err(Usage(
        "--transport embassy needs a build with `--features embassy` (and a C toolchain)".into(),
    ))
}

/// The Redis URL may carry a password: `TESSERA_STORE` keeps it out of the argument list
/// (which any user of the machine can read). `--store` and `--cache` take precedence. For
/// the host transports (std, tokio), which share the store's records.
fn store_from_env(target: &mut Target) {
    if target.store.is_none() && target.cache.is_none() {
        target.store = std::env::var("TESSERA_STORE")
            .ok()
            .filter(|s| !s.is_empty());
    }
}

/// `token` with tessera-embassy and MbedTLS (`--transport embassy`).
#[cfg(feature = "embassy")]
fn token_embassy(
    provider: &tessera_std::OwnedProvider,
    client_id: &str,
    target: &Target,
    args: &Args<'_>,
) -> Result<ExitCode, Usage> {
    let secret = read_secret().map_err(Usage)?;
    let credentials = Credentials::new(client_id, &secret).map_err(|e| Usage(e.to_string()))?;
    let (code, line) = tessera_examples::embassy::token(
        *provider.provider(),
        credentials,
        target,
        args.has("--show-token"),
    )
    .map_err(Usage)?;
    println!("{line}");
    Ok(ExitCode::from(code))
}

/// Without the `embassy` feature: a usage error that says how to build it.
#[cfg(not(feature = "embassy"))]
fn token_embassy(
    _: &tessera_std::OwnedProvider,
    _: &str,
    _: &Target,
    _: &Args<'_>,
) -> Result<ExitCode, Usage> {
    Err(Usage(
        "--transport embassy needs a build with `--features embassy` (and a C toolchain)".into(),
    ))
}
