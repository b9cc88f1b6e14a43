//! Talking to people: logging setup and how times, sizes and payloads are shown.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Logs go to stderr; WITNESS_LOG (or RUST_LOG) sets the level, info by default.
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("WITNESS_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".to_string());
    let builder = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        // One JSON object a line, the event's fields flattened beside `message`.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_ansi(false).try_init(),
    };
}

/// Writes `text` and a newline to standard output. A reader that has gone (`witness sessions
/// show --json | head`) is an error for the caller to return, where `println!` would panic.
pub fn print_line(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Whether `error` is standard output's reader having gone: the output was cut where its reader
/// wanted, nothing failed, and witness ends quietly.
pub fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// An error with its causes, each said once: many errors already write their cause into their
/// own message, and repeating it (`…: no ledger here: no ledger here`) only hides what went wrong.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// An RFC 3339 time in UTC (offset `Z`) with milliseconds, from Unix nanoseconds: the one format of
/// times in every output, text and `--json`.
pub fn time(ns: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// `value` with its times written as [`time`] writes them, for `--json` outputs made from structs
/// that keep times as numbers: a number (or null) under a key ending in `_ns` (Unix nanoseconds)
/// or `_ms` (milliseconds) moves to the key without that ending, as RFC 3339 text (or null).
pub fn json_times(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(json_times).collect()),
        Value::Object(fields) => {
            let mut out = serde_json::Map::with_capacity(fields.len());
            for (key, value) in fields {
                let unit_ns: Option<i64> = if key.ends_with("_ns") {
                    Some(1)
                } else if key.ends_with("_ms") {
                    Some(1_000_000)
                } else {
                    None
                };
                match unit_ns {
                    Some(unit_ns) if matches!(value, Value::Number(_) | Value::Null) => {
                        let at = value.as_i64().map(|n| Value::String(time(n.saturating_mul(unit_ns))));
                        out.insert(key[..key.len() - 3].to_string(), at.unwrap_or(Value::Null));
                    }
                    _ => {
                        out.insert(key, json_times(value));
                    }
                }
            }
            Value::Object(out)
        }
        other => other,
    }
}

/// Parses --since: an RFC 3339 time, or a duration back from now ("2h", "30m").
pub fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(at.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0));
    }
    match humantime::parse_duration(text) {
        Ok(ago) => {
            let at = SystemTime::now().checked_sub(ago).unwrap_or(UNIX_EPOCH);
            Ok(at.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0))
        }
        Err(_) => Err(format!("{text:?} is neither a time like 2026-11-22T10:00:00Z nor a duration like 2h")),
    }
}

/// A byte count for people.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_and_durations() {
        assert_eq!(parse_since("1970-01-01T00:00:01Z").unwrap(), 1_000_000_000);
        let an_hour_ago = parse_since("1h").unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
        assert!((now - an_hour_ago - 3_600_000_000_000).abs() < 60_000_000_000);
        assert!(parse_since("yesterday-ish").is_err());
    }

    #[test]
    fn json_times_are_rfc3339_under_keys_without_their_unit() {
        let given = serde_json::json!([{ "id": "t1", "created_ns": 1_500_000_000i64, "revoked_ns": null, "expires_at_ms": 2_000, "n": 3 }]);
        let expected = serde_json::json!([{
            "id": "t1", "created": "1970-01-01T00:00:01.500Z", "revoked": null, "expires_at": "1970-01-01T00:00:02.000Z", "n": 3
        }]);
        assert_eq!(json_times(given), expected);
    }

    #[test]
    fn times_and_sizes_read_well() {
        assert_eq!(time(1_500_000_000), "1970-01-01T00:00:01.500Z");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no ledger here");
        let error =
            anyhow::Error::new(io).context("cannot find a ledger in ./data: no ledger here").context("cannot read the ledger index");
        assert_eq!(error_chain(&error), "cannot read the ledger index: cannot find a ledger in ./data: no ledger here");
        let error = anyhow::anyhow!("the port is taken").context("cannot listen on 127.0.0.1:5432");
        assert_eq!(error_chain(&error), "cannot listen on 127.0.0.1:5432: the port is taken");
    }
}
