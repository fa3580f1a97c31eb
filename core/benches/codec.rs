//! Parsing token responses and building token requests: tessera-core against serde_json
//! doing the same job the usual way on a host (derive into owned `String`s; `to_vec` of a
//! derived struct). `cargo bench -p tessera-core --bench codec`; figures in BENCHMARKS.md.
//!
//! Three tessera figures per response: `parse` (every field located, checked and borrowed),
//! `parse+store` (the owned copy into a fixed-capacity [`Grant`], plus the JWT `exp - iat`
//! read, which serde_json does not do), and serde_json's owned parse.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use tessera_core::{AnyProvider, Credentials, Grant, Provider, ProviderKind};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/vectors/fixtures/", $name)).as_slice()
    };
}

#[allow(dead_code)] // Fields are read by the deserializer, which is the point.
mod shapes {
    use super::Deserialize;

    #[derive(Deserialize)]
    pub struct Shogun {
        pub status: bool,
        pub message: String,
        pub data: ShogunData,
    }
    #[derive(Deserialize)]
    pub struct ShogunData {
        pub access_token: String,
        pub token_type: String,
        pub expires_in: u64,
        pub client_id: String,
        pub authorities: Vec<String>,
    }
    #[derive(Deserialize)]
    pub struct Apimw {
        pub success: bool,
        pub data: ApimwData,
    }
    #[derive(Deserialize)]
    pub struct ApimwData {
        pub access_token: String,
        pub token_type: String,
        pub expires_in: u64,
        pub refresh_token: Option<String>,
    }
    #[derive(Deserialize)]
    pub struct Setu {
        pub status: u16,
        pub success: bool,
        pub data: SetuData,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SetuData {
        pub expires_in: u64,
        pub token: String,
    }
    /// StoneX and OAuth 2.0 (RFC 6749 §5.1).
    #[derive(Deserialize)]
    pub struct OAuth {
        pub access_token: String,
        pub token_type: String,
        pub expires_in: Option<u64>,
        pub refresh_token: Option<String>,
        pub scope: Option<String>,
    }
}

/// A fixture: name, provider, body, and serde_json's parse of it into owned fields.
type Case = (&'static str, ProviderKind, &'static [u8], fn(&[u8]) -> bool);

fn parse(c: &mut Criterion) {
    let cases: [Case; 5] = [
        (
            "shogun",
            ProviderKind::Shogun,
            fixture!("shogun-token-200.json"),
            |b| serde_json::from_slice::<shapes::Shogun>(b).is_ok(),
        ),
        (
            "apimw",
            ProviderKind::Apimw,
            fixture!("apimw-token-200.json"),
            |b| serde_json::from_slice::<shapes::Apimw>(b).is_ok(),
        ),
        (
            "setu",
            ProviderKind::Setu,
            fixture!("setu-token-200.json"),
            |b| serde_json::from_slice::<shapes::Setu>(b).is_ok(),
        ),
        (
            "stonex",
            ProviderKind::StoneX,
            fixture!("stonex-token-200.json"),
            |b| serde_json::from_slice::<shapes::OAuth>(b).is_ok(),
        ),
        (
            "oauth2-rs256",
            ProviderKind::OAuth2,
            fixture!("oauth2-token-200-rs256.json"),
            |b| serde_json::from_slice::<shapes::OAuth>(b).is_ok(),
        ),
    ];
    for (name, kind, body, serde) in cases {
        let provider = AnyProvider::default_for(kind);
        // Both sides must succeed on the input, or the figures mean nothing.
        assert!(serde(body), "{name}: serde_json refuses the fixture");
        let mut grant: Grant = Grant::new();
        grant
            .store(&provider.parse_token(200, body).unwrap())
            .unwrap();

        let mut g = c.benchmark_group(format!("parse/{name}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("tessera parse", |b| {
            b.iter(|| provider.parse_token(200, black_box(body)).is_ok())
        });
        g.bench_function("tessera parse+store", |b| {
            b.iter(|| {
                let parsed = provider.parse_token(200, black_box(body)).unwrap();
                grant.store(&parsed).is_ok()
            })
        });
        let token = grant.access_token();
        if tessera_core::jwt::lifetime(token).is_some() {
            g.bench_function("tessera jwt lifetime", |b| {
                b.iter(|| tessera_core::jwt::lifetime(black_box(token)))
            });
        }
        g.bench_function("serde_json", |b| b.iter(|| serde(black_box(body))));
        g.finish();
    }
}

#[derive(Serialize)]
struct ShogunRequest<'a> {
    client_id: &'a str,
    client_secret: &'a str,
}

#[derive(Serialize)]
#[allow(non_snake_case)] // Setu's field names.
struct SetuRequest<'a> {
    clientID: &'a str,
    secret: &'a str,
}

fn request(c: &mut Criterion) {
    // A realistic pair, then one a JSON writer must escape.
    let pairs = [
        (
            "plain",
            "9f2c4e1a-7b3d-4c5e-8f6a-1b2c3d4e5f6a",
            "Xy7Qw2Er5Ty8Ui1Op4As6Df9Gh3Jk0LzXcVbNm",
        ),
        (
            "escaped",
            "client \"terminal\" 7",
            "p\\a\"s\ts/\u{1}é😀-0123456789abcdef",
        ),
    ];
    for (label, id, secret) in pairs {
        let creds = Credentials::new(id, secret).unwrap();
        let mut g = c.benchmark_group(format!("request/{label}"));
        for (name, kind) in [
            ("shogun", ProviderKind::Shogun),
            ("setu", ProviderKind::Setu),
        ] {
            let provider = AnyProvider::default_for(kind);
            let mut buf = [0u8; 1024];
            let ours = provider
                .token_request(&creds, &mut buf)
                .unwrap()
                .body
                .to_vec();
            let theirs = match kind {
                ProviderKind::Setu => serde_json::to_vec(&SetuRequest {
                    clientID: id,
                    secret,
                }),
                _ => serde_json::to_vec(&ShogunRequest {
                    client_id: id,
                    client_secret: secret,
                }),
            }
            .unwrap();
            // The same document (serde_json escapes the same characters the same way).
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&ours).unwrap(),
                serde_json::from_slice::<serde_json::Value>(&theirs).unwrap()
            );
            g.bench_function(format!("{name} tessera"), |b| {
                b.iter(|| {
                    provider
                        .token_request(black_box(&creds), &mut buf)
                        .map(|r| r.body.len())
                })
            });
            g.bench_function(format!("{name} serde_json"), |b| match kind {
                ProviderKind::Setu => b.iter(|| {
                    serde_json::to_vec(&SetuRequest {
                        clientID: black_box(id),
                        secret: black_box(secret),
                    })
                }),
                _ => b.iter(|| {
                    serde_json::to_vec(&ShogunRequest {
                        client_id: black_box(id),
                        client_secret: black_box(secret),
                    })
                }),
            });
        }
        g.finish();
    }
}

criterion_group!(benches, parse, request);
criterion_main!(benches);
