//! Where result columns come from: a RowDescription names each column's table by OID and its
//! position in the table, not by name, and an alias (`SELECT ssn AS x`) hides the real name.
//! Masking by `table.column` needs the names, so witness asks the target's catalog on a
//! connection of its own, once per table, and keeps the answer for a while.
//!
//! A view or materialized view names itself in a RowDescription, not the tables it reads. Its
//! rewrite rule's dependencies (`pg_rewrite`, `pg_depend`) say which base columns it reads, though
//! not which output column each becomes; so masking treats every column of a view as reading every
//! base column it depends on (through views of views), and masks them all when one is masked.
//!
//! This is the only place witness runs a query of its own on a target. It reads the catalog and
//! nothing else, and never inside a client's session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::back::{self, BackendError};
use crate::codec::{self, backend, frontend, Fields};
use crate::target::PgTarget;

/// A table's names, as the catalog gave them.
#[derive(Debug)]
pub struct TableNames {
    pub schema: String,
    pub table: String,
    /// Column names by attribute number (1-based; index 0 unused).
    columns: Vec<Option<String>>,
    /// For a view or materialized view, the columns (table OID, attribute number) it reads;
    /// empty for a table.
    pub reads: Vec<(u32, i16)>,
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
/// Views of views are followed this deep; a view deeper than that reads tables witness does not
/// know, which masking takes as matching every table pattern.
pub const MAX_VIEW_DEPTH: usize = 4;

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

    /// Of `oids`, and of the tables the known views among them read, those whose names are not
    /// known (or not fresh).
    pub fn missing(&self, oids: impl IntoIterator<Item = u32>) -> Vec<u32> {
        let tables = self.lock();
        let fresh = |oid: &u32| tables.get(oid).filter(|(at, _)| at.elapsed() < FRESH_FOR).map(|(_, names)| names.clone());
        let mut missing = Vec::new();
        let mut level: Vec<u32> = oids.into_iter().filter(|oid| *oid != 0).collect();
        for _ in 0..=MAX_VIEW_DEPTH {
            let mut next = Vec::new();
            for oid in level {
                match fresh(&oid) {
                    None => missing.push(oid),
                    Some(names) => next.extend(names.reads.iter().map(|(table, _)| *table)),
                }
            }
            next.sort_unstable();
            next.dedup();
            level = next;
        }
        missing.sort_unstable();
        missing.dedup();
        missing.truncate(MAX_TABLES_PER_LOOKUP);
        missing
    }

    /// Asks the target for the names of `oids` on a connection of witness's own, and for views
    /// among them the columns they read, and those tables' names in turn. Tables the catalog does
    /// not have (dropped meanwhile) stay unknown.
    pub async fn look_up(&self, target: &PgTarget, oids: &[u32]) -> Result<(), BackendError> {
        let _one_at_a_time = self.lookup.lock().await;
        let mut oids = self.missing(oids.iter().copied());
        let mut asked = Vec::new();
        for _ in 0..=MAX_VIEW_DEPTH {
            // A table asked for and not found (dropped meanwhile) is not asked again.
            oids.retain(|oid| !asked.contains(oid));
            if oids.is_empty() {
                break;
            }
            asked.extend_from_slice(&oids);
            let found = look_up_tables(target, &oids).await?;
            let now = Instant::now();
            let mut tables = self.lock();
            if tables.len() + found.len() > MAX_TABLES {
                tables.clear();
            }
            for (oid, names) in found {
                tables.insert(oid, (now, Arc::new(names)));
            }
            drop(tables);
            // The tables the views just found read, where not known yet.
            oids = self.missing(oids.iter().copied());
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (Instant, Arc<TableNames>)>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The names of `oids`' tables (with the columns views read) from the catalog.
async fn look_up_tables(target: &PgTarget, oids: &[u32]) -> Result<HashMap<u32, TableNames>, BackendError> {
    let list: Vec<String> = oids.iter().map(u32::to_string).collect();
    let list = list.join(",");
    // Columns, and for views and materialized views the base columns their rewrite rule reads
    // (a rule depends on every column its query uses).
    let sql = format!(
        "SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname, NULL::pg_catalog.oid, NULL::pg_catalog.int4 \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
         WHERE c.oid IN ({list}) AND a.attnum > 0 AND NOT a.attisdropped \
         UNION ALL \
         SELECT DISTINCT r.ev_class, NULL::pg_catalog.name, NULL::pg_catalog.name, NULL::pg_catalog.int2, NULL::pg_catalog.name, d.refobjid, d.refobjsubid \
         FROM pg_catalog.pg_rewrite r \
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid \
         WHERE r.ev_class IN ({list}) AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
         AND d.refobjsubid > 0 AND d.refobjid <> r.ev_class"
    );
    let rows = query(target, &sql).await?;
    let mut found: HashMap<u32, TableNames> = HashMap::new();
    let mut reads: Vec<(u32, u32, i16)> = Vec::new();
    for row in rows {
        match row.as_slice() {
            [Some(oid), Some(schema), Some(table), Some(attnum), Some(column), None, None] => {
                let (Ok(oid), Ok(attnum)) = (oid.parse::<u32>(), attnum.parse::<usize>()) else { continue };
                let names = found.entry(oid).or_insert_with(|| TableNames {
                    schema: schema.clone(),
                    table: table.clone(),
                    columns: Vec::new(),
                    reads: Vec::new(),
                });
                if names.columns.len() <= attnum {
                    names.columns.resize(attnum + 1, None);
                }
                names.columns[attnum] = Some(column.clone());
            }
            [Some(view), None, None, None, None, Some(table), Some(attnum)] => {
                if let (Ok(view), Ok(table), Ok(attnum)) = (view.parse(), table.parse(), attnum.parse()) {
                    reads.push((view, table, attnum));
                }
            }
            _ => {}
        }
    }
    for (view, table, attnum) in reads {
        if let Some(names) = found.get_mut(&view) {
            names.reads.push((table, attnum));
        }
    }
    Ok(found)
}

/// Runs one simple query on a new connection and returns its rows as text.
async fn query(target: &PgTarget, sql: &str) -> Result<Vec<Vec<Option<String>>>, BackendError> {
    let params = [("application_name".to_string(), "witness catalog".to_string())];
    let mut backend = back::connect(target, &params).await?;
    let mut out = BytesMut::new();
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    codec::frontend_message(&mut out, frontend::QUERY, &body);
    back::write(target, &mut backend.stream, &out).await?;
    let mut buf = std::mem::take(&mut backend.leftover);
    let mut rows = Vec::new();
    let mut failure = None;
    loop {
        let msg = back::read_message(target, &mut backend.stream, &mut buf).await?;
        match msg[0] {
            backend::DATA_ROW => {
                let mut f = Fields::new(&msg[5..]);
                let broken = |_| back::protocol(target, "sent a malformed row to a catalog query".into());
                let n = f.count().map_err(broken)?;
                let mut row = Vec::with_capacity(n.min(16));
                for _ in 0..n {
                    row.push(f.nullable().map_err(broken)?.map(|v| String::from_utf8_lossy(v).into_owned()));
                }
                rows.push(row);
            }
            backend::ERROR_RESPONSE => failure = Some(codec::parse_error_fields(&msg[5..])),
            backend::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    let mut terminate = BytesMut::new();
    codec::frontend_message(&mut terminate, frontend::TERMINATE, &[]);
    let _ = backend.stream.write_all(&terminate).await;
    match failure {
        Some(error) => Err(back::protocol(target, format!("refused witness's catalog query: {} ({})", error.message, error.sqlstate))),
        None => Ok(rows),
    }
}
