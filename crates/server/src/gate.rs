//! The gateway: what protocol fronts ask of the rest of witness, behind the protocol-neutral
//! [`Gate`] and the few protocol extensions (SCRAM and masks for PostgreSQL, keys for SSH). It
//! authenticates callers with the token store, names targets, opens recordings in the ledger,
//! registers live sessions, and decides on each request with the policy (holding it for
//! approval where a rule says so), counting logins and decisions per protocol for `/metrics`.
//! It is also the API's backend (`review.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use witness_core::{AuthRefused, Principal, Protocol, Request, SessionInfo, SshOperation, Subject, Verdict};
use witness_gate::{Credential, Gate, Registration, UnknownTarget};
use witness_identity::{looks_like_jwt, AuthenticatedIdentity, OidcVerifier, ScramChallenge, TokenStore};
use witness_ledger::{Ledger, LedgerError, SessionWriter};
use witness_policy::mask::{Masking, SessionMasks};
use witness_policy::{Caller, Copies, Decision, Policy, SqlClass, Statement};
use witness_proto_pg::{PgGate, ScramParams};
use witness_proto_ssh::SshGate;

use crate::approvals::{Approvals, HoldRequest};
use crate::config::RolesSection;
use crate::registry::Registry;
use crate::targets::Targets;

pub struct Gateway {
    pub tokens: Arc<TokenStore>,
    pub ledger: Arc<Ledger>,
    /// Every configured connection's target, of whichever protocol.
    pub targets: Targets,
    pub registry: Registry,
    /// Swapped whole on reload; live sessions see new rules from their next request on.
    pub policy: RwLock<Arc<Policy>>,
    pub approvals: Approvals,
    /// Verifies JWTs of the configured OpenID issuers, if any.
    pub oidc: Option<OidcVerifier>,
    pub classes: ClassCache,
    /// Swapped whole on reload with the policy; a session keeps the masks it started with.
    pub masking: RwLock<Arc<Masking>>,
    /// `[roles]`, swapped whole on reload with the policy.
    pub roles: RwLock<Arc<RolesSection>>,
    pub decisions: DecisionCounts,
    pub auth_failures: AuthFailures,
    /// The audit trail and the verification cache of the review API.
    pub review: crate::review::ReviewState,
    /// The console's login through an OpenID provider, when `[console.oidc]` is set.
    pub console_login: Option<witness_identity::ConsoleLogin>,
}

/// A counter per client protocol, each present (at zero) from the start.
#[derive(Default)]
struct PerProtocol {
    counts: [AtomicU64; Protocol::CLIENTS.len()],
}

impl PerProtocol {
    fn add(&self, protocol: Protocol) {
        if let Some(i) = Protocol::CLIENTS.iter().position(|&p| p == protocol) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Protocol::CLIENTS.iter().zip(&self.counts).map(|(p, n)| (p.as_str(), n.load(Ordering::Relaxed)))
    }
}

/// Logins refused, by protocol, for `/metrics`: a wrong or revoked token, a JWT refused, an SSH
/// key no identity has (SSH clients offer their keys one by one, so each refused offer counts).
#[derive(Default)]
pub struct AuthFailures {
    refused: PerProtocol,
}

impl AuthFailures {
    fn count<T>(&self, protocol: Protocol, result: Result<T, AuthRefused>) -> Result<T, AuthRefused> {
        if result.is_err() {
            self.refused.add(protocol);
        }
        result
    }

    /// (protocol, refused logins), every client protocol present from the start.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.refused.snapshot().map(|(p, n)| (p.to_string(), n)).collect()
    }
}

/// Requests decided by policy, by protocol and decision, for `/metrics`.
#[derive(Default)]
pub struct DecisionCounts {
    allowed: PerProtocol,
    denied: PerProtocol,
    held: PerProtocol,
}

impl DecisionCounts {
    fn count(&self, protocol: Protocol, verdict: &Verdict) {
        match verdict {
            Verdict::Allow { .. } => self.allowed.add(protocol),
            Verdict::Deny { .. } => self.denied.add(protocol),
            Verdict::Hold(_) => self.held.add(protocol),
        }
    }

    /// (protocol, decision, count) for every pair.
    pub fn snapshot(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for (decision, counts) in [("allow", &self.allowed), ("deny", &self.denied), ("hold", &self.held)] {
            out.extend(counts.snapshot().map(|(p, n)| (p.to_string(), decision.to_string(), n)));
        }
        out.sort();
        out
    }
}

/// Statement classes by request text. A prepared statement is decided at each execution, and
/// parsing its text each time would cost more than the rest of the relay's work on it.
#[derive(Default)]
pub struct ClassCache {
    by_text: Mutex<HashMap<Arc<str>, Arc<Vec<Statement>>>>,
}

