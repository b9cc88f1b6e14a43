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
    /// The parameter types it sent, which the server keeps for the next executions once it
    /// has this one ([`Statements::executed`]): a refused execution's never reach it.
    pub types: Option<Vec<(u8, bool)>>,
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

    /// An execution went to the target, which used up the statement's long data and keeps the
    /// parameter types it sent.
    pub fn executed(&mut self, id: u32, types: Option<Vec<(u8, bool)>>) {
        if let Some(statement) = self.get_mut(id) {
            statement.long_data.clear();
            if types.is_some() {
                statement.types = types;
            }
        }
    }

    /// COM_RESET_CONNECTION: the target forgets every statement.
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.order.clear();
        self.last = None;
    }

    /// Reads an execution's parameters, with the types it sends or those of the statement's
    /// last execution the target had.
    pub fn execution(&mut self, payload: &[u8]) -> Result<Execution, Truncated> {
        let mut fields = Fields::new(payload);
        fields.u8("command")?;
        let id = fields.uint(4, "statement id")? as u32;
        let flags = fields.u8("flags")?;
        fields.uint(4, "iteration count")?;
        let Some(statement) = self.get_mut(id) else {
            return Ok(Execution { id, flags, params: Err("the statement is not one witness saw prepared".into()), types: None });
        };
        // Cleared once the execution is admitted ([`Statements::executed`]): a refused one leaves
        // the long data on the server for the next.
        let long_data = statement.long_data.clone();
        let count = usize::from(statement.params);
        if count == 0 {
            return Ok(Execution { id, flags, params: Ok(Vec::new()), types: None });
        }
        let mut types = None;
        let params = read_params(&mut fields, count, statement, &long_data, &mut types);
        let params = params.map_err(|e| format!("{e}; as sent: {}", hex(&payload[..payload.len().min(256)])));
        Ok(Execution { id, flags, params, types })
    }
}

/// The parameters; `sent` gets the types the execution sends, if it does.
fn read_params(
    fields: &mut Fields<'_>,
    count: usize,
    statement: &Prepared,
    long_data: &BTreeSet<u16>,
    sent: &mut Option<Vec<(u8, bool)>>,
) -> Result<Vec<Value>, String> {
    let bitmap = fields.bytes(count.div_ceil(8), "NULL bitmap").map_err(|e| e.to_string())?.to_vec();
    if fields.u8("new types flag").map_err(|e| e.to_string())? == 1 {
        let mut types = Vec::with_capacity(count);
        for _ in 0..count {
            let column_type = fields.u8("parameter type").map_err(|e| e.to_string())?;
            let flag = fields.u8("parameter flag").map_err(|e| e.to_string())?;
            types.push((column_type, flag & 0x80 != 0));
        }
        *sent = Some(types);
    }
    let Some(types) = sent.as_ref().or(statement.types.as_ref()) else {
        return Err("the execution reuses parameter types witness has not seen".into());
    };
    let mut params = Vec::with_capacity(count);
    for (i, (column_type, unsigned)) in types.iter().enumerate() {
        // Long data first, as the server reads them: it uses a parameter's long data whatever
        // the NULL bitmap says.
        if long_data.contains(&(i as u16)) {
            params.push(json!({ "long_data": true }));
        } else if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            params.push(Value::Null);
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
        statements.executed(3, first.types);
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
        statements.executed(1, execution.types);
        assert!(statements.get(1).unwrap().long_data.is_empty(), "used up");
        // Long data stands in for a parameter the NULL bitmap marks too: the server uses it.
        statements.get_mut(1).unwrap().long_data.extend([1, 2]);
        let execution = statements.execution(&execute(1, false, &values)).unwrap();
        assert_eq!(execution.params, Ok(vec![json!(7), json!({"long_data": true}), json!({"long_data": true})]));
    }

    #[test]
    fn a_refused_executions_types_are_not_the_next_ones() {
        let mut statements = Statements::default();
        statements.prepared(3, Ok(Arc::from("select ?, ?, ?")), 3);
        let mut values = 42i64.to_le_bytes().to_vec();
        values.extend_from_slice(b"\x02hi");
        let admitted = statements.execution(&execute(3, true, &values)).unwrap();
        statements.executed(3, admitted.types);
        // Refused (never executed): its types are not what the server reads the next with.
        let mut other_types = execute(3, true, &values);
        other_types[12] = VAR_STRING;
        let refused = statements.execution(&other_types).unwrap();
        assert!(refused.params.is_err() || refused.params != Ok(vec![json!(42), Value::Null, json!("hi")]));
        let next = statements.execution(&execute(3, false, &values)).unwrap();
        assert_eq!(next.params, Ok(vec![json!(42), Value::Null, json!("hi")]));
    }
}
