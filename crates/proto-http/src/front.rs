//! The front half: the HTTP/1.1 server clients send requests to. Each request names its
//! connection by path (`/c/NAME/…`) and carries a witness token; the first authenticated request
//! of a TCP connection fixes its identity, and each connection name it addresses is one recorded
//! session (keep-alive requests are that session's events). A request is recorded, decided and
//! put through the gate's admission path before anything of it reaches the upstream.
//!
//! What this module does not do: read paths (`path`), choose headers (`headers`) or watch bodies
//! (`body`).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::{AbortHandle, JoinHandle};
use witness_core::{kind, Direction, Event, Interrupt, PayloadType, PendingLogin, Principal, Protocol, SessionInfo, Subject, Verdict};
use witness_gate::{admit, Admission, Credential, Refusal, Registration, Stream, Waiting, Wire, Withdrawal};

use crate::body::{BoxError, Ending, Seen, Tap};
use crate::bodymask::{self, BodyMasks, Reading};
use crate::recorder::{NotRecorded, Recorder};
use crate::upstream::{Upstream, UpstreamBody};
use crate::{headers, kube, path, HttpFront, HttpGate, HttpTarget};

/// The body witness sends clients.
type ClientBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Bytes of a request's head (request line and headers) witness reads before refusing it.
const MAX_HEAD_BYTES: usize = 64 << 10;
/// How long a client may take to send a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Sessions (connection names) one client connection may open.
const MAX_SESSIONS_PER_CONNECTION: usize = 16;
/// How long a connection told to end (revoked credential, shutdown) has to finish its request.
const ENDING_GRACE: Duration = Duration::from_secs(5);
/// Characters of a request line kept in a record's summary.
const SUMMARY_CHARS: usize = 200;
/// Bodies read whole for masking at once, in MiB: a bound on what they hold together.
pub(crate) const MASKING_BUDGET_MIB: usize = 256;
/// The header that names the approval a held request waited for.
const APPROVAL_HEADER: &str = "x-witness-approval";

/// Serves one client connection until it ends, then closes the recordings of its sessions;
/// `login` is told once a request is authenticated.
pub async fn serve_client<G: HttpGate>(front: Arc<HttpFront<G>>, tcp: TcpStream, peer: SocketAddr, login: PendingLogin) {
    let _ = tcp.set_nodelay(true);
    let Some(stream) = handshake(front.tls.as_ref(), tcp, peer).await else { return };
    let (ending, mut ended) = watch::channel(None::<String>);
    let client = Arc::new(Client {
        front,
        peer,
        login: Mutex::new(Some(login)),
        state: tokio::sync::Mutex::new(State::default()),
        ending: Arc::new(ending),
        relays: Mutex::new(Vec::new()),
    });
    let service = {
        let client = client.clone();
        service_fn(move |request| {
            let client = client.clone();
            async move { Ok::<_, Infallible>(client.handle(request).await) }
        })
    };
    let mut connection = Box::pin(
        http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades(),
    );
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = async { let _ = ended.wait_for(Option::is_some).await; } => {
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(ENDING_GRACE, connection.as_mut()).await.unwrap_or(Ok(()))
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "an HTTP client connection ended with an error");
    }
    // Bodies still streaming hold the sessions' recorders: they record how they ended as they go.
    drop(connection);
    // An upgraded connection lives on in its relay, which ends with the session at the latest.
    let relays = std::mem::take(&mut *client.relays.lock().unwrap_or_else(|p| p.into_inner()));
    for relay in relays {
        let _ = relay.await;
    }
    let reason = ended.borrow().clone();
    let sessions = std::mem::take(&mut client.state.lock().await.sessions);
    let mut recordings = Vec::with_capacity(sessions.len());
    for (_, session) in sessions {
        if let Some(reason) = &reason {
            session.recorder.ending(reason);
        }
        recordings.push(session.close());
    }
    for recording in recordings {
        let _ = recording.await;
    }
}

/// The client's stream: TLS when it begins with a TLS handshake record (0x16) and witness has a
/// certificate, else plain. None when the handshake fails (logged; the client sees its TLS error).
async fn handshake(tls: Option<&Arc<rustls::ServerConfig>>, tcp: TcpStream, peer: SocketAddr) -> Option<Stream> {
    const TLS_HANDSHAKE: u8 = 0x16;
    let mut first = [0u8; 1];
    let Some(tls) = tls else { return Some(Stream::Plain(tcp)) };
    if !matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == TLS_HANDSHAKE) {
        return Some(Stream::Plain(tcp));
    }
    match tokio_rustls::TlsAcceptor::from(tls.clone()).accept(tcp).await {
        Ok(stream) => Some(Stream::ServerTls(Box::new(stream))),
        Err(e) => {
            tracing::info!(%peer, error = %e, "an HTTP client's TLS handshake failed");
            None
        }
    }
}

/// One client connection.
struct Client<G> {
    front: Arc<HttpFront<G>>,
    peer: SocketAddr,
    /// Told of the first authenticated request.
    login: Mutex<Option<PendingLogin>>,
    /// HTTP/1.1 serves one request of a connection at a time; the lock is never contended.
    state: tokio::sync::Mutex<State>,
    /// Set to why the connection must end (a session's credential was revoked, shutdown).
    ending: Arc<watch::Sender<Option<String>>>,
    /// The relays of WebSockets upgraded on this connection.
    relays: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    /// Who the connection's requests come from, and the `Authorization` value that proved it.
    who: Option<(Principal, HeaderValue)>,
    /// Sessions by connection name.
    sessions: HashMap<String, Session>,
}

