//! Keys and tokens with a recognisable shape: AWS access keys, API tokens with a vendor prefix,
//! JSON Web Tokens and PEM private key blocks.
//!
//! Not here: tokens with no prefix or structure (a random string is only suspicious next to a
//! secret-like name, which is the `secret` detector's business), public keys and certificates
//! (not secret), and checking signatures or checksums some vendors embed in their tokens.

use super::{
    entropy, find_byte, find_bytes, find_first, has_byte, is_class, next_in_class, run_len, starts_with_at, word_end, word_start, Span,
    BASE64,
};

// === AWS ===

const AWS_KEY_ID_PREFIXES: [&[u8; 4]; 4] = [b"AKIA", b"ASIA", b"ABIA", b"ACCA"];

/// `AKIA` (or `ASIA`, `ABIA`, `ACCA`) and 16 capitals or digits, as a word of its own.
pub(super) fn find_aws_access_key_id(text: &[u8], from: usize) -> Option<Span> {
    let mut i = from;
    while let Some(start) = find_byte(text, b'A', i) {
        i = start + 1;
        let end = start + 20;
        let ok = end <= text.len()
            && AWS_KEY_ID_PREFIXES.iter().any(|p| text[start..].starts_with(&p[..]))
            && text[start + 4..end].iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && word_start(text, start)
            && word_end(text, end);
        if ok {
            return Some(Span { start, end });
        }
    }
    None
}

const AWS_SECRET_LEN: usize = 40;

/// Exactly 40 base64 characters standing alone, with capitals, small letters and digits, an
/// entropy of at least 4 bits per character, and at most three `/`. A hex digest (a git commit, a
/// SHA-1) has no capitals and at most 4 bits; a path such as
/// `usr/local/Share/Documents/Projects/Code1` passes the entropy test but has too many slashes
/// (a random key has four or more in fewer than 1 in 200 cases).
pub(super) fn find_aws_secret_key(text: &[u8], from: usize) -> Option<Span> {
    let mut run_start = from;
    while let Some(s) = next_in_class(text, run_start, BASE64) {
        run_start = s;
        if run_start + AWS_SECRET_LEN > text.len() {
            return None;
        }
        // Most runs are words, far shorter than a key: the last non-base64 byte of the next 40
        // shows that without reading the rest, and the next run starts after it.
        if let Some(gap) = text[run_start..run_start + AWS_SECRET_LEN].iter().rposition(|&b| !is_class(b, BASE64)) {
            run_start += gap + 1;
            continue;
        }
        let end = run_start + run_len(text, run_start, |b| is_class(b, BASE64));
        let candidate = run_start;
        run_start = end;
        // Only possible at `from`: the run began before it, so it is longer than what is left.
        let mid_run = candidate > 0 && is_class(text[candidate - 1], BASE64);
        // The letter of a "\n" escape before it is not part of the key.
        let start = if candidate > 0 && text[candidate - 1] == b'\\' { candidate + 1 } else { candidate };
        // Joined to a name by "_" or "-", or followed by base64 padding, it is part of something longer.
        let joined =
            mid_run || (candidate > 0 && matches!(text[candidate - 1], b'_' | b'-')) || matches!(text.get(end), Some(b'=' | b'_' | b'-'));
        let key = &text[start..end];
        if key.len() == AWS_SECRET_LEN
            && !joined
            && key.iter().any(u8::is_ascii_uppercase)
            && key.iter().any(u8::is_ascii_lowercase)
            && key.iter().any(u8::is_ascii_digit)
            && key.iter().filter(|&&b| b == b'/').count() <= 3
            && entropy(key) >= 4.0
        {
            return Some(Span { start, end });
        }
    }
    None
}

// === Prefixed API tokens ===

/// Known public prefixes, longest first: what the partial style shows.
const TOKEN_PREFIXES: [&str; 24] = [
    "github_pat_",
    "sk-proj-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "sk-ant-",
    "glpat-",
    "xoxb-",
    "xoxa-",
    "xoxp-",
    "xoxr-",
    "xoxs-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "sk-",
    "eyJ",
];

/// The shortest token: `xoxb-` and 10 bytes.
const MIN_API_KEY: usize = 15;

