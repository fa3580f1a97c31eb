//! The wall clock MbedTLS checks certificate dates against (feature `mbedtls-dates`).

use core::fmt;

use mbedtls_rs::sys;

/// The wall clock MbedTLS checks certificate dates against (feature `mbedtls-dates`): the
/// application sets the time (SNTP, an RTC) with [`WallClock::set_unix_time`]; it then
/// advances with `embassy_time`. Until it is set, every handshake fails closed.
///
/// ```
/// use tessera_embassy::mbedtls::{use_wall_clock, WallClock};
/// static CLOCK: WallClock = WallClock::new();
/// use_wall_clock(&CLOCK); // once, at start-up: handshakes fail closed from here
/// # let sntp_seconds = 1_767_225_600;
/// CLOCK.set_unix_time(sntp_seconds); // when SNTP (or the RTC) gives the time
/// assert!(CLOCK.unix_time().is_some_and(|t| t >= sntp_seconds));
/// ```
#[cfg(feature = "mbedtls-dates")]
pub struct WallClock {
    /// Unix seconds at an embassy instant; `None` until set.
    at: critical_section::Mutex<core::cell::Cell<Option<(u64, embassy_time::Instant)>>>,
}

#[cfg(feature = "mbedtls-dates")]
impl WallClock {
    /// A clock whose time is not known yet.
    pub const fn new() -> Self {
        WallClock {
            at: critical_section::Mutex::new(core::cell::Cell::new(None)),
        }
    }

    /// The time now is `unix_seconds` (UTC).
    pub fn set_unix_time(&self, unix_seconds: u64) {
        let now = embassy_time::Instant::now();
        critical_section::with(|cs| self.at.borrow(cs).set(Some((unix_seconds, now))));
    }

    /// Forgets the time: handshakes fail closed until it is set again.
    pub fn forget(&self) {
        critical_section::with(|cs| self.at.borrow(cs).set(None));
    }

    /// Unix seconds now, if known.
    pub fn unix_time(&self) -> Option<u64> {
        let (base, at) = critical_section::with(|cs| self.at.borrow(cs).get())?;
        base.checked_add(
            embassy_time::Instant::now()
                .saturating_duration_since(at)
                .as_secs(),
        )
    }
}

#[cfg(feature = "mbedtls-dates")]
impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "mbedtls-dates")]
impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WallClock")
            .field("unix_time", &self.unix_time())
            .finish()
    }
}

#[cfg(feature = "mbedtls-dates")]
impl sys::hook::wall_clock::MbedtlsWallClock for WallClock {
    fn instant(&self) -> Option<sys::tm> {
        self.unix_time().and_then(tm_from_unix)
    }
}

/// Installs `clock` as the wall clock every MbedTLS certificate check in the program reads
/// (feature `mbedtls-dates`). Call it once at start-up, before the first connection; until
/// it is called, or while the clock returns no time, every handshake fails closed.
#[cfg(feature = "mbedtls-dates")]
pub fn use_wall_clock(clock: &'static (dyn sys::hook::wall_clock::MbedtlsWallClock + Send + Sync)) {
    // SAFETY: the hook is a `&'static` clock that is `Send + Sync`, stored under a critical
    // section by mbedtls-rs-sys; replacing it between handshakes only changes which clock
    // the next date check reads. The function is `unsafe` for that ordering contract alone.
    #[allow(unsafe_code)]
    unsafe {
        sys::hook::wall_clock::hook_wall_clock(Some(clock));
    }
}

/// Unix seconds as a UTC `struct tm` (days to civil date, proleptic Gregorian); `None`
/// past what `tm_year` holds.
#[cfg(feature = "mbedtls-dates")]
fn tm_from_unix(secs: u64) -> Option<sys::tm> {
    let days = i64::try_from(secs / 86_400).ok()?;
    let rem = (secs % 86_400) as i32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let mday = doy - (153 * mp + 2) / 5 + 1;
    let mon = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(mon <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const CUM: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = CUM[(mon - 1) as usize] + mday - 1 + i64::from(leap && mon > 2);
    Some(sys::tm {
        tm_sec: rem % 60,
        tm_min: (rem / 60) % 60,
        tm_hour: rem / 3600,
        tm_mday: mday as i32,
        tm_mon: mon as i32 - 1,
        tm_year: i32::try_from(year - 1900).ok()?,
        tm_wday: (days + 4).rem_euclid(7) as i32,
        tm_yday: yday as i32,
        tm_isdst: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_becomes_a_civil_date() {
        // 2024-02-29T12:34:56Z, a Thursday, day 59 of a leap year.
        let tm = tm_from_unix(1_709_210_096).unwrap();
        assert_eq!(
            (tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec),
            (124, 1, 29, 12, 34, 56)
        );
        assert_eq!((tm.tm_wday, tm.tm_yday), (4, 59));
        let epoch = tm_from_unix(0).unwrap();
        assert_eq!(
            (epoch.tm_year, epoch.tm_mon, epoch.tm_mday, epoch.tm_wday),
            (70, 0, 1, 4)
        );
    }
}
