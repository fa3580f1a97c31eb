//! A borrowed, single-pass JSON reader.
//!
//! The codecs walk a response with a [`Cursor`]: [`Cursor::object`] calls a closure once per
//! member with the member's key, and the closure reads the value it wants (a string, a number,
//! a nested object) or leaves it, in which case the cursor skips it. Strings come back as
//! [`JsonStr`]: a borrowed view of the raw, still-escaped bytes that decodes on demand straight
//! into its destination, so no capacity-sized copy ever sits on the stack.
//!
//! Skipping is iterative (a bit-stack of up to [`MAX_DEPTH`] open containers), so hostile
//! nesting costs no stack either. String ends are found a word at a time, or with `memchr`
//! for long values.

use memchr::{memchr, memchr2};

/// How deep unknown values may nest before the reader gives up.
pub const MAX_DEPTH: u32 = 128;

/// What was wrong with a response body or one of its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Problem {
    /// Not JSON where JSON was expected (stray byte, missing comma or colon, trailing text).
    Syntax,
    /// The body ended in the middle of a value.
    Truncated,
    /// A string escape is invalid, including a lone UTF-16 surrogate.
    Escape,
    /// A string holds invalid UTF-8 or a raw control character.
    Encoding,
    /// Values nest deeper than [`MAX_DEPTH`].
    Depth,
    /// A required field is absent.
    Missing,
    /// A field has the wrong JSON type (e.g. a number where a string belongs).
    Type,
    /// A field the codec reads appears twice.
    Duplicate,
    /// A value has the right type but is out of range (negative lifetime, month 13, ...).
    Range,
    /// A well-formed value the library does not support (e.g. a `token_type` other than Bearer).
    Unsupported,
    /// A character the field cannot carry: a bearer token goes into an HTTP header, so it
    /// must be visible ASCII (no space, control character or non-ASCII byte).
    Charset,
}

impl Problem {
    /// A short human description.
    pub const fn describe(self) -> &'static str {
        match self {
            Problem::Syntax => "invalid JSON",
            Problem::Truncated => "body ends mid-value",
            Problem::Escape => "invalid string escape",
            Problem::Encoding => "invalid UTF-8 or control character in string",
            Problem::Depth => "nested too deeply",
            Problem::Missing => "required field missing",
            Problem::Type => "wrong JSON type",
            Problem::Duplicate => "field appears twice",
            Problem::Range => "value out of range",
            Problem::Unsupported => "unsupported value",
            Problem::Charset => "character not allowed (a bearer token is visible ASCII)",
        }
    }
}

/// A JSON string as it stands in the body: the bytes between the quotes, escapes not yet
/// decoded. Escape syntax has been checked; UTF-8 is checked when the string is decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct JsonStr<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl core::fmt::Debug for JsonStr<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Values may be secrets; show only their size.
        write!(f, "JsonStr({} raw bytes)", self.raw.len())
    }
}

impl<'a> JsonStr<'a> {
    /// The raw bytes between the quotes, escapes undecoded.
    pub const fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether the raw bytes contain at least one escape.
    pub const fn has_escapes(&self) -> bool {
        self.escaped
    }

    /// Feeds the decoded text to `f` in chunks; `f` returns `false` to stop early.
    ///
    /// Returns `Ok(true)` when every chunk was delivered, `Ok(false)` when `f` stopped.
    pub fn chunks(&self, mut f: impl FnMut(&str) -> bool) -> Result<bool, Problem> {
        self.chunks_dyn(&mut f)
    }

    /// One copy of the decoder for every caller's closure: a smaller firmware for one
    /// indirect call per chunk (an unescaped token is a single chunk).
    #[inline(never)]
    fn chunks_dyn(&self, f: &mut dyn FnMut(&str) -> bool) -> Result<bool, Problem> {
        let mut rest = self.raw;
        loop {
            let lit_end = if self.escaped {
                memchr(b'\\', rest)
            } else {
                None
            };
            let (literal, tail) = match lit_end {
                Some(i) => rest.split_at_checked(i).ok_or(Problem::Escape)?,
                None => (rest, &[][..]),
            };
            if !literal.is_empty() && !f(text(literal)?) {
                return Ok(false);
            }
            if tail.is_empty() {
                return Ok(true);
            }
            // `tail` starts with a backslash.
            let (ch, used) = unescape(tail)?;
            let mut utf8 = [0u8; 4];
            if !f(ch.encode_utf8(&mut utf8)) {
                return Ok(false);
            }
            rest = tail.get(used..).ok_or(Problem::Escape)?;
        }
    }

