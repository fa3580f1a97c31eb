//! Scrubbing a secret out of text a provider sent back.
//!
//! A provider that echoes the request in its error message (`error_description: "bad
//! request: client_secret=…"`) would otherwise get the secret stored, logged and printed.
//! The secret is looked for raw and in every encoding a request may have carried it in, or
//! a server's echo may have turned it into: form-urlencoded (`+` or `%20` for a space, or
//! raw with only its spaces turned to `+`), JSON-escaped (also with `/` written `\/`, as
//! PHP and some Java encoders do), inside HTTP Basic's base64 of `id:secret` (with and
//! without RFC 6749's form-encoding of both halves, with or without `=` padding), and as
//! base64 of the secret alone. Matching ignores ASCII case, so a provider that re-cases
//! percent escapes is caught too; the cost is that text that merely resembles the secret is
//! hidden as well, which is the safe side.
//!
//! The same matcher scrubs a bearer token (or refresh token) an API or a provider echoes,
//! such as Shogun's validate errors: [`scrub_token`].
//!
//! Text that was cut to fit its buffer (it then ends in `…`) is also cleaned of a secret
//! that the cut split: a tail that is the start of an encoding, four bytes or more, goes.
//!
//! No heap and no copy of the secret: each encoding is produced byte by byte into a matcher.

use crate::credentials::Credentials;
use crate::write::{form_encode, json_escape, Base64, ByteSink};
use heapless::string::StringView;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// A tail of cut text at least this long that starts an encoding of the secret is removed.
const MIN_CUT_MATCH: usize = 4;

/// What is looked for: a secret, and the client id that HTTP Basic pairs it with (none for a
/// token).
#[derive(Clone, Copy)]
struct Sought<'a> {
    id: Option<&'a str>,
    secret: &'a str,
}

/// The ways a secret is looked for.
#[derive(Clone, Copy)]
enum Encoding {
    Raw,
    /// Raw, but every space a `+` (a form decoder's echo of a raw value).
    RawPlus,
    Form,
    /// Form-encoded with `%20` for a space (RFC 3986 percent-encoding).
    FormPct20,
    Json,
    /// JSON-escaped with `/` escaped too (`\/`).
    JsonSlash,
    /// `base64(urlencode(id) ":" urlencode(secret))`, as RFC 6749 §2.3.1 builds it.
    BasicForm,
    /// `base64(id ":" secret)`, as plain HTTP Basic would.
    BasicRaw,
    /// `base64(secret)`.
    SecretBase64,
}

const ENCODINGS: [Encoding; 9] = [
    Encoding::Raw,
    Encoding::RawPlus,
    Encoding::Form,
    Encoding::FormPct20,
    Encoding::Json,
    Encoding::JsonSlash,
    Encoding::BasicForm,
    Encoding::BasicRaw,
    Encoding::SecretBase64,
];

/// Compares produced bytes against `text` from a position, ignoring ASCII case.
struct Matcher<'t> {
    text: &'t [u8],
    pos: usize,
    /// Every byte so far matched.
    ok: bool,
    /// The text ended before the encoding did.
    ran_out: bool,
    /// Base64 `=` padding may be left out: an `=` the text does not have ends the match.
    optional_padding: bool,
    /// The match ended at padding the text left out.
    done: bool,
}

impl ByteSink for Matcher<'_> {
    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if !self.ok || self.ran_out || self.done {
                return;
            }
            match self.text.get(self.pos) {
                Some(t) if t.eq_ignore_ascii_case(&b) => self.pos += 1,
                _ if b == b'=' && self.optional_padding && self.pos > 0 => self.done = true,
                Some(_) => self.ok = false,
                None => self.ran_out = true,
            }
        }
    }
}

/// A sink that rewrites single bytes on their way to another.
struct Map<'s, S: ByteSink> {
    out: &'s mut S,
    from: u8,
    to: &'static [u8],
}

impl<S: ByteSink> ByteSink for Map<'_, S> {
    fn put(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|&b| b == self.from) {
            let (run, tail) = rest.split_at_checked(i).unwrap_or((rest, &[]));
            self.out.put(run);
            self.out.put(self.to);
            rest = tail.get(1..).unwrap_or_default();
        }
        self.out.put(rest);
    }
}

