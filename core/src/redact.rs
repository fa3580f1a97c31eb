//! Scrubbing a secret out of text a provider sent back.
//!
//! A provider that echoes the request in its error message (`error_description: "bad
//! request: client_secret=…"`) would otherwise get the secret stored, logged and printed.
//! The secret is looked for raw and in every encoding a request may have carried it in:
//! form-urlencoded, JSON-escaped, and inside HTTP Basic's base64 of `id:secret` (with and
//! without RFC 6749's form-encoding of both halves). Matching ignores ASCII case, so a
//! provider that re-cases percent escapes is caught too; the cost is that text that merely
//! resembles the secret is hidden as well, which is the safe side.
//!
//! Text that was cut to fit its buffer (it then ends in `…`) is also cleaned of a secret
//! that the cut split: a tail that is the start of an encoding, four bytes or more, goes.
//!
//! No heap and no copy of the secret: each encoding is produced byte by byte into a matcher.

use crate::credentials::Credentials;
use crate::write::{form_encode, json_escape, Base64, ByteSink};

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// A tail of cut text at least this long that starts an encoding of the secret is removed.
const MIN_CUT_MATCH: usize = 4;

/// The ways a secret is looked for.
#[derive(Clone, Copy)]
enum Encoding {
    Raw,
    Form,
    Json,
    /// `base64(urlencode(id) ":" urlencode(secret))`, as RFC 6749 §2.3.1 builds it.
    BasicForm,
    /// `base64(id ":" secret)`, as plain HTTP Basic would.
    BasicRaw,
}

const ENCODINGS: [Encoding; 5] = [
    Encoding::Raw,
    Encoding::Form,
    Encoding::Json,
    Encoding::BasicForm,
    Encoding::BasicRaw,
];

/// Compares produced bytes against `text` from a position, ignoring ASCII case.
struct Matcher<'t> {
    text: &'t [u8],
    pos: usize,
    /// Every byte so far matched.
    ok: bool,
    /// The text ended before the encoding did.
    ran_out: bool,
}

impl ByteSink for Matcher<'_> {
    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if !self.ok || self.ran_out {
                return;
            }
            match self.text.get(self.pos) {
                Some(t) if t.eq_ignore_ascii_case(&b) => self.pos += 1,
                Some(_) => self.ok = false,
                None => self.ran_out = true,
            }
        }
    }
}

/// Feeds `encoding` of the secret into `sink`.
fn produce(encoding: Encoding, credentials: &Credentials, sink: &mut impl ByteSink) {
    let secret = credentials.expose_secret();
    match encoding {
        Encoding::Raw => sink.put(secret.as_bytes()),
        Encoding::Form => form_encode(sink, secret),
        Encoding::Json => json_escape(sink, secret),
        Encoding::BasicForm | Encoding::BasicRaw => {
            let mut b64 = Base64::new(sink);
            if matches!(encoding, Encoding::BasicForm) {
                form_encode(&mut b64, credentials.client_id());
                b64.put(b":");
                form_encode(&mut b64, secret);
            } else {
                b64.put(credentials.client_id().as_bytes());
                b64.put(b":");
                b64.put(secret.as_bytes());
            }
            b64.finish();
        }
    }
}

/// How long a match of some encoding of the secret starting at `text[at..]` is: a whole
/// encoding, or (when `cut`) a tail of the text that begins one.
fn match_at(text: &[u8], at: usize, cut: bool, credentials: &Credentials) -> Option<usize> {
    let rest = text.get(at..)?;
    ENCODINGS.iter().find_map(|&encoding| {
        let mut m = Matcher {
            text: rest,
            pos: 0,
            ok: true,
            ran_out: false,
        };
        produce(encoding, credentials, &mut m);
        let whole = m.ok && !m.ran_out && m.pos > 0;
        let split = cut && m.ok && m.ran_out && m.pos >= MIN_CUT_MATCH;
        (whole || split).then_some(m.pos)
    })
}

