//! Personal data: email addresses, phone numbers, national ids (US Social Security numbers, UK
//! National Insurance numbers) and IP addresses.
//!
//! Not here: numbering plans of every country (an international number is "+", a country code and
//! enough digits), other countries' ids, and host names (a name says less than an address).

use std::net::Ipv6Addr;

use super::{digits_at, find_byte, mask_chars, next_pair_in_classes, number_end, number_start, word_end, word_start, Span, UPPER};

// === Email ===

/// The longest local part RFC 5321 allows; it also bounds how far back a match looks from an `@`.
const MAX_LOCAL: usize = 64;

pub(super) fn find_email(text: &[u8], from: usize) -> Option<Span> {
    let mut i = from;
    while let Some(at) = find_byte(text, b'@', i) {
        if let Some(span) = email_around(text, at, from) {
            return Some(span);
        }
        i = at + 1;
    }
    None
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn email_around(text: &[u8], at: usize, from: usize) -> Option<Span> {
    let mut start = at;
    while start > from && at - start <= MAX_LOCAL && is_local(text[start - 1]) {
        start -= 1;
    }
    if at - start > MAX_LOCAL {
        return None;
    }
    // The letter of an escape ("\njane@…" in JSON text) is not part of the address.
    if start > 0 && start < at && text[start - 1] == b'\\' {
        start += 1;
    }
    while start < at && text[start] == b'.' {
        start += 1;
    }
    if start == at || text[at - 1] == b'.' {
        return None;
    }
    let mut end = at + 1;
    while end < text.len() && (text[end].is_ascii_alphanumeric() || matches!(text[end], b'.' | b'-')) {
        end += 1;
    }
    // A sentence may end right after the address.
    while end > at + 1 && matches!(text[end - 1], b'.' | b'-') {
        end -= 1;
    }
    (valid_domain(&text[at + 1..end]) && word_end(text, end)).then_some(Span { start, end })
}

/// At least two labels, none empty or edged with `-`, the last all letters: `localhost`,
/// `bar.1` and `b` are not mail domains here.
fn valid_domain(domain: &[u8]) -> bool {
    let mut n_labels = 0;
    let mut last: &[u8] = &[];
    for label in domain.split(|&b| b == b'.') {
        if label.is_empty() || label.len() > 63 || label[0] == b'-' || label[label.len() - 1] == b'-' {
            return false;
        }
        n_labels += 1;
        last = label;
    }
    n_labels >= 2 && domain.len() <= 253 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}

pub(super) fn partial_email(matched: &str) -> String {
    match matched.rsplit_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".to_string(),
    }
}

// === Phone ===

/// E.164 numbers have at most 15 digits with the country code; fewer than 9 is too short for
/// anything but a code and a local extension, and too easily a date or an amount.
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 9..=15;

/// "+" and digit groups separated by one space, dash or dot, with at most one group in
/// parentheses: `+44 20 7946 0958`, `+1 (555) 123-4567`, `+49-30-1234567`.
pub(super) fn find_phone_international(text: &[u8], from: usize) -> Option<Span> {
    let mut i = from;
    while let Some(plus) = find_byte(text, b'+', i) {
        i = plus + 1;
        // After a word or another "+" it is arithmetic or a time zone ("…T10:00+01:00").
        if !word_start(text, plus) || (plus > 0 && text[plus - 1] == b'+') {
            continue;
        }
        if let Some(end) = international_end(text, plus) {
            return Some(Span { start: plus, end });
        }
    }
    None
}

fn international_end(text: &[u8], plus: usize) -> Option<usize> {
    let mut j = plus + 1;
    let (mut n_digits, mut n_groups, mut paren_used) = (0, 0, false);
    // The end of the last group outside parentheses, and the digits up to there.
    let mut last = None;
    loop {
        let paren = n_groups > 0 && !paren_used && text.get(j) == Some(&b'(');
        let group = j + paren as usize;
        let run = digits_at(text, group);
        if run == 0 {
            break;
        }
        j = group + run;
        if paren {
            if text.get(j) != Some(&b')') {
                break;
            }
            j += 1;
            paren_used = true;
        }
        n_digits += run;
        n_groups += 1;
        // Six groups is "+33 1 23 45 67 89"; more is a list of numbers, not one.
        if n_digits > *PHONE_DIGITS.end() || n_groups > 6 {
            return None;
        }
        if !paren {
            last = Some((j, n_digits));
        }
        match text.get(j) {
            Some(b' ' | b'-' | b'.') if text.get(j + 1).is_some_and(|&b| b.is_ascii_digit() || b == b'(') => j += 1,
            Some(b'(') => {}
            Some(b) if paren && b.is_ascii_digit() => {}
            _ => break,
        }
    }
    let (end, n_digits) = last?;
    (PHONE_DIGITS.contains(&n_digits) && word_end(text, end)).then_some(end)
}