/// One connection name's session on a client connection.
struct Session {
    subject: Arc<Subject>,
    target: Arc<HttpTarget>,
    recorder: Recorder,
    recording: JoinHandle<()>,
    upstream: Upstream,
    interrupt: watch::Receiver<Option<Interrupt>>,
    registration: Registration,
    watcher: AbortHandle,
    /// The session's masking rules, when they mask anything a body could hold.
    masks: Option<BodyMasks>,
}

impl Session {
    /// Lets the recording end once bodies still streaming are done; returns its task.
    fn close(self) -> JoinHandle<()> {
        self.watcher.abort();
        drop(self.registration);
        self.recording
    }
}

/// A request refused before it was decided on, or whose answer witness makes itself.
struct Answer {
    status: StatusCode,
    /// `error` and witness's other fields (`rule`, `approval_id`, `known_connections`).
    body: Value,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// Said as a Kubernetes `Status` object, which kubectl prints.
    kube: bool,
}

impl Answer {
    fn new(status: StatusCode, error: impl Into<String>) -> Answer {
        Answer { status, body: json!({ "error": error.into() }), headers: Vec::new(), kube: false }
    }

    fn unauthorized(error: impl Into<String>) -> Answer {
        let mut answer = Answer::new(StatusCode::UNAUTHORIZED, error);
        answer.headers.push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"witness\"")));
        answer
    }

    fn response(self) -> Response<ClientBody> {
        let body = match (self.kube, self.body) {
            (true, Value::Object(mut details)) => {
                let message = match details.remove("error") {
                    Some(Value::String(message)) => message,
                    _ => String::new(),
                };
                kube::status(self.status.as_u16(), &message, details)
            }
            (_, body) => body,
        };
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())).map_err(|never| match never {}).boxed());
        *response.status_mut() = self.status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl<G: HttpGate> Client<G> {
    async fn handle(&self, request: Request<Incoming>) -> Response<ClientBody> {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let mut state = self.state.lock().await;
        match self.forward(&mut state, parts, body, started).await {
            Ok(response) => response,
            Err(answer) => answer.response(),
        }
    }

    /// Authenticates, decides and forwards one request.
    async fn forward(&self, state: &mut State, parts: Parts, body: Incoming, started: Instant) -> Result<Response<ClientBody>, Answer> {
        let principal = self.authenticate(state, &parts.headers).await?;
        let gate = &self.front.gate;
        let settings = &self.front.settings;
        let by_host = settings.host_suffix.as_deref().and_then(|suffix| {
            // An absolute-form target (`GET http://host/…`) names the host; else the Host header.
            let host = parts.uri.authority().map(|a| a.as_str()).or_else(|| parts.headers.get(header::HOST)?.to_str().ok())?;
            path::address_by_host(host, suffix, parts.uri.path())
        });
        let addressed = by_host.or_else(|| path::address(parts.uri.path())).ok_or_else(|| {
            let known = gate.target::<HttpTarget>("").err().map(|e| e.known).unwrap_or_default();
            let how = match &settings.host_suffix {
                Some(suffix) => format!("address a connection as /c/CONNECTION/path or by host CONNECTION.{suffix}"),
                None => "address a connection as /c/CONNECTION/path".to_string(),
            };
            let mut answer = Answer::new(StatusCode::NOT_FOUND, how);
            answer.body["known_connections"] = json!(known);
            answer
        })?;
        let name = addressed.connection.to_string();
        if !state.sessions.contains_key(&name) {
            let target = gate.target::<HttpTarget>(&name).map_err(|e| {
                let mut answer = Answer::new(StatusCode::NOT_FOUND, e.to_string());
                answer.body["known_connections"] = json!(e.known);
                answer
            })?;
            if state.sessions.len() >= MAX_SESSIONS_PER_CONNECTION {
                let error = format!("one connection may address at most {MAX_SESSIONS_PER_CONNECTION} connections; open another");
                return Err(Answer::new(StatusCode::TOO_MANY_REQUESTS, error));
            }
            let session = self.open(principal, target).await?;
            state.sessions.insert(name.clone(), session);
        }
        let session = state.sessions.get_mut(&name).expect("inserted above");
        let rest = addressed.rest.to_string();
        let kube = session.target.kube.is_some();
        self.exchange(session, parts, body, &rest, started).await.map_err(|mut answer| {
            answer.kube = kube;
            answer
        })
    }

    /// Records, decides and forwards one request of a session, and passes its answer on.
    async fn exchange(
        &self,
        session: &mut Session,
        mut parts: Parts,
        mut body: Incoming,
        rest: &str,
        started: Instant,
    ) -> Result<Response<ClientBody>, Answer> {
        let gate = &self.front.gate;
        let settings = &self.front.settings;

        // The start of the body first: a form may name another method (`_method`).
        let mut seen = Seen::new(settings.max_body_recorded);
        let (replay, body_ended) = read_start(&mut body, &mut seen)
            .await
            .map_err(|e| Answer::new(StatusCode::BAD_REQUEST, format!("witness could not read the request body: {e}")))?;

        // The request as rules read it, and its record.
        let read = path::read(rest);
        let override_header = headers::method_override(&parts.headers);
        let override_parameter =
            headers::method_override_parameter(&parts.method, parts.uri.query(), &parts.headers, &seen.start, body_ended);
        let method_override = override_header
            .map(|_| "a method-override header, which some servers obey")
            .or(override_parameter.then_some("a _method parameter, which some servers obey"));
        // Which method the upstream runs is then unknown: rules about the path apply whatever
        // method they name. (The path itself is known.)
        let method = if method_override.is_some() { "*" } else { parts.method.as_str() };
        let uncertain = read.uncertain.or(method_override);
        let kube_request = session
            .target
            .kube
            .as_ref()
            .map(|_| kube::read_request(&parts.method, rest, &read, parts.uri.query(), &parts.headers, uncertain));
        let principal = &session.subject.principal;
        let masks_secrets = match (&session.target.kube, &kube_request) {
            (Some(target), Some(request)) => kube::about_secrets(request) && !target.reads_secrets(&principal.identity, &principal.groups),
            _ => false,
        };
        let mut forwarded_headers = parts.headers.clone();
        let credential_names = session.target.credential_names();
        let dropped = headers::strip_for_upstream(&mut forwarded_headers, &credential_names);
        let body_masks = session.masks.clone();
        // A WebSocket upgrade is relayed (recorded frame by frame); other upgrades are not, and
        // neither is one whose messages witness would have to mask (Secret data, or a session
        // masking rules name): the upstream then answers a plain request, which witness can read.
        let upgrade = headers::websocket_upgrade(&parts.method, &parts.headers).filter(|_| !masks_secrets && body_masks.is_none());
        let client_upgrade = match upgrade {
            Some(upgrade) => {
                forwarded_headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                forwarded_headers.insert(header::UPGRADE, upgrade);
                // No extension is offered, so none is agreed: compressed messages
                // (permessage-deflate) would be recorded as bytes nobody can read.
                forwarded_headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
                parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
            }
            None => None,
        };
        let json_paths_for_client = body_masks.as_ref().is_some_and(BodyMasks::has_client_json_paths);
        if json_paths_for_client {
            // JSON documents, which the paths can be followed in: not the CSV, XML, JSONP or
            // table a client could ask for to move the values where no path looks.
            forwarded_headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
            forwarded_headers.remove(header::ACCEPT_CHARSET);
        } else if masks_secrets || (kube_request.is_some() && body_masks.is_some()) {
            // Plain JSON, which witness can read and mask, rather than protobuf, CBOR or YAML.
            forwarded_headers.insert(header::ACCEPT, kube::json_accept(&parts.headers));
        }
        if masks_secrets || body_masks.is_some() {
            // Bodies witness can read to mask, and whole: ranges of a few bytes each would cut
            // every value into pieces no detector finds, for the client to put together.
            forwarded_headers.remove(header::ACCEPT_ENCODING);
            forwarded_headers.remove(header::RANGE);
            forwarded_headers.remove(header::IF_RANGE);
        }
        let mut event = request_event(&parts, rest, &read.path, uncertain, &dropped, &credential_names, &seen, body_ended);
        if client_upgrade.is_some() {
            event = event.with_attr("upgrade", "websocket");
        }
        if let Some(request) = &kube_request {
            event = event.with_attr("kube", kube::recorded(request));
            if masks_secrets {
                withhold_secret_data(&mut event, body_ended);
            }
        }
        if let Some(masks) = &body_masks {
            mask_recorded_body(&mut event, masks, bodymask::reading(&parts.headers));
        }
        // Refused before any rule: witness could not keep its promises about them.
        let refusal = if ["TRACE", "TRACK"].iter().any(|echo| parts.method.as_str().eq_ignore_ascii_case(echo)) {
            // The upstream would send the request back, the credential witness adds included.
            Some((StatusCode::METHOD_NOT_ALLOWED, "TRACE and TRACK echo the request back, with the credential witness adds"))
        } else if body_masks.is_some() && kube_request.as_ref().is_some_and(|request| kube::cuts_logs(request, parts.uri.query())) {
            Some((StatusCode::FORBIDDEN, "limitBytes may cut a log line inside a value the masking rules would find whole; use tailLines"))
        } else if masks_secrets && parts.method == Method::PATCH && kube::is_json_patch(&parts.headers) {
            // Its operations can copy Secret data anywhere in the object (an annotation, a
            // label), where witness would not know to mask it.
            Some((StatusCode::FORBIDDEN, "a JSON patch of a secret can move its data where witness does not mask it; use a merge patch"))
        } else {
            None
        };
        if let Some((status, why)) = refusal {
            session
                .recorder
                .record(event.with_attr("refused", why))
                .await
                .map_err(|e| Answer::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
            return Err(Answer::new(status, format!("witness refused this request: {why}")));
        }
        let request = match &kube_request {
            Some(request) => witness_core::Request::Kube(request),
            None => {
                witness_core::Request::Http { method, path: &read.path, query: parts.uri.query().unwrap_or(""), uncertain: read.uncertain }
            }
        };
        let watching = kube_request.as_ref().is_some_and(|request| request.verb == "watch");
        let verdict = match gate.decide(&session.subject, request) {
            // An approver decides on what the record shows: a body that runs past it would be
            // chosen after the approval (a second "amount" key at its end). Dropping the hold
            // withdraws it.
            Verdict::Hold(held) if !body_ended => Verdict::Deny {
                message: format!(
                    "this request waits for approval (rule \"{}\"), and its body runs past the {} KiB an approver is shown; send a shorter body",
                    held.rule,
                    settings.max_body_recorded >> 10
                ),
                rule: held.rule,
                classes: held.classes,
            },
            verdict => verdict,
        };
        let approval_id = match &verdict {
            Verdict::Hold(held) => Some(held.approval_id.clone()),
            _ => None,
        };
        let admission = admitted(&session.recorder, &session.interrupt, event, verdict).await.map_err(|e| {
            let _ = self.ending.send(Some(e.to_string()));
            Answer::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        })?;
        let approval_header = approval_id.as_deref().and_then(|id| HeaderValue::from_str(id).ok());
        if let Admission::Refused(refusal) = admission {
            return Err(refused(&refusal, approval_header));
        }

        // Forward it, with the target's credential instead of the client's.
        let target = session.target.clone();
        let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let uri: http::Uri = format!("{}{}{query}", target.base_path, rest)
            .parse()
            .map_err(|_| Answer::new(StatusCode::BAD_REQUEST, "witness cannot forward this path"))?;
        forwarded_headers.insert(header::HOST, target.authority.clone());
        for (name, value) in &target.credential {
            forwarded_headers.insert(name.clone(), value.clone());
        }
        // hyper sends a GET or HEAD whose body has no stated length as one without a body, while
        // the record holds the body: state its length, or that it comes chunked as it came.
        if !forwarded_headers.contains_key(header::CONTENT_LENGTH) && (seen.length > 0 || !body_ended) {
            if body_ended {
                forwarded_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(seen.length));
            } else {
                forwarded_headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
        }
        let recorder = session.recorder.clone();
        let masked_session = body_masks.is_some();
        let upload = Tap::new(body, seen, replay, move |seen, ending| {
            // A body whole in the request's record needs no record of its own.
            if !body_ended {
                let mut event = body_event(&seen, &ending);
                if masked_session {
                    withhold_digest(&mut event);
                }
                recorder.record_later(event);
            }
        });
        let mut upstream_request = Request::new(UpstreamBody::new(upload));
        *upstream_request.method_mut() = parts.method.clone();
        *upstream_request.uri_mut() = uri;
        *upstream_request.headers_mut() = forwarded_headers;
        let response = match session.upstream.send(&target, settings.connect_timeout, upstream_request).await {
            Ok(response) => response,
            Err(e) => {
                gate.target_failed(&target.name);
                let message = format!("the upstream of {} did not answer: {e}", target.name);
                session.recorder.record_later(Event::note(kind::HTTP_UPSTREAM_ERROR, Direction::Gateway, message.clone()));
                let mut answer = Answer::new(StatusCode::BAD_GATEWAY, message);
                answer.headers.extend(approval_header.map(|id| (header::HeaderName::from_static(APPROVAL_HEADER), id)));
                return Err(answer);
            }
        };

        // An upgrade: the answer is passed on and the WebSocket relayed from here.
        let mut response = response;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                let message = format!("the upstream of {} switched protocols though the client did not ask to", target.name);
                session.recorder.record_later(Event::note(kind::HTTP_UPSTREAM_ERROR, Direction::Gateway, message.clone()));
                return Err(Answer::new(StatusCode::BAD_GATEWAY, message));
            };
            if response.headers().contains_key(header::SEC_WEBSOCKET_EXTENSIONS) {
                // None was offered: frames it shapes (compressed) would be recorded unreadable.
                let message = format!("the upstream of {} agreed a WebSocket extension nobody offered", target.name);
                session.recorder.record_later(Event::note(kind::HTTP_UPSTREAM_ERROR, Direction::Gateway, message.clone()));
                return Err(Answer::new(StatusCode::BAD_GATEWAY, message));
            }
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let (mut response_parts, _) = response.into_parts();
            let subprotocol = response_parts.headers.get(header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()).unwrap_or("");
            let channels = session.target.kube.is_some() && crate::websocket::is_kube_channels(subprotocol);
            let recorded_headers = headers::recorded(&response_parts.headers, &credential_names);
            let answered = started.elapsed();
            session.recorder.record_later(
                response_event(response_parts.status, recorded_headers, answered, answered, &Seen::new(0), &Ending::Complete)
                    .with_attr("upgrade", "websocket"),
            );
            if let Some(id) = approval_header {
                response_parts.headers.insert(APPROVAL_HEADER, id);
            }
            let relay =
                crate::upgrade::relay(client_upgrade, upstream_upgrade, session.recorder.clone(), session.interrupt.clone(), channels);
            self.relays.lock().unwrap_or_else(|p| p.into_inner()).push(tokio::spawn(relay));
            let empty = Full::new(Bytes::new()).map_err(|never| match never {}).boxed();
            return Ok(Response::from_parts(response_parts, empty));
        }

        // Pass the answer on, recording it as its body ends.
        let answered = started.elapsed();
        let (mut response_parts, response_body) = response.into_parts();
        headers::strip_hop_by_hop(&mut response_parts.headers);
        let bodyless = parts.method == Method::HEAD || matches!(response_parts.status.as_u16(), 204 | 304);
        let masked = if masks_secrets || body_masks.is_some() {
            let budget = self.front.masking_budget.clone();
            let secrets = masks_secrets.then_some(watching);
            // A watch's events and `logs -f` flow a line at a time, whatever their type says.
            let by_line = watching || kube_request.as_ref().is_some_and(|r| kube::follows_logs(r, parts.uri.query()));
            let answer = masked_answer(&mut response_parts, response_body, secrets, body_masks.clone(), bodyless, by_line, budget);
            answer.await.map(Either::Right)
        } else {
            Ok(Either::Left(response_body))
        };
        let response_body = match masked {
            Ok(body) => body,
            Err(why) => {
                let message =
                    format!("the upstream of {} answered in a form witness cannot mask ({why}); nothing of it was passed on", target.name);
                session.recorder.record_later(Event::note(kind::HTTP_UPSTREAM_ERROR, Direction::Gateway, message.clone()));
                return Err(Answer::new(StatusCode::BAD_GATEWAY, message));
            }
        };
        let recorded_reading = match bodymask::reading(&response_parts.headers) {
            Reading::Whole(kind) if watching || kube_request.as_ref().is_some_and(|r| kube::follows_logs(r, parts.uri.query())) => {
                Reading::Lines(kind)
            }
            reading => reading,
        };
        let recorded_headers = headers::recorded(&response_parts.headers, &credential_names);
        if let Some(id) = approval_header {
            if session.target.kube.is_some() {
                // kubectl prints warnings: the person at it learns why the request took so long.
                let said =
                    format!("299 - \"witness held this request for approval {} and it was approved\"", id.to_str().unwrap_or_default());
                if let Ok(warning) = HeaderValue::from_str(&said) {
                    response_parts.headers.append(header::WARNING, warning);
                }
            }
            response_parts.headers.insert(APPROVAL_HEADER, id);
        }
        let recorder = session.recorder.clone();
        let status = response_parts.status;
        // A stream (no length: a watch, server-sent events, `logs -f`) is recorded as it flows.
        // Not while masking applies: its pieces are masked whole at the end, as one record.
        let streamed = !bodyless && !masks_secrets && body_masks.is_none() && !response_parts.headers.contains_key(header::CONTENT_LENGTH);
        let part_recorder = session.recorder.clone();
        let download = Tap::new(response_body, Seen::new(settings.max_body_recorded), VecDeque::new(), move |seen, ending| {
            let mut event = response_event(status, recorded_headers, answered, started.elapsed(), &seen, &ending);
            if masks_secrets {
                event = event.with_attr("secret_data", "masked");
            }
            if let Some(masks) = &body_masks {
                mask_recorded_body(&mut event, masks, recorded_reading);
            }
            recorder.record_later(event);
        });
        let download = if streamed { download.with_parts(move |part| part_recorder.record_later(part_event(part))) } else { download };
        Ok(Response::from_parts(response_parts, ClientBody::new(download)))
    }

    /// Who sends this request: the connection's identity, proved again when the credential
    /// changes. Another identity's credential on the same connection is refused.
    async fn authenticate(&self, state: &mut State, headers: &HeaderMap) -> Result<Principal, Answer> {
        let authorization = headers.get(header::AUTHORIZATION);
        if let (Some((principal, proven)), Some(given)) = (&state.who, authorization) {
            if proven == given {
                return Ok(principal.clone());
            }
        }
        let token = authorization.and_then(token_of).unwrap_or_default();
        let principal = self.front.gate.authenticate(Protocol::Http, Credential::Bearer(&token)).await.map_err(|refused| {
            tracing::info!(peer = %self.peer, reason = %refused.reason, "HTTP request refused: not authenticated");
            let why = refused.client_reason.unwrap_or_else(|| "witness does not accept this credential".into());
            Answer::unauthorized(format!("{why}; send a witness token as Authorization: Bearer TOKEN (or as the password of basic auth)"))
        })?;
        match &state.who {
            Some((known, _)) if known.identity != principal.identity => {
                let reason = format!(
                    "a request on this connection presented a credential of {}, and the connection is {}'s",
                    principal.identity, known.identity
                );
                for session in state.sessions.values() {
                    let event = Event::note(kind::HTTP_REFUSED, Direction::Gateway, reason.clone())
                        .with_attr("identity", principal.identity.clone())
                        .with_attr("credential", principal.credential.clone());
                    session.recorder.record_later(event);
                }
                tracing::info!(peer = %self.peer, %reason, "HTTP request refused");
                return Err(Answer::unauthorized(format!("{reason}; open a new connection for another identity")));
            }
            Some(_) => {}
            None => {
                if let Some(login) = self.login.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    login.logged_in();
                }
            }
        }
        let proven = authorization.cloned().unwrap_or_else(|| HeaderValue::from_static(""));
        state.who = Some((principal.clone(), proven));
        Ok(principal)
    }

    /// Opens the recording of `target`'s session on this connection and registers it.
    async fn open(&self, principal: Principal, target: Arc<HttpTarget>) -> Result<Session, Answer> {
        let info = SessionInfo {
            identity: principal.identity.clone(),
            connection: target.name.clone(),
            protocol: target.protocol(),
            task: principal.task.clone(),
            client_addr: Some(self.peer.to_string()),
            groups: principal.groups.clone(),
        };
        let unrecorded = || Answer::new(StatusCode::SERVICE_UNAVAILABLE, NotRecorded.to_string());
        let writer = self.front.gate.open_session(&info).await.map_err(|e| {
            tracing::error!(error = %e, "cannot open an HTTP session's recording");
            unrecorded()
        })?;
        let subject = Arc::new(Subject { session: writer.id(), info, principal });
        let (recorder, recording) = Recorder::start(writer);
        let login = Event::note(kind::HTTP_LOGIN, Direction::Gateway, "logged in with a witness token")
            .with_attr("credential", subject.principal.credential.clone());
        recorder.record(login).await.map_err(|_| unrecorded())?;
        let registration = self.front.gate.register(&subject);
        let mut interrupt = registration.interrupt.clone();
        let ending = self.ending.clone();
        let watcher = tokio::spawn(async move {
            if let Ok(why) = interrupt.wait_for(Option::is_some).await {
                let reason = why.as_ref().map(Interrupt::describe);
                ending.send_replace(reason);
            }
        })
        .abort_handle();
        tracing::info!(peer = %self.peer, connection = %target.name, identity = %subject.principal.identity, session = %subject.session, "HTTP session opened");
        let masks = self.front.gate.masks(&subject).and_then(BodyMasks::new);
        Ok(Session {
            masks,
            interrupt: registration.interrupt.clone(),
            subject,
            target,
            recorder,
            recording,
            upstream: Upstream::default(),
            registration,
            watcher,
        })
    }
}