    /// The decoded length in bytes; also validates the string.
    pub fn decoded_len(&self) -> Result<usize, Problem> {
        if !self.escaped {
            return text(self.raw).map(str::len);
        }
        let mut n = 0usize;
        self.chunks(|s| {
            n = n.saturating_add(s.len());
            true
        })?;
        Ok(n)
    }

    /// The text, borrowed with no copy, when it has no escapes and is valid.
    pub fn as_str(&self) -> Option<&'a str> {
        if self.escaped {
            None
        } else {
            text(self.raw).ok()
        }
    }

    /// Whether the decoded text equals `s`. Invalid strings equal nothing.
    pub fn eq_str(&self, s: &str) -> bool {
        if !self.escaped {
            // Equal bytes are as valid as `s` (a `str`) unless they hold a raw control
            // character, checked in the same pass: one loop, no calls, for short keys.
            return same_text(self.raw, s.as_bytes(), |a, b| a == b);
        }
        let mut want = s.as_bytes();
        let complete = self.chunks(|c| match want.strip_prefix(c.as_bytes()) {
            Some(r) => {
                want = r;
                true
            }
            None => false,
        });
        complete == Ok(true) && want.is_empty()
    }

    /// Whether the decoded text equals `s`, ignoring ASCII case.
    pub fn eq_ignore_ascii_case(&self, s: &str) -> bool {
        if !self.escaped {
            // ASCII case folding keeps UTF-8 validity: as in `eq_str`.
            return same_text(self.raw, s.as_bytes(), |a, b| a.eq_ignore_ascii_case(&b));
        }
        let mut want = s.as_bytes();
        let complete = self.chunks(|c| match want.split_at_checked(c.len()) {
            Some((head, r)) if head.eq_ignore_ascii_case(c.as_bytes()) => {
                want = r;
                true
            }
            _ => false,
        });
        complete == Ok(true) && want.is_empty()
    }

    /// Decodes into `dest` (cleared first). On error `dest` is left empty; a destination
    /// too small reports the decoded length.
    pub fn decode_into<const N: usize>(
        &self,
        dest: &mut heapless::String<N>,
    ) -> Result<(), DecodeError> {
        self.decode_into_view(dest.as_mut_view())
    }

    /// [`JsonStr::decode_into`] for any capacity, through heapless's unsized view: one copy
    /// of the code, and the same stack, whatever the capacity.
    pub fn decode_into_view(
        &self,
        dest: &mut heapless::string::StringView,
    ) -> Result<(), DecodeError> {
        dest.clear();
        let done = self.chunks(|c| dest.push_str(c).is_ok());
        match done {
            Ok(true) => Ok(()),
            Ok(false) => {
                dest.clear();
                Err(DecodeError::Capacity(self.decoded_len()?))
            }
            Err(p) => {
                dest.clear();
                Err(DecodeError::Invalid(p))
            }
        }
    }
}

/// Why [`JsonStr::decode_into`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The string is invalid.
    Invalid(Problem),
    /// The destination is too small; the decoded length is given.
    Capacity(usize),
}

impl From<Problem> for DecodeError {
    fn from(p: Problem) -> Self {
        DecodeError::Invalid(p)
    }
}

/// Whether `bytes` holds a raw control character (not allowed in a JSON string).
fn has_control(bytes: &[u8]) -> bool {
    // Checked in exact 32-byte blocks with no early exit inside one, so the compiler
    // vectorises each block (the chunks' fixed length lets it unroll fully).
    let mut blocks = bytes.chunks_exact(32);
    let found = blocks
        .by_ref()
        .any(|block| block.iter().fold(false, |seen, &b| seen | (b < 0x20)));
    found || blocks.remainder().iter().any(|&b| b < 0x20)
}

/// Whether `raw` (a string's bytes in the body) and `want` match byte for byte under `eq`,
/// and `raw` holds no raw control character (which would make it invalid JSON).
#[inline(always)]
fn same_text(raw: &[u8], want: &[u8], eq: impl Fn(u8, u8) -> bool) -> bool {
    raw.len() == want.len() && raw.iter().zip(want).all(|(&a, &b)| eq(a, b) && a >= 0x20)
}

