//! Entry points for the fuzz targets (`fuzz/fuzz_targets/mysql_packets.rs`) into what the relay
//! reads of peer bytes: a command's answer followed packet by packet (rows masked or not), an
//! execution's parameters, binary and text rows, and `KILL` texts. Not for other use.

use witness_mask::SessionMasks;

use crate::catalog::BaseTables;
use crate::results::{Answer, Expect};
use crate::statements::Statements;

/// Follows `payloads` as the answer a command of kind `expect` (0 to 5) gets; returns how many
/// events it made. Must not panic, whatever the payloads.
pub fn answer(expect: u8, capabilities: u32, payloads: &[&[u8]], masks: Option<&SessionMasks>) -> usize {
    let expect = match expect % 6 {
        0 => Expect::Results { binary: false },
        1 => Expect::Results { binary: true },
        2 => Expect::Rows,
        3 => Expect::Prepare,
        4 => Expect::FieldList,
        _ => Expect::Single,
    };
    let mut answer = Answer::new(expect, capabilities, 4, masks, Vec::new()).with_local_file(Some("f".into()));
    let mut events = Vec::new();
    for payload in payloads {
        if !answer.tables_to_look_up().is_empty() {
            answer.looked_up(BaseTables::default());
        }
        if answer.on_payload(payload, &mut events).is_err() || answer.is_done() {
            break;
        }
    }
    events.len()
}

/// Reads `payload` as a COM_STMT_EXECUTE of a statement prepared with `params` parameters.
pub fn execution(params: u16, payload: &[u8]) {
    let mut statements = Statements::default();
    statements.prepared(1, Ok("select ?".into()), params);
    if let Some(statement) = statements.get_mut(1) {
        statement.long_data.insert(0);
    }
    let _ = statements.execution(payload);
    let _ = statements.execution(payload);
}
