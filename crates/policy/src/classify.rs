//! SQL statement classes: what a statement does, as rules name it (select, insert, drop, …), and
//! the tables it touches. Parsing uses sqlparser's PostgreSQL dialect; a statement that does not
//! parse is of class `unparsed`, which rules treat as the riskiest class of all. So is text that
//! sqlparser cuts into strings, comments and statements differently from PostgreSQL (`lexical`):
//! the classes must be those of what the server runs.
//!
//! Statements nested in others count: a DELETE inside a CTE makes the query a delete, and EXPLAIN
//! is classified by the statement it explains (EXPLAIN ANALYZE runs it). A condition that holds
//! for every row whatever it holds (`WHERE 1=1`, `WHERE true OR x`) counts as no condition
//! (`constant`); MERGE has the classes of its actions; `SELECT … INTO` creates a table.
//!
//! Not here: what a function, a procedure or a DO block runs (their bodies are not read: DO is
//! `unparsed`, CALL is `call`), and what a statement does to the data beyond its text.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::ControlFlow;
use std::str::FromStr;

use sqlparser::ast::{self, CopyTarget, MergeAction, MergeClauseKind, SetExpr, Statement as Ast};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Tokenizer;

mod constant;
mod copies;
mod lexical;
mod load_data;
mod mysql;

pub use copies::Copies;
pub use mysql::{classify_mysql, runs_dynamic_sql};

/// What a statement does. One statement can have several classes (a DELETE without WHERE is
/// both `delete` and `delete-without-where`; a DROP is both `ddl` and `drop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SqlClass {
    Select,
    Insert,
    Update,
    Delete,
    /// An UPDATE whose condition does not narrow its rows: none, or one that holds whatever the
    /// row holds (`WHERE 1=1`), or a MERGE that updates every row.
    UpdateWithoutWhere,
    /// A DELETE whose condition does not narrow its rows, as for `UpdateWithoutWhere`.
    DeleteWithoutWhere,
    /// Any schema change: create, alter, drop, truncate, comment.
    Ddl,
    Create,
    Alter,
    Drop,
    Truncate,
    /// GRANT and REVOKE.
    Grant,
    Copy,
    /// COPY ... TO (stdout, a file or a program): data leaves the database.
    CopyOut,
    /// COPY to or from a program run on the database server.
    CopyProgram,
    /// SET, RESET and other session settings.
    Set,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT.
    Transaction,
    Call,
    /// MySQL's `LOAD DATA LOCAL INFILE`: the client sends a file of its own into a table. Off
    /// unless a rule that names this class allows it (or holds it for approval).
    LoadLocal,
    /// Parsed, but none of the above (VACUUM, LISTEN, PREPARE, …).
    Other,
    /// Did not parse: could be anything.
    Unparsed,
}

/// A class name that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("unknown SQL class {given:?}: use one of {}", SqlClass::NAMES.join(", "))]
pub struct UnknownSqlClass {
    pub given: String,
}

/// One statement of a request, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub classes: BTreeSet<SqlClass>,
    /// Tables and other relations it names, lowercased unless quoted, with their schema if given
    /// (of MySQL text: as written, and lowercased too where that differs).
    pub tables: Vec<String>,
    /// What it writes into a table from values read in the database (`copies`). Nothing for
    /// text that does not parse: its class, `unparsed`, is what rules match it by (it is also
    /// how fast-path calls are decided, whose results are masked).
    pub copies: Copies,
    /// Why an `unparsed` statement could not be classified, for the message that refuses it.
    pub unparsed_because: Option<String>,
    /// Its result's columns may come through a derived table, a common table expression, a set
    /// operation (UNION, …) or a subquery in the select list: MySQL then names an alias, or no
    /// table at all, as a column's table, so column masking cannot tell where it comes from. Read
    /// for MySQL text only.
    pub hides_origins: bool,
    /// It is a `KILL` (MySQL): it ends a statement or a connection the target knows by a thread
    /// id, which may be any session's.
    pub kill: bool,
    /// The client's file a `LOAD DATA LOCAL INFILE` names (MySQL): the only file the target may
    /// ask the client for while it runs.
    pub local_file: Option<String>,
}

