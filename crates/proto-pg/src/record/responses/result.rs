//! The events that end a result: a statement's result (its tag, suspension or error, with the
//! columns and rows recorded), a COPY TO's counts, and the requests the target skipped after an
//! error in their pipeline. Each result answers the request at the head of the queue.

use std::time::Instant;

use serde_json::json;
use witness_core::{kind, Direction, Event, PayloadType};

use super::Responses;
use crate::codec::ErrorFields;
use crate::copy::CopyCount;
use crate::mask::{Plan, WireMasks};
use crate::record::{clip, copy_event, ColumnsJson, ResultPayload};
use crate::state::{Pending, Tracker};

/// How a result ended.
pub(super) enum Outcome<'a> {
    /// CommandComplete with its tag (or an empty query).
    Complete(&'a str),
    /// PortalSuspended: the execution reached its row limit.
    Suspended,
    Error(&'a ErrorFields),
}

/// What a result answers, as the request at the head of the queue says: when it started, which
/// statement of a simple query it is, which request it answers, and which protocol message
/// failed, for an error of one that is not a request.
#[derive(Default)]
struct Answered {
    started: Option<Instant>,
    statement: Option<u32>,
    answers: Option<u64>,
    message: Option<&'static str>,
}

// === impl Responses ===

impl Responses {
    /// A result for the request at the head of the queue; the head moves on as the target does.
    pub(super) fn result(&mut self, tracker: &Tracker, outcome: Outcome<'_>) -> Event {
        if !self.columns_settled {
            // A result without rows still names its columns, when they are known.
            self.settle_columns(tracker);
        }
        let answered = Answered::head(tracker);
        if matches!(outcome, Outcome::Error(_)) {
            // Pops a failed extended-protocol message (the target skips to Sync from here).
            tracker.failed();
        } else {
            tracker.result_ended();
        }
        let mut event = answered.describe(self.outcome_event(outcome).with_attr("rows", self.n_rows));
        if let Some(counts) = self.masks.as_mut().and_then(WireMasks::take_counts) {
            event = event.with_attr("masked", counts);
        }
        if !self.columns.is_empty() {
            event = event.with_attr("rows_recorded", self.rows.len());
            let payload = ResultPayload { columns: ColumnsJson(&self.columns), rows: &self.rows };
            event.payload_type = PayloadType::Json;
            event.payload = serde_json::to_vec(&payload).expect("JSON values serialize");
        }
        self.end_result();
        event
    }

    /// The event of a result as its outcome words it.
    fn outcome_event(&self, outcome: Outcome<'_>) -> Event {
        match outcome {
            Outcome::Complete(tag) => {
                let rows = if self.columns.is_empty() { String::new() } else { format!(" ({} rows)", self.n_rows) };
                Event::note(kind::PG_RESULT, Direction::Response, clip(&format!("{tag}{rows}"))).with_attr("tag", tag)
            }
            Outcome::Suspended => Event::note(kind::PG_RESULT, Direction::Response, format!("portal suspended after {} rows", self.n_rows))
                .with_attr("suspended", true),
            Outcome::Error(error) => Event::note(
                kind::PG_RESULT,
                Direction::Response,
                clip(&format!("{} {}: {}", error.severity, error.sqlstate, error.message)),
            )
            .with_attr("error", json!({ "severity": error.severity, "sqlstate": error.sqlstate, "message": error.message })),
        }
    }

    /// Forgets the result that ended: the next one starts without columns, plan or rows.
    fn end_result(&mut self) {
        self.columns.clear();
        self.columns_settled = false;
        self.undescribed = None;
        self.plan = Plan::default();
        self.rows.clear();
        self.rows_bytes = 0;
        self.n_rows = 0;
    }

    /// A COPY TO's data, once it has ended: its rows as the target counted them (the command
    /// tag), None when it failed.
    pub(super) fn copy_out_event(&mut self, mut count: CopyCount, rows: Option<u64>) -> Event {
        count.rows = rows.unwrap_or(0);
        let outcome = if rows.is_some() { "done" } else { "failed" };
        let summary = format!("COPY OUT {outcome}: {} bytes, {} rows", count.bytes, count.rows);
        let mut event = copy_event(kind::PG_COPY_OUT, Direction::Response, summary, count).with_attr("outcome", outcome);
        if let Some(counts) = self.masks.as_mut().and_then(WireMasks::take_counts) {
            event = event.with_attr("masked", counts);
        }
        event
    }
}

// === impl Answered ===

impl Answered {
    /// What the head of the queue is; a simple query counts the result as its next statement's.
    fn head(tracker: &Tracker) -> Answered {
        let failed = |message| Answered { message: Some(message), ..Answered::default() };
        tracker.with_head(|head| match head {
            Some(Pending::Query { request, started, statements, .. }) => {
                *statements += 1;
                Answered { started: Some(*started), statement: Some(*statements), answers: Some(*request), message: None }
            }
            Some(Pending::Execute { request, started, .. } | Pending::FunctionCall { request, started, .. }) => {
                Answered { started: Some(*started), answers: Some(*request), ..Answered::default() }
            }
            Some(Pending::Parse { .. }) => failed("parse"),
            Some(Pending::Bind { .. }) => failed("bind"),
            Some(Pending::Describe { .. }) => failed("describe"),
            Some(Pending::Close { .. }) => failed("close"),
            Some(Pending::Sync) => failed("sync"),
            None => Answered::default(),
        })
    }

    /// The result's event with what it answers.
    fn describe(self, mut event: Event) -> Event {
        if let Some(answers) = self.answers {
            event = event.with_attr("answers", answers);
        }
        if let Some(message) = self.message {
            event = event.with_attr("message", message);
        }
        if let Some(started) = self.started {
            event = event.with_attr("duration_us", started.elapsed().as_micros() as u64);
        }
        if let Some(statement) = self.statement {
            event = event.with_attr("statement_index", statement);
        }
        event
    }
}

/// What is recorded of a request the target skipped after an error in its pipeline.
pub(super) fn skipped_event(pending: Pending) -> Option<Event> {
    let (summary, answers) = match pending {
        Pending::Execute { request, text, .. } => (format!("not executed (an earlier message of the pipeline failed): {text}"), request),
        Pending::Query { request, .. } => ("query not run (an earlier message of the pipeline failed)".to_string(), request),
        Pending::FunctionCall { request, .. } => ("function call not run (an earlier message of the pipeline failed)".to_string(), request),
        _ => return None,
    };
    Some(Event::note(kind::PG_RESULT, Direction::Response, clip(&summary)).with_attr("skipped", true).with_attr("answers", answers))
}
