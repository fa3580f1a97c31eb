//! The lifetime a JWT states about itself: `exp - iat` from its payload.
//!
//! Envelopes can overstate a token's life (Setu's example says `expiresIn: 1800` for a token
//! whose claims say 300 s), so the grant trusts the smaller of the two. `exp - iat` is a
//! difference of two server timestamps: no device clock is involved.
//!
//! The reader streams: it base64url-decodes the payload segment into a 48-byte block and scans
//! the claims JSON block by block (jumping over string contents with `memchr`), with a few
//! words of state, so it costs the same stack for a 300-byte token as for an 8 KiB one. It
//! stops decoding once it has the first top-level `iat` and `exp`, and still checks that the
//! token is three dot-separated segments. The signature is not checked (the client holds no
//! key and does not need one): the claims are used only to expire a token *earlier*.

use memchr::{memchr, memchr2, memchr_iter};

use crate::json::JsonStr;

/// `exp - iat` in seconds when `token` is a JWS compact JWT whose payload has numeric `iat`
/// and `exp` at top level; `None` otherwise (opaque token, JWE, missing or non-numeric
/// claims, bad encoding). A token that expires before it was issued has lifetime 0.
///
/// ```
/// // {"iat":1000,"exp":1300}
/// let jwt = "eyJhbGciOiJub25lIn0.eyJpYXQiOjEwMDAsImV4cCI6MTMwMH0.sig";
/// assert_eq!(tessera_core::jwt::lifetime(jwt), Some(300));
/// assert_eq!(tessera_core::jwt::lifetime("opaque-token"), None);
/// ```
pub fn lifetime(token: &str) -> Option<u64> {
    let mut r = Reader::default();
    r.feed(token.as_bytes());
    r.finish()
}

/// [`lifetime`] of a token still in its JSON form (decoding escapes on the fly).
pub fn lifetime_json(token: &JsonStr<'_>) -> Option<u64> {
    let mut r = Reader::default();
    let complete = token.chunks(|c| {
        r.feed(c.as_bytes());
        !r.failed
    });
    match complete {
        Ok(true) => r.finish(),
        _ => None,
    }
}

/// Base64 digit values (standard and URL alphabets); `0xFF` for anything else.
// Evaluated at compile time: an index out of range fails the build, it cannot panic.
#[allow(clippy::indexing_slicing)]
const DECODE: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'-' as usize] = 62;
    t[b'+' as usize] = 62;
    t[b'_' as usize] = 63;
    t[b'/' as usize] = 63;
    t
};

const BLOCK: usize = 48;

struct Reader {
    dots: usize,
    failed: bool,
    /// Base64 bit accumulator.
    acc: u32,
    bits: u32,
    padded: bool,
    block: [u8; BLOCK],
    len: usize,
    claims: Claims,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            dots: 0,
            failed: false,
            acc: 0,
            bits: 0,
            padded: false,
            block: [0; BLOCK],
            len: 0,
            claims: Claims::default(),
        }
    }
}

impl Reader {
    fn feed(&mut self, mut text: &[u8]) {
        while !text.is_empty() && !self.failed {
            if self.dots == 0 {
                let Some(i) = memchr(b'.', text) else { return };
                self.dots = 1;
                text = text.get(i + 1..).unwrap_or_default();
            } else if self.dots == 1 && !self.claims.settled() {
                let end = memchr(b'.', text).unwrap_or(text.len());
                let (payload, rest) = text.split_at(end);
                self.decode(payload);
                match rest.split_first() {
                    Some((_, after)) => {
                        self.flush();
                        self.dots = 2;
                        text = after;
                    }
                    None => return,
                }
            } else {
                // Past the claims: only count the remaining segment separators.
                self.dots = self.dots.saturating_add(memchr_iter(b'.', text).count());
                return;
            }
        }
    }

    fn decode(&mut self, mut chars: &[u8]) {
        loop {
            if self.bits == 0 && !self.padded {
                chars = self.decode_quads(chars);
                if self.claims.settled() {
                    return;
                }
            }
            let Some((&c, rest)) = chars.split_first() else {
                return;
            };
            chars = rest;
            if !self.decode_char(c) {
                return;
            }
        }
    }

