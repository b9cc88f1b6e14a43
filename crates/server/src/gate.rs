//! The gate: what protocol fronts ask of the rest of witness. It authenticates callers with the
//! token store, names targets, opens recordings in the ledger, registers live sessions, and
//! decides on each request with the policy (holding it for approval where a rule says so). It is
//! also the API's backend: bearer tokens and approvals.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use witness_core::{Principal, SessionInfo, Verdict};
use witness_identity::{AuthenticatedIdentity, ScramChallenge, TokenStore};
use witness_ledger::{Ledger, LedgerError, SessionWriter};
use witness_policy::{Decision, Policy, Request};
use witness_proto_pg::{AuthRefused, Interrupt, PgGate, PgTarget, ScramParams, Subject};

use crate::approvals::{Approvals, HoldRequest};
use crate::registry::Registry;

pub struct Gate {
    pub tokens: Arc<TokenStore>,
    pub ledger: Arc<Ledger>,
    pub pg_targets: HashMap<String, Arc<PgTarget>>,
    pub registry: Registry,
    /// Swapped whole on reload; live sessions see new rules from their next request on.
    pub policy: RwLock<Arc<Policy>>,
    pub approvals: Approvals,
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

fn principal(identity: AuthenticatedIdentity) -> Principal {
    Principal {
        identity: identity.name().to_string(),
        groups: identity.groups().to_vec(),
        task: identity.task().map(str::to_string),
        credential: identity.token_id().to_string(),
    }
}

impl Gate {
    /// Replaces the policy; requests decided from now on use the new one.
    pub fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    fn current_policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl PgGate for Gate {
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
        challenge
            .0
            .verify(auth_message, proof)
            .map(|(identity, signature)| (principal(identity), signature))
            .map_err(|failure| AuthRefused { reason: failure.to_string(), client_reason: None })
    }

    async fn verify_password(&self, user: &str, password: &str) -> Result<Principal, AuthRefused> {
        self.tokens
            .verify_secret(user, password)
            .map(principal)
            .map_err(|failure| AuthRefused { reason: failure.to_string(), client_reason: None })
    }

    fn target(&self, connection: &str) -> Result<Arc<PgTarget>, Vec<String>> {
        self.pg_targets.get(connection).cloned().ok_or_else(|| {
            let mut names: Vec<String> = self.pg_targets.keys().cloned().collect();
            names.sort();
            names
        })
    }

    async fn open_session(&self, info: &SessionInfo) -> Result<SessionWriter, LedgerError> {
        self.ledger.open_session(info).await
    }

    fn decide(&self, subject: &Subject, text: &str) -> Verdict {
        let policy = self.current_policy();
        let request = Request {
            identity: &subject.info.identity,
            groups: &subject.principal.groups,
            connection: &subject.info.connection,
            task: subject.info.task.as_deref(),
            sql: text,
        };
        let (decision, statements) = witness_policy::decide(&policy, &request);
        let classes = || {
            let mut names: Vec<String> = statements.iter().flat_map(|s| s.classes.iter().map(|c| c.as_str().to_string())).collect();
            names.sort();
            names.dedup();
            names
        };
        match decision {
            Decision::Allow { rule } => Verdict::Allow { rule },
            Decision::Deny { rule, message } => Verdict::Deny { rule, message, classes: classes() },
            Decision::Approve { rule, approvers, timeout } => Verdict::Hold(self.approvals.hold(HoldRequest {
                session: subject.session.to_string(),
                requester: &subject.principal,
                connection: &subject.info.connection,
                task: subject.info.task.as_deref(),
                statement: text,
                classes: classes(),
                rule,
                approvers,
                timeout,
            })),
        }
    }

    fn register(&self, principal: &Principal) -> (watch::Receiver<Option<Interrupt>>, Box<dyn Send + Sync>) {
        let (rx, registration) = self.registry.register(&principal.credential);
        (rx, Box::new(registration))
    }
}

impl witness_api::Backend for Gate {
    async fn authenticate(&self, token: &str) -> Option<Principal> {
        match self.tokens.verify_bearer(token) {
            Ok(identity) => Some(principal(identity)),
            Err(failure) => {
                tracing::info!(reason = %failure, "API bearer token refused");
                None
            }
        }
    }

    fn approvals(&self, caller: &Principal) -> Vec<witness_api::Approval> {
        self.approvals.visible_to(caller)
    }

    fn decide(&self, caller: &Principal, id: &str, approve: bool) -> Result<witness_api::Approval, witness_api::DecideError> {
        self.approvals.decide(caller, id, approve)
    }
}
