//! `Session::write_request`: the token request written into the caller's buffer and
//! described by a `Copy` layout reads back exactly what `Session::request` lends, for every
//! provider and client authentication; a buffer too small says how much the whole request
//! (URL included) needs, and that much is enough.

use tessera_core::session::{Config, Poll, Session};
use tessera_core::{AnyProvider, ClientAuth, Credentials, Instant, OAuth2, Provider, ProviderKind};

fn check<P: Provider>(provider: P, what: &str) {
    let creds = Credentials::new("terminal-7", "s3cr3t: \"q\" é").unwrap();
    let mut s = Session::<P>::new(provider, creds, Config::default(), 7);
    let Poll::Fetch(ticket) = s.poll(Instant::from_millis(0)) else {
        panic!("{what}: no fetch")
    };
    let mut lent = [0u8; 1024];
    let want = s.request(&ticket, &mut lent).unwrap();
    let (url, auth, body) = (
        want.url.to_string(),
        want.authorization.map(str::to_owned),
        want.body.to_vec(),
    );
    let (method, content_type) = (want.method, want.content_type);

    let mut buf = [0u8; 1024];
    let layout = s.write_request(&ticket, &mut buf).unwrap();
    // Copy: kept after the buffer is borrowed again.
    let kept = layout;
    assert_eq!(kept.url(&buf), url, "{what}");
    assert_eq!(kept.authorization(&buf).map(str::to_owned), auth, "{what}");
    assert_eq!(kept.body(&buf), &body[..], "{what}");
    assert_eq!(
        (kept.method, kept.content_type),
        (method, content_type),
        "{what}"
    );
    let again = kept.request(&buf);
    assert_eq!(
        again.headers().count(),
        want_headers(&auth, content_type),
        "{what}"
    );
    assert!(
        !format!("{kept:?}").contains("s3cr3t"),
        "{what}: Debug shows positions only"
    );

    // Too small: the error says what is needed; sized from it, a buffer gets at most one
    // more (final) error before the request fits (the URL's length is known only once the
    // provider's own part fits).
    let mut size = 16;
    let mut errors = 0;
    let layout = loop {
        let mut exact = vec![0u8; size];
        match s.write_request(&ticket, &mut exact) {
            Ok(layout) => {
                assert_eq!(layout.url(&exact), url, "{what}");
                assert_eq!(layout.body(&exact), &body[..], "{what}");
                break layout;
            }
            Err(tessera_core::Error::Capacity { needed, .. }) => {
                assert!(needed > size, "{what}: {needed} after {size}");
                size = needed;
                errors += 1;
                assert!(errors <= 2, "{what}: a third capacity error");
            }
            Err(e) => panic!("{what}: {e}"),
        }
    };
    let _ = layout;
}

fn want_headers(auth: &Option<String>, content_type: Option<&str>) -> usize {
    1 + usize::from(auth.is_some()) + usize::from(content_type.is_some())
}

#[test]
fn every_provider_writes_a_layout_that_reads_back_the_request() {
    // OAuth 2.0 has no default endpoint: it is checked below with one.
    for kind in ProviderKind::ALL
        .into_iter()
        .filter(|k| *k != ProviderKind::OAuth2)
    {
        check(AnyProvider::default_for(kind), kind.name());
    }
    check(
        OAuth2::new("https://idp.example/oauth2/token").with_auth(ClientAuth::Body),
        "oauth2 body",
    );
    check(
        OAuth2::new("https://idp.example/oauth2/token").with_scope("payments"),
        "oauth2 basic",
    );
}

#[test]
fn a_refused_url_is_refused_as_by_request() {
    let creds = Credentials::new("terminal-7", "s3cr3t").unwrap();
    let mut s = Session::<OAuth2<'static>>::new(
        OAuth2::new("http://10.0.0.7/token"),
        creds,
        Config::default(),
        7,
    );
    let Poll::Fetch(ticket) = s.poll(Instant::from_millis(0)) else {
        panic!("no fetch")
    };
    assert_eq!(
        s.write_request(&ticket, &mut [0u8; 512]),
        Err(tessera_core::Error::Insecure)
    );
}
