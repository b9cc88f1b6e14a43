//! MySQL's `LOAD DATA LOCAL INFILE`, which sqlparser does not read: the client sends a file of
//! its own, which the server loads into a table. Only its plain form is read, and only where
//! MySQL's settings cannot change how it reads:
//!
//! ```text
//! LOAD DATA [LOW_PRIORITY | CONCURRENT] LOCAL INFILE 'file' [REPLACE | IGNORE]
//!     INTO TABLE [schema.]table [CHARACTER SET name]
//!     [{FIELDS | COLUMNS} [TERMINATED BY '…'] [[OPTIONALLY] ENCLOSED BY '…'] [ESCAPED BY '…']]
//!     [LINES [STARTING BY '…'] [TERMINATED BY '…']] [IGNORE n {LINES | ROWS}]
//!     [(column or @variable, …)] [;]
//! ```
//!
//! A `SET` clause (expressions that may read other tables), `PARTITION`, comments, double quotes
//! and a backslash before a closing quote (which ends the string or not by `sql_mode`) make the
//! text `unparsed`, as does a file name with a backslash in it. Other backslash escapes (`'\t'`)
//! end their string in the same place either way.

use std::collections::BTreeSet;

use super::{Copies, SqlClass, Statement};

/// The statement, when `sql` is a `LOAD DATA`: classified if it is a LOCAL one witness reads
/// whole, `unparsed` with the reason if not. None for any other text.
pub(super) fn load_data(sql: &str) -> Option<Statement> {
    let tokens = lex(sql);
    let starts = match &tokens {
        Ok(tokens) => tokens.len() >= 2 && tokens[0].is_word("LOAD") && tokens[1].is_word("DATA"),
        // Text that does not lex here is a LOAD DATA only if it begins so.
        Err(_) => {
            let words: Vec<&str> = sql.split_ascii_whitespace().take(2).collect();
            words.len() == 2 && words[0].eq_ignore_ascii_case("LOAD") && words[1].eq_ignore_ascii_case("DATA")
        }
    };
    if !starts {
        return None;
    }
    Some(tokens.and_then(|tokens| read(&tokens)).unwrap_or_else(|why| Statement::unparsed(format!("LOAD DATA {why}"))))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An unquoted word: a keyword, a name or a number.
    Word(String),
    /// A backquoted name, its quotes undone.
    Name(String),
    /// A single-quoted string as the server reads it with backslash escapes; `plain` when it has
    /// no backslash at all (so reads alike under `NO_BACKSLASH_ESCAPES`).
    Text {
        value: String,
        plain: bool,
    },
    Mark(char),
}

impl Token {
    fn is_word(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(word) if word.eq_ignore_ascii_case(keyword))
    }
}

fn lex(sql: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' => {}
            '#' => return Err("with a comment is not read".into()),
            '-' if sql[at..].starts_with("--") => return Err("with a comment is not read".into()),
            '/' if sql[at..].starts_with("/*") => return Err("with a comment is not read".into()),
            '"' => return Err("with a double quote (a string or a name, as sql_mode ANSI_QUOTES says) is not read".into()),
            '\'' => {
                let mut value = String::new();
                let mut plain = true;
                loop {
                    match chars.next() {
                        None => return Err("has a string that does not end".into()),
                        Some((_, '\'')) if chars.peek().is_some_and(|(_, c)| *c == '\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        Some((_, '\'')) => break,
                        Some((_, '\\')) => {
                            plain = false;
                            match chars.next() {
                                // Under NO_BACKSLASH_ESCAPES this quote ends the string.
                                Some((_, '\'')) | None => {
                                    return Err("has a backslash before a quote, which ends its string or not as sql_mode says".into())
                                }
                                Some((_, escaped)) => value.push(unescape(escaped)),
                            }
                        }
                        Some((_, other)) => value.push(other),
                    }
                }
                tokens.push(Token::Text { value, plain });
            }
            '`' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        None => return Err("has a quoted name that does not end".into()),
                        Some((_, '`')) if chars.peek().is_some_and(|(_, c)| *c == '`') => {
                            chars.next();
                            name.push('`');
                        }
                        Some((_, '`')) => break,
                        Some((_, other)) => name.push(other),
                    }
                }
                tokens.push(Token::Name(name));
            }
            '(' | ')' | ',' | '.' | ';' | '@' => tokens.push(Token::Mark(c)),
            c if c.is_ascii_alphanumeric() || c == '_' || c == '$' => {
                let mut word = String::from(c);
                while let Some((_, next)) = chars.next_if(|(_, n)| n.is_ascii_alphanumeric() || *n == '_' || *n == '$') {
                    word.push(next);
                }
                if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    return Err("with a string after a prefix (_charset'…', x'…') is not read".into());
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(format!("with {other:?} outside a string is not read")),
        }
    }
    Ok(tokens)
}

