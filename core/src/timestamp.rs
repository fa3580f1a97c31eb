//! ISO 8601 / RFC 3339 date-times to Unix seconds, for Shogun's validate endpoint.

use crate::json::Problem;

/// Parses `YYYY-MM-DDTHH:MM[:SS[.fraction]][zone]` into Unix seconds (UTC).
///
/// The zone is `Z`, `±hh:mm`, `±hhmm` or `±hh`; no zone means UTC (Shogun's timestamps carry
/// none). `t`/`z` and a space for `T` are accepted; fractions are truncated; a leap second
/// (`:60`) counts as the next second. Calendar dates are checked (no 30 February).
///
/// ```
/// use tessera_core::timestamp::parse;
/// assert_eq!(parse("2024-01-15T10:30:00"), Ok(1_705_314_600));
/// assert_eq!(parse("2024-01-15T12:30:00.123+02:00"), Ok(1_705_314_600));
/// assert!(parse("2024-02-30T00:00:00Z").is_err());
/// ```
pub fn parse(s: &str) -> Result<i64, Problem> {
    let mut p = Parser {
        b: s.as_bytes(),
        i: 0,
    };
    let year = p.num(4)?;
    p.lit(b'-')?;
    let month = p.num(2)?;
    p.lit(b'-')?;
    let day = p.num(2)?;
    match p.next() {
        Some(b'T' | b't' | b' ') => {}
        _ => return Err(Problem::Syntax),
    }
    let hour = p.num(2)?;
    p.lit(b':')?;
    let minute = p.num(2)?;
    let mut second = 0;
    if p.peek() == Some(b':') {
        p.i += 1;
        second = p.num(2)?;
        if let Some(b'.' | b',') = p.peek() {
            p.i += 1;
            if p.digits() == 0 {
                return Err(Problem::Syntax);
            }
        }
    }
    let offset = match p.next() {
        None | Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let h = p.num(2)?;
            let m = match p.peek() {
                Some(b':') => {
                    p.i += 1;
                    p.num(2)?
                }
                Some(_) => p.num(2)?,
                None => 0,
            };
            if h > 23 || m > 59 {
                return Err(Problem::Range);
            }
            let secs = h * 3600 + m * 60;
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        Some(_) => return Err(Problem::Syntax),
    };
    if p.peek().is_some() {
        return Err(Problem::Syntax);
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(Problem::Range);
    }
    let days = i64::from(days_from_civil(year, month, day));
    let secs = hour * 3600 + minute * 60 + second - offset;
    Ok(days * 86_400 + i64::from(secs))
}

