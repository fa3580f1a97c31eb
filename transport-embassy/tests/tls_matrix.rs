//! The TLS matrix (tessera-sandbox's `pki::matrix`) through tessera-embassy's `mbedtls`
//! backend with a bundle of three roots and a wall clock (`mbedtls-dates`): every chain
//! that must connect fetches a token (and a downstream call goes through too); every chain
//! that must be refused fails with cause `tls` before any HTTP request reaches the server.
//! Without a wall clock every handshake fails closed. A certificate with no SAN whose CN
//! names the host is accepted: MbedTLS's documented CN fallback (rustls refuses it).

mod mbedtls_common;

use std::sync::Mutex;

use mbedtls_common::{client, roots};
use tessera_core::{ErrorKind, ProviderKind, Stage};
use tessera_embassy::mbedtls::{use_wall_clock, WallClock};
use tessera_embassy::{ApiRequest, CallBuffers};
use tessera_sandbox::pki::{matrix, Case, Expect, HOST};
use tessera_sandbox::{Endpoint, Sandbox};

static CLOCK: WallClock = WallClock::new();
/// The wall clock is the program's: tests that change it take turns.
static CLOCK_TURN: Mutex<()> = Mutex::new(());

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs one case; `Ok(line)` describes what happened, `Err(line)` what went wrong.
fn run(case: &Case, pem: &str) -> Result<String, String> {
    let sb = Sandbox::start_tls_with(&case.chain, case.versions).unwrap();
    let c = client(&sb, HOST, roots(pem));
    let outcome = async_io::block_on(async {
        let mut out = [0u8; 2048];
        c.token(&mut out).await.map(|t| t.as_str().len())
    });
    let requests = sb.count(Endpoint::Token(ProviderKind::OAuth2));
    if c.fetch_buffers_wiped() != Some(true) {
        return Err("fetch buffers not wiped".into());
    }
    let expect_connect = matches!(case.expect, Expect::Connect | Expect::CnFallback);
    match (outcome, expect_connect) {
        (Ok(_), true) if requests == 1 => Ok(format!("connected ({requests} request)")),
        (Ok(_), _) => Err(format!(
            "connected ({requests} requests), expected {:?}",
            case.expect
        )),
        (Err(e), false) => match (e.stage(), requests) {
            (Some(Stage::Tls), 0) => Ok(format!("refused: {e}")),
            _ => Err(format!("refused with {e} after {requests} requests")),
        },
        (Err(e), true) => Err(format!("failed: {e}")),
    }
}

#[test]
fn every_certificate_shape_connects_or_is_refused_as_it_must() {
    let _turn = CLOCK_TURN.lock().unwrap_or_else(|p| p.into_inner());
    use_wall_clock(&CLOCK);
    CLOCK.set_unix_time(now_unix());
    let m = matrix();
    let mut wrong = Vec::new();
    for case in &m.cases {
        let r = run(case, &m.roots_pem);
        println!(
            "{:<62} {:>5} B  {}",
            case.name,
            case.chain.wire_len(),
            r.as_ref().unwrap_or_else(|e| e)
        );
        if let Err(e) = r {
            wrong.push(format!("{}: {e}", case.name));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn downstream_calls_go_over_mbedtls_with_call() {
    let _turn = CLOCK_TURN.lock().unwrap_or_else(|p| p.into_inner());
    use_wall_clock(&CLOCK);
    CLOCK.set_unix_time(now_unix());
    let m = matrix();
    let case = &m.cases[0];
    let sb = Sandbox::start_tls_with(&case.chain, case.versions).unwrap();
    let c = client(&sb, HOST, roots(&m.roots_pem));
    let url = format!("https://{HOST}:{}/oauth2/protected", sb.addr().port());
    async_io::block_on(async {
        let mut buffers: Box<CallBuffers> = Box::default();
        let headers = [("Idempotency-Key", "pay-0001")];
        // `call()` speaks https through the client's MbedTLS: no other buffer to give.
        let r = c
            .call(ApiRequest::get(&url).headers(&headers), &mut buffers)
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.header("X-Request-Id").is_some(), "{r:?}");
        let r = c.call(ApiRequest::get(&url), &mut buffers).await.unwrap();
        assert_eq!(r.status(), 200);
    });
    assert!(buffers_wiped_after(c));
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 1);
    assert_eq!(sb.count(Endpoint::Protected(ProviderKind::OAuth2)), 2);
}

/// The token fetch's buffers are home and zero once it ended.
fn buffers_wiped_after(c: &mbedtls_common::C) -> bool {
    c.fetch_buffers_wiped() == Some(true)
}

#[test]
fn without_a_wall_clock_every_handshake_fails_closed() {
    let _turn = CLOCK_TURN.lock().unwrap_or_else(|p| p.into_inner());
    use_wall_clock(&CLOCK);
    CLOCK.forget();
    let m = matrix();
    let case = &m.cases[0];
    let sb = Sandbox::start_tls_with(&case.chain, case.versions).unwrap();
    let c = client(&sb, HOST, roots(&m.roots_pem));
    let e = async_io::block_on(async {
        let mut out = [0u8; 2048];
        c.token(&mut out).await.unwrap_err()
    });
    CLOCK.set_unix_time(now_unix());
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    let t = e.transport().unwrap();
    assert_eq!(t.stage, Stage::Tls, "{e}");
    assert_eq!(
        t.detail,
        "no wall clock: certificate dates cannot be checked"
    );
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 0);
}

