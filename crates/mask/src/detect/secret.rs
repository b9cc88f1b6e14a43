//! Secret values found by their name: `password=hunter2`, `"api_key": "…"`, `DB_PASSWORD: s3cr3t`,
//! `Authorization: Bearer …`, SQL's `PASSWORD 'hunter2'`, and a random-looking string right after
//! a secret-like word (`token 8f3kQ…`).
//!
//! The span is the value alone, never the name, the separator or the quotes: `password=[secret]`
//! still says what was there, and JSON keeps its quotes. A double-quoted value may hold backslash
//! escapes, always whole, so a JSON document stays valid when the value is replaced.
//!
//! Not here: secrets without a telling name (only keys with a known shape are found that way, by
//! the `keys` detectors), credentials inside URLs, and values spread over several lines.

use super::{entropy, run_len, Span};

/// Words that make a name secret-like when a word of the name ends with one: `db_password`,
/// `clientSecret`, `csrftoken`, `X-Api-Key` (as `apikey` once split and joined, see
/// [`is_secret_name`]). `tokens` is left out: `max_tokens=4096` counts, it does not hide anything.
const SECRET_WORDS: [&[u8]; 15] = [
    b"password",
    b"passwords",
    b"passwd",
    b"passphrase",
    b"pwd",
    b"secret",
    b"secrets",
    b"token",
    b"credential",
    b"credentials",
    b"apikey",
    b"accesskey",
    b"privatekey",
    b"authorization",
    b"bearer",
];

/// The words before `key` that make it a secret: `api_key`, `AWS_SECRET_ACCESS_KEY`,
/// `private-key` (a bare `key` is too common a name to count).
const KEY_QUALIFIERS: [&[u8]; 3] = [b"api", b"access", b"private"];

/// Last words that make a secret-like name about the secret rather than the secret itself:
/// `token_count`, `password_policy`, `secret_name`, `token_expires`, `api_key_id`.
const METADATA_WORDS: [&[u8]; 36] = [
    b"count",
    b"type",
    b"len",
    b"length",
    b"size",
    b"expiry",
    b"expires",
    b"expiration",
    b"exp",
    b"ttl",
    b"url",
    b"uri",
    b"endpoint",
    b"name",
    b"file",
    b"path",
    b"policy",
    b"hint",
    b"reset",
    b"required",
    b"enabled",
    b"changed",
    b"updated",
    b"created",
    b"at",
    b"min",
    b"max",
    b"version",
    b"id",
    b"prefix",
    b"kind",
    b"format",
    b"mode",
    b"rotation",
    b"age",
    b"limit",
];

/// Authentication schemes an `Authorization` value starts with.
const AUTH_SCHEMES: [&[u8]; 6] = [b"bearer", b"basic", b"token", b"digest", b"negotiate", b"apikey"];

/// Values that stand for a secret rather than being one.
const PLACEHOLDER_WORDS: [&[u8]; 10] =
    [b"null", b"none", b"nil", b"undefined", b"true", b"false", b"redacted", b"hidden", b"masked", b"n/a"];

/// The shortest string taken as a secret for its randomness alone, and how random it must be:
/// random base64 of 20 characters scores about 4 bits per character, words stay well below 3.5.
const MIN_BARE_LEN: usize = 20;
const MIN_BARE_ENTROPY: f64 = 3.5;

pub(super) fn find_secret(text: &[u8], from: usize) -> Option<Span> {
    let mut i = from;
    while let Some(pair) = next_pair(text, i) {
        i = pair + 1;
        let Some(word) = word_at_pair(text, pair) else { continue };
        let (name_start, name_end) = name_around(text, word);
        // Every pair inside this name has now been looked at.
        i = i.max(name_end);
        if !is_secret_name(&text[name_start..name_end]) {
            continue;
        }
        if let Some(span) = value_after(text, &text[name_start..name_end], name_end) {
            if span.start >= from {
                return Some(span);
            }
        }
    }
    None
}

