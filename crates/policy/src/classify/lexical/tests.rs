//! PostgreSQL's reading of text, stretch by stretch, and where sqlparser's agrees with it.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::Tokenizer;

use super::*;

/// The stretches PostgreSQL finds in `text`, each as `kind:text`, and the code semicolons; or
/// `None` when PostgreSQL refuses the text.
fn postgres_reading(text: &str) -> Option<(Vec<String>, usize)> {
    let mut scanner = Scanner::new(text.as_bytes());
    let mut found = Vec::new();
    while let Some(stretch) = scanner.next_stretch().ok()? {
        let kind = match stretch.kind {
            StretchKind::Constant => "c",
            StretchKind::QuotedIdentifier => "i",
            StretchKind::Comment => "#",
        };
        found.push(format!("{kind}:{}", &text[stretch.start..stretch.end]));
    }
    Some((found, scanner.semicolons))
}

#[test]
fn postgres_cuts_text_into_code_strings_identifiers_and_comments() {
    let check = |text: &str, stretches: &[&str], semicolons: usize| {
        assert_eq!(postgres_reading(text), Some((stretches.iter().map(|s| s.to_string()).collect(), semicolons)), "{text:?}");
    };
    check("select 1", &[], 0);
    check("select 'a''b', 'c\\'; d", &["c:'a''b'", "c:'c\\'"], 1);
    check("select E'c\\'d', e'\\\\'; x", &["c:E'c\\'d'", "c:e'\\\\'"], 1);
    check("select B'01', X'ff', N'n', U&'u', b'1''0'", &["c:B'01'", "c:X'ff'", "c:N'n'", "c:U&'u'", "c:b'1'", "c:'0'"], 0);
    check("select xE'a', \"E\"'b'", &["c:'a'", "i:\"E\"", "c:'b'"], 0);
    check("select $$a;b$$, $t$ $$ $T$ $t$; x", &["c:$$a;b$$", "c:$t$ $$ $T$ $t$"], 1);
    check("select $a$b$$a$, $_1$x$_1$, $é$y$é$", &["c:$a$b$$a$", "c:$_1$x$_1$", "c:$é$y$é$"], 0);
    check("select \"a\"\"b\", U&\"c\"; d", &["i:\"a\"\"b\"", "i:U&\"c\""], 1);
    check("a -- c;\r\nb /* x /* y; */ z */ c", &["#:-- c;", "#:/* x /* y; */ z */"], 0);
    check("a /*/ b */ c /*/*/ d */ */", &["#:/*/ b */", "#:/*/*/ d */ */"], 0);
    check("1--x\r;2", &["#:--x"], 1);
    // Parameters, `$` inside identifiers and a lone `$` are code.
    check("select $1a$x$1a$; y", &[], 1);
    check("select x$a$, y$a$; z", &[], 1);
    check("select $ x, $a b", &[], 0);
    // A number ends where letters start: `1e'…'` is 1 and an E'…' string.
    check("select 1e'\\'', 1.5e-3, 0x'ab', 1e5'x'", &["c:e'\\''", "c:x'ab'", "c:'x'"], 0);
    // A string continued after a line break keeps its first part's rules.
    check("select E'a'\n'\\'' ; b; --'", &["c:E'a'", "c:'\\''", "#:--'"], 2);
    check("select E'a' -- c\n  '\\'', 'd'", &["c:E'a'", "#:-- c", "c:'\\''", "c:'d'"], 0);
    check("select E'a' '\\'' ; b; --'", &["c:E'a'", "c:'\\'' ; b; --'"], 0);
    check("select B'1'\n'0''1'", &["c:B'1'", "c:'0'", "c:'1'"], 0);
}

#[test]
fn postgres_refuses_what_does_not_end() {
    for text in ["select 'a", "select E'a\\'", "select \"a", "select $$a$", "select $a$ $$", "/* a /* b */", "select B'1"] {
        assert_eq!(postgres_reading(text), None, "{text:?}");
    }
}

/// Texts sqlparser reads as PostgreSQL does, and texts it reads differently.
#[test]
fn sqlparser_agrees_or_the_text_is_read_differently() {
    let alike = |text: &str| {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, text).tokenize_with_location().expect("sqlparser reads it");
        read_alike(text, &tokens)
    };
    for text in [
        "select 1",
        "select 'a''b', E'c\\'d', $$e$$, $t$f$$t$, \"g\"\"h\", B'01', X'ff', N'n', U&'u' -- x",
        "select 'é' /* ü */, \"ö\"\n, 'x', café, $ü$ü$ü$ from t; select 'ß'",
        "select 1; --x\r\ndrop table t; /* a /* b */ */",
        "select 'a'\n'b'",
        "select 0x1F, 1e5, .5, $1, x$y",
        "select 1 AS x$a$; drop table t; select 1 AS y$a$",
    ] {
        assert!(alike(text), "{text:?}");
    }
    for text in [
        "PREPARE p(int) AS SELECT $1a$; DROP TABLE t; --$1a$",
        "SELECT E'a'\n'\\'' ; DROP TABLE t; --'",
        "SELECT B'01''; DROP TABLE t; --'",
        "SELECT 0x'ab'",
        "SELECT $€$ x $€$",
        "SELECT U&\"a\"",
    ] {
        assert!(!alike(text), "{text:?}");
    }
}
