//! Inline masking: which values a client and the recording may see. Rules name columns (globs over
//! `table.column`, resolved from what the target says a result column really is, so an alias does
//! not hide it), values inside JSON bodies (JSON paths, the columns of an HTTP answer) and content
//! detectors (emails, card numbers, keys, …) that look inside any value.
//!
//! This module decides and rewrites values; it does not know the wire format. The protocol crate
//! tells it what each result column is ([`ColumnInfo`]) and hands it values one at a time; what
//! comes back keeps the value's type valid (a masked number becomes NULL, a masked JSON value a
//! JSON string). Nothing here allocates for a value nothing matches.

mod apply;
mod detect;
pub mod jsonpath;

use std::sync::Arc;

pub use apply::{MaskCounts, Masked, Stage};
pub use detect::{partial, scan, Detector, DetectorSet, Found};
pub use jsonpath::{BadJsonPath, JsonPath};

use witness_core::Glob;

/// Who gets the masked value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyTo {
    /// The client sees masked values, and so does the recording.
    ClientAndRecording,
    /// The client sees the real values; the recording keeps them masked.
    Recording,
}

/// A config value that names no apply-to or style.
#[derive(Debug, thiserror::Error)]
#[error("{what} {given:?} is unknown; use {choices}")]
pub struct UnknownMaskChoice {
    /// Which setting, as the config names it.
    pub what: &'static str,
    pub given: String,
    pub choices: &'static str,
}

impl std::str::FromStr for ApplyTo {
    type Err = UnknownMaskChoice;

    fn from_str(s: &str) -> Result<ApplyTo, UnknownMaskChoice> {
        match s {
            "client-and-recording" => Ok(ApplyTo::ClientAndRecording),
            "recording" => Ok(ApplyTo::Recording),
            other => {
                Err(UnknownMaskChoice { what: "apply_to", given: other.to_string(), choices: "\"client-and-recording\" or \"recording\"" })
            }
        }
    }
}

impl std::str::FromStr for MaskStyle {
    type Err = UnknownMaskChoice;

    fn from_str(s: &str) -> Result<MaskStyle, UnknownMaskChoice> {
        match s {
            "redact" => Ok(MaskStyle::Redact),
            "partial" => Ok(MaskStyle::Partial),
            "hash" => Ok(MaskStyle::Hash),
            other => Err(UnknownMaskChoice { what: "style", given: other.to_string(), choices: "\"redact\", \"partial\" or \"hash\"" }),
        }
    }
}

/// What a masked value looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskStyle {
    /// `[email]`, `[redacted]`: nothing of the value is left.
    Redact,
    /// `j***@example.com`, `**** **** **** 1111`: enough to recognise, not to use.
    Partial,
    /// `hash:5f0c…`: a keyed hash, the same for the same value, so rows can still be compared and
    /// joined without the value being known.
    Hash,
}

/// A column pattern: `table.column`, `schema.table.column`, or a bare `column` glob (any table).
#[derive(Clone, Debug)]
pub struct ColumnPattern {
    table: Option<Glob>,
    column: Glob,
}

/// One `[[masking]]` rule.
#[derive(Clone, Debug)]
pub struct MaskRule {
    pub name: String,
    /// Connection globs; empty: every connection.
    pub connections: Vec<Glob>,
    /// Groups the rule applies to (any of them); empty: everyone.
    pub groups: Vec<String>,
    pub columns: Vec<ColumnPattern>,
    /// Values of JSON bodies masked whole, as columns are.
    pub json_paths: Vec<JsonPath>,
    pub detectors: DetectorSet,
    pub apply_to: ApplyTo,
    pub style: MaskStyle,
}

/// Every masking rule, and the key keyed hashes are made with.
#[derive(Clone, Debug, Default)]
pub struct Masking {
    rules: Vec<Arc<MaskRule>>,
    hash_key: Arc<[u8]>,
}

/// The rules that apply to one session, ready to use on its results.
#[derive(Debug)]
pub struct SessionMasks {
    rules: Vec<Arc<MaskRule>>,
    hash_key: Arc<[u8]>,
    /// Per stage, which rule (index into `rules`) masks what each detector finds: the first that
    /// lists it. Masking for the client runs first; the recording-only stage runs on its output.
    by_detector: [[Option<u8>; Detector::ALL.len()]; 2],
    detectors: [DetectorSet; 2],
    has_columns: bool,
    /// Per stage, whether a rule names JSON paths.
    has_json_paths: [bool; 2],
}

/// What a result column is, as far as masking cares.
#[derive(Clone, Copy, Debug)]
pub struct ColumnInfo<'a> {
    /// The name the result gives the column (possibly an alias).
    pub output_name: &'a str,
    /// Where the column comes from, when it is a table's column: schema, table and column name.
    pub source: Option<ColumnSource<'a>>,
    /// The table is known to exist but its names could not be found out: every table pattern is
    /// taken to match (mask rather than leak).
    pub source_unknown: bool,
    pub kind: ValueKind,
}

