//! Masking values: a whole column by a rule, or the parts a detector finds, in the rule's style.
//! Values nothing matches are left alone without allocating; the original of a masked value is
//! not kept anywhere.

use std::borrow::Cow;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{jsonpath, partial, scan, ColumnMask, Detector, MaskStyle, SessionMasks, ValueKind};

/// The two passes a value goes through: masks for the client (whose output the recording also
/// gets), then masks for the recording only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Client = 0,
    RecordingOnly = 1,
}

/// A value after masking.
#[derive(Debug, PartialEq, Eq)]
pub enum Masked {
    Unchanged,
    /// The value cannot be masked inside its type: it becomes NULL.
    Null,
    /// The masked value; a fixed marker (`[redacted]`) is not copied.
    Value(Cow<'static, [u8]>),
}

/// How many values each rule masked, per detector (or whole columns): what the recording says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaskCounts {
    /// (rule index, detector or None for a whole column, count); a handful of entries at most.
    entries: Vec<(u8, Option<Detector>, u64)>,
}

/// Hex digits of a keyed hash shown: 64 bits, enough to tell values apart in one recording.
const HASH_HEX_CHARS: usize = 16;

// === impl SessionMasks (values) ===

impl SessionMasks {
    /// Masks one result value of a column at one stage.
    pub fn cell(&self, stage: Stage, column: &ColumnMask, value: &[u8], counts: &mut MaskCounts) -> Masked {
        let kind = column.kind.unwrap_or(ValueKind::Other);
        if let Some(rule) = column.whole[stage as usize] {
            counts.add(rule, None);
            let style = self.rules[rule as usize].style;
            return match kind {
                ValueKind::Other | ValueKind::Opaque => Masked::Null,
                ValueKind::Text => Masked::Value(self.whole(style, value)),
                ValueKind::Json => Masked::Value(json_string(&self.whole(style, value)).into()),
            };
        }
        match kind {
            ValueKind::Opaque => Masked::Unchanged,
            ValueKind::Other => {
                // A number or date with a card number or address in its text cannot hold a
                // marker: the whole value goes.
                let mut found_any = false;
                scan(value, self.detectors(stage), &mut |found| {
                    found_any = true;
                    counts.add(self.rule_for(stage, found.detector), Some(found.detector));
                });
                if found_any {
                    Masked::Null
                } else {
                    Masked::Unchanged
                }
            }
            ValueKind::Text => match self.text(stage, value, counts) {
                Some(masked) => Masked::Value(masked.into()),
                None => Masked::Unchanged,
            },
            ValueKind::Json => match self.replace(stage, value, counts, true) {
                Some(masked) => Masked::Value(masked.into()),
                None => Masked::Unchanged,
            },
        }
    }

    /// Masks whole, as JSON strings in their rule's style, the values of a JSON document that the
    /// JSON paths of one stage's rules name (the first rule naming a value masks it); the rest of
    /// the document is kept byte for byte. None when no value is named. A document that is not
    /// JSON is masked whole: which of its values a path names cannot be told; so is one whose
    /// masked form would outgrow twice its size (a huge array of tiny values a path names all
    /// of), so that masking never takes much more memory than the document.
    pub fn json_paths(&self, stage: Stage, doc: &[u8], counts: &mut MaskCounts) -> Option<Vec<u8>> {
        if !self.has_json_paths(stage) {
            return None;
        }
        let mut paths = Vec::new();
        let mut rule_of_path = Vec::new();
        for (i, rule) in self.rules.iter().enumerate().filter(|(_, r)| r.stage() == stage) {
            for path in &rule.json_paths {
                paths.push(path);
                rule_of_path.push(i as u8);
            }
        }
        let bound = doc.len().saturating_mul(2).saturating_add(1024);
        // How many values each rule named, by rule index.
        let (mut out, mut copied, mut named) = (Vec::new(), 0, vec![0u64; self.rules.len()]);
        let walked = jsonpath::find(doc, &paths, &mut |span, path| {
            if out.len() > bound {
                return;
            }
            let rule = rule_of_path[path];
            named[rule as usize] += 1;
            out.extend_from_slice(&doc[copied..span.start]);
            let value = &doc[span.clone()];
            let text = jsonpath::string_text(value);
            let masked = self.whole(self.rules[rule as usize].style, text.as_ref().map_or(value, |t| t.as_bytes()));
            out.extend_from_slice(&json_string(&masked));
            copied = span.end;
        });
        if walked.is_err() || out.len() > bound {
            let rule = rule_of_path[0];
            counts.add(rule, None);
            return Some(json_string(&self.whole(self.rules[rule as usize].style, doc)));
        }
        if named.iter().all(|n| *n == 0) {
            return None;
        }
        for (rule, n) in named.into_iter().enumerate().filter(|(_, n)| *n > 0) {
            counts.add_many(rule as u8, None, n);
        }
        out.extend_from_slice(&doc[copied..]);
        Some(out)
    }

