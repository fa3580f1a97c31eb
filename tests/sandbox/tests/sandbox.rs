//! The sandbox's own behaviour, over raw loopback sockets: the gate, the hostile faults and
//! the probes the transport suites rely on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use tessera_sandbox::{Endpoint, Fault, Gate, ProviderKind, Sandbox};

/// Sends `request` raw and reads until the server closes: the whole answer, lossily.
fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get(addr: SocketAddr, path: &str) -> String {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

fn status_of(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("")
}

#[test]
fn a_held_request_waits_for_the_release_and_others_are_served_meanwhile() {
    let sb = Sandbox::start().unwrap();
    let addr = sb.addr();
    let gate = Gate::new();
    sb.inject(
        Endpoint::Protected(ProviderKind::OAuth2),
        Fault::Hold(gate.clone()),
        1,
    );
    let (tx, rx) = mpsc::channel();
    let held = std::thread::spawn(move || {
        let answer = get(addr, "/oauth2/protected");
        tx.send(status_of(&answer).to_owned()).unwrap();
    });
    assert!(
        gate.wait_arrived(1, Duration::from_secs(5)),
        "never arrived"
    );
    assert_eq!(gate.arrived(), 1);
    // Another request to the same endpoint is answered while the first is held.
    assert_eq!(status_of(&get(addr, "/oauth2/protected")), "401");
    assert_eq!(
        rx.try_recv(),
        Err(mpsc::TryRecvError::Empty),
        "the held request was answered before the release"
    );
    assert!(!gate.is_released());
    gate.release();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).as_deref(),
        Ok("401"),
        "answered normally once released"
    );
    held.join().unwrap();
    // A released gate lets later requests straight through, still counting them.
    sb.inject(
        Endpoint::Protected(ProviderKind::OAuth2),
        Fault::Hold(gate.clone()),
        1,
    );
    assert_eq!(status_of(&get(addr, "/oauth2/protected")), "401");
    assert_eq!(gate.arrived(), 2);
    assert!(gate.wait_arrived(2, Duration::ZERO));
    assert!(!gate.wait_arrived(3, Duration::from_millis(10)));
    assert_eq!(sb.count(Endpoint::Protected(ProviderKind::OAuth2)), 3);
}

#[test]
fn gates_are_equal_by_identity() {
    let a = Gate::new();
    assert_eq!(a, a.clone());
    assert_ne!(a, Gate::new());
    assert_eq!(Fault::Hold(a.clone()), Fault::Hold(a.clone()));
    assert_ne!(Fault::Hold(a), Fault::Hold(Gate::new()));
    assert!(format!("{:?}", Gate::new()).contains("arrived: 0"));
}

