//! MySQL and MariaDB text, classified as PostgreSQL text is (the same classes and tables), read
//! with sqlparser's MySQL dialect and MySQL's own lexical rules: backquoted names, `#` comments,
//! `--` a comment only before a space. A statement whose result columns may come through a derived
//! table, a CTE, a set operation or a subquery in the select list says so (`hides_origins`):
//! MySQL's column definitions then name an alias or nothing as a column's table.
//!
//! What the server makes of some text depends on settings witness cannot see, so such text is
//! `unparsed`, the riskiest class: a `/*! … */` or `/*M! … */` comment, whose text MySQL and
//! MariaDB run; a backslash in a string (an escape, or under `NO_BACKSLASH_ESCAPES` a plain
//! character that ends the string elsewhere); a double-quote in a string token of any kind (a
//! string, or under `ANSI_QUOTES` a name); `||` and `&&` (OR and AND, or under `PIPES_AS_CONCAT`
//! concatenation); a `--` before a space that is not ASCII (no comment for MySQL). A condition
//! that is a literal (`WHERE '2'`) narrows nothing, as MySQL reads it as a number. Table names
//! are kept as written and lowercased both, since the server decides whether case matters.
//!
//! MySQL's own statements: `REPLACE` inserts and deletes (the row it replaces); `INSERT … ON
//! DUPLICATE KEY UPDATE` inserts and updates; `USE` changes what unqualified names mean, as a
//! setting does (`set`); `LOAD DATA LOCAL INFILE` in its plain form is `load-local` and `insert`
//! into its table (`load_data`), any other `LOAD DATA` is `unparsed`.

use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions, visit_relations, Expr, ObjectName, OnInsert, Query, Set, SetExpr, Statement as Ast, TableFactor};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::{classify_statement, Copies, SqlClass, Statement};

/// Classifies every statement of MySQL text. Text that does not parse, or that the server could
/// read otherwise than witness does, is one statement of class `unparsed`.
pub fn classify_mysql(sql: &str) -> Vec<Statement> {
    if let Some(statement) = super::too_long(sql) {
        return vec![statement];
    }
    if let Some(statement) = super::load_data::load_data(sql) {
        return vec![statement];
    }
    match parse(sql) {
        Ok(statements) => statements.iter().map(classify_one).collect(),
        Err(because) => vec![Statement::unparsed(because)],
    }
}

/// Whether MySQL text may run SQL built at run time (`PREPARE s FROM @text`, `EXECUTE s`,
/// MariaDB's `EXECUTE IMMEDIATE`), whose text witness never sees: either word anywhere, strings
/// and comments too, since what the server takes for a string or a comment (`/*M! … */`, a
/// backslash under `NO_BACKSLASH_ESCAPES`) is not always what witness does. Bytes, so that text
/// that is not UTF-8 is read too.
pub fn runs_dynamic_sql(sql: &[u8]) -> bool {
    let dynamic = |word: &[u8]| word.eq_ignore_ascii_case(b"prepare") || word.eq_ignore_ascii_case(b"execute");
    sql.split(|b: &u8| !b.is_ascii_alphanumeric() && *b != b'_').any(dynamic)
}

fn parse(sql: &str) -> Result<Vec<Ast>, String> {
    let dialect = MySqlDialect {};
    // Looked for in the whole text, strings too: sqlparser reads such a comment's text as SQL
    // whatever version it names, and the server runs it or not by its version.
    if sql.contains("/*!") || sql.contains("/*M!") {
        return Err("MySQL runs the text of a /*! */ comment if its version says so, which witness cannot tell".into());
    }
    // `--` is a comment in MySQL only before an ASCII space or control character; sqlparser
    // also takes other whitespace (a no-break space), after which MySQL reads on.
    if sql.match_indices("--").any(|(at, _)| sql[at + 2..].chars().next().is_some_and(|c| c.is_whitespace() && !c.is_ascii())) {
        return Err("a -- is followed by a space MySQL does not take as one, so it is no comment there".into());
    }
    // Strings as written (escapes not undone), so that a backslash in one shows.
    let raw = Tokenizer::new(&dialect, sql).with_unescape(false).tokenize().map_err(|e| format!("its text does not tokenize: {e}"))?;
    for token in &raw {
        match token {
            // Names (backquoted too) and whitespace (comments) read alike; so do numbers and marks.
            Token::Word(_) | Token::Whitespace(_) | Token::Number(..) => {}
            Token::StringConcat | Token::Overlap => {
                return Err("|| and && are OR and AND in MySQL, or concatenation and more under some sql_modes".into());
            }
            other => {
                let text = other.to_string();
                if text.contains('\\') {
                    return Err("a string holds a backslash, which MySQL reads one of two ways (sql_mode NO_BACKSLASH_ESCAPES)".into());
                }
                // A string quoted with `"`, with a prefix (`b"…"`, `x"…"`) or not; a `"` inside a
                // single-quoted string reads alike.
                if text.trim_start_matches(|c: char| c.is_ascii_alphabetic()).starts_with('"') {
                    return Err("a double-quoted string is a string or a name, as MySQL's sql_mode ANSI_QUOTES says".into());
                }
            }
        }
    }
    Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| format!("the SQL parser does not know it: {e}"))
}

