//! [`RedisServer`]: a real `redis-server` of a test's own, on free loopback ports, in plain
//! TCP or with TLS.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` (Debian's `redis-server` package, built with TLS) started on free ports of
/// 127.0.0.1, with no persistence; stopped when dropped. Tests of the fleet store share a
/// token through it, stop it mid-run and start it again.
///
/// It always listens in plain TCP ([`RedisServer::url`]); [`RedisServer::start_tls`] adds a
/// TLS port ([`RedisServer::tls_url`]) with a certificate for `127.0.0.1` signed by a CA of
/// its own ([`RedisServer::ca_pem`]).
///
/// A free port is found by binding port 0 and letting it go, so another process can take it
/// before `redis-server` binds it. A start is therefore checked by asking the server itself
/// (`PING` answered `+PONG` while the child still runs), never by a connection that anything
/// could have accepted; a lost port is given up and another one tried.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    tls: Option<Tls>,
    password: Option<String>,
    child: Option<Child>,
}

/// The TLS port and the files its server reads.
#[derive(Debug)]
struct Tls {
    port: u16,
    dir: PathBuf,
    ca_pem: String,
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl RedisServer {
    /// Starts one in plain TCP; panics with the install hint when `redis-server` is missing.
    pub fn start() -> RedisServer {
        Self::start_with(false, None)
    }

    /// Starts one that also speaks TLS (`--tls-port`, clients not asked for certificates),
    /// with a fresh CA and a server certificate for the IP address `127.0.0.1`.
    pub fn start_tls() -> RedisServer {
        Self::start_with(true, None)
    }

    /// [`RedisServer::start_tls`], requiring `password` (`--requirepass`) from every client.
    pub fn start_tls_with_password(password: &str) -> RedisServer {
        Self::start_with(true, Some(password))
    }

    fn start_with(tls: bool, password: Option<&str>) -> RedisServer {
        for _ in 0..20 {
            let mut r = RedisServer {
                port: free_port(),
                tls: tls.then(|| Tls::mint(free_port())),
                password: password.map(str::to_owned),
                child: None,
            };
            if r.try_start() {
                return r;
            }
        }
        panic!("redis-server did not start on any of 20 free ports");
    }

    /// Starts it again (empty) on the same ports after [`RedisServer::stop`].
    pub fn restart(&mut self) {
        for _ in 0..50 {
            if self.try_start() {
                return;
            }
            // The port was just released by the stopped server; another process may hold
            // it for a moment.
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// Spawns the server and waits until it answers `PING` on its own port: whether it did
    /// (false when it exited, e.g. it lost its port).
    fn try_start(&mut self) -> bool {
        self.stop();
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ]);
        if let Some(tls) = &self.tls {
            let file = |name: &str| tls.dir.join(name).to_string_lossy().into_owned();
            command
                .args(["--tls-port", &tls.port.to_string()])
                .args(["--tls-cert-file", &file("server.pem")])
                .args(["--tls-key-file", &file("server.key")])
                .args(["--tls-ca-cert-file", &file("ca.pem")])
                .args(["--tls-auth-clients", "no"]);
        }
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian: apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            if exited {
                self.child = None;
                return false;
            }
            if self.command("PING").as_deref() == Some("+PONG") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop();
        false
    }

    /// Sends one inline command on the plain port (after `AUTH` when the server has a
    /// password): the first line of its answer.
    fn command(&self, command: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        if let Some(password) = &self.password {
            s.write_all(format!("AUTH {password}\r\n").as_bytes())
                .ok()?;
            if read_line(&mut s)? != "+OK" {
                return None;
            }
        }
        s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        read_line(&mut s)
    }

    /// Empties every database (`FLUSHALL`): the records a fleet shares disappear, as when
    /// an operator clears them or a Redis without persistence restarts.
    pub fn flush(&self) {
        assert_eq!(self.command("FLUSHALL").as_deref(), Some("+OK"));
    }

    /// Stops it (the ports stay reserved for [`RedisServer::restart`] by convention).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `rediss://127.0.0.1:TLS_PORT/0`; panics unless made by [`RedisServer::start_tls`].
    pub fn tls_url(&self) -> String {
        let tls = self.tls.as_ref().expect("started with start_tls");
        format!("rediss://127.0.0.1:{}/0", tls.port)
    }

    /// The CA that signed the TLS port's certificate, as PEM; panics unless made by
    /// [`RedisServer::start_tls`].
    pub fn ca_pem(&self) -> &str {
        &self.tls.as_ref().expect("started with start_tls").ca_pem
    }
}

/// The first line of a short answer.
fn read_line(s: &mut TcpStream) -> Option<String> {
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(buf.get(..n)?).into_owned();
    Some(text.lines().next()?.to_owned())
}

impl Tls {
    /// A CA and a server certificate for `127.0.0.1` (an IP subjectAltName), in a fresh
    /// directory.
    fn mint(port: u16) -> Tls {
        let ca = crate::pki::root("Tessera Redis test CA", crate::pki::ec_key());
        let key = crate::pki::ec_key();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("server names");
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let leaf = params.signed_by(&key, &ca).expect("server certificate");
        let dir =
            std::env::temp_dir().join(format!("tessera-redis-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let ca_pem = ca.pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).expect("ca.pem");
        std::fs::write(dir.join("server.pem"), leaf.pem()).expect("server.pem");
        std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("server.key");
        Tls { port, dir, ca_pem }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