/// The token in an `Authorization` header: a bearer token, or the password of basic auth.
fn token_of(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
        let pair = String::from_utf8(decoded).ok()?;
        return pair.split_once(':').map(|(_, password)| password.to_string());
    }
    None
}

/// Reads a request body's first frames, up to what its record keeps; returns them (to be sent
/// first) and whether the body ended within them.
async fn read_start(body: &mut Incoming, seen: &mut Seen) -> Result<(VecDeque<Bytes>, bool), hyper::Error> {
    let mut replay = VecDeque::new();
    loop {
        if body.is_end_stream() {
            return Ok((replay, true));
        }
        if seen.full() {
            if seen.length > seen.start.len() as u64 {
                return Ok((replay, false));
            }
            // A body exactly as long as the cap ends with its next frame (the last chunk of a
            // chunked body): look at it before saying the body runs on.
            return match body.frame().await {
                None => Ok((replay, true)),
                Some(Err(e)) => Err(e),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let ended = data.is_empty() && body.is_end_stream();
                        seen.observe(&data);
                        replay.push_back(data);
                        Ok((replay, ended))
                    }
                    // Trailers, which are not forwarded: the body has ended.
                    Err(_) => Ok((replay, true)),
                },
            };
        }
        match body.frame().await {
            None => return Ok((replay, true)),
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => {
                // Request trailers are not forwarded: few servers read them, and witness would
                // have to record them too.
                if let Ok(data) = frame.into_data() {
                    seen.observe(&data);
                    replay.push_back(data);
                }
            }
        }
    }
}

