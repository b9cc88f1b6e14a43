//! How the target reads a statement's text, so that witness reads it the same way. PostgreSQL
//! reads SQL text under two session settings that a client may change at any time:
//!
//! - `client_encoding`: the text is converted from it before it is parsed. In SJIS, BIG5, GBK,
//!   UHC, GB18030 and JOHAB the second byte of a character may be an ASCII byte, a backslash or a
//!   quote among them: `0x95 0x5C` is one character to PostgreSQL and an invalid byte and a
//!   backslash to a reader that takes the bytes as UTF-8. In every other encoding PostgreSQL
//!   supports, an ASCII byte is always that ASCII character, so quotes, backslashes, semicolons
//!   and keywords sit where a UTF-8 reading puts them.
//! - `standard_conforming_strings`: when off, a backslash in an ordinary `'...'` string escapes
//!   the next character, so `'\'; DROP TABLE t; --'` is one string.
//!
//! Text made only of ASCII bytes without a backslash reads the same under every setting; most
//! statements are such text and never look at the settings. For the rest, witness reads the text
//! when it knows the settings the target will parse it under, and otherwise reports it as
//! unreadable, to be decided as a statement that does not parse. This module is pure: the settings
//! come from the target's ParameterStatus messages, tracked in `state`.

use std::borrow::Cow;

/// The session settings that change how PostgreSQL reads SQL text, as the target last reported them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub standard_conforming_strings: bool,
    /// The client encoding's name as PostgreSQL reports it (`UTF8`, `SJIS`, ...).
    pub client_encoding: String,
}

impl Default for Settings {
    /// PostgreSQL's defaults since 9.1 (and what every target reports at startup).
    fn default() -> Settings {
        Settings { standard_conforming_strings: true, client_encoding: "UTF8".to_string() }
    }
}

/// Why witness cannot read a text as the target will.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// The client encoding lets a multi-byte character hold an ASCII byte.
    Encoding,
    /// `standard_conforming_strings` is off and the text holds a backslash.
    BackslashEscapes,
    /// The text depends on settings a statement sent just before it may have changed, and the
    /// target reports changed settings only when its pipeline ends.
    SettingsInFlight,
}

/// Encodings (and PostgreSQL's aliases for them) in which the bytes of a multi-byte character can
/// include ASCII bytes.
const ASCII_UNSAFE_ENCODINGS: &[&str] = &[
    "SJIS",
    "SHIFT_JIS",
    "SHIFT_JIS_2004",
    "MSKANJI",
    "WIN932",
    "BIG5",
    "WIN950",
    "GBK",
    "WIN936",
    "CP936",
    "UHC",
    "WIN949",
    "GB18030",
    "JOHAB",
];

impl Unreadable {
    /// The reason, as recorded and as told to the client.
    pub fn describe(self) -> &'static str {
        match self {
            Unreadable::Encoding => "the session's client_encoding lets a character hold a quote or backslash byte",
            Unreadable::BackslashEscapes => "standard_conforming_strings is off and the text holds a backslash",
            Unreadable::SettingsInFlight => "a statement earlier in the pipeline may change how the text is read",
        }
    }
}

/// Whether reading `text` depends on the session's settings at all.
pub fn depends_on_settings(text: &[u8]) -> bool {
    text.iter().any(|&b| b >= 0x80 || b == b'\\')
}

/// Reads `text` as the target does under `settings`: the text, or why witness cannot read it so.
/// Text that does not depend on settings is read without looking at them.
pub fn read<'a>(text: &'a [u8], settings: &Settings) -> Result<Cow<'a, str>, Unreadable> {
    if !depends_on_settings(text) {
        // ASCII without a backslash: valid UTF-8 as it is.
        return Ok(String::from_utf8_lossy(text));
    }
    if !text.is_ascii() && is_ascii_unsafe(&settings.client_encoding) {
        return Err(Unreadable::Encoding);
    }
    if !settings.standard_conforming_strings && text.contains(&b'\\') {
        return Err(Unreadable::BackslashEscapes);
    }
    // In an ASCII-safe encoding, a lossy UTF-8 reading never takes an ASCII byte into another
    // character: non-ASCII bytes become letters or U+FFFD, the SQL's structure stays.
    Ok(String::from_utf8_lossy(text))
}

fn is_ascii_unsafe(encoding: &str) -> bool {
    ASCII_UNSAFE_ENCODINGS.iter().any(|unsafe_one| unsafe_one.eq_ignore_ascii_case(encoding))
}

/// Whether running `text` may create, drop or redefine prepared statements or cursors by name
/// (PREPARE, DEALLOCATE, DISCARD, DECLARE, CLOSE): a cheap, conservative scan for the keywords,
/// wherever they are (a string or comment mentioning one counts too).
pub fn may_change_names(text: &[u8]) -> bool {
    const KEYWORDS: [&[u8]; 5] = [b"prepare", b"deallocate", b"discard", b"declare", b"close"];
    text.iter().enumerate().any(|(at, &b)| {
        matches!(b | 0x20, b'p' | b'd' | b'c')
            && KEYWORDS.iter().any(|keyword| text.get(at..at + keyword.len()).is_some_and(|w| w.eq_ignore_ascii_case(keyword)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &[u8], scs: bool, encoding: &str, expect: Result<&str, Unreadable>) {
        let settings = Settings { standard_conforming_strings: scs, client_encoding: encoding.into() };
        assert_eq!(read(text, &settings).as_deref().map_err(|e| *e), expect, "{text:?} under scs={scs} {encoding}");
    }

    #[test]
    fn text_is_read_as_the_target_reads_it_or_not_at_all() {
        check(b"select 1", false, "SJIS", Ok("select 1"));
        check(b"select '\\'; drop table t; --'", true, "UTF8", Ok("select '\\'; drop table t; --'"));
        check(b"select '\\'; drop table t; --'", false, "UTF8", Err(Unreadable::BackslashEscapes));
        check(b"select E'\\x41'", false, "LATIN1", Err(Unreadable::BackslashEscapes));
        // 0x95 0x5C is one SJIS character; its second byte is not a backslash to PostgreSQL.
        check(b"select E'\x95\\'; drop table t; --'", true, "SJIS", Err(Unreadable::Encoding));
        check(b"select '\xa4\x40'", true, "big5", Err(Unreadable::Encoding));
        check("select 'ü'".as_bytes(), true, "UTF8", Ok("select 'ü'"));
        // LATIN1 bytes are letters: the structure of the text stays.
        check(b"select '\xfc'", true, "LATIN1", Ok("select '\u{fffd}'"));
        check(b"select '\xfc'", true, "EUC_JP", Ok("select '\u{fffd}'"));
    }

    #[test]
    fn name_changing_statements_are_found_and_others_are_not() {
        for text in
            ["PREPARE s AS select 1", "deallocate all", "DISCARD ALL", "declare c cursor for select 1", "close c", "select 1; Close c"]
        {
            assert!(may_change_names(text.as_bytes()), "{text}");
        }
        for text in ["select 1", "update t set a = 1", "fetch 10 from c", "execute s", ""] {
            assert!(!may_change_names(text.as_bytes()), "{text}");
        }
    }
}
