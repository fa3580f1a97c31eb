//! The environment's proxy (`ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`) is used for
//! `https://` only: a plaintext token request to loopback never reaches it. Its own test
//! binary with one test, because it sets process environment variables.

mod common;

use common::{creds, oauth, options};
use tessera_core::{ProviderKind, Stage};
use tessera_sandbox::{CountingListener, Endpoint, Sandbox};
use tessera_std::{Client, OwnedProvider};

#[test]
fn the_environments_proxy_never_sees_plaintext() {
    let proxy = CountingListener::answering(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let url = format!("http://{}", proxy.addr());
    for name in [
        "ALL_PROXY",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "all_proxy",
        "https_proxy",
        "http_proxy",
    ] {
        std::env::set_var(name, &url);
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");

    let sb = Sandbox::start().unwrap();
    let client = oauth(&sb, options()); // default Proxy::Env
    assert!(!client.token().unwrap().as_str().is_empty());
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 1);
    assert_eq!(proxy.accepted(), 0, "the secret went to the proxy");

    // The environment was read: an https:// request goes to the proxy.
    let (tls, _ca) = Sandbox::start_tls("localhost").unwrap();
    let url = format!("https://localhost:{}/oauth2/token", tls.addr().port());
    let client = Client::<_>::with_options(
        OwnedProvider::new(ProviderKind::OAuth2, url),
        creds(),
        options(),
    );
    let e = client.token().unwrap_err();
    assert_eq!(e.transport().map(|t| t.stage), Some(Stage::Connect), "{e}");
    assert_eq!(proxy.accepted(), 1);
}
