//! Recordings at rest, end to end through `witness serve` and psql: with `[ledger.encryption]`
//! no file of the data dir holds a statement in clear, `sessions show` opens them, a
//! `[[retention]]` rule's sweep and `witness purge` shred sessions (recorded first, then the key
//! goes), a legal hold stops a purge, the ledger verifies after all of it, and the master key
//! rotates while witness is stopped.

mod pg;

use std::os::unix::fs::PermissionsExt;

use pg::{assert_nowhere_in, psql, Gateway};
use witness_testkit::{Postgres, SCRAM_PASSWORD};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_ok(gw: &Gateway, args: &[&str]) -> String {
    let out = gw.witness(args);
    assert!(out.status.success(), "witness {args:?} failed: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn shown(gw: &Gateway, session: &str) -> serde_json::Value {
    serde_json::from_str(&run_ok(gw, &["sessions", "show", session, "--json"])).unwrap()
}

/// The events of a `sessions show --json` whose statement text holds `marker`.
fn statements_with(shown: &serde_json::Value, marker: &str) -> usize {
    shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "pg.query" && e["payload_text"].as_str().unwrap_or("").contains(marker))
        .count()
}

fn shredded_by(trail: &[serde_json::Value], session: &str) -> Option<serde_json::Value> {
    trail
        .iter()
        .find(|e| e["kind"] == "retention.shredded" && e["attrs"]["sessions"].as_array().unwrap().iter().any(|s| s == session))
        .cloned()
}