/// Replaces every occurrence of the secret (in any encoding a request used) in `text` with
/// [`REDACTED`]. Whether anything was replaced.
pub(crate) fn scrub<const N: usize>(
    text: &mut heapless::String<N>,
    credentials: &Credentials,
) -> bool {
    if credentials.expose_secret().is_empty() || text.is_empty() {
        return false;
    }
    let cut_mark = '…';
    let (body, cut) = match text.strip_suffix(cut_mark) {
        Some(b) => (b, true),
        None => (text.as_str(), false),
    };
    let bytes = body.as_bytes();
    let mut out: heapless::String<N> = heapless::String::new();
    let mut at = 0;
    let mut changed = false;
    let mut full = false;
    while at < bytes.len() && !full {
        if let Some(len) = match_at(bytes, at, cut, credentials) {
            changed = true;
            full = out.push_str(REDACTED).is_err();
            at += len;
            continue;
        }
        // Copy one whole character (a match always starts on ASCII or the secret's own
        // first byte, so stepping by characters cannot skip one).
        let ch = body.get(at..).and_then(|s| s.chars().next());
        match ch {
            Some(c) => {
                full = out.push(c).is_err();
                at += c.len_utf8();
            }
            None => at += 1,
        }
    }
    if !changed {
        return false;
    }
    if full || cut {
        while out.len() + cut_mark.len_utf8() > N && out.pop().is_some() {}
        let _ = out.push(cut_mark);
    }
    wipe(text);
    *text = out;
    true
}

/// Overwrites a string's bytes with zeros before it is reused (it held a secret).
pub(crate) fn wipe<const N: usize>(text: &mut heapless::String<N>) {
    let len = text.len();
    text.clear();
    (0..len).for_each(|_| drop(text.push('\0')));
    text.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;

    fn scrubbed<const N: usize>(text: &str, id: &str, secret: &str) -> String {
        let c = Credentials::new(id, secret).unwrap();
        let mut t: heapless::String<N> = heapless::String::new();
        t.push_str(text).unwrap();
        scrub(&mut t, &c);
        String::from(t.as_str())
    }

    #[test]
    fn finds_the_secret_in_every_encoding() {
        let s = "p@ss w/\"rd";
        let id = "term 7";
        let form = "p%40ss+w%2F%22rd";
        let json = "p@ss w/\\\"rd";
        // `base64 <<< 'term+7:p%40ss+w%2F%22rd'` and `'term 7:p@ss w/"rd'`.
        let basic_form = "dGVybSs3OnAlNDBzcyt3JTJGJTIycmQ=";
        let basic_raw = "dGVybSA3OnBAc3Mgdy8icmQ=";
        for enc in [s, form, json, &form.to_lowercase(), basic_form, basic_raw] {
            let text = std::format!("bad request: secret={enc}; try again");
            assert_eq!(
                scrubbed::<256>(&text, id, s),
                "bad request: secret=<redacted>; try again",
                "{enc}"
            );
        }
    }

    #[test]
    fn every_occurrence_goes_and_other_text_stays() {
        assert_eq!(
            scrubbed::<64>("s3cr3t and s3cr3t, not s3cr", "id", "s3cr3t"),
            "<redacted> and <redacted>, not s3cr"
        );
        assert_eq!(
            scrubbed::<64>("nothing here", "id", "s3cr3t"),
            "nothing here"
        );
        assert_eq!(
            scrubbed::<64>("émoji s3cr3t ü", "id", "s3cr3t"),
            "émoji <redacted> ü"
        );
    }

    #[test]
    fn a_secret_split_by_the_cut_goes_too() {
        assert_eq!(
            scrubbed::<64>("echo: client_secret=s3cr…", "id", "s3cr3t"),
            "echo: client_secret=<redacted>…"
        );
        // Fewer than four bytes at the cut are not taken for the secret.
        assert_eq!(scrubbed::<64>("echo: s3…", "id", "s3cr3t"), "echo: s3…");
    }

    #[test]
    fn a_longer_replacement_still_fits() {
        let out = scrubbed::<16>("0123456789ab:s3", "id", "s3");
        assert!(out.len() <= 16);
        assert!(!out.contains("s3") || out.contains("<re"), "{out}");
        assert!(out.ends_with('…'));
    }
}
