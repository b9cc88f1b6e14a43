//! The gateway: what protocol fronts ask of the rest of witness, behind the protocol-neutral
//! [`Gate`] and the few protocol extensions (SCRAM and masks for PostgreSQL, keys for SSH). It
//! authenticates callers with the token store, names targets, opens recordings in the ledger,
//! registers live sessions, and decides on each request with the policy (holding it for
//! approval where a rule says so), counting logins and decisions per protocol for `/metrics`.
//! It shares its parts (identities, rules, counters, approvals, the ledger) with the review API
//! (`review.rs`), which is a type of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use witness_core::{AuthRefused, Principal, Protocol, Request, SessionInfo, SshOperation, Subject, Verdict};
use witness_gate::{Credential, Gate, Registration, UnknownTarget};
use witness_identity::ScramChallenge;
use witness_ledger::{Ledger, LedgerError, SessionWriter};
use witness_mask::SessionMasks;
use witness_policy::{Caller, Copies, Decision, SqlClass, Statement};
use witness_proto_pg::{PgGate, ScramParams};
use witness_proto_ssh::SshGate;

use crate::approvals::{Approvals, HoldRequest};
use crate::audit::RefusedLogins;
use crate::counts::Counts;
use crate::identities::{principal, Identities};
use crate::registry::Registry;
use crate::reloadable::Reloadable;
use crate::targets::Targets;

pub struct Gateway {
    pub identities: Identities,
    pub ledger: Arc<Ledger>,
    /// Every configured connection's target, of whichever protocol.
    pub targets: Targets,
    pub registry: Registry,
    /// Policy, masking and roles; a reload swaps them.
    pub rules: Arc<Reloadable>,
    pub approvals: Approvals,
    pub classes: ClassCache,
    pub counts: Arc<Counts>,
    /// Refused logins, into the audit trail.
    pub refused: Arc<RefusedLogins>,
}

/// Statement classes by request text, per SQL dialect. A prepared statement is decided at each
/// execution, and parsing its text each time would cost more than the rest of the relay's work
/// on it.
#[derive(Default)]
pub struct ClassCache {
    /// Per dialect (PostgreSQL, MySQL).
    by_text: [Mutex<ByText>; 2],
}

/// Classified statements by cache key.
type ByText = HashMap<Arc<str>, Arc<Vec<Statement>>>;

/// Which parser reads a request's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres = 0,
    Mysql = 1,
}

/// Texts kept in the cache; past this it starts again (a client cannot grow it without bound).
const MAX_CACHED_TEXTS: usize = 4096;
/// Longer texts are classified every time: they are rarely repeated and costly to keep.
const MAX_CACHED_TEXT_BYTES: usize = 4096;

impl ClassCache {
    /// The statements of a SQL request; one `unparsed` statement for a request whose SQL witness
    /// cannot see.
    fn statements(&self, sql: Option<&str>, dialect: Dialect) -> Arc<Vec<Statement>> {
        let Some(text) = sql else {
            return Arc::new(vec![Statement::unparsed(
                "witness cannot see which statement this runs: a fast-path function call, an execution of a statement it does not know, or text it cannot read as the target will",
            )]);
        };
        let classify = || match dialect {
            Dialect::Postgres => witness_policy::classify(text),
            Dialect::Mysql => witness_policy::classify_mysql(text),
        };
        if text.len() > MAX_CACHED_TEXT_BYTES {
            return Arc::new(classify());
        }
        let key = cache_key(text);
        if let Some(found) = self.lock(dialect).get(key.as_ref()) {
            return found.clone();
        }
        let statements = Arc::new(classify());
        let mut cache = self.lock(dialect);
        if cache.len() >= MAX_CACHED_TEXTS {
            cache.clear();
        }
        cache.insert(Arc::from(key.as_ref()), statements.clone());
        statements
    }

    fn lock(&self, dialect: Dialect) -> std::sync::MutexGuard<'_, ByText> {
        self.by_text[dialect as usize].lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The token store's SCRAM challenge, as the PostgreSQL front sees it, and the user it is for.
pub struct Challenge(ScramChallenge, String);

impl ScramParams for Challenge {
    fn salt(&self) -> &[u8] {
        &self.0.salt
    }