#[derive(Clone, Copy, Debug)]
pub struct ColumnSource<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    pub column: &'a str,
}

/// How a value may be rewritten without a client choking on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Text of any sort: a masked part becomes a marker.
    Text,
    /// JSON text: masked parts are inside strings; a value masked whole becomes a JSON string.
    Json,
    /// Anything else (numbers, dates, binary values): a value with anything to mask becomes NULL.
    Other,
    /// Binary bytes of a non-text type: content detectors do not look inside; a column rule makes
    /// it NULL.
    Opaque,
}

/// How one result column is masked, per stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct ColumnMask {
    /// The rule (index) that masks the whole column, per stage.
    whole: [Option<u8>; 2],
    kind: Option<ValueKind>,
}

/// A masking rule that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MaskRuleError {
    #[error("{pattern:?} is not a column pattern; write table.column, schema.table.column or a column glob such as \"*password*\"")]
    BadColumn { pattern: String },
    #[error("{name:?} is not a detector; use one of {}", DetectorSet::names().join(", "))]
    UnknownDetector { name: String },
    #[error("{0}")]
    BadJsonPath(#[from] BadJsonPath),
    #[error("the rule masks nothing; give it columns, json_paths, detectors or more than one")]
    Empty,
    #[error("at most {max} masking rules are supported")]
    TooMany { max: usize },
}

// === impl ColumnPattern ===

impl ColumnPattern {
    pub fn new(pattern: &str) -> Result<ColumnPattern, MaskRuleError> {
        let bad = || MaskRuleError::BadColumn { pattern: pattern.to_string() };
        if pattern.is_empty() || pattern.split('.').any(str::is_empty) {
            return Err(bad());
        }
        match pattern.rsplit_once('.') {
            None => Ok(ColumnPattern { table: None, column: Glob::new(pattern) }),
            Some((table, column)) if table.matches('.').count() <= 1 => {
                Ok(ColumnPattern { table: Some(Glob::new(table)), column: Glob::new(column) })
            }
            Some(_) => Err(bad()),
        }
    }

    /// Whether the column matches: by the table's real column name or by the name in the result.
    fn matches(&self, column: &ColumnInfo<'_>) -> bool {
        let table_matches = |source: &ColumnSource<'_>| match &self.table {
            None => true,
            Some(table) => table.matches(source.table) || table.matches(&format!("{}.{}", source.schema, source.table)),
        };
        match (&column.source, &self.table) {
            (Some(source), _) => table_matches(source) && (self.column.matches(source.column) || self.column.matches(column.output_name)),
            // A computed column has no table; a table pattern matches it only if it could match
            // any table, as `*.email` does.
            (None, Some(table)) => (column.source_unknown || table.matches("")) && self.column.matches(column.output_name),
            (None, None) => self.column.matches(column.output_name),
        }
    }
}

// === impl MaskRule ===

impl MaskRule {
    /// Checks that the rule masks something.
    pub fn check(&self) -> Result<(), MaskRuleError> {
        if self.columns.is_empty() && self.json_paths.is_empty() && self.detectors.is_empty() {
            return Err(MaskRuleError::Empty);
        }
        Ok(())
    }

    fn applies(&self, connection: &str, groups: &[String]) -> bool {
        (self.connections.is_empty() || self.connections.iter().any(|g| g.matches(connection)))
            && (self.groups.is_empty() || self.groups.iter().any(|g| groups.contains(g)))
    }

    fn stage(&self) -> Stage {
        match self.apply_to {
            ApplyTo::ClientAndRecording => Stage::Client,
            ApplyTo::Recording => Stage::RecordingOnly,
        }
    }
}

// === impl Masking ===

impl Masking {
    /// Rules past this many are refused: a rule index is kept in a byte per column.
    pub const MAX_RULES: usize = 200;

    /// `hash_key` keys the `hash` style; keep it secret and stable, or hashes change.
    pub fn new(rules: Vec<MaskRule>, hash_key: &[u8]) -> Result<Masking, MaskRuleError> {
        if rules.len() > Self::MAX_RULES {
            return Err(MaskRuleError::TooMany { max: Self::MAX_RULES });
        }
        for rule in &rules {
            rule.check()?;
        }
        Ok(Masking { rules: rules.into_iter().map(Arc::new).collect(), hash_key: hash_key.into() })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn hash_key(&self) -> &[u8] {
        &self.hash_key
    }

    /// The rules for a session on `connection` by a caller in `groups`; None when none applies.
    pub fn for_session(&self, connection: &str, groups: &[String]) -> Option<Arc<SessionMasks>> {
        let rules: Vec<Arc<MaskRule>> = self.rules.iter().filter(|r| r.applies(connection, groups)).cloned().collect();
        if rules.is_empty() {
            return None;
        }
        let mut by_detector = [[None; Detector::ALL.len()]; 2];
        let mut detectors = [DetectorSet::EMPTY; 2];
        for (i, rule) in rules.iter().enumerate() {
            let stage = rule.stage() as usize;
            for (d, detector) in Detector::ALL.iter().enumerate() {
                if rule.detectors.contains(*detector) && by_detector[stage][d].is_none() {
                    by_detector[stage][d] = Some(i as u8);
                    detectors[stage] = detectors[stage].with(*detector);
                }
            }
        }
        let has_columns = rules.iter().any(|r| !r.columns.is_empty());
        let mut has_json_paths = [false; 2];
        for rule in rules.iter().filter(|r| !r.json_paths.is_empty()) {
            has_json_paths[rule.stage() as usize] = true;
        }
        Some(Arc::new(SessionMasks { rules, hash_key: self.hash_key.clone(), by_detector, detectors, has_columns, has_json_paths }))
    }
}

// === impl SessionMasks ===

impl SessionMasks {
    /// Whether any rule names columns (so results need to know where their columns come from).
    #[inline]
    pub fn has_column_rules(&self) -> bool {
        self.has_columns
    }

