//! The client's messages: what each one is recorded as, the text the gate decides on before it
//! runs, and the answer the target owes for it. Names are read through the session's
//! [`Overlay`]: a Bind, Describe or Execute means the statement or portal the target will use,
//! and where witness cannot know it, the request is recorded and decided as unknown.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use witness_core::{kind, Direction, Event, Request};

use super::{copy_event, lossy, mask_request, request, values_within_budget, WithPayloadText, OPAQUE_REQUEST};
use crate::codec::{described, frontend, DecodeError, Fields, Message};
use crate::copy::CopyRows;
use crate::mask::WireMasks;
use crate::reading::{self, Unreadable};
use crate::state::{Overlay, Pending, Portal, Progress, Statement, Tracker};

/// Client-side state: the names the current pipeline sets, and COPY IN counts.
#[derive(Default)]
pub struct Requests {
    overlay: Overlay,
    copy_in: Option<CopyRows>,
    /// How the data of a COPY FROM STDIN the client asked for last is laid out.
    copy_in_format: crate::copy::CopyFormat,
    /// Queries, executions and function calls seen so far: each one's event carries its number.
    n_requests: u64,
    /// Masking of what the recording keeps of requests (parameters, statement texts).
    masks: Option<WireMasks>,
}

/// What to do with one client message.
// Not boxed: a Step is made for every message and `Wait` is rare, so an allocation per message
// would cost more than the copy of a large value.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step {
    /// Its meaning depends on answers the target still owes: forward what came before it, wait
    /// until [`Tracker::wait_settled`] returns, and look at it again.
    Wait,
    Seen(Seen),
}

/// What the client side saw in one message: the event to record before it is forwarded, the
/// request text the gate must decide on before it runs (a query, an execution's statement), and
/// the answer the target owes for it, to queue once it is decided.
#[derive(Debug, Default)]
pub struct Seen {
    pub event: Option<Event>,
    pub decide: Option<Arc<str>>,
    pub pending: Option<Pending>,
}

impl Step {
    /// A message that is not recorded or decided, only answered by the target.
    fn queue(pending: Pending) -> Step {
        Step::Seen(Seen { pending: Some(pending), ..Seen::default() })
    }
}

impl Seen {
    /// The request to put to the gate, if this message is one.
    pub fn request(&self) -> Option<Request<'_>> {
        self.decide.as_deref().map(|text| if text == OPAQUE_REQUEST { Request::OpaqueSql } else { Request::Sql(text) })
    }

    /// The request is refused: when the target answers the substitute witness sends in its place,
    /// the client gets `error` (a whole ErrorResponse) instead.
    pub fn deny(&mut self, error: Bytes) {
        if let Some(Pending::Query { denial, .. } | Pending::Execute { denial, .. } | Pending::FunctionCall { denial, .. }) =
            &mut self.pending
        {
            *denial = Some(error);
        }
    }
}

impl Requests {
    /// Request tracking whose recording masks what `masks` finds (None: nothing is masked).
    pub(crate) fn new(masks: Option<WireMasks>) -> Requests {
        Requests { masks, ..Requests::default() }
    }

    /// Looks at one client message; returns what to record, decide and queue before it is
    /// forwarded, or that it must wait. Nothing changes when it must wait.
    pub fn on_message(&mut self, msg: Message<'_>, tracker: &Tracker) -> Result<Step, DecodeError> {
        let mut step = self.see(msg, tracker)?;
        if let (Some(masks), Step::Seen(Seen { event: Some(event), .. })) = (&mut self.masks, &mut step) {
            mask_request(masks, event);
        }
        Ok(step)
    }

    /// [`Requests::on_message`] for tests and fuzzing: queues what it saw at once, allowing every
    /// request, and gives up on a message that must wait.
    pub fn see_and_queue(&mut self, msg: Message<'_>, tracker: &Tracker) -> Result<Option<Event>, DecodeError> {
        match self.on_message(msg, tracker)? {
            Step::Wait => Ok(None),
            Step::Seen(seen) => {
                if let Some(pending) = seen.pending {
                    tracker.push(pending);
                }
                Ok(seen.event)
            }
        }
    }

