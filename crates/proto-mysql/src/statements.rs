//! The session's prepared statements as the target holds them: their text (what each execution
//! is decided on), their parameters' count and types (an execution may send types once and
//! reuse them), the parameters sent ahead as long data, and the columns of a cursor an execution
//! opened. A statement exists here once the target has confirmed its prepare; an execution of an
//! id witness does not know is decided as a statement it cannot see.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::answer::Column;
use crate::values::{binary_value, hex};
use crate::wire::{Fields, Truncated};

/// The statement id MariaDB reads as "the statement prepared last" (its clients pipeline a
/// prepare and its execution).
pub const LAST_PREPARED: u32 = u32::MAX;
/// Statements kept per session: past this the oldest are forgotten (and decided as unknown).
const MAX_STATEMENTS: usize = 16_384;

/// One prepared statement.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The text, or the bytes when they are not UTF-8 (decided as a statement witness cannot see).
    pub text: Result<Arc<str>, Arc<[u8]>>,
    pub params: u16,
    /// The parameters' types (type, unsigned) as the last execution that sent them said.
    pub types: Option<Vec<(u8, bool)>>,
    /// Parameters sent by COM_STMT_SEND_LONG_DATA since the last execution.
    pub long_data: BTreeSet<u16>,
    /// The columns of the cursor the last execution opened.
    pub cursor: Vec<Column>,
}

/// A session's prepared statements.
#[derive(Default)]
pub(crate) struct Statements {
    by_id: HashMap<u32, Prepared>,
    order: std::collections::VecDeque<u32>,
    last: Option<u32>,
}

/// An execution as read from COM_STMT_EXECUTE.
#[derive(Debug, PartialEq)]
pub(crate) struct Execution {
    pub id: u32,
    /// The cursor flags (0: no cursor).
    pub flags: u8,
    /// The parameters as the recording shows them, or why they could not be read.
    pub params: Result<Vec<Value>, String>,
}

