//! The part of the configuration that a reload replaces while witness runs: the policy rules,
//! the masking rules and `[roles]`. Each is swapped whole, so a reader sees the old set or the
//! new one, never a mix; a request is decided with the policy current when it arrives, and a
//! session keeps the masks it started with.

use std::sync::{Arc, RwLock};

use witness_mask::Masking;
use witness_policy::Policy;

use crate::config::RolesSection;

/// The rules in force, shared by the gate (decisions, masks) and the review API (roles).
pub struct Reloadable {
    policy: RwLock<Arc<Policy>>,
    masking: RwLock<Arc<Masking>>,
    roles: RwLock<Arc<RolesSection>>,
}

impl Reloadable {
    pub fn new(policy: Policy, masking: Masking, roles: RolesSection) -> Reloadable {
        Reloadable { policy: RwLock::new(Arc::new(policy)), masking: RwLock::new(Arc::new(masking)), roles: RwLock::new(Arc::new(roles)) }
    }

    /// Replaces all three; requests decided from now on use the new policy, sessions started
    /// from now on the new masks.
    pub fn replace(&self, policy: Policy, masking: Masking, roles: RolesSection) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        *self.masking.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(masking);
        *self.roles.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(roles);
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn masking(&self) -> Arc<Masking> {
        self.masking.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn roles(&self) -> Arc<RolesSection> {
        self.roles.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