    /// Dispatches a message to its method; messages that are not requests or answered by the
    /// target (Flush, Terminate, …) are seen as nothing.
    fn see(&mut self, msg: Message<'_>, tracker: &Tracker) -> Result<Step, DecodeError> {
        let body = msg.body;
        match msg.tag {
            frontend::QUERY => self.on_query(body, tracker),
            frontend::PARSE => self.on_parse(body, tracker),
            frontend::DESCRIBE => self.on_describe(body, tracker),
            frontend::BIND => self.on_bind(body, tracker),
            frontend::EXECUTE => self.on_execute(body, tracker),
            frontend::SYNC => Ok(self.on_sync()),
            frontend::CLOSE => self.on_close(body),
            frontend::COPY_DATA => Ok(self.on_copy_data(body)),
            frontend::COPY_DONE => Ok(self.on_copy_end("done")),
            frontend::COPY_FAIL => Ok(self.on_copy_end("failed by the client")),
            frontend::FUNCTION_CALL => self.on_function_call(body),
            _ => Ok(Step::Seen(Seen::default())),
        }
    }

    /// A simple Query: decided on its text as the target will read it; it ends the pipeline.
    fn on_query(&mut self, body: &[u8], tracker: &Tracker) -> Result<Step, DecodeError> {
        let raw = Fields::new(body).cstr()?;
        let Some(text) = self.read_text(raw, tracker) else { return Ok(Step::Wait) };
        let changes_names = reading::may_change_names(raw);
        self.expect_copy_in(match &text {
            Ok(text) | Err((text, _)) => text,
        });
        self.overlay.end_pipeline();
        let (event, decide) = match text {
            Ok(text) => (request(kind::PG_QUERY, &text).with_payload_text(text.clone()), Arc::from(text)),
            Err((text, why)) => (unreadable(request(kind::PG_QUERY, &text).with_payload_text(text), &why), Arc::from(OPAQUE_REQUEST)),
        };
        let request = self.next_request();
        let pending = Pending::Query { request, started: Instant::now(), statements: 0, denial: None, changes_names };
        Ok(Step::Seen(Seen { event: Some(event.with_attr("request", request)), decide: Some(decide), pending: Some(pending) }))
    }

    /// A Parse: recorded with its text; the statement is the pipeline's from here on, and the
    /// target's once it confirms it.
    fn on_parse(&mut self, body: &[u8], tracker: &Tracker) -> Result<Step, DecodeError> {
        let mut f = Fields::new(body);
        let name = f.cstr()?;
        let raw = f.cstr()?;
        let n_types = f.count()?;
        let param_types: Vec<u32> = (0..n_types).map(|_| f.i32().map(|oid| oid as u32)).collect::<Result<_, _>>()?;
        let Some(text) = self.read_text(raw, tracker) else { return Ok(Step::Wait) };
        let recorded = text.as_ref().map_or_else(|(text, _)| text.clone(), Clone::clone);
        let mut event = request(kind::PG_PARSE, &recorded).with_attr("statement", lossy(name)).with_payload_text(recorded);
        if let Err((_, why)) = &text {
            event = unreadable(event, why);
        }
        let text = text.map(Arc::from).map_err(|(text, why)| (Arc::from(text), why.describe()));
        let changes_names = reading::may_change_names(raw);
        let statement = Arc::new(Statement { id: tracker.next_id(), text, changes_names, param_types: param_types.into() });
        self.overlay.parsed(name, statement.clone());
        let pending = Pending::Parse { name: name.into(), statement };
        Ok(Step::Seen(Seen { event: Some(event), decide: None, pending: Some(pending) }))
    }

