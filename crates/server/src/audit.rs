//! This process's audit trail: a session of protocol `audit` in the ledger, opened on its first
//! record, where the review API records who viewed, searched, decided or changed what, and where
//! the gate and the API record logins they refused on any listener. Refused logins are a peer's to cause, so
//! they are recorded at a bounded rate: past [`REFUSALS_PER_MINUTE`] in a minute they are only
//! counted, and the next one recorded says how many were not.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use witness_core::{kind, Direction, Event, Protocol, SessionInfo};
use witness_ledger::{Ledger, LedgerError, SessionWriter};

/// Refused logins recorded one by one per minute; the rest are counted.
pub const REFUSALS_PER_MINUTE: u32 = 60;
/// A name a client claims is recorded up to this many characters.
const MAX_CLAIMED_NAME: usize = 100;

/// The trail's session, opened on its first record.
#[derive(Default)]
pub struct AuditTrail {
    session: tokio::sync::OnceCell<SessionWriter>,
}

impl AuditTrail {
    /// Appends `event`, opening the trail's session first if need be; returns once it is durable.
    pub async fn append(&self, ledger: &Ledger, event: &Event) -> Result<(), LedgerError> {
        let trail = self
            .session
            .get_or_try_init(|| async {
                let info = SessionInfo {
                    identity: "witness".into(),
                    connection: "review-api".into(),
                    protocol: Protocol::Audit,
                    task: None,
                    client_addr: None,
                    groups: Vec::new(),
                };
                ledger.open_session(&info).await
            })
            .await?;
        trail.append(event).await.map(|_| ())
    }

    /// Ends the trail's session (at shutdown, before the ledger's last checkpoint).
    pub async fn close(&self) {
        if let Some(trail) = self.session.get() {
            if let Err(e) = trail.clone().close("witness stopped").await {
                tracing::error!(error = %e, "cannot close the audit trail's session");
            }
        }
    }
}

/// Records refused logins in the audit trail, at a bounded rate.
pub struct RefusedLogins {
    trail: Arc<AuditTrail>,
    ledger: Arc<Ledger>,
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    recorded: u32,
    /// Refusals not recorded one by one since the last one that was.
    not_recorded: u64,
}

impl RefusedLogins {
    pub fn new(trail: Arc<AuditTrail>, ledger: Arc<Ledger>) -> RefusedLogins {
        RefusedLogins { trail, ledger, window: Mutex::new(Window { started: Instant::now(), recorded: 0, not_recorded: 0 }) }
    }

    /// The trail refused logins are recorded in.
    pub fn trail(&self) -> &Arc<AuditTrail> {
        &self.trail
    }

    /// A login on `listener`'s listener (a protocol's name, or `api`) was refused; `claimed` is
    /// the name the client gave (a user name, or what stands for it), `reason` why. Never waits:
    /// the record is appended by a task of its own.
    pub fn record(&self, listener: &str, claimed: &str, reason: &str) {
        let not_recorded = {
            let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
            if window.started.elapsed() >= Duration::from_secs(60) {
                (window.started, window.recorded) = (Instant::now(), 0);
            }
            if window.recorded >= REFUSALS_PER_MINUTE {
                window.not_recorded += 1;
                return;
            }
            window.recorded += 1;
            std::mem::take(&mut window.not_recorded)
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let claimed: String = claimed.chars().take(MAX_CLAIMED_NAME).collect();
        let mut what = format!("{listener} login: {reason}");
        if not_recorded > 0 {
            what.push_str(&format!(" ({not_recorded} refused logins before this one were counted, not recorded)"));
        }
        let event = Event::note(kind::LOGIN_REFUSED, Direction::Gateway, format!("{claimed} {}: {what}", kind::LOGIN_REFUSED))
            .with_attr("actor", claimed)
            .with_attr("credential", "")
            .with_attr("protocol", listener)
            .with_attr("what", what);
        let (trail, ledger) = (self.trail.clone(), self.ledger.clone());
        runtime.spawn(async move {
            if let Err(e) = trail.append(&ledger, &event).await {
                tracing::error!(error = %e, "the audit trail cannot record a refused login");
            }
        });
    }
}