    /// Masks what the detectors of one stage find in a text (a notice, a COPY field, a
    /// parameter, a statement); None when nothing was found.
    pub fn text(&self, stage: Stage, text: &[u8], counts: &mut MaskCounts) -> Option<Vec<u8>> {
        self.replace(stage, text, counts, false)
    }

    /// Replaces what the detectors find. In JSON, a find outside a string (a bare number) is
    /// replaced by a JSON string, so the document stays valid.
    fn replace(&self, stage: Stage, text: &[u8], counts: &mut MaskCounts, json: bool) -> Option<Vec<u8>> {
        let set = self.detectors(stage);
        if set.is_empty() {
            return None;
        }
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        // Whether `walked` (a position up to which the text has been read) is inside a JSON string.
        let (mut walked, mut in_string, mut escaped) = (0, false, false);
        scan(text, set, &mut |found| {
            if json {
                for &b in &text[walked..found.start] {
                    match b {
                        _ if escaped => escaped = false,
                        b'\\' if in_string => escaped = true,
                        b'"' => in_string = !in_string,
                        _ => {}
                    }
                }
                walked = found.start;
            }
            let quoted = json && !in_string;
            let rule = self.rule_for(stage, found.detector);
            counts.add(rule, Some(found.detector));
            let out = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
            out.extend_from_slice(&text[copied..found.start]);
            let matched = &text[found.start..found.end];
            if quoted {
                out.push(b'"');
            }
            match self.rules[rule as usize].style {
                MaskStyle::Redact => {
                    out.push(b'[');
                    out.extend_from_slice(found.detector.name().as_bytes());
                    out.push(b']');
                }
                MaskStyle::Partial => out.extend_from_slice(partial(found.detector, &String::from_utf8_lossy(matched)).as_bytes()),
                MaskStyle::Hash => out.extend_from_slice(self.hash(matched).as_bytes()),
            }
            if quoted {
                out.push(b'"');
            }
            if json {
                // The span keeps quotes and escapes balanced (the detectors promise it): the state
                // after it is the state before it.
                walked = found.end;
            }
            copied = found.end;
        });
        let mut out = out?;
        out.extend_from_slice(&text[copied..]);
        Some(out)
    }

    /// Whether a stage has any detector to run.
    #[inline]
    pub fn detects(&self, stage: Stage) -> bool {
        !self.detectors(stage).is_empty()
    }

    fn rule_for(&self, stage: Stage, detector: Detector) -> u8 {
        let index = Detector::ALL.iter().position(|d| *d == detector).expect("every detector is in ALL");
        self.by_detector[stage as usize][index].expect("the scan only runs detectors some rule of the stage lists")
    }

    /// A whole value in a rule's style.
    fn whole(&self, style: MaskStyle, value: &[u8]) -> Cow<'static, [u8]> {
        Cow::Owned(match style {
            MaskStyle::Redact => return Cow::Borrowed(b"[redacted]"),
            MaskStyle::Hash => self.hash(value).into_bytes(),
            MaskStyle::Partial => {
                // A value that is exactly something a detector knows (an email in an email column)
                // gets that detector's partial form; anything else keeps its first character.
                let trimmed = value.trim_ascii();
                let mut exact = None;
                scan(trimmed, super::DetectorSet::all(), &mut |found| {
                    if found.start == 0 && found.end == trimmed.len() {
                        exact = Some(found.detector);
                    }
                });
                let text = String::from_utf8_lossy(trimmed);
                match exact {
                    Some(detector) => partial(detector, &text).into_bytes(),
                    None => {
                        let first: String = text.chars().take(if text.chars().count() > 4 { 1 } else { 0 }).collect();
                        format!("{first}***").into_bytes()
                    }
                }
            }
        })
    }

    fn hash(&self, value: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.hash_key).expect("HMAC takes keys of any length");
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        let mut text = String::with_capacity(5 + HASH_HEX_CHARS);
        text.push_str("hash:");
        for byte in &digest[..HASH_HEX_CHARS / 2] {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }
}

/// A JSON string holding `text` (a marker replacing a whole JSON value).
fn json_string(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    out.push(b'"');
    for &b in text {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
    out
}

// === impl MaskCounts ===

impl MaskCounts {
    fn add(&mut self, rule: u8, detector: Option<Detector>) {
        self.add_many(rule, detector, 1);
    }

    fn add_many(&mut self, rule: u8, detector: Option<Detector>, count: u64) {
        match self.entries.iter_mut().find(|(r, d, _)| *r == rule && *d == detector) {
            Some((_, _, n)) => *n += count,
            None => self.entries.push((rule, detector, count)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn total(&self) -> u64 {
        self.entries.iter().map(|(_, _, n)| n).sum()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// (rule name, detector name or "column", count) for each thing masked.
    pub fn entries<'a>(&'a self, masks: &'a SessionMasks) -> impl Iterator<Item = (&'a str, &'static str, u64)> + 'a {
        self.entries.iter().map(|(rule, detector, n)| (masks.rule_name(*rule), detector.map_or("column", Detector::name), *n))
    }
}
