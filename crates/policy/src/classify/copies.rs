//! Which values a statement copies from one place in the database into a table: `INSERT …
//! SELECT`, `CREATE TABLE … AS`, `SELECT … INTO`, `MERGE`, and an `UPDATE` whose new values read
//! other tables or the row's own columns. Column masking follows a value on its way to the client;
//! a copy made inside the database takes a masked column's values where no column rule names them
//! (a new table, another column), so a session whose columns are masked is refused such copies.
//!
//! What this does not do: see copies made by functions, triggers or rules, whose bodies are not
//! read (the README says so); or decide anything: `Copies` is a fact about the text.

use std::ops::ControlFlow;

use sqlparser::ast::{self, Expr, MergeAction, OnInsert, Statement as Ast};

/// What a statement writes into a table from values it reads in the database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Copies {
    /// Nothing read from the database is written (literals, parameters, functions of them).
    #[default]
    Nothing,
    /// An UPDATE that writes values read from these columns of its own row (`SET notes = email`),
    /// by their names as written (last part, lowercased unless quoted).
    Columns(Vec<String>),
    /// Rows or values read from relations: anything may be copied.
    Rows,
}

impl Copies {
    fn join(&mut self, other: Copies) {
        *self = match (std::mem::take(self), other) {
            (Copies::Rows, _) | (_, Copies::Rows) => Copies::Rows,
            (Copies::Columns(mut a), Copies::Columns(b)) => {
                a.extend(b.into_iter().filter(|name| !a.contains(name)).collect::<Vec<_>>());
                Copies::Columns(a)
            }
            (Copies::Nothing, other) | (other, Copies::Nothing) => other,
        }
    }
}

/// What `statement` (with the statements nested in it) copies.
pub fn copies(statement: &Ast) -> Copies {
    let mut found = Copies::Nothing;
    let _ = ast::visit_statements(statement, |nested| {
        found.join(copies_of(nested));
        ControlFlow::<()>::Continue(())
    });
    found
}

fn copies_of(statement: &Ast) -> Copies {
    match statement {
        Ast::Insert(insert) => {
            let from_source = insert.source.as_deref().is_some_and(names_relation);
            let from_conflict = match &insert.on {
                Some(OnInsert::OnConflict(conflict)) => names_relation(&conflict.action),
                Some(other) => names_relation(other),
                None => false,
            };
            if from_source || from_conflict || insert.assignments.iter().any(|a| names_relation(&a.value)) {
                Copies::Rows
            } else {
                Copies::Nothing
            }
        }
        Ast::Update(update) => {
            if update.from.is_some() || update.assignments.iter().any(|a| names_relation(&a.value)) {
                return Copies::Rows;
            }
            let mut columns = Vec::new();
            for assignment in &update.assignments {
                let _ = ast::visit_expressions(&assignment.value, |expr| {
                    if let Some(name) = column_name(expr) {
                        if !columns.contains(&name) {
                            columns.push(name);
                        }
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
            if columns.is_empty() {
                Copies::Nothing
            } else {
                Copies::Columns(columns)
            }
        }
        Ast::CreateTable(create) if create.query.is_some() => Copies::Rows,
        Ast::Query(query) if super::selects_into(query) && names_relation(query) => Copies::Rows,
        Ast::Merge(merge) if merge.clauses.iter().any(|c| matches!(c.action, MergeAction::Insert(_) | MergeAction::Update(_))) => {
            Copies::Rows
        }
        _ => Copies::Nothing,
    }
}

/// Whether anything in `node` reads a table, view or other relation (a FROM, a subquery).
fn names_relation<V: ast::Visit>(node: &V) -> bool {
    ast::visit_relations(node, |_| ControlFlow::Break(())).is_break()
}

/// The column an expression reads, by its last name part.
fn column_name(expr: &Expr) -> Option<String> {
    let ident = match expr {
        Expr::Identifier(ident) => ident,
        Expr::CompoundIdentifier(parts) => parts.last()?,
        _ => return None,
    };
    Some(if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify;

    fn copies_of_text(sql: &str) -> Copies {
        let statements = classify(sql);
        assert_eq!(statements.len(), 1, "{sql}");
        statements[0].copies.clone()
    }

    #[test]
    fn copies_inside_the_database_are_found() {
        let rows = [
            "insert into t select email from users",
            "insert into t (a) values ((select email from users limit 1))",
            "create table t as select * from users",
            "create table t as table users",
            "create unlogged table t as select ssn from users",
            "select email into t from users",
            "with x as (insert into t select * from users returning 1) select 1",
            "merge into t using users u on t.id = u.id when not matched then insert values (u.email)",
            "merge into t using users u on t.id = u.id when matched then update set a = u.email",
            "update t set a = u.email from users u where t.id = u.id",
            "update t set a = (select email from users where users.id = t.id)",
            "insert into t values (1) on conflict (id) do update set a = (select email from users limit 1)",
            "prepare p as insert into t select email from users",
            "explain analyze insert into t select email from users",
        ];
        for sql in rows {
            assert_eq!(copies_of_text(sql), Copies::Rows, "{sql}");
        }
        assert_eq!(copies_of_text("update users set notes = email where id = 1"), Copies::Columns(vec!["email".into()]));
        assert_eq!(copies_of_text("update users u set notes = u.\"E\" || lower(ssn)"), Copies::Columns(vec!["E".into(), "ssn".into()]));
        let nothing = [
            "insert into t values (1, 'a'), ($1, now())",
            "insert into t values (1) on conflict (id) do update set a = excluded.a",
            "update t set a = 1, b = $1, c = now() where id = 2",
            "delete from t where id in (select id from users)",
            "select email from users",
            "merge into t using users u on t.id = u.id when matched then delete",
            "create table t (id int)",
            "create view v as select email from users",
            "copy t from stdin",
        ];
        for sql in nothing {
            assert_eq!(copies_of_text(sql), Copies::Nothing, "{sql}");
        }
    }
}