/// What a request's record holds: its line, headers (credentials masked), the credential headers
/// dropped, and the start of its body with, when the body ended within it, its length and digest.
#[allow(clippy::too_many_arguments)]
fn request_event(
    parts: &Parts,
    raw_path: &str,
    read_path: &str,
    uncertain: Option<&str>,
    dropped: &[String],
    credential_names: &[header::HeaderName],
    seen: &Seen,
    body_ended: bool,
) -> Event {
    let query = parts.uri.query();
    let line = match query {
        Some(query) => format!("{} {raw_path}?{query}", parts.method),
        None => format!("{} {raw_path}", parts.method),
    };
    let mut event = Event {
        kind: kind::HTTP_REQUEST,
        direction: Direction::Request,
        summary: line.chars().take(SUMMARY_CHARS).collect(),
        attrs: serde_json::Map::new(),
        payload_type: payload_type(&seen.start),
        payload: seen.start.clone(),
    }
    .with_attr("method", parts.method.as_str())
    .with_attr("path", read_path)
    .with_attr("headers", headers::recorded(&parts.headers, credential_names))
    .with_attr("body_recorded", seen.start.len());
    if raw_path != read_path {
        event = event.with_attr("raw_path", witness_core::shown_text(raw_path.as_bytes()).into_owned());
    }
    if let Some(query) = query {
        event = event.with_attr("query", query);
    }
    if let Some(why) = uncertain {
        event = event.with_attr("uncertain", why);
    }
    if !dropped.is_empty() {
        event = event.with_attr("dropped_headers", dropped.to_vec());
    }
    if body_ended {
        event = event.with_attr("body_bytes", seen.length).with_attr("body_digest", seen.digest());
    }
    if parts.method == Method::CONNECT {
        event = event.with_attr("note", "CONNECT is forwarded as a plain request; witness does not tunnel");
    }
    event
}

