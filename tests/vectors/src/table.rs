//! The vectors. Seeds first (each provider's published examples, verbatim), then each
//! provider's edges, then the status classes every provider must classify.

use tessera_core::Error::{self, *};
use tessera_core::Problem;
use tessera_core::ProviderKind::{self, Apimw, OAuth2, Setu, Shogun, StoneX};

use crate::{malformed, Endpoint, ErrorExpect, Expect, GrantExpect, InfoExpect, Token, Vector};

/// The status classes every provider must classify, whatever the body.
macro_rules! status_classes {
    ($p:expr, $name:literal) => {
        [
            tok(concat!($name, "-token-500-html"), $p, 500,
                b"<html><head><title>500 Internal Server Error</title></head><body></body></html>", err(ServerError)),
            tok(concat!($name, "-token-502-proxy-html"), $p, 502,
                b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>", err(ServerError)),
            tok(concat!($name, "-token-503-empty"), $p, 503, b"", err(ServerError)),
            tok(concat!($name, "-token-429-empty"), $p, 429, b"", err(RateLimited)),
            tok(concat!($name, "-token-404-html"), $p, 404, b"<!DOCTYPE html><h1>Not Found</h1>", err(Rejected)),
            tok(concat!($name, "-token-401-binary"), $p, 401, b"\x00\xff\xfe\x7f\x80garbage\x1b", err(InvalidCredentials)),
            tok(concat!($name, "-token-302-empty"), $p, 302, b"", err(Rejected)),
            tok(concat!($name, "-token-200-empty"), $p, 200, b"", err(malformed(None, Problem::Truncated))),
            tok(concat!($name, "-token-200-html"), $p, 200, b"<html><body>Welcome</body></html>", err(malformed(None, Problem::Syntax))),
            tok(concat!($name, "-token-200-binary"), $p, 200, b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", err(malformed(None, Problem::Syntax))),
            tok(concat!($name, "-token-200-null"), $p, 200, b"null", err(malformed(None, Problem::Type))),
        ]
    };
}

const fn tok(
    name: &'static str,
    provider: ProviderKind,
    status: u16,
    body: &'static [u8],
    expect: Expect,
) -> Vector {
    Vector {
        name,
        provider,
        endpoint: Endpoint::Token,
        status,
        body,
        expect,
    }
}

const fn val(name: &'static str, status: u16, body: &'static [u8], expect: Expect) -> Vector {
    Vector {
        name,
        provider: Shogun,
        endpoint: Endpoint::Validate,
        status,
        body,
        expect,
    }
}

const fn err(error: Error) -> Expect {
    Expect::Error(ErrorExpect {
        error,
        code: None,
        message: None,
        trace_id: None,
    })
}

const fn said(error: Error, code: Option<&'static str>, message: Option<&'static str>) -> Expect {
    Expect::Error(ErrorExpect {
        error,
        code,
        message,
        trace_id: None,
    })
}

const fn grant(token: &'static str, expires_in: Option<u64>, lifetime_s: u64) -> GrantExpect {
    GrantExpect {
        token: Token::Exact(token),
        expires_in,
        lifetime_s,
        refresh_token: None,
        scopes: &[],
        client_id: None,
    }
}

const fn ok(g: GrantExpect) -> Expect {
    Expect::Grant(g)
}

const fn capacity(field: &'static str, needed: usize, capacity: usize) -> Expect {
    err(Capacity {
        field,
        needed,
        capacity,
    })
}

/// A JWT whose claims say 60 s (`iat` 1700000000, `exp` 1700000060).
const JWT_60: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0IiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDAwNjB9.c2ln";
/// A JWT whose claims say 3600 s.
const JWT_3600: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwic2NwIjpbIngiXX0.c2ln";

const SETU_TOKEN_START: &str = "eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICJsaWJ6NGFN";

/// Every vector.
pub const VECTORS: &[&[Vector]] = &[
    SEEDS,
    SHOGUN,
    VALIDATE,
    APIMW,
    SETU,
    STONEX,
    OAUTH2,
    &status_classes!(Shogun, "shogun"),
    &status_classes!(Apimw, "apimw"),
    &status_classes!(Setu, "setu"),
    &status_classes!(StoneX, "stonex"),
    &status_classes!(OAuth2, "oauth2"),
];

/// The providers' published examples.
const SEEDS: &[Vector] = &[
    tok("shogun-token-200-seed", Shogun, 200, include_bytes!("../fixtures/shogun-token-200.json"), ok(GrantExpect {
        token: Token::Exact("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."),
        expires_in: Some(86400),
        lifetime_s: 86400,
        refresh_token: None,
        scopes: &["TRANSACTION_READ"],
        client_id: Some("your-client-id"),
    })),
    tok("shogun-token-401-seed", Shogun, 401, include_bytes!("../fixtures/shogun-token-401.json"),
        said(InvalidCredentials, None, Some("Invalid credentials"))),
    tok("shogun-token-429-seed", Shogun, 429, include_bytes!("../fixtures/shogun-token-429.json"),
        said(RateLimited, None, Some("Temporarily locked due to too many failed attempts."))),
    val("shogun-validate-200-seed", 200, include_bytes!("../fixtures/shogun-validate-200.json"), Expect::Info(InfoExpect {
        username: "kidashio",
        client_id: "kidashio_client",
        scopes: &["TRANSACTION_READ", "TRANSACTION_WRITE"],
        issued_at: 1_705_314_600,
        expires_at: 1_705_401_000,
    })),
    val("shogun-validate-401-seed", 401, include_bytes!("../fixtures/shogun-validate-401.json"),
        said(TokenInvalid, None, Some("Invalid authentication token"))),
    tok("apimw-token-200-seed", Apimw, 200, include_bytes!("../fixtures/apimw-token-200.json"), ok(GrantExpect {
        refresh_token: Some("rt_abc123xyz456"),
        ..grant("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...", Some(3600), 3600)
    })),
    tok("apimw-token-401-seed", Apimw, 401, include_bytes!("../fixtures/apimw-token-401.json"),
        said(InvalidCredentials, Some("INVALID_CREDENTIALS"), Some("Invalid API Key or Secret"))),
    // Envelope says 1800 s; the JWT's claims say 300 s: the smaller wins.
    tok("setu-token-200-seed", Setu, 200, include_bytes!("../fixtures/setu-token-200.json"), ok(GrantExpect {
        token: Token::Shape { len: 1238, starts: SETU_TOKEN_START, ends: "NvPwANDznhQ" },
        ..grant("", Some(1800), 300)
    })),
    // As published, with its `//seconds` comment: not JSON.
    tok("setu-token-200-as-published", Setu, 200, include_bytes!("../fixtures/setu-token-200-as-published.json"),
        err(malformed(None, Problem::Syntax))),
    tok("setu-token-400-seed", Setu, 400, include_bytes!("../fixtures/setu-token-400.json"), Expect::Error(ErrorExpect {
        error: InvalidCredentials,
        code: Some("invalid-api-key"),
        message: Some("API key invalid [cd4ea398-7ab3-47de-aa50-7c3b9b3f0a21], please recheck your credentials."),
        trace_id: Some("8b7bd233-5231-4bdd-8d48-aa4c0dae07b9"),
    })),
    tok("stonex-token-200-seed", StoneX, 200, include_bytes!("../fixtures/stonex-token-200.json"), ok(GrantExpect {
        token: Token::Shape { len: 788, starts: "eyJraWQiOiJiLU5iV2o4Tm5zUWJUMFRk", ends: "b6_ouGw" },
        scopes: &["client_credentials"],
        ..grant("", Some(3600), 3600)
    })),
];

const SHOGUN: &[Vector] = &[
    tok("shogun-token-200-status-false", Shogun, 200, br#"{"status":false,"message":"Account disabled"}"#,
        said(Rejected, None, Some("Account disabled"))),
    // The envelope's message is kept even when the grant is unusable.
    tok("shogun-token-200-no-data", Shogun, 200, br#"{"status":true,"message":"ok"}"#,
        said(malformed(Some("data"), Problem::Missing), None, Some("ok"))),
    tok("shogun-token-200-data-null", Shogun, 200, br#"{"status":true,"data":null}"#,
        err(malformed(Some("data"), Problem::Missing))),
    tok("shogun-token-200-two-data", Shogun, 200,
        br#"{"data":{"access_token":"a"},"status":true,"data":{"access_token":"b"}}"#,
        err(malformed(Some("data"), Problem::Duplicate))),
    tok("shogun-token-200-authorities-not-strings", Shogun, 200,
        br#"{"status":true,"data":{"access_token":"t","token_type":"Bearer","expires_in":60,"authorities":["A",1]}}"#,
        err(malformed(Some("authorities"), Problem::Type))),
    tok("shogun-token-200-escaped-authorities", Shogun, 200,
        br#"{"data":{"authorities":["TRANSACTION_\u0052EAD","caf\u00e9","\ud83d\ude00"],"expires_in":"60","access_token":"t","client_id":"c\/1"},"status":true}"#,
        ok(GrantExpect {
            scopes: &["TRANSACTION_READ", "caf\u{e9}", "\u{1F600}"],
            client_id: Some("c/1"),
            ..grant("t", Some(60), 60)
        })),
    tok("shogun-token-200-truncated", Shogun, 200,
        br#"{"status":true,"message":"Authentication successful","data":{"access_token":"eyJhbG"#,
        err(malformed(Some("access_token"), Problem::Truncated))),
];

const VALIDATE: &[Vector] = &[
    val("shogun-validate-200-zones", 200,
        br#"{"status":true,"data":{"username":"u","client_id":"c","authorities":[],"issued_at":"2024-01-15T10:30:00.123Z","expires_at":"2024-01-16T12:00:00+01:30"}}"#,
        Expect::Info(InfoExpect { username: "u", client_id: "c", scopes: &[], issued_at: 1_705_314_600, expires_at: 1_705_401_000 })),
    val("shogun-validate-200-bad-date", 200,
        br#"{"status":true,"data":{"username":"u","client_id":"c","issued_at":"2024-01-15T10:30:00","expires_at":"2024-02-30T10:30:00"}}"#,
        err(malformed(Some("expires_at"), Problem::Range))),
    val("shogun-validate-200-numeric-date", 200,
        br#"{"status":true,"data":{"username":"u","client_id":"c","issued_at":1705314600,"expires_at":"2024-01-16T10:30:00"}}"#,
        err(malformed(Some("issued_at"), Problem::Type))),
    val("shogun-validate-200-missing-username", 200,
        br#"{"status":true,"data":{"client_id":"c","issued_at":"2024-01-15T10:30:00","expires_at":"2024-01-16T10:30:00"}}"#,
        err(malformed(Some("username"), Problem::Missing))),
    val("shogun-validate-200-status-false", 200, br#"{"status":false,"message":"nope"}"#,
        said(Rejected, None, Some("nope"))),
    val("shogun-validate-500-html", 500, b"<html><body>Internal Server Error</body></html>", err(ServerError)),
    val("shogun-validate-429", 429, b"", err(RateLimited)),
    val("shogun-validate-200-html", 200, b"<html></html>", err(malformed(None, Problem::Syntax))),
];

const APIMW: &[Vector] = &[
    // PHP's encoder writes `/` as `\/`.
    tok("apimw-token-200-php-escapes", Apimw, 200,
        br#"{"success":true,"data":{"access_token":"eyJ\/abc","token_type":"Bearer","expires_in":3600,"refresh_token":"rt_\/x"}}"#,
        ok(GrantExpect { refresh_token: Some("rt_/x"), ..grant("eyJ/abc", Some(3600), 3600) })),
    tok("apimw-token-200-success-false-bad-credentials", Apimw, 200,
        br#"{"success":false,"error":{"code":"INVALID_CREDENTIALS","message":"bad"}}"#,
        said(InvalidCredentials, Some("INVALID_CREDENTIALS"), Some("bad"))),
    tok("apimw-token-403-other-code", Apimw, 403,
        br#"{"success":false,"error":{"code":"IP_NOT_ALLOWED","message":"Forbidden \u2014 IP"}}"#,
        said(Rejected, Some("IP_NOT_ALLOWED"), Some("Forbidden \u{2014} IP"))),
    tok("apimw-token-500-json", Apimw, 500, br#"{"success":false,"error":{"code":"INTERNAL","message":"oops"}}"#,
        said(ServerError, Some("INTERNAL"), Some("oops"))),
    tok("apimw-token-200-refresh-null", Apimw, 200,
        br#"{"success":true,"data":{"access_token":"a","token_type":"Bearer","expires_in":10,"refresh_token":null}}"#,
        ok(grant("a", Some(10), 10))),
    tok("apimw-token-200-refresh-over-capacity", Apimw, 200, include_bytes!("../fixtures/apimw-refresh-over-capacity.json"),
        capacity("refresh_token", 1025, 1024)),
    tok("apimw-token-200-truncated", Apimw, 200,
        br#"{"success":true,"data":{"access_token":"x","token_type":"Bearer","expires_in":36"#,
        err(malformed(None, Problem::Truncated))),
];

const SETU: &[Vector] = &[
    tok("setu-token-400-other-code", Setu, 400,
        br#"{"status":400,"success":false,"error":{"code":"invalid-request","detail":"bad body","title":"BAD_REQUEST","errors":[{"field":"secret"}],"traceID":"t-1"}}"#,
        Expect::Error(ErrorExpect { error: Rejected, code: Some("invalid-request"), message: Some("bad body"), trace_id: Some("t-1") })),
    tok("setu-token-400-title-only", Setu, 400,
        br#"{"status":400,"success":false,"error":{"title":"AUTHENTICATION_ERROR","code":"invalid-api-key","detail":"","traceID":"x"}}"#,
        Expect::Error(ErrorExpect { error: InvalidCredentials, code: Some("invalid-api-key"), message: None, trace_id: Some("x") })),
    tok("setu-token-401", Setu, 401, br#"{"status":401,"success":false}"#, err(InvalidCredentials)),
    tok("setu-token-200-success-false", Setu, 200,
        br#"{"status":200,"success":false,"error":{"code":"x","detail":"d"}}"#,
        said(Rejected, Some("x"), Some("d"))),
    tok("setu-token-200-expires-string", Setu, 200,
        br#"{"data":{"token":"opaque","expiresIn":"1800"},"success":true,"status":200}"#,
        ok(grant("opaque", Some(1800), 1800))),
    tok("setu-token-200-no-token", Setu, 200, br#"{"status":200,"success":true,"data":{"expiresIn":1800}}"#,
        err(malformed(Some("token"), Problem::Missing))),
    tok("setu-token-200-truncated", Setu, 200, br#"{"status" : 200, "success" : true, "data" : { "expiresIn" : 1800, "token" : "eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIi"#,
        err(malformed(Some("token"), Problem::Truncated))),
];

const STONEX: &[Vector] = &[
    tok("stonex-token-401-oauth-error", StoneX, 401,
        br#"{"error":"invalid_client","error_description":"Client authentication failed."}"#,
        said(InvalidCredentials, Some("invalid_client"), Some("Client authentication failed."))),
    tok("stonex-token-400-invalid-client", StoneX, 400, br#"{"error":"invalid_client"}"#,
        said(InvalidCredentials, Some("invalid_client"), None)),
    tok("stonex-token-200-scopes", StoneX, 200,
        br#"{"token_type":"bearer","expires_in":60,"access_token":"t","scope":"payments:read  payments:write"}"#,
        ok(GrantExpect { scopes: &["payments:read", "payments:write"], ..grant("t", Some(60), 60) })),
    tok("stonex-token-200-truncated", StoneX, 200, br#"{"token_type":"Bearer","expires_in":3600,"access_token":"eyJraWQiOiJiLU5iV2o4"#,
        err(malformed(Some("access_token"), Problem::Truncated))),
];

const OAUTH2: &[Vector] = &[
    tok("oauth2-token-200-rfc6749", OAuth2, 200,
        br#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"Bearer","expires_in":3600,"refresh_token":"tGzv3JOkF0XG5Qx2TlKWIA","scope":"read write"}"#,
        ok(GrantExpect {
            refresh_token: Some("tGzv3JOkF0XG5Qx2TlKWIA"),
            scopes: &["read", "write"],
            ..grant("2YotnFZFEjr1zCsicMWpAA", Some(3600), 3600)
        })),
    // A typical 1.2 KB identity-provider answer: an RS256 JWT with a 2048-bit signature.
    tok("oauth2-token-200-rs256", OAuth2, 200, include_bytes!("../fixtures/oauth2-token-200-rs256.json"), ok(GrantExpect {
        token: Token::Shape { len: 1066, starts: "eyJhbGciOiJSUzI1NiIsInR5", ends: "YPMBH8NXApHA" },
        scopes: &["payments:read", "payments:write", "refunds:write", "terminals:read"],
        ..grant("", Some(3600), 3600)
    })),
    // The token goes into `Authorization: Bearer …`: CR/LF would inject headers (found by
    // the token_response fuzz target's oracle work), and a space, tab or non-ASCII byte
    // would break the header. Refused before anything is stored.
    tok("oauth2-token-200-escaped-crlf", OAuth2, 200,
        br#"{"access_token":"abc\r\nX-Injected: 1","token_type":"Bearer","expires_in":60}"#,
        err(malformed(Some("access_token"), Problem::Charset))),
    tok("oauth2-token-200-space", OAuth2, 200,
        br#"{"access_token":"abc def","token_type":"Bearer","expires_in":60}"#,
        err(malformed(Some("access_token"), Problem::Charset))),
    tok("oauth2-token-200-escaped-tab", OAuth2, 200,
        br#"{"access_token":"abc\tdef","token_type":"Bearer","expires_in":60}"#,
        err(malformed(Some("access_token"), Problem::Charset))),
    tok("oauth2-token-200-non-ascii", OAuth2, 200,
        "{\"access_token\":\"abcé\",\"token_type\":\"Bearer\",\"expires_in\":60}".as_bytes(),
        err(malformed(Some("access_token"), Problem::Charset))),
    tok("setu-token-200-escaped-newline", Setu, 200,
        br#"{"status":200,"success":true,"data":{"expiresIn":1800,"token":"a\u000ab"}}"#,
        err(malformed(Some("access_token"), Problem::Charset))),
    tok("oauth2-token-200-empty-token", OAuth2, 200,
        br#"{"access_token":"","token_type":"Bearer","expires_in":60}"#,
        err(malformed(Some("access_token"), Problem::Missing))),
    tok("oauth2-token-200-every-visible-ascii", OAuth2, 200,
        br##"{"access_token":"!\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~","token_type":"Bearer","expires_in":60}"##,
        ok(grant("!\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~", Some(60), 60))),
    tok("oauth2-token-200-jwt-shorter", OAuth2, 200,
        concat!(r#"{"access_token":""#, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0IiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDAwNjB9.c2ln", r#"","token_type":"Bearer","expires_in":3600}"#).as_bytes(),
        ok(grant(JWT_60, Some(3600), 60))),
    tok("oauth2-token-200-jwt-no-expires-in", OAuth2, 200,
        concat!(r#"{"token_type":"Bearer","access_token":""#, "eyJhbGciOiJSUzI1NiJ9.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwic2NwIjpbIngiXX0.c2ln", r#""}"#).as_bytes(),
        ok(grant(JWT_3600, None, 3600))),
    tok("oauth2-token-200-opaque-no-expires-in", OAuth2, 200, br#"{"access_token":"opaque","token_type":"Bearer"}"#,
        ok(grant("opaque", None, 300))),
    tok("oauth2-token-200-expires-null", OAuth2, 200, br#"{"access_token":"o","token_type":"Bearer","expires_in":null}"#,
        ok(grant("o", None, 300))),
    tok("oauth2-token-200-expires-zero", OAuth2, 200, br#"{"access_token":"o","token_type":"Bearer","expires_in":0}"#,
        ok(grant("o", Some(0), 0))),
    tok("oauth2-token-200-expires-u32-max", OAuth2, 200, br#"{"access_token":"o","token_type":"Bearer","expires_in":4294967295}"#,
        ok(grant("o", Some(4_294_967_295), 4_294_967_295))),
    tok("oauth2-token-200-expires-huge", OAuth2, 200, br#"{"access_token":"o","token_type":"Bearer","expires_in":99999999999999999999999}"#,
        ok(grant("o", Some(u64::MAX), u64::MAX))),
    tok("oauth2-token-200-expires-negative", OAuth2, 200, br#"{"access_token":"o","token_type":"Bearer","expires_in":-5}"#,
        err(malformed(Some("expires_in"), Problem::Range))),
    tok("oauth2-token-200-expires-fraction", OAuth2, 200, br#"{"access_token":"o","token_type":"Bearer","expires_in":3600.5}"#,
        err(malformed(Some("expires_in"), Problem::Type))),
    tok("oauth2-token-200-expires-bool", OAuth2, 200, br#"{"access_token":"o","token_type":"Bearer","expires_in":true}"#,
        err(malformed(Some("expires_in"), Problem::Type))),
    tok("oauth2-token-200-expires-not-digits", OAuth2, 200, br#"{"access_token":"o","token_type":"Bearer","expires_in":"1h"}"#,
        err(malformed(Some("expires_in"), Problem::Type))),
    tok("oauth2-token-200-type-lowercase", OAuth2, 200, br#"{"access_token":"o","token_type":"bearer","expires_in":1}"#,
        ok(grant("o", Some(1), 1))),
    tok("oauth2-token-200-type-mac", OAuth2, 200, br#"{"access_token":"o","token_type":"mac","expires_in":1}"#,
        err(malformed(Some("token_type"), Problem::Unsupported))),
    tok("oauth2-token-200-missing-token", OAuth2, 200, br#"{"token_type":"Bearer","expires_in":1}"#,
        err(malformed(Some("access_token"), Problem::Missing))),
    tok("oauth2-token-200-token-number", OAuth2, 200, br#"{"access_token":12345,"token_type":"Bearer"}"#,
        err(malformed(Some("access_token"), Problem::Type))),
    tok("oauth2-token-200-duplicate-token", OAuth2, 200, br#"{"access_token":"a","access_token":"b"}"#,
        err(malformed(Some("access_token"), Problem::Duplicate))),
    // Every escape: the ASCII ones in the token, the rest in the refresh token (a bearer
    // token must be visible ASCII; a refresh token is sent in a form body, any text).
    tok("oauth2-token-200-every-escape", OAuth2, 200,
        br#"{"access_token":"a\/b\\c\"d\u0041","refresh_token":"\u00e9\ud83d\ude00\t\b\f\n\r","token_type":"Bearer","expires_in":1}"#,
        ok(GrantExpect {
            refresh_token: Some("\u{e9}\u{1F600}\t\u{8}\u{c}\n\r"),
            ..grant("a/b\\c\"dA", Some(1), 1)
        })),
    tok("oauth2-token-200-lone-surrogate", OAuth2, 200, br#"{"access_token":"a\ud83db","token_type":"Bearer","expires_in":1}"#,
        err(malformed(Some("access_token"), Problem::Escape))),
    tok("oauth2-token-200-bad-escape", OAuth2, 200, br#"{"access_token":"a\qb","token_type":"Bearer"}"#,
        err(malformed(Some("access_token"), Problem::Escape))),
    tok("oauth2-token-200-raw-newline", OAuth2, 200, b"{\"access_token\":\"a\nb\",\"token_type\":\"Bearer\"}",
        err(malformed(Some("access_token"), Problem::Encoding))),
    tok("oauth2-token-200-invalid-utf8", OAuth2, 200, b"{\"access_token\":\"a\xff\",\"token_type\":\"Bearer\"}",
        err(malformed(Some("access_token"), Problem::Encoding))),
    tok("oauth2-token-200-unknown-nested", OAuth2, 200,
        br#"{"x":{"a":[1,{"b":null}],"c":"}]"},"access_token":"t","y":[[],{}],"token_type":"Bearer","expires_in":10,"z":-1.5e10,"w":false}"#,
        ok(grant("t", Some(10), 10))),
    tok("oauth2-token-200-whitespace", OAuth2, 200,
        b"\r\n\t{ \"expires_in\" :\t10 ,\r\n  \"token_type\" : \"Bearer\" ,\n \"access_token\"\n:\n\"t\" }\n",
        ok(grant("t", Some(10), 10))),
    tok("oauth2-token-200-escaped-key", OAuth2, 200, br#"{"access\u005ftoken":"t","expires_in":10}"#,
        ok(grant("t", Some(10), 10))),
    tok("oauth2-token-200-scope-escaped", OAuth2, 200, br#"{"access_token":"t","expires_in":10,"scope":"a\u0020b"}"#,
        ok(GrantExpect { scopes: &["a", "b"], ..grant("t", Some(10), 10) })),
    tok("oauth2-token-200-trailing-garbage", OAuth2, 200, br#"{"access_token":"t"} x"#,
        err(malformed(None, Problem::Syntax))),
    tok("oauth2-token-200-two-documents", OAuth2, 200, br#"{"access_token":"t"}{"access_token":"u"}"#,
        err(malformed(None, Problem::Syntax))),
    tok("oauth2-token-200-truncated-in-type", OAuth2, 200, br#"{"access_token":"abc","token_type":"Bea"#,
        err(malformed(Some("token_type"), Problem::Truncated))),
    tok("oauth2-token-200-truncated-after-value", OAuth2, 200, br#"{"access_token":"abc","expires_in":3600"#,
        err(malformed(None, Problem::Truncated))),
    tok("oauth2-token-200-array", OAuth2, 200, b"[]", err(malformed(None, Problem::Type))),
    tok("oauth2-token-200-deep-nesting", OAuth2, 200, include_bytes!("../fixtures/oauth2-token-deep.json"),
        err(malformed(None, Problem::Depth))),
    tok("oauth2-token-200-deep-nesting-limit", OAuth2, 200, include_bytes!("../fixtures/oauth2-token-deep-ok.json"),
        ok(grant("t", Some(5), 5))),
    tok("oauth2-token-200-at-capacity", OAuth2, 200, include_bytes!("../fixtures/oauth2-token-at-capacity.json"),
        ok(GrantExpect { token: Token::Shape { len: 2048, starts: "AAAA", ends: "AAAA" }, ..grant("", Some(3600), 3600) })),
    tok("oauth2-token-200-over-capacity", OAuth2, 200, include_bytes!("../fixtures/oauth2-token-over-capacity.json"),
        capacity("access_token", 2049, 2048)),
    // Raw 2,088 bytes, 2,048 once decoded: capacity counts decoded bytes.
    tok("oauth2-token-200-escaped-at-capacity", OAuth2, 200, include_bytes!("../fixtures/oauth2-token-escaped-at-capacity.json"),
        ok(GrantExpect { token: Token::Shape { len: 2048, starts: "AAAA", ends: "ABBBBBBBB" }, ..grant("", Some(3600), 3600) })),
    tok("oauth2-token-400-invalid-client", OAuth2, 400,
        br#"{"error":"invalid_client","error_description":"Client authentication failed"}"#,
        said(InvalidCredentials, Some("invalid_client"), Some("Client authentication failed"))),
    tok("oauth2-token-400-invalid-scope", OAuth2, 400, br#"{"error":"invalid_scope","error_description":"unknown scope \"x\""}"#,
        said(Rejected, Some("invalid_scope"), Some("unknown scope \"x\""))),
    tok("oauth2-token-400-unauthorized-client", OAuth2, 400, br#"{"error":"unauthorized_client"}"#,
        said(Rejected, Some("unauthorized_client"), None)),
    tok("oauth2-token-200-error-body", OAuth2, 200, br#"{"error":"server_error"}"#,
        said(Rejected, Some("server_error"), None)),
];
