//! Whether a condition holds for every row: a `WHERE` (or MERGE's `ON`) that does not look at
//! the row constrains nothing, so `DELETE … WHERE 1=1` deletes as much as a DELETE without one.
//!
//! Conditions are folded as far as literals go, with PostgreSQL's three-valued logic: an OR holds
//! when any branch does, an AND when every branch does, `NOT` of false is true, comparisons of
//! two literals are worked out (`'a'='a'`, `'yes'::boolean`, `true = 't'`), and so are `IS [NOT]
//! NULL`, `IS [NOT] TRUE`, `IN` lists and `BETWEEN`; a comparison with NULL is null. What is the
//! same for every row but not known here may be true, and counts as holding for every row: a
//! parameter (`WHERE $1`), and anything made of numbers (`2>1`, `1::bool`, and `1=2` too).
//!
//! A number's value is never looked at, so that a statement's classes do not depend on the
//! values of its numbers: the gateway caches classes by text with every number written as 0,
//! and `WHERE 1=2` must not lend its classes to `WHERE 1=1`.
//!
//! Deliberately not here: anything that reads a column, calls a function or holds a subquery is
//! "depends on the row", even when it is in fact true for every row (`id = id`, `id IS NOT NULL`,
//! `now() > '2000-01-01'`). This is a reading of what the text says, not a proof of what it
//! does: a rule that must stop mass deletes cannot rely on it alone. Folding stops at a depth
//! limit and answers "depends on the row"; nothing here allocates or recurses without bound.

use sqlparser::ast::{BinaryOperator, DataType, Expr, UnaryOperator, Value};

/// Whether `condition` may hold for every row: it does not depend on the row, and is not known
/// to be false or null.
pub(super) fn holds_for_every_row(condition: &Expr) -> bool {
    match fold(condition, 0) {
        Folded::Known(constant) => truth(constant) == Some(Some(true)),
        Folded::Unknown => true,
        Folded::Row => false,
    }
}

/// Whether `condition` holds for no row: it is known to be false or null whatever the row.
pub(super) fn holds_for_no_row(condition: &Expr) -> bool {
    match fold(condition, 0) {
        Folded::Known(constant) => matches!(truth(constant), Some(Some(false) | None)),
        Folded::Unknown | Folded::Row => false,
    }
}

/// How deep folding goes into an expression before it answers "depends on the row".
/// sqlparser's own recursion limit keeps parentheses and prefixes shallower than this; only
/// long chains of binary operators (`1+1+…`) come deeper.
const MAX_DEPTH: usize = 64;

/// What an expression is, whatever the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Folded<'a> {
    /// A value known from the text alone.
    Known(Constant<'a>),
    /// The same for every row but not known here: a parameter, a number, what is made of them.
    Unknown,
    /// May differ from row to row (a column, a function, a subquery), or too deep to tell.
    Row,
}

/// A literal's value. A quoted string is PostgreSQL's untyped literal: it takes the type of
/// what it is compared with (`'t' = true`, `'t' AND x`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Constant<'a> {
    Bool(bool),
    Null,
    Text(&'a str),
}

fn fold(expr: &Expr, depth: usize) -> Folded<'_> {
    use Folded::*;
    if depth > MAX_DEPTH {
        return Row;
    }
    let depth = depth + 1;
    match expr {
        Expr::Value(value) => literal(&value.value),
        Expr::Nested(inner) => fold(inner, depth),
        Expr::UnaryOp { op: UnaryOperator::Not, expr } => not(fold(expr, depth)),
        Expr::UnaryOp { expr, .. } => either_unknown(fold(expr, depth), Unknown),
        Expr::BinaryOp { left, op, right } => binary(fold(left, depth), op, fold(right, depth)),
        Expr::IsTrue(inner) => is(fold(inner, depth), |t| t == Some(true)),
        Expr::IsNotTrue(inner) => is(fold(inner, depth), |t| t != Some(true)),
        Expr::IsFalse(inner) => is(fold(inner, depth), |t| t == Some(false)),
        Expr::IsNotFalse(inner) => is(fold(inner, depth), |t| t != Some(false)),
        Expr::IsUnknown(inner) => is(fold(inner, depth), |t| t.is_none()),
        Expr::IsNotUnknown(inner) => is(fold(inner, depth), |t| t.is_some()),
        Expr::IsNull(inner) => is_null(fold(inner, depth), true),
        Expr::IsNotNull(inner) => is_null(fold(inner, depth), false),
        Expr::IsDistinctFrom(a, b) => not(not_distinct(fold(a, depth), fold(b, depth))),
        Expr::IsNotDistinctFrom(a, b) => not_distinct(fold(a, depth), fold(b, depth)),
        Expr::Cast { expr, data_type, .. } => cast(fold(expr, depth), data_type),
        Expr::TypedString(typed) => match &typed.value.value {
            Value::SingleQuotedString(text) => cast(Known(Constant::Text(text)), &typed.data_type),
            _ => Unknown,
        },
        Expr::InList { expr, list, negated } => {
            let needle = fold(expr, depth);
            // `x IN (a, b)` is `x = a OR x = b`.
            let found = list
                .iter()
                .fold(Known(Constant::Bool(false)), |found, item| or(found, compare(needle, &BinaryOperator::Eq, fold(item, depth))));
            if *negated {
                not(found)
            } else {
                found
            }
        }
        Expr::Between { expr, negated, low, high } => {
            let value = fold(expr, depth);
            let within =
                and(compare(value, &BinaryOperator::GtEq, fold(low, depth)), compare(value, &BinaryOperator::LtEq, fold(high, depth)));
            if *negated {
                not(within)
            } else {
                within
            }
        }
        _ => Row,
    }
}