fn classify_one(statement: &Ast) -> Statement {
    if let Ast::Set(set) = statement {
        if let Some(why) = unsafe_charset(set) {
            return Statement::unparsed(why);
        }
    }
    let mut classified = classify_statement(statement);
    classified.kill = matches!(statement, Ast::Kill { .. });
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
        // MySQL reads a literal condition as a number (`WHERE '2'` holds for every row), where
        // PostgreSQL reads a boolean: a condition that is only a literal narrows nothing.
        Ast::Delete(delete) if delete.selection.as_ref().is_some_and(is_literal) => {
            classes.insert(SqlClass::DeleteWithoutWhere);
        }
        Ast::Update(update) if update.selection.as_ref().is_some_and(is_literal) => {
            classes.insert(SqlClass::UpdateWithoutWhere);
        }
        Ast::Use(_) => {
            classes.remove(&SqlClass::Other);
            classes.insert(SqlClass::Set);
        }
        _ => {}
    }
    classified.tables = mysql_tables(statement);
    classified.hides_origins = hides_origins(statement);
    if matches!(statement, Ast::Set(_)) && has_subquery(statement) {
        // `SET @v = (SELECT email FROM customers)`: it reads the table, and keeps what it read
        // in a variable a later `SELECT @v` returns under no table's name.
        classified.classes.insert(SqlClass::Select);
        classified.copies = Copies::Rows;
    }
    classified
}

/// Character sets in which every byte below 0x80 is that ASCII character, and never part of
/// another: the text witness reads as UTF-8 then means to the server what it means to witness.
/// In GBK, Big5, SJIS and their kin a backquote or backslash can be the second byte of a
/// character; UTF-16 and UTF-32 results hide text from the detectors.
const SAFE_CHARSETS: [&str; 6] = ["utf8mb4", "utf8mb3", "utf8", "latin1", "ascii", "binary"];

/// The session variables that choose how the server reads text or writes results.
const CHARSET_VARIABLES: [&str; 4] = ["character_set_client", "character_set_connection", "character_set_results", "collation_connection"];

fn safe_charset(name: &str) -> bool {
    let name = name.trim_matches(|c| c == '\'' || c == '"' || c == '`').to_ascii_lowercase();
    SAFE_CHARSETS.iter().any(|safe| name == *safe || name.strip_prefix(safe).is_some_and(|rest| rest.starts_with('_')))
}

