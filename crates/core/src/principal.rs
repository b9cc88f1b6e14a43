//! Who a session belongs to, as the protocol crates and the recording see it.

/// An authenticated caller: its identity, groups and task, and the credential it used. Built by
/// the gateway from an identity that passed authentication; never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub identity: String,
    pub groups: Vec<String>,
    /// The task the credential was issued for, if any.
    pub task: Option<String>,
    /// Which credential authenticated the caller (a token id), for audit and revocation.
    pub credential: String,
}
