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
//! This module is the cache, and does no I/O; `catalog_lookup` asks the target.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// The catalog caches of a front's connections, by connection name: the sessions of one
/// connection share its cache. Only connections that name a target get one, so the map is as
/// large as the config's connections at most.
#[derive(Default)]
pub struct Catalogs {
    by_connection: Mutex<HashMap<String, Arc<Catalog>>>,
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

impl Catalogs {
    /// The cache of `connection`'s target, made empty the first time.
    pub fn of(&self, connection: &str) -> Arc<Catalog> {
        let mut by_connection = self.by_connection.lock().unwrap_or_else(|p| p.into_inner());
        by_connection.entry(connection.to_string()).or_default().clone()
    }
}

impl TableNames {
    /// A table's names, with no columns known yet.
    pub fn new(schema: String, table: String) -> TableNames {
        TableNames { schema, table, columns: Vec::new(), reads: Vec::new() }
    }

    /// Names the column at attribute number `attnum`.
    pub fn set_column(&mut self, attnum: usize, name: String) {
        if self.columns.len() <= attnum {
            self.columns.resize(attnum + 1, None);
        }
        self.columns[attnum] = Some(name);
    }

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

    /// Waits for this cache's turn to ask the target: one lookup at a time per connection, so
    /// sessions that start together wait for the first's answer instead of each opening a
    /// connection.
    pub async fn lookup_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lookup.lock().await
    }

    /// Keeps the names the target just gave.
    pub fn insert(&self, found: HashMap<u32, TableNames>) {
        let now = Instant::now();
        let mut tables = self.lock();
        if tables.len() + found.len() > MAX_TABLES {
            tables.clear();
        }
        for (oid, names) in found {
            tables.insert(oid, (now, Arc::new(names)));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (Instant, Arc<TableNames>)>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}
