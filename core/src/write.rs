//! Writing request bytes into caller buffers: strict JSON strings, form-urlencoding, base64.
//!
//! [`Out`] keeps counting past the end of its buffer, so a buffer that is too small yields an
//! error saying exactly how many bytes the whole request needed.

/// A bounded writer over a caller's buffer that counts what did not fit.
pub struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
    needed: usize,
}

impl<'b> Out<'b> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Out {
            buf,
            len: 0,
            needed: 0,
        }
    }

    /// Appends bytes, or only counts them once the buffer is full.
    pub fn bytes(&mut self, s: &[u8]) {
        self.needed = self.needed.saturating_add(s.len());
        if self.needed > self.buf.len() {
            return;
        }
        // `len..len + s.len()` exactly, so the optimiser sees equal lengths and
        // `copy_from_slice` (a memcpy) keeps no panic path; `scripts/footprint` links the
        // firmware with an undefined panic handler to prove it.
        let Some(end) = self.len.checked_add(s.len()) else {
            return;
        };
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            if dst.len() == s.len() {
                dst.copy_from_slice(s);
                self.len = end;
            }
        }
    }

    /// Appends one byte.
    pub fn byte(&mut self, b: u8) {
        self.bytes(&[b]);
    }

    /// Appends a string.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// Bytes the content needs so far (written or not).
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// Splits off what was written: `Ok((written, rest_of_buffer))`, or `Err(needed)`
    /// when the content did not fit.
    pub fn finish(self) -> Result<(&'b mut [u8], &'b mut [u8]), usize> {
        if self.needed > self.buf.len() {
            return Err(self.needed);
        }
        let len = self.len;
        self.buf.split_at_mut_checked(len).ok_or(self.needed)
    }
}

/// Writes `s` as a strict JSON string, quotes included. `"` and `\` are escaped, control
/// characters use `\n`-style or `\u00XX` escapes, and other text (all of Unicode) is emitted
/// as UTF-8, which RFC 8259 allows.
pub fn json_string(out: &mut Out<'_>, s: &str) {
    out.byte(b'"');
    json_escape(out, s);
    out.byte(b'"');
}

/// Writes the inside of [`json_string`]: `s` escaped, without the quotes.
pub fn json_escape(out: &mut impl ByteSink, s: &str) {
    let mut rest = s.as_bytes();
    while let Some(i) = first_special(rest) {
        let (run, tail) = rest.split_at_checked(i).unwrap_or((rest, &[]));
        out.put(run);
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        match b {
            b'"' => out.put(b"\\\""),
            b'\\' => out.put(b"\\\\"),
            b'\n' => out.put(b"\\n"),
            b'\r' => out.put(b"\\r"),
            b'\t' => out.put(b"\\t"),
            0x08 => out.put(b"\\b"),
            0x0c => out.put(b"\\f"),
            _ => out.put(&[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b)]),
        }
        rest = tail;
    }
    out.put(rest);
}

/// Where the first byte a JSON string must escape is: 16-byte blocks are tested whole with
/// no early exit inside one (so they vectorise), and only the block holding one is searched.
fn first_special(s: &[u8]) -> Option<usize> {
    let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut clean = 0;
    let mut blocks = s.chunks_exact(16);
    for block in blocks.by_ref() {
        if block.iter().fold(false, |found, &b| found | special(b)) {
            break;
        }
        clean += 16;
    }
    let i = s.get(clean..)?.iter().position(|&b| special(b))?;
    Some(clean + i)
}

/// The uppercase hex digit of the low nibble of `n`.
const fn hex(n: u8) -> u8 {
    match n & 0xf {
        d @ 0..=9 => b'0' + d,
        d => b'A' + d - 10,
    }
}

/// Writes `s` form-urlencoded (WHATWG `application/x-www-form-urlencoded`): ASCII
/// alphanumerics and `*-._` stay, space becomes `+`, every other byte becomes `%XX`.
pub fn form_encode(out: &mut impl ByteSink, s: &str) {
    let mut rest = s.as_bytes();
    loop {
        let keep = rest.iter().take_while(|&&b| unreserved(b)).count();
        let (run, tail) = rest.split_at_checked(keep).unwrap_or((rest, &[]));
        out.put(run);
        let Some((&b, tail)) = tail.split_first() else {
            return;
        };
        if b == b' ' {
            out.put(b"+");
        } else {
            out.put(&[b'%', hex(b >> 4), hex(b)]);
        }
        rest = tail;
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_')
}

/// Where encoders put bytes.
pub trait ByteSink {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
}

impl ByteSink for Out<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.bytes(bytes);
    }
}

/// A streaming standard-alphabet base64 encoder (with padding) in front of any sink.
pub struct Base64<'o, S: ByteSink> {
    out: &'o mut S,
    pending: [u8; 3],
    n: usize,
}

/// The standard base64 digit of the low six bits of `n`.
const fn b64(n: u8) -> u8 {
    match n & 0x3f {
        d @ 0..=25 => b'A' + d,
        d @ 26..=51 => b'a' + d - 26,
        d @ 52..=61 => b'0' + d - 52,
        62 => b'+',
        _ => b'/',
    }
}

impl<'o, S: ByteSink> Base64<'o, S> {
    /// An encoder writing to `out`.
    pub fn new(out: &'o mut S) -> Self {
        Base64 {
            out,
            pending: [0; 3],
            n: 0,
        }
    }

    fn flush(&mut self, n: usize) {
        let [a, b, c] = self.pending;
        let sextets = [
            a >> 2,
            (a & 0x03) << 4 | b >> 4,
            (b & 0x0f) << 2 | c >> 6,
            c & 0x3f,
        ];
        let mut quad = [b'='; 4];
        for ((i, s), ch) in sextets.iter().enumerate().zip(quad.iter_mut()) {
            if i <= n {
                *ch = b64(*s);
            }
        }
        self.out.put(&quad);
        self.pending = [0; 3];
        self.n = 0;
    }

    /// Writes the final group with padding.
    pub fn finish(mut self) {
        if self.n > 0 {
            self.flush(self.n);
        }
    }
}

impl<S: ByteSink> ByteSink for Base64<'_, S> {
    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.pending.get_mut(self.n) {
                *slot = b;
            }
            self.n += 1;
            if self.n == 3 {
                self.flush(3);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl FnOnce(&mut Out<'_>)) -> std::string::String {
        extern crate std;
        let mut buf = [0u8; 256];
        let mut out = Out::new(&mut buf);
        f(&mut out);
        let (w, _) = out.finish().unwrap();
        std::string::String::from_utf8(w.to_vec()).unwrap()
    }

    extern crate std;

    #[test]
    fn json_escapes_what_it_must() {
        let s = run(|o| json_string(o, "a\"b\\c\n\u{1}\u{1f}é😀/"));
        assert_eq!(s, r#""a\"b\\c\n\u0001\u001Fé😀/""#);
        let back: std::string::String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}\u{1f}é😀/");
    }

    #[test]
    fn form_encoding_is_whatwg() {
        let s = run(|o| form_encode(o, "a b+c&d=e/é~*-._"));
        assert_eq!(s, "a+b%2Bc%26d%3De%2F%C3%A9%7E*-._");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let s = run(|o| {
                let mut b = Base64::new(o);
                b.put(input.as_bytes());
                b.finish();
            });
            assert_eq!(s, want, "{input}");
        }
    }

    #[test]
    fn too_small_reports_total_needed() {
        let mut buf = [0u8; 4];
        let mut out = Out::new(&mut buf);
        json_string(&mut out, "hello");
        out.str("tail");
        assert_eq!(out.finish().err(), Some(11));
    }
}