#[test]
fn a_name_the_resolver_does_not_know_fails_at_dns() {
    let m = matrix();
    let case = &m.cases[0];
    let sb = Sandbox::start_tls_with(&case.chain, case.versions).unwrap();
    // The test resolver answers only *.localhost: this name is never looked up for real.
    let c = client(&sb, "api.tessera.invalid", roots(&m.roots_pem));
    let e = async_io::block_on(async {
        let mut out = [0u8; 2048];
        c.token(&mut out).await.unwrap_err()
    });
    assert_eq!(e.stage(), Some(Stage::Dns), "{e}");
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 0);
}

/// Over MbedTLS a token fetch and ten calls share one connection and one full handshake;
/// once the server closes idle connections, the next call's handshake resumes the saved
/// session on TLS 1.2 (the server counts it resumed). TLS 1.3 connections are kept too, but
/// a reconnect is a full handshake: mbedtls-rs 0.3 leaves MbedTLS ignoring TLS 1.3 tickets.
/// Each call says which connection and handshake it had.
#[test]
fn calls_keep_the_connection_and_resume_the_session() {
    use tessera_embassy::{Connection, Handshake};
    use tessera_sandbox::pki::Versions;
    let _turn = CLOCK_TURN.lock().unwrap_or_else(|p| p.into_inner());
    use_wall_clock(&CLOCK);
    CLOCK.set_unix_time(now_unix());
    let m = matrix();
    let case = &m.cases[0];
    for (versions, reconnect) in [
        (Versions::Tls12, Handshake::Resumed),
        (Versions::Tls13, Handshake::Full),
    ] {
        let sb = Sandbox::start_tls_with(&case.chain, versions).unwrap();
        let c = client(&sb, HOST, roots(&m.roots_pem));
        let url = format!("https://{HOST}:{}/oauth2/protected", sb.addr().port());
        let call = || {
            async_io::block_on(async {
                let mut buffers: Box<CallBuffers> = Box::default();
                let r = c
                    .call(ApiRequest::get(&url), &mut buffers)
                    .await
                    .unwrap_or_else(|e| panic!("{versions:?}: {e}"));
                assert_eq!(r.status(), 200);
                r.connection()
            })
        };
        let kept = Connection {
            reused: true,
            handshake: Handshake::None,
        };
        for i in 0..10 {
            assert_eq!(call(), kept, "{versions:?} call {i}");
        }
        let w = sb.wire();
        assert_eq!(
            (w.connections, w.full, w.resumed),
            (1, 1, 0),
            "{versions:?}: {w:?}"
        );
        sb.close_idle_connections();
        let fresh = call();
        assert_eq!(
            fresh,
            Connection {
                reused: false,
                handshake: reconnect
            },
            "{versions:?}"
        );
        let w = sb.wire();
        let resumed = u64::from(reconnect == Handshake::Resumed);
        assert_eq!(
            (w.connections, w.full, w.resumed),
            (2, 2 - resumed, resumed),
            "{versions:?}: the server's view: {w:?}"
        );
        assert_eq!(call(), kept, "{versions:?}: kept again");
        assert_eq!(sb.count(Endpoint::Protected(ProviderKind::OAuth2)), 12);
    }
}