    /// Whether a rule masks columns for the client (not only in the recording).
    pub fn has_client_column_rules(&self) -> bool {
        self.rules.iter().any(|r| r.apply_to == ApplyTo::ClientAndRecording && !r.columns.is_empty())
    }

    /// The name of the first rule that masks columns for the client (to name in a refusal).
    pub fn client_column_rule_name(&self) -> &str {
        self.rules.iter().find(|r| r.apply_to == ApplyTo::ClientAndRecording && !r.columns.is_empty()).map_or("", |r| &r.name)
    }

    /// Whether a rule that masks columns for the client could match a column of this name in
    /// some table (its table part is not looked at: the column's table may be any).
    pub fn may_mask_client_column(&self, name: &str) -> bool {
        self.rules
            .iter()
            .filter(|r| r.apply_to == ApplyTo::ClientAndRecording)
            .flat_map(|r| r.columns.iter())
            .any(|pattern| pattern.column.matches(name))
    }

    /// Whether anything is masked for the client (else only the recording is).
    pub fn masks_client(&self) -> bool {
        self.rules.iter().any(|r| r.apply_to == ApplyTo::ClientAndRecording)
    }

    /// The rule names, by the index [`MaskCounts`] uses.
    pub fn rule_name(&self, index: u8) -> &str {
        &self.rules[index as usize].name
    }

    /// How a result column is masked.
    pub fn column(&self, column: &ColumnInfo<'_>) -> ColumnMask {
        let mut mask = ColumnMask { whole: [None; 2], kind: Some(column.kind) };
        if self.has_columns {
            for (i, rule) in self.rules.iter().enumerate() {
                let stage = rule.stage() as usize;
                if mask.whole[stage].is_none() && rule.columns.iter().any(|p| p.matches(column)) {
                    mask.whole[stage] = Some(i as u8);
                }
            }
        }
        mask
    }

    /// How a column that may be any column of any table is masked (a view reading a table witness
    /// cannot name): as if every column rule matched it.
    pub fn any_column(&self, kind: ValueKind) -> ColumnMask {
        let mut mask = ColumnMask { whole: [None; 2], kind: Some(kind) };
        for (i, rule) in self.rules.iter().enumerate() {
            let stage = rule.stage() as usize;
            if mask.whole[stage].is_none() && !rule.columns.is_empty() {
                mask.whole[stage] = Some(i as u8);
            }
        }
        mask
    }

    /// Whether a rule of this stage names JSON paths.
    #[inline]
    pub fn has_json_paths(&self, stage: Stage) -> bool {
        self.has_json_paths[stage as usize]
    }

    fn detectors(&self, stage: Stage) -> DetectorSet {
        self.detectors[stage as usize]
    }
}

impl ColumnMask {
    /// Whether the column is masked whole at some stage.
    #[inline]
    pub fn is_whole(&self) -> bool {
        self.whole.iter().any(Option::is_some)
    }

    /// Whether the column is masked whole at this stage.
    #[inline]
    pub fn is_whole_at(&self, stage: Stage) -> bool {
        self.whole[stage as usize].is_some()
    }

    #[inline]
    pub fn kind(&self) -> Option<ValueKind> {
        self.kind
    }

    /// Whether no stage can change the column's values: an opaque kind (detectors do not look
    /// inside) that no rule masks whole. Callers can then skip [`SessionMasks::cell`].
    #[inline]
    pub fn leaves_alone(&self) -> bool {
        self.kind == Some(ValueKind::Opaque) && !self.is_whole()
    }

    /// Masked whole at each stage where either is (a view's column by the columns it reads).
    pub fn or(self, other: ColumnMask) -> ColumnMask {
        ColumnMask { whole: [self.whole[0].or(other.whole[0]), self.whole[1].or(other.whole[1])], kind: self.kind.or(other.kind) }
    }

    /// The same column in another format (an execution asks for binary or text results).
    pub fn with_kind(mut self, kind: ValueKind) -> ColumnMask {
        self.kind = Some(kind);
        self
    }
}

#[cfg(test)]
mod tests;