/// Letter pairs, one inside each secret-like word, that are rare in other text: the `sw` of
/// `password`, the `ke` of `token` and `key`, the `za` of `authorization`, the `cr` of `secret`
/// and `credential`, … Looking for these rather than for every `p` or `s` passes over prose with
/// two table lookups a byte and few false starts, which is what keeps this detector fast.
pub(super) const PAIRS: [&[u8; 2]; 7] = [b"sw", b"pw", b"ke", b"za", b"cr", b"be", b"ph"];

/// Per byte, which [`PAIRS`] it can be the first (second) letter of, in either case.
static FIRST_OF_PAIR: [u8; 256] = pair_table(0);
static SECOND_OF_PAIR: [u8; 256] = pair_table(1);

const fn pair_table(index: usize) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut p = 0;
    while p < PAIRS.len() {
        let b = PAIRS[p][index];
        table[b as usize] |= 1 << p;
        table[b.to_ascii_uppercase() as usize] |= 1 << p;
        p += 1;
    }
    table
}

/// Where the next of [`PAIRS`] starts, at or after `from`.
fn next_pair(text: &[u8], from: usize) -> Option<usize> {
    let rest = text.get(from..)?;
    let seconds = rest.get(1..)?;
    rest.iter().zip(seconds).position(|(&a, &b)| FIRST_OF_PAIR[a as usize] & SECOND_OF_PAIR[b as usize] != 0).map(|i| from + i)
}

