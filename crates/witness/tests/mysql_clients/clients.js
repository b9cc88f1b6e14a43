// One workload run by a Node.js MySQL driver, printed as JSON, so that a test can compare what the
// driver gets through witness with what it gets directly.
//
// usage: node clients.js DRIVER HOST PORT USER PASSWORD DATABASE
// DRIVER: mysql2 (query, and execute: server-side prepared statements with binary rows) |
//         mariadb (query, prepare/execute, batch, and pipelining: several commands sent before the
//         first answer).
'use strict';

const [driver, host, port, user, password, database] = process.argv.slice(2);
// Compressed packets, where the test asks for them.
const compress = process.env.WITNESS_TEST_COMPRESS === '1';

function plain(value) {
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'bigint') return value.toString();
  return value;
}

function table(rows) {
  return rows.map((row) => (Array.isArray(row) ? row : Object.values(row)).map(plain));
}

async function mysql2() {
  const mysql = require('mysql2/promise');
  const conn = await mysql.createConnection({ host, port: Number(port), user, password, database, multipleStatements: true, timezone: 'Z', compress });
  const out = {};
  out.customers = table((await conn.query('select id, name, email, card from customers order by id'))[0]);
  out.prepared = table((await conn.execute('select id, name, email from customers where id >= ? order by id', [2]))[0]);
  await conn.query('create temporary table notes (id int primary key, body text, at datetime(6), amount decimal(10,2), ratio double) default charset utf8mb4');
  await conn.execute('insert into notes values (?, ?, ?, ?, ?)', [1, 'héllo ✓', new Date(Date.UTC(2026, 11, 7, 9, 30, 5, 123)), '12.50', 0.25]);
  await conn.execute('insert into notes (id, body) values (?, ?)', [2, null]);
  out.notes = table((await conn.execute('select id, body, at, amount, ratio from notes where id >= ? order by id', [0]))[0]);
  out.multi = (await conn.query('select 1 as one; select 2 as two'))[0].map(table);
  try {
    await conn.execute('insert into notes (id) values (?)', [1]);
    out.duplicate = null;
  } catch (error) {
    out.duplicate = error.errno;
  }
  // Several commands in flight at once.
  out.concurrent = (await Promise.all([1, 2, 3].map((id) => conn.execute('select email from customers where id = ?', [id])))).map((r) => table(r[0]));
  await conn.ping();
  await conn.end();
  return out;
}

async function mariadb() {
  const mariadb = require('mariadb');
  const conn = await mariadb.createConnection({ host, port: Number(port), user, password, database, multipleStatements: true, pipelining: true, timezone: 'Z', bigIntAsNumber: true, decimalAsNumber: false, compress });
  const out = {};
  out.customers = table(await conn.query('select id, name, email, card from customers order by id'));
  // Pipelining: the driver sends these before the first answer comes.
  out.pipelined = (await Promise.all([1, 2, 3].map((id) => conn.query('select email from customers where id = ?', [id])))).map(table);
  const statement = await conn.prepare('select id, name from customers where id >= ? order by id');
  out.prepared = table(await statement.execute([2]));
  statement.close();
  out.executed = table(await conn.execute('select email from customers where id = ?', [3]));
  await conn.query('create temporary table notes (id int primary key, body text, at datetime(6), amount decimal(10,2), ratio double) default charset utf8mb4');
  // Without MariaDB's bulk capability the driver runs a batch statement by statement and answers
  // with each one's result.
  const batch = await conn.batch('insert into notes (id, body, ratio) values (?, ?, ?)', [[1, 'héllo ✓', 0.5], [2, 'two', 1.5], [3, null, null]]);
  out.batch = [batch].flat().reduce((sum, result) => sum + result.affectedRows, 0);
  out.notes = table(await conn.query('select id, body, ratio from notes order by id'));
  out.multi = (await conn.query('select 1 as one; select 2 as two')).map(table);
  try {
    await conn.query('insert into notes (id) values (1)');
    out.duplicate = null;
  } catch (error) {
    out.duplicate = error.errno;
  }
  await conn.ping();
  await conn.end();
  return out;
}

(driver === 'mysql2' ? mysql2() : mariadb())
  .then((out) => console.log(JSON.stringify(out)))
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