    /// A Describe: not recorded; its answer is kept by the id of what it names.
    fn on_describe(&mut self, body: &[u8], tracker: &Tracker) -> Result<Step, DecodeError> {
        let mut f = Fields::new(body);
        let what = f.u8()?;
        let name = f.cstr()?;
        let id = match what {
            described::STATEMENT => self.overlay.statement(tracker, name).settled().map(|found| found.map(|statement| statement.id)),
            _ => self.overlay.portal(tracker, name).settled().map(|found| found.map(|portal| portal.id)),
        };
        let Some(id) = id else { return Ok(Step::Wait) };
        Ok(Step::queue(Pending::Describe { id }))
    }

    /// A Bind: not recorded itself; its portal keeps the parameters (as recorded) for the
    /// executions that run it.
    fn on_bind(&mut self, body: &[u8], tracker: &Tracker) -> Result<Step, DecodeError> {
        let mut f = Fields::new(body);
        let portal_name = f.cstr()?;
        let statement_name = f.cstr()?;
        let Some(statement) = self.overlay.statement(tracker, statement_name).settled() else { return Ok(Step::Wait) };
        let formats = read_formats(&mut f)?;
        let n_params = f.count()?;
        let types = statement.as_ref().map(|s| tracker.param_types(s)).unwrap_or_default();
        let params = values_within_budget(&mut f, &formats, &types, n_params)?;
        let binary_param_types = formats.iter().any(|&format| format != 0).then(|| {
            let mut types = types;
            types.resize(n_params, 0);
            types
        });
        let result_formats = read_formats(&mut f)?;
        let portal = Arc::new(Portal {
            id: tracker.next_id(),
            statement,
            statement_name: lossy(statement_name),
            formats: result_formats.into(),
            params,
            n_params,
            binary_param_types,
        });
        self.overlay.bound(portal_name, portal.clone());
        Ok(Step::queue(Pending::Bind { name: portal_name.into(), portal }))
    }

    /// An Execute: recorded and decided on the statement its portal runs, as the target holds it.
    fn on_execute(&mut self, body: &[u8], tracker: &Tracker) -> Result<Step, DecodeError> {
        let mut f = Fields::new(body);
        let portal_name = f.cstr()?;
        let max_rows = f.i32()?;
        let Some(portal) = self.overlay.portal(tracker, portal_name).settled() else { return Ok(Step::Wait) };
        let (event, text, decide, changes_names) = execution(portal.as_deref(), portal_name);
        self.expect_copy_in(&text);
        let event = if max_rows > 0 { event.with_attr("max_rows", max_rows) } else { event };
        self.overlay.executed(changes_names);
        let request = self.next_request();
        let event = event.with_attr("request", request);
        let pending = Pending::Execute { request, started: Instant::now(), portal, text, denial: None, changes_names };
        Ok(Step::Seen(Seen { event: Some(event), decide: Some(decide), pending: Some(pending) }))
    }

    /// A Sync ends the pipeline: what it set is the target's to confirm.
    fn on_sync(&mut self) -> Step {
        self.overlay.end_pipeline();
        Step::queue(Pending::Sync)
    }

    /// A Close of a statement or portal: gone for the pipeline now, for the target once confirmed.
    fn on_close(&mut self, body: &[u8]) -> Result<Step, DecodeError> {
        let mut f = Fields::new(body);
        let statement = f.u8()? == described::STATEMENT;
        let name = f.cstr()?;
        self.overlay.closed(statement, name);
        Ok(Step::queue(Pending::Close { statement, name: name.into() }))
    }

    /// COPY IN data: counted as rows in the format its statement asked for, never kept.
    fn on_copy_data(&mut self, body: &[u8]) -> Step {
        let format = self.copy_in_format;
        self.copy_in.get_or_insert_with(|| CopyRows::new(format)).add(body);
        Step::Seen(Seen::default())
    }