/// The start of the secret-like word (or the `key` of `api_key`) a pair at `at` belongs to.
fn word_at_pair(text: &[u8], at: usize) -> Option<usize> {
    let word = |start: Option<usize>, literal: &[u8]| {
        start.filter(|&s| text.get(s..s + literal.len()).is_some_and(|w| w.eq_ignore_ascii_case(literal)))
    };
    let back = |n: usize| at.checked_sub(n);
    match text[at] | 0x20 {
        b's' => word(back(3), b"passw"),
        b'p' => word(Some(at), b"pwd").or_else(|| word(back(4), b"passphrase")),
        b'k' => word(Some(at), b"key").or_else(|| word(back(2), b"token")),
        b'z' => word(back(7), b"authorization"),
        b'c' => word(Some(at), b"credential").or_else(|| word(back(2), b"secret")),
        b'b' => word(Some(at), b"bearer"),
        _ => None,
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// The name around a word inside it: letters, digits, `_`, `-` and `.` (`x-api-key`, `db.password`), not
/// starting or ending with `-` or `.` (`--password`, "the password.").
fn name_around(text: &[u8], word: usize) -> (usize, usize) {
    let mut start = word;
    while start > 0 && is_name_byte(text[start - 1]) {
        start -= 1;
    }
    // The letter of a "\n" escape is not part of the name.
    if start > 0 && start < word && text[start - 1] == b'\\' {
        start += 1;
    }
    while start < word && matches!(text[start], b'-' | b'.') {
        start += 1;
    }
    let mut end = word + run_len(text, word, is_name_byte);
    while end > word && matches!(text[end - 1], b'-' | b'.') {
        end -= 1;
    }
    (start, end)
}

/// Whether a name is a secret's: one of its words (split at `_`, `-`, `.` and camelCase, digits
/// at the end dropped) ends with a [`SECRET_WORDS`] entry, or is `key` after `api`, `access` or
/// `private`; and the name does not end in a [`METADATA_WORDS`] entry after it. `PWD` and `OLDPWD`
/// are the shell's working directories.
fn is_secret_name(name: &[u8]) -> bool {
    if name == b"PWD" || name == b"OLDPWD" {
        return false;
    }
    let (mut secret, mut last_is_secret) = (false, false);
    let (mut previous, mut last): (&[u8], &[u8]) = (b"", b"");
    for word in (Words { name, pos: 0 }) {
        let word = &word[..word.len() - word.iter().rev().take_while(|b| b.is_ascii_digit()).count()];
        let is_secret = SECRET_WORDS.iter().any(|w| ends_with_ci(word, w))
            || ((word.eq_ignore_ascii_case(b"key") || word.eq_ignore_ascii_case(b"keys"))
                && KEY_QUALIFIERS.iter().any(|q| previous.eq_ignore_ascii_case(q)));
        secret |= is_secret;
        last_is_secret = is_secret;
        previous = word;
        last = word;
    }
    secret && (last_is_secret || !METADATA_WORDS.iter().any(|m| last.eq_ignore_ascii_case(m)))
}

fn ends_with_ci(word: &[u8], suffix: &[u8]) -> bool {
    word.len() >= suffix.len() && word[word.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// The words of a name: split at anything but letters and digits, before a capital that follows a
/// small letter (`clientSecret`), and before the last capital of an acronym followed by a small
/// letter (`APIKey`, `XApiKey`).
struct Words<'a> {
    name: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let name = self.name;
        self.pos += run_len(name, self.pos, |b| !b.is_ascii_alphanumeric());
        if self.pos >= name.len() {
            return None;
        }
        let start = self.pos;
        self.pos += 1;
        while self.pos < name.len() && name[self.pos].is_ascii_alphanumeric() {
            let (prev, b) = (name[self.pos - 1], name[self.pos]);
            let camel = b.is_ascii_uppercase() && prev.is_ascii_lowercase();
            let acronym_end =
                b.is_ascii_uppercase() && prev.is_ascii_uppercase() && name.get(self.pos + 1).is_some_and(u8::is_ascii_lowercase);
            if camel || acronym_end {
                break;
            }
            self.pos += 1;
        }
        Some(&name[start..self.pos])
    }
}

/// How a name was quoted: JSON (`"api_key"`), SQL or Python (`'password'`), or JSON inside a JSON
/// string (`\"api_key\"`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    Double,
    Single,
    Escaped,
}

/// The value after a secret-like name that ends at `name_end`, if there is one.
fn value_after(text: &[u8], name: &[u8], name_end: usize) -> Option<Span> {
    let mut p = name_end;
    let name_quote = match text.get(p) {
        Some(b'"') => Some(Quote::Double),
        Some(b'\'') => Some(Quote::Single),
        Some(b'\\') if text.get(p + 1) == Some(&b'"') => Some(Quote::Escaped),
        _ => None,
    };
    p += match name_quote {
        Some(Quote::Escaped) => 2,
        Some(_) => 1,
        None => 0,
    };
    let before_gap = p;
    p += spaces(text, p);
    let separator = match text.get(p) {
        Some(&b @ (b'=' | b':')) => b,
        // No separator: `PASSWORD 'hunter2'` or `token 8f3kQ…`, after an unquoted name and a space.
        _ if name_quote.is_none() && p > before_gap => return bare_value(text, p),
        _ => return None,
    };
    p += 1;
    // "=>" (Ruby, Perl, PHP) and ":=" (Go, Pascal).
    if matches!((separator, text.get(p)), (b'=', Some(b'>')) | (b':', Some(b'='))) {
        p += 1;
    }
    let gap = spaces(text, p);
    p += gap;
    let authorization = ends_with_ci(name, b"authorization");
    let span = match quoted_at(text, p) {
        Some(mut span) => {
            if authorization {
                span.start = after_scheme(text, span.start, span.end);
            }
            span
        }
        // A JSON name whose value is not a string (a number, `true`, `null`, an object): a marker
        // in its place would not be JSON.
        None if matches!(name_quote, Some(Quote::Double | Quote::Escaped)) => return None,
        None => {
            let start = if authorization { after_scheme(text, p, text.len()) } else { p };
            let end = start + run_len(text, start, |b| !ends_unquoted(b));
            let value = &text[start..end];
            // A call (`password = crypt($1, …)`) is not a value.
            let call = text.get(end) == Some(&b'(');
            // "password policy: strict", "Password: required": a colon, a space and one short
            // lowercase word read as prose. YAML's `password: hunter` is missed for it;
            // `password: hunter2` and `password=hunter` are not.
            let prose = separator == b':' && gap > 0 && value.len() < 16 && value.iter().all(u8::is_ascii_lowercase);
            if call || prose {
                return None;
            }
            Span { start, end }
        }
    };
    let value = &text[span.start..span.end];
    // "Authorization: Bearer" with nothing after it names a scheme, not a credential.
    let scheme_only = authorization && AUTH_SCHEMES.iter().any(|s| value.eq_ignore_ascii_case(s));
    (!is_placeholder(value) && !scheme_only).then_some(span)
}

/// A value after a name and whitespace: a quoted string, or a random-looking token.
fn bare_value(text: &[u8], p: usize) -> Option<Span> {
    if let Some(span) = quoted_at(text, p) {
        return (!is_placeholder(&text[span.start..span.end])).then_some(span);
    }
    let is_token_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'=' | b'-');
    let end = p + run_len(text, p, is_token_byte);
    let token = &text[p..end];
    (token.len() >= MIN_BARE_LEN && entropy(token) >= MIN_BARE_ENTROPY).then_some(Span { start: p, end })
}