/// What a record keeps of a body it holds the start of: masked by the recording-only rules (the
/// client's already applied to a response's), with what was masked counted; a body read by line,
/// line by line. A request's body, which went to the upstream as the client sent it, goes
/// through both stages here. The digest of the whole body is left out where it is of values the
/// record masks, or of a body only partly in the record that masking rules may have had to
/// change: of a short body, it would confirm a guess of what was masked.
fn mask_recorded_body(event: &mut Event, masks: &BodyMasks, reading: Reading) {
    if reading == Reading::Opaque {
        return;
    }
    let whole = event.attrs.get("body_bytes").and_then(Value::as_u64) == Some(event.payload.len() as u64);
    let request = event.direction == Direction::Request;
    let mut changed = false;
    if request {
        if let Some(masked) = masks.for_record(witness_mask::Stage::Client, reading, &event.payload) {
            event.payload = masked;
            changed = true;
        }
    }
    if let Some(masked) = masks.for_record(witness_mask::Stage::RecordingOnly, reading, &event.payload) {
        event.payload = masked;
        changed = true;
    }
    if let Some(counts) = masks.take_counts() {
        event.attrs.insert("body_recorded".into(), json!(event.payload.len()));
        event.attrs.insert("masked".into(), counts);
    }
    // A response's digest is of what the client got, masked by the client's rules already.
    let digest_of_unmasked = request || masks.masks_recording();
    if digest_of_unmasked && (changed || !whole) {
        withhold_digest(event);
    }
}