    /// The end of COPY IN data (CopyDone, or CopyFail): its counts are recorded.
    fn on_copy_end(&mut self, outcome: &'static str) -> Step {
        let count = self.copy_in.take().map(CopyRows::finish).unwrap_or_default();
        let summary = format!("COPY IN {outcome}: {} bytes, {} rows", count.bytes, count.rows);
        let event = copy_event(kind::PG_COPY_IN, Direction::Request, summary, count).with_attr("outcome", outcome);
        Step::Seen(Seen { event: Some(event), ..Seen::default() })
    }

    /// A fast-path FunctionCall: recorded with its arguments and decided as a request whose
    /// statement witness cannot see; it ends the pipeline.
    fn on_function_call(&mut self, body: &[u8]) -> Result<Step, DecodeError> {
        let mut f = Fields::new(body);
        let oid = f.i32()?;
        let formats = read_formats(&mut f)?;
        let n_args = f.count()?;
        let args = values_within_budget(&mut f, &formats, &[], n_args)?;
        let result_format = f.i16()?;
        self.overlay.end_pipeline();
        let event = request(kind::PG_FUNCTION_CALL, &format!("function call (oid {oid})"))
            .with_attr("oid", oid)
            .with_attr("args", Value::Array(args));
        let request = self.next_request();
        let event = event.with_attr("request", request);
        let pending = Pending::FunctionCall { request, started: Instant::now(), denial: None, result_format };
        Ok(Step::Seen(Seen { event: Some(event), decide: Some(Arc::from(OPAQUE_REQUEST)), pending: Some(pending) }))
    }

    /// Reads the layout of the data a COPY FROM STDIN in `text` will receive (only texts that
    /// mention COPY are parsed for it).
    fn expect_copy_in(&mut self, text: &str) {
        if text.len() >= 4 && text.as_bytes().windows(4).any(|w| w.eq_ignore_ascii_case(b"copy")) {
            self.copy_in_format = crate::copy::copy_format(text, false).unwrap_or_default();
        }
    }

    fn next_request(&mut self) -> u64 {
        self.n_requests += 1;
        self.n_requests
    }

    /// A statement's text as the target will read it: Ok(text), Err((text as sent, why it cannot
    /// be read so)), or None when the settings it depends on are still being answered for.
    fn read_text(&self, raw: &[u8], tracker: &Tracker) -> Option<Result<String, (String, Unreadable)>> {
        if !reading::depends_on_settings(raw) {
            return Some(Ok(lossy(raw)));
        }
        let progress = tracker.progress();
        if self.overlay.settings_in_flight() || progress == Progress::Skipping {
            return Some(Err((lossy(raw), Unreadable::SettingsInFlight)));
        }
        if progress == Progress::Open {
            return None;
        }
        Some(reading::read(raw, &tracker.settings()).map(|text| text.into_owned()).map_err(|why| (lossy(raw), why)))
    }
}

/// An Execute's event, the text its result is summarised with, the text decided on, and whether
/// running it may change names.
fn execution(portal: Option<&Portal>, portal_name: &[u8]) -> (Event, Arc<str>, Arc<str>, bool) {
    let Some(portal) = portal else {
        let why = format!("portal \"{}\" is not one witness knows the target to hold", lossy(portal_name));
        let event = request(kind::PG_EXECUTE, "(unknown portal)").with_attr("portal", lossy(portal_name)).with_attr("uncertain", why);
        return (event, Arc::from(""), Arc::from(OPAQUE_REQUEST), true);
    };
    let mut event = match &portal.statement {
        Some(statement) => {
            let text = statement.text.as_ref().unwrap_or_else(|(text, _)| text);
            request(kind::PG_EXECUTE, text).with_payload_text(text.to_string())
        }
        None => request(kind::PG_EXECUTE, "(unknown statement)")
            .with_attr("uncertain", format!("statement \"{}\" is not one witness knows the target to hold", portal.statement_name)),
    };
    event = event
        .with_attr("statement", portal.statement_name.clone())
        .with_attr("portal", lossy(portal_name))
        .with_attr("params", Value::Array(portal.params.clone()));
    if portal.params.len() < portal.n_params {
        event = event.with_attr("params_total", portal.n_params);
    }
    if let Some(types) = &portal.binary_param_types {
        event = event.with_attr("param_types", types.clone());
    }
    match &portal.statement {
        Some(statement) => match &statement.text {
            Ok(text) => (event, text.clone(), text.clone(), statement.changes_names),
            Err((text, why)) => (event.with_attr("uncertain", *why), text.clone(), Arc::from(OPAQUE_REQUEST), statement.changes_names),
        },
        None => (event, Arc::from(""), Arc::from(OPAQUE_REQUEST), true),
    }
}

