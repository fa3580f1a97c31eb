//! Connections over MbedTLS: kept per origin, TLS 1.2 sessions saved for resumption, one
//! exchange on the crate's HTTP/1.1 codec.

use core::cell::RefCell;
use core::ffi::CStr;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::with_timeout;
use embedded_nal_async::{Dns, TcpConnect};
use mbedtls_rs::{
    AuthMode, ClientSessionConfig, SavedSession, Session, SessionConfig, TlsReference, TlsVersion,
};
use tessera_core::transport::Scheme;
use tessera_core::{Stage, TransportError};

use crate::connect::{connect, server_name, target};
use crate::connector::KEPT_CONNECTIONS;
use crate::error::{Fault, TIMED_OUT};
use crate::exchange::{exchange as over, Exchanged, Outgoing as Wired, Reached};
use crate::http::{Outgoing, Wire};
use crate::kept::{Connection, Handshake, Pool};

use super::failure::{handshake_failure, OUT_OF_MEMORY};
use super::roots::Roots;

/// What the MbedTLS connector keeps: the reference and roots, the sessions kept open per
/// origin, and per origin the last session's parameters for resumption (each pool under a
/// critical section held only to move one in or out, never across I/O).
pub(crate) struct Shared<'r, T: TcpConnect + 'r> {
    tls: TlsReference<'r>,
    roots: Roots<'r>,
    kept: Mutex<
        CriticalSectionRawMutex,
        RefCell<Pool<Kept<'r, T::Connection<'r>>, KEPT_CONNECTIONS>>,
    >,
    saved: Mutex<CriticalSectionRawMutex, RefCell<Pool<Saved, KEPT_CONNECTIONS>>>,
}

/// A session kept open in the pool.
struct Kept<'r, C: embedded_io_async::Read + embedded_io_async::Write>(Session<'r, C>);

// SAFETY: mbedtls-rs's `Session` is not `Send` only because it holds its MbedTLS contexts
// (SSL, configuration, DRBG) through raw pointers. They are heap memory owned by this one
// session alone, with no thread-local state; the random numbers come through mbedtls-rs's
// own `RngPtr`, which it declares `Send`. A `Kept` is only ever moved (into and out of the
// pool, under the client's mutex), never shared. The stream must be `Send` by itself: with a
// stack whose connections are not (embassy-net), the client stays on one executor as before.
#[allow(unsafe_code)]
unsafe impl<C: embedded_io_async::Read + embedded_io_async::Write + Send> Send for Kept<'_, C> {}

/// A saved session (TLS 1.2), for resumption.
struct Saved(SavedSession);

// SAFETY: `SavedSession` is one heap `mbedtls_ssl_session` (and a copy of the server name)
// owned alone, freed with MbedTLS's `free`; it is moved into and out of the pool under the
// client's mutex, never shared.
#[allow(unsafe_code)]
unsafe impl Send for Saved {}

/// How long a saved session is offered for resumption. The server decides whether it still
/// takes it (its ticket lifetime or session cache); one it refuses costs a full handshake,
/// and the new session replaces it.
const SAVED_FOR: core::time::Duration = core::time::Duration::from_secs(12 * 3600);