impl Statement {
    /// A statement witness cannot read, and why (said to the client if a rule refuses it).
    pub fn unparsed(because: impl Into<String>) -> Statement {
        Statement {
            classes: BTreeSet::from([SqlClass::Unparsed]),
            tables: Vec::new(),
            copies: Copies::Nothing,
            unparsed_because: Some(because.into()),
            hides_origins: true,
            kill: false,
            local_file: None,
        }
    }
}

/// The most tokens witness reads in one text, as [`tokens_at_most`] counts them. sqlparser holds
/// tens of bytes for each token, and every space is one (`SELECT 1` and 60 MiB of spaces would
/// take gigabytes), so text that may hold more is `unparsed`, unread. Text of 1 MiB (a
/// mysqldump's longest INSERT) never counts more; a run of letters, or of digits, is one however
/// long.
pub const MAX_CLASSIFIED_TOKENS: usize = 1 << 20;

/// Text with too many tokens to read, as the one statement it is taken for.
fn too_long(sql: &str) -> Option<Statement> {
    (tokens_at_most(sql) > MAX_CLASSIFIED_TOKENS)
        .then(|| Statement::unparsed(format!("it may hold more than the {MAX_CLASSIFIED_TOKENS} tokens witness reads in one text")))
}

/// No fewer than half the tokens sqlparser finds in `sql`, in either dialect, counted without
/// reading it: one for each other character than letters, digits and `_`, and for each of their
/// runs, one more at each border between digits and the rest (`1L1L…` is a number and an `L`
/// again and again: a number ends at such a border, or after one hex letter). Quotes are not
/// skipped: where a string ends depends on escapes the dialects read differently (`E'\''`), and
/// text taken for the inside of a string the tokenizer ends sooner would go uncounted. Counting
/// too many only makes text `unparsed`.
fn tokens_at_most(sql: &str) -> usize {
    let mut count = 0;
    // The class of the previous character: not in a word, a digit, another word character.
    let mut previous: Option<bool> = None;
    for c in sql.chars() {
        let word = c.is_alphanumeric() || c == '_';
        let current = word.then_some(c.is_ascii_digit());
        if current.is_none() || current != previous {
            count += 1;
        }
        previous = current;
    }
    count
}

/// Classifies every statement of `sql` (a simple query may hold several). Text that does not
/// parse is one statement of class `unparsed`; an empty query has no statements.
pub fn classify(sql: &str) -> Vec<Statement> {
    if let Some(statement) = too_long(sql) {
        return vec![statement];
    }
    match parse(sql) {
        Ok(statements) => statements.iter().map(classify_statement).collect(),
        Err(because) => vec![Statement::unparsed(because)],
    }
}

/// The statements of `sql`, or why not: sqlparser cannot read it, or reads it differently from
/// PostgreSQL (`lexical`).
fn parse(sql: &str) -> Result<Vec<Ast>, String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize_with_location().map_err(|e| format!("its text does not tokenize: {e}"))?;
    if !lexical::read_alike(sql, &tokens) {
        return Err("its strings, quoted names or comments could be read two ways, and witness must read them as PostgreSQL will".into());
    }
    Parser::new(&dialect).with_tokens_with_locations(tokens).parse_statements().map_err(|e| format!("the SQL parser does not know it: {e}"))
}

fn classify_statement(statement: &Ast) -> Statement {
    if reads_a_table_expression(statement) {
        // sqlparser keeps `TABLE t`'s name as plain strings (no relation a rule could match),
        // and reads an unqualified one by swallowing the two tokens after it.
        // What it copies is still known: masking refuses such a copy as it would the statement.
        let copies = copies::copies(statement);
        return Statement { copies, ..Statement::unparsed("it holds a TABLE expression, whose table witness cannot read exactly") };
    }
    let mut classes = BTreeSet::new();
    let _ = ast::visit_statements(statement, |nested| {
        add_classes(nested, &mut classes);
        ControlFlow::<()>::Continue(())
    });
    if classes.is_empty() {
        classes.insert(SqlClass::Other);
    }
    let mut tables = Vec::new();
    let _ = ast::visit_relations(statement, |name| {
        let table = relation_name(name);
        if !tables.contains(&table) {
            tables.push(table);
        }
        ControlFlow::<()>::Continue(())
    });
    Statement {
        classes,
        tables,
        copies: copies::copies(statement),
        unparsed_because: None,
        hides_origins: false,
        kill: false,
        local_file: None,
    }
}

