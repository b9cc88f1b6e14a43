//! MySQL and MariaDB text, classified as PostgreSQL text is (the same classes and tables), read
//! with sqlparser's MySQL dialect and MySQL's own lexical rules: backquoted names, `#` comments,
//! `--` a comment only before a space.
//!
//! What the server makes of some text depends on settings witness cannot see, so such text is
//! `unparsed`, the riskiest class: a `/*! … */` or `/*M! … */` comment, whose text MySQL and
//! MariaDB run; a backslash in a string (an escape, or under `NO_BACKSLASH_ESCAPES` a plain
//! character that ends the string elsewhere); a double-quoted string (a string, or under
//! `ANSI_QUOTES` a name).
//!
//! MySQL's own statements: `REPLACE` inserts and deletes (the row it replaces); `INSERT … ON
//! DUPLICATE KEY UPDATE` inserts and updates; `USE` changes what unqualified names mean, as a
//! setting does (`set`); `LOAD DATA` reads a file into a table and does not parse (`unparsed`).

use sqlparser::ast::{OnInsert, Statement as Ast};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::{classify_statement, SqlClass, Statement};

/// Classifies every statement of MySQL text. Text that does not parse, or that the server could
/// read otherwise than witness does, is one statement of class `unparsed`.
pub fn classify_mysql(sql: &str) -> Vec<Statement> {
    match parse(sql) {
        Ok(statements) => statements.iter().map(classify_one).collect(),
        Err(because) => vec![Statement::unparsed(because)],
    }
}

fn parse(sql: &str) -> Result<Vec<Ast>, String> {
    let dialect = MySqlDialect {};
    // Looked for in the whole text, strings too: sqlparser reads such a comment's text as SQL
    // whatever version it names, and the server runs it or not by its version.
    if sql.contains("/*!") || sql.contains("/*M!") {
        return Err("MySQL runs the text of a /*! */ comment if its version says so, which witness cannot tell".into());
    }
    // Strings as written (escapes not undone), so that a backslash in one shows.
    let raw = Tokenizer::new(&dialect, sql).with_unescape(false).tokenize().map_err(|e| format!("its text does not tokenize: {e}"))?;
    for token in &raw {
        match token {
            Token::SingleQuotedString(text) | Token::NationalStringLiteral(text) if text.contains('\\') => {
                return Err("a string holds a backslash, which MySQL reads one of two ways (sql_mode NO_BACKSLASH_ESCAPES)".into());
            }
            Token::DoubleQuotedString(_) => {
                return Err("a double-quoted string is a string or a name, as MySQL's sql_mode ANSI_QUOTES says".into());
            }
            _ => {}
        }
    }
    Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| format!("the SQL parser does not know it: {e}"))
}

fn classify_one(statement: &Ast) -> Statement {
    let mut classified = classify_statement(statement);
    let classes = &mut classified.classes;
    match statement {
        Ast::Insert(insert) => {
            if insert.replace_into {
                classes.insert(SqlClass::Delete);
            }
            if matches!(insert.on, Some(OnInsert::DuplicateKeyUpdate(_))) {
                classes.insert(SqlClass::Update);
            }
        }
        Ast::Use(_) => {
            classes.remove(&SqlClass::Other);
            classes.insert(SqlClass::Set);
        }
        _ => {}
    }
    classified.tables = classified.tables.into_iter().map(|table| table.replace('`', "")).collect();
    classified
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(sql: &str) -> Vec<Vec<&'static str>> {
        classify_mysql(sql).iter().map(|s| s.classes.iter().map(|c| c.as_str()).collect()).collect()
    }

    #[test]
    fn mysql_statements_get_their_classes_and_tables() {
        assert_eq!(classes("SELECT * FROM `app`.`customers` WHERE id = 1"), [["select"]]);
        assert_eq!(classify_mysql("SELECT * FROM `app`.`customers`")[0].tables, ["app.customers"]);
        assert_eq!(classes("DELETE FROM customers"), [vec!["delete", "delete-without-where"]]);
        assert_eq!(classes("DROP TABLE customers"), [vec!["ddl", "drop"]]);
        assert_eq!(classes("REPLACE INTO customers (id) VALUES (1)"), [vec!["insert", "delete"]]);
        assert_eq!(classes("INSERT INTO t (id) VALUES (1) ON DUPLICATE KEY UPDATE n = n + 1"), [vec!["insert", "update"]]);
        assert_eq!(classes("USE app"), [["set"]]);
        assert_eq!(classes("SHOW TABLES"), [["select"]]);
        assert_eq!(classes("SELECT 1 # a comment\n; DELETE FROM t WHERE id = 2"), [vec!["select"], vec!["delete"]]);
        // `--` without a space after it is two minus signs, not a comment.
        assert_eq!(classes("SELECT 1 --1\n"), [["select"]]);
        assert_eq!(classes("SELECT 1 -- ; DROP TABLE t\n"), [["select"]]);
    }

    #[test]
    fn text_the_server_may_read_otherwise_is_unparsed() {
        for sql in [
            "SELECT 1 /*!50000 ; DROP TABLE customers */",
            "SELECT 1 /*M!100000 , (DELETE FROM t) */",
            r"SELECT 'it\'s' ; DROP TABLE t -- '",
            "SELECT * FROM t WHERE name = \"x\"",
            "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t",
            "SELEC 1",
        ] {
            assert_eq!(classes(sql), [["unparsed"]], "{sql}");
        }
        // A backquoted name, a plain comment and a quote inside a string are fine.
        assert_eq!(classes("SELECT `a\"b` FROM t /* note */ WHERE c = 'say \"hi\"'"), [["select"]]);
    }
}