/// Feeds `encoding` of the secret into `sink`.
fn produce(encoding: Encoding, sought: Sought<'_>, sink: &mut impl ByteSink) {
    let secret = sought.secret;
    let map = |out, from, to| Map { out, from, to };
    match encoding {
        Encoding::Raw => sink.put(secret.as_bytes()),
        Encoding::RawPlus => map(sink, b' ', b"+").put(secret.as_bytes()),
        Encoding::Form => form_encode(sink, secret),
        // `form_encode` writes `+` for a space only (a `+` of the secret is `%2B`).
        Encoding::FormPct20 => form_encode(&mut map(sink, b'+', b"%20"), secret),
        Encoding::Json => json_escape(sink, secret),
        // `json_escape` writes `/` only for a `/` of the secret.
        Encoding::JsonSlash => json_escape(&mut map(sink, b'/', b"\\/"), secret),
        Encoding::SecretBase64 => {
            let mut b64 = Base64::new(sink);
            b64.put(secret.as_bytes());
            b64.finish();
        }
        Encoding::BasicForm | Encoding::BasicRaw => {
            let id = sought.id.unwrap_or_default();
            let mut b64 = Base64::new(sink);
            if matches!(encoding, Encoding::BasicForm) {
                form_encode(&mut b64, id);
                b64.put(b":");
                form_encode(&mut b64, secret);
            } else {
                b64.put(id.as_bytes());
                b64.put(b":");
                b64.put(secret.as_bytes());
            }
            b64.finish();
        }
    }
}

/// Whether `encoding` produces the same bytes as one earlier in the list for this secret
/// (HTTP Basic without a client id), so it is not tried twice.
fn applies(encoding: Encoding, sought: Sought<'_>) -> bool {
    !(sought.id.is_none() && matches!(encoding, Encoding::BasicForm | Encoding::BasicRaw))
}

