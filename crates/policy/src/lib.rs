//! Policy: what witness allows, refuses, or holds for a human's approval, decided from plain data.
//!
//! `classify` turns SQL text into statement classes and the tables they touch (sqlparser,
//! PostgreSQL dialect; `classify_mysql` the same for MySQL text); `decide` applies the configured rules to a request, `decide_ssh` to an
//! SSH operation and its command line (`shell`), `decide_http` to an HTTP method and path,
//! `decide_kube` to a Kubernetes verb on a resource in a namespace. Which result values are hidden is masking's
//! business (the witness-mask crate). Everything here is pure and synchronous: no I/O, no clocks, no async; it can be tested
//! with data alone and never fails on I/O. Enforcement (refusing, waiting for approval) belongs to the gateway.

#![forbid(unsafe_code)]

mod classify;
mod http;
mod kube;
mod rules;
mod shell;

pub use classify::{classify, classify_mysql, runs_dynamic_sql, Copies, SqlClass, Statement, UnknownSqlClass};
pub use http::{decide_http, HttpRoute, InvalidHttpRoute};
pub use kube::{decide_kube, InvalidKubeRoute, KubeRoute};
pub use rules::{decide, decide_ssh, decide_statements, needs_statements, Action, Caller, Decision, Policy, Rule, UnknownAction};
pub use shell::split_commands;
pub use witness_core::{Glob, SshOperation, UnknownSshOperation};