/// A list of format codes (a Bind's parameter or result formats, a FunctionCall's arguments').
fn read_formats(f: &mut Fields<'_>) -> Result<Vec<i16>, DecodeError> {
    let n = f.count()?;
    let mut formats = Vec::with_capacity(n.min(1664));
    for _ in 0..n {
        formats.push(f.i16()?);
    }
    Ok(formats)
}

/// Marks a request whose text witness cannot read as the target does.
fn unreadable(event: Event, why: &Unreadable) -> Event {
    event.with_attr("uncertain", why.describe())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{backend, transaction};
    use crate::record::tests::{message, msg};

    fn decided(requests: &mut Requests, tracker: &Tracker, m: &[u8]) -> Option<String> {
        match requests.on_message(message(m), tracker).unwrap() {
            Step::Wait => Some("wait".into()),
            Step::Seen(seen) => {
                let decide = seen.decide.as_deref().map(str::to_string);
                if let Some(pending) = seen.pending {
                    tracker.push(pending);
                }
                decide
            }
        }
    }

    #[test]
    fn an_execution_is_decided_on_the_statement_the_target_holds() {
        let tracker = Tracker::default();
        let mut requests = Requests::default();
        // Within one pipeline the pipeline's own Parse and Bind are read as if they succeed.
        for m in [msg(frontend::PARSE, b"s\0delete from accounts\0\0\0"), msg(frontend::BIND, b"\0s\0\0\0\0\0\0\0")] {
            assert_eq!(decided(&mut requests, &tracker, &m), None);
        }
        assert_eq!(decided(&mut requests, &tracker, &msg(frontend::EXECUTE, b"\0\0\0\0\0")).as_deref(), Some("delete from accounts"));
        decided(&mut requests, &tracker, &msg(frontend::SYNC, b""));
        // A second Parse of s in the next pipeline: the name is the target's to confirm, and an
        // execution in a third pipeline waits for the target's answers.
        decided(&mut requests, &tracker, &msg(frontend::PARSE, b"s\0select 1\0\0\0"));
        decided(&mut requests, &tracker, &msg(frontend::SYNC, b""));
        assert_eq!(decided(&mut requests, &tracker, &msg(frontend::BIND, b"\0s\0\0\0\0\0\0\0")).as_deref(), Some("wait"));
    }

    #[test]
    fn a_statement_or_portal_never_confirmed_is_decided_as_unknown() {
        let tracker = Tracker::default();
        let mut requests = Requests::default();
        decided(&mut requests, &tracker, &msg(frontend::BIND, b"p\0nobody\0\0\0\0\0\0\0"));
        let seen = match requests.on_message(message(&msg(frontend::EXECUTE, b"p\0\0\0\0\0")), &tracker).unwrap() {
            Step::Seen(seen) => seen,
            Step::Wait => panic!("nothing is pending"),
        };
        assert_eq!(seen.decide.as_deref(), Some(OPAQUE_REQUEST));
        assert!(seen.event.unwrap().attrs["uncertain"].as_str().unwrap().contains("statement \"nobody\""));
        assert_eq!(decided(&mut requests, &tracker, &msg(frontend::EXECUTE, b"q\0\0\0\0\0")).as_deref(), Some(OPAQUE_REQUEST));
    }

    #[test]
    fn text_read_under_settings_in_flight_is_unknown() {
        let tracker = Tracker::default();
        let mut requests = Requests::default();
        // An execution earlier in the pipeline may turn standard_conforming_strings off.
        decided(&mut requests, &tracker, &msg(frontend::PARSE, b"\0set standard_conforming_strings = off\0\0\0"));
        decided(&mut requests, &tracker, &msg(frontend::BIND, b"\0\0\0\0\0\0\0\0"));
        decided(&mut requests, &tracker, &msg(frontend::EXECUTE, b"\0\0\0\0\0"));
        decided(&mut requests, &tracker, &msg(frontend::PARSE, b"s\0select '\\'; drop table t; --'\0\0\0"));
        decided(&mut requests, &tracker, &msg(frontend::BIND, b"\0s\0\0\0\0\0\0\0"));
        assert_eq!(decided(&mut requests, &tracker, &msg(frontend::EXECUTE, b"\0\0\0\0\0")).as_deref(), Some(OPAQUE_REQUEST));
        // Text that reads the same under any settings is read at once.
        decided(&mut requests, &tracker, &msg(frontend::PARSE, b"\0select 2\0\0\0"));
        decided(&mut requests, &tracker, &msg(frontend::BIND, b"\0\0\0\0\0\0\0\0"));
        assert_eq!(decided(&mut requests, &tracker, &msg(frontend::EXECUTE, b"\0\0\0\0\0")).as_deref(), Some("select 2"));
        // After a Sync, a query that depends on settings waits for the target's report.
        decided(&mut requests, &tracker, &msg(frontend::SYNC, b""));
        assert_eq!(decided(&mut requests, &tracker, &msg(frontend::QUERY, b"select '\\'\0")).as_deref(), Some("wait"));
        tracker.ready(transaction::IDLE);
        assert_eq!(decided(&mut requests, &tracker, &msg(frontend::QUERY, b"select '\\'\0")).as_deref(), Some("select '\\'"));
    }

    #[test]
    fn the_end_of_data_marker_is_not_a_row() {
        let tracker = Tracker::default();
        let mut requests = Requests::default();
        requests.see_and_queue(message(&msg(frontend::COPY_DATA, b"1\tx\n")), &tracker).unwrap();
        requests.see_and_queue(message(&msg(frontend::COPY_DATA, b"\\.\n")), &tracker).unwrap();
        let done = requests.see_and_queue(message(&msg(frontend::COPY_DONE, b"")), &tracker).unwrap().unwrap();
        assert_eq!(done.attrs["rows"].as_u64(), Some(1));
    }

    #[test]
    fn copy_in_is_counted_not_kept() {
        let tracker = Tracker::default();
        let mut requests = Requests::default();
        for _ in 0..3 {
            assert!(requests.see_and_queue(message(&msg(frontend::COPY_DATA, b"1\tsecret\n2\tsecret\n")), &tracker).unwrap().is_none());
        }
        let done = requests.see_and_queue(message(&msg(frontend::COPY_DONE, b"")), &tracker).unwrap().unwrap();
        assert_eq!((done.attrs["rows"].as_u64(), done.attrs["bytes"].as_u64()), (Some(6), Some(54)));
        assert!(done.payload.is_empty());
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let tracker = Tracker::default();
        let mut requests = Requests::default();
        assert!(requests.on_message(message(&msg(frontend::QUERY, b"no terminator")), &tracker).is_err());
        assert!(requests.on_message(message(&msg(frontend::BIND, b"\0s\0\xff\xff")), &tracker).is_err());
        let mut responses = crate::record::Responses::new(5);
        let mut out = bytes::BytesMut::new();
        let bad_row = msg(backend::DATA_ROW, b"\0\x01\0\0\0\x09ab");
        assert!(responses
            .on_message(message(&bad_row), &tracker, &mut Vec::new(), &mut crate::record::ToClient::new(&mut out, &[]))
            .is_err());
    }
}
