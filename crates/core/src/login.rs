//! A connection that has not logged in yet, as its protocol front holds it. The listener bounds
//! such connections (per address, in total, and in time) and closes them itself; the front's only
//! part is to say when its client has proved who it is, so that the connection stops counting
//! against those bounds and the login timeout no longer applies to it.
//!
//! What this does not do: know the bounds, or end a connection.

/// Handed to a protocol front with each new connection; [`PendingLogin::logged_in`] once the
/// client is authenticated. Dropping it unused says nothing: the connection ends, or is closed
/// when its time to log in runs out.
pub struct PendingLogin {
    on_login: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl PendingLogin {
    /// `on_login` runs once, when the front says the client logged in.
    pub fn new(on_login: impl FnOnce() + Send + Sync + 'static) -> PendingLogin {
        PendingLogin { on_login: Some(Box::new(on_login)) }
    }

    /// For a connection that no listener bounds (tests, tools).
    pub fn unbounded() -> PendingLogin {
        PendingLogin { on_login: None }
    }

    /// The client is authenticated: the connection is a session now, no longer bounded as one
    /// waiting to log in.
    pub fn logged_in(mut self) {
        if let Some(on_login) = self.on_login.take() {
            on_login();
        }
    }
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin").field("bounded", &self.on_login.is_some()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_listener_hears_of_a_login_once_and_of_nothing_else() {
        let logins = Arc::new(AtomicUsize::new(0));
        let counter = logins.clone();
        PendingLogin::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .logged_in();
        assert_eq!(logins.load(Ordering::Relaxed), 1);
        let counter = logins.clone();
        drop(PendingLogin::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        assert_eq!(logins.load(Ordering::Relaxed), 1, "a login dropped unused is not a login");
        PendingLogin::unbounded().logged_in();
    }
}