/// Leaves a body's digest out of its record, saying why.
fn withhold_digest(event: &mut Event) {
    if event.attrs.remove("body_digest").is_some() {
        event.attrs.insert("body_digest_withheld".into(), json!("it is of values masking rules may hide"));
    }
}

/// An answer as the client gets it: Secret data masked (`secrets` says whether the request is a
/// watch), then the session's detectors applied. An error says why witness cannot mask it.
async fn masked_answer(
    parts: &mut http::response::Parts,
    body: Incoming,
    secrets: Option<bool>,
    masks: Option<BodyMasks>,
    bodyless: bool,
    by_line: bool,
    budget: Arc<Semaphore>,
) -> Result<ClientBody, String> {
    let mut body = ClientBody::new(body.map_err(|e| -> BoxError { Box::new(e) }));
    if let Some(watching) = secrets {
        body = masked_secrets(parts, body, watching, bodyless, budget.clone()).await?;
    }
    if let Some(masks) = masks {
        body = masked_body(parts, body, masks, bodyless, by_line, budget).await?;
    }
    Ok(body)
}

/// How long a body read whole for masking may take to arrive: its turn holds a share of
/// [`MASKING_BUDGET_MIB`], which an upstream that never ends its answer (a stream witness did not
/// take for one) must not hold for every other masked answer.
const MASKED_BODY_DEADLINE: Duration = Duration::from_secs(60);