/// Parses an HTTP date (RFC 9110 IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) into Unix
/// seconds, as a `Retry-After` header may carry. The obsolete RFC 850 and asctime forms are
/// refused (servers must not send them).
///
/// ```
/// use tessera_core::timestamp::parse_http_date;
/// assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Ok(784_111_777));
/// assert!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT").is_err());
/// ```
pub fn parse_http_date(s: &str) -> Result<i64, Problem> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let b = s.as_bytes();
    // "Sun, " then the date: 29 bytes in all.
    if b.len() != 29 || b.get(3..5) != Some(b", ") || b.get(25..) != Some(b" GMT") {
        return Err(Problem::Syntax);
    }
    let mut p = Parser { b, i: 5 };
    let day = p.num(2)?;
    p.lit(b' ')?;
    let month = b
        .get(8..11)
        .and_then(|m| MONTHS.iter().position(|want| want.as_slice() == m))
        .ok_or(Problem::Syntax)?;
    p.i = 11;
    p.lit(b' ')?;
    let year = p.num(4)?;
    p.lit(b' ')?;
    let hour = p.num(2)?;
    p.lit(b':')?;
    let minute = p.num(2)?;
    p.lit(b':')?;
    let second = p.num(2)?;
    let month = i32::try_from(month).map_err(|_| Problem::Range)? + 1;
    if day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return Err(Problem::Range);
    }
    let days = i64::from(days_from_civil(year, month, day));
    Ok(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        if c.is_some() {
            self.i += 1;
        }
        c
    }

    fn lit(&mut self, want: u8) -> Result<(), Problem> {
        if self.next() == Some(want) {
            Ok(())
        } else {
            Err(Problem::Syntax)
        }
    }

    /// Skips ASCII digits, returning how many.
    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// Exactly `n` ASCII digits (n ≤ 4, so the value fits easily).
    fn num(&mut self, n: usize) -> Result<i32, Problem> {
        let digits = self.b.get(self.i..self.i + n).ok_or(Problem::Syntax)?;
        let mut v = 0i32;
        for &d in digits {
            if !d.is_ascii_digit() {
                return Err(Problem::Syntax);
            }
            v = v * 10 + i32::from(d - b'0');
        }
        self.i += n;
        Ok(v)
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: i32) -> i32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), in 32-bit
/// arithmetic: years are four digits, and a Cortex-M0 has no 64-bit divide.
fn days_from_civil(y: i32, m: i32, d: i32) -> i32 {
    // Shift the year to start in March, and by 400 so it is never negative (year 0000).
    let y = if m <= 2 { y - 1 } else { y } + 400;
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era - 1) * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shogun_examples_read_as_utc() {
        assert_eq!(parse("2024-01-15T10:30:00"), Ok(1_705_314_600));
        assert_eq!(parse("2024-01-16T10:30:00"), Ok(1_705_314_600 + 86_400));
    }

    #[test]
    fn zones_and_fractions() {
        let t = 1_705_314_600;
        assert_eq!(parse("2024-01-15T10:30:00Z"), Ok(t));
        assert_eq!(parse("2024-01-15t10:30:00z"), Ok(t));
        assert_eq!(parse("2024-01-15 10:30:00"), Ok(t));
        assert_eq!(parse("2024-01-15T10:30:00.999999Z"), Ok(t));
        assert_eq!(parse("2024-01-15T16:00:00+05:30"), Ok(t));
        assert_eq!(parse("2024-01-15T16:00:00+0530"), Ok(t));
        assert_eq!(parse("2024-01-15T05:30:00-05"), Ok(t));
        assert_eq!(parse("2024-01-15T10:30"), Ok(t));
    }

    #[test]
    fn epochs_and_leap_years() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse("1969-12-31T23:59:59Z"), Ok(-1));
        assert_eq!(parse("2000-02-29T00:00:00Z"), Ok(951_782_400));
        assert_eq!(parse("2038-01-19T03:14:08Z"), Ok(1 << 31));
        assert_eq!(parse("2016-12-31T23:59:60Z"), Ok(1_483_228_800));
        assert_eq!(parse("9999-12-31T23:59:59Z"), Ok(253_402_300_799));
        assert_eq!(parse("0000-01-01T00:00:00Z"), Ok(-62_167_219_200));
        assert_eq!(parse("0000-03-01T00:00:00Z"), Ok(-62_162_035_200));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "2024",
            "2024-01-15",
            "2024-01-15T",
            "2024-1-15T10:30:00",
            "2024-01-15T10:30:00Q",
            "2024-01-15T10:30:00.",
            "2024-01-15T10:30:00+5",
            "2024-01-15T10:30:00+05:3",
            "２０24-01-15T10:30:00",
            "2024-01-15T10:30:00Zjunk",
        ] {
            assert_eq!(parse(bad), Err(Problem::Syntax), "{bad:?}");
        }
        for bad in [
            "2023-02-29T00:00:00",
            "2024-13-01T00:00:00",
            "2024-00-01T00:00:00",
            "2024-04-31T00:00:00",
            "2024-01-15T24:00:00",
            "2024-01-15T10:60:00",
            "2024-01-15T10:30:61",
            "2024-01-15T10:30:00+24:00",
        ] {
            assert_eq!(parse(bad), Err(Problem::Range), "{bad:?}");
        }
    }
}