#[test]
fn sealed_recordings_are_shredded_by_retention_and_purge_and_still_verify() {
    let pg = Postgres::start();
    let keys = tempfile::tempdir().unwrap();
    let master = keys.path().join("master.key");
    let extra = format!(
        "[ledger]\nretention_sweep = \"100ms\"\n[ledger.encryption]\nmaster_key_file = \"{}\"\n[[retention]]\ngroup = \"contract*\"\nkeep = \"0s\"\n[[retention]]\nconnection = \"app-trust\"\nkeep = \"0s\"\n",
        master.display()
    );
    let gw = Gateway::start(&pg, &extra);
    assert_eq!(std::fs::metadata(&master).unwrap().permissions().mode() & 0o777, 0o600, "a new master key is witness's alone");
    let secret = gw.token("claude", &["--groups", "ai-agents"]);
    let (ok, _, err) = psql(&gw.conninfo("app", "claude", &secret), &["-c", "select 'KEPT-APP-MARKER' as note"]);
    assert!(ok, "{err}");
    let (ok, _, err) = psql(&gw.conninfo("app-trust", "claude", &secret), &["-c", "select 'EXPIRED-TRUST-MARKER' as note"]);
    assert!(ok, "{err}");
    let contractor = gw.token("vendor", &["--groups", "ai-agents,contractors"]);
    let (ok, _, err) = psql(&gw.conninfo("app", "vendor", &contractor), &["-c", "select 'CONTRACTOR-MARKER' as note"]);
    assert!(ok, "{err}");
    let sessions = gw.ended_sessions(3);
    let id_of = |connection: &str, identity: &str| {
        let session = sessions.iter().find(|s| s["connection"] == connection && s["identity"] == identity).unwrap();
        session["id"].as_str().unwrap().to_string()
    };
    let (kept, expired, contracted) = (id_of("app", "claude"), id_of("app-trust", "claude"), id_of("app", "vendor"));

    // The retention rule of app-trust shreds its session at the next sweep, recorded first.
    let trail = gw.audit_when(|trail| shredded_by(trail, &expired).is_some());
    let record = shredded_by(&trail, &expired).unwrap();
    assert_eq!(record["attrs"]["why"], "retention");
    assert!(record["attrs"]["rule"].as_str().unwrap().contains("connection app-trust"), "{record}");
    assert!(shredded_by(&trail, &kept).is_none(), "no rule matches app: kept");
    // The group rule matches the groups recorded when the contractor's session opened.
    let trail = gw.audit_when(|trail| shredded_by(trail, &contracted).is_some());
    let record = shredded_by(&trail, &contracted).unwrap();
    assert!(record["attrs"]["rule"].as_str().unwrap().contains("group contract*"), "{record}");
    let gone = shown(&gw, &contracted);
    assert_eq!(gone["groups"], serde_json::json!(["ai-agents", "contractors"]), "{gone}");
    assert_eq!(statements_with(&gone, "CONTRACTOR-MARKER"), 0);
    let gone = shown(&gw, &expired);
    assert_eq!(statements_with(&gone, "EXPIRED-TRUST-MARKER"), 0);
    let sealed: Vec<_> = gone["events"].as_array().unwrap().iter().filter(|e| e.get("sealed").is_some()).collect();
    assert!(!sealed.is_empty() && sealed.iter().all(|e| e["sealed"] == "shredded" && e["payload_purged"] == true), "{gone}");
    assert_eq!(gone["identity"], "claude", "the metadata stays: {gone}");

    // The kept session opens; neither statement is anywhere in the data dir in clear.
    let open = shown(&gw, &kept);
    assert!(statements_with(&open, "KEPT-APP-MARKER") > 0, "{open}");
    assert!(open["events"].as_array().unwrap().iter().any(|e| e["sealed"] == "opened"));
    assert_nowhere_in(&gw.data_dir(), "KEPT-APP-MARKER");
    assert_nowhere_in(&gw.data_dir(), "EXPIRED-TRUST-MARKER");
    assert_nowhere_in(&gw.data_dir(), "CONTRACTOR-MARKER");

    // A legal hold stops a purge; released, the purge shreds at once and says who and why.
    run_ok(&gw, &["hold", &kept, "--reason", "LEGAL-7"]);
    let refused = gw.witness(&["purge", &kept, "--reason", "GDPR-42"]);
    assert!(!refused.status.success() && text(&refused.stderr).contains("legal hold"), "{}", text(&refused.stderr));
    run_ok(&gw, &["hold", &kept, "--release", "--reason", "case closed"]);
    run_ok(&gw, &["purge", &kept, "--reason", "GDPR-42"]);
    let purged = shown(&gw, &kept);
    assert_eq!(statements_with(&purged, "KEPT-APP-MARKER"), 0, "{purged}");
    let trail = gw.audit_when(|trail| shredded_by(trail, &kept).is_some() && trail.iter().any(|e| e["kind"] == "retention.released"));
    let record = shredded_by(&trail, &kept).unwrap();
    assert_eq!((record["attrs"]["why"].as_str(), record["attrs"]["reason"].as_str()), (Some("purge"), Some("GDPR-42")), "{record}");
    let held = trail.iter().find(|e| e["kind"] == "retention.held").expect("the hold is audited");
    assert_eq!(held["attrs"]["session"], kept.as_str());
    let again = gw.witness(&["purge", &kept, "--reason", "twice"]);
    assert!(!again.status.success() && text(&again.stderr).contains("already shredded"), "{}", text(&again.stderr));

    // A session recorded now survives a master key rotation made while witness is stopped.
    let (ok, _, err) = psql(&gw.conninfo("app", "claude", &secret), &["-c", "select 'ROTATED-MARKER' as note"]);
    assert!(ok, "{err}");
    let earlier = [&kept, &expired, &contracted];
    let after = gw.ended_sessions(4).into_iter().find(|s| !earlier.iter().any(|id| s["id"] == id.as_str())).unwrap();
    let after = after["id"].as_str().unwrap().to_string();
    let old_key = std::fs::read_to_string(&master).unwrap();
    let mut gw = gw;
    gw.stop_and_verify();
    let rotated = run_ok(&gw, &["keys", "rotate"]);
    assert!(rotated.contains("re-wrapped 1 data keys"), "{rotated}");
    assert_ne!(std::fs::read_to_string(&master).unwrap(), old_key, "the key file holds the new key");
    let gw = gw.restart(&[("WITNESS_TEST_PG_PASSWORD", SCRAM_PASSWORD)]);
    assert!(statements_with(&shown(&gw, &after), "ROTATED-MARKER") > 0);
    // The old key, put back, is refused rather than taken for the ledger's.
    std::fs::write(&master, old_key).unwrap();
    let refused = gw.witness(&["sessions", "show", &after]);
    assert!(
        !refused.status.success() && text(&refused.stderr).contains("is not the one this ledger's data keys are wrapped with"),
        "{}",
        text(&refused.stderr)
    );
}

fn age_key(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let identity = dir.join("auditor.key");
    let out = std::process::Command::new("age-keygen").arg("-o").arg(&identity).output().unwrap();
    assert!(out.status.success(), "age-keygen: {}", text(&out.stderr));
    let out = std::process::Command::new("age-keygen").arg("-y").arg(&identity).output().unwrap();
    (identity, text(&out.stdout).trim().to_string())
}

/// The binary alone, with no config or data dir: as on another machine.
fn elsewhere(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_witness"))
        .args(args)
        .current_dir(cwd)
        .env_remove("WITNESS_CONFIG")
        .env_remove("WITNESS_DATA_DIR")
        .output()
        .unwrap()
}

