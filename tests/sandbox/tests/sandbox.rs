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
