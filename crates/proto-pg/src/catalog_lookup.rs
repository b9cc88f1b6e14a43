//! Witness's own queries on a target: the names of the tables (and the columns views read) that
//! masking needs, asked of the target's catalog on a connection of witness's own, with the
//! connection's own login, and kept in the connection's [`Catalog`] cache.
//!
//! This is the only place witness runs a query of its own on a target. It reads the catalog and
//! nothing else, and never inside a client's session.

use std::collections::HashMap;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::back::{self, BackendError};
use crate::catalog::{Catalog, TableNames, MAX_VIEW_DEPTH};
use crate::codec::{self, backend, frontend, Fields};
use crate::target::PgTarget;

/// Asks the target for the names of `oids` on a connection of witness's own, and for views
/// among them the columns they read, and those tables' names in turn. Tables the catalog does
/// not have (dropped meanwhile) stay unknown.
pub async fn look_up(catalog: &Catalog, target: &PgTarget, oids: &[u32]) -> Result<(), BackendError> {
    let _one_at_a_time = catalog.lookup_turn().await;
    let mut oids = catalog.missing(oids.iter().copied());
    let mut asked = Vec::new();
    for _ in 0..=MAX_VIEW_DEPTH {
        // A table asked for and not found (dropped meanwhile) is not asked again.
        oids.retain(|oid| !asked.contains(oid));
        if oids.is_empty() {
            break;
        }
        asked.extend_from_slice(&oids);
        catalog.insert(look_up_tables(target, &oids).await?);
        // The tables the views just found read, where not known yet.
        oids = catalog.missing(oids.iter().copied());
    }
    Ok(())
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
                found.entry(oid).or_insert_with(|| TableNames::new(schema.clone(), table.clone())).set_column(attnum, column.clone());
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
