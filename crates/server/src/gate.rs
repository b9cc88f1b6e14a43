//! The gate: what protocol fronts ask of the rest of witness. It authenticates callers with the
//! token store, names targets, opens recordings in the ledger, and registers live sessions.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use witness_core::{Principal, SessionInfo};
use witness_identity::{AuthenticatedIdentity, ScramChallenge, TokenStore};
use witness_ledger::{Ledger, LedgerError, SessionWriter};
use witness_proto_pg::{AuthRefused, Interrupt, PgGate, PgTarget, ScramParams};

use crate::registry::Registry;

pub struct Gate {
    pub tokens: Arc<TokenStore>,
    pub ledger: Arc<Ledger>,
    pub pg_targets: HashMap<String, Arc<PgTarget>>,
    pub registry: Registry,
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
            .map_err(|failure| AuthRefused { reason: failure.to_string() })
    }

    fn verify_password(&self, user: &str, password: &str) -> Result<Principal, AuthRefused> {
        self.tokens.verify_secret(user, password).map(principal).map_err(|failure| AuthRefused { reason: failure.to_string() })
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

    fn register(&self, principal: &Principal) -> (watch::Receiver<Option<Interrupt>>, Box<dyn Send + Sync>) {
        let (rx, registration) = self.registry.register(&principal.credential);
        (rx, Box::new(registration))
    }
}
