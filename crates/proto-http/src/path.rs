//! Reading a request's path as rules see it, and the connection it addresses.
//!
//! Clients address a connection by path prefix, `/c/NAME/rest…`, or, where a host suffix is
//! configured, by host name, `NAME.SUFFIX` with the whole path as `rest`; `rest` (with `/` for
//! nothing) is what the upstream gets, unchanged. Rules are matched against `rest` read the way an upstream
//! most likely reads it: percent-escapes decoded, runs of `/` taken as one. Where upstreams
//! disagree, witness cannot know which reading its upstream takes, so the path is *uncertain*
//! and the policy decides it as the strictest path there is:
//!
//! - a `.` or `..` segment, written plainly or percent-encoded (`/api/../admin`, `%2e%2e`):
//!   one server resolves it, another passes it to a file system, a third refuses it;
//! - an encoded `/` or `\` inside a segment (`%2F`), which some servers split on after decoding;
//! - a `;` (path parameters: Tomcat and Spring drop `;jsessionid=…`, others keep it);
//! - an escape that decodes to `%` (double encoding), a control character, or bytes that are not
//!   UTF-8; a `%` not followed by two hex digits.
//!
//! What this does not do: rewrite the path. The upstream gets the bytes the client sent.

/// The connection a request addresses and the rest of its path.
#[derive(Debug, PartialEq, Eq)]
pub struct Addressed<'a> {
    pub connection: &'a str,
    /// The path after the prefix as the client wrote it, `/` if nothing followed the name.
    pub rest: &'a str,
}

/// A path as rules read it.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadPath {
    /// Decoded, runs of `/` collapsed; shown in records and approvals.
    pub path: String,
    /// Why the upstream may read it otherwise; the request is then decided as the strictest.
    pub uncertain: Option<&'static str>,
}

/// Longest connection name accepted in a path (longer ones cannot be configured names anyway).
const MAX_NAME_BYTES: usize = 128;

/// The connection named by `/c/NAME/…`, or None when the path is not of that form.
pub fn address(path: &str) -> Option<Addressed<'_>> {
    let after = path.strip_prefix("/c/")?;
    let (connection, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    is_name(connection).then_some(Addressed { connection, rest })
}

/// Whether `name` can be a connection's name: letters, digits, `-`, `_` and `.`, as configured.
fn is_name(name: &str) -> bool {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    !name.is_empty() && name.len() <= MAX_NAME_BYTES && name.bytes().all(plain)
}

/// The connection named by a host `NAME.SUFFIX` (any port; the suffix's case ignored), the whole
/// path being the rest; None when the host is not of that form.
pub fn address_by_host<'a>(host: &'a str, suffix: &str, path: &'a str) -> Option<Addressed<'a>> {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let cut = host.len().checked_sub(suffix.len() + 1)?;
    let (connection, dot_suffix) = (host.get(..cut)?, host.get(cut..)?);
    if !dot_suffix.starts_with('.') || !dot_suffix[1..].eq_ignore_ascii_case(suffix) {
        return None;
    }
    is_name(connection).then_some(())?;
    Some(Addressed { connection, rest: if path.is_empty() { "/" } else { path } })
}

/// Reads `raw` (a path as sent, starting with `/`) the way rules match it.
pub fn read(raw: &str) -> ReadPath {
    let mut uncertain = None;
    let mut note = |why: &'static str| {
        uncertain.get_or_insert(why);
    };
    let mut path = String::with_capacity(raw.len());
    let ends_with_slash = raw.len() > 1 && raw.ends_with('/');
    for segment in raw.split('/').filter(|s| !s.is_empty()) {
        if segment.contains(';') {
            note("a ; path parameter, which some servers drop before routing");
        }
        let decoded = match decode(segment) {
            Ok(decoded) => decoded,
            Err(why) => {
                note(why);
                path.push('/');
                path.push_str(&String::from_utf8_lossy(segment.as_bytes()));
                continue;
            }
        };
        if decoded.contains(['/', '\\']) {
            note("an encoded / or \\ inside a segment, which some servers split on");
        }
        if decoded.contains('%') {
            note("an escape that decodes to %, which a server decoding twice reads otherwise");
        }
        if decoded.chars().any(char::is_control) {
            note("a control character");
        }
        if decoded == "." || decoded == ".." {
            note("a . or .. segment, which servers resolve differently");
        }
        path.push('/');
        path.push_str(&decoded);
    }
    if path.is_empty() || ends_with_slash {
        path.push('/');
    }
    ReadPath { path, uncertain }
}

/// Percent-decodes one segment; an error says why it cannot be read.
pub(crate) fn decode(segment: &str) -> Result<String, &'static str> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                (Some(high), Some(low)) => out.push((high * 16 + low) as u8),
                _ => return Err("a % not followed by two hex digits"),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "an escape that is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_addressed_by_prefix() {
        assert_eq!(address("/c/billing/api/x"), Some(Addressed { connection: "billing", rest: "/api/x" }));
        assert_eq!(address("/c/billing"), Some(Addressed { connection: "billing", rest: "/" }));
        assert_eq!(address("/c/billing/"), Some(Addressed { connection: "billing", rest: "/" }));
        for bad in ["/", "/billing/x", "/c/", "/c//x", "/c/bil%6cing/x", "/C/billing/x", "c/billing"] {
            assert_eq!(address(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn connections_are_addressed_by_host_name_under_the_suffix() {
        let by_host = |host: &'static str| address_by_host(host, "witness.local", "/api/x").map(|a| a.connection);
        assert_eq!(by_host("billing.witness.local"), Some("billing"));
        assert_eq!(by_host("billing.WITNESS.local:8081"), Some("billing"));
        assert_eq!(by_host("pg.main.witness.local"), Some("pg.main"));
        for other in [
            "witness.local",
            ".witness.local",
            "billingwitness.local",
            "billing.witness.local.evil",
            "bil/ling.witness.local",
            "é.witness.local",
        ] {
            assert_eq!(by_host(other), None, "{other:?}");
        }
        assert_eq!(address_by_host("b.witness.local", "witness.local", "").map(|a| a.rest), Some("/"));
    }

    fn check(raw: &str, path: &str, certain: bool) {
        let read = read(raw);
        assert_eq!(read.path, path, "{raw:?}");
        assert_eq!(read.uncertain.is_none(), certain, "{raw:?}: {:?}", read.uncertain);
    }

    #[test]
    fn paths_read_as_upstreams_agree_and_are_uncertain_where_they_do_not() {
        check("/", "/", true);
        check("/api/invoices", "/api/invoices", true);
        check("/api/invoices/", "/api/invoices/", true);
        check("//admin", "/admin", true);
        check("/api//x///y", "/api/x/y", true);
        check("/%61dmin/users", "/admin/users", true);
        check("/api/caf%C3%A9", "/api/café", true);
        check("/api/../admin", "/api/../admin", false);
        check("/api/./x", "/api/./x", false);
        check("/api/%2e%2e/admin", "/api/../admin", false);
        check("/api/%2E./admin", "/api/../admin", false);
        check("/api%2fadmin", "/api/admin", false);
        check("/api%5cadmin", "/api\\admin", false);
        check("/api;x=1/admin", "/api;x=1/admin", false);
        check("/api/%252e%252e/admin", "/api/%2e%2e/admin", false);
        check("/api/%ff", "/api/%ff", false);
        check("/api/%zz", "/api/%zz", false);
        check("/api/%", "/api/%", false);
        check("/api/%00x", "/api/\0x", false);
        check("/api/..x", "/api/..x", true);
    }
}
