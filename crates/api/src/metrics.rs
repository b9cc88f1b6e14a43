//! `/metrics` in the Prometheus text format (version 0.0.4), and the probes `/healthz` and
//! `/readyz`. They hold counts and states only, labelled by protocol and by the connection names
//! of the config (never an identity or a statement), so they need no login, as scrapers and
//! supervisors expect.

use std::fmt::Write;

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;

use crate::{Backend, Metrics, State};

pub(crate) async fn metrics<B: Backend>(axum::extract::State(api): State<B>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&api.backend.metrics()))
}

pub(crate) fn render(m: &Metrics) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        samples(&mut out);
    };
    family("witness_live_sessions", "gauge", "Client sessions open now, by protocol.", &mut |out| {
        for (protocol, n) in &m.live_sessions {
            let _ = writeln!(out, "witness_live_sessions{{protocol=\"{}\"}} {n}", escape(protocol));
        }
    });
    family(
        "witness_requests_total",
        "counter",
        "Requests decided by policy (statements, commands, operations), by protocol and decision.",
        &mut |out| {
            for (protocol, decision, n) in &m.decisions {
                let _ = writeln!(out, "witness_requests_total{{protocol=\"{}\",decision=\"{}\"}} {n}", escape(protocol), escape(decision));
            }
        },
    );
    family(
        "witness_connection_requests_total",
        "counter",
        "Requests decided by policy, by configured connection and decision.",
        &mut |out| {
            for c in &m.connections {
                for (decision, n) in [("allow", c.allowed), ("deny", c.denied), ("hold", c.held)] {
                    let _ = writeln!(
                        out,
                        "witness_connection_requests_total{{connection=\"{}\",decision=\"{decision}\"}} {n}",
                        escape(&c.connection)
                    );
                }
            }
        },
    );
    family(
        "witness_target_failures_total",
        "counter",
        "Sessions that did not start because the connection's target could not be reached or refused witness's login.",
        &mut |out| {
            for c in &m.connections {
                let _ = writeln!(out, "witness_target_failures_total{{connection=\"{}\"}} {}", escape(&c.connection), c.target_failures);
            }
        },
    );
    family("witness_approvals_waiting", "gauge", "Requests waiting for a person's approval.", &mut |out| {
        let _ = writeln!(out, "witness_approvals_waiting {}", m.approvals_waiting);
    });
    family("witness_ledger_append_seconds", "histogram", "Time from handing a record to the ledger until it is durable.", &mut |out| {
        let mut count = 0;
        for (bound, n) in &m.append_latency_buckets {
            let le = if bound.is_infinite() { "+Inf".to_string() } else { bound.to_string() };
            let _ = writeln!(out, "witness_ledger_append_seconds_bucket{{le=\"{le}\"}} {n}");
            count = *n;
        }
        let _ = writeln!(out, "witness_ledger_append_seconds_sum {}", m.append_latency_sum_seconds);
        let _ = writeln!(out, "witness_ledger_append_seconds_count {count}");
    });
    family("witness_ledger_events_total", "counter", "Events recorded in the ledger.", &mut |out| {
        let _ = writeln!(out, "witness_ledger_events_total {}", m.events_recorded);
    });
    family("witness_ledger_bytes_total", "counter", "Bytes of recorded events, payloads included.", &mut |out| {
        let _ = writeln!(out, "witness_ledger_bytes_total {}", m.bytes_recorded);
    });
    family(
        "witness_ledger_unsealed_seconds",
        "gauge",
        "How long the oldest record not yet under a signed checkpoint has waited; 0 when every record is.",
        &mut |out| {
            let _ = writeln!(out, "witness_ledger_unsealed_seconds {}", m.ledger_unsealed_seconds);
        },
    );
    family(
        "witness_auth_failures_total",
        "counter",
        "Logins refused, by protocol: a wrong, unknown or revoked token, a refused JWT, an SSH key no identity has (each key an SSH client offers in vain counts).",
        &mut |out| {
            for (protocol, n) in &m.auth_failures {
                let _ = writeln!(out, "witness_auth_failures_total{{protocol=\"{}\"}} {n}", escape(protocol));
            }
        },
    );
    family("witness_ledger_write_failed", "gauge", "1 when a ledger write failed: every request is refused until restart.", &mut |out| {
        let _ = writeln!(out, "witness_ledger_write_failed {}", u8::from(m.ledger_write_failed));
    });
    out
}

/// `/healthz`: the process answers. Nothing else is checked, so that a supervisor restarts only a
/// witness that is gone or hung.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `/readyz`: 200 when witness can serve requests, 503 naming what keeps it from it. The client
/// listeners are bound before the API answers at all, so the ledger is what is left to check.
pub(crate) async fn readyz<B: Backend>(axum::extract::State(api): State<B>) -> impl IntoResponse {
    let readiness = api.backend.readiness();
    let status = if readiness.problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({ "ready": readiness.problems.is_empty(), "problems": readiness.problems })))
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectionMetrics;

    #[test]
    fn metrics_are_prometheus_text() {
        let text = render(&Metrics {
            live_sessions: vec![("postgres".into(), 2)],
            decisions: vec![("postgres".into(), "deny".into(), 3)],
            approvals_waiting: 1,
            append_latency_buckets: vec![(0.001, 5), (f64::INFINITY, 7)],
            append_latency_sum_seconds: 0.25,
            events_recorded: 7,
            bytes_recorded: 900,
            ledger_unsealed_seconds: 1.5,
            ledger_write_failed: true,
            auth_failures: vec![("ssh".into(), 4)],
            connections: vec![ConnectionMetrics { connection: "app".into(), allowed: 9, denied: 2, held: 1, target_failures: 5 }],
        });
        for line in [
            "# TYPE witness_live_sessions gauge",
            "witness_live_sessions{protocol=\"postgres\"} 2",
            "witness_requests_total{protocol=\"postgres\",decision=\"deny\"} 3",
            "witness_approvals_waiting 1",
            "witness_ledger_append_seconds_bucket{le=\"0.001\"} 5",
            "witness_ledger_append_seconds_bucket{le=\"+Inf\"} 7",
            "witness_ledger_append_seconds_sum 0.25",
            "witness_ledger_append_seconds_count 7",
            "witness_ledger_bytes_total 900",
            "witness_ledger_unsealed_seconds 1.5",
            "witness_ledger_write_failed 1",
            "witness_auth_failures_total{protocol=\"ssh\"} 4",
            "witness_connection_requests_total{connection=\"app\",decision=\"allow\"} 9",
            "witness_connection_requests_total{connection=\"app\",decision=\"hold\"} 1",
            "witness_target_failures_total{connection=\"app\"} 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
