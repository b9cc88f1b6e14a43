//! Masking rules applied to values: which columns a rule covers, each style's output, the two
//! stages (client, then recording only) and what the counts say.

use super::*;

fn rule(name: &str, columns: &[&str], detectors: &[&str], apply_to: ApplyTo, style: MaskStyle) -> MaskRule {
    MaskRule {
        name: name.into(),
        connections: vec![Glob::new("pg-*")],
        groups: vec!["ai-agents".into()],
        columns: columns.iter().map(|c| ColumnPattern::new(c).unwrap()).collect(),
        json_paths: Vec::new(),
        detectors: detectors.iter().fold(DetectorSet::EMPTY, |set, d| set.union(DetectorSet::from_name(d).unwrap())),
        apply_to,
        style,
    }
}

fn masks(rules: Vec<MaskRule>) -> Arc<SessionMasks> {
    let masking = Masking::new(rules, b"test key").unwrap();
    masking.for_session("pg-local", &["ai-agents".into()]).expect("the rules apply")
}

fn pii() -> Arc<SessionMasks> {
    masks(vec![rule(
        "pii",
        &["*.email", "users.ssn", "*password*"],
        &["email", "credit-card", "secrets"],
        ApplyTo::ClientAndRecording,
        MaskStyle::Redact,
    )])
}

fn column<'a>(output_name: &'a str, table: Option<&'a str>, real: &'a str, kind: ValueKind) -> ColumnInfo<'a> {
    ColumnInfo {
        output_name,
        source: table.map(|table| ColumnSource { schema: "public", table, column: real }),
        source_unknown: false,
        kind,
    }
}

/// Masks `value` in the column for the client; `None` stands for NULL.
fn check(masks: &SessionMasks, col: ColumnInfo<'_>, value: &str, expect: Option<&str>) {
    let mut counts = MaskCounts::default();
    let mask = masks.column(&col);
    let got = match masks.cell(Stage::Client, &mask, value.as_bytes(), &mut counts) {
        Masked::Unchanged => Some(value.to_string()),
        Masked::Null => None,
        Masked::Value(v) => Some(String::from_utf8(v.into_owned()).unwrap()),
    };
    assert_eq!(got.as_deref(), expect, "{col:?} {value:?}");
    assert_eq!(counts.is_empty(), got.as_deref() == Some(value), "counted iff masked: {col:?} {value:?}");
}