/// Validates a literal run: UTF-8, no raw control characters.
fn text(bytes: &[u8]) -> Result<&str, Problem> {
    if has_control(bytes) {
        return Err(Problem::Encoding);
    }
    core::str::from_utf8(bytes).map_err(|_| Problem::Encoding)
}

/// The first `"` or `\` in `s`. Keys and short values end within a few bytes, where a
/// word-at-a-time scan beats a vector search's set-up; long values (tokens) go to
/// `memchr2`.
#[inline(always)]
fn string_stop(s: &[u8]) -> Option<usize> {
    const SHORT: usize = 32;
    const WORD: usize = core::mem::size_of::<usize>();
    let (head, tail) = s.split_at_checked(SHORT).unwrap_or((s, &[]));
    let mut words = head.chunks_exact(WORD);
    let mut at = 0usize;
    for w in words.by_ref() {
        let w = usize::from_le_bytes(w.try_into().unwrap_or([0; WORD]));
        if let Some(i) = stop_in_word(w) {
            return Some(at.saturating_add(i));
        }
        at = at.saturating_add(WORD);
    }
    let stop = |&b: &u8| b == b'"' || b == b'\\';
    match words.remainder().iter().position(stop) {
        Some(i) => Some(at.saturating_add(i)),
        None => memchr2(b'"', b'\\', tail).map(|i| i.saturating_add(SHORT)),
    }
}

/// The index of the first `"` or `\` among the bytes of `w` (little-endian order).
///
/// `zero(v)` flags a zero byte's top bit; a borrow can also flag bytes above the first zero,
/// never below it, so the lowest flag of either search is exact.
#[inline(always)]
fn stop_in_word(w: usize) -> Option<usize> {
    const LO: usize = usize::MAX / 0xff;
    const HI: usize = LO << 7;
    let zero = |v: usize| v.wrapping_sub(LO) & !v & HI;
    let found = zero(w ^ (LO * b'"' as usize)) | zero(w ^ (LO * b'\\' as usize));
    (found != 0).then(|| (found.trailing_zeros() / 8) as usize)
}

/// Decodes one escape at the start of `s` (which begins with `\`): the char and bytes used.
fn unescape(s: &[u8]) -> Result<(char, usize), Problem> {
    let simple = match s.get(1) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let hi = hex4(s.get(2..6))?;
            if (0xD800..0xDC00).contains(&hi) {
                // A high surrogate must be followed by `\u` and a low surrogate.
                if s.get(6..8) != Some(b"\\u") {
                    return Err(Problem::Escape);
                }
                let lo = hex4(s.get(8..12))?;
                if !(0xDC00..0xE000).contains(&lo) {
                    return Err(Problem::Escape);
                }
                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return char::from_u32(cp).map(|c| (c, 12)).ok_or(Problem::Escape);
            }
            return char::from_u32(hi).map(|c| (c, 6)).ok_or(Problem::Escape);
        }
        _ => return Err(Problem::Escape),
    };
    Ok((simple, 2))
}

fn hex4(s: Option<&[u8]>) -> Result<u32, Problem> {
    let s = s.ok_or(Problem::Escape)?;
    s.iter().try_fold(0u32, |acc, &b| {
        let d = (b as char).to_digit(16).ok_or(Problem::Escape)?;
        Ok(acc << 4 | d)
    })
}

/// Parses an unsigned integer made only of ASCII digits, saturating at `u64::MAX`.
pub fn parse_uint(digits: &[u8]) -> Result<u64, Problem> {
    if digits.is_empty() {
        return Err(Problem::Type);
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            Ok(acc.saturating_mul(10).saturating_add(u64::from(b - b'0')))
        } else {
            Err(Problem::Type)
        }
    })
}

/// The JSON type of the next value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `"…"`
    String,
    /// `-1.5e3`
    Number,
    /// `true` / `false`
    Bool,
    /// `null`
    Null,
    /// `{…}`
    Object,
    /// `[…]`
    Array,
}

