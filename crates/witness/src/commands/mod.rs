//! One module per verb of the command line.

pub mod approvals;
pub mod banner;
pub mod bench;
pub mod completions;
pub mod identity;
pub mod kubeconfig;
pub mod replay;
pub mod serve;
pub mod sessions;
pub mod token;
pub mod verify;
