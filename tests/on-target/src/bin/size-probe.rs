//! Size probe: links the codecs and the lifecycle (chosen by features) at opt-level "s" with
//! LTO, so `scripts/footprint` can measure tessera-core's share of flash. Its panic handler
//! calls a function that does not exist: if the optimiser leaves any panic path in the
//! parse and lifecycle code, the link fails.
#![no_std]
#![no_main]

use core::hint::black_box;

#[cfg(target_arch = "arm")]
use cortex_m_rt::entry;
#[cfg(target_arch = "riscv32")]
use riscv_rt::entry;
#[allow(unused_imports)]
use tessera_core::{Credentials, Grant, Provider};

/// Input the optimiser cannot see through.
static BODY: [u8; 1400] = [0; 1400];

#[entry]
fn main() -> ! {
    let body: &[u8] = black_box(&BODY);
    let status = black_box(200u16);
    if let Ok(creds) = Credentials::new(black_box("id"), black_box("secret")) {
        #[cfg(feature = "shogun")]
        {
            let p = tessera_core::Shogun::with_base_url(black_box("https://a"));
            codec(&p, &creds, status, body);
            let mut buf = [0u8; 64];
            black_box(p.validate_request(black_box("t"), &mut buf).is_ok());
            if let Ok(r) = p.parse_validate(status, body) {
                black_box(tessera_core::TokenInfo::default().store(&r).is_ok());
            }
        }
        #[cfg(feature = "apimw")]
        codec(
            &tessera_core::Apimw::with_base_url(black_box("https://a")),
            &creds,
            status,
            body,
        );
        #[cfg(feature = "setu")]
        codec(
            &tessera_core::Setu::with_base_url(black_box("https://a")),
            &creds,
            status,
            body,
        );
        #[cfg(feature = "stonex")]
        codec(
            &tessera_core::StoneX::with_base_url(black_box("https://a")),
            &creds,
            status,
            body,
        );
        #[cfg(feature = "oauth2")]
        codec(
            &tessera_core::OAuth2::new(black_box("https://a")).with_scope("s"),
            &creds,
            status,
            body,
        );
        #[cfg(feature = "lifecycle")]
        lifecycle::run(creds, status, body);
        #[cfg(feature = "snapshot")]
        if let Ok(creds) = Credentials::new(black_box("id"), black_box("secret")) {
            snapshot::run(creds, status, body);
        }
    }
    // A panic path the optimiser cannot remove: `scripts/footprint` checks that this build
    // fails to link, so a broken panic-free check cannot pass silently.
    #[cfg(feature = "panic-canary")]
    black_box(body[black_box(usize::MAX)]);
    #[allow(clippy::empty_loop)]
    loop {}
}

#[allow(dead_code)]
#[inline(never)]
fn codec<P: Provider>(p: &P, creds: &Credentials, status: u16, body: &[u8]) {
    let mut buf = [0u8; 512];
    if let Ok(r) = p.token_request(creds, &mut buf) {
        // What `Session::request` does with every provider's request: the strict URL check.
        black_box(r.check_security(black_box(false)).is_ok());
        black_box(r.body);
    }
    let mut grant: Grant = Grant::new();
    if let Ok(r) = p.parse_token(status, body) {
        black_box(grant.store(&r).is_ok());
    }
    black_box(&grant);
}

#[cfg(feature = "lifecycle")]
mod lifecycle {
    use core::hint::black_box;

    use tessera_core::session::{Cause, Config, Poll, Session};
    use tessera_core::{
        Credentials, DetailRef, Error, GrantRef, Instant, Provider, Request, ResponseError, Stage,
        TransportError,
    };

    /// A provider with no codec, so the lifecycle is measured on its own.
    struct Null;

    impl Provider for Null {
        fn token_request<'a>(
            &'a self,
            _: &Credentials,
            _: &'a mut [u8],
        ) -> Result<Request<'a>, Error> {
            Err(Error::Rejected)
        }

        fn parse_token<'b>(
            &self,
            status: u16,
            _: &'b [u8],
        ) -> Result<GrantRef<'b>, ResponseError<'b>> {
            Err(ResponseError {
                status,
                error: Error::Rejected,
                detail: DetailRef::default(),
            })
        }
    }

    #[inline(never)]
    pub fn run(creds: Credentials, status: u16, body: &[u8]) {
        let mut s: Session<Null> = Session::new(Null, creds, Config::default(), 1);
        let mut now = black_box(0u64);
        for _ in 0..black_box(3) {
            now += black_box(1000);
            let ticket = match s.poll(Instant::from_millis(now)) {
                Poll::Ready(b) => {
                    let id = b.id();
                    black_box(s.reject(id));
                    continue;
                }
                Poll::Refresh(_, t) | Poll::Fetch(t) => t,
                _ => continue,
            };
            let mut buf = [0u8; 64];
            black_box(s.request(&ticket, &mut buf).is_ok());
            if black_box(now).is_multiple_of(2) {
                black_box(s.on_response(ticket, Instant::from_millis(now), status, None, body));
            } else {
                let reset = TransportError::new(Stage::Io, "reset");
                let cause = Cause::Transport(reset);
                black_box(s.on_failure(ticket, Instant::from_millis(now), cause));
            }
        }
        black_box(s.failure().is_some());
    }
}

/// Snapshot write and restore (with the OAuth 2.0 codec a restore reads the grant through).
#[cfg(feature = "snapshot")]
mod snapshot {
    use core::hint::black_box;
    use core::time::Duration;

    use tessera_core::session::{Config, Poll, Session};
    use tessera_core::snapshot::{Key, WallTime};
    use tessera_core::{Credentials, Instant, OAuth2};

    #[inline(never)]
    pub fn run(creds: Credentials, status: u16, body: &[u8]) {
        let idp = OAuth2::new(black_box("https://a"));
        let mut s: Session<OAuth2<'_>, 512, 256> = Session::new(idp, creds, Config::default(), 1);
        let now = Instant::from_millis(black_box(0));
        if let Poll::Fetch(t) = s.poll(now) {
            black_box(s.on_response(t, now, status, None, body));
        }
        let wall = WallTime::new(black_box(1_700_000_000_000), Duration::from_secs(2));
        let mut buf = [0u8; 700];
        let len = match s.snapshot(now, wall, Key::Credentials, &mut buf) {
            Ok(snap) => snap.len(),
            Err(_) => 0,
        };
        if let Some(bytes) = buf.get_mut(..black_box(len)) {
            black_box(s.restore(now, Some(wall), Key::Credentials, bytes).is_ok());
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    extern "Rust" {
        /// Deliberately undefined: referencing it fails the link.
        fn tessera_core_left_a_panic_path_in_the_firmware() -> !;
    }
    // SAFETY: never called; the link fails first.
    unsafe { tessera_core_left_a_panic_path_in_the_firmware() }
}
