//! Which tables of a target are base tables, for column masking. A result column's definition
//! names its table, and a column rule (`customers.email`) may trust that name only when it is a
//! real table: a view, a temporary table or an alias can carry any table's values under a name of
//! its own. The names come from `information_schema.TABLES`, asked on a connection of witness's own
//! (never the client's session, whose state a query would change), per schema, again when a
//! result names a table not seen yet or the list is older than [`FRESH_FOR`]. What cannot be
//! asked is not a base table: its columns are masked as any column.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::back::{SimpleAnswer, TargetConnection};
use crate::target::MysqlTarget;

/// How long the target may take to list its tables; then nothing is a base table this time.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a schema's list of base tables is believed.
const FRESH_FOR: Duration = Duration::from_secs(10);
/// Schemas users cannot create tables or views in: their tables are the server's own.
const SYSTEM_SCHEMAS: [&str; 2] = ["information_schema", "performance_schema"];

/// The catalogs of every connection's target, shared by its sessions.
#[derive(Default)]
pub(crate) struct Catalogs {
    by_connection: Mutex<HashMap<String, Arc<Catalog>>>,
}

/// One target's base tables, by schema.
#[derive(Default)]
pub(crate) struct Catalog {
    schemas: Mutex<HashMap<String, Listed>>,
    /// Tables asked for lately and found not to be base tables (views, temporary tables): not
    /// asked for again while their schema's list is fresh.
    not_base: Mutex<HashMap<(String, String), Instant>>,
    /// One lookup at a time per target.
    asking: tokio::sync::Mutex<()>,
}

/// A schema's base tables, and when the target listed them.
type Listed = (Instant, Arc<HashSet<String>>);

/// What a result's masking knows of its tables.
#[derive(Clone, Default)]
pub(crate) struct BaseTables {
    by_schema: HashMap<String, Arc<HashSet<String>>>,
}

impl Catalogs {
    pub fn of(&self, connection: &str) -> Arc<Catalog> {
        self.by_connection.lock().unwrap_or_else(|p| p.into_inner()).entry(connection.to_string()).or_default().clone()
    }
}

impl Catalog {
    /// The base tables of these schemas, asking the target for those not known, or known too
    /// long, or (`missing`) without a table a result names.
    pub async fn base_tables(&self, target: &MysqlTarget, wanted: &[(String, String)]) -> BaseTables {
        // What is known needs no turn: a result of tables listed lately never waits behind
        // another session's lookup.
        let (known, to_ask) = self.known(wanted);
        if to_ask.is_empty() {
            return known;
        }
        let _asking = self.asking.lock().await;
        // Another session may have asked while this one waited its turn.
        let (mut known, to_ask) = self.known(wanted);
        if !to_ask.is_empty() {
            let asked = tokio::time::timeout(ASK_TIMEOUT, ask(target, &to_ask)).await.unwrap_or_else(|_| Err("no answer in time".into()));
            match asked {
                Ok(found) => {
                    let mut schemas = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
                    for schema in to_ask {
                        let tables = Arc::new(found.get(&schema).cloned().unwrap_or_default());
                        schemas.insert(schema.clone(), (Instant::now(), tables.clone()));
                        known.by_schema.insert(schema, tables);
                    }
                    let mut not_base = self.not_base.lock().unwrap_or_else(|p| p.into_inner());
                    not_base.retain(|_, at| at.elapsed() < FRESH_FOR);
                    for (schema, table) in wanted {
                        if !known.is_base(schema, table) {
                            not_base.insert((schema.clone(), table.clone()), Instant::now());
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "masking cannot learn the target's base tables; their columns are masked as any column")
                }
            }
        }
        known
    }
}

impl Catalog {
    /// What the lists hold of `wanted`, and the schemas to ask for: not listed, listed too long
    /// ago, or listed without a table a result names.
    fn known(&self, wanted: &[(String, String)]) -> (BaseTables, Vec<String>) {
        let mut known = BaseTables::default();
        let mut to_ask: Vec<String> = Vec::new();
        let schemas = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        for (schema, table) in wanted {
            if SYSTEM_SCHEMAS.contains(&schema.to_ascii_lowercase().as_str()) {
                continue;
            }
            let known_not_base = self
                .not_base
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(schema.clone(), table.clone()))
                .is_some_and(|at| at.elapsed() < FRESH_FOR);
            match schemas.get(schema) {
                Some((at, tables)) if at.elapsed() < FRESH_FOR && (tables.contains(table) || known_not_base) => {
                    known.by_schema.insert(schema.clone(), tables.clone());
                }
                _ if to_ask.contains(schema) => {}
                _ => to_ask.push(schema.clone()),
            }
        }
        (known, to_ask)
    }
}

impl BaseTables {
    /// Whether a column's table, as its definition names it, is a real table (or the server's own).
    pub fn is_base(&self, schema: &str, table: &str) -> bool {
        SYSTEM_SCHEMAS.contains(&schema.to_ascii_lowercase().as_str())
            || self.by_schema.get(schema).is_some_and(|tables| tables.contains(table))
    }
}

/// Asks the target for the base tables of `schemas`.
async fn ask(target: &MysqlTarget, schemas: &[String]) -> Result<HashMap<String, HashSet<String>>, String> {
    let mut connection = TargetConnection::login(&target.witness_login()).await.map_err(|e| e.to_string())?;
    let quoted: Vec<String> = schemas.iter().map(|s| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))).collect();
    let sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE IN ('BASE TABLE', 'SEQUENCE') AND TABLE_SCHEMA IN ({})",
        quoted.join(", ")
    );
    let answer = connection.simple_query(&sql).await.map_err(|e| e.to_string())?;
    let _ = connection.command(&[0x01]).await;
    match answer {
        SimpleAnswer::Rows(rows) => {
            let mut found: HashMap<String, HashSet<String>> = HashMap::new();
            for row in rows {
                if let [Some(schema), Some(table)] = row.as_slice() {
                    found.entry(schema.clone()).or_default().insert(table.clone());
                }
            }
            Ok(found)
        }
        SimpleAnswer::Failed(err) => Err(format!("{} ({})", err.message, err.code)),
        SimpleAnswer::Done(_) => Err("no rows".into()),
    }
}
