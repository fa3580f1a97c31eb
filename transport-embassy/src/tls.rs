//! HTTPS through embedded-tls (feature `tls`): the CA, the RNG and the record buffers.

use core::cell::RefCell;
use core::future::poll_fn;
use core::ptr::NonNull;
use core::task::Poll;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::waitqueue::MultiWakerRegistration;
use embassy_time::with_timeout;
use embedded_nal_async::{Dns, TcpConnect};
use tessera_core::transport::{Scheme, Target};
use tessera_core::Stage;

use crate::connect::{connect, server_name, target};
use crate::connector::{is_https, sealed, Plain, Policy, KEPT_CONNECTIONS};
use crate::error::{Fault, TIMED_OUT};
use crate::exchange::{exchange as over, Outgoing as Wired, Reached};
use crate::http::{Exchanged, Outgoing, DEAD_NOT_RESENT};
use crate::kept::{Connection, Handshake, Keep, Pool};
use crate::resources::{Records, RECORD_SLOTS};

/// Bytes of each of embedded-tls's two record buffers (read, write) per connection: any
/// record a server may send (16 KiB of plaintext plus the record overhead).
pub const RECORD_BUFFER: usize = 16640;

/// One record slot (read and write buffers) of a [`Resources`](crate::Resources), by
/// address: lent to one connection at a time.
struct RawSlot {
    read: NonNull<u8>,
    write: NonNull<u8>,
}

// SAFETY: a `RawSlot` is the only handle to its two buffers (each `RECORD_BUFFER` bytes of
// the `Resources` the client borrows mutably for its whole life): it is moved between the
// free list and one lease, never copied nor shared, so sending it to another thread sends
// exclusive access, as sending a `&mut [u8]` would.
#[allow(unsafe_code)]
unsafe impl Send for RawSlot {}

/// The free record slots and the tasks waiting for one.
struct Free {
    slots: heapless::Vec<RawSlot, RECORD_SLOTS>,
    waiters: MultiWakerRegistration<8>,
}

/// Where embedded-tls's record slots live while no connection has them, inside
/// [`Resources`](crate::Resources) (feature `tls`).
pub struct RecordHome {
    free: Mutex<CriticalSectionRawMutex, RefCell<Free>>,
}

impl RecordHome {
    pub(crate) const fn new() -> Self {
        RecordHome {
            free: Mutex::new(RefCell::new(Free {
                slots: heapless::Vec::new(),
                waiters: MultiWakerRegistration::new(),
            })),
        }
    }

    /// Takes the buffers of `records` as this home's slots (what was there before belonged
    /// to a client whose borrow has ended: no lease of it can be alive).
    pub(crate) fn lend(&self, records: &mut [[u8; RECORD_BUFFER]; 2 * RECORD_SLOTS]) {
        self.free.lock(|f| {
            let f = &mut *f.borrow_mut();
            f.slots.clear();
            for pair in records.chunks_exact_mut(2) {
                if let [read, write] = pair {
                    read.fill(0);
                    write.fill(0);
                    // From the whole array, not its first byte: the pointer's provenance
                    // must cover all `RECORD_BUFFER` bytes that `buffers` and the wipe reach.
                    let _ = f.slots.push(RawSlot {
                        read: NonNull::from(read).cast::<u8>(),
                        write: NonNull::from(write).cast::<u8>(),
                    });
                }
            }
        });
    }

