//! HTTPS through tessera-embassy's `tls` feature (the `EmbeddedTls` connector) against the
//! sandbox's TLS endpoint: the right CA works, for the token and for calls through the one
//! `call()`, in the record slots the client's `Resources` hold (three calls at once share
//! two slots), on a kept connection (a full handshake only for a new one: embedded-tls does
//! not resume); a kept connection the server closed is replaced for a GET and not resent
//! for a POST without a key; another CA, or a certificate for another name, is refused with
//! cause `tls` before any HTTP request is sent; a `Plain` client refuses `https://` before
//! sending.

mod common;

use common::TestRng;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use std_embedded_nal_async::Stack;
use tessera_core::{AnyProvider, Credentials, ErrorKind, ProviderKind, Stage};
use tessera_embassy::{ApiRequest, CallBuffers, Client, EmbeddedTls, Plain, Resources, Settings};
use tessera_sandbox::{Endpoint, Sandbox, CLIENT_ID, CLIENT_SECRET};

type C = Client<'static, NoopRawMutex, AnyProvider<'static>, EmbeddedTls<'static, Stack, Stack>>;

fn settings() -> Settings {
    Settings {
        timeout: embassy_time::Duration::from_secs(5),
        ..Settings::default()
    }
}

fn client(sb: &Sandbox, kind: ProviderKind, ca: Vec<u8>) -> &'static C {
    let stack: &'static Stack = Box::leak(Box::default());
    let base: &'static str = Box::leak(sb.base_url(kind).into_boxed_str());
    let resources: &'static mut Resources = Box::leak(Box::default());
    let https = EmbeddedTls::new(
        stack,
        stack,
        Box::leak(ca.into_boxed_slice()),
        Box::leak(Box::new(TestRng(42))),
    );
    let creds = Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap();
    let c = Client::builder(
        AnyProvider::new(kind, base),
        creds,
        https,
        resources,
        &mut TestRng(7),
    )
    .settings(settings())
    .build();
    Box::leak(Box::new(c))
}

#[test]
fn https_with_the_right_ca_fetches_and_calls() {
    let (sb, ca) = Sandbox::start_tls("127.0.0.1").unwrap();
    assert!(sb.origin().starts_with("https://"));
    for kind in ProviderKind::ALL {
        let c = client(&sb, kind, ca.clone());
        async_io::block_on(async {
            let mut out = [0u8; 2048];
            let token = c
                .token(&mut out)
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(token.as_str().split('.').count(), 3, "{kind}");
            let mut buffers: Box<CallBuffers> = Box::default();
            let url = sb.protected_url(kind);
            let headers = [("Idempotency-Key", "pay-0001")];
            let r = c
                .call(ApiRequest::get(&url).headers(&headers), &mut buffers)
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{kind}");
            assert!(r.header("X-Request-Id").is_some(), "{kind}: {r:?}");
            // The token request's connection, kept: no handshake.
            assert_eq!(r.connection().as_str(), "reused", "{kind}");
            assert_eq!(r.connection().handshake.as_str(), "none", "{kind}");
        });
        assert_eq!(sb.count(Endpoint::Token(kind)), 1, "{kind}");
        assert_eq!(sb.count(Endpoint::Protected(kind)), 1, "{kind}");
        assert_eq!(c.fetch_buffers_wiped(), Some(true), "{kind}");
        // The kept connection holds its record slot until it is closed, then it is wiped.
        assert_eq!(c.tls_records_wiped(), None, "{kind}");
        c.close_connections();
        assert_eq!(c.tls_records_wiped(), Some(true), "{kind}");
    }
}

#[test]
fn three_calls_at_once_share_the_two_record_slots() {
    let (sb, ca) = Sandbox::start_tls("127.0.0.1").unwrap();
    let kind = ProviderKind::OAuth2;
    let c = client(&sb, kind, ca);
    let url = sb.protected_url(kind);
    let one = || async {
        let mut buffers: Box<CallBuffers> = Box::default();
        c.call(ApiRequest::get(&url), &mut buffers)
            .await
            .map(|r| r.status())
    };
    let (a, b, d) = async_io::block_on(embassy_futures::join::join3(one(), one(), one()));
    assert_eq!((a.unwrap(), b.unwrap(), d.unwrap()), (200, 200, 200));
    assert_eq!(sb.count(Endpoint::Protected(kind)), 3);
    c.close_connections();
    assert_eq!(c.tls_records_wiped(), Some(true));
}

