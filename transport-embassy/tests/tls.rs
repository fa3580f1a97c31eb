//! HTTPS through tessera-embassy's `tls` feature (reqwless + embedded-tls) against the
//! sandbox's TLS endpoint: the right CA works; another CA, or a certificate for another
//! name, is refused before any HTTP request is sent.

mod common;

use common::{leak_buf, TestRng};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use std_embedded_nal_async::Stack;
use tessera_core::{AnyProvider, Credentials, ErrorKind, Method, ProviderKind};
use tessera_embassy::{ApiRequest, Buffers, CallBuffers, Client, Settings, Tls};
use tessera_sandbox::{Endpoint, Sandbox, CLIENT_ID, CLIENT_SECRET};

type C = Client<'static, NoopRawMutex, AnyProvider<'static>, Stack, Stack>;

fn client(sb: &Sandbox, kind: ProviderKind, ca: Vec<u8>) -> &'static C {
    let stack: &'static Stack = Box::leak(Box::default());
    let base: &'static str = Box::leak(sb.base_url(kind).into_boxed_str());
    let buffers = Buffers {
        request: leak_buf(1024),
        headers: leak_buf(2048),
        body: leak_buf(8192),
    };
    let settings = Settings {
        timeout: embassy_time::Duration::from_secs(5),
        ..Settings::default()
    };
    let tls = Tls {
        ca: Box::leak(ca.into_boxed_slice()),
        read_buffer: leak_buf(16_640),
        write_buffer: leak_buf(16_640),
        rng: Box::leak(Box::new(TestRng(42))),
    };
    let creds = Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap();
    let c = Client::new(
        AnyProvider::new(kind, base),
        creds,
        stack,
        stack,
        buffers,
        settings,
        &mut TestRng(7),
    )
    .with_tls(tls);
    Box::leak(Box::new(c))
}

#[test]
fn https_with_the_right_ca_fetches_and_calls() {
    let (sb, ca) = Sandbox::start_tls("127.0.0.1").unwrap();
    assert!(sb.origin().starts_with("https://"));
    for kind in ProviderKind::ALL {
        let c = client(&sb, kind, ca.clone());
        async_io::block_on(async {
            let mut token = heapless::String::<2048>::new();
            c.token(&mut token)
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(token.split('.').count(), 3, "{kind}");
            let (mut auth, mut head, mut body) =
                (vec![0u8; 2100], vec![0u8; 2048], vec![0u8; 2048]);
            let mut buffers = CallBuffers {
                token: &mut token,
                authorization: &mut auth,
                headers: &mut head,
                body: &mut body,
            };
            let url = sb.protected_url(kind);
            let r = c
                .call(
                    ApiRequest {
                        method: Method::Get,
                        url: &url,
                        body: None,
                    },
                    &mut buffers,
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{kind}");
        });
        assert_eq!(sb.count(Endpoint::Token(kind)), 1, "{kind}");
    }
}

fn refused(sb: &Sandbox, ca: Vec<u8>) {
    let c = client(sb, ProviderKind::OAuth2, ca);
    let err = async_io::block_on(async {
        let mut token = heapless::String::<2048>::new();
        c.token(&mut token).await.unwrap_err()
    });
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    // The handshake failed: no HTTP request reached the provider, so no secret left.
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 0);
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