    fn iterations(&self) -> u32 {
        self.0.iterations
    }
}

/// The text a statement's classes are cached under. Simple-protocol clients put values in the
/// text (`... WHERE aid = 4711`), which would make every statement new; numbers do not change a
/// statement's classes or tables, so they are all written as 0 in the key. Only texts with
/// nothing that could hide a number's meaning are normalised (no quotes, dollar signs, comments
/// backslashes or backquotes: a digit there may be inside a string or an identifier); others are
/// their own key. A run of digits followed by a letter stays as it is too: MySQL names may begin
/// with digits (`1abc`).
fn cache_key(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = text.is_ascii()
        && !text.bytes().any(|b| matches!(b, b'\'' | b'"' | b'$' | b'\\' | b'#' | b'`'))
        && !text.contains("--")
        && !text.contains("/*");
    if !plain || !text.bytes().any(|b| b.is_ascii_digit()) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut key = String::with_capacity(text.len());
    let mut previous: Option<char> = None;
    let mut in_number = false;
    let bytes = text.as_bytes();
    for (at, c) in text.char_indices() {
        if c.is_ascii_digit() {
            let starts_number = !previous.is_some_and(|p| p.is_ascii_alphanumeric() || p == '_') || in_number;
            // Digits that run into a letter are part of a name (MySQL's `1abc`), not a number.
            let run_end = bytes[at..].iter().position(|b| !b.is_ascii_digit()).map_or(bytes.len(), |n| at + n);
            let names = bytes.get(run_end).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_');
            if starts_number && !names {
                if !in_number {
                    key.push('0');
                    in_number = true;
                }
                previous = Some(c);
                continue;
            }
        }
        in_number = false;
        key.push(c);
        previous = Some(c);
    }
    std::borrow::Cow::Owned(key)
}

/// Whether text witness could not parse may hold a `KILL` statement: a piece between semicolons
/// that starts with the word, after whitespace and comments (but not `/*!` ones, whose text
/// MySQL runs). Semicolons inside strings only make more pieces, so more text is suspected.
fn may_hold_a_kill(text: &str) -> bool {
    text.split(';').any(|piece| {
        let mut rest = piece.trim_start();
        loop {
            if rest.starts_with("/*") && !rest.starts_with("/*!") && !rest.starts_with("/*M!") {
                rest = rest.find("*/").map_or("", |end| rest[end + 2..].trim_start());
            } else if rest.starts_with('#') || rest.starts_with("-- ") {
                rest = rest.find('\n').map_or("", |end| rest[end + 1..].trim_start());
            } else {
                break;
            }
        }
        let rest = rest.trim_start_matches("/*!").trim_start_matches("/*M!").trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
        rest.get(..4).is_some_and(|word| word.eq_ignore_ascii_case("kill"))
            && !rest[4..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn subject_masks(rules: &Reloadable, subject: &Subject) -> Option<Arc<SessionMasks>> {
    let masking = rules.masking();
    if masking.is_empty() {
        return None;
    }
    masking.for_session(&subject.info.connection, &subject.principal.groups)
}

/// Who asks, as policy sees a live session: identity, groups, connection, task.
fn caller(subject: &Subject) -> Caller<'_> {
    Caller {
        identity: &subject.info.identity,
        groups: &subject.principal.groups,
        connection: &subject.info.connection,
        task: subject.info.task.as_deref(),
    }
}

impl Gate for Gateway {
    async fn authenticate(&self, protocol: Protocol, credential: Credential<'_>) -> Result<Principal, AuthRefused> {
        let (claimed, result) = match credential {
            Credential::Password { user, password } => (user, self.identities.password(user, password).await),
            // An SSH password: the user names the connection, so nobody is claimed.
            Credential::Bearer(token) => ("(token)", self.identities.bearer(token).await),
        };
        self.refusal(protocol, claimed, result)
    }

    fn target<T: Send + Sync + 'static>(&self, connection: &str) -> Result<Arc<T>, UnknownTarget> {
        self.targets.get::<T>(connection)
    }

    async fn open_session(&self, info: &SessionInfo) -> Result<SessionWriter, LedgerError> {
        self.ledger.open_session(info).await
    }

    fn decide(&self, subject: &Subject, request: Request<'_>) -> Verdict {
        let verdict = match request {
            Request::Sql(text) => self.decide_sql(subject, Some(text), Dialect::Postgres, &request),
            Request::OpaqueSql => self.decide_sql(subject, None, Dialect::Postgres, &request),
            Request::MysqlSql(text) => self.decide_sql(subject, Some(text), Dialect::Mysql, &request),
            Request::OpaqueMysqlSql => self.decide_sql(subject, None, Dialect::Mysql, &request),
            Request::Ssh { operation, text } => self.decide_ssh(subject, operation, text, &request),
            Request::Http { method, path, uncertain, .. } => {
                let decision = witness_policy::decide_http(&self.rules.policy(), &caller(subject), method, path, uncertain);
                let classes = if uncertain.is_some() { vec!["http".into(), "uncertain-path".into()] } else { vec!["http".into()] };
                self.verdict(subject, &request, decision, classes)
            }
            Request::Kube(kube) => {
                let decision = witness_policy::decide_kube(&self.rules.policy(), &caller(subject), kube);
                let mut classes = vec!["kube".to_string(), kube.verb.clone()];
                if kube.uncertain.is_some() {
                    classes.push("uncertain-request".into());
                }
                if !kube.impersonate.is_empty() {
                    classes.push("impersonation".into());
                }
                self.verdict(subject, &request, decision, classes)
            }
        };
        self.counts.decided(subject.info.protocol, &subject.info.connection, &verdict);
        verdict
    }

    fn target_failed(&self, connection: &str) {
        self.counts.connections.target_failed(connection);
    }

    fn register(&self, subject: &Subject) -> Registration {
        let (interrupt, guard) = self.registry.register(subject.session, &subject.principal.credential, subject.info.protocol);
        Registration { interrupt, guard: Box::new(guard) }
    }
}

impl PgGate for Gateway {
    type Challenge = Challenge;

    fn scram_challenge(&self, user: &str) -> Challenge {
        match self.identities.tokens.scram_challenge(user) {
            Ok(challenge) => Challenge(challenge, user.to_string()),
            Err(e) => {
                // The exchange still runs, and fails, so the client gets the usual error.
                tracing::error!(error = %e, "cannot read the token store");
                Challenge(ScramChallenge::refusing(vec![0; 16], witness_identity::SCRAM_ITERATIONS), user.to_string())
            }
        }
    }

    fn verify_scram(&self, challenge: Challenge, auth_message: &[u8], proof: &[u8]) -> Result<(Principal, [u8; 32]), AuthRefused> {
        let Challenge(challenge, user) = challenge;
        let result = challenge
            .verify(auth_message, proof)
            .map(|(identity, signature)| (principal(identity), signature))
            .map_err(|failure| AuthRefused { reason: failure.to_string(), client_reason: None });
        self.refusal(Protocol::Postgres, &user, result)
    }

    fn masks(&self, subject: &Subject) -> Option<Arc<SessionMasks>> {
        subject_masks(&self.rules, subject)
    }
}

impl witness_proto_mysql::MysqlGate for Gateway {
    fn verify_native(&self, user: &str, scramble: &[u8], response: &[u8]) -> Result<Principal, AuthRefused> {
        let result = match self.identities.tokens.mysql_native_verifiers(user) {
            Ok(verifiers) => verifiers
                .into_iter()
                .find(|(verifier, _)| witness_proto_mysql::auth::native_password_matches(verifier, scramble, response))
                .map(|(_, identity)| principal(identity))
                .ok_or_else(|| AuthRefused {
                    reason: format!("no valid token of {user:?} answers the scramble (unknown, expired or revoked, or a JWT, which needs [mysql] auth = \"password\")"),
                    client_reason: None,
                }),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the token store");
                Err(AuthRefused { reason: format!("the token store cannot be read: {e}"), client_reason: None })
            }
        };
        self.refusal(Protocol::Mysql, user, result)
    }

    fn masks(&self, subject: &Subject) -> Option<Arc<SessionMasks>> {
        subject_masks(&self.rules, subject)
    }

    fn local_file(&self, subject: &Subject, sql: &str) -> Option<String> {
        let statements = self.classes.statements(Some(sql), Dialect::Mysql);
        let [statement] = statements.as_slice() else { return None };
        let file = statement.local_file.clone()?;
        // Past admission an approval was granted: only a refusal takes the file away.
        match witness_policy::decide_statements(&self.rules.policy(), &caller(subject), sql, &statements) {
            Decision::Deny { .. } => None,
            Decision::Allow { .. } | Decision::Approve { .. } => Some(file),
        }
    }
}

impl witness_proto_http::HttpGate for Gateway {
    fn masks(&self, subject: &Subject) -> Option<Arc<SessionMasks>> {
        subject_masks(&self.rules, subject)
    }
}

impl SshGate for Gateway {
    fn verify_key(&self, fingerprint: &str) -> Result<Principal, AuthRefused> {
        let result = self.identities.tokens.verify_ssh_key(fingerprint).map(principal).map_err(|_| AuthRefused {
            reason: format!("no identity has the key {fingerprint}; register it with `witness identity add-key`"),
            client_reason: None,
        });
        self.counts.auth_failures.count(Protocol::Ssh, result)
    }

    fn keys_refused(&self, claimed: &str, fingerprints: &[String], more: usize) {
        let others = if more > 0 { format!(" and {more} more") } else { String::new() };
        let reason = format!("no identity has the keys it signed with: {}{others}", fingerprints.join(", "));
        self.refused.record(Protocol::Ssh.as_str(), claimed, &reason);
    }
}

impl Gateway {
    /// Counts a refused login and records it in the audit trail; passes `result` on.
    fn refusal<T>(&self, protocol: Protocol, claimed: &str, result: Result<T, AuthRefused>) -> Result<T, AuthRefused> {
        if let Err(refused) = &result {
            self.refused.record(protocol.as_str(), claimed, &refused.reason);
        }
        self.counts.auth_failures.count(protocol, result)
    }

    fn decide_sql(&self, subject: &Subject, sql: Option<&str>, dialect: Dialect, request: &Request<'_>) -> Verdict {
        let policy = self.rules.policy();
        let caller = caller(subject);
        // Column masking cannot follow COPY TO, whose rows carry no column names. (COPY rows are
        // counted, not recorded: rules for the recording only do not matter here.)
        let masks = subject_masks(&self.rules, subject);
        let column_masks = masks.clone().filter(|masks| masks.has_client_column_rules());
        if column_masks.is_none() && dialect == Dialect::Postgres && !witness_policy::needs_statements(&policy, &caller) {
            return Verdict::Allow { rule: None };
        }
        // Only text that mentions KILL can hold one (or PREPARE or EXECUTE run one built at run
        // time), and only text that mentions INFILE a load of the client's file, which needs a
        // rule: other text needs no classes when no rule or mask asks for them.
        let mentions = |word: &[u8]| sql.is_some_and(|t| t.as_bytes().windows(word.len()).any(|w| w.eq_ignore_ascii_case(word)));
        let may_need_classes = mentions(b"kill") || mentions(b"prepare") || mentions(b"execute") || mentions(b"infile");
        // Column rules for the recording only need the columns' origins as much as the client's.
        let any_column_masks = masks.filter(|masks| masks.has_column_rules());
        if dialect == Dialect::Mysql
            && sql.is_some()
            && !may_need_classes
            && any_column_masks.is_none()
            && !witness_policy::needs_statements(&policy, &caller)
        {
            return Verdict::Allow { rule: None };
        }
        let statements = self.classes.statements(sql, dialect);
        if dialect == Dialect::Mysql {
            // A KILL names a target thread, which may be any session's; the relay sends one only
            // for a witness connection of the caller's own (and not through the gate). Text that
            // cannot be read may hide one.
            let unparsed = statements.iter().any(|s| s.classes.contains(&SqlClass::Unparsed));
            let unreadable_kill = unparsed && sql.is_some_and(may_hold_a_kill);
            if statements.iter().any(|s| s.kill) || unreadable_kill {
                return Verdict::Deny {
                    rule: "kill".into(),
                    message: "witness relays KILL only alone in a query, as KILL [QUERY | CONNECTION] ID with the id of one of your witness connections".into(),
                    classes: vec!["other".into()],
                };
            }
            // SQL built at run time may be a KILL of any session's thread, which no text shows.
            if unparsed && sql.is_some_and(|text| witness_policy::runs_dynamic_sql(text.as_bytes())) {
                return Verdict::Deny {
                    rule: "kill".into(),
                    message: "witness does not relay PREPARE ... FROM, EXECUTE or EXECUTE IMMEDIATE in SQL text: the statement they run (perhaps a KILL) cannot be read; use your driver's prepared statements".into(),
                    classes: vec!["unparsed".into()],
                };
            }
            let loads_a_file = statements.iter().any(|s| s.local_file.is_some());
            if any_column_masks.is_none() && !loads_a_file && !witness_policy::needs_statements(&policy, &caller) {
                return Verdict::Allow { rule: None };
            }
        }
        if let Some(masks) = &column_masks {
            if statements.iter().any(|s| s.classes.contains(&SqlClass::CopyOut)) {
                return Verdict::Deny {
                    rule: masks.client_column_rule_name().to_string(),
                    message: "column masking applies to you, and COPY TO carries no column names to mask by; use SELECT".into(),
                    classes: vec!["copy".into(), "copy-out".into()],
                };
            }
            // Masking follows values to the client. Copied into another table or column inside the
            // database they would come back where no column rule names them.
            let copies_masked = |s: &Statement| match &s.copies {
                Copies::Nothing => false,
                Copies::Rows => true,
                Copies::Columns(names) => names.iter().any(|name| masks.may_mask_client_column(name)),
            };
            if let Some(statement) = statements.iter().find(|s| copies_masked(s)) {
                let mut classes: Vec<String> = statement.classes.iter().map(|c| c.as_str().to_string()).collect();
                classes.dedup();
                return Verdict::Deny {
                    rule: masks.client_column_rule_name().to_string(),
                    message: "column masking applies to you, and this statement copies values inside the database (INSERT ... SELECT, CREATE TABLE AS, SELECT INTO, MERGE, UPDATE from columns), where masking cannot follow them; SELECT what you need instead".into(),
                    classes,
                };
            }
        }
        if let (Some(masks), Dialect::Mysql) = (&any_column_masks, dialect) {
            // MySQL names an alias, or no table, as the table of a column that comes through a
            // derived table, a CTE, a UNION or a selected subquery: masking could not tell it
            // is a column a rule names.
            if let Some(statement) = statements.iter().find(|s| s.hides_origins) {
                let mut classes: Vec<String> = statement.classes.iter().map(|c| c.as_str().to_string()).collect();
                classes.dedup();
                return Verdict::Deny {
                    rule: masks.client_column_rule_name().to_string(),
                    message: "column masking applies to you, and this statement's columns may come through a derived table, a WITH, a UNION or a subquery, whose columns MySQL does not say the table of; select from the tables themselves".into(),
                    classes,
                };
            }
        }
        let decision = witness_policy::decide_statements(&policy, &caller, sql.unwrap_or(""), &statements);
        let classes = || {
            let mut names: Vec<String> = statements.iter().flat_map(|s| s.classes.iter().map(|c| c.as_str().to_string())).collect();
            names.sort();
            names.dedup();
            names
        };
        // Classes are named only for a refusal or a hold: an allowed request does not need them.
        let classes = if matches!(decision, Decision::Allow { .. }) { Vec::new() } else { classes() };
        self.verdict(subject, request, decision, classes)
    }

    fn decide_ssh(&self, subject: &Subject, operation: SshOperation, text: &str, request: &Request<'_>) -> Verdict {
        let decision = witness_policy::decide_ssh(&self.rules.policy(), &caller(subject), operation, text);
        self.verdict(subject, request, decision, vec![operation.as_str().to_string()])
    }

    /// The verdict a policy decision gives; an approve decision becomes a request to approvers.
    fn verdict(&self, subject: &Subject, request: &Request<'_>, decision: Decision, classes: Vec<String>) -> Verdict {
        match decision {
            Decision::Allow { rule } => Verdict::Allow { rule },
            Decision::Deny { rule, message } => Verdict::Deny { rule, message, classes },
            Decision::Approve { rule, approvers, timeout } => Verdict::Hold(self.approvals.hold(HoldRequest {
                session: subject.session.to_string(),
                requester: &subject.principal,
                connection: &subject.info.connection,
                task: subject.info.task.as_deref(),
                statement: &request.describe(),
                classes,
                rule,
                approvers,
                timeout,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cache_key;

    #[test]
    fn unreadable_text_is_suspected_of_a_kill_only_where_a_statement_could_begin_with_one() {
        for suspect in ["KILL 5 /*", "select 1; kill 5 \\", "/* x */ KILL QUERY 5 \"", "# c\nkill 5", "/*!50000 KILL 5 */ \""] {
            assert!(super::may_hold_a_kill(suspect), "{suspect}");
        }
        for innocent in ["select skills from t where a = \"", "select * from killed \"", "select 'kill' \"", "update t set killer = 1 \""] {
            assert!(!super::may_hold_a_kill(innocent), "{innocent}");
        }
    }

    #[test]
    fn numbers_share_a_cache_key_where_nothing_can_hide_them() {
        let key = |text: &str| cache_key(text).into_owned();
        assert_eq!(key("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;"), "SELECT abalance FROM pgbench_accounts WHERE aid = 0;");
        assert_eq!(key("select * from t1 where x in (1, 22, 333) limit 10"), "select * from t1 where x in (0, 0, 0) limit 0");
        assert_eq!(key("select 1.5e10"), "select 0.5e10", "digits next to a letter stay: they may be part of a name");
        assert_eq!(key("select * from 1abc where x = 2"), "select * from 1abc where x = 0", "MySQL names may begin with digits");
        assert_eq!(key("select * from 12_t"), "select * from 12_t");
        assert_eq!(key("update t set x = x - 1 where id = 7 / 2"), "update t set x = x - 0 where id = 0 / 0");
        for kept in [
            "select * from t where name = '42'",
            "select \"col 1\" from t",
            "select $1 + 2",
            "select 1 -- 2",
            "select 1 /* 2 */",
            "select E'\\x41'",
            "select 'é' || 1",
            "select * from `123`",
        ] {
            assert_eq!(key(kept), kept, "texts where a digit may be quoted or commented keep their own key");
        }
    }
}
