//! The markdown block that ends each benchmark's report: what docs/BENCHMARKS.md shows for that
//! benchmark, so that refreshing the document is copy and paste. The bench crates share this file
//! (each includes it with `#[path]`, as they share no library crate); the human-readable report
//! stays above the block.
//!
//! It renders and describes; it measures nothing. The date comes from `date`, the machine from
//! /proc and /etc/os-release.

use std::process::Command;

/// The line that opens a block: when it was measured, with what command, on what machine.
pub fn measured(command: &str) -> String {
    let today = Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or_else(|| "(date unknown)".to_string(), |out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    format!("Measured {today} with `{command}` on {}.", machine())
}

/// The command as it was run: `VAR=value` for each of `vars` set in the environment, then
/// `program` (the script or cargo command the document tells readers to run).
pub fn command(vars: &[&str], program: &str) -> String {
    let set = vars.iter().filter_map(|var| std::env::var(var).ok().map(|value| format!("{var}={value}")));
    set.chain([program.to_string()]).collect::<Vec<_>>().join(" ")
}

/// A markdown table: the first column left-aligned (labels), the others right-aligned (figures).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    fn line<'a>(cells: impl IntoIterator<Item = &'a str>) -> String {
        format!("| {} |\n", cells.into_iter().collect::<Vec<_>>().join(" | "))
    }
    let alignment: Vec<&str> = (0..header.len()).map(|i| if i == 0 { "---" } else { "---:" }).collect();
    let mut text = line(header.iter().copied());
    text.push_str(&format!("|{}|\n", alignment.join("|")));
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str)));
    }
    text
}

/// A target's verdict from its checks: "met" if every check passed, "not met" if any failed,
/// "unknown" if some could not be made (a run failed or was left out).
pub fn verdict(checks: &[Option<bool>]) -> &'static str {
    if checks.contains(&Some(false)) {
        "not met"
    } else if checks.is_empty() || checks.contains(&None) {
        "unknown"
    } else {
        "met"
    }
}

/// "2 cores, 24 GiB, Debian GNU/Linux 12 (bookworm)": what a reader needs to compare figures.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or_else(|_| "? cores".to_string(), |n| format!("{n} cores"));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib = meminfo.lines().find_map(|line| line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok());
    let memory = memory_kib.map_or_else(|| "? GiB".to_string(), |kib| format!("{:.0} GiB", kib / (1 << 20) as f64));
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let system =
        os_release.lines().find_map(|line| line.strip_prefix("PRETTY_NAME=")).map_or("an unknown system", |name| name.trim_matches('"'));
    format!("{cores}, {memory}, {system}")
}

/// A whole number with thousands separators, as the document writes figures: 33157.4 -> "33,157".
// Not every benchmark writes figures this large.
#[allow(dead_code)]
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits_by_three() {
        let cases = [(0.0, "0"), (999.4, "999"), (1000.0, "1,000"), (33157.4, "33,157"), (1234567.0, "1,234,567")];
        for (value, expected) in cases {
            assert_eq!(super::thousands(value), expected, "{value}");
        }
    }

    #[test]
    fn a_table_has_a_header_an_alignment_row_and_its_rows() {
        let rows = vec![vec!["witness".to_string(), "0.83".to_string()], vec!["direct".to_string(), "1.00".to_string()]];
        let expected = "| route | ratio |\n|---|---:|\n| witness | 0.83 |\n| direct | 1.00 |\n";
        assert_eq!(super::table(&["route", "ratio"], &rows), expected);
    }

    #[test]
    fn one_failed_check_fails_the_target_and_a_missing_one_leaves_it_unknown() {
        let cases: [(&[Option<bool>], &str); 5] = [
            (&[Some(true), Some(true)], "met"),
            (&[Some(true), Some(false)], "not met"),
            (&[None, Some(false)], "not met"),
            (&[Some(true), None], "unknown"),
            (&[], "unknown"),
        ];
        for (checks, expected) in cases {
            assert_eq!(super::verdict(checks), expected, "{checks:?}");
        }
    }
}