/// Whether a query anywhere in the statement reads `TABLE name` (a set expression of its own).
fn reads_a_table_expression(statement: &Ast) -> bool {
    struct Finder;
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
            fn has_table(body: &SetExpr) -> bool {
                match body {
                    SetExpr::Table(_) => true,
                    SetExpr::SetOperation { left, right, .. } => has_table(left) || has_table(right),
                    _ => false,
                }
            }
            if has_table(&query.body) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    ast::Visit::visit(statement, &mut Finder).is_break()
}

fn add_classes(statement: &Ast, classes: &mut BTreeSet<SqlClass>) {
    use SqlClass::*;
    match statement {
        Ast::Query(query) => {
            classes.insert(Select);
            if selects_into(query) {
                classes.extend([Ddl, Create]);
            }
        }
        Ast::Insert(_) => {
            classes.insert(Insert);
        }
        Ast::Update(update) => {
            classes.insert(Update);
            if update.selection.as_ref().is_none_or(constant::holds_for_every_row) {
                classes.insert(UpdateWithoutWhere);
            }
        }
        Ast::Delete(delete) => {
            classes.insert(Delete);
            if delete.selection.as_ref().is_none_or(constant::holds_for_every_row) {
                classes.insert(DeleteWithoutWhere);
            }
        }
        Ast::Merge(merge) => {
            merge_classes(merge, classes);
        }
        Ast::Copy { target, to, .. } => {
            classes.insert(Copy);
            if *to {
                classes.insert(CopyOut);
            }
            if matches!(target, CopyTarget::Program { .. }) {
                classes.insert(CopyProgram);
            }
        }
        Ast::Truncate(_) => {
            classes.extend([Ddl, Truncate]);
        }
        Ast::Call(_) => {
            classes.insert(Call);
        }
        Ast::Set(_) => {
            classes.insert(Set);
        }
        Ast::Explain { .. } => {
            // The explained statement is visited too; EXPLAIN itself only reads.
            classes.insert(Select);
        }
        Ast::Execute { .. } => {
            // Runs a prepared statement whose text is not here (it may have been prepared at the
            // protocol level): the riskiest class.
            classes.insert(Unparsed);
        }
        other => classify_by_name(other, classes),
    }
}

/// `SELECT … INTO t` creates the table `t`. PostgreSQL takes INTO only in the first SELECT of a
/// UNION, INTERSECT or EXCEPT, so only the leftmost branch is looked at (without recursion).
fn selects_into(query: &ast::Query) -> bool {
    let mut body = &query.body;
    loop {
        match body.as_ref() {
            SetExpr::Select(select) => return select.into.is_some(),
            SetExpr::SetOperation { left, .. } => body = left,
            SetExpr::Query(query) => body = &query.body,
            _ => return false,
        }
    }
}

/// MERGE does what its actions do: `insert`, `update` or `delete` for each kind of action it
/// has (DO NOTHING adds none). It changes every row without a condition when its `ON` matches
/// every pair of rows and a `WHEN MATCHED` action has no condition of its own that could
/// narrow it, or when `ON` matches nothing and a `WHEN NOT MATCHED BY SOURCE` action applies
/// to every row of the target.
fn merge_classes(merge: &ast::Merge, classes: &mut BTreeSet<SqlClass>) {
    use SqlClass::*;
    let matches_every_pair = constant::holds_for_every_row(&merge.on);
    let matches_nothing = constant::holds_for_no_row(&merge.on);
    for clause in &merge.clauses {
        let every_row = clause.predicate.as_ref().is_none_or(constant::holds_for_every_row)
            && match clause.clause_kind {
                MergeClauseKind::Matched => matches_every_pair,
                MergeClauseKind::NotMatchedBySource => matches_nothing,
                MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget => false,
            };
        match &clause.action {
            MergeAction::Insert(_) => {
                classes.insert(Insert);
            }
            MergeAction::Update(_) => {
                classes.insert(Update);
                if every_row {
                    classes.insert(UpdateWithoutWhere);
                }
            }
            MergeAction::Delete { .. } => {
                classes.insert(Delete);
                if every_row {
                    classes.insert(DeleteWithoutWhere);
                }
            }
            MergeAction::DoNothing { .. } => {}
        }
    }
}