/// The inside of a quoted value opening at `p`: `"…"` (backslash escapes kept whole), `'…'`, or
/// `\"…\"` inside a JSON string. It ends at the closing quote, a line break or the end of the
/// text: a value cut short is still a value.
fn quoted_at(text: &[u8], p: usize) -> Option<Span> {
    let (quote, start) = match text.get(p) {
        Some(b'"') => (b'"', p + 1),
        Some(b'\'') => (b'\'', p + 1),
        Some(b'\\') if text.get(p + 1) == Some(&b'"') => (b'\\', p + 2),
        _ => return None,
    };
    let mut j = start;
    while j < text.len() {
        match text[j] {
            b'\\' if quote == b'"' && j + 1 < text.len() => j += 2,
            // A lone backslash at the end, or in quotes where it escapes nothing: stop before it.
            b'\\' => break,
            b'\n' | b'\r' => break,
            // SQL doubles a quote inside single quotes: 'it''s'.
            b'\'' if quote == b'\'' && text.get(j + 1) == Some(&b'\'') => j += 2,
            b if b == quote => break,
            _ => j += 1,
        }
    }
    Some(Span { start, end: j.min(text.len()) })
}

/// After an authentication scheme (`Bearer`, `Basic`, `Token`, …) and its spaces, if a credential
/// follows before `limit`; else `p`.
fn after_scheme(text: &[u8], p: usize, limit: usize) -> usize {
    let scheme = run_len(text, p, |b| b.is_ascii_alphabetic());
    let gap = spaces(text, p + scheme);
    let credential = p + scheme + gap;
    if scheme > 0 && gap > 0 && credential < limit && !ends_unquoted(text[credential]) {
        credential
    } else {
        p
    }
}

/// Bytes that end an unquoted value: whitespace and the punctuation that separates fields in
/// query strings, headers, JSON, logs and SQL.
fn ends_unquoted(b: u8) -> bool {
    b.is_ascii_whitespace()
        || b.is_ascii_control()
        || matches!(b, b'&' | b';' | b',' | b'"' | b'\'' | b'\\' | b'(' | b')' | b']' | b'}' | b'<' | b'>' | b'`')
}

fn spaces(text: &[u8], p: usize) -> usize {
    run_len(text, p, |b| b == b' ' || b == b'\t')
}

/// `***`, `xxxx`, `<redacted>`, `[secret]` (a marker masking already put there), `{{ vault }}`,
/// `${DB_PASSWORD}`, `$DB_PASSWORD`, `$1` (an SQL parameter), `%s`, `hash:…` (the hash style's
/// output), `null`, `true` and the like.
fn is_placeholder(value: &[u8]) -> bool {
    let Some(&first) = value.first() else { return true };
    let env_or_parameter = first == b'$'
        && (value.len() == 1 || value[1] == b'{' || value[1..].iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'));
    value.iter().all(|&b| matches!(b, b'*' | b'x' | b'X' | b'.' | b'#' | b'?' | b'-'))
        || matches!(first, b'<' | b'[' | b'{' | b'(' | b'%')
        || env_or_parameter
        || value.starts_with(b"hash:")
        || PLACEHOLDER_WORDS.iter().any(|w| value.eq_ignore_ascii_case(w))
}
