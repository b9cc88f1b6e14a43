//! Running witness as a service: the systemd unit in `packaging/` passes `systemd-analyze verify`
//! (run on a copy whose ExecStart is the binary under test) with no warning and keeps its
//! hardening options; LICENSE is the license Cargo.toml names; `--log-format json` (here through
//! WITNESS_LOG_FORMAT) writes every log line of a whole run as one JSON object.

mod pg;

use std::path::Path;
use std::process::Command;

use pg::Gateway;
use serde_json::Value;
use witness_testkit::free_port;

fn project_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_systemd_unit_verifies_and_keeps_its_hardening() {
    let unit = project_file("packaging/witness.service");
    for line in [
        "ExecStart=/usr/local/bin/witness serve --config /etc/witness/witness.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=witness",
        "StateDirectoryMode=0700",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "CapabilityBoundingSet=",
        "User=witness",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit should have {line:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("witness.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/witness", env!("CARGO_BIN_EXE_witness"))).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs (scripts/test installs systemd for it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {:?}\n{stderr}", out.status);

    // The same check fails on a unit it should fail on, so that a silent checker is noticed.
    std::fs::write(&copy, unit.replace("ProtectSystem=strict", "ProtectSystem=sometimes")).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty(), "a bad value is reported");
}

#[test]
fn the_license_file_is_the_license_cargo_names() {
    let manifest = project_file("Cargo.toml");
    assert!(manifest.lines().any(|l| l.trim() == "license = \"Apache-2.0\""), "Cargo.toml names Apache-2.0");
    let license = project_file("LICENSE");
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"), "LICENSE is the Apache License 2.0");
}

#[test]
fn json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!("data_dir = \"{}\"\n[listen]\napi = \"127.0.0.1:{port}\"\n", dir.path().join("data").display());
    let mut gw = Gateway::launch(dir, port, &config, &[("WITNESS_LOG_FORMAT", "json")]);
    gw.stop_and_verify();
    let log = gw.log();
    let lines: Vec<Value> =
        log.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON object ({e}): {line:?}\n{log}"))).collect();
    let message = |text: &str| lines.iter().find(|l| l["message"].as_str().is_some_and(|m| m.contains(text)));
    let running = message("witness is running").unwrap_or_else(|| panic!("no start line in {log}"));
    assert_eq!(running["level"], "INFO");
    assert!(running["timestamp"].is_string() && running["target"].is_string(), "{running}");
    assert!(message("ledger sealed").is_some(), "{log}");
}

#[test]
fn commands_in_a_directory_without_a_data_dir_say_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_witness"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("WITNESS_CONFIG")
            .env_remove("WITNESS_DATA_DIR")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // A token made here would land where no gateway reads it: refused, naming where and what to pass.
    let (code, err) = run(&["token", "create", "--identity", "claude"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("there is no data dir here") && err.contains("./witness-data") && err.contains("--config"), "{err}");
    assert!(!dir.path().join("witness-data").exists(), "nothing was created");
    let (code, err) = run(&["identity", "keys"]);
    assert!(code == Some(2) && err.contains("there is no data dir here"), "{err}");
    // Each cause of an error is said once.
    let (code, err) = run(&["sessions", "list"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.matches("no ledger here").count(), 1, "{err}");
    // With --data-dir the store is made where asked.
    let (code, err) = run(&["token", "create", "--identity", "claude", "--data-dir", "chosen"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(dir.path().join("chosen/identity/tokens.sqlite").exists());
}