/// Why a SET makes the server read text, or write results, in a character set witness cannot
/// read as the server does; None when it does not.
fn unsafe_charset(set: &Set) -> Option<String> {
    let value_text = |value: &Expr| match value {
        Expr::Identifier(ident) => Some(ident.value.clone()),
        Expr::Value(value) => value.value.clone().into_string(),
        _ => None,
    };
    let check = |name: &ObjectName, value: &Expr| -> Option<String> {
        // Unquoted: `` SET `character_set_client` = gbk `` sets the variable all the same.
        let written: Vec<String> =
            name.0.iter().map(|part| part.as_ident().map_or_else(|| part.to_string(), |ident| ident.value.clone())).collect();
        let variable = written.join(".").to_ascii_lowercase();
        let variable = variable.trim_start_matches('@').rsplit('.').next().unwrap_or_default().to_string();
        // Any variable about character sets or collations, not only those known to matter.
        if !CHARSET_VARIABLES.contains(&variable.as_str()) && !variable.contains("character_set") && !variable.contains("collation") {
            return None;
        }
        match value_text(value) {
            Some(charset) if safe_charset(&charset) => None,
            _ => Some(format!("it sets {variable} to a character set witness does not read as the server does (use utf8mb4)")),
        }
    };
    match set {
        Set::SetNames { charset_name, collation_name } => {
            if safe_charset(&charset_name.value) && collation_name.as_deref().is_none_or(safe_charset) {
                None
            } else {
                Some("SET NAMES chooses a character set witness does not read as the server does (use utf8mb4)".into())
            }
        }
        Set::SetNamesDefault {} => Some("SET NAMES DEFAULT chooses the server's character set, which witness cannot see".into()),
        Set::SingleAssignment { variable, values, .. } => values.iter().find_map(|value| check(variable, value)),
        Set::MultipleAssignments { assignments } => assignments.iter().find_map(|a| check(&a.name, &a.value)),
        Set::ParenthesizedAssignments { variables, values } => variables.iter().zip(values).find_map(|(name, value)| check(name, value)),
        _ => None,
    }
}

/// Whether a statement's result columns may come from somewhere MySQL's column definitions do
/// not name: a derived table or table function in FROM (or in a join), a WITH, a set operation,
/// or a subquery among the selected expressions.
fn hides_origins(statement: &Ast) -> bool {
    if matches!(statement, Ast::Call(_)) {
        // A procedure's results are whatever its body selects.
        return true;
    }
    let Ast::Query(query) = statement else {
        // MariaDB's INSERT/DELETE … RETURNING: a subquery there returns what no table names.
        return statement.to_string().to_ascii_uppercase().contains(" RETURNING ") && has_subquery(statement);
    };
    query_hides_origins(query)
}