/// The first two letters of every prefix [`find_api_key`] knows (`github_pat_`, `ghp_`, `glpat-`,
/// `xoxb-`, `sk_live_`, `rk_test_`, `sk-`), as written: a text without one of these pairs holds no
/// API key, and the census that [`super::scan`] takes first can tell.
pub(super) const API_KEY_PAIRS: [&[u8; 2]; 6] = [b"gi", b"gh", b"gl", b"xo", b"sk", b"rk"];

/// GitHub (`ghp_` and 36 letters or digits; `github_pat_` and 82), GitLab (`glpat-` and 20 or
/// more), Slack (`xoxb-` and 10 or more), Stripe secret and restricted keys (`sk_live_` and 24
/// or more), OpenAI and Anthropic (`sk-`, `sk-proj-`, `sk-ant-` and 20 or more). The tokens
/// whose length is not fixed must hold a digit: generated tokens all but always do, and
/// hyphenated words after "sk-" do not.
pub(super) fn find_api_key(text: &[u8], from: usize) -> Option<Span> {
    let mut i = from;
    let is_anchor = |b: u8| b == b'_' || b == b'-';
    while let Some(anchor) = find_first(text, i, |word| has_byte(word, b'_') || has_byte(word, b'-'), is_anchor) {
        i = anchor + 1;
        // Each prefix has its first `_` or `-` two to six bytes in (`sk-`, `ghp_`, `xoxb-`,
        // `glpat-`, `github_pat_`): looking back from those, rather than at every letter, passes
        // over prose fast.
        for offset in 2..=6 {
            let Some(start) = anchor.checked_sub(offset).filter(|&s| s >= from) else { break };
            // A prefix starts a word, and not one of a hyphenated compound ("desk-sk-…").
            let starts =
                matches!(text[start], b'g' | b'x' | b's' | b'r') && word_start(text, start) && !(start > 0 && text[start - 1] == b'-');
            if starts && text.len() - start >= MIN_API_KEY {
                if let Some(end) = api_key_end(text, start) {
                    return Some(Span { start, end });
                }
            }
        }
    }
    None
}

fn api_key_end(text: &[u8], start: usize) -> Option<usize> {
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let dashed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let t = &text[start..];
    // (body start, the body's bytes, its least and greatest length, whether it needs a digit)
    let (body, class, min, max, needs_digit): (usize, &dyn Fn(u8) -> bool, usize, usize, bool) = if t.starts_with(b"github_pat_") {
        (11, &word, 82, 82, false)
    } else if t.len() > 4 && t.starts_with(b"gh") && matches!(t[2], b'p' | b'o' | b'u' | b's' | b'r') && t[3] == b'_' {
        (4, &alnum, 36, 36, false)
    } else if t.starts_with(b"glpat-") {
        (6, &dashed, 20, usize::MAX, true)
    } else if t.starts_with(b"xox") && matches!(t[3], b'b' | b'a' | b'p' | b'r' | b's') && t[4] == b'-' {
        (5, &|b: u8| b.is_ascii_alphanumeric() || b == b'-', 10, usize::MAX, true)
    } else if matches!(&t[..3], b"sk_" | b"rk_") && (t[3..].starts_with(b"live_") || t[3..].starts_with(b"test_")) {
        (8, &alnum, 24, usize::MAX, true)
    } else if t.starts_with(b"sk-") {
        (3, &dashed, 20, usize::MAX, true)
    } else {
        return None;
    };
    let n = run_len(text, start + body, class);
    let end = start + body + n;
    let body_bytes = &text[start + body..end];
    // The token must end here: a `_` or `-` its body does not take would make it part of a longer name.
    let stops = !matches!(text.get(end), Some(b) if dashed(*b));
    let ok = (min..=max).contains(&n) && stops && (!needs_digit || body_bytes.iter().any(u8::is_ascii_digit));
    ok.then_some(end)
}

/// The token's known public prefix and `***`: which kind of key, not which key.
pub(super) fn partial_token(matched: &str) -> String {
    let prefix = TOKEN_PREFIXES.iter().find(|p| matched.starts_with(*p)).copied().unwrap_or("");
    format!("{prefix}***")
}