/// Texts kept in the cache; past this it starts again (a client cannot grow it without bound).
const MAX_CACHED_TEXTS: usize = 4096;
/// Longer texts are classified every time: they are rarely repeated and costly to keep.
const MAX_CACHED_TEXT_BYTES: usize = 4096;

impl ClassCache {
    /// The statements of a SQL request; one `unparsed` statement for a request whose SQL witness
    /// cannot see.
    fn statements(&self, sql: Option<&str>) -> Arc<Vec<Statement>> {
        let Some(text) = sql else {
            return Arc::new(vec![Statement::unparsed(
                "witness cannot see which statement this runs: a fast-path function call, an execution of a statement it does not know, or text it cannot read as PostgreSQL will",
            )]);
        };
        if text.len() > MAX_CACHED_TEXT_BYTES {
            return Arc::new(witness_policy::classify(text));
        }
        let key = cache_key(text);
        if let Some(found) = self.lock().get(key.as_ref()) {
            return found.clone();
        }
        let statements = Arc::new(witness_policy::classify(text));
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED_TEXTS {
            cache.clear();
        }
        cache.insert(Arc::from(key.as_ref()), statements.clone());
        statements
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Vec<Statement>>>> {
        self.by_text.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The token store's SCRAM challenge, as the PostgreSQL front sees it.
pub struct Challenge(ScramChallenge);

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
/// or backslashes: a digit there may be inside a string or an identifier); others are their own key.
fn cache_key(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = text.is_ascii()
        && !text.bytes().any(|b| matches!(b, b'\'' | b'"' | b'$' | b'\\' | b'#'))
        && !text.contains("--")
        && !text.contains("/*");
    if !plain || !text.bytes().any(|b| b.is_ascii_digit()) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut key = String::with_capacity(text.len());
    let mut previous: Option<char> = None;
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            let starts_number = !previous.is_some_and(|p| p.is_ascii_alphanumeric() || p == '_') || in_number;
            if starts_number {
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

fn subject_masks(masking: &RwLock<Arc<Masking>>, subject: &Subject) -> Option<Arc<SessionMasks>> {
    let masking = masking.read().unwrap_or_else(|p| p.into_inner()).clone();
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

pub(crate) fn principal(identity: AuthenticatedIdentity) -> Principal {
    Principal {
        identity: identity.name().to_string(),
        groups: identity.groups().to_vec(),
        task: identity.task().map(str::to_string),
        credential: identity.token_id().to_string(),
    }
}

impl Gateway {
    /// Replaces the policy, the masking rules and the roles; requests decided from now on use
    /// the new policy, sessions started from now on the new masks.
    pub fn set_policy(&self, policy: Policy, masking: Masking, roles: RolesSection) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        *self.masking.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(masking);
        *self.roles.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(roles);
    }

    /// A credential presented without an identity (an API bearer token, an SSH password): a JWT
    /// when it looks like one and issuers are configured, else a witness token found by its hash.
    pub(crate) async fn bearer(&self, token: &str) -> Result<Principal, AuthRefused> {
        if let (Some(oidc), true) = (&self.oidc, looks_like_jwt(token)) {
            return oidc
                .verify(token)
                .await
                .map(principal)
                .map_err(|refusal| AuthRefused { reason: format!("the JWT was refused: {refusal}"), client_reason: None });
        }
        self.tokens.verify_bearer(token).map(principal).map_err(|failure| AuthRefused { reason: failure.to_string(), client_reason: None })
    }

    pub(crate) fn current_policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Gate for Gateway {
    async fn authenticate(&self, protocol: Protocol, credential: Credential<'_>) -> Result<Principal, AuthRefused> {
        let result = match credential {
            Credential::Password { user, password } => self.check_password(user, password).await,
            Credential::Bearer(token) => self.bearer(token).await,
        };
        self.auth_failures.count(protocol, result)
    }

    fn target<T: Send + Sync + 'static>(&self, connection: &str) -> Result<Arc<T>, UnknownTarget> {
        self.targets.get::<T>(connection)
    }

    async fn open_session(&self, info: &SessionInfo) -> Result<SessionWriter, LedgerError> {
        self.ledger.open_session(info).await
    }

    fn decide(&self, subject: &Subject, request: Request<'_>) -> Verdict {
        let verdict = match request {
            Request::Sql(text) => self.decide_sql(subject, Some(text), &request),
            Request::OpaqueSql => self.decide_sql(subject, None, &request),
            Request::Ssh { operation, text } => self.decide_ssh(subject, operation, text, &request),
        };
        self.decisions.count(subject.info.protocol, &verdict);
        verdict
    }

    fn register(&self, subject: &Subject) -> Registration {
        let (interrupt, guard) = self.registry.register(&subject.principal.credential, subject.info.protocol);
        Registration { interrupt, guard: Box::new(guard) }
    }
}

impl PgGate for Gateway {
    type Challenge = Challenge;

    fn scram_challenge(&self, user: &str) -> Challenge {
        match self.tokens.scram_challenge(user) {
            Ok(challenge) => Challenge(challenge),
            Err(e) => {
                // The exchange still runs, and fails, so the client gets the usual error.
                tracing::error!(error = %e, "cannot read the token store");
                Challenge(ScramChallenge::refusing(vec![0; 16], witness_identity::SCRAM_ITERATIONS))
            }
        }
    }

    fn verify_scram(&self, challenge: Challenge, auth_message: &[u8], proof: &[u8]) -> Result<(Principal, [u8; 32]), AuthRefused> {
        let result = challenge
            .0
            .verify(auth_message, proof)
            .map(|(identity, signature)| (principal(identity), signature))
            .map_err(|failure| AuthRefused { reason: failure.to_string(), client_reason: None });
        self.auth_failures.count(Protocol::Postgres, result)
    }

    fn masks(&self, subject: &Subject) -> Option<Arc<SessionMasks>> {
        subject_masks(&self.masking, subject)
    }
}

impl SshGate for Gateway {
    fn verify_key(&self, fingerprint: &str) -> Result<Principal, AuthRefused> {
        let result = self.tokens.verify_ssh_key(fingerprint).map(principal).map_err(|_| AuthRefused {
            reason: format!("no identity has the key {fingerprint}; register it with `witness identity add-key`"),
            client_reason: None,
        });
        self.auth_failures.count(Protocol::Ssh, result)
    }
}

impl Gateway {
    /// A cleartext password: a JWT from a configured issuer, or a token of `user`.
    async fn check_password(&self, user: &str, password: &str) -> Result<Principal, AuthRefused> {
        if let (Some(oidc), true) = (&self.oidc, looks_like_jwt(password)) {
            let identity = oidc.verify(password).await.map_err(|refusal| {
                let reason = format!("the JWT was refused: {refusal}");
                AuthRefused { reason: reason.clone(), client_reason: Some(reason) }
            })?;
            if identity.name() != user {
                let reason = format!("the JWT is for \"{}\"; connect with user={}", identity.name(), identity.name());
                return Err(AuthRefused { reason: reason.clone(), client_reason: Some(reason) });
            }
            return Ok(principal(identity));
        }
        self.tokens.verify_secret(user, password).map(principal).map_err(|failure| {
            // A valid token of another identity: the caller holds it, so naming whose it is tells
            // them nothing new and saves a guess.
            match self.tokens.verify_bearer(password) {
                Ok(holder) if holder.name() != user => {
                    let reason = format!("the token is for \"{}\"; connect with user={}", holder.name(), holder.name());
                    AuthRefused { reason: reason.clone(), client_reason: Some(reason) }
                }
                _ => AuthRefused { reason: failure.to_string(), client_reason: None },
            }
        })
    }

    fn decide_sql(&self, subject: &Subject, sql: Option<&str>, request: &Request<'_>) -> Verdict {
        let policy = self.current_policy();
        let caller = caller(subject);
        // Column masking cannot follow COPY TO, whose rows carry no column names. (COPY rows are
        // counted, not recorded: rules for the recording only do not matter here.)
        let column_masks = subject_masks(&self.masking, subject).filter(|masks| masks.has_client_column_rules());
        if column_masks.is_none() && !witness_policy::needs_statements(&policy, &caller) {
            return Verdict::Allow { rule: None };
        }
        let statements = self.classes.statements(sql);
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
        let decision = witness_policy::decide_ssh(&self.current_policy(), &caller(subject), operation, text);
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
    fn numbers_share_a_cache_key_where_nothing_can_hide_them() {
        let key = |text: &str| cache_key(text).into_owned();
        assert_eq!(key("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;"), "SELECT abalance FROM pgbench_accounts WHERE aid = 0;");
        assert_eq!(key("select * from t1 where x in (1, 22, 333) limit 10"), "select * from t1 where x in (0, 0, 0) limit 0");
        assert_eq!(key("select 1.5e10"), "select 0.0e10", "digits after a letter stay: they may be part of a name");
        assert_eq!(key("update t set x = x - 1 where id = 7 / 2"), "update t set x = x - 0 where id = 0 / 0");
        for kept in [
            "select * from t where name = '42'",
            "select \"col 1\" from t",
            "select $1 + 2",
            "select 1 -- 2",
            "select 1 /* 2 */",
            "select E'\\x41'",
            "select 'é' || 1",
        ] {
            assert_eq!(key(kept), kept, "texts where a digit may be quoted or commented keep their own key");
        }
    }
}
