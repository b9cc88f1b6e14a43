//! One module per verb of the command line.

pub mod approvals;
pub mod banner;
pub mod bench;
pub mod bundle;
pub mod completions;
pub mod identity;
pub mod keys;
pub mod kubeconfig;
pub mod migrate;
pub mod replay;
pub mod retention;
pub mod serve;
pub mod sessions;
pub mod token;
pub mod verify;