/// `(555) 123-4567`, `555-123-4567`, `555.123.4567`, optionally after `1-` or `1.`. The area code
/// starts with 2–9 as in the North American plan ("123-456-7890" is a placeholder, not a number);
/// the exchange is not checked, so the 555 numbers of fiction and tests still count.
pub(super) fn find_phone_north_america(text: &[u8], from: usize) -> Option<Span> {
    let mut i = from;
    while i < text.len() {
        let b = text[i];
        if b == b'(' && word_start(text, i) {
            if let Some(end) = parenthesised_end(text, i) {
                return Some(Span { start: i, end });
            }
        } else if b.is_ascii_digit() {
            let run = digits_at(text, i);
            if run == 3 && number_start(text, i) {
                if let Some((end, _)) = dashed_end(text, i) {
                    return Some(Span { start: i, end });
                }
            }
            // A leading "1-": the separator must be the one the rest uses.
            if run == 1 && b == b'1' && number_start(text, i) {
                if let Some((end, sep)) = dashed_end(text, i + 2) {
                    if text[i + 1] == sep {
                        return Some(Span { start: i, end });
                    }
                }
            }
            i += run;
            continue;
        }
        i += 1;
    }
    None
}

/// `NNN-NNN-NNNN` or `NNN.NNN.NNNN` at `start`: its end and separator.
fn dashed_end(text: &[u8], start: usize) -> Option<(usize, u8)> {
    let sep = *text.get(start + 3)?;
    let ok = digits_at(text, start) == 3
        && matches!(text[start], b'2'..=b'9')
        && matches!(sep, b'-' | b'.')
        && digits_at(text, start + 4) == 3
        && text.get(start + 7) == Some(&sep)
        && digits_at(text, start + 8) == 4
        && number_end(text, start + 12, b".-");
    ok.then_some((start + 12, sep))
}

/// `(NNN) NNN-NNNN` at `start` (the space and the dash are optional; the dash may be a dot).
fn parenthesised_end(text: &[u8], start: usize) -> Option<usize> {
    if digits_at(text, start + 1) != 3 || !matches!(text[start + 1], b'2'..=b'9') || text.get(start + 4) != Some(&b')') {
        return None;
    }
    let mut j = start + 5;
    if text.get(j) == Some(&b' ') {
        j += 1;
    }
    if digits_at(text, j) != 3 {
        return None;
    }
    j += 3;
    if matches!(text.get(j), Some(b'-' | b'.' | b' ')) {
        j += 1;
    }
    (digits_at(text, j) == 4 && number_end(text, j + 4, b".-")).then_some(j + 4)
}

pub(super) fn partial_phone(matched: &str) -> String {
    let digits: Vec<char> = matched.chars().filter(char::is_ascii_digit).collect();
    let last: String = digits[digits.len().saturating_sub(2)..].iter().collect();
    format!("***{last}")
}

// === National ids ===

/// `NNN-NN-NNNN` with the ranges the SSA never issues left out: area 000, 666 and 900–999, group
/// 00, serial 0000. Without dashes nine digits are too often something else.
pub(super) fn find_ssn(text: &[u8], from: usize) -> Option<Span> {
    // Found from its first dash, three bytes in: dashes are far rarer than digits.
    let mut i = from + 3;
    while let Some(dash) = find_byte(text, b'-', i) {
        i = dash + 1;
        let start = dash - 3;
        if digits_at(text, start) == 3 && number_start(text, start) && ssn_at(text, start) {
            return Some(Span { start, end: start + 11 });
        }
    }
    None
}

fn ssn_at(text: &[u8], s: usize) -> bool {
    let shape = text.get(s + 3) == Some(&b'-')
        && digits_at(text, s + 4) == 2
        && text.get(s + 6) == Some(&b'-')
        && digits_at(text, s + 7) == 4
        && number_end(text, s + 11, b".-");
    if !shape {
        return false;
    }
    let area = &text[s..s + 3];
    area != b"000" && area != b"666" && area[0] != b'9' && &text[s + 4..s + 6] != b"00" && &text[s + 7..s + 11] != b"0000"
}

/// `AB123456C` or `AB 12 34 56 C`: two prefix letters HMRC issues, six digits, a suffix A–D.
pub(super) fn find_national_insurance(text: &[u8], from: usize) -> Option<Span> {
    // Found from its two prefix letters: two capitals in a row are far rarer than one.
    let mut i = from;
    while let Some(start) = next_pair_in_classes(text, i, UPPER, UPPER) {
        i = start + 1;
        if word_start(text, start) {
            if let Some(end) = national_insurance_end(text, start) {
                return Some(Span { start, end });
            }
        }
    }
    None
}

fn national_insurance_end(text: &[u8], s: usize) -> Option<usize> {
    let (first, second) = (text[s], *text.get(s + 1)?);
    let prefix_ok = second.is_ascii_uppercase()
        && !b"DFIQUV".contains(&first)
        && !b"DFIOQUV".contains(&second)
        && ![b"BG", b"GB", b"NK", b"KN", b"TN", b"NT", b"ZZ"].contains(&&[first, second]);
    if !prefix_ok {
        return None;
    }
    let mut j = s + 2;
    if text.get(j) == Some(&b' ') {
        for _ in 0..3 {
            if text.get(j) != Some(&b' ') || digits_at(text, j + 1) != 2 {
                return None;
            }
            j += 3;
        }
        if text.get(j) != Some(&b' ') {
            return None;
        }
        j += 1;
    } else if digits_at(text, j) == 6 {
        j += 6;
    } else {
        return None;
    }
    (matches!(text.get(j), Some(b'A'..=b'D')) && word_end(text, j + 1)).then_some(j + 1)
}

