//! The heap one MbedTLS connection takes: a whole token fetch (resolve, connect, the roots
//! parsed, the handshake with an RSA-2048 chain with an intermediate, the request, the
//! response, close_notify) through a tessera-embassy client, with MbedTLS's calloc/free
//! rerouted to a counting allocator (mbedtls-rs-sys always builds with
//! `MBEDTLS_PLATFORM_MEMORY`, so every MbedTLS and mbedtls-rs allocation goes through it).
//! The same MbedTLS configuration as the firmware (the lean algorithm set, 16 KiB IN and
//! 4 KiB OUT record buffers). Prints the peak; the aim is at most 48 KiB per connection.
//!
//! `cargo test -p tessera-embassy --features mbedtls-dates --test mbedtls_heap -- --nocapture`

mod mbedtls_common;

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use mbedtls_common::{client, roots};
use tessera_core::ProviderKind;
use tessera_embassy::mbedtls::mbedtls_rs::sys;
use tessera_sandbox::pki::{matrix, Versions, HOST};
use tessera_sandbox::{Endpoint, Sandbox};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
const HEADER: usize = 16;

unsafe extern "C" fn counting_calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        return std::ptr::null_mut();
    };
    let Ok(layout) = std::alloc::Layout::from_size_align(total + HEADER, HEADER) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the layout is not zero-sized (HEADER > 0).
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return p.cast();
    }
    // SAFETY: p is valid for HEADER + total bytes, aligned to 16.
    unsafe { (p as *mut usize).write(total) };
    let now = CURRENT.fetch_add(total, Ordering::SeqCst) + total;
    PEAK.fetch_max(now, Ordering::SeqCst);
    // SAFETY: within the allocation.
    unsafe { p.add(HEADER).cast() }
}

unsafe extern "C" fn counting_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: p came from counting_calloc, HEADER bytes into its allocation.
    unsafe {
        let base = (p as *mut u8).sub(HEADER);
        let total = (base as *mut usize).read();
        CURRENT.fetch_sub(total, Ordering::SeqCst);
        std::alloc::dealloc(
            base,
            std::alloc::Layout::from_size_align_unchecked(total + HEADER, HEADER),
        );
    }
}

/// One token fetch over `versions` with the matrix's first (RSA-2048) chain: (peak bytes
/// above what was allocated before, bytes the kept connection (and a TLS 1.2 saved session)
/// hold after it, bytes left allocated once the client closed its connections).
fn one_fetch(versions: Versions, chain_index: usize) -> (usize, isize, isize) {
    let m = matrix();
    let case = &m.cases[chain_index];
    let sb = Sandbox::start_tls_with(&case.chain, versions).unwrap();
    let c = client(&sb, HOST, roots(&m.roots_pem));
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let ok = async_io::block_on(async {
        let mut out = [0u8; 2048];
        c.token(&mut out).await.map(|_| ())
    });
    let peak = PEAK.load(Ordering::SeqCst) - base;
    let kept = CURRENT.load(Ordering::SeqCst) as isize - base as isize;
    c.close_connections();
    let left = CURRENT.load(Ordering::SeqCst) as isize - base as isize;
    ok.unwrap_or_else(|e| panic!("{}: {e}", case.name));
    assert_eq!(sb.count(Endpoint::Token(ProviderKind::OAuth2)), 1);
    (peak, kept, left)
}

#[test]
fn one_rsa_2048_handshake_peaks_under_48_kib() {
    // SAFETY: installed before the first MbedTLS call of this test binary (its only test),
    // and both functions keep MbedTLS's calloc/free contract.
    unsafe { sys::mbedtls_platform_set_calloc_free(Some(counting_calloc), Some(counting_free)) };
    #[cfg(feature = "mbedtls-dates")]
    {
        static CLOCK: tessera_embassy::mbedtls::WallClock =
            tessera_embassy::mbedtls::WallClock::new();
        tessera_embassy::mbedtls::use_wall_clock(&CLOCK);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        CLOCK.set_unix_time(now.as_secs());
    }
    println!(
        "MbedTLS record buffers: IN {} B, OUT {} B; roots: 3 (RSA-2048, P-256, RSA-4096), parsed per connection",
        sys::MBEDTLS_SSL_IN_CONTENT_LEN,
        sys::MBEDTLS_SSL_OUT_CONTENT_LEN
    );
    let mut worst = 0;
    for (label, versions, index) in [
        ("RSA-2048 + intermediate, TLS 1.3", Versions::Tls13, 1),
        ("RSA-2048 + intermediate, TLS 1.2", Versions::Tls12, 0),
    ] {
        let (peak, kept, left) = one_fetch(versions, index);
        println!(
            "{label}: peak heap {peak} B ({:.1} KiB), held by the kept connection {kept} B ({:.1} KiB), left after close_connections {left} B",
            peak as f64 / 1024.0,
            kept as f64 / 1024.0
        );
        assert_eq!(
            left, 0,
            "{label}: nothing stays allocated once the connections are closed"
        );
        worst = worst.max(peak);
    }
    // For the record: the largest chain of the matrix (not held to the aim).
    let (peak, _, _) = one_fetch(Versions::Tls13, 4);
    println!(
        "RSA-4096 + three intermediates, TLS 1.3: peak heap {peak} B ({:.1} KiB)",
        peak as f64 / 1024.0
    );
    assert!(worst <= 48 * 1024, "peak {worst} B is over the 48 KiB aim");
}