impl<'r, T: TcpConnect + 'r> Shared<'r, T> {
    pub(crate) fn new(tls: TlsReference<'r>, roots: Roots<'r>) -> Self {
        Shared {
            tls,
            roots,
            kept: Mutex::new(RefCell::new(Pool::new())),
            saved: Mutex::new(RefCell::new(Pool::new())),
        }
    }

    /// Closes the kept sessions (without close_notify) and forgets the saved ones.
    pub(crate) fn forget(&self) {
        self.kept.lock(|k| k.borrow_mut().clear());
        self.saved.lock(|s| s.borrow_mut().clear());
    }

    /// One exchange over MbedTLS: on a kept session for the origin when there is one (found
    /// dead before any byte of the answer: sent again on a new one only when `safe`),
    /// otherwise on a new connection whose handshake offers the origin's saved session.
    /// `rx` holds the server name for the handshake, then the request and the response's
    /// head. Bounded by the wire's timeout.
    pub(crate) async fn exchange<D: Dns>(
        &self,
        wire: &Wire<'r, T, D>,
        out: Outgoing<'_>,
        rx: &mut [u8],
        into: &mut [u8],
        keep_headers: bool,
        safe: bool,
    ) -> Result<Exchanged, Fault> {
        let work = self.exchange_in(wire, out, rx, into, keep_headers, safe);
        match with_timeout(wire.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Fault::Net(TIMED_OUT)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange_in<D: Dns>(
        &self,
        wire: &Wire<'r, T, D>,
        out: Outgoing<'_>,
        rx: &mut [u8],
        into: &mut [u8],
        keep_headers: bool,
        safe: bool,
    ) -> Result<Exchanged, Fault> {
        let to = target(out.url)?;
        if to.scheme != Scheme::Https {
            return Err(Fault::Local(tessera_core::Error::Insecure));
        }
        let wired = Wired {
            method: out.method,
            to,
            headers: out.headers,
            body: out.body,
        };
        let mut reached = Reached::default();
        let now = embassy_time::Instant::now();
        let taken = self.kept.lock(|k| k.borrow_mut().take(&to, now));
        if let Some(Kept(mut session)) = taken {
            let sent = over(
                &mut session,
                true,
                &wired,
                rx,
                into,
                keep_headers,
                wire.wall_now,
                &mut reached,
            )
            .await;
            match sent {
                Ok(mut x) => {
                    x.connection = Connection {
                        reused: true,
                        handshake: Handshake::None,
                    };
                    self.keep(wire.keep, &to, session, &x).await;
                    return Ok(x);
                }
                Err(Fault::Net(e))
                    if matches!(e.stage, Stage::Io | Stage::Tls) && !reached.answered =>
                {
                    drop(session);
                    if !safe {
                        return Err(Fault::Net(crate::http::DEAD_NOT_RESENT));
                    }
                    diag!(
                        debug,
                        "tessera: a kept TLS connection was closed by the server; sending again on a new one"
                    );
                }
                Err(e) => return Err(e),
            }
        }

        // SNI and the host check: the URL's host, NUL-terminated, at the start of `rx`
        // (not in this future: it stays small in a task's arena). MbedTLS copies it; the
        // request is written over it after.
        let bytes = server_name(&to).as_bytes();
        let capacity = rx.len();
        let (name, _) = rx
            .split_at_mut_checked(bytes.len() + 1)
            .ok_or(Fault::Local(tessera_core::Error::Capacity {
                field: "TLS server name",
                needed: bytes.len() + 1,
                capacity,
            }))?;
        name[..bytes.len()].copy_from_slice(bytes);
        name[bytes.len()] = 0;
        let server_name = CStr::from_bytes_with_nul(name).map_err(|_| {
            Fault::Net(TransportError::new(
                Stage::Protocol,
                "the URL was not understood",
            ))
        })?;
        let opened = match self.open(wire, &to, server_name, now).await {
            // Out of heap with sessions kept for other origins: they go, and the handshake
            // is tried once more (nothing was sent yet).
            Err(e) if e.detail == OUT_OF_MEMORY && self.kept.lock(|k| !k.borrow().is_empty()) => {
                self.kept.lock(|k| k.borrow_mut().clear());
                diag!(
                    debug,
                    "tessera: out of heap for TLS: kept connections closed, trying again"
                );
                self.open(wire, &to, server_name, now).await
            }
            other => other,
        };
        let (mut session, kind) = opened.map_err(Fault::Net)?;
        diag!(
            debug,
            "tessera: TLS established with {} ({})",
            to.host,
            kind.as_str()
        );
        let mut x = over(
            &mut session,
            true,
            &wired,
            rx,
            into,
            keep_headers,
            wire.wall_now,
            &mut reached,
        )
        .await?;
        x.connection = Connection {
            reused: false,
            handshake: kind,
        };
        // Saved after the answer, for TLS 1.2 only (a session ID or ticket the server may
        // take back). TLS 1.3 tickets are not resumed: MbedTLS 3.6 ignores them unless its
        // `conf_tls13_enable_signal_new_session_tickets` is set, which mbedtls-rs 0.3 does
        // not do nor expose (measured: the sandbox's rustls server sees a full handshake).
        let tls12 = session.tls_version() == Some(TlsVersion::Tls1_2);
        if let Some(saved) = tls12.then(|| session.save().ok()).flatten() {
            let now = embassy_time::Instant::now();
            self.saved.lock(|s| {
                s.borrow_mut()
                    .put(&to, Saved(saved), SAVED_FOR, now, KEPT_CONNECTIONS)
            });
        }
        self.keep(wire.keep, &to, session, &x).await;
        Ok(x)
    }

    /// A new connection to `to` and its handshake, offering the origin's saved session
    /// (taken out: used for this server name only, as mbedtls-rs checks, and dropped if the
    /// handshake fails).
    async fn open<D: Dns>(
        &self,
        wire: &Wire<'r, T, D>,
        to: &tessera_core::transport::Target<'_>,
        server_name: &CStr,
        now: embassy_time::Instant,
    ) -> Result<(Session<'r, T::Connection<'r>>, Handshake), TransportError> {
        let conn = match connect(wire.tcp, wire.dns, to).await {
            Ok(conn) => conn,
            // The stack's sockets may all be kept for other origins: they go, and the
            // connect is tried again.
            Err(e) if e.stage == Stage::Connect && self.kept.lock(|k| !k.borrow().is_empty()) => {
                self.kept.lock(|k| k.borrow_mut().clear());
                connect(wire.tcp, wire.dns, to).await?
            }
            Err(e) => return Err(e),
        };
        // In a block, so the configuration is not kept across the awaits below.
        let mut session = {
            let roots = self.roots.parse()?;
            let config = SessionConfig::Client(ClientSessionConfig {
                ca_chain: Some(roots),
                // Set below: MbedTLS copies it, so the session does not borrow the buffer
                // it is written in and can be kept.
                server_name: None,
                auth_mode: AuthMode::Required,
                min_version: TlsVersion::Tls1_2,
                max_version: None,
                skip_hostname_verification: false,
                ..ClientSessionConfig::new()
            });
            Session::new(self.tls, conn, &config).map_err(|e| handshake_failure(e, 0))?
        };
        session
            .set_server_name(server_name)
            .map_err(|e| handshake_failure(e, 0))?;
        let saved = self.saved.lock(|s| s.borrow_mut().take(to, now));
        let handshake = match &saved {
            Some(Saved(saved)) => session.connect_with_session(saved).await,
            None => session.connect().await,
        };
        if let Err(e) = handshake {
            let flags = session.tls_verification_details();
            return Err(handshake_failure(e, flags));
        }
        let kind = match saved {
            Some(_) => Handshake::Resumed,
            None => Handshake::Full,
        };
        Ok((session, kind))
    }

    /// Keeps `session` for `to`'s origin when the answer allows it; otherwise closes it
    /// (close_notify; a failure there changes nothing, the answer is in).
    async fn keep(
        &self,
        policy: crate::kept::Keep,
        to: &tessera_core::transport::Target<'_>,
        mut session: Session<'r, T::Connection<'r>>,
        x: &Exchanged,
    ) {
        match (x.reusable, policy.idle_for(x.idle_timeout)) {
            (true, Some(idle)) => {
                let now = embassy_time::Instant::now();
                self.kept.lock(|k| {
                    k.borrow_mut()
                        .put(to, Kept(session), idle, now, policy.limit)
                });
            }
            _ => {
                let _ = session.close().await;
            }
        }
    }
}