// === JWT ===

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `eyJ….eyJ….signature`: a header and a payload that are base64url JSON objects (`{"` encodes as
/// `eyJ`), at least 10 characters each, and a signature that may be empty (`alg: none`). A fourth
/// dotted part makes it something else.
pub(super) fn find_jwt(text: &[u8], from: usize) -> Option<Span> {
    let mut i = from;
    while let Some(start) = find_bytes(text, b"eyJ", i) {
        i = start + 1;
        if word_start(text, start) && !(start > 0 && matches!(text[start - 1], b'-' | b'.')) {
            if let Some(end) = jwt_end(text, start) {
                return Some(Span { start, end });
            }
        }
    }
    None
}

fn jwt_end(text: &[u8], start: usize) -> Option<usize> {
    let header = run_len(text, start, is_base64url);
    let mut j = start + header;
    if header < 10 || text.get(j) != Some(&b'.') || !starts_with_at(text, j + 1, b"eyJ") {
        return None;
    }
    let payload = run_len(text, j + 1, is_base64url);
    j += 1 + payload;
    if payload < 10 || text.get(j) != Some(&b'.') {
        return None;
    }
    j += 1;
    j += run_len(text, j, is_base64url);
    let more = text.get(j) == Some(&b'.') && text.get(j + 1).is_some_and(|&b| is_base64url(b));
    (!more).then_some(j)
}

// === Private keys ===

/// `-----BEGIN … PRIVATE KEY-----` (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP … KEY BLOCK) through its
/// END line. Without an END line the key runs to the end of the value, or of the JSON string it
/// sits in: a truncated key is still a key. A BEGIN line with no key data after it is not a key.
pub(super) fn find_private_key(text: &[u8], from: usize) -> Option<Span> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut i = from;
    while let Some(start) = find_bytes(text, BEGIN, i) {
        i = start + 1;
        let label_start = start + BEGIN.len();
        let label_end = label_start + run_len(text, label_start, |b| b.is_ascii_uppercase() || b == b' ');
        let label = &text[label_start..label_end];
        if !starts_with_at(text, label_end, b"-----") || !(label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK")) {
            continue;
        }
        let body = label_end + 5;
        if !has_body(text, body) {
            continue;
        }
        let end = end_line(text, body, label).unwrap_or_else(|| value_end(text, body));
        return Some(Span { start, end });
    }
    None
}

/// Whether key data follows a BEGIN line (after line breaks, raw or as `\n` escapes): a bare
/// BEGIN line is a heading, and `-----BEGIN RSA PRIVATE KEY----- [redacted]` is what masking left.
fn has_body(text: &[u8], body: usize) -> bool {
    let mut j = body;
    loop {
        match text.get(j) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => j += 1,
            Some(b'\\') if matches!(text.get(j + 1), Some(b'n' | b'r' | b't')) => j += 2,
            Some(&b) => return is_class(b, BASE64),
            None => return false,
        }
    }
}

/// The end of the first `-----END <label>-----` at or after `from`.
fn end_line(text: &[u8], from: usize, label: &[u8]) -> Option<usize> {
    const END: &[u8] = b"-----END ";
    let mut i = from;
    while let Some(at) = find_bytes(text, END, i) {
        let label_at = at + END.len();
        if starts_with_at(text, label_at, label) && starts_with_at(text, label_at + label.len(), b"-----") {
            return Some(label_at + label.len() + 5);
        }
        i = at + 1;
    }
    None
}

/// Where the value holding an unterminated key ends: at the end of the text, or at the first
/// unescaped `"` (the end of the JSON string), never between a backslash and what it escapes.
fn value_end(text: &[u8], from: usize) -> usize {
    let mut j = from;
    while j < text.len() {
        match text[j] {
            b'\\' if j + 1 == text.len() => return j,
            b'\\' => j += 2,
            b'"' => return j,
            _ => j += 1,
        }
    }
    text.len()
}

/// The BEGIN line, so the kind of key shows, and a marker instead of the key.
pub(super) fn partial_private_key(matched: &str) -> String {
    let header = matched.find("-----BEGIN ").and_then(|start| {
        let after = start + "-----BEGIN ".len();
        let close = matched[after..].find("-----")?;
        Some(&matched[start..after + close + 5])
    });
    format!("{} [redacted]", header.unwrap_or("-----BEGIN PRIVATE KEY-----"))
}
