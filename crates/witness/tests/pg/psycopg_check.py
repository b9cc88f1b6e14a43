"""Runs the same work with psycopg 3 against a connection string and prints the results as JSON,
so that a run through witness can be compared with a run direct."""

import json
import sys

import psycopg

results = {}
with psycopg.connect(sys.argv[1], autocommit=False) as conn:
    with conn.cursor() as cur:
        cur.execute("create table people (id int primary key, name text, email text, born date, score numeric(5,2))")
        cur.executemany(
            "insert into people (id, name, email, born, score) values (%s, %s, %s, %s, %s)",
            [(i, f"person {i}", f"p{i}@example.com", f"2000-01-{i + 1:02d}", i * 1.5) for i in range(10)],
        )
        conn.commit()
        cur.execute("select id, name, email, born::text, score::text from people where id > %s order by id", (3,))
        results["rows"] = cur.fetchall()
        cur.execute("select count(*) from people", prepare=True)
        results["count"] = cur.fetchone()[0]
        with cur.copy("copy people (id, name) to stdout") as copy:
            results["copy_rows"] = sum(1 for _ in copy.rows())
        with cur.copy("copy people (id, name, email) from stdin") as copy:
            for i in range(100, 103):
                copy.write_row((i, f"copied {i}", None))
        results["after_copy"] = cur.execute("select count(*) from people").fetchone()[0]
        try:
            cur.execute("select * from no_such_table")
        except psycopg.errors.UndefinedTable as e:
            results["error"] = e.sqlstate
        conn.rollback()
        cur.execute("select 'binary' as kind, %b::bytea as data", (b"\x00\x01\xff",))
        results["binary"] = cur.fetchone()[1].hex()
        cur.execute("drop table people")
        conn.commit()

print(json.dumps(results, default=str, indent=1, sort_keys=True))