/// How long a match of some encoding of the secret starting at `text[at..]` is: a whole
/// encoding, or (when `cut`) a tail of the text that begins one.
fn match_at(text: &[u8], at: usize, cut: bool, sought: Sought<'_>) -> Option<usize> {
    let rest = text.get(at..)?;
    ENCODINGS
        .iter()
        .filter(|&&e| applies(e, sought))
        .find_map(|&encoding| {
            let mut m = Matcher {
                text: rest,
                pos: 0,
                ok: true,
                ran_out: false,
                optional_padding: matches!(
                    encoding,
                    Encoding::BasicForm | Encoding::BasicRaw | Encoding::SecretBase64
                ),
                done: false,
            };
            produce(encoding, sought, &mut m);
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
    let sought = Sought {
        id: Some(credentials.client_id()),
        secret: credentials.expose_secret(),
    };
    scrub_sought(
        text.as_mut_view(),
        heapless::String::<N>::new().as_mut_view(),
        sought,
    )
}

/// Replaces every occurrence of `token` (a bearer or refresh token an API or a provider
/// echoed), raw or in any of the encodings above, with [`REDACTED`]. Whether anything was
/// replaced. Tokens shorter than 8 bytes are not looked for: they are not bearer tokens, and
/// would hide ordinary words.
pub(crate) fn scrub_token<const N: usize>(text: &mut heapless::String<N>, token: &str) -> bool {
    if token.len() < 8 {
        return false;
    }
    scrub_sought(
        text.as_mut_view(),
        heapless::String::<N>::new().as_mut_view(),
        Sought {
            id: None,
            secret: token,
        },
    )
}

/// The scrub itself, through unsized views (`out`: an empty string of `text`'s capacity to
/// build the result in), so one copy serves every capacity: generic over it, it was linked
/// once per `Detail` field's capacity.
fn scrub_sought(text: &mut StringView, out: &mut StringView, sought: Sought<'_>) -> bool {
    if sought.secret.is_empty() || text.is_empty() {
        return false;
    }
    let cut_mark = '…';
    let (body, cut) = match text.strip_suffix(cut_mark) {
        Some(b) => (b, true),
        None => (text.as_str(), false),
    };
    let bytes = body.as_bytes();
    let mut at = 0;
    let mut changed = false;
    let mut full = false;
    while at < bytes.len() && !full {
        if let Some(len) = match_at(bytes, at, cut, sought) {
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
        while out.len() + cut_mark.len_utf8() > out.capacity() && out.pop().is_some() {}
        let _ = out.push(cut_mark);
    }
    wipe(text);
    // Fits: `out` has `text`'s capacity.
    let _ = text.push_str(out.as_str());
    true
}

/// Overwrites a string's bytes with zeros before it is reused (it held a secret).
fn wipe(text: &mut StringView) {
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
    fn finds_what_echoes_and_encoders_turn_the_secret_into() {
        let s = "p@ss w/\"rd+x";
        let id = "term 7";
        // `printf 'term 7:p@ss w/"rd+x' | base64` = dGVybSA3OnBAc3Mgdy8icmQreA== ;
        // `printf 'p@ss w/"rd+x' | base64` = cEBzcyB3LyJyZCt4 ;
        // `printf 'term+7:p%40ss+w%2F%22rd%2Bx' | base64`
        //   = dGVybSs3OnAlNDBzcyt3JTJGJTIycmQlMkJ4 .
        for (what, enc) in [
            ("Basic without padding", "dGVybSA3OnBAc3Mgdy8icmQreA"),
            ("Basic with padding", "dGVybSA3OnBAc3Mgdy8icmQreA=="),
            ("RFC 6749 Basic", "dGVybSs3OnAlNDBzcyt3JTJGJTIycmQlMkJ4"),
            ("base64 of the secret alone", "cEBzcyB3LyJyZCt4"),
            ("JSON with \\/", "p@ss w\\/\\\"rd+x"),
            ("form with %20", "p%40ss%20w%2F%22rd%2Bx"),
            ("raw with + for a space", "p@ss+w/\"rd+x"),
        ] {
            let text = std::format!("bad request: secret={enc}; try again");
            assert_eq!(
                scrubbed::<256>(&text, id, s),
                "bad request: secret=<redacted>; try again",
                "{what}: {enc}"
            );
        }
        // One byte of padding left out of two: still the secret.
        let one_short = "x dGVybSA3OnBAc3Mgdy8icmQreA= y";
        assert_eq!(scrubbed::<64>(one_short, id, s), "x <redacted> y");
        // Unpadded base64 of a secret whose length needs no padding is the plain case.
        assert_eq!(
            scrubbed::<64>("echo czNjcjN0 done", "id", "s3cr3t"),
            "echo <redacted> done"
        );
    }

    #[test]
    fn an_echoed_token_goes_in_every_encoding() {
        let token = "eyJhbGciOi.J9/pay+load";
        let scrub = |text: &str| {
            let mut t: heapless::String<128> = heapless::String::new();
            t.push_str(text).unwrap();
            let changed = scrub_token(&mut t, token);
            (String::from(t.as_str()), changed)
        };
        for enc in [
            token,
            "eyJhbGciOi.J9%2Fpay%2Bload",
            "eyJhbGciOi.J9\\/pay+load",
            // `printf 'eyJhbGciOi.J9/pay+load' | base64`
            "ZXlKaGJHY2lPaS5KOS9wYXkrbG9hZA",
        ] {
            let (out, changed) = scrub(&std::format!("{{\"message\":\"token {enc} is invalid\"}}"));
            assert!(changed, "{enc}");
            assert_eq!(
                out, "{\"message\":\"token <redacted> is invalid\"}",
                "{enc}"
            );
        }
        assert_eq!(
            scrub("token expired"),
            (String::from("token expired"), false)
        );
        // A short value is no bearer token: nothing is looked for.
        let mut t: heapless::String<32> = heapless::String::new();
        t.push_str("a bc d").unwrap();
        assert!(!scrub_token(&mut t, "bc"));
    }

    #[test]
    fn a_longer_replacement_still_fits() {
        let out = scrubbed::<16>("0123456789ab:s3", "id", "s3");
        assert!(out.len() <= 16);
        assert!(!out.contains("s3") || out.contains("<re"), "{out}");
        assert!(out.ends_with('…'));
    }
}