/// A position in a JSON document.
#[derive(Clone, Debug)]
pub struct Cursor<'a> {
    src: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `src`.
    pub const fn new(src: &'a [u8]) -> Self {
        Cursor { src, pos: 0 }
    }

    /// The bytes from this cursor's position up to `later`'s.
    pub fn span_to(&self, later: &Cursor<'a>) -> &'a [u8] {
        self.src.get(self.pos..later.pos).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn bump(&mut self) {
        self.pos = self.pos.saturating_add(1);
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.bump();
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), Problem> {
        self.ws();
        match self.peek() {
            Some(b) if b == want => {
                self.bump();
                Ok(())
            }
            Some(_) => Err(Problem::Syntax),
            None => Err(Problem::Truncated),
        }
    }

    /// Checks that nothing but whitespace follows.
    pub fn finish(&mut self) -> Result<(), Problem> {
        self.ws();
        if self.pos >= self.src.len() {
            Ok(())
        } else {
            Err(Problem::Syntax)
        }
    }

    /// The type of the next value (skipping whitespace), without consuming it.
    pub fn kind(&mut self) -> Result<Kind, Problem> {
        self.ws();
        match self.peek() {
            None => Err(Problem::Truncated),
            Some(b'"') => Ok(Kind::String),
            Some(b'{') => Ok(Kind::Object),
            Some(b'[') => Ok(Kind::Array),
            Some(b't' | b'f') => Ok(Kind::Bool),
            Some(b'n') => Ok(Kind::Null),
            Some(b'-' | b'0'..=b'9') => Ok(Kind::Number),
            Some(_) => Err(Problem::Syntax),
        }
    }

    /// `Type` when the next value is of another kind, the kind's own error otherwise.
    fn mismatch(&mut self) -> Problem {
        match self.kind() {
            Ok(_) => Problem::Type,
            Err(p) => p,
        }
    }

    /// Reads a string.
    // Inlined on hosted targets, where it makes a small response's parse 20% faster; on
    // bare metal one copy saves 440 bytes of flash (FOOTPRINT.md) for a parse that runs
    // once per token.
    #[cfg_attr(not(target_os = "none"), inline)]
    pub fn string(&mut self) -> Result<JsonStr<'a>, Problem> {
        let (start, escaped) = self.string_span()?;
        // The scan stopped after the closing quote.
        let end = self.pos.saturating_sub(1);
        let raw = self.src.get(start..end).unwrap_or_default();
        Ok(JsonStr { raw, escaped })
    }

    /// Scans a string: where its text starts and whether it holds escapes. The answer is
    /// two words, returned in registers; a whole `Result<JsonStr, _>` goes back through
    /// memory, and reading it stalled on store forwarding (a tenth of a small response's
    /// parse time).
    fn string_span(&mut self) -> Result<(usize, bool), Problem> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.mismatch());
        }
        self.bump();
        let start = self.pos;
        let mut escaped = false;
        loop {
            let rest = self.src.get(self.pos..).unwrap_or_default();
            let i = string_stop(rest).ok_or(Problem::Truncated)?;
            self.pos = self.pos.saturating_add(i);
            match rest.get(i) {
                Some(b'"') => {
                    self.bump();
                    return Ok((start, escaped));
                }
                _ => {
                    escaped = true;
                    let esc = self.src.get(self.pos..).unwrap_or_default();
                    let used = match esc.get(1) {
                        None => return Err(Problem::Truncated),
                        Some(b'u') if esc.len() < 6 => return Err(Problem::Truncated),
                        Some(b'u') => {
                            hex4(esc.get(2..6))?;
                            6
                        }
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
                        Some(_) => return Err(Problem::Escape),
                    };
                    self.pos = self.pos.saturating_add(used);
                }
            }
        }
    }

    /// Reads a number, returning its raw text (checked against the JSON grammar).
    pub fn number(&mut self) -> Result<&'a [u8], Problem> {
        self.ws();
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.bump();
        }
        match self.peek() {
            Some(b'0') => self.bump(),
            Some(b'1'..=b'9') => self.digits(),
            None if self.pos > start => return Err(Problem::Truncated),
            _ if self.pos > start => return Err(Problem::Syntax),
            _ => return Err(self.mismatch()),
        }
        if self.peek() == Some(b'.') {
            self.bump();
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.bump();
            if let Some(b'+' | b'-') = self.peek() {
                self.bump();
            }
            self.required_digits()?;
        }
        Ok(self.src.get(start..self.pos).unwrap_or_default())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.bump();
        }
    }

    fn required_digits(&mut self) -> Result<(), Problem> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            None => Err(Problem::Truncated),
            Some(_) => Err(Problem::Syntax),
        }
    }

    /// Reads `true` or `false`.
    pub fn boolean(&mut self) -> Result<bool, Problem> {
        self.ws();
        match self.peek() {
            Some(b't') => self.literal(b"true").map(|_| true),
            Some(b'f') => self.literal(b"false").map(|_| false),
            _ => Err(self.mismatch()),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Problem> {
        let rest = self.src.get(self.pos..).unwrap_or_default();
        if rest.starts_with(word) {
            self.pos = self.pos.saturating_add(word.len());
            Ok(())
        } else if word.starts_with(rest) {
            Err(Problem::Truncated)
        } else {
            Err(Problem::Syntax)
        }
    }

    /// Reads `"key":` inside an object.
    fn key(&mut self) -> Result<JsonStr<'a>, Problem> {
        let key = self.string().map_err(|p| match p {
            Problem::Type => Problem::Syntax,
            p => p,
        })?;
        if has_control(key.raw()) {
            return Err(Problem::Encoding);
        }
        self.expect(b':')?;
        Ok(key)
    }

    /// Skips one value of any type, checking its syntax. Iterative: no recursion.
    pub fn skip(&mut self) -> Result<(), Problem> {
        // Bit i of `stack` says whether open container i (innermost = bit 0) is an object.
        let mut stack: u128 = 0;
        let mut depth: u32 = 0;
        loop {
            // A value starts here.
            let mut complete = true;
            match self.kind()? {
                Kind::Object | Kind::Array => {
                    if depth >= MAX_DEPTH {
                        return Err(Problem::Depth);
                    }
                    let is_object = self.peek() == Some(b'{');
                    self.bump();
                    stack = stack << 1 | u128::from(is_object);
                    depth += 1;
                    self.ws();
                    let close = if is_object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.bump();
                        stack >>= 1;
                        depth -= 1;
                    } else {
                        if is_object {
                            self.key()?;
                        }
                        complete = false;
                    }
                }
                Kind::String => {
                    // Skipped or kept, a string with a raw control character is not JSON.
                    if has_control(self.string()?.raw()) {
                        return Err(Problem::Encoding);
                    }
                }
                Kind::Number => {
                    self.number()?;
                }
                Kind::Bool => {
                    self.boolean()?;
                }
                Kind::Null => self.literal(b"null")?,
            }
            if !complete {
                continue;
            }
            // A value ended: close containers until one expects another value.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                self.ws();
                let in_object = stack & 1 == 1;
                match self.peek() {
                    Some(b',') => {
                        self.bump();
                        if in_object {
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if in_object => {}
                    Some(b']') if !in_object => {}
                    Some(_) => return Err(Problem::Syntax),
                    None => return Err(Problem::Truncated),
                }
                self.bump();
                stack >>= 1;
                depth -= 1;
            }
        }
    }

    /// Walks an object: `f` is called with each member's key and must read that member's
    /// value or read nothing (the value is then skipped).
    pub fn object<E: From<Problem>>(
        &mut self,
        mut f: impl FnMut(&mut Self, JsonStr<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.ws();
        if self.peek() != Some(b'{') {
            return Err(self.mismatch().into());
        }
        self.bump();
        self.ws();
        if self.peek() == Some(b'}') {
            self.bump();
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.key()?;
            self.ws();
            let before = self.pos;
            f(self, key)?;
            if self.pos == before {
                self.skip()?;
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b'}') => {
                    self.bump();
                    return Ok(());
                }
                Some(_) => return Err(Problem::Syntax.into()),
                None => return Err(Problem::Truncated.into()),
            }
        }
    }

    /// Walks an array: `f` is called once per element and must read it or read nothing.
    pub fn array<E: From<Problem>>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<(), E>,
    ) -> Result<(), E> {
        self.ws();
        if self.peek() != Some(b'[') {
            return Err(self.mismatch().into());
        }
        self.bump();
        self.ws();
        if self.peek() == Some(b']') {
            self.bump();
            return Ok(());
        }
        loop {
            self.ws();
            let before = self.pos;
            f(self)?;
            if self.pos == before {
                self.skip()?;
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b']') => {
                    self.bump();
                    return Ok(());
                }
                Some(_) => return Err(Problem::Syntax.into()),
                None => return Err(Problem::Truncated.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(json: &str) -> JsonStr<'_> {
        Cursor::new(json.as_bytes()).string().unwrap()
    }

    fn decoded(json: &str) -> Result<heapless::String<64>, DecodeError> {
        let mut out = heapless::String::new();
        s(json).decode_into(&mut out).map(|()| out)
    }

    #[test]
    fn string_stop_finds_the_first_quote_or_backslash() {
        // Fillers next to the two stops in value, and with their high bit set: the cases a
        // word-at-a-time search gets wrong if its borrow logic is off.
        let fillers = [
            b'a', 0x21, 0x23, 0x5b, 0x5d, 0x00, 0x01, 0x80, 0xff, 0xa2, 0xdc,
        ];
        let naive = |s: &[u8]| s.iter().position(|&b| b == b'"' || b == b'\\');
        let mut buf = [0u8; 80];
        for len in 0..=buf.len() {
            for filler in fillers {
                for first in 0..=len {
                    for (stop, later) in [(b'"', b'\\'), (b'\\', b'"')] {
                        let s = &mut buf[..len];
                        s.fill(filler);
                        if let Some(b) = s.get_mut(first) {
                            *b = stop;
                        }
                        // A second stop after the first must not win.
                        if let Some(b) = s.get_mut(first + 3) {
                            *b = later;
                        }
                        assert_eq!(string_stop(s), naive(s), "{len} {filler:#x} {first}");
                    }
                }
            }
        }
    }

    #[test]
    fn decodes_every_escape() {
        let d = decoded(r#""a\"b\\c\/d\be\ff\ng\rh\ti\u00e9\u20AC""#).unwrap();
        assert_eq!(d.as_str(), "a\"b\\c/d\u{8}e\u{c}f\ng\rh\ti\u{e9}\u{20ac}");
    }

    #[test]
    fn decodes_surrogate_pairs() {
        assert_eq!(
            decoded(r#""\ud83d\ude00!""#).unwrap().as_str(),
            "\u{1F600}!"
        );
        assert_eq!(decoded(r#""\uD83D\uDE00""#).unwrap().as_str(), "😀");
    }

    #[test]
    fn rejects_lone_and_reversed_surrogates() {
        for bad in [
            r#""\ud83d""#,
            r#""\ud83dx""#,
            r#""\ude00""#,
            r#""\ud83d\u0041""#,
        ] {
            assert_eq!(
                decoded(bad),
                Err(DecodeError::Invalid(Problem::Escape)),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_bad_escape_syntax_while_scanning() {
        assert_eq!(Cursor::new(br#""\x""#).string(), Err(Problem::Escape));
        assert_eq!(Cursor::new(br#""\u12G4""#).string(), Err(Problem::Escape));
        assert_eq!(Cursor::new(br#""\u12"#).string(), Err(Problem::Truncated));
        assert_eq!(Cursor::new(br#""abc"#).string(), Err(Problem::Truncated));
        assert_eq!(Cursor::new(br#""abc\"#).string(), Err(Problem::Truncated));
    }

    #[test]
    fn rejects_raw_control_and_bad_utf8_on_decode() {
        assert_eq!(
            decoded("\"a\nb\""),
            Err(DecodeError::Invalid(Problem::Encoding))
        );
        let bad = [b'"', 0xff, b'"'];
        let st = Cursor::new(&bad).string().unwrap();
        assert_eq!(st.decoded_len(), Err(Problem::Encoding));
        assert_eq!(st.as_str(), None);
    }

    #[test]
    fn skipped_strings_and_keys_refuse_raw_control_characters_too() {
        // JSONTestSuite's n_string_unescaped_ctrl_char, n_string_unescaped_newline and
        // n_string_unescaped_tab, in a value the codec skips and in a key.
        for bad in [
            "{\"x\":\"a\u{0}a\"}",
            "{\"x\":\"new\nline\"}",
            "{\"x\":[\"\t\"]}",
            "{\"a\u{1f}b\":1}",
        ] {
            let mut c = Cursor::new(bad.as_bytes());
            assert_eq!(c.skip(), Err(Problem::Encoding), "{bad:?}");
        }
        // Escaped, they are fine.
        let mut c = Cursor::new(br#"{"x":"new\nline\t","y\u0001":1}"#);
        assert_eq!(c.skip(), Ok(()));
        // Through a codec: an unknown member with a raw tab makes the response malformed.
        let body = b"{\"access_token\":\"t\",\"token_type\":\"Bearer\",\"expires_in\":60,\"note\":\"a\tb\"}";
        use crate::provider::Provider;
        let parsed = crate::OAuth2::new("https://idp/t").parse_token(200, body);
        assert!(parsed.is_err());
    }

    #[test]
    fn capacity_reports_needed_and_leaves_dest_empty() {
        let mut small: heapless::String<3> = heapless::String::new();
        small.push_str("old").unwrap();
        let st = s(r#""ab\u00e9cd""#);
        assert_eq!(st.decode_into(&mut small), Err(DecodeError::Capacity(6)));
        assert!(small.is_empty());
    }

    #[test]
    fn compares_decoded() {
        assert!(s(r#""Bearer""#).eq_str("Bearer"));
        assert!(s(r#""Bea\u0072er""#).eq_str("Bearer"));
        assert!(!s(r#""Bea\u0072e""#).eq_str("Bearer"));
        assert!(!s(r#""Bea\u0072err""#).eq_str("Bearer"));
        assert!(s(r#""bEaReR""#).eq_ignore_ascii_case("Bearer"));
        assert!(s(r#""b\u0045arer""#).eq_ignore_ascii_case("BEARER"));
        assert!(!s(r#""bearers""#).eq_ignore_ascii_case("Bearer"));
    }

    #[test]
    fn skips_nested_values_and_checks_them() {
        let doc = br#"{"a":[1,{"b":[true,false,null,"x\"]"]},-0.5e+3],"c":{}} "#;
        let mut c = Cursor::new(doc);
        c.skip().unwrap();
        c.finish().unwrap();
        for bad in [
            &br#"{"a":[}"#[..],
            br#"{"a" 1}"#,
            br#"[1,]"#,
            br#"{"a":1,}"#,
            br#"[01]"#,
        ] {
            assert!(
                Cursor::new(bad).skip().is_err(),
                "{}",
                core::str::from_utf8(bad).unwrap()
            );
        }
        assert_eq!(Cursor::new(br#"{"a":[1,2"#).skip(), Err(Problem::Truncated));
        assert_eq!(Cursor::new(b"tru").skip(), Err(Problem::Truncated));
        assert_eq!(Cursor::new(b"trux").skip(), Err(Problem::Syntax));
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        let deep = [b'['; 4096];
        assert_eq!(Cursor::new(&deep).skip(), Err(Problem::Depth));
        let mut ok = heapless::Vec::<u8, 300>::new();
        for _ in 0..128 {
            ok.push(b'[').unwrap();
        }
        for _ in 0..128 {
            ok.push(b']').unwrap();
        }
        Cursor::new(&ok).skip().unwrap();
    }

    #[test]
    fn object_walk_reads_or_skips() {
        let doc = br#" { "skip" : {"x":[1,2]}, "n": 42 , "s":"v" } "#;
        let mut c = Cursor::new(doc);
        let (mut n, mut sv) = (0, false);
        c.object::<Problem>(|c, k| {
            if k.eq_str("n") {
                n = parse_uint(c.number()?)?;
            } else if k.eq_str("s") {
                sv = c.string()?.eq_str("v");
            }
            Ok(())
        })
        .unwrap();
        c.finish().unwrap();
        assert_eq!((n, sv), (42, true));
    }

    #[test]
    fn numbers_follow_the_grammar() {
        assert_eq!(Cursor::new(b"-12.5e-3,").number(), Ok(&b"-12.5e-3"[..]));
        assert_eq!(Cursor::new(b"1.").number(), Err(Problem::Truncated));
        assert_eq!(Cursor::new(b"1.x").number(), Err(Problem::Syntax));
        assert_eq!(Cursor::new(b"-x").number(), Err(Problem::Syntax));
        assert_eq!(Cursor::new(b"\"1\"").number(), Err(Problem::Type));
        assert_eq!(parse_uint(b"18446744073709551616"), Ok(u64::MAX));
        assert_eq!(parse_uint(b"1.5"), Err(Problem::Type));
        assert_eq!(parse_uint(b""), Err(Problem::Type));
    }
}