/// Everything but the last characters: the last four digits of an SSN (as printed on statements),
/// the last two characters of a National Insurance number. Separators stay.
pub(super) fn partial_national_id(matched: &str) -> String {
    let n_shown = if matched.starts_with(|c: char| c.is_ascii_digit()) { 4 } else { 2 };
    mask_chars(matched, char::is_ascii_alphanumeric, |i, n| i + n_shown > n)
}

// === IP addresses ===

/// Four octets 0–255 without leading zeros, not inside a longer dotted number ("1.2.3.4.5") or a
/// word ("v1.2.3.4", "10.0.0.1a"). A four-part version number with small parts does look like an
/// address and is reported as one.
pub(super) fn find_ipv4(text: &[u8], from: usize) -> Option<Span> {
    // Found from its first dot, one to three digits in.
    let mut i = from;
    while let Some(dot) = find_byte(text, b'.', i) {
        i = dot + 1;
        let n = (1..=3).take_while(|&n| dot >= n && text[dot - n].is_ascii_digit()).count();
        if n == 0 || dot - n < from {
            continue;
        }
        let start = dot - n;
        // Not the rest of a dotted number; after a dash it may be the second of a range.
        let rest_of_number = start >= 2 && text[start - 1] == b'.' && text[start - 2].is_ascii_digit();
        if word_start(text, start) && !rest_of_number {
            if let Some(end) = ipv4_end(text, start) {
                return Some(Span { start, end });
            }
        }
    }
    None
}

fn ipv4_end(text: &[u8], start: usize) -> Option<usize> {
    let mut j = start;
    for octet in 0..4 {
        if octet > 0 {
            if text.get(j) != Some(&b'.') {
                return None;
            }
            j += 1;
        }
        let run = digits_at(text, j);
        if run == 0 || run > 3 || (run > 1 && text[j] == b'0') {
            return None;
        }
        let value = text[j..j + run].iter().fold(0u32, |v, &d| v * 10 + (d - b'0') as u32);
        if value > 255 {
            return None;
        }
        j += run;
    }
    number_end(text, j, b".").then_some(j)
}

fn is_ipv6_byte(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

/// The run of hex digits, colons and dots around a colon, when `Ipv6Addr` parses it and it has a
/// decimal digit: that leaves out times ("12:30:45"), MAC addresses (six groups, no "::"), and
/// code such as "Face::add" that happens to be valid hex.
pub(super) fn find_ipv6(text: &[u8], from: usize) -> Option<Span> {
    let mut i = from;
    while let Some(colon) = find_byte(text, b':', i) {
        let mut start = colon;
        while start > from && is_ipv6_byte(text[start - 1]) {
            start -= 1;
        }
        let mut end = colon + 1;
        while end < text.len() && is_ipv6_byte(text[end]) {
            end += 1;
        }
        // The next colon worth looking at is past this run.
        i = end;
        if let Some(span) = ipv6_in(text, start, end) {
            return Some(span);
        }
    }
    None
}

fn ipv6_in(text: &[u8], mut start: usize, mut end: usize) -> Option<Span> {
    // The hex letter of a `\b` or `\f` escape is not part of the address.
    if start > 0 && text[start - 1] == b'\\' {
        start += 1;
    }
    // Dots at the edges belong to the sentence, not the address.
    while start < end && text[start] == b'.' {
        start += 1;
    }
    while end > start && text[end - 1] == b'.' {
        end -= 1;
    }
    if !word_start(text, start) || !word_end(text, end) {
        return None;
    }
    let parses = |candidate: &[u8]| {
        candidate.iter().filter(|&&b| b == b':').count() >= 2
            && candidate.iter().any(u8::is_ascii_digit)
            && std::str::from_utf8(candidate).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
    };
    if parses(&text[start..end]) {
        return Some(Span { start, end });
    }
    // "fe80::1: link up": a colon that ends a clause is not the address's.
    let clause_colon = end - start >= 2 && text[end - 1] == b':' && text[end - 2] != b':';
    (clause_colon && parses(&text[start..end - 1])).then_some(Span { start, end: end - 1 })
}

/// The first octet of an IPv4 address or the first group of an IPv6 one: which network, not which
/// host.
pub(super) fn partial_ip(matched: &str) -> String {
    if let Ok(v6) = matched.parse::<Ipv6Addr>() {
        return format!("{:x}:*:*:*:*:*:*:*", v6.segments()[0]);
    }
    match matched.split_once('.') {
        Some((first, _)) if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) => format!("{first}.*.*.*"),
        _ => "*.*.*.*".to_string(),
    }
}
