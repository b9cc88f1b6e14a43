//! Every configured connection's target, of whichever protocol, by connection name. Each
//! protocol crate has its own target type (`PgTarget`, `SshTarget`, …); a front asks for a target
//! of its own type, and a connection of another protocol is unknown to it. Adding a protocol
//! adds targets of a new type here, not a new map.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use witness_gate::UnknownTarget;

/// Targets by connection name.
#[derive(Default)]
pub struct Targets {
    by_name: HashMap<String, Arc<dyn Any + Send + Sync>>,
}

impl Targets {
    pub fn insert<T: Send + Sync + 'static>(&mut self, connection: String, target: T) {
        self.by_name.insert(connection, Arc::new(target));
    }

    /// The target of `connection` if it is a `T`; else the names of the connections that are.
    pub fn get<T: Send + Sync + 'static>(&self, connection: &str) -> Result<Arc<T>, UnknownTarget> {
        if let Some(target) = self.by_name.get(connection).and_then(|target| target.clone().downcast::<T>().ok()) {
            return Ok(target);
        }
        let mut known: Vec<String> =
            self.by_name.iter().filter(|(_, target)| target.as_ref().is::<T>()).map(|(name, _)| name.clone()).collect();
        known.sort();
        Err(UnknownTarget { given: connection.to_string(), known })
    }

    /// How many connections have targets of type `T`.
    pub fn count<T: Send + Sync + 'static>(&self) -> usize {
        self.by_name.values().filter(|target| target.as_ref().is::<T>()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::Targets;

    #[derive(Debug, PartialEq)]
    struct Pg(&'static str);
    #[derive(Debug, PartialEq)]
    struct Ssh(&'static str);

    #[test]
    fn a_front_sees_only_the_targets_of_its_own_protocol() {
        let mut targets = Targets::default();
        targets.insert("app".into(), Pg("db:5432"));
        targets.insert("reports".into(), Pg("db2:5432"));
        targets.insert("web".into(), Ssh("web:22"));
        assert_eq!(*targets.get::<Pg>("app").unwrap(), Pg("db:5432"));
        assert_eq!(*targets.get::<Ssh>("web").unwrap(), Ssh("web:22"));
        let unknown = targets.get::<Pg>("web").unwrap_err();
        assert_eq!(unknown.known, ["app", "reports"], "an SSH connection is not a PostgreSQL one");
        assert_eq!(targets.get::<Ssh>("nope").unwrap_err().known, ["web"]);
        assert_eq!((targets.count::<Pg>(), targets.count::<Ssh>()), (2, 1));
    }
}