impl Statements {
    pub fn prepared(&mut self, id: u32, text: Result<Arc<str>, Arc<[u8]>>, params: u16) {
        if self.by_id.len() >= MAX_STATEMENTS {
            if let Some(oldest) = self.order.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
        let fresh = Prepared { text, params, types: None, long_data: BTreeSet::new(), cursor: Vec::new() };
        if self.by_id.insert(id, fresh).is_none() {
            self.order.push_back(id);
        }
        self.last = Some(id);
    }

    /// The id a command names, with MariaDB's "last prepared" read.
    pub fn resolve(&self, id: u32) -> u32 {
        if id == LAST_PREPARED {
            self.last.unwrap_or(id)
        } else {
            id
        }
    }

    pub fn get(&self, id: u32) -> Option<&Prepared> {
        self.by_id.get(&self.resolve(id))
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Prepared> {
        let id = self.resolve(id);
        self.by_id.get_mut(&id)
    }

    pub fn closed(&mut self, id: u32) {
        let id = self.resolve(id);
        self.by_id.remove(&id);
        self.order.retain(|kept| *kept != id);
        if self.last == Some(id) {
            self.last = None;
        }
    }

    /// A prepare failed: MariaDB's "last prepared" names no statement until the next one.
    pub fn prepare_failed(&mut self) {
        self.last = None;
    }

    /// An execution went to the target, which used up the statement's long data.
    pub fn executed(&mut self, id: u32) {
        if let Some(statement) = self.get_mut(id) {
            statement.long_data.clear();
        }
    }

    /// COM_RESET_CONNECTION: the target forgets every statement.
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.order.clear();
        self.last = None;
    }

    /// Reads an execution's parameters, with the types it sends or those of the statement's
    /// last execution; remembers the types it sent and forgets the long data it used.
    pub fn execution(&mut self, payload: &[u8]) -> Result<Execution, Truncated> {
        let mut fields = Fields::new(payload);
        fields.u8("command")?;
        let id = fields.uint(4, "statement id")? as u32;
        let flags = fields.u8("flags")?;
        fields.uint(4, "iteration count")?;
        let Some(statement) = self.get_mut(id) else {
            return Ok(Execution { id, flags, params: Err("the statement is not one witness saw prepared".into()) });
        };
        // Cleared once the execution is admitted ([`Statements::executed`]): a refused one leaves
        // the long data on the server for the next.
        let long_data = statement.long_data.clone();
        let count = usize::from(statement.params);
        if count == 0 {
            return Ok(Execution { id, flags, params: Ok(Vec::new()) });
        }
        let params = read_params(&mut fields, count, statement, &long_data);
        Ok(Execution { id, flags, params: params.map_err(|e| format!("{e}; as sent: {}", hex(&payload[..payload.len().min(256)]))) })
    }
}

fn read_params(fields: &mut Fields<'_>, count: usize, statement: &mut Prepared, long_data: &BTreeSet<u16>) -> Result<Vec<Value>, String> {
    let bitmap = fields.bytes(count.div_ceil(8), "NULL bitmap").map_err(|e| e.to_string())?.to_vec();
    if fields.u8("new types flag").map_err(|e| e.to_string())? == 1 {
        let mut types = Vec::with_capacity(count);
        for _ in 0..count {
            let column_type = fields.u8("parameter type").map_err(|e| e.to_string())?;
            let flag = fields.u8("parameter flag").map_err(|e| e.to_string())?;
            types.push((column_type, flag & 0x80 != 0));
        }
        statement.types = Some(types);
    }
    let Some(types) = &statement.types else {
        return Err("the execution reuses parameter types witness has not seen".into());
    };
    let mut params = Vec::with_capacity(count);
    for (i, (column_type, unsigned)) in types.iter().enumerate() {
        if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            params.push(Value::Null);
        } else if long_data.contains(&(i as u16)) {
            params.push(json!({ "long_data": true }));
        } else {
            params.push(binary_value(fields, *column_type, *unsigned).map_err(|e| e.to_string())?);
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::column_type::{LONGLONG, VAR_STRING};

    fn execute(id: u32, new_types: bool, values: &[u8]) -> Vec<u8> {
        let mut payload = vec![0x17];
        payload.extend_from_slice(&id.to_le_bytes());
        payload.extend_from_slice(&[0, 1, 0, 0, 0]);
        payload.push(0b10); // the second of three parameters is NULL
        payload.push(u8::from(new_types));
        if new_types {
            payload.extend_from_slice(&[LONGLONG, 0, VAR_STRING, 0, VAR_STRING, 0]);
        }
        payload.extend_from_slice(values);
        payload
    }

    #[test]
    fn executions_read_their_parameters_with_types_sent_once() {
        let mut statements = Statements::default();
        statements.prepared(3, Ok(Arc::from("select ?, ?, ?")), 3);
        let mut values = 42i64.to_le_bytes().to_vec();
        values.extend_from_slice(b"\x02hi");
        let first = statements.execution(&execute(3, true, &values)).unwrap();
        assert_eq!(first.params, Ok(vec![json!(42), Value::Null, json!("hi")]));
        let again = statements.execution(&execute(LAST_PREPARED, false, &values)).unwrap();
        assert_eq!(again.params, Ok(vec![json!(42), Value::Null, json!("hi")]), "types of the last execution, by the last id");
        let unknown = statements.execution(&execute(9, true, &values)).unwrap();
        assert!(unknown.params.is_err());
        let mut fresh = Statements::default();
        fresh.prepared(3, Ok(Arc::from("select ?, ?, ?")), 3);
        assert!(fresh.execution(&execute(3, false, &values)).unwrap().params.unwrap_err().contains("types witness has not seen"));
        assert!(fresh.execution(&execute(3, true, &values[..4])).unwrap().params.is_err(), "short values");
    }

    #[test]
    fn long_data_stands_in_for_its_value() {
        let mut statements = Statements::default();
        statements.prepared(1, Ok(Arc::from("insert into t values (?, ?, ?)")), 3);
        statements.get_mut(1).unwrap().long_data.insert(2);
        let values = 7i64.to_le_bytes();
        let execution = statements.execution(&execute(1, true, &values)).unwrap();
        assert_eq!(execution.params, Ok(vec![json!(7), Value::Null, json!({"long_data": true})]));
        assert!(!statements.get(1).unwrap().long_data.is_empty(), "kept until the execution is admitted");
        statements.executed(1);
        assert!(statements.get(1).unwrap().long_data.is_empty(), "used up");
    }
}
