//! Where result columns come from: a RowDescription names each column's table by OID and its
//! position in the table, not by name, and an alias (`SELECT ssn AS x`) hides the real name.
//! Masking by `table.column` needs the names, so witness asks the target's catalog on a
//! connection of its own, once per table, and keeps the answer for a while.
//!
//! This is the only place witness runs a query of its own on a target. It reads the catalog and
//! nothing else, and never inside a client's session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::back::{self, BackendError};
use crate::codec::{self, Fields};
use crate::target::PgTarget;

/// A table's names, as the catalog gave them.
#[derive(Debug)]
pub struct TableNames {
    pub schema: String,
    pub table: String,
    /// Column names by attribute number (1-based; index 0 unused).
    columns: Vec<Option<String>>,
}

/// The table names of one target, shared by its sessions.
#[derive(Default)]
pub struct Catalog {
    tables: Mutex<HashMap<u32, (Instant, Arc<TableNames>)>>,
    /// One lookup at a time per target: sessions that start together wait for the first's answer
    /// instead of each opening a connection.
    lookup: tokio::sync::Mutex<()>,
}

/// A table's names are asked again after this long (tables are renamed, OIDs reused).
const FRESH_FOR: Duration = Duration::from_secs(60);
/// Tables kept per target; past this the cache starts again.
const MAX_TABLES: usize = 10_000;
/// A result has at most 1664 columns (PostgreSQL's limit); lookups ask for this many tables at most.
const MAX_TABLES_PER_LOOKUP: usize = 1664;

impl TableNames {
    pub fn column(&self, attnum: i16) -> Option<&str> {
        self.columns.get(usize::try_from(attnum).ok()?)?.as_deref()
    }
}

impl Catalog {
    /// The names of a table, if known and fresh.
    pub fn table(&self, oid: u32) -> Option<Arc<TableNames>> {
        let tables = self.lock();
        let (at, names) = tables.get(&oid)?;
        (at.elapsed() < FRESH_FOR).then(|| names.clone())
    }

    /// Of `oids`, those whose names are not known (or not fresh).
    pub fn missing(&self, oids: impl IntoIterator<Item = u32>) -> Vec<u32> {
        let tables = self.lock();
        let mut missing: Vec<u32> =
            oids.into_iter().filter(|oid| *oid != 0 && tables.get(oid).is_none_or(|(at, _)| at.elapsed() >= FRESH_FOR)).collect();
        missing.sort_unstable();
        missing.dedup();
        missing.truncate(MAX_TABLES_PER_LOOKUP);
        missing
    }

    /// Asks the target for the names of `oids` on a connection of witness's own. Tables the
    /// catalog does not have (dropped meanwhile) stay unknown.
    pub async fn look_up(&self, target: &PgTarget, oids: &[u32]) -> Result<(), BackendError> {
        let _one_at_a_time = self.lookup.lock().await;
        let oids = self.missing(oids.iter().copied());
        if oids.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = oids.iter().map(u32::to_string).collect();
        let sql = format!(
            "SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
             WHERE c.oid IN ({}) AND a.attnum > 0 AND NOT a.attisdropped",
            list.join(",")
        );
        let rows = query(target, &sql).await?;
        let mut found: HashMap<u32, TableNames> = HashMap::new();
        for row in rows {
            let [Some(oid), Some(schema), Some(table), Some(attnum), Some(column)] = row.as_slice() else { continue };
            let (Ok(oid), Ok(attnum)) = (oid.parse::<u32>(), attnum.parse::<usize>()) else { continue };
            let names =
                found.entry(oid).or_insert_with(|| TableNames { schema: schema.clone(), table: table.clone(), columns: Vec::new() });
            if names.columns.len() <= attnum {
                names.columns.resize(attnum + 1, None);
            }
            names.columns[attnum] = Some(column.clone());
        }
        let now = Instant::now();
        let mut tables = self.lock();
        if tables.len() + found.len() > MAX_TABLES {
            tables.clear();
        }
        for (oid, names) in found {
            tables.insert(oid, (now, Arc::new(names)));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (Instant, Arc<TableNames>)>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs one simple query on a new connection and returns its rows as text.
async fn query(target: &PgTarget, sql: &str) -> Result<Vec<Vec<Option<String>>>, BackendError> {
    let params = [("application_name".to_string(), "witness catalog".to_string())];
    let mut backend = back::connect(target, &params).await?;
    let mut out = BytesMut::new();
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    codec::frontend(&mut out, b'Q', &body);
    back::write(target, &mut backend.stream, &out).await?;
    let mut buf = std::mem::take(&mut backend.leftover);
    let mut rows = Vec::new();
    let mut failure = None;
    loop {
        let msg = back::read_message(target, &mut backend.stream, &mut buf).await?;
        match msg[0] {
            b'D' => {
                let mut f = Fields::new(&msg[5..]);
                let broken = |_| back::protocol(target, "sent a malformed row to a catalog query".into());
                let n = f.count().map_err(broken)?;
                let mut row = Vec::with_capacity(n.min(16));
                for _ in 0..n {
                    row.push(f.nullable().map_err(broken)?.map(|v| String::from_utf8_lossy(v).into_owned()));
                }
                rows.push(row);
            }
            b'E' => failure = Some(codec::parse_error_fields(&msg[5..])),
            b'Z' => break,
            _ => {}
        }
    }
    let mut terminate = BytesMut::new();
    codec::frontend(&mut terminate, b'X', &[]);
    let _ = backend.stream.write_all(&terminate).await;
    match failure {
        Some(error) => Err(back::protocol(target, format!("refused witness's catalog query: {} ({})", error.message, error.sqlstate))),
        None => Ok(rows),
    }
}
