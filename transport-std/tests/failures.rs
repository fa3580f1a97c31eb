//! Every network failure is classified (dns, connect, tls, timeout, protocol, io) with a
//! short fixed detail, over real loopback failures where one can be made, and the ureq
//! error stays reachable as the source.

mod common;

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use common::{assert_no_secret, creds, oauth, options, pem};
use tessera_core::session::Cause;
use tessera_core::{ErrorKind, ProviderKind, Stage, TransportError};
use tessera_sandbox::{CountingListener, Endpoint, Fault, Sandbox, GARBAGE_STATUS_LINE};
use tessera_std::{classify, http, Client, Error, Options, OwnedProvider, Trust, TrustError};

fn get(url: &str) -> http::Request<Vec<u8>> {
    http::Request::get(url).body(Vec::new()).unwrap()
}

/// The classified failure of a token fetch, checking the ureq error is the source.
fn token_failure(client: &Client<OwnedProvider>) -> TransportError {
    let e = client.token().unwrap_err();
    assert_no_secret(&e);
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    let te = e.transport().expect("a transport failure");
    match &e {
        Error::Token {
            failure, source, ..
        } => {
            assert_eq!(failure.cause, Cause::Transport(te));
            let source = source.as_ref().expect("the ureq error is kept");
            assert_eq!(classify(source), te);
            let via_chain = std::error::Error::source(&e).unwrap();
            assert!(via_chain.downcast_ref::<ureq::Error>().is_some());
        }
        other => panic!("not a token error: {other:?}"),
    }
    te
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn refused_connection_says_connect() {
    let url = format!("http://127.0.0.1:{}/token", closed_port());
    let client = Client::<_>::with_options(
        OwnedProvider::new(ProviderKind::OAuth2, url.clone()),
        creds(),
        options(),
    );
    let te = token_failure(&client);
    assert_eq!(
        te,
        TransportError::new(Stage::Connect, "connection refused")
    );
    assert_eq!(te.stage.as_str(), "connect");

    let e = client.call(get(&url)).unwrap_err();
    assert_eq!(e.transport().map(|t| t.stage), Some(Stage::Connect), "{e}");
}

#[test]
fn a_server_that_never_answers_says_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    // Accepts and holds every connection, never answering.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    let opts = Options {
        request_timeout: Duration::from_millis(300),
        ..options()
    };
    let client =
        Client::<_>::with_options(OwnedProvider::new(ProviderKind::OAuth2, url), creds(), opts);
    let te = token_failure(&client);
    assert_eq!(te.stage, Stage::Timeout, "{te}");
    assert_eq!(te.stage.as_str(), "timeout");
}

#[test]
fn garbage_and_broken_framing_say_protocol() {
    let sb = Sandbox::start().unwrap();
    let client = oauth(&sb, options());
    sb.inject(
        Endpoint::Token(ProviderKind::OAuth2),
        Fault::GarbageStatusLine,
        1,
    );
    let te = token_failure(&client);
    assert_eq!(te.stage, Stage::Protocol, "{te}");

    client.retry();
    sb.inject(
        Endpoint::Token(ProviderKind::OAuth2),
        Fault::BrokenChunked,
        1,
    );
    let te = token_failure(&client);
    assert_eq!(
        te,
        TransportError::new(Stage::Protocol, "bad chunked framing")
    );

    // A downstream call to a server answering garbage.
    client.retry();
    let garbage = CountingListener::answering(GARBAGE_STATUS_LINE).unwrap();
    let e = client
        .call(get(&format!("http://{}/api", garbage.addr())))
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert_eq!(e.transport().map(|t| t.stage), Some(Stage::Protocol), "{e}");
    assert_no_secret(&e);
}

#[test]
fn an_oversized_response_head_says_protocol() {
    let sb = Sandbox::start().unwrap();
    let client = oauth(&sb, options());
    for size in [30_000, 200_000] {
        client.retry();
        sb.inject(
            Endpoint::Token(ProviderKind::OAuth2),
            Fault::HugeHeaders(size),
            1,
        );
        let te = token_failure(&client);
        assert_eq!(
            te,
            TransportError::new(Stage::Protocol, "response header too large"),
            "{size}"
        );
    }
    // A large head within the limit is read.
    client.retry();
    sb.inject(
        Endpoint::Token(ProviderKind::OAuth2),
        Fault::HugeHeaders(16_000),
        1,
    );
    assert!(client.token().is_ok());
}

#[test]
fn a_connection_cut_mid_body_says_io() {
    let sb = Sandbox::start().unwrap();
    let client = oauth(&sb, options());
    sb.inject(Endpoint::Token(ProviderKind::OAuth2), Fault::DropMidBody, 1);
    let te = token_failure(&client);
    assert_eq!(te.stage, Stage::Io, "{te}");
}

#[test]
fn https_to_a_plain_http_server_says_tls() {
    let sb = Sandbox::start().unwrap();
    let url = format!("https://{}/oauth2/token", sb.addr());
    let client = Client::<_>::with_options(
        OwnedProvider::new(ProviderKind::OAuth2, url),
        creds(),
        options(),
    );
    let te = token_failure(&client);
    assert_eq!(te.stage, Stage::Tls, "{te}");
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 0);
}