#[test]
fn a_bundle_verifies_anywhere_and_opens_only_with_its_recipients_identity() {
    let pg = Postgres::start();
    let keys = tempfile::tempdir().unwrap();
    let extra = format!("[ledger.encryption]\nmaster_key_file = \"{}\"\n", keys.path().join("master.key").display());
    let gw = Gateway::start(&pg, &extra);
    let secret = gw.token("claude", &["--groups", "ai-agents"]);
    for marker in ["BUNDLED-ONE-MARKER", "BUNDLED-TWO-MARKER"] {
        let (ok, _, err) = psql(&gw.conninfo("app", "claude", &secret), &["-c", &format!("select '{marker}' as note")]);
        assert!(ok, "{err}");
    }
    gw.ended_sessions(2);
    let (identity, recipient) = age_key(keys.path());
    let others = tempfile::tempdir().unwrap();
    let (other_identity, _) = age_key(others.path());
    let elsewhere_dir = tempfile::tempdir().unwrap();
    let bundle = elsewhere_dir.path().join("sessions.tar");
    // An export waits for a checkpoint that covers the sessions (one a second).
    pg::poll("a bundle", || {
        gw.witness(&["export", "--bundle", bundle.to_str().unwrap(), "--recipient", &recipient]).status.success().then_some(())
    });
    let bytes = std::fs::read(&bundle).unwrap();
    for marker in ["BUNDLED-ONE-MARKER", "BUNDLED-TWO-MARKER"] {
        assert!(!bytes.windows(marker.len()).any(|w| w == marker.as_bytes()), "{marker} in the bundle in clear");
    }
    let pubkey = std::fs::read_to_string(gw.data_dir().join("ledger/signing.pub")).unwrap().trim().to_string();
    drop(gw);

    let out = elsewhere(&["verify", "--bundle", "sessions.tar", "--pubkey", &pubkey], elsewhere_dir.path());
    assert!(out.status.success() && text(&out.stdout).contains("bundle intact: 2 sessions"), "{}{}", text(&out.stdout), text(&out.stderr));
    let unpinned = elsewhere(&["verify", "--bundle", "sessions.tar"], elsewhere_dir.path());
    assert!(!unpinned.status.success() && text(&unpinned.stderr).contains("--pubkey is required"), "a bundle's own key proves nothing");
    let out = elsewhere(
        &["open", "--bundle", "sessions.tar", "--identity", identity.to_str().unwrap(), "--pubkey", &pubkey, "--json"],
        elsewhere_dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let opened: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for marker in ["BUNDLED-ONE-MARKER", "BUNDLED-TWO-MARKER"] {
        assert_eq!(opened.as_array().unwrap().iter().map(|s| statements_with(s, marker)).sum::<usize>(), 1, "{marker}");
    }
    let out = elsewhere(
        &["open", "--bundle", "sessions.tar", "--identity", other_identity.to_str().unwrap(), "--pubkey", &pubkey],
        elsewhere_dir.path(),
    );
    assert!(!out.status.success() && text(&out.stderr).contains("does not open with the identities given"), "{}", text(&out.stderr));

    // The reference age opens a key entry: the bundle is age's format, not a look-alike.
    let listing = std::process::Command::new("tar").args(["-tf", "sessions.tar"]).current_dir(elsewhere_dir.path()).output().unwrap();
    let key_entry = text(&listing.stdout).lines().find(|l| l.starts_with("keys/")).unwrap().to_string();
    let extracted =
        std::process::Command::new("tar").args(["-xf", "sessions.tar", &key_entry]).current_dir(elsewhere_dir.path()).status().unwrap();
    assert!(extracted.success());
    let decrypted =
        std::process::Command::new("age").arg("-d").arg("-i").arg(&identity).arg(elsewhere_dir.path().join(&key_entry)).output().unwrap();
    assert!(decrypted.status.success(), "{}", text(&decrypted.stderr));
    assert_eq!((decrypted.stdout.len(), decrypted.stdout[0]), (33, 2), "an AES-256-GCM data key");

    // The manifest is signed by nothing: one claiming another identity does not verify.
    let at = bytes.windows(8).position(|w| w == b"\"claude\"").unwrap();
    let mut forged = bytes.clone();
    forged[at + 1..at + 7].copy_from_slice(b"mallet");
    std::fs::write(elsewhere_dir.path().join("forged.tar"), forged).unwrap();
    let out = elsewhere(&["verify", "--bundle", "forged.tar", "--pubkey", &pubkey], elsewhere_dir.path());
    assert!(text(&out.stdout).contains("is not what its records say"), "{}", text(&out.stdout));

    // One byte of a session's records changed: the bundle no longer verifies.
    let at = bytes.windows(6).position(|w| w == b"\"seq\":").unwrap() + 6;
    let mut tampered = bytes.clone();
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(elsewhere_dir.path().join("tampered.tar"), tampered).unwrap();
    let out = elsewhere(&["verify", "--bundle", "tampered.tar", "--pubkey", &pubkey], elsewhere_dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("BUNDLE DOES NOT VERIFY"), "{}", text(&out.stdout));
}