/// What MySQL makes of `\c` in a string.
fn unescape(c: char) -> char {
    match c {
        '0' => '\0',
        'b' => '\x08',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'Z' => '\x1a',
        other => other,
    }
}

/// Reads the tokens as the statement above.
fn read(tokens: &[Token]) -> Result<Statement, String> {
    let mut at = Cursor { tokens, at: 2 };
    at.optional_one_of(&["LOW_PRIORITY", "CONCURRENT"]);
    if !at.optional("LOCAL") {
        return Err("without LOCAL reads a file on the database server; it is not read".into());
    }
    at.expect("INFILE")?;
    let file = match at.next() {
        Some(Token::Text { value, plain: true }) => value.clone(),
        Some(Token::Text { .. }) => return Err("names its file with a backslash, which MySQL reads one of two ways".into()),
        _ => return Err("has no file name after INFILE".into()),
    };
    let mut classes = BTreeSet::from([SqlClass::LoadLocal, SqlClass::Insert]);
    if at.optional("REPLACE") {
        // Rows with the key of an existing one replace it.
        classes.insert(SqlClass::Delete);
    } else {
        at.optional("IGNORE");
    }
    at.expect("INTO")?;
    at.expect("TABLE")?;
    let mut table = at.name()?;
    if at.peek() == Some(&Token::Mark('.')) {
        at.next();
        table = format!("{table}.{}", at.name()?);
    }
    if at.peek().is_some_and(|t| t.is_word("PARTITION")) {
        return Err("with PARTITION is not read".into());
    }
    if at.optional("CHARACTER") {
        at.expect("SET")?;
        at.charset()?;
    } else if at.optional("CHARSET") {
        at.charset()?;
    }
    if at.optional_one_of(&["FIELDS", "COLUMNS"]) {
        let mut any = false;
        loop {
            if at.optional("TERMINATED") || at.optional("ESCAPED") {
                at.expect("BY")?;
                at.text()?;
            } else if at.optional("OPTIONALLY") {
                at.expect("ENCLOSED")?;
                at.expect("BY")?;
                at.text()?;
            } else if at.optional("ENCLOSED") {
                at.expect("BY")?;
                at.text()?;
            } else {
                break;
            }
            any = true;
        }
        if !any {
            return Err("has FIELDS without TERMINATED, ENCLOSED or ESCAPED BY".into());
        }
    }
    if at.optional("LINES") {
        let mut any = false;
        while at.optional("STARTING") || at.optional("TERMINATED") {
            at.expect("BY")?;
            at.text()?;
            any = true;
        }
        if !any {
            return Err("has LINES without STARTING or TERMINATED BY".into());
        }
    }
    if at.optional("IGNORE") {
        match at.next() {
            Some(Token::Word(n)) if n.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err("has IGNORE without a number of lines".into()),
        }
        if !at.optional_one_of(&["LINES", "ROWS"]) {
            return Err("has IGNORE n without LINES or ROWS".into());
        }
    }
    if at.peek() == Some(&Token::Mark('(')) {
        at.next();
        loop {
            if at.peek() == Some(&Token::Mark('@')) {
                at.next();
            }
            at.name()?;
            match at.next() {
                Some(Token::Mark(',')) => {}
                Some(Token::Mark(')')) => break,
                _ => return Err("has a column list witness cannot read".into()),
            }
        }
    }
    if at.peek().is_some_and(|t| t.is_word("SET")) {
        return Err("with a SET clause (expressions that may read other tables) is not read".into());
    }
    if at.peek() == Some(&Token::Mark(';')) {
        at.next();
    }
    if at.peek().is_some() {
        return Err("has more after its end (another statement, or a clause witness does not read)".into());
    }
    let mut tables = vec![table.to_lowercase()];
    if tables[0] != table {
        tables.push(table);
    }
    Ok(Statement {
        classes,
        tables,
        copies: Copies::Nothing,
        unparsed_because: None,
        hides_origins: false,
        kill: false,
        local_file: Some(file),
    })
}

