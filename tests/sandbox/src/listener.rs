//! [`CountingListener`]: a plain TCP listener on loopback that counts the connections it
//! accepts, to prove that none was made (a refused plaintext URL) or that one was (an
//! explicit opt-in, a proxy). It can also answer every connection with fixed bytes.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A TCP listener on `127.0.0.1` that counts connections. Each connection's request head is
/// read (up to 64 KiB, two seconds at most), recorded, answered with the listener's bytes if
/// it has any, and closed. Dropping it stops it.
pub struct CountingListener {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The peer of every accepted connection, in accept order.
    peers: Vec<SocketAddr>,
    /// Peers that were [`CountingListener::accepted`]'s own probes.
    probes: HashSet<SocketAddr>,
    /// Request heads read so far.
    heads: Vec<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CountingListener {
    /// Listens on a free port of 127.0.0.1; connections are closed without an answer.
    pub fn start() -> std::io::Result<CountingListener> {
        Self::answering(b"")
    }

    /// Listens on a free port of 127.0.0.1 and answers every connection with `raw` (an HTTP
    /// response, say a fake proxy's `502`), then closes it.
    pub fn answering(raw: &'static [u8]) -> std::io::Result<CountingListener> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (Arc::clone(&shared), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("counting-listener".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let peer = conn.peer_addr().ok();
                    if let Some(peer) = peer {
                        sh.lock().peers.push(peer);
                        sh.changed.notify_all();
                    }
                    let sh = Arc::clone(&sh);
                    let _ = std::thread::Builder::new()
                        .name("counting-listener-conn".into())
                        .spawn(move || serve(conn, raw, &sh));
                }
            })?;
        Ok(CountingListener {
            addr,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port (connect to `0.0.0.0:PORT` to test a refused non-loopback URL: on Linux it
    /// would reach this listener).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far. Exact: every connection made before the call is
    /// counted (a probe connection queued after them is waited for), none is missed because
    /// the accepting thread had not got to it yet.
    pub fn accepted(&self) -> usize {
        let Ok(probe) = TcpStream::connect(self.addr) else {
            return self.count();
        };
        let Ok(me) = probe.local_addr() else {
            return self.count();
        };
        let guard = self.shared.lock();
        let (mut guard, _) = self
            .shared
            .changed
            .wait_timeout_while(guard, Duration::from_secs(10), |s| !s.peers.contains(&me))
            .unwrap_or_else(|p| p.into_inner());
        guard.probes.insert(me);
        drop(guard);
        self.count()
    }

    fn count(&self) -> usize {
        let s = self.shared.lock();
        s.peers.iter().filter(|p| !s.probes.contains(p)).count()
    }

    /// Waits until `n` request heads were read, or `timeout`: whether they were.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        let guard = self.shared.lock();
        let (guard, _) = self
            .shared
            .changed
            .wait_timeout_while(guard, timeout, |s| s.heads.len() < n)
            .unwrap_or_else(|p| p.into_inner());
        guard.heads.len() >= n
    }

    /// The request heads read so far (request line and headers, lossily decoded).
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().heads.clone()
    }
}

fn serve(mut conn: TcpStream, raw: &[u8], shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while head.len() < 64 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if !head.is_empty() {
        shared
            .lock()
            .heads
            .push(String::from_utf8_lossy(&head).into_owned());
        shared.changed.notify_all();
    }
    if !raw.is_empty() {
        let _ = conn.write_all(raw);
        let _ = conn.flush();
    }
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for CountingListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingListener")
            .field("addr", &self.addr)
            .field("accepted", &self.count())
            .finish()
    }
}