/// The many less common statements, by the name of their kind: CREATE…, ALTER…, DROP… families
/// and the rest. Their Debug text names the kind first; only these rarer statements pay for it.
fn classify_by_name(statement: &Ast, classes: &mut BTreeSet<SqlClass>) {
    use SqlClass::*;
    let debug = format!("{statement:?}");
    let name: String = debug.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let found: &[SqlClass] = match name.as_str() {
        n if n.starts_with("Create") => &[Ddl, Create],
        n if n.starts_with("Alter") || n == "RenameTable" => &[Ddl, Alter],
        n if n.starts_with("Drop") => &[Ddl, Drop],
        "Comment" => &[Ddl],
        "Grant" | "Revoke" | "Deny" => &[Grant],
        "StartTransaction" | "Commit" | "Rollback" | "Savepoint" | "ReleaseSavepoint" => &[Transaction],
        n if n.starts_with("Set") || n == "Reset" || n == "Discard" => &[Set],
        n if n.starts_with("Show") => &[Select],
        _ => &[Other],
    };
    classes.extend(found.iter().copied());
}

/// A relation's name as rules match it: lowercased unless quoted, schema kept.
fn relation_name(name: &ast::ObjectName) -> String {
    name.to_string()
        .split('.')
        .map(|part| match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(quoted) => quoted.to_string(),
            None => part.to_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

// === impl SqlClass ===

impl SqlClass {
    pub const ALL: [SqlClass; 21] = [
        SqlClass::Select,
        SqlClass::Insert,
        SqlClass::Update,
        SqlClass::Delete,
        SqlClass::UpdateWithoutWhere,
        SqlClass::DeleteWithoutWhere,
        SqlClass::Ddl,
        SqlClass::Create,
        SqlClass::Alter,
        SqlClass::Drop,
        SqlClass::Truncate,
        SqlClass::Grant,
        SqlClass::Copy,
        SqlClass::CopyOut,
        SqlClass::CopyProgram,
        SqlClass::Set,
        SqlClass::Transaction,
        SqlClass::Call,
        SqlClass::LoadLocal,
        SqlClass::Other,
        SqlClass::Unparsed,
    ];

    pub const NAMES: [&'static str; 21] = [
        "select",
        "insert",
        "update",
        "delete",
        "update-without-where",
        "delete-without-where",
        "ddl",
        "create",
        "alter",
        "drop",
        "truncate",
        "grant",
        "copy",
        "copy-out",
        "copy-program",
        "set",
        "transaction",
        "call",
        "load-local",
        "other",
        "unparsed",
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|&c| c == self).expect("every class is listed")]
    }

    /// The class this one narrows, if any: every `drop` is also `ddl`, every
    /// `delete-without-where` a `delete`, every `load-local` an `insert`.
    pub fn broader(self) -> Option<SqlClass> {
        match self {
            SqlClass::UpdateWithoutWhere => Some(SqlClass::Update),
            SqlClass::DeleteWithoutWhere => Some(SqlClass::Delete),
            SqlClass::Create | SqlClass::Alter | SqlClass::Drop | SqlClass::Truncate => Some(SqlClass::Ddl),
            SqlClass::CopyOut | SqlClass::CopyProgram => Some(SqlClass::Copy),
            SqlClass::LoadLocal => Some(SqlClass::Insert),
            _ => None,
        }
    }
}

impl fmt::Display for SqlClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SqlClass {
    type Err = UnknownSqlClass;

    fn from_str(s: &str) -> Result<SqlClass, UnknownSqlClass> {
        Self::NAMES.iter().position(|&n| n == s).map(|i| Self::ALL[i]).ok_or_else(|| UnknownSqlClass { given: s.to_string() })
    }
}

#[cfg(test)]
mod tests;
