//! A secret never crosses the network in plaintext: a plaintext URL off the machine is
//! refused before any connection (token and downstream calls alike), and a plaintext
//! request never goes through a proxy. `0.0.0.0:PORT` is not loopback by the core's rule,
//! yet on Linux a connection to it would reach the counting listener on 127.0.0.1:PORT: a
//! count of zero proves nothing was sent.

mod common;

use common::{creds, oauth, options};
use tessera_core::transport::UrlError;
use tessera_core::{ErrorKind, ProviderKind, Stage};
use tessera_sandbox::{CountingListener, Endpoint, Sandbox};
use tessera_std::{http, Client, Error, Options, OwnedProvider, Proxy};

fn get(url: &str) -> http::Request<Vec<u8>> {
    http::Request::get(url).body(Vec::new()).unwrap()
}

#[test]
fn plaintext_off_the_machine_is_refused_before_connecting() {
    let listener = CountingListener::start().unwrap();
    let port = listener.port();
    let url = format!("http://0.0.0.0:{port}/oauth2/token");
    let client = Client::<_>::with_options(
        OwnedProvider::new(ProviderKind::OAuth2, url),
        creds(),
        options(),
    );

    let e = client.token().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Insecure, "{e}");
    assert_eq!(e.transport(), None);

    let e = client
        .call(get(&format!("http://0.0.0.0:{port}/api")))
        .unwrap_err();
    assert!(matches!(e, Error::Insecure), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Insecure);
    // Not a URL the core accepts: refused with what was wrong, before any connection. (A
    // backslash or a %-escape in the host never gets this far: `http::Uri` refuses it.)
    for (url, why) in [
        (format!("ftp://127.0.0.1:{port}/api"), UrlError::Scheme),
        (
            format!("http://user:pw@127.0.0.1:{port}/api"),
            UrlError::UserInfo,
        ),
    ] {
        let e = client.call(get(&url)).unwrap_err();
        assert!(
            matches!(e, Error::Core(tessera_std::core::Error::Url(w)) if w == why),
            "{url}: {e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidUrl);
    }

    assert_eq!(listener.accepted(), 0, "nothing may reach the listener");
}

#[test]
fn the_insecure_opt_in_connects() {
    let listener = CountingListener::start().unwrap();
    let port = listener.port();
    let mut opts = options();
    opts.session.allow_insecure_http = true;
    let url = format!("http://0.0.0.0:{port}/oauth2/token");
    let client =
        Client::<_>::with_options(OwnedProvider::new(ProviderKind::OAuth2, url), creds(), opts);
    // The listener closes without answering: a network failure, after a connection.
    let e = client.token().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert_eq!(listener.accepted(), 1);
}

#[test]
fn plaintext_never_takes_the_proxy_and_https_does() {
    let proxy = CountingListener::answering(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let sb = Sandbox::start().unwrap();
    let opts = Options {
        proxy: Proxy::url(&format!("http://{}", proxy.addr())).unwrap(),
        ..options()
    };
    // Plaintext to loopback: the token and a downstream call go straight to the sandbox.
    let client = oauth(&sb, opts.clone());
    client.token().unwrap();
    let r = client
        .call(get(&sb.protected_url(ProviderKind::OAuth2)))
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 1);
    assert_eq!(proxy.accepted(), 0, "a plaintext request reached the proxy");

    // https:// does use it (the option is in force): the proxy refuses the tunnel.
    let (tls, _ca) = Sandbox::start_tls("localhost").unwrap();
    let url = format!("https://localhost:{}/oauth2/token", tls.addr().port());
    let client =
        Client::<_>::with_options(OwnedProvider::new(ProviderKind::OAuth2, url), creds(), opts);
    let e = client.token().unwrap_err();
    assert_eq!(e.transport().map(|t| t.stage), Some(Stage::Connect), "{e}");
    assert_eq!(proxy.accepted(), 1);
    assert!(
        proxy.requests()[0].starts_with("CONNECT localhost:"),
        "{:?}",
        proxy.requests()
    );
    assert_eq!(tls.count(Endpoint::Token(ProviderKind::OAuth2)), 0);
}

#[test]
fn a_bad_proxy_url_is_refused_when_made() {
    assert!(matches!(
        Proxy::url("not a url at all"),
        Err(tessera_std::ProxyError)
    ));
    let p = Proxy::url("http://user:hunter2@127.0.0.1:3128").unwrap();
    assert!(!format!("{p:?}").contains("hunter2"));
}

/// What the core checks is what ureq connects to: for every URL the core accepts among
/// combinations of hosts, separators that split authorities differently in different
/// parsers, tails and ports, the `http` crate (ureq's URI type) reads the same host and
/// port. A URL where the two could disagree is one the core refuses.
#[test]
fn the_core_and_ureq_agree_on_every_host_the_core_accepts() {
    use tessera_core::transport::parse_url;
    let hosts = [
        "127.0.0.1",
        "localhost",
        "api.example",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "127.1",
        "0x7f.0.0.1",
        "",
    ];
    let separators = [
        "", "#", "?", "/", "\\", "@", ":", "%2e", ";", " ", "\t", "%00", ".", "..", "[", "]",
    ];
    let tails = [
        "",
        ".attacker.example",
        "@evil.example",
        "evil.example:81",
        "x",
    ];
    let ports = ["", ":80", ":0", ":65536", ":08080", ":8443"];
    let (mut accepted, mut refused) = (0, 0);
    for host in hosts {
        for sep in separators {
            for tail in tails {
                for port in ports {
                    let url = format!("http://{host}{sep}{tail}{port}/p?q=1#f");
                    let Ok(target) = parse_url(&url) else {
                        refused += 1;
                        continue;
                    };
                    accepted += 1;
                    let uri: http::Uri = url
                        .parse()
                        .unwrap_or_else(|e| panic!("{url}: core accepts, http refuses: {e}"));
                    let uri_host = uri.host().unwrap_or_default();
                    assert_eq!(uri_host, target.host, "{url}: host");
                    assert_eq!(uri.port_u16().unwrap_or(80), target.port, "{url}: port");
                }
            }
        }
    }
    assert!(
        accepted > 50 && refused > 1000,
        "{accepted} accepted, {refused} refused"
    );
}
