//! Policy: what witness allows, refuses, or holds for a human's approval, decided from plain data.
//!
//! `classify` turns SQL text into statement classes and the tables they touch (sqlparser,
//! PostgreSQL dialect); `decide` applies the configured rules to a request, `decide_ssh` to an
//! SSH operation and its command line (`shell`); `mask` decides which
//! result values are hidden and rewrites them, with content detectors for secrets and personal
//! data. Everything here is pure and synchronous: no I/O, no clocks, no async; it can be tested
//! with data alone and never fails on I/O. Enforcement (refusing, waiting for approval) belongs to the gateway.

#![forbid(unsafe_code)]

mod classify;
mod copy;
mod glob;
pub mod mask;
mod rules;
mod shell;

pub use classify::{classify, Copies, SqlClass, Statement, UnknownSqlClass};
pub use copy::{copy_format, CopyFormat};
pub use glob::Glob;
pub use rules::{decide, decide_ssh, decide_statements, needs_statements, Action, Caller, Decision, Policy, Rule, UnknownAction};
pub use shell::split_commands;
pub use witness_core::{SshOperation, UnknownSshOperation};