fn post(addr: SocketAddr, path: &str, extra: &str, body: &str) -> String {
    raw(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn an_echoing_provider_repeats_the_body_and_the_authorization_header() {
    let sb = Sandbox::start().unwrap();
    for kind in ProviderKind::ALL {
        sb.inject(Endpoint::Token(kind), Fault::EchoRequest, 1);
        let path = match kind {
            ProviderKind::Shogun => "/shogun/api/v1/security/api/generate_token",
            ProviderKind::Apimw => "/apimw/v1/auth/token",
            ProviderKind::Setu => "/setu/api/v2/auth/token",
            ProviderKind::StoneX => "/stonex/api/v/authentication",
            ProviderKind::OAuth2 => "/oauth2/token",
        };
        let answer = post(
            sb.addr(),
            path,
            "Authorization: Basic c2VjcmV0LWluLWJhc2ljCg==\r\n",
            "client_secret=hunter2",
        );
        assert_eq!(status_of(&answer), "400", "{kind}: {answer}");
        assert!(answer.contains("client_secret=hunter2"), "{kind}: {answer}");
        assert!(
            answer.contains("Basic c2VjcmV0LWluLWJhc2ljCg=="),
            "{kind}: {answer}"
        );
        if matches!(kind, ProviderKind::OAuth2 | ProviderKind::StoneX) {
            assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
            assert!(answer.contains("error_description"), "{answer}");
        }
    }
}

#[test]
fn hostile_answers_are_sent_byte_for_byte() {
    let sb = Sandbox::start().unwrap();
    let ep = Endpoint::Protected(ProviderKind::OAuth2);
    sb.inject(ep, Fault::GarbageStatusLine, 1);
    let answer = get(sb.addr(), "/oauth2/protected");
    assert_eq!(answer.as_bytes(), tessera_sandbox::GARBAGE_STATUS_LINE);
    sb.inject(ep, Fault::BrokenChunked, 1);
    let answer = get(sb.addr(), "/oauth2/protected");
    assert_eq!(answer.as_bytes(), tessera_sandbox::BROKEN_CHUNKED);
    // The connection-level hijack is per connection: the next answer is normal HTTP.
    let answer = get(sb.addr(), "/oauth2/protected");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    sb.inject(ep, Fault::HugeHeaders(100_000), 1);
    let answer = get(sb.addr(), "/oauth2/protected");
    let filler = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-filler: "))
        .expect("the filler header");
    assert_eq!(filler.len(), 100_000);
    sb.inject(
        ep,
        Fault::Redirect("http://127.0.0.1:9/elsewhere".into()),
        1,
    );
    let answer = get(sb.addr(), "/oauth2/protected");
    assert!(answer.starts_with("HTTP/1.1 307"), "{answer}");
    assert!(
        answer.contains("location: http://127.0.0.1:9/elsewhere"),
        "{answer}"
    );
}

#[test]
fn request_headers_are_recorded_and_the_protected_endpoint_numbers_its_answers() {
    let sb = Sandbox::start().unwrap();
    let ep = Endpoint::Protected(ProviderKind::Setu);
    assert!(sb.last_headers(ep).is_empty());
    for n in 1..=2 {
        let answer = raw(
            sb.addr(),
            &format!(
                "GET /setu/protected HTTP/1.1\r\nHost: x\r\nIdempotency-Key: key-{n}\r\n\
                 Connection: close\r\n\r\n"
            ),
        );
        assert!(
            answer.contains(&format!("x-request-id: req-{n}\r\n")),
            "{answer}"
        );
        assert!(sb
            .last_headers(ep)
            .contains(&("idempotency-key".into(), format!("key-{n}"))));
    }
    assert!(sb
        .last_headers(Endpoint::Token(ProviderKind::Setu))
        .is_empty());
}

#[test]
fn the_counting_listener_counts_exactly() {
    let l = tessera_sandbox::CountingListener::start().unwrap();
    assert_eq!(l.accepted(), 0);
    assert_eq!(l.accepted(), 0, "its own probes are not counted");
    let mut s = TcpStream::connect(l.addr()).unwrap();
    // Counted at once, without waiting for the accepting thread.
    assert_eq!(l.accepted(), 1);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(l.wait_requests(1, Duration::from_secs(5)));
    assert!(l.requests()[0].starts_with("GET / HTTP/1.1"));
    // 0.0.0.0 reaches a loopback listener on Linux: the reason URLs naming it are refused.
    let _t = TcpStream::connect(("0.0.0.0", l.port())).unwrap();
    assert_eq!(l.accepted(), 2);
}

#[test]
fn the_counting_listener_can_answer_like_a_proxy() {
    const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
    let l = tessera_sandbox::CountingListener::answering(BAD_GATEWAY).unwrap();
    let answer = get(l.addr(), "http://example.invalid/");
    assert_eq!(answer.as_bytes(), BAD_GATEWAY);
    assert_eq!(l.accepted(), 1);
    assert!(l.requests()[0].starts_with("GET http://example.invalid/ HTTP/1.1"));
}

#[test]
fn certificates_convert_to_pem() {
    let pem = tessera_sandbox::certificate_pem(&[0u8; 100]);
    let lines: Vec<&str> = pem.lines().collect();
    assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
    assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
    assert_eq!(lines[1].len(), 64);
    assert_eq!(lines[1..lines.len() - 1].concat().len(), 136);
}

#[test]
fn a_huge_header_is_sent_whole_before_the_connection_closes() {
    let sb = Sandbox::start().unwrap();
    let ep = Endpoint::Token(ProviderKind::Shogun);
    sb.inject(ep, Fault::HugeHeaders(200_000), 1);
    let body = r#"{"client_id":"tessera-sandbox-client","client_secret":"x"}"#;
    let answer = post(
        sb.addr(),
        "/shogun/api/v1/security/api/generate_token",
        "Content-Type: application/json\r\n",
        body,
    );
    let (head, rest) = answer.split_once("\r\n\r\n").expect("a whole head");
    assert!(head.len() > 200_000, "{}", head.len());
    assert!(rest.contains("Invalid credentials"), "{rest}");
}