#[test]
fn columns_are_masked_by_their_real_name_and_detectors_look_inside_the_rest() {
    let m = pii();
    use ValueKind::*;
    check(&m, column("email", Some("customers"), "email", Text), "jane@example.com", Some("[redacted]"));
    // An alias does not hide the column it comes from.
    check(&m, column("contact", Some("customers"), "email", Text), "jane@example.com", Some("[redacted]"));
    check(&m, column("ssn", Some("users"), "ssn", Text), "123-45-6789", Some("[redacted]"));
    check(&m, column("ssn", Some("people"), "ssn", Text), "123-45-6789", Some("123-45-6789"));
    check(&m, column("password_hash", Some("accounts"), "password_hash", Text), "x", Some("[redacted]"));
    // A number in a masked column becomes NULL, never text a client would choke on.
    check(&m, column("ssn", Some("users"), "ssn", Other), "123456789", None);
    // Not a masked column: only what detectors find is replaced.
    check(&m, column("note", Some("tickets"), "note", Text), "mail jane@example.com now", Some("mail [email] now"));
    check(&m, column("note", Some("tickets"), "note", Text), "nothing to see", Some("nothing to see"));
    check(&m, column("card", Some("payments"), "card", Other), "4111111111111111", None);
    check(&m, column("amount", Some("payments"), "amount", Other), "4111", Some("4111"));
    check(&m, column("doc", Some("t"), "doc", Json), r#"{"email": "jane@example.com"}"#, Some(r#"{"email": "[email]"}"#));
    check(&m, column("email", Some("customers"), "email", Json), r#""jane@example.com""#, Some(r#""[redacted]""#));
    // A card number as a JSON number becomes a JSON string; one inside a string stays inside it.
    check(
        &m,
        column("doc", Some("t"), "doc", Json),
        r#"{"n": 4111111111111111, "s": "a "q" 4111111111111111"}"#,
        Some(r#"{"n": "[credit-card]", "s": "a "q" [credit-card]"}"#),
    );
    // Binary values of other types are not looked into.
    check(&m, column("blob", Some("t"), "blob", Opaque), "jane@example.com", Some("jane@example.com"));
    // A computed column: only patterns that can match any table apply, by its output name.
    check(&m, column("email", None, "", Text), "x", Some("[redacted]"));
    check(&m, column("ssn", None, "", Text), "x", Some("x"));
    // A table whose names could not be found out: table patterns are taken to match.
    let unknown = ColumnInfo { output_name: "ssn", source: None, source_unknown: true, kind: Text };
    check(&m, unknown, "x", Some("[redacted]"));
}

#[test]
fn rules_apply_by_connection_and_group() {
    let masking = Masking::new(vec![rule("pii", &["*.email"], &[], ApplyTo::ClientAndRecording, MaskStyle::Redact)], b"k").unwrap();
    assert!(masking.for_session("pg-local", &["ai-agents".into()]).is_some());
    assert!(masking.for_session("pg-local", &["dba".into()]).is_none());
    assert!(masking.for_session("mysql", &["ai-agents".into()]).is_none());
    let mut everyone = rule("all", &["*.email"], &[], ApplyTo::ClientAndRecording, MaskStyle::Redact);
    everyone.groups.clear();
    everyone.connections.clear();
    let masking = Masking::new(vec![everyone], b"k").unwrap();
    assert!(masking.for_session("anything", &[]).is_some());
}

#[test]
fn styles() {
    let text = |style: MaskStyle, col: &str, value: &str| {
        let m = masks(vec![rule("r", &["t.masked"], &["email", "credit-card"], ApplyTo::ClientAndRecording, style)]);
        let mask = m.column(&column(col, Some("t"), col, ValueKind::Text));
        match m.cell(Stage::Client, &mask, value.as_bytes(), &mut MaskCounts::default()) {
            Masked::Value(v) => String::from_utf8(v.into_owned()).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(text(MaskStyle::Redact, "note", "to jane@example.com"), "to [email]");
    assert_eq!(text(MaskStyle::Partial, "note", "to jane@example.com"), "to j***@example.com");
    assert_eq!(text(MaskStyle::Partial, "masked", "jane@example.com"), "j***@example.com");
    assert_eq!(text(MaskStyle::Partial, "masked", "Jonathan"), "J***");
    assert_eq!(text(MaskStyle::Partial, "masked", "abc"), "***");
    let hashed = text(MaskStyle::Hash, "note", "to jane@example.com");
    assert!(hashed.starts_with("to hash:") && hashed.len() == "to hash:".len() + 16, "{hashed}");
    // The same value hashes the same, other values differently.
    assert_eq!(hashed, text(MaskStyle::Hash, "note", "to jane@example.com"));
    assert_ne!(hashed, text(MaskStyle::Hash, "note", "to john@example.com"));
    assert_eq!(text(MaskStyle::Hash, "masked", "x"), text(MaskStyle::Hash, "masked", "x"));
    // HMAC-SHA-256 keyed with the configured key, its first 8 bytes in hex: hashes in recordings
    // and in what clients were sent stay comparable across witness versions.
    assert_eq!(hashed, "to hash:fc815d7668fdfbe9");
    assert_eq!(text(MaskStyle::Hash, "masked", "x"), "hash:96c25024a2aa0b0f");
}

#[test]
fn recording_only_rules_run_after_the_clients() {
    let m = masks(vec![
        rule("client", &[], &["email"], ApplyTo::ClientAndRecording, MaskStyle::Redact),
        rule("audit", &["*.notes"], &["credit-card"], ApplyTo::Recording, MaskStyle::Redact),
    ]);
    assert!(m.masks_client());
    let col = column("notes", Some("t"), "notes", ValueKind::Text);
    let mask = m.column(&col);
    let mut counts = MaskCounts::default();
    let value = b"jane@example.com paid with 4111 1111 1111 1111";
    let Masked::Value(for_client) = m.cell(Stage::Client, &mask, value, &mut counts) else { panic!() };
    assert_eq!(String::from_utf8_lossy(&for_client), "[email] paid with 4111 1111 1111 1111");
    let Masked::Value(for_recording) = m.cell(Stage::RecordingOnly, &mask, &for_client, &mut counts) else { panic!() };
    assert_eq!(&*for_recording, b"[redacted]");
    let entries: Vec<_> = counts.entries(&m).collect();
    assert_eq!(entries, vec![("client", "email", 1), ("audit", "column", 1)]);
}

#[test]
fn bad_rules_are_refused_with_the_fix() {
    assert!(ColumnPattern::new("a.b.c").is_ok());
    for bad in ["", "a..b", ".email", "a.b.c.d", "users."] {
        let e = ColumnPattern::new(bad).unwrap_err().to_string();
        assert!(e.contains("table.column"), "{bad}: {e}");
    }
    let empty = rule("empty", &[], &[], ApplyTo::ClientAndRecording, MaskStyle::Redact);
    assert!(Masking::new(vec![empty], b"k").unwrap_err().to_string().contains("masks nothing"));
}

#[test]
fn nothing_found_means_no_counts_and_no_copy() {
    let m = pii();
    let mut counts = MaskCounts::default();
    assert_eq!(m.text(Stage::Client, b"SELECT * FROM customers WHERE id = 42", &mut counts), None);
    assert!(counts.is_empty());
    assert!(!m.detects(Stage::RecordingOnly));
}

/// A column is left alone (callers skip `cell`) only where no stage could change a value of it:
/// an opaque kind that no rule masks whole, at either stage.
#[test]
fn only_columns_no_stage_can_change_are_left_alone() {
    use ValueKind::*;
    let m = masks(vec![
        rule("pii", &["users.ssn"], &["credit-card"], ApplyTo::ClientAndRecording, MaskStyle::Redact),
        rule("audit", &["users.pin"], &[], ApplyTo::Recording, MaskStyle::Redact),
    ]);
    let card = b"4111111111111111";
    for (name, kind, left_alone) in
        [("id", Opaque, true), ("ssn", Opaque, false), ("pin", Opaque, false), ("id", Other, false), ("id", Text, false)]
    {
        let mask = m.column(&column(name, Some("users"), name, kind));
        assert_eq!(mask.leaves_alone(), left_alone, "{name} {kind:?}");
        let changes = [Stage::Client, Stage::RecordingOnly]
            .into_iter()
            .any(|stage| !matches!(m.cell(stage, &mask, card, &mut MaskCounts::default()), Masked::Unchanged));
        assert_eq!(changes, !left_alone, "{name} {kind:?}: a stage changes a card number");
    }
}