fn literal(value: &Value) -> Folded<'_> {
    use Folded::*;
    match value {
        Value::Boolean(b) => Known(Constant::Bool(*b)),
        Value::Null => Known(Constant::Null),
        // A number's value is not used (see above).
        Value::Number(..) => Unknown,
        Value::SingleQuotedString(text)
        | Value::EscapedStringLiteral(text)
        | Value::UnicodeStringLiteral(text)
        | Value::NationalStringLiteral(text) => Known(Constant::Text(text)),
        Value::DollarQuotedString(dollar) => Known(Constant::Text(&dollar.value)),
        _ => Unknown,
    }
}

/// A constant as a truth value: `Some(Some(b))`, `Some(None)` for null, `None` when it is no
/// boolean (PostgreSQL would refuse it as a condition).
fn truth(constant: Constant<'_>) -> Option<Option<bool>> {
    match constant {
        Constant::Bool(b) => Some(Some(b)),
        Constant::Null => Some(None),
        Constant::Text(text) => parse_bool(text).map(Some),
    }
}

/// PostgreSQL's reading of text as a boolean: `t`, `true`, `y`, `yes`, `on`, `1` and their
/// opposites, any case, surrounding white space ignored, and a word by any unambiguous prefix.
fn parse_bool(text: &str) -> Option<bool> {
    let word = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let prefix_of = |full: &str| !word.is_empty() && full.get(..word.len()).is_some_and(|p| p.eq_ignore_ascii_case(word));
    match () {
        _ if prefix_of("true") || prefix_of("yes") || word.eq_ignore_ascii_case("on") || word == "1" => Some(true),
        _ if prefix_of("false") || prefix_of("no") || (word.len() >= 2 && prefix_of("off")) || word == "0" => Some(false),
        _ => None,
    }
}

/// The truth of a folded value, or what keeps it from being known.
fn truth_of(folded: Folded<'_>) -> Result<Option<bool>, Folded<'_>> {
    match folded {
        Folded::Known(constant) => truth(constant).ok_or(Folded::Unknown),
        other => Err(other),
    }
}

fn boolean(truth: Option<bool>) -> Folded<'static> {
    Folded::Known(truth.map_or(Constant::Null, Constant::Bool))
}

fn not(folded: Folded<'_>) -> Folded<'_> {
    match truth_of(folded) {
        Ok(t) => boolean(t.map(|b| !b)),
        Err(other) => other,
    }
}

/// AND: false if either side is, whatever the other; what depends on the row is not undone by
/// what is merely unknown.
fn and<'a>(left: Folded<'a>, right: Folded<'a>) -> Folded<'a> {
    connective(left, right, false, [Folded::Row, Folded::Unknown])
}

/// OR: true if either side is, whatever the other. A side the same for every row but unknown
/// may be true, and then the OR holds for every row however the other side depends on it.
fn or<'a>(left: Folded<'a>, right: Folded<'a>) -> Folded<'a> {
    connective(left, right, true, [Folded::Unknown, Folded::Row])
}

/// AND or OR: `decisive` on either side decides; two other known sides give the other value,
/// or null if either is null; otherwise the first of `undecided` that either side is, else the
/// second.
fn connective<'a>(left: Folded<'a>, right: Folded<'a>, decisive: bool, undecided: [Folded<'a>; 2]) -> Folded<'a> {
    let (left, right) = (truth_of(left), truth_of(right));
    if left == Ok(Some(decisive)) || right == Ok(Some(decisive)) {
        return boolean(Some(decisive));
    }
    match (left, right) {
        (Ok(a), Ok(b)) => boolean(a.and(b).map(|_| !decisive)),
        _ if left == Err(undecided[0]) || right == Err(undecided[0]) => undecided[0],
        _ => undecided[1],
    }
}

