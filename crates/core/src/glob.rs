//! Glob patterns for names (connections, identities, tasks, tables): `*` matches any run of
//! characters, `?` one character; everything else matches itself.

/// A compiled glob pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob { pattern: pattern.chars().collect() }
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        walk(&self.pattern, text, |p, t| p == t)
    }

    /// Whether `text` matches the whole pattern in any ASCII case: `/ADMIN/x` matches `/admin*`.
    pub fn matches_ignoring_ascii_case(&self, text: &str) -> bool {
        walk(&self.pattern, text, |p, t| p.eq_ignore_ascii_case(&t))
    }

    /// Whether `text` matches the part of the pattern after its last `separator`: `invoices`
    /// matches that of `billing.*`. False for a pattern without one.
    pub fn matches_last_part(&self, separator: char, text: &str) -> bool {
        self.pattern.iter().rposition(|&c| c == separator).is_some_and(|at| walk(&self.pattern[at + 1..], text, |p, t| p == t))
    }
}

/// Whether `text` matches all of `pattern`, characters compared by `same`. Linear in practice:
/// the classic two-pointer walk that backtracks only to the last `*`.
fn walk(pattern: &[char], text: &str, same: impl Fn(char, char) -> bool) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || same(c, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.pattern.iter().collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_in_any_case_or_by_their_last_part() {
        assert!(Glob::new("/admin*").matches_ignoring_ascii_case("/ADMIN/users"));
        assert!(!Glob::new("/admin*").matches_ignoring_ascii_case("/api"));
        assert!(Glob::new("billing.*").matches_last_part('.', "invoices"));
        assert!(Glob::new("*.ledger").matches_last_part('.', "ledger"));
        assert!(!Glob::new("*.ledger").matches_last_part('.', "ledgers"));
        assert!(!Glob::new("invoices").matches_last_part('.', "invoices"), "no separator, no last part");
    }

    #[test]
    fn globs_match_whole_names() {
        let check = |pattern: &str, text: &str, expect: bool| assert_eq!(Glob::new(pattern).matches(text), expect, "{pattern} ~ {text}");
        check("pg-*", "pg-local", true);
        check("pg-*", "pg-", true);
        check("pg-*", "mysql-local", false);
        check("*", "", true);
        check("", "", true);
        check("", "x", false);
        check("pg-?", "pg-1", true);
        check("pg-?", "pg-12", false);
        check("*.email", "users.email", true);
        check("*.email", "users.email2", false);
        check("*password*", "user_password_hash", true);
        check("a*b*c", "axxbyyc", true);
        check("a*b*c", "axxbyy", false);
        check("users", "users", true);
        check("users", "Users", false);
    }
}