/// Reads a body whole for masking, up to [`bodymask::MAX_MASKED_BYTES`] and within
/// [`MASKED_BODY_DEADLINE`]; at most [`MASKING_BUDGET_MIB`] of such bodies are read at once, the
/// others waiting their turn.
async fn read_whole(body: ClientBody, budget: Arc<Semaphore>) -> Result<Bytes, String> {
    let _turn = budget.acquire_many_owned((bodymask::MAX_MASKED_BYTES >> 20) as u32).await.map_err(|e| e.to_string())?;
    let read = async {
        let mut body = body;
        let mut whole = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the body could not be read whole: {e}"))?;
            if let Ok(data) = frame.into_data() {
                if whole.len() + data.len() > bodymask::MAX_MASKED_BYTES {
                    return Err(format!("the body is longer than {} MiB", bodymask::MAX_MASKED_BYTES >> 20));
                }
                whole.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(whole))
    };
    tokio::time::timeout(MASKED_BODY_DEADLINE, read)
        .await
        .unwrap_or_else(|_| Err(format!("the body did not arrive whole within {} s", MASKED_BODY_DEADLINE.as_secs())))
}

/// A response body as the client gets it under the session's masks: read whole and masked, or
/// masked a line at a time (`by_line`: a stream, whatever its type says), or passed on (binary,
/// or nothing masked for the client). An error says why witness cannot mask it (compressed, too
/// large).
async fn masked_body(
    parts: &mut http::response::Parts,
    body: ClientBody,
    masks: BodyMasks,
    bodyless: bool,
    by_line: bool,
    budget: Arc<Semaphore>,
) -> Result<ClientBody, String> {
    let reading = match bodymask::reading(&parts.headers) {
        _ if bodyless || !masks.masks_client() => Reading::Opaque,
        Reading::Whole(kind) if by_line => Reading::Lines(kind),
        reading => reading,
    };
    if reading == Reading::Opaque {
        return Ok(body);
    }
    if let Some(encoding) = content_encoding(&parts.headers) {
        return Err(format!("encoded as {encoding}"));
    }
    if reading.by_line() {
        parts.headers.remove(header::CONTENT_LENGTH);
        let masks = masks.clone();
        return Ok(ClientBody::new(crate::body::MaskedLines::new(body, move |line| Ok(masks.for_client(reading, line)))));
    }
    let whole = read_whole(body, budget).await?;
    let masked = masks.for_client(reading, &whole);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(masked.len()));
    Ok(ClientBody::new(Full::new(Bytes::from(masked)).map_err(|never| match never {})))
}

/// The encodings of a body other than `identity`, every `Content-Encoding` header read (a client
/// decodes them all); None for a body as it is.
fn content_encoding(headers: &HeaderMap) -> Option<String> {
    let codings: Vec<String> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|value| witness_core::shown_text(value.as_bytes()).split(',').map(|c| c.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .filter(|coding| !coding.is_empty() && coding != "identity")
        .collect();
    (!codings.is_empty()).then(|| codings.join(", "))
}

/// Keeps Secret data out of a request's record: a whole JSON body is recorded with its data
/// masked; any other body (cut at the cap, YAML, protobuf) is not recorded, nor is its digest.
fn withhold_secret_data(event: &mut Event, body_ended: bool) {
    event.attrs.remove("body_digest");
    if event.payload.is_empty() {
        return;
    }
    let object = event.payload.trim_ascii_start().first() == Some(&b'{');
    match kube::mask_document(&event.payload) {
        // An object (a Secret, a merge patch) with its data masked; not a JSON patch's list of
        // operations, whose values go anywhere.
        Ok((masked, count)) if body_ended && object => {
            event.payload = masked;
            event.attrs.insert("body_recorded".into(), json!(event.payload.len()));
            event.attrs.insert("secret_values_masked".into(), json!(count));
        }
        _ => {
            event.payload = Vec::new();
            event.payload_type = PayloadType::Empty;
            event.attrs.insert("body_recorded".into(), json!(0));
            event.attrs.insert("body_withheld".into(), json!("it may hold Secret data witness cannot mask"));
        }
    }
}

/// An answer about secrets with their data masked: a watch event by event, anything else read
/// whole (up to [`crate::body::MAX_MASKED_BYTES`]) and masked at once. An error says why witness cannot
/// mask it (not JSON, compressed, too large).
async fn masked_secrets(
    parts: &mut http::response::Parts,
    body: ClientBody,
    watching: bool,
    bodyless: bool,
    budget: Arc<Semaphore>,
) -> Result<ClientBody, String> {
    if bodyless {
        return Ok(body);
    }
    if let Some(encoding) = content_encoding(&parts.headers) {
        return Err(format!("encoded as {encoding}"));
    }
    if !kube::is_json(&parts.headers) {
        let kind = parts.headers.get(header::CONTENT_TYPE).map(|v| witness_core::shown_text(v.as_bytes()).into_owned());
        return Err(format!("content type {}", kind.as_deref().unwrap_or("not given")));
    }
    if watching {
        parts.headers.remove(header::CONTENT_LENGTH);
        return Ok(ClientBody::new(crate::body::MaskedLines::new(body, kube::mask_event)));
    }
    let whole = read_whole(body, budget).await?;
    let (masked, _) = kube::mask_document(&whole).map_err(|e| format!("not JSON: {e}"))?;
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(masked.len()));
    Ok(ClientBody::new(Full::new(Bytes::from(masked)).map_err(|never| match never {})))
}

/// The record of a request body longer than its request's record holds, as it ended.
fn body_event(seen: &Seen, ending: &Ending) -> Event {
    let summary = format!("request body of {} bytes{}", seen.length, ending_note(ending));
    with_ending(Event::note(kind::HTTP_REQUEST_BODY, Direction::Request, summary), seen, ending)
}