fn binary<'a>(left: Folded<'a>, op: &BinaryOperator, right: Folded<'a>) -> Folded<'a> {
    match op {
        BinaryOperator::And => and(left, right),
        BinaryOperator::Or => or(left, right),
        BinaryOperator::Eq
        | BinaryOperator::NotEq
        | BinaryOperator::Lt
        | BinaryOperator::LtEq
        | BinaryOperator::Gt
        | BinaryOperator::GtEq => compare(left, op, right),
        _ => either_unknown(left, right),
    }
}

/// What an operation not worked out here is: the row's business if either side is.
fn either_unknown<'a>(left: Folded<'a>, right: Folded<'a>) -> Folded<'a> {
    if left == Folded::Row || right == Folded::Row {
        Folded::Row
    } else {
        Folded::Unknown
    }
}

/// A comparison: null with a null on either side, whatever the other; worked out for two
/// values known here. Text is compared only for equality of identical strings (which every
/// collation agrees on); everything else stays unknown.
fn compare<'a>(left: Folded<'a>, op: &BinaryOperator, right: Folded<'a>) -> Folded<'a> {
    use std::cmp::Ordering;
    if left == Folded::Known(Constant::Null) || right == Folded::Known(Constant::Null) {
        return boolean(None);
    }
    let (Folded::Known(a), Folded::Known(b)) = (left, right) else {
        return either_unknown(left, right);
    };
    let ordering = match (a, b) {
        (Constant::Bool(x), Constant::Bool(y)) => Some(x.cmp(&y)),
        (Constant::Bool(x), Constant::Text(t)) => parse_bool(t).map(|y| x.cmp(&y)),
        (Constant::Text(t), Constant::Bool(y)) => parse_bool(t).map(|x| x.cmp(&y)),
        (Constant::Text(x), Constant::Text(y)) if x == y => Some(Ordering::Equal),
        _ => None,
    };
    let Some(ordering) = ordering else { return Folded::Unknown };
    let holds = match op {
        BinaryOperator::Eq => ordering.is_eq(),
        BinaryOperator::NotEq => ordering.is_ne(),
        BinaryOperator::Lt => ordering.is_lt(),
        BinaryOperator::LtEq => ordering.is_le(),
        BinaryOperator::Gt => ordering.is_gt(),
        BinaryOperator::GtEq => ordering.is_ge(),
        _ => return Folded::Unknown,
    };
    boolean(Some(holds))
}

/// `IS NOT DISTINCT FROM`: equality in which two nulls are equal and a null equals nothing else.
fn not_distinct<'a>(left: Folded<'a>, right: Folded<'a>) -> Folded<'a> {
    match (left, right) {
        (Folded::Known(Constant::Null), Folded::Known(Constant::Null)) => boolean(Some(true)),
        (Folded::Known(Constant::Null), Folded::Known(_)) | (Folded::Known(_), Folded::Known(Constant::Null)) => boolean(Some(false)),
        _ => compare(left, &BinaryOperator::Eq, right),
    }
}

/// `IS [NOT] TRUE`, `IS [NOT] FALSE`, `IS [NOT] UNKNOWN`: never null.
fn is(folded: Folded<'_>, test: impl Fn(Option<bool>) -> bool) -> Folded<'_> {
    match truth_of(folded) {
        Ok(t) => boolean(Some(test(t))),
        Err(other) => other,
    }
}

fn is_null(folded: Folded<'_>, null: bool) -> Folded<'_> {
    match folded {
        Folded::Known(constant) => boolean(Some((constant == Constant::Null) == null)),
        other => other,
    }
}

/// A cast of a known value to a boolean; other casts are not worked out.
fn cast<'a>(folded: Folded<'a>, data_type: &DataType) -> Folded<'a> {
    match (folded, data_type) {
        (Folded::Known(Constant::Null), _) => folded,
        (Folded::Known(Constant::Bool(_)), DataType::Bool | DataType::Boolean) => folded,
        (Folded::Known(Constant::Text(text)), DataType::Bool | DataType::Boolean) => {
            parse_bool(text).map_or(Folded::Unknown, |b| boolean(Some(b)))
        }
        (Folded::Row, _) => Folded::Row,
        _ => Folded::Unknown,
    }
}
