//! Fuzzes the JSON reader behind `json_paths` masking, which walks bodies upstreams send: any
//! bytes must not panic; a document serde_json reads must be read too, and once masked it must
//! still be JSON in which every value the paths name is the marker, whatever the keys' escapes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use witness_mask::{ApplyTo, DetectorSet, JsonPath, MaskCounts, MaskRule, MaskStyle, Masking, Stage};

fuzz_target!(|data: &[u8]| {
    let rule = MaskRule {
        name: "contacts".into(),
        connections: Vec::new(),
        groups: Vec::new(),
        columns: Vec::new(),
        json_paths: vec![JsonPath::new("$..e").unwrap(), JsonPath::new("$[*][1]").unwrap()],
        detectors: DetectorSet::EMPTY,
        apply_to: ApplyTo::ClientAndRecording,
        style: MaskStyle::Redact,
    };
    let masks = Masking::new(vec![rule], b"fuzz").unwrap().for_session("api", &[]).unwrap();
    let masked = masks.json_paths(Stage::Client, data, &mut MaskCounts::default());
    let Ok(original) = serde_json::from_slice::<Value>(data) else { return };
    let Some(masked) = masked else {
        assert!(!has_named(&original, 0), "a named value was left unmasked: {original}");
        return;
    };
    let masked: Value = serde_json::from_slice(&masked).expect("a masked JSON document is JSON");
    assert!(!has_named(&masked, 0), "a named value was left unmasked: {masked}");
});

/// Whether a value `$..e` or `$[*][1]` names is anything but the marker (`depth` of `value`).
fn has_named(value: &Value, depth: usize) -> bool {
    let unmasked = |v: &Value| v != &Value::String("[redacted]".into());
    match value {
        Value::Object(members) => members.iter().any(|(key, v)| (key == "e" && unmasked(v)) || (key != "e" && has_named(v, depth + 1))),
        Value::Array(items) => items.iter().enumerate().any(|(i, v)| (depth == 1 && i == 1 && unmasked(v)) || (!(depth == 1 && i == 1) && has_named(v, depth + 1))),
        _ => false,
    }
}