    /// A free slot. With none free, `evict` closes the kept connections (whose slots come
    /// back); then the slot is waited for on a signal: a slot comes back when its
    /// connection closes, and a connection put in the kept pool wakes the waiters, which
    /// evict it.
    async fn take(&self, evict: impl Fn()) -> Lease<'_> {
        let pop = || self.free.lock(|f| f.borrow_mut().slots.pop());
        let raw = poll_fn(|cx| {
            if let Some(raw) = pop() {
                return Poll::Ready(raw);
            }
            evict();
            self.free.lock(|f| {
                let f = &mut *f.borrow_mut();
                match f.slots.pop() {
                    Some(raw) => Poll::Ready(raw),
                    None => {
                        f.waiters.register(cx.waker());
                        Poll::Pending
                    }
                }
            })
        })
        .await;
        Lease {
            raw,
            home: self,
            lent: false,
        }
    }

    /// Wakes the tasks waiting for a slot (a connection was just kept: they may evict it).
    fn wake(&self) {
        self.free.lock(|f| f.borrow_mut().waiters.wake());
    }

    /// Whether every slot is home and all zero: for tests.
    pub(crate) fn wiped(&self) -> Option<bool> {
        self.free.lock(|f| {
            let f = f.borrow();
            (f.slots.len() == RECORD_SLOTS).then(|| {
                f.slots.iter().all(|raw| {
                    #[allow(unsafe_code)]
                    // SAFETY: a slot in the free list is lent to no connection: nothing else
                    // reads or writes its buffers while the lock is held.
                    let (r, w) = unsafe {
                        (
                            core::slice::from_raw_parts(raw.read.as_ptr(), RECORD_BUFFER),
                            core::slice::from_raw_parts(raw.write.as_ptr(), RECORD_BUFFER),
                        )
                    };
                    r.iter().chain(w).all(|&b| b == 0)
                })
            })
        })
    }
}

/// A record slot lent to one connection: wiped and given back (a waiter woken) when
/// dropped. Dropped after its connection (a [`Tls`] drops its session first).
struct Lease<'r> {
    raw: RawSlot,
    home: &'r RecordHome,
    /// The buffers were handed out (to this lease's one session): never twice.
    lent: bool,
}

impl<'r> Lease<'r> {
    /// The slot's buffers, for the one connection that holds this lease; empty if asked
    /// again (they are handed out once).
    fn buffers(&mut self) -> (&'r mut [u8], &'r mut [u8]) {
        if core::mem::replace(&mut self.lent, true) {
            return (&mut [], &mut []);
        }
        #[allow(unsafe_code)]
        // SAFETY: the pointers are to two distinct `RECORD_BUFFER`-byte arrays of the
        // `Resources` the client borrows mutably for `'r`, and this lease is their only
        // handle (taken from the free list under its lock). They are handed out once per
        // lease (`lent`), by `open`, to the one session that owns the lease alongside
        // (`Tls`); the session is dropped before the lease (field order), and the lease
        // touches them again (to wipe) only in its drop, after the session's.
        unsafe {
            (
                core::slice::from_raw_parts_mut(self.raw.read.as_ptr(), RECORD_BUFFER),
                core::slice::from_raw_parts_mut(self.raw.write.as_ptr(), RECORD_BUFFER),
            )
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: the session that had the buffers is dropped (see `buffers`); no other
        // reference to them exists.
        unsafe {
            core::ptr::write_bytes(self.raw.read.as_ptr(), 0, RECORD_BUFFER);
            core::ptr::write_bytes(self.raw.write.as_ptr(), 0, RECORD_BUFFER);
        }
        let raw = RawSlot {
            read: self.raw.read,
            write: self.raw.write,
        };
        self.home.free.lock(|f| {
            let f = &mut *f.borrow_mut();
            let _ = f.slots.push(raw);
            f.waiters.wake();
        });
    }
}

type Session<'r, S> = embedded_tls::TlsConnection<'r, S, embedded_tls::Aes128GcmSha256>;

/// An open embedded-tls session and the record slot it runs in. The session is declared
/// first: it is dropped before the lease wipes and returns the slot.
struct Tls<'r, S: embedded_io_async::Read + embedded_io_async::Write + 'r> {
    session: Session<'r, S>,
    lease: Lease<'r>,
}

/// The TLS connections kept, each with its record slot.
type TlsPool<'r, T> = Mutex<
    CriticalSectionRawMutex,
    RefCell<Pool<Tls<'r, <T as TcpConnect>::Connection<'r>>, KEPT_CONNECTIONS>>,
>;

/// HTTPS through embedded-tls (feature `tls`) over the network stack `tcp` + `dns`, every
/// server verified against one CA (see the crate docs for what embedded-tls checks). Plain
/// `http://` goes through the same stack, kept as with [`Plain`].
///
/// Each TLS connection runs in one of the two record slots the client's
/// [`Resources`](crate::Resources) hold, and keeps it while the connection is kept for the
/// next request to its origin (as plain and MbedTLS connections are). embedded-tls does
/// not resume sessions: a new connection is a full handshake.
pub struct EmbeddedTls<'r, T: TcpConnect + 'r, D> {
    plain: Plain<'r, T, D>,
    ca: &'r [u8],
    rng: Mutex<CriticalSectionRawMutex, RefCell<&'r mut (dyn rand_core::RngCore + Send)>>,
    kept: TlsPool<'r, T>,
}

impl<'r, T: TcpConnect + 'r, D: Dns> EmbeddedTls<'r, T, D> {
    /// HTTPS over `tcp` + `dns`, servers verified against `ca` (one CA certificate, DER);
    /// each connection's seed drawn from `rng` (the chip's TRNG).
    pub fn new(
        tcp: &'r T,
        dns: &'r D,
        ca: &'r [u8],
        rng: &'r mut (dyn rand_core::RngCore + Send),
    ) -> Self {
        EmbeddedTls {
            plain: Plain::new(tcp, dns),
            ca,
            rng: Mutex::new(RefCell::new(rng)),
            kept: Mutex::new(RefCell::new(Pool::new())),
        }
    }