#[test]
fn an_untrusted_certificate_says_tls_and_the_apps_own_root_is_trusted() {
    let (sb, ca) = Sandbox::start_tls("localhost").unwrap();
    let url = format!("https://localhost:{}/oauth2/token", sb.addr().port());

    // Default roots (webpki): the sandbox's own CA is not among them.
    let client = Client::<_>::with_options(
        OwnedProvider::new(ProviderKind::OAuth2, url.clone()),
        creds(),
        options(),
    );
    let te = token_failure(&client);
    assert_eq!(
        te,
        TransportError::new(Stage::Tls, "certificate not trusted")
    );
    assert_eq!(
        sb.count(Endpoint::Token(ProviderKind::OAuth2)),
        0,
        "no HTTP request sent"
    );

    // The application's own root, as PEM: trusted, and only it.
    let opts = Options {
        trust: Trust::from_pem(&pem(&ca)).unwrap(),
        ..options()
    };
    let client = Client::<_>::with_options(
        OwnedProvider::new(ProviderKind::OAuth2, url.clone()),
        creds(),
        opts.clone(),
    );
    assert!(!client.token().unwrap().as_str().is_empty());
    let protected = format!("https://localhost:{}/oauth2/protected", sb.addr().port());
    let response = client.call(get(&protected)).unwrap();
    assert_eq!(response.status(), 200);

    // The host name is checked: the certificate names localhost, not 127.0.0.1.
    let by_ip = format!("https://127.0.0.1:{}/oauth2/token", sb.addr().port());
    let client = Client::<_>::with_options(
        OwnedProvider::new(ProviderKind::OAuth2, by_ip),
        creds(),
        opts,
    );
    let te = token_failure(&client);
    assert_eq!(
        te,
        TransportError::new(Stage::Tls, "certificate not valid for host")
    );
}

#[test]
fn the_platform_store_does_not_trust_a_private_ca() {
    let (sb, _ca) = Sandbox::start_tls("localhost").unwrap();
    let url = format!("https://localhost:{}/oauth2/token", sb.addr().port());
    let opts = Options {
        trust: Trust::Platform,
        ..options()
    };
    let client =
        Client::<_>::with_options(OwnedProvider::new(ProviderKind::OAuth2, url), creds(), opts);
    let te = token_failure(&client);
    assert_eq!(
        te,
        TransportError::new(Stage::Tls, "certificate not trusted")
    );
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 0);
}

#[test]
fn pem_roots_are_checked_when_the_trust_is_made() {
    let (_sb, ca) = Sandbox::start_tls("localhost").unwrap();
    let one = pem(&ca);
    let mut two = one.clone();
    two.extend_from_slice(&one);
    match Trust::from_pem(&two).unwrap() {
        Trust::Roots(r) => assert_eq!(r.len(), 2),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Trust::from_pem(b""),
        Err(TrustError::NoCertificate)
    ));
    assert!(matches!(
        Trust::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        Err(TrustError::NoCertificate)
    ));
    assert!(matches!(
        Trust::from_pem(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
        Err(TrustError::BadPem)
    ));
    let mut junk_then_good = pem(b"not a certificate at all");
    junk_then_good.extend_from_slice(&one);
    assert!(matches!(
        Trust::from_pem(&junk_then_good),
        Err(TrustError::BadCertificate { index: 0 })
    ));
    let mut good_then_junk = one.clone();
    good_then_junk.extend_from_slice(&pem(b"junk"));
    assert!(matches!(
        Trust::from_pem(&good_then_junk),
        Err(TrustError::BadCertificate { index: 1 })
    ));
    let missing = Trust::from_pem_file("/nonexistent/tessera-ca.pem").unwrap_err();
    assert!(matches!(missing, TrustError::Read(_)));
    assert_eq!(Error::from(missing).kind(), ErrorKind::Malformed);

    let dir = std::env::temp_dir().join(format!("tessera-ca-{}.pem", std::process::id()));
    std::fs::write(&dir, &two).unwrap();
    let from_file = Trust::from_pem_file(&dir);
    std::fs::remove_file(&dir).unwrap();
    assert!(matches!(from_file, Ok(Trust::Roots(r)) if r.len() == 2));
}

#[test]
fn constructed_errors_map_to_their_stage() {
    use ureq::Error as U;
    let cases: Vec<(U, Stage, &str)> = vec![
        (U::HostNotFound, Stage::Dns, "host not found"),
        (
            U::Timeout(ureq::Timeout::Resolve),
            Stage::Timeout,
            "name resolution timed out",
        ),
        (
            U::Timeout(ureq::Timeout::Global),
            Stage::Timeout,
            "timed out",
        ),
        (
            U::Timeout(ureq::Timeout::Connect),
            Stage::Timeout,
            "connect timed out",
        ),
        (
            U::Io(io::Error::from(io::ErrorKind::ConnectionRefused)),
            Stage::Connect,
            "connection refused",
        ),
        (
            U::Io(io::Error::from(io::ErrorKind::TimedOut)),
            Stage::Timeout,
            "timed out",
        ),
        (
            U::Io(io::Error::from(io::ErrorKind::ConnectionReset)),
            Stage::Io,
            "connection reset",
        ),
        (
            U::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            )),
            Stage::Tls,
            "certificate not trusted",
        ),
        (
            U::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
            )),
            Stage::Tls,
            "certificate expired",
        ),
        (
            U::Protocol(ureq_proto::Error::ChunkLenNotANumber),
            Stage::Protocol,
            "bad chunked framing",
        ),
        (
            U::LargeResponseHeader(65_536, 65_536),
            Stage::Protocol,
            "response header too large",
        ),
        (
            U::TooManyRedirects,
            Stage::Protocol,
            "redirect not followed",
        ),
        (
            U::ConnectProxyFailed("403 from the proxy, with a password?".into()),
            Stage::Connect,
            "proxy refused the tunnel",
        ),
    ];
    for (e, stage, detail) in cases {
        let te = classify(&e);
        assert_eq!(te, TransportError::new(stage, detail), "{e}");
        // The detail is fixed text, never the error's own words.
        let wrapped = Error::Transport {
            error: te,
            source: e,
        };
        assert!(!wrapped.to_string().contains("password"));
        assert_eq!(wrapped.transport(), Some(te));
    }
}
