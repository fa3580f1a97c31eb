//! Hostile answers HTTP servers refuse to produce, from a raw TCP server: interim answers
//! before the real one, framing that contradicts itself, bytes after the body, lengths that
//! are not numbers. Every transport must read them the same way; the
//! `hostile_answers_are_read_alike` scenario checks it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// An OAuth 2.0 grant, 72 bytes (the `Content-Length` the cases below use).
const GRANT: &str = r#"{"access_token":"hostile-ok","token_type":"Bearer","expires_in":3600}"#;

/// One hostile answer to a token request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// `103 Early Hints`, then the 200.
    EarlyHints,
    /// `100 Continue` after `100 Continue`, never a final answer.
    EndlessContinue,
    /// `Transfer-Encoding: chunked` and then a (wrong) `Content-Length`: chunked wins.
    ChunkedThenLength,
    /// A (wrong) `Content-Length` and then `Transfer-Encoding: chunked`: chunked wins.
    LengthThenChunked,
    /// `Transfer-Encoding: identity` with a `Content-Length`.
    IdentityCoding,
    /// A body framed by its length, followed by bytes that belong to no answer.
    ExtraBytes,
    /// `Content-Length: +72`: not a number HTTP allows.
    PlusLength,
}

/// What a client must make of a [`Hostile`] answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The token (`hostile-ok`).
    Token,
    /// A transport failure at this stage name (`timeout`, `protocol`).
    Fails(&'static str),
}

impl Hostile {
    /// Every case.
    pub const ALL: [Hostile; 7] = [
        Hostile::EarlyHints,
        Hostile::EndlessContinue,
        Hostile::ChunkedThenLength,
        Hostile::LengthThenChunked,
        Hostile::IdentityCoding,
        Hostile::ExtraBytes,
        Hostile::PlusLength,
    ];

    /// What every transport makes of it (RFC 9110 §15.2, RFC 9112 §6.3).
    pub const fn outcome(self) -> Outcome {
        match self {
            Hostile::EndlessContinue => Outcome::Fails("timeout"),
            Hostile::PlusLength => Outcome::Fails("protocol"),
            _ => Outcome::Token,
        }
    }

    fn answer(self) -> Vec<u8> {
        let chunked = format!("{:x}\r\n{GRANT}\r\n0\r\n\r\n", GRANT.len());
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
        match self {
            Hostile::EarlyHints => format!(
                "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                 {ok}Content-Length: {}\r\n\r\n{GRANT}",
                GRANT.len()
            ),
            Hostile::EndlessContinue => "HTTP/1.1 100 Continue\r\n\r\n".into(),
            Hostile::ChunkedThenLength => {
                format!("{ok}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n{chunked}")
            }
            Hostile::LengthThenChunked => {
                format!("{ok}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}")
            }
            Hostile::IdentityCoding => format!(
                "{ok}Transfer-Encoding: identity\r\nContent-Length: {}\r\n\r\n{GRANT}",
                GRANT.len()
            ),
            Hostile::ExtraBytes => format!(
                "{ok}Content-Length: {}\r\n\r\n{GRANT}HTTP/1.1 200 OK\r\n\r\ngarbage",
                GRANT.len()
            ),
            Hostile::PlusLength => {
                format!("{ok}Content-Length: +{}\r\n\r\n{GRANT}", GRANT.len())
            }
        }
        .into_bytes()
    }
}

/// A raw TCP server on loopback answering every request with one [`Hostile`] answer, then
/// closing (an endless `100 Continue` goes on until the client leaves). Stopped when
/// dropped.
pub struct HostileServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

impl HostileServer {
    /// Starts it.
    pub fn start(case: Hostile) -> std::io::Result<HostileServer> {
        Self::answering(Answer::Case(case))
    }

    /// A server answering every request with exactly `raw` (a whole HTTP response), then
    /// closing: for answers no [`Hostile`] case covers (a `Retry-After` date, …).
    pub fn raw(raw: Vec<u8>) -> std::io::Result<HostileServer> {
        Self::answering(Answer::Raw(Arc::new(raw)))
    }

    /// A server that answers the first request on each connection with `first` (a whole
    /// response that lets the connection be kept), then reads the next request on that
    /// connection and closes it without a byte of answer: a kept connection that dies with a
    /// request in it (the server may have acted on it).
    pub fn answer_once_then_drop(first: Vec<u8>) -> std::io::Result<HostileServer> {
        Self::answering(Answer::OnceThenDrop(Arc::new(first)))
    }

    /// A server that answers every request on a connection with exactly `raw` and keeps the
    /// connection open for the next: to see whether a client keeps a connection after an
    /// answer (it must not when the framing was in doubt).
    pub fn keep_answering(raw: Vec<u8>) -> std::io::Result<HostileServer> {
        Self::answering(Answer::Keep(Arc::new(raw)))
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests read so far (every connection).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    fn answering(answer: Answer) -> std::io::Result<HostileServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let requests = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&requests);
        let connections = Arc::new(AtomicU64::new(0));
        let accepted = Arc::clone(&connections);
        thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let stopped = Arc::clone(&stopped);
                        let counted = Arc::clone(&counted);
                        let answer = answer.clone();
                        thread::spawn(move || serve(stream, &answer, &stopped, &counted));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(HostileServer {
            addr,
            stop,
            requests,
            connections,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone)]
enum Answer {
    Case(Hostile),
    Raw(Arc<Vec<u8>>),
    OnceThenDrop(Arc<Vec<u8>>),
    Keep(Arc<Vec<u8>>),
}

fn serve(mut stream: TcpStream, answer: &Answer, stop: &AtomicBool, requests: &AtomicU64) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if read_request(&mut stream).is_none() {
        return;
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let (endless, answer) = match answer {
        Answer::Case(case) => (*case == Hostile::EndlessContinue, case.answer()),
        Answer::Raw(raw) => (false, raw.to_vec()),
        Answer::Keep(raw) => {
            let _ = stream.write_all(raw);
            let _ = stream.flush();
            while !stop.load(Ordering::Relaxed) && read_request(&mut stream).is_some() {
                requests.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(raw);
                let _ = stream.flush();
            }
            return;
        }
        Answer::OnceThenDrop(first) => {
            let _ = stream.write_all(first);
            let _ = stream.flush();
            if read_request(&mut stream).is_some() {
                requests.fetch_add(1, Ordering::SeqCst);
            }
            // Dropped: closed with the request unanswered.
            return;
        }
    };
    if endless {
        // Until the client gives up (its timeout) and closes.
        while !stop.load(Ordering::Relaxed) && stream.write_all(&answer).is_ok() {
            thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    let _ = stream.write_all(&answer);
    let _ = stream.flush();
    // Let the client read it all before the close.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 256];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// Reads one request (head, and a body of its `Content-Length`).
fn read_request(stream: &mut TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(());
        }
    }
}
