//! IPv4 and IPv6 literals, read exactly as `core::net`'s `FromStr` reads them (checked
//! against it in the tests), without its panic paths: `core::net`'s parser keeps bounds
//! checks the optimiser cannot remove, so every firmware whose URL check reached it linked a
//! panic path (`scripts/footprint`'s undefined panic handler found them).

use core::net::{Ipv4Addr, Ipv6Addr};

/// A number at `s[at..]`: 1 to `max_digits` digits of `radix`, at most `max`; a leading
/// zero only when `zero_prefix` or alone. The value and where it ends.
fn number(
    s: &[u8],
    at: usize,
    radix: u32,
    max_digits: usize,
    zero_prefix: bool,
    max: u32,
) -> Option<(u32, usize)> {
    let mut value = 0u32;
    let mut digits = 0;
    let mut i = at;
    while let Some(d) = s.get(i).and_then(|&b| char::from(b).to_digit(radix)) {
        digits += 1;
        if digits > max_digits {
            return None;
        }
        // At most 4 hex or 3 decimal digits: no overflow.
        value = value * radix + d;
        i += 1;
    }
    let leading_zero = !zero_prefix && digits > 1 && s.get(at) == Some(&b'0');
    (digits > 0 && value <= max && !leading_zero).then_some((value, i))
}

/// A dotted quad at `s[at..]`, and where it ends.
fn v4_at(s: &[u8], at: usize) -> Option<([u8; 4], usize)> {
    let mut octets = [0u8; 4];
    let mut i = at;
    for (k, slot) in octets.iter_mut().enumerate() {
        if k > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let (v, next) = number(s, i, 10, 3, false, 255)?;
        *slot = v as u8;
        i = next;
    }
    Some((octets, i))
}

/// `a.b.c.d`, each 0–255 in decimal without leading zeros.
pub(crate) fn ipv4(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    let (octets, end) = v4_at(b, 0)?;
    (end == b.len()).then(|| Ipv4Addr::from(octets))
}

/// Colon-separated groups at `s[at..]` into `out` (a dotted quad may fill the last two):
/// how many were read, whether a dotted quad ended them, and where they end.
fn groups(s: &[u8], at: usize, out: &mut [u16]) -> (usize, bool, usize) {
    let limit = out.len();
    let mut i = at;
    let mut k = 0;
    while k < limit {
        let start = match k {
            0 => i,
            _ if s.get(i) == Some(&b':') => i + 1,
            _ => return (k, false, i),
        };
        if k + 1 < limit {
            if let Some(([a, b, c, d], next)) = v4_at(s, start) {
                if let Some([hi, lo]) = out.get_mut(k..k + 2) {
                    *hi = u16::from_be_bytes([a, b]);
                    *lo = u16::from_be_bytes([c, d]);
                }
                return (k + 2, true, next);
            }
        }
        match number(s, start, 16, 4, true, 0xffff) {
            Some((v, next)) => {
                if let Some(slot) = out.get_mut(k) {
                    *slot = v as u16;
                }
                i = next;
                k += 1;
            }
            None => return (k, false, i),
        }
    }
    (limit, false, i)
}

/// RFC 4291 text: eight groups of 1–4 hex digits, one `::` for a run of zero groups, a
/// dotted quad for the last 32 bits; no zone.
pub(crate) fn ipv6(s: &str) -> Option<Ipv6Addr> {
    let b = s.as_bytes();
    let mut head = [0u16; 8];
    let (head_len, head_v4, end) = groups(b, 0, &mut head);
    if head_len == 8 {
        return (end == b.len()).then(|| Ipv6Addr::from(head));
    }
    if head_v4 || b.get(end..end + 2) != Some(b"::") {
        return None;
    }
    // `::` stands for one zero group at least: seven groups at most follow it.
    let mut tail = [0u16; 7];
    let limit = 7 - head_len;
    let (tail_len, _, end) = groups(b, end + 2, tail.get_mut(..limit)?);
    if end != b.len() {
        return None;
    }
    let skip = 8usize.saturating_sub(tail_len);
    head.iter_mut()
        .skip(skip)
        .zip(tail.iter())
        .for_each(|(d, t)| *d = *t);
    Some(Ipv6Addr::from(head))
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use proptest::prelude::*;
    use std::string::{String, ToString};

    fn same(s: &str) {
        assert_eq!(ipv4(s), s.parse::<Ipv4Addr>().ok(), "ipv4 {s:?}");
        assert_eq!(ipv6(s), s.parse::<Ipv6Addr>().ok(), "ipv6 {s:?}");
    }

    #[test]
    fn reads_what_core_net_reads() {
        for s in [
            "",
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "256.0.0.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.",
            "1.2.3.4.5",
            "1..2.3",
            "0x7f.0.0.1",
            "1.2.3.04",
            "1000.1.1.1",
            "::",
            "::1",
            "1::",
            "1::2",
            "::ffff:1.2.3.4",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "1.2.3.4::",
            "1:2:3:4:5:6:7::",
            "::1:2:3:4:5:6:7",
            "::1:2:3:4:5:6:7:8",
            "1:::2",
            ":1::2",
            "1::2:",
            "12345::",
            "fe80::1%eth0",
            "FFFF::",
            "0:0:0:0:0:0:0:0",
            "::1.2.3.4",
            "1::2::3",
            "::0.0.0.0",
            "1:2:3:4:5::1.2.3.4",
            "1:2:3:4:5:6::1.2.3.4",
            "[::1]",
            "0000:00::",
            "00000::",
        ] {
            same(s);
        }
    }

    proptest! {
        #[test]
        fn random_text_reads_as_core_net_reads_it(s in "[0-9a-fA-F:.x%]{0,45}") {
            same(&s);
        }

        #[test]
        fn every_address_written_reads_back(v6: u128, v4: u32, cut in 0usize..40) {
            for s in [
                Ipv6Addr::from(v6).to_string(),
                Ipv4Addr::from(v4).to_string(),
                std::format!("::ffff:{}", Ipv4Addr::from(v4)),
            ] {
                same(&s);
                let cut: String = s.chars().take(cut).collect();
                same(&cut);
            }
        }
    }
}