fn has_subquery(statement: &Ast) -> bool {
    visit_expressions(statement, |expr| {
        if matches!(expr, Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

fn query_hides_origins(query: &Query) -> bool {
    if query.with.is_some() {
        return true;
    }
    match query.body.as_ref() {
        SetExpr::Select(select) => {
            let subquery_selected = select.projection.iter().any(|item| {
                let mut found = false;
                let _ = visit_expressions(item, |expr| {
                    if matches!(expr, Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }) {
                        found = true;
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                });
                found
            });
            subquery_selected
                || select.from.iter().any(|from| factor_hides(&from.relation) || from.joins.iter().any(|join| factor_hides(&join.relation)))
        }
        SetExpr::Query(inner) => query_hides_origins(inner),
        SetExpr::Table(_) => false,
        _ => true,
    }
}

fn factor_hides(factor: &TableFactor) -> bool {
    match factor {
        TableFactor::Table { args, .. } => args.is_some(),
        TableFactor::NestedJoin { table_with_joins, .. } => {
            factor_hides(&table_with_joins.relation) || table_with_joins.joins.iter().any(|join| factor_hides(&join.relation))
        }
        _ => true,
    }
}

/// Whether a condition is a literal (in parentheses or not).
fn is_literal(condition: &Expr) -> bool {
    match condition {
        Expr::Value(_) | Expr::TypedString { .. } => true,
        Expr::Nested(inner) => is_literal(inner),
        Expr::UnaryOp { expr, .. } => is_literal(expr),
        _ => false,
    }
}

/// The tables a statement names, as written without backquotes, and lowercased too where that
/// differs: whether `Payroll` and `payroll` are one table depends on the server
/// (`lower_case_table_names`), so a rule naming either applies.
fn mysql_tables(statement: &Ast) -> Vec<String> {
    let mut tables = Vec::new();
    let _ = visit_relations(statement, |name| {
        let written = name.to_string().replace('`', "");
        for table in [written.to_lowercase(), written] {
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(sql: &str) -> Vec<Vec<&'static str>> {
        named(&classify_mysql(sql))
    }

    /// The same text's classes as PostgreSQL text.
    fn postgres_classes(sql: &str) -> Vec<Vec<&'static str>> {
        named(&crate::classify(sql))
    }

    fn named(statements: &[Statement]) -> Vec<Vec<&'static str>> {
        statements.iter().map(|s| s.classes.iter().map(|c| c.as_str()).collect()).collect()
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
        assert_eq!(classes("DELETE FROM customers WHERE '2'"), [vec!["delete", "delete-without-where"]]);
        assert_eq!(classes("UPDATE customers SET n = 1 WHERE (1)"), [vec!["update", "update-without-where"]]);
        assert_eq!(classify_mysql("SELECT * FROM `Payroll` JOIN app.T2")[0].tables, ["payroll", "Payroll", "app.t2", "app.T2"]);
        assert_eq!(classes("SELECT 1 # a comment\n; DELETE FROM t WHERE id = 2"), [vec!["select"], vec!["delete"]]);
        // `--` without a space after it is two minus signs, not a comment.
        assert_eq!(classes("SELECT 1 --1\n"), [["select"]]);
        assert_eq!(classes("SELECT 1 -- ; DROP TABLE t\n"), [["select"]]);
    }

    #[test]
    fn results_that_may_hide_their_columns_origins_say_so() {
        let hides = |sql: &str| classify_mysql(sql)[0].hides_origins;
        for plain in [
            "SELECT id, email FROM customers WHERE id IN (SELECT id FROM t)",
            "SELECT c.email FROM customers c JOIN orders o ON o.customer = c.id",
            "SELECT count(*) FROM customers",
            "DELETE FROM customers WHERE id = 1",
        ] {
            assert!(!hides(plain), "{plain}");
        }
        for hiding in [
            "SELECT e FROM (SELECT email AS e FROM customers) t",
            "SELECT name FROM (SELECT email AS name FROM customers) customers",
            "WITH customers AS (SELECT email AS name FROM customers) SELECT name FROM customers",
            "SELECT email FROM customers UNION SELECT 'x'",
            "(SELECT email FROM customers) UNION ALL (SELECT name FROM t)",
            "SELECT (SELECT email FROM customers LIMIT 1) AS s",
            "SELECT a.id FROM t a JOIN (SELECT id, email FROM customers) b ON a.id = b.id",
            "SELECT * FROM JSON_TABLE('[]', '$[*]' COLUMNS (x INT PATH '$')) j",
        ] {
            assert!(hides(hiding), "{hiding}");
        }
        assert!(classify_mysql("SELECT 1 /*! ,2 */")[0].hides_origins, "unparsed text could be anything");
        assert!(hides("INSERT INTO notes (id) VALUES (9) RETURNING (SELECT email FROM customers LIMIT 1) AS n"));
        assert!(!hides("DELETE FROM notes WHERE id = 9 RETURNING id"));
        assert!(hides("CALL report(1)"));
        let set = &classify_mysql("SET @v = (SELECT email FROM customers LIMIT 1)")[0];
        assert!(
            set.classes.contains(&SqlClass::Select) && set.copies == Copies::Rows && set.tables.contains(&"customers".to_string()),
            "{set:?}"
        );
        assert_eq!(classify_mysql("SET @v = 1")[0].copies, Copies::Nothing);
    }

    #[test]
    fn character_sets_witness_cannot_read_as_the_server_does_are_unparsed() {
        for safe in [
            "SET NAMES utf8mb4",
            "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'",
            "SET NAMES latin1",
            "SET character_set_results = utf8mb4",
            "SET @@session.character_set_client = 'utf8'",
            "SET autocommit = 1, sql_mode = 'STRICT_TRANS_TABLES'",
            "SET collation_connection = utf8mb4_unicode_ci",
        ] {
            assert_ne!(classes(safe), [["unparsed"]], "{safe}");
        }
        for unsafe_ in [
            "SET NAMES gbk",
            "SET NAMES 'big5'",
            "SET NAMES DEFAULT",
            "SET character_set_results = utf16",
            "SET character_set_results = NULL",
            "SET autocommit = 1, character_set_client = sjis",
            "SET SESSION collation_connection = 'gbk_chinese_ci'",
            "SET @@character_set_connection = cp932",
            "SET `character_set_client` = 'gbk'",
            "SET @@session.`character_set_client` = gbk",
            "SET `collation_connection` = gbk_chinese_ci",
            "SET character_set_database = sjis",
        ] {
            assert_eq!(classes(unsafe_), [["unparsed"]], "{unsafe_}");
        }
    }

    #[test]
    fn sql_built_at_run_time_is_told() {
        for dynamic in [
            "PREPARE s FROM @k",
            "/* x */ execute s USING @a",
            "EXECUTE IMMEDIATE CONCAT('KI','LL ', 12)",
            "SET @a = 1; Prepare s FROM 'x",
            "/*M!100000 PREPARE s FROM @k */",
            "SELECT 'a\\'; PREPARE s FROM @k; -- '",
        ] {
            assert!(runs_dynamic_sql(dynamic.as_bytes()), "{dynamic}");
        }
        assert!(runs_dynamic_sql(b"PREPARE s FROM @k /*\xe9*/"));
        for plain in ["SELECT prepared, executed FROM t", "DEALLOCATE PREPARE_ s"] {
            assert!(!runs_dynamic_sql(plain.as_bytes()), "{plain}");
        }
    }

    #[test]
    fn text_of_too_many_tokens_is_unparsed_unread() {
        let most = crate::classify::MAX_CLASSIFIED_TOKENS;
        let long = format!("SELECT 1{}", " ".repeat(most));
        assert_eq!(classes(&long), [["unparsed"]]);
        assert_eq!(postgres_classes(&long)[0], ["unparsed"]);
        let commas = format!("SELECT 1{}", ",1".repeat(most / 2));
        assert_eq!(classes(&commas), [["unparsed"]]);
        // Few tokens, however long: a long word is one.
        let string = format!("SELECT length('{}'), \"{}\"", "x".repeat(4 * most), "y".repeat(most));
        assert_eq!(postgres_classes(&string)[0], ["select"]);
        let longest = format!("SELECT 1{}", " ".repeat(most - 10));
        assert_eq!(classes(&longest), [["select"]]);
        // Numbers that end at a letter again and again are counted.
        for numbers in [format!("SELECT {}", "1L".repeat(most)), format!("SELECT {}", "1e1L".repeat(most / 2))] {
            assert_eq!(postgres_classes(&numbers)[0], ["unparsed"]);
            assert_eq!(classes(&numbers), [["unparsed"]]);
        }
        // No quote hides what follows it from the count, however the dialect reads its escapes.
        for escaped in [format!("SELECT 'a\\'{}'", " ,".repeat(most)), format!("SELECT E'\\'' {}", ", ".repeat(most))] {
            assert_eq!(postgres_classes(&escaped)[0], ["unparsed"]);
            assert_eq!(classes(&escaped), [["unparsed"]]);
        }
    }

    #[test]
    fn kills_and_table_expressions_are_told() {
        assert!(classify_mysql("KILL 12")[0].kill);
        assert!(classify_mysql("/* x */ KILL QUERY 12")[0].kill);
        assert!(classify_mysql("SELECT 1; KILL 12")[1].kill);
        assert!(!classify_mysql("SELECT 'kill 12'")[0].kill);
        for sql in ["SELECT * FROM (TABLE hr.payroll) AS p", "SELECT 1, 2, 3 UNION TABLE hr.payroll", "SELECT 1 UNION TABLE x; SHUTDOWN"] {
            assert_eq!(classes(sql)[0], ["unparsed"], "{sql}");
        }
        assert_eq!(postgres_classes("SELECT 1 UNION TABLE payroll")[0], ["unparsed"]);
    }

    #[test]
    fn text_the_server_may_read_otherwise_is_unparsed() {
        for sql in [
            "SELECT 1 /*!50000 ; DROP TABLE customers */",
            "SELECT 1 /*M!100000 , (DELETE FROM t) */",
            r"SELECT 'it\'s' ; DROP TABLE t -- '",
            "SELECT * FROM t WHERE name = \"x\"",
            "LOAD DATA INFILE '/etc/passwd' INTO TABLE t",
            "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t SET a = 1",
            "SELEC 1",
            "SELECT b\"\\\", 'x\" FROM (SELECT 1 AS b) t; DROP TABLE customers; -- '",
            "SELECT 1 --\u{a0} FROM (SELECT 1 AS `\u{a0}`) t; DROP TABLE customers",
            "DELETE FROM customers WHERE id = 5 || 1",
            "SELECT 1 && 0",
        ] {
            assert_eq!(classes(sql), [["unparsed"]], "{sql}");
        }
        // A backquoted name, a plain comment and a quote inside a string are fine.
        assert_eq!(classes("SELECT `a\"b` FROM t /* note */ WHERE c = 'say \"hi\"'"), [["select"]]);
    }
}
