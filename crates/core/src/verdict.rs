//! What the gate says about one request: forward it, refuse it, or hold it until a person decides.
//! Protocol crates act on a [`Verdict`] without knowing the rules behind it; the policy crate and
//! the approval broker, behind the gate, produce it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The gate's answer for one request.
pub enum Verdict {
    /// Forward the request. `rule` names the allowing rule, if one matched.
    Allow { rule: Option<String> },
    /// Refuse it: it never reaches the target, the client is told `message`.
    Deny { rule: String, message: String, classes: Vec<String> },
    /// Hold it until an approver decides (or the wait times out).
    Hold(Held),
}

/// A request held for approval. Dropping it (or its `outcome`) withdraws the request.
pub struct Held {
    /// What approvers name when they decide, e.g. `ap-7kq2m9xw`.
    pub approval_id: String,
    pub rule: String,
    /// The groups whose members may decide.
    pub approvers: Vec<String>,
    pub timeout: Duration,
    pub classes: Vec<String>,
    /// One line telling the waiting client how the request can be decided.
    pub instructions: String,
    /// Resolves when the request is decided or times out.
    pub outcome: Pin<Box<dyn Future<Output = ApprovalOutcome> + Send>>,
}

/// How a held request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// `reason`: what the approver said, if anything; recorded, and shown to the requester.
    Approved {
        by: String,
        reason: Option<String>,
    },
    Denied {
        by: String,
        reason: Option<String>,
    },
    TimedOut,
}

impl fmt::Debug for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Allow { rule } => f.debug_struct("Allow").field("rule", rule).finish(),
            Verdict::Deny { rule, message, classes } => {
                f.debug_struct("Deny").field("rule", rule).field("message", message).field("classes", classes).finish()
            }
            Verdict::Hold(held) => f.debug_tuple("Hold").field(held).finish(),
        }
    }
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("approval_id", &self.approval_id)
            .field("rule", &self.rule)
            .field("approvers", &self.approvers)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
