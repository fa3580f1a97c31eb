//! Downstream calls on the `http` crate's types: extra headers reach the server, response
//! headers come back, the 401 rule, the body bound; `Retry-After` read and capped; a
//! provider built from run-time strings; token capacity chosen by the user.

mod common;

use std::time::Duration;

use common::{assert_no_secret, creds, oauth, options};
use tessera_core::{ErrorKind, ProviderKind};
use tessera_sandbox::{Endpoint, Fault, Sandbox};
use tessera_std::{http, Client, Error, Options, OwnedProvider};

#[test]
fn headers_go_out_and_come_back() {
    let sb = Sandbox::start().unwrap();
    let client = oauth(&sb, options());
    let request = http::Request::get(sb.protected_url(ProviderKind::OAuth2))
        .header("Idempotency-Key", "order-1234-attempt-1")
        .header("Accept", "application/json")
        .header("Authorization", "Basic caller-set-this") // replaced by the bearer token
        .body("")
        .unwrap();
    let response = client.call(request).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap()),
        Some("req-1")
    );
    let sent = sb.last_headers(Endpoint::Protected(ProviderKind::OAuth2));
    let header = |name: &str| {
        sent.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(header("idempotency-key"), ["order-1234-attempt-1"]);
    assert_eq!(header("accept"), ["application/json"]);
    let token = client.token().unwrap();
    assert_eq!(
        header("authorization"),
        [format!("Bearer {}", token.as_str())]
    );
}

#[test]
fn a_401_rejects_refetches_and_retries_once() {
    let sb = Sandbox::start().unwrap();
    let client = oauth(&sb, options());
    let first = client.token().unwrap();
    sb.revoke_all(ProviderKind::OAuth2);
    let request = http::Request::get(sb.protected_url(ProviderKind::OAuth2))
        .header("Idempotency-Key", "k-7")
        .body(Vec::new())
        .unwrap();
    let response = client.call(request).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 2);
    assert_eq!(sb.count(Endpoint::Protected(ProviderKind::OAuth2)), 2);
    // The retry carried the same idempotency key and the new token.
    let sent = sb.last_headers(Endpoint::Protected(ProviderKind::OAuth2));
    assert!(sent.contains(&("idempotency-key".into(), "k-7".into())));
    assert_ne!(client.token().unwrap().id(), first.id());

    // A second 401 goes to the caller, after one refetch.
    sb.inject(
        Endpoint::Protected(ProviderKind::OAuth2),
        Fault::Status(401),
        2,
    );
    let response = client
        .call(
            http::Request::get(sb.protected_url(ProviderKind::OAuth2))
                .body("")
                .unwrap(),
        )
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 3);
    assert_eq!(sb.count(Endpoint::Protected(ProviderKind::OAuth2)), 4);
}

#[test]
fn a_body_over_the_limit_is_an_error() {
    let sb = Sandbox::start().unwrap();
    let client = oauth(
        &sb,
        Options {
            max_body: 1024,
            ..options()
        },
    );
    sb.inject(
        Endpoint::Protected(ProviderKind::OAuth2),
        Fault::HugeBody(4096),
        1,
    );
    let e = client
        .call(
            http::Request::get(sb.protected_url(ProviderKind::OAuth2))
                .body(b"")
                .unwrap(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::BodyTooLarge { limit: 1024 }), "{e:?}");

    // A token answer over the limit: the core's capacity error.
    client.reject(&client.token().unwrap());
    sb.inject(
        Endpoint::Token(ProviderKind::OAuth2),
        Fault::HugeBody(4096),
        1,
    );
    let e = client.token().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Capacity, "{e}");
}

#[test]
fn a_huge_retry_after_is_capped() {
    let sb = Sandbox::start().unwrap();
    let client = oauth(&sb, options());
    sb.inject(
        Endpoint::Token(ProviderKind::OAuth2),
        Fault::RateLimited {
            retry_after: Some(999_999_999),
        },
        1,
    );
    let e = client.token().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited, "{e}");
    let cap = Options::default().session.retry_after_cap;
    match e {
        Error::Token {
            retry_in: Some(d), ..
        } => assert!(d <= cap && d > cap - Duration::from_secs(60), "{d:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_echoed_secret_is_never_shown() {
    let sb = Sandbox::start().unwrap();
    let client = oauth(&sb, options());
    sb.inject(Endpoint::Token(ProviderKind::OAuth2), Fault::EchoRequest, 1);
    let e = client.token().unwrap_err();
    assert_no_secret(&e);
}

#[test]
fn a_provider_from_runtime_strings_needs_no_leak() {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        // Strings that live shorter than the client.
        let provider = {
            let url: String = sb.base_url(kind);
            OwnedProvider::new(kind, url)
        };
        let client: Client<OwnedProvider> = Client::with_options(provider, creds(), options());
        let on_another_thread = client.clone();
        let t = std::thread::spawn(move || on_another_thread.token().map(|t| t.as_str().len()));
        assert!(t.join().unwrap().unwrap() > 0, "{kind}");
    }
    let scoped = OwnedProvider::new(ProviderKind::OAuth2, sb.base_url(ProviderKind::OAuth2))
        .with_scope(String::from("TRANSACTION_READ"));
    let client: Client<_> = Client::with_options(scoped, creds(), options());
    assert!(client.token().unwrap().has_scope("TRANSACTION_READ"));
}

#[test]
fn token_capacity_is_the_users_choice() {
    let sb = Sandbox::start().unwrap();
    sb.inject(
        Endpoint::Token(ProviderKind::OAuth2),
        Fault::OversizedToken(3000),
        2,
    );
    let idp = || OwnedProvider::new(ProviderKind::OAuth2, sb.base_url(ProviderKind::OAuth2));
    let small: Client<OwnedProvider> = Client::with_options(idp(), creds(), options());
    assert_eq!(small.token().unwrap_err().kind(), ErrorKind::Capacity);
    let large: Client<OwnedProvider, 4096> = Client::with_capacity(idp(), creds(), options());
    assert_eq!(large.token().unwrap().as_str().len(), 3000);
}

#[test]
fn shogun_validate_uses_the_same_401_rule() {
    let sb = Sandbox::start().unwrap();
    let base = sb.base_url(ProviderKind::Shogun);
    let client: Client<_> = Client::with_options(
        OwnedProvider::new(ProviderKind::Shogun, base.clone()),
        creds(),
        options(),
    );
    let shogun = tessera_core::Shogun::with_base_url(&base);
    assert!(client.validate(&shogun).is_ok());
    sb.revoke_all(ProviderKind::Shogun);
    assert!(client.validate(&shogun).is_ok());
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::Shogun)), 2);
    assert_eq!(sb.count(Endpoint::Validate), 3);
}