struct Cursor<'t> {
    tokens: &'t [Token],
    at: usize,
}

impl<'t> Cursor<'t> {
    fn peek(&self) -> Option<&'t Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<&'t Token> {
        let token = self.tokens.get(self.at);
        self.at += 1;
        token
    }

    fn optional(&mut self, keyword: &str) -> bool {
        let found = self.peek().is_some_and(|t| t.is_word(keyword));
        if found {
            self.at += 1;
        }
        found
    }

    fn optional_one_of(&mut self, keywords: &[&str]) -> bool {
        keywords.iter().any(|keyword| self.optional(keyword))
    }

    fn expect(&mut self, keyword: &str) -> Result<(), String> {
        if self.optional(keyword) {
            Ok(())
        } else {
            Err(format!("is not read: {keyword} was expected"))
        }
    }

    fn name(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(word)) => Ok(word.clone()),
            // `a.b` in backquotes would read as table b of schema a.
            Some(Token::Name(name)) if name.contains('.') => Err("has a quoted name with a dot in it, which is not read".into()),
            Some(Token::Name(name)) => Ok(name.clone()),
            _ => Err("is not read: a name was expected".into()),
        }
    }

    fn text(&mut self) -> Result<(), String> {
        match self.next() {
            Some(Token::Text { .. }) => Ok(()),
            _ => Err("is not read: a string was expected".into()),
        }
    }

    fn charset(&mut self) -> Result<(), String> {
        match self.next() {
            Some(Token::Word(_) | Token::Name(_) | Token::Text { .. }) => Ok(()),
            _ => Err("is not read: a character set was expected".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(statement: &Statement) -> Vec<&'static str> {
        statement.classes.iter().map(|c| c.as_str()).collect()
    }

    #[test]
    fn plain_local_loads_name_their_file_and_table() {
        let sql = "LOAD DATA LOCAL INFILE '/tmp/people.csv' INTO TABLE app.People FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' IGNORE 1 LINES (id, @name, `e-mail`);";
        let statement = load_data(sql).unwrap();
        assert_eq!(statement.unparsed_because, None);
        assert_eq!(names(&statement), ["insert", "load-local"]);
        assert_eq!(statement.local_file.as_deref(), Some("/tmp/people.csv"));
        assert_eq!(statement.tables, ["app.people", "app.People"]);
        let replace = load_data("load data low_priority local infile 'a''b' replace into table `t` character set utf8mb4").unwrap();
        assert_eq!(names(&replace), ["insert", "delete", "load-local"]);
        assert_eq!(replace.local_file.as_deref(), Some("a'b"));
    }

    #[test]
    fn loads_witness_cannot_read_exactly_are_unparsed() {
        for sql in [
            "LOAD DATA INFILE '/var/lib/mysql-files/x' INTO TABLE t",
            "LOAD DATA LOCAL INFILE 'x' INTO TABLE t FIELDS TERMINATED BY '\\''; DROP TABLE t; -- '",
            "LOAD DATA LOCAL INFILE 'x' INTO TABLE t; DROP TABLE t",
            "LOAD DATA LOCAL INFILE 'x' INTO TABLE t SET a = (SELECT secret FROM s)",
            "LOAD DATA LOCAL INFILE 'x' INTO TABLE t /* c */",
            "LOAD DATA LOCAL INFILE \"x\" INTO TABLE t",
            "LOAD DATA LOCAL INFILE 'C:\\\\x' INTO TABLE t",
            "LOAD DATA LOCAL INFILE 'x' INTO TABLE t PARTITION (p0)",
            "LOAD DATA LOCAL INFILE _utf8'x' INTO TABLE t",
            "LOAD DATA LOCAL INFILE 'x' INTO TABLE t FIELDS",
            "LOAD  DATA LOCAL INFILE 'x' INTO TABLE t\u{a0}",
            "LOAD DATA LOCAL INFILE 'x' INTO TABLE `app.people`",
        ] {
            let statement = load_data(sql).unwrap_or_else(|| panic!("{sql}"));
            assert_eq!(names(&statement), ["unparsed"], "{sql}");
            assert_eq!(statement.local_file, None, "{sql}");
        }
        assert!(load_data("SELECT 'LOAD DATA LOCAL INFILE'").is_none());
        assert!(load_data("LOADDATA").is_none());
    }
}
