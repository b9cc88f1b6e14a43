//! The data format a COPY statement moves: text, CSV (with its header line, quote and escape
//! characters) or binary, read from the statement's options, so that rows of COPY data can be
//! counted as rows rather than as newlines. Pure: the statement text in, the format out.

use sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, Statement as Ast};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// How COPY data is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    /// Tab-separated lines; backslash escapes; a data newline is always escaped.
    Text { header: bool },
    /// Comma-separated lines; quoted fields may hold newlines.
    Csv { header: bool, quote: u8, escape: u8 },
    /// PostgreSQL's binary COPY format (a signature, then tuples of length-prefixed fields).
    Binary,
}

impl Default for CopyFormat {
    fn default() -> CopyFormat {
        CopyFormat::Text { header: false }
    }
}

/// The format of the first COPY statement in `sql` that moves data in the direction `to`
/// (`true`: COPY ... TO, out of the database; `false`: COPY ... FROM, into it). None when there is
/// no such statement or the text does not parse.
pub fn copy_format(sql: &str, to: bool) -> Option<CopyFormat> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    statements.iter().find_map(|statement| match statement {
        Ast::Copy { to: direction, options, legacy_options, .. } if *direction == to => Some(format_of(options, legacy_options)),
        _ => None,
    })
}

fn format_of(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> CopyFormat {
    let (mut csv, mut binary, mut header) = (false, false, false);
    let (mut quote, mut escape) = (None, None);
    for option in options {
        match option {
            CopyOption::Format(name) => {
                csv = name.value.eq_ignore_ascii_case("csv");
                binary = name.value.eq_ignore_ascii_case("binary");
            }
            CopyOption::Header(on) => header = *on,
            CopyOption::Quote(c) => quote = Some(*c),
            CopyOption::Escape(c) => escape = Some(*c),
            _ => {}
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => binary = true,
            CopyLegacyOption::Csv(csv_options) => {
                csv = true;
                for csv_option in csv_options {
                    match csv_option {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(c) => quote = Some(*c),
                        CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if binary {
        return CopyFormat::Binary;
    }
    if csv {
        // PostgreSQL takes single-byte quote and escape characters; the escape defaults to the quote.
        let quote = quote.and_then(ascii).unwrap_or(b'"');
        let escape = escape.and_then(ascii).unwrap_or(quote);
        return CopyFormat::Csv { header, quote, escape };
    }
    CopyFormat::Text { header }
}

fn ascii(c: char) -> Option<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, to: bool, expect: Option<CopyFormat>) {
        assert_eq!(copy_format(sql, to), expect, "{sql}");
    }

    #[test]
    fn copy_options_give_the_format() {
        use CopyFormat::*;
        check("COPY t FROM STDIN", false, Some(Text { header: false }));
        check("COPY t FROM STDIN WITH (FORMAT csv, HEADER true)", false, Some(Csv { header: true, quote: b'"', escape: b'"' }));
        check(
            "copy t from stdin with (format csv, quote '''', escape '\\')",
            false,
            Some(Csv { header: false, quote: b'\'', escape: b'\\' }),
        );
        check("COPY t FROM STDIN CSV HEADER", false, Some(Csv { header: true, quote: b'"', escape: b'"' }));
        check("COPY t FROM STDIN WITH (FORMAT binary)", false, Some(Binary));
        check("COPY t FROM STDIN BINARY", false, Some(Binary));
        check("COPY t TO STDOUT WITH (FORMAT csv)", true, Some(Csv { header: false, quote: b'"', escape: b'"' }));
        check("SELECT 1; COPY (SELECT 1) TO STDOUT", true, Some(Text { header: false }));
        check("COPY t TO STDOUT", false, None);
        check("SELECT 1", false, None);
    }
}