    /// One `https://` exchange: on a kept connection for the origin when there is one
    /// (found dead before any byte of the answer: sent again on a new one only when
    /// `safe`), otherwise on a new connection and a full handshake in a free record slot.
    #[allow(clippy::too_many_arguments)]
    async fn https(
        &self,
        policy: Policy,
        home: Records<'r>,
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
        if let Some(mut tls) = self.kept.lock(|k| k.borrow_mut().take(&to, now)) {
            let sent = over(
                &mut tls.session,
                true,
                &wired,
                rx,
                into,
                keep_headers,
                policy.wall_now,
                &mut reached,
            )
            .await;
            match sent {
                Ok(mut x) => {
                    x.connection = Connection {
                        reused: true,
                        handshake: Handshake::None,
                    };
                    self.keep(policy.keep, home, &to, tls, &x).await;
                    return Ok(x);
                }
                Err(Fault::Net(e))
                    if matches!(e.stage, Stage::Io | Stage::Tls) && !reached.answered =>
                {
                    drop(tls);
                    if !safe {
                        return Err(Fault::Net(DEAD_NOT_RESENT));
                    }
                    diag!(
                        debug,
                        "tessera: a kept TLS connection was closed by the server; sending again on a new one"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        // Every slot held by kept connections (other origins): they go, then a slot is
        // waited for (one held by another exchange comes back when it ends).
        let lease = home
            .take(|| self.kept.lock(|k| k.borrow_mut().clear()))
            .await;
        let socket = match connect(self.plain.tcp, self.plain.dns, &to).await {
            Ok(socket) => socket,
            // The stack's sockets may all be kept for other origins: they go, and the
            // connect is tried again.
            Err(e) if e.stage == Stage::Connect => {
                self.kept.lock(|k| k.borrow_mut().clear());
                self.plain.kept.lock(|k| k.borrow_mut().clear());
                connect(self.plain.tcp, self.plain.dns, &to)
                    .await
                    .map_err(Fault::Net)?
            }
            Err(e) => return Err(Fault::Net(e)),
        };
        let seed = self.rng.lock(|r| r.borrow_mut().next_u64());
        let mut tls = open(socket, server_name(&to), self.ca, seed, lease).await?;
        let mut x = over(
            &mut tls.session,
            true,
            &wired,
            rx,
            into,
            keep_headers,
            policy.wall_now,
            &mut reached,
        )
        .await?;
        x.connection = Connection {
            reused: false,
            handshake: Handshake::Full,
        };
        self.keep(policy.keep, home, &to, tls, &x).await;
        Ok(x)
    }

    /// Keeps `tls` for `to`'s origin when the answer allows it; otherwise closes it
    /// (close_notify; a failure there changes nothing, the answer is in).
    async fn keep(
        &self,
        policy: Keep,
        home: Records<'r>,
        to: &Target<'_>,
        tls: Tls<'r, T::Connection<'r>>,
        x: &Exchanged,
    ) {
        match (x.reusable, policy.idle_for(x.idle_timeout)) {
            (true, Some(idle)) => {
                let now = embassy_time::Instant::now();
                self.kept
                    .lock(|k| k.borrow_mut().put(to, tls, idle, now, policy.limit));
                home.wake();
            }
            _ => {
                let Tls { session, lease } = tls;
                let _ = session.close().await;
                drop(lease);
            }
        }
    }
}

impl<'r, T: TcpConnect + 'r, D: Dns> sealed::Exchange<'r> for EmbeddedTls<'r, T, D> {
    async fn exchange(
        &self,
        policy: Policy,
        records: Records<'r>,
        out: Outgoing<'_>,
        rx: &mut [u8],
        into: &mut [u8],
        keep_headers: bool,
        safe: bool,
    ) -> Result<Exchanged, Fault> {
        if !is_https(out.url) {
            return self
                .plain
                .plain(policy, out, rx, into, keep_headers, safe)
                .await;
        }
        let work = self.https(policy, records, out, rx, into, keep_headers, safe);
        match with_timeout(policy.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Fault::Net(TIMED_OUT)),
        }
    }

    fn close_all(&self) {
        sealed::Exchange::close_all(&self.plain);
        self.kept.lock(|k| k.borrow_mut().clear());
    }
}

/// embedded-tls's crypto for one connection: a ChaCha8 stream seeded from the client's RNG,
/// and the chain checked against the application's CA.
struct Provider {
    rng: rand_chacha::ChaCha8Rng,
    verifier:
        embedded_tls::pki::CertVerifier<embedded_tls::Aes128GcmSha256, embedded_tls::NoClock, 4096>,
}

impl embedded_tls::CryptoProvider for Provider {
    type CipherSuite = embedded_tls::Aes128GcmSha256;
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl embedded_tls::CryptoRngCore {
        &mut self.rng
    }

    fn verifier(
        &mut self,
    ) -> Result<&mut impl embedded_tls::TlsVerifier<Self::CipherSuite>, embedded_tls::TlsError>
    {
        Ok(&mut self.verifier)
    }
}

/// A TLS 1.3 session over `socket` with `host` (SNI and the certificate's name), verified
/// against `ca`, in `lease`'s record slot; the handshake's failures are classified (stage
/// `tls`).
async fn open<'r, S>(
    socket: S,
    host: &str,
    ca: &'r [u8],
    seed: u64,
    mut lease: Lease<'r>,
) -> Result<Tls<'r, S>, Fault>
where
    S: embedded_io_async::Read + embedded_io_async::Write + 'r,
{
    use rand_core_06::SeedableRng;
    let config = embedded_tls::TlsConfig::new()
        .with_server_name(host)
        .with_ca(embedded_tls::Certificate::X509(ca));
    let (read, write) = lease.buffers();
    let mut tls = Tls {
        session: embedded_tls::TlsConnection::new(socket, read, write),
        lease,
    };
    let provider = Provider {
        rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        verifier: embedded_tls::pki::CertVerifier::new(),
    };
    tls.session
        .open(embedded_tls::TlsContext::new(&config, provider))
        .await
        .map_err(|e| {
            Fault::Net(tessera_core::TransportError::new(
                Stage::Tls,
                crate::error::tls_detail(&e),
            ))
        })?;
    Ok(tls)
}
