//! Every provider's token request: method, URL, headers and exact body bytes, with secrets
//! that need escaping, and buffers that are too small.

use tessera_core::{
    AnyProvider, Apimw, ClientAuth, Credentials, Error, Method, OAuth2, Provider, ProviderKind,
    Setu, Shogun, StoneX, FORM, JSON,
};

const HOSTILE: &str = "p\"a\\s/s\n\t\u{1}\u{7f} é😀";

fn creds(secret: &str) -> Credentials {
    Credentials::new("client-1", secret).unwrap()
}

#[test]
fn json_providers_send_their_documented_bodies() {
    let cases: [(AnyProvider<'_>, &str, &str, &str); 5] = [
        (
            AnyProvider::Shogun(Shogun::new()),
            "https://api.shogun.io/api/v1/security/api/generate_token",
            "client_id",
            "client_secret",
        ),
        (
            AnyProvider::Apimw(Apimw::new()),
            "https://api.apimw.com/v1/auth/token",
            "api_key",
            "api_secret",
        ),
        (
            AnyProvider::Setu(Setu::sandbox()),
            "https://uat.setu.co/api/v2/auth/token",
            "clientID",
            "secret",
        ),
        (
            AnyProvider::Setu(Setu::production()),
            "https://prod.setu.co/api/v2/auth/token",
            "clientID",
            "secret",
        ),
        (
            AnyProvider::StoneX(StoneX::sandbox()),
            "https://api.sandbox.payments.stonex.com/api/v/authentication",
            "client_id",
            "client_secret",
        ),
    ];
    for (provider, url, id_key, secret_key) in cases {
        let c = creds("s3cr3t");
        let mut buf = [0u8; 512];
        let req = provider.token_request(&c, &mut buf).unwrap();
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.url.to_string(), url);
        assert_eq!(req.content_type, Some(JSON));
        assert_eq!(req.authorization, None);
        let want = format!(r#"{{"{id_key}":"client-1","{secret_key}":"s3cr3t"}}"#);
        assert_eq!(
            std::str::from_utf8(req.body).unwrap(),
            want,
            "{:?}",
            provider.kind()
        );
    }
}

#[test]
fn secrets_that_need_escaping_round_trip_as_strict_json() {
    for kind in [
        ProviderKind::Shogun,
        ProviderKind::Apimw,
        ProviderKind::Setu,
        ProviderKind::StoneX,
    ] {
        let provider = AnyProvider::default_for(kind);
        let c = Credentials::new("id \"quoted\"", HOSTILE).unwrap();
        let mut buf = [0u8; 512];
        let req = provider.token_request(&c, &mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(req.body).expect("strict JSON");
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2);
        let values: Vec<&str> = obj.values().map(|v| v.as_str().unwrap()).collect();
        assert!(values.contains(&"id \"quoted\""), "{kind}");
        assert!(values.contains(&HOSTILE), "{kind}");
    }
}

#[test]
fn setu_sends_strict_json_not_the_published_trailing_comma() {
    let c = Credentials::new(
        "c0a411d5-b6f9-4bfd-a342-7cb01935ed43",
        "b2b3e650-a31b-47a3-acf6-c96c9c5c282d",
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let setu = Setu::sandbox();
    let req = setu.token_request(&c, &mut buf).unwrap();
    let published = include_str!("../../tests/vectors/fixtures/setu-request-as-published.txt");
    assert!(
        serde_json::from_str::<serde_json::Value>(published).is_err(),
        "the page's example is invalid"
    );
    let ours: serde_json::Value = serde_json::from_slice(req.body).unwrap();
    assert_eq!(ours["clientID"], "c0a411d5-b6f9-4bfd-a342-7cb01935ed43");
    assert_eq!(ours["secret"], "b2b3e650-a31b-47a3-acf6-c96c9c5c282d");
}

#[test]
fn base_url_and_path_are_overridable() {
    let c = creds("s");
    let mut buf = [0u8; 256];
    let s = StoneX::with_base_url("http://127.0.0.1:9/").with_path("api/v1/authentication");
    assert_eq!(
        s.token_request(&c, &mut buf).unwrap().url.to_string(),
        "http://127.0.0.1:9/api/v1/authentication"
    );
    let sh = Shogun::with_base_url("http://localhost:8080/api/v1");
    assert_eq!(
        sh.token_request(&c, &mut buf).unwrap().url.to_string(),
        "http://localhost:8080/api/v1/security/api/generate_token"
    );
    let v = sh.validate_request("tok", &mut buf).unwrap();
    assert_eq!(v.method, Method::Get);
    assert_eq!(
        v.url.to_string(),
        "http://localhost:8080/api/v1/security/api/validate_token"
    );
    assert_eq!(v.authorization, Some("Bearer tok"));
    assert!(v.body.is_empty());
}

fn b64decode(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for ch in s.bytes().filter(|&b| b != b'=') {
        acc = acc << 6 | alphabet.iter().position(|&a| a == ch).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn form_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn oauth2_basic_follows_rfc6749_2_3_1() {
    let c = Credentials::new("my:client id", HOSTILE).unwrap();
    let idp = OAuth2::new("https://idp.example/token")
        .with_scope("a b")
        .with_audience("https://api/");
    let mut buf = [0u8; 512];
    let req = idp.token_request(&c, &mut buf).unwrap();
    assert_eq!(req.content_type, Some(FORM));
    assert_eq!(req.url.to_string(), "https://idp.example/token");
    assert_eq!(
        req.body,
        b"grant_type=client_credentials&scope=a+b&audience=https%3A%2F%2Fapi%2F"
    );
    let basic = req.authorization.unwrap().strip_prefix("Basic ").unwrap();
    let decoded = String::from_utf8(b64decode(basic)).unwrap();
    // The id's own ':' is encoded, so the first raw ':' separates id from secret.
    let (id, secret) = decoded.split_once(':').unwrap();
    assert_eq!(form_decode(id), "my:client id");
    assert_eq!(form_decode(secret), HOSTILE);
}

#[test]
fn oauth2_body_auth_puts_credentials_in_the_form() {
    let c = Credentials::new("id&1", "s=cr+t").unwrap();
    let idp = OAuth2::new("http://127.0.0.1/t").with_auth(ClientAuth::Body);
    let mut buf = [0u8; 256];
    let req = idp.token_request(&c, &mut buf).unwrap();
    assert_eq!(req.authorization, None);
    assert_eq!(
        req.body,
        b"grant_type=client_credentials&client_id=id%261&client_secret=s%3Dcr%2Bt"
    );
}

#[test]
fn too_small_a_buffer_says_how_much_is_needed_for_every_provider() {
    let c = creds(HOSTILE);
    for kind in ProviderKind::ALL {
        let provider = match kind {
            ProviderKind::OAuth2 => AnyProvider::OAuth2(OAuth2::new("http://x/t").with_scope("s")),
            k => AnyProvider::default_for(k),
        };
        let mut big = [0u8; 1024];
        let req = provider.token_request(&c, &mut big).unwrap();
        let needed = req.body.len() + req.authorization.map_or(0, str::len);
        // Exactly enough works; one byte less fails and says how much it needed.
        let mut exact = vec![0u8; needed];
        let again = provider.token_request(&c, &mut exact).unwrap();
        assert_eq!(
            again.body.len() + again.authorization.map_or(0, str::len),
            needed,
            "{kind}"
        );
        for short in [needed - 1, needed / 2, 0] {
            let mut small = vec![0u8; short];
            assert_eq!(
                provider.token_request(&c, &mut small).unwrap_err(),
                Error::Capacity {
                    field: "request buffer",
                    needed,
                    capacity: short
                },
                "{kind} with {short} bytes"
            );
        }
    }
}

#[test]
fn request_debug_hides_credentials() {
    let c = creds("hunter2");
    let mut buf = [0u8; 256];
    let idp = OAuth2::new("http://x/t");
    let req = idp.token_request(&c, &mut buf).unwrap();
    let dbg = format!("{req:?}");
    assert!(
        !dbg.contains("hunter2") && !dbg.contains(req.authorization.unwrap()),
        "{dbg}"
    );
    let shogun = Shogun::new();
    let mut buf = [0u8; 256];
    let req = shogun.token_request(&c, &mut buf).unwrap();
    assert!(!format!("{req:?}").contains("hunter2"));
}

#[test]
fn bearer_header_refuses_a_token_that_would_break_the_header() {
    let mut buf = [0u8; 64];
    for bad in ["a\r\nX-Injected: 1", "a b", "a\tb", "é", ""] {
        let e = tessera_core::bearer_header(bad, &mut buf);
        let problem = if bad.is_empty() {
            tessera_core::Problem::Missing
        } else {
            tessera_core::Problem::Charset
        };
        assert_eq!(
            e,
            Err(tessera_core::Error::Malformed {
                field: Some("access_token"),
                problem
            }),
            "{bad:?}"
        );
    }
}