/// The record of a response, made as its body ended; its payload is what the record keeps of
/// the body and no part has recorded yet.
fn response_event(status: StatusCode, headers: Value, answered: Duration, total: Duration, seen: &Seen, ending: &Ending) -> Event {
    let summary = format!("{status} ({} bytes{})", seen.length, ending_note(ending));
    let rest = &seen.start[seen.parted..];
    let mut event = Event {
        kind: kind::HTTP_RESPONSE,
        direction: Direction::Response,
        summary,
        attrs: serde_json::Map::new(),
        payload_type: payload_type(rest),
        payload: rest.to_vec(),
    }
    .with_attr("status", status.as_u16())
    .with_attr("headers", headers)
    .with_attr("answered_ms", answered.as_millis() as u64)
    .with_attr("duration_ms", total.as_millis() as u64)
    .with_attr("body_recorded", seen.start.len());
    if seen.parted > 0 {
        event = event.with_attr("body_in_parts", seen.parted);
    }
    with_ending(event, seen, ending)
}

/// A piece of a streamed response body, recorded as it passed.
fn part_event(part: &[u8]) -> Event {
    Event {
        kind: kind::HTTP_RESPONSE_PART,
        direction: Direction::Response,
        summary: format!("{} bytes of the streamed body", part.len()),
        attrs: serde_json::Map::new(),
        payload_type: payload_type(part),
        payload: part.to_vec(),
    }
}

fn with_ending(event: Event, seen: &Seen, ending: &Ending) -> Event {
    let event = event.with_attr("body_bytes", seen.length).with_attr("body_digest", seen.digest());
    match ending {
        Ending::Complete => event.with_attr("body_complete", true),
        Ending::Failed(why) => event.with_attr("body_complete", false).with_attr("body_error", why.clone()),
        Ending::Abandoned => event.with_attr("body_complete", false).with_attr("body_error", "the reader stopped before the end"),
    }
}

fn ending_note(ending: &Ending) -> &'static str {
    match ending {
        Ending::Complete => "",
        Ending::Failed(_) => ", broken off",
        Ending::Abandoned => ", abandoned",
    }
}

fn payload_type(bytes: &[u8]) -> PayloadType {
    if bytes.is_empty() {
        PayloadType::Empty
    } else if witness_core::is_mostly_text(bytes) {
        PayloadType::Text
    } else {
        PayloadType::Binary
    }
}

/// The client's answer to a refused request: 403 with the reason and the rule, or 503 when the
/// session is ending.
fn refused(refusal: &Refusal, approval: Option<HeaderValue>) -> Answer {
    let status = match refusal {
        Refusal::Withdrawn { why: Withdrawal::SessionEnding, .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::FORBIDDEN,
    };
    let mut answer = Answer::new(status, refusal.explain("request"));
    match refusal {
        Refusal::Denied { rule, .. } | Refusal::Disapproved { rule, .. } | Refusal::TimedOut { rule, .. } => {
            answer.body["rule"] = json!(rule);
        }
        Refusal::Withdrawn { .. } => {}
    }
    if let Some(id) = approval {
        answer.body["approval_id"] = json!(id.to_str().unwrap_or_default());
        answer.headers.push((header::HeaderName::from_static(APPROVAL_HEADER), id));
    }
    answer
}

/// Puts a request through admission; a held one on a task of its own. hyper drops a request's
/// handler when its client closes the connection; admission, on its own task, sees the handler go
/// (the answer's receiver is dropped) and records a held request as withdrawn rather than
/// vanishing without a decision. A request allowed or denied at once has nothing to withdraw, and
/// is admitted here, without a handoff between tasks.
async fn admitted(
    recorder: &Recorder,
    interrupt: &watch::Receiver<Option<Interrupt>>,
    event: Event,
    verdict: Verdict,
) -> Result<Admission, NotRecorded> {
    let (answer, answered) = oneshot::channel();
    let mut wire = HttpWire { recorder: recorder.clone(), interrupt: interrupt.clone(), answer };
    if !matches!(verdict, Verdict::Hold(_)) {
        let admission = admit(&mut wire, Some(event), verdict).await;
        drop(answered);
        return admission;
    }
    tokio::spawn(async move {
        let admission = admit(&mut wire, Some(event), verdict).await;
        let _ = wire.answer.send(admission);
    });
    answered.await.unwrap_or(Err(NotRecorded))
}

/// The admission path's view of an HTTP session: records go through its recorder; a held
/// request's client just waits (HTTP has no way to tell it meanwhile), until it leaves or the
/// session ends.
struct HttpWire {
    recorder: Recorder,
    interrupt: watch::Receiver<Option<Interrupt>>,
    /// Where the admission goes; closed when the client has gone.
    answer: oneshot::Sender<Result<Admission, NotRecorded>>,
}

impl Wire for HttpWire {
    type Error = NotRecorded;

    async fn record(&mut self, event: &Event) -> Result<(), NotRecorded> {
        self.recorder.record(event.clone()).await
    }

    async fn hold_begins(&mut self, waiting: &Waiting<'_>) -> Result<(), NotRecorded> {
        tracing::info!(approval = waiting.approval_id, rule = waiting.rule, "{}", waiting.line("HTTP request"));
        Ok(())
    }

    async fn withdrawn(&mut self) -> Withdrawal {
        let interrupt = &mut self.interrupt;
        let ending = async {
            // The watch's guard is let go of before waiting on: the future must stay `Send`.
            let interrupted = interrupt.wait_for(Option::is_some).await.is_ok();
            if !interrupted {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = ending => Withdrawal::SessionEnding,
            () = self.answer.closed() => Withdrawal::ClientLeft,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_as_bearer_or_as_the_basic_password() {
        let value = |text: &str| HeaderValue::from_str(text).unwrap();
        assert_eq!(token_of(&value("Bearer wit_abc")), Some("wit_abc".into()));
        assert_eq!(token_of(&value("bearer wit_abc")), Some("wit_abc".into()));
        let basic = base64::engine::general_purpose::STANDARD.encode("claude:wit_abc");
        assert_eq!(token_of(&value(&format!("Basic {basic}"))), Some("wit_abc".into()));
        assert_eq!(token_of(&value("Digest x")), None);
        assert_eq!(token_of(&value("Basic !!!")), None);
    }
}