#[test]
fn calls_keep_the_connection_and_a_dead_one_is_replaced_only_when_safe() {
    let (sb, ca) = Sandbox::start_tls("127.0.0.1").unwrap();
    let kind = ProviderKind::OAuth2;
    let c = client(&sb, kind, ca);
    let url = sb.protected_url(kind);
    let call = |request: ApiRequest<'_>| {
        async_io::block_on(async {
            let mut buffers: Box<CallBuffers> = Box::default();
            c.call(request, &mut buffers).await.map(|r| r.connection())
        })
    };
    for i in 0..10 {
        let conn = call(ApiRequest::get(&url)).unwrap();
        assert!(conn.reused, "call {i}: {conn:?}");
    }
    let w = sb.wire();
    assert_eq!((w.connections, w.full), (1, 1), "{w:?}");
    let stats = c.wire_stats();
    assert_eq!((stats.connections, stats.reused, stats.full), (1, 10, 1));

    // The server closes the idle connection: a GET goes on a new one (a full handshake).
    sb.close_idle_connections();
    let conn = call(ApiRequest::get(&url)).unwrap();
    assert_eq!((conn.reused, conn.handshake.as_str()), (false, "full"));
    assert_eq!(sb.wire().connections, 2);

    // A POST without a key on a connection the server closed: `io`, never sent twice.
    sb.close_idle_connections();
    let before = sb.count(Endpoint::Protected(kind));
    let e = call(ApiRequest::post(&url, "application/json", b"{}")).unwrap_err();
    assert_eq!(e.stage(), Some(Stage::Io), "{e}");
    assert!(sb.count(Endpoint::Protected(kind)) <= before + 1);
    // With a key it is sent again once, on a new connection, and answered.
    call(ApiRequest::get(&url)).unwrap();
    sb.close_idle_connections();
    let headers = [("Idempotency-Key", "pay-0002")];
    let conn = call(ApiRequest::post(&url, "application/json", b"{}").headers(&headers)).unwrap();
    assert!(!conn.reused);
    c.close_connections();
    assert_eq!(c.tls_records_wiped(), Some(true));
}

#[test]
fn a_plain_client_refuses_https_before_sending() {
    let (sb, _) = Sandbox::start_tls("127.0.0.1").unwrap();
    let kind = ProviderKind::OAuth2;
    let stack: &'static Stack = Box::leak(Box::default());
    let base: &'static str = Box::leak(sb.base_url(kind).into_boxed_str());
    let resources: &'static mut Resources = Box::leak(Box::default());
    let creds = Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap();
    let c: Client<'_, NoopRawMutex, _, _> = Client::builder(
        AnyProvider::new(kind, base),
        creds,
        Plain::new(stack, stack),
        resources,
        &mut TestRng(7),
    )
    .settings(settings())
    .build();
    let err = async_io::block_on(async {
        let mut out = [0u8; 2048];
        c.token(&mut out).await.unwrap_err()
    });
    assert_eq!(err.stage(), Some(Stage::Tls), "{err}");
    assert_eq!(sb.count(Endpoint::Token(kind)), 0);
}

fn refused(sb: &Sandbox, ca: Vec<u8>) {
    let c = client(sb, ProviderKind::OAuth2, ca);
    let err = async_io::block_on(async {
        let mut out = [0u8; 2048];
        c.token(&mut out).await.unwrap_err()
    });
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    assert_eq!(err.stage(), Some(Stage::Tls), "{err}");
    // The handshake failed: no HTTP request reached the provider, so no secret left.
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 0);
    assert_eq!(c.tls_records_wiped(), Some(true));
}

#[test]
fn a_server_signed_by_another_ca_is_refused() {
    let (sb, _) = Sandbox::start_tls("127.0.0.1").unwrap();
    let (_other, other_ca) = Sandbox::start_tls("127.0.0.1").unwrap();
    refused(&sb, other_ca);
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let (sb, ca) = Sandbox::start_tls("payments.example").unwrap();
    refused(&sb, ca);
}

/// A client on embedded-tls can live in a `static` shared by tasks on several executors
/// (with a stack whose connections are `Send`, as std's are).
#[test]
fn an_embedded_tls_client_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<
        Client<
            'static,
            embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex,
            AnyProvider<'static>,
            EmbeddedTls<'static, Stack, Stack>,
        >,
    >();
    shareable::<Resources>();
}