    /// The fast path: four characters to three bytes at a time, as many quads as the block
    /// has room for in one branch-free batch, while they are plain base64 digits and the bit
    /// accumulator is empty. A batch holding anything else (padding, an invalid character)
    /// is left whole to [`Reader::decode_char`], as is a partial quad.
    fn decode_quads<'t>(&mut self, mut chars: &'t [u8]) -> &'t [u8] {
        let digit = |c: u8| DECODE.get(usize::from(c)).copied().unwrap_or(0xFF);
        loop {
            let room = BLOCK.saturating_sub(self.len) / 3;
            let n = (chars.len() / 4).min(room);
            let (Some(batch), Some(dst)) = (
                chars.get(..n * 4),
                self.block.get_mut(self.len..self.len + n * 3),
            ) else {
                return chars;
            };
            if n == 0 {
                return chars;
            }
            // Digits are below 64; 0xFF (invalid or `=`) sets the high bits of `bad`.
            let mut bad = 0u8;
            for (q, d) in batch.chunks_exact(4).zip(dst.chunks_exact_mut(3)) {
                let (&[a, b, c, e], [x, y, z]) = (q, d) else {
                    continue;
                };
                let v = [digit(a), digit(b), digit(c), digit(e)];
                bad |= v[0] | v[1] | v[2] | v[3];
                let w = u32::from(v[0]) << 18
                    | u32::from(v[1]) << 12
                    | u32::from(v[2]) << 6
                    | u32::from(v[3]);
                // Truncations keep exactly the decoded bytes.
                (*x, *y, *z) = ((w >> 16) as u8, (w >> 8) as u8, w as u8);
            }
            if bad & 0xC0 != 0 {
                return chars;
            }
            self.len += n * 3;
            chars = chars.get(n * 4..).unwrap_or_default();
            if self.len == BLOCK {
                self.flush();
                if self.claims.settled() {
                    return chars;
                }
            }
        }
    }

    /// One character; `false` once decoding should stop (failed, or the claims are read).
    fn decode_char(&mut self, c: u8) -> bool {
        {
            let v = DECODE.get(usize::from(c)).copied().unwrap_or(0xFF);
            if v == 0xFF {
                if c == b'=' {
                    self.padded = true;
                    return true;
                }
                self.failed = true;
                return false;
            }
            if self.padded {
                self.failed = true;
                return false;
            }
            self.acc = (self.acc << 6 | u32::from(v)) & 0xffff;
            self.bits += 6;
            if self.bits >= 8 {
                self.bits -= 8;
                if let Some(slot) = self.block.get_mut(self.len) {
                    // Truncation keeps exactly the decoded byte.
                    *slot = (self.acc >> self.bits) as u8;
                    self.len += 1;
                }
                if self.len == BLOCK {
                    self.flush();
                    if self.claims.settled() {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn flush(&mut self) {
        let block = self.block;
        self.claims.feed(block.get(..self.len).unwrap_or_default());
        self.len = 0;
    }

    fn finish(mut self) -> Option<u64> {
        self.flush();
        if self.failed || self.dots != 2 {
            return None;
        }
        self.claims.finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Claim {
    #[default]
    Other,
    Iat,
    Exp,
}

#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Num {
    /// No number being read for a wanted claim.
    #[default]
    Idle,
    /// After `:` of a wanted claim, before the first digit.
    Start,
    Digits,
    Fraction,
    /// Not a plain non-negative number: the claim is ignored.
    Invalid,
}

/// A tolerant scanner for top-level numeric `iat`/`exp` in a JSON object stream.
#[derive(Default)]
struct Claims {
    depth: u32,
    started: bool,
    broken: bool,
    in_string: bool,
    escape: bool,
    expect_key: bool,
    capturing_key: bool,
    key: [u8; 3],
    key_len: usize,
    claim: Claim,
    num: Num,
    value: u64,
    iat: Option<u64>,
    exp: Option<u64>,
}

impl Claims {
    /// Whether more payload cannot change the answer: both claims read, or not an object.
    fn settled(&self) -> bool {
        self.broken || (self.iat.is_some() && self.exp.is_some())
    }

    fn feed(&mut self, mut chunk: &[u8]) {
        while !self.settled() {
            if self.in_string && !self.escape {
                // Jump over string contents to the next quote or backslash, keeping what a
                // key holds (only its first 3 bytes and its length matter).
                let end = memchr2(b'"', b'\\', chunk);
                let (text, rest) = chunk.split_at(end.unwrap_or(chunk.len()));
                if self.capturing_key {
                    for (slot, &b) in self.key.iter_mut().skip(self.key_len).zip(text) {
                        *slot = b;
                    }
                    self.key_len = self.key_len.saturating_add(text.len());
                }
                if end.is_none() {
                    return;
                }
                chunk = rest;
            }
            let Some((&b, rest)) = chunk.split_first() else {
                return;
            };
            self.byte(b);
            chunk = rest;
        }
    }

    fn byte(&mut self, b: u8) {
        if self.in_string {
            self.string_byte(b);
            return;
        }
        if !self.started {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => return,
                b'{' => self.started = true,
                _ => {
                    self.broken = true;
                    return;
                }
            }
        }
        match b {
            b'"' => {
                self.end_number();
                self.in_string = true;
                if self.depth == 1 && self.expect_key {
                    self.expect_key = false;
                    self.capturing_key = true;
                    self.key_len = 0;
                }
            }
            b'{' | b'[' => {
                self.end_number();
                self.depth = self.depth.saturating_add(1);
                self.expect_key = self.depth == 1 && b == b'{';
            }
            b'}' | b']' => {
                self.end_number();
                match self.depth.checked_sub(1) {
                    Some(d) => self.depth = d,
                    None => self.broken = true,
                }
            }
            b':' if self.depth == 1 && self.claim != Claim::Other => {
                self.num = Num::Start;
                self.value = 0;
            }
            b',' => {
                self.end_number();
                if self.depth == 1 {
                    self.expect_key = true;
                    self.claim = Claim::Other;
                }
            }
            b'0'..=b'9' if self.depth == 1 => match self.num {
                Num::Start | Num::Digits => {
                    self.num = Num::Digits;
                    self.value = self
                        .value
                        .saturating_mul(10)
                        .saturating_add(u64::from(b - b'0'));
                }
                _ => {}
            },
            b'.' if self.num == Num::Digits => self.num = Num::Fraction,
            b' ' | b'\t' | b'\n' | b'\r' => {
                if matches!(self.num, Num::Digits | Num::Fraction) {
                    self.end_number();
                }
            }
            _ if self.depth == 1 && self.num != Num::Idle => self.num = Num::Invalid,
            _ => {}
        }
    }

    fn string_byte(&mut self, b: u8) {
        if self.escape {
            self.escape = false;
            // Escaped keys are not the plain `iat`/`exp` we look for.
            self.key_len = usize::MAX;
            return;
        }
        match b {
            b'\\' => self.escape = true,
            b'"' => {
                self.in_string = false;
                if self.capturing_key {
                    self.capturing_key = false;
                    self.claim = match (self.key_len, &self.key) {
                        (3, b"iat") => Claim::Iat,
                        (3, b"exp") => Claim::Exp,
                        _ => Claim::Other,
                    };
                } else if self.depth == 1 && self.num != Num::Idle {
                    // A string where a wanted number belongs.
                    self.num = Num::Invalid;
                }
            }
            _ if self.capturing_key => {
                if let Some(slot) = self.key.get_mut(self.key_len) {
                    *slot = b;
                }
                self.key_len = self.key_len.saturating_add(1);
            }
            _ => {}
        }
    }

    fn end_number(&mut self) {
        if matches!(self.num, Num::Digits | Num::Fraction) {
            match self.claim {
                Claim::Iat => self.iat = Some(self.value),
                Claim::Exp => self.exp = Some(self.value),
                Claim::Other => {}
            }
        }
        if self.num != Num::Idle {
            self.num = Num::Idle;
            self.claim = Claim::Other;
        }
    }

    fn finish(self) -> Option<u64> {
        // A number still being read when the payload ends is complete only if the object
        // closed, so unfinished claims are never taken.
        Some(self.exp?.saturating_sub(self.iat?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;

    fn b64url(s: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    fn jwt(payload: &str) -> String {
        std::format!("{}.{}.c2ln", b64url(r#"{"alg":"RS256"}"#), b64url(payload))
    }

    #[test]
    fn reads_exp_minus_iat() {
        assert_eq!(lifetime(&jwt(r#"{"iat":1000,"exp":1300}"#)), Some(300));
        assert_eq!(
            lifetime(&jwt(r#"{ "exp" : 1300 , "iat" : 1000 }"#)),
            Some(300)
        );
        assert_eq!(lifetime(&jwt(r#"{"exp":1300.9,"iat":1000.2}"#)), Some(300));
        assert_eq!(lifetime(&jwt(r#"{"iat":2000,"exp":1000}"#)), Some(0));
    }

    #[test]
    fn ignores_nested_strings_and_non_numbers() {
        let p = r#"{"a":{"iat":1,"exp":99},"s":"\"iat\":5","iat":10,"exp":70,"x":[1,"exp"]}"#;
        assert_eq!(lifetime(&jwt(p)), Some(60));
        assert_eq!(lifetime(&jwt(r#"{"iat":"10","exp":70}"#)), None);
        assert_eq!(lifetime(&jwt(r#"{"iat":-10,"exp":70}"#)), None);
        assert_eq!(lifetime(&jwt(r#"{"iat":1e3,"exp":70}"#)), None);
        assert_eq!(lifetime(&jwt(r#"{"iat":10}"#)), None);
        assert_eq!(lifetime(&jwt(r#"{"iat":10,"exp":70"#)), None);
        assert_eq!(lifetime(&jwt(r#"[{"iat":10,"exp":70}]"#)), None);
        assert_eq!(lifetime(&jwt(r#"{"iatx":10,"exp":70}"#)), None);
    }

    #[test]
    fn rejects_non_jws_shapes() {
        let good = jwt(r#"{"iat":1,"exp":2}"#);
        assert_eq!(lifetime(&std::format!("{good}.more")), None);
        assert_eq!(lifetime("abc.def"), None);
        assert_eq!(lifetime("a.b!c.d"), None);
        assert_eq!(lifetime(""), None);
    }
}
