"""One workload run by a Python MySQL driver, printed as JSON, so that a test can compare what the
driver gets through witness with what it gets directly.

usage: clients.py DRIVER HOST PORT USER PASSWORD DATABASE
DRIVER: pymysql | mysqlclient | connector (mysql-connector-python, pure Python, with server-side
prepared statements).
"""
import datetime
import decimal
import json
import os
import sys

driver, host, port, user, password, database = sys.argv[1:7]
port = int(port)
# Compressed packets, where the driver can (PyMySQL cannot). Passed only when asked for:
# mysqlclient compresses when `compress` is given at all, False included.
compress = {"compress": True} if os.environ.get("WITNESS_TEST_COMPRESS") == "1" else {}

if driver == "pymysql":
    import pymysql
    from pymysql.constants import CLIENT
    conn = pymysql.connect(host=host, port=port, user=user, password=password, database=database,
                           charset="utf8mb4", client_flag=CLIENT.MULTI_STATEMENTS)
elif driver == "mysqlclient":
    import MySQLdb
    from MySQLdb.constants import CLIENT
    conn = MySQLdb.connect(host=host, port=port, user=user, password=password, database=database,
                           charset="utf8mb4", client_flag=CLIENT.MULTI_STATEMENTS, **compress)
elif driver == "connector":
    import mysql.connector
    conn = mysql.connector.connect(host=host, port=port, user=user, password=password, database=database,
                                   use_pure=True, charset="utf8mb4", collation="utf8mb4_general_ci",
                                   auth_plugin="mysql_native_password", **compress)
else:
    sys.exit(f"unknown driver {driver}")


def plain(value):
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time, datetime.timedelta, decimal.Decimal)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return value


def rows(cursor):
    return [[plain(v) for v in row] for row in cursor.fetchall()]


out = {}
cur = conn.cursor()
cur.execute("select id, name, email, card from customers order by id")
out["customers"] = rows(cur)
cur.execute("select email from customers where id = %s", (2,))
out["by_id"] = rows(cur)
cur.execute("create temporary table notes (id int primary key, body text, at datetime(6), amount decimal(10,2), ratio double) default charset utf8mb4")
cur.execute("insert into notes values (%s, %s, %s, %s, %s)", (1, "héllo ✓ naïve", datetime.datetime(2026, 12, 7, 9, 30, 5, 123456), decimal.Decimal("12.50"), 0.25))
cur.executemany("insert into notes (id, body) values (%s, %s)", [(2, "two"), (3, None)])
out["inserted"] = cur.rowcount
conn.commit()
cur.execute("select id, body, at, amount, ratio from notes order by id")
out["notes"] = rows(cur)
try:
    cur.execute("insert into notes (id, body) values (1, 'again')")
    out["duplicate"] = None
except Exception as error:  # the driver's IntegrityError: its code is what matters
    out["duplicate"] = error.args[0]
if driver != "connector":
    # Two result sets from one query (CLIENT_MULTI_STATEMENTS).
    cur.execute("select 1 as one; select 'two' as two")
    sets = [rows(cur)]
    while cur.nextset():
        sets.append(rows(cur))
    out["multi"] = sets
cur.execute("select repeat('x', 70000) as big")
out["big"] = len(rows(cur)[0][0])
cur.close()

if driver == "connector":
    # Server-side prepared statements: COM_STMT_PREPARE, COM_STMT_EXECUTE, binary rows.
    prepared = conn.cursor(prepared=True)
    prepared.execute("select id, name, email from customers where id >= ? order by id", (2,))
    out["prepared"] = rows(prepared)
    prepared.execute("select id, body, at, amount, ratio from notes where id = ?", (1,))
    out["prepared_types"] = rows(prepared)
    prepared.execute("update notes set body = ? where id = ?", ("changed", 2))
    out["prepared_update"] = prepared.rowcount
    prepared.close()
    conn.commit()

conn.ping()
conn.close()
print(json.dumps(out, sort_keys=True))
