//! Financial data: payment card numbers and IBANs, each validated by its check digits so that
//! order numbers and other long numbers are left alone.
//!
//! Not here: BIC/SWIFT codes, bank account numbers outside IBAN form, and card numbers no network
//! in [`issuers`] issues (a number of an unknown prefix or length is not reported, even if its
//! Luhn sum is right).

pub(super) mod issuers;

use super::{digits_at, mask_chars, next_digit, next_pair_in_classes, number_end, number_start, word_end, word_start, Span, DIGIT, UPPER};

// === Cards ===

/// The fewest digits a card number has (Maestro's shortest).
const MIN_CARD_DIGITS: usize = 12;

/// The most digits a card number has.
const MAX_CARD_DIGITS: usize = 19;

/// 12–19 digits, plain or in groups (the first of four digits, the rest of three to six, one kind
/// of separator: a space or a dash), Luhn-valid and with an issuer prefix and length the issuer
/// uses. A run of more than 19 digits is not a card number, nor is any part of it.
pub(super) fn find_card(text: &[u8], from: usize) -> Option<Span> {
    let mut i = from;
    while let Some(start) = next_digit(text, i) {
        let run = digits_at(text, start);
        if number_start(text, start) {
            if let Some(end) = card_end(text, start, run) {
                return Some(Span { start, end });
            }
        }
        i = start + run;
    }
    None
}

fn card_end(text: &[u8], start: usize, first_run: usize) -> Option<usize> {
    let mut digits = [0u8; MAX_CARD_DIGITS];
    if first_run >= MIN_CARD_DIGITS {
        let end = start + first_run;
        let ok = first_run <= MAX_CARD_DIGITS && number_end(text, end, b".-") && {
            digits[..first_run].copy_from_slice(&text[start..end]);
            valid_card(&digits[..first_run])
        };
        return ok.then_some(end);
    }
    let sep = *text.get(start + 4)?;
    if first_run != 4 || !matches!(sep, b' ' | b'-') {
        return None;
    }
    digits[..4].copy_from_slice(&text[start..start + 4]);
    let (mut n, mut j) = (4, start + 4);
    // Where the number could end (after a group, with 12 or more digits), and its digit count:
    // a group adds three digits or more, so at most three ends lie between 12 and 19 digits.
    let mut ends = [(0, 0); 3];
    let mut n_ends = 0;
    while text.get(j) == Some(&sep) {
        let run = digits_at(text, j + 1);
        if !(3..=6).contains(&run) || n + run > MAX_CARD_DIGITS {
            break;
        }
        digits[n..n + run].copy_from_slice(&text[j + 1..j + 1 + run]);
        n += run;
        j += 1 + run;
        if n >= MIN_CARD_DIGITS {
            ends[n_ends] = (j, n);
            n_ends += 1;
        }
    }
    // The longest valid reading wins: "4111 1111 1111 1111 2025" is a card and then a year.
    ends[..n_ends].iter().rev().find(|&&(end, n)| word_end(text, end) && valid_card(&digits[..n])).map(|&(end, _)| end)
}

fn valid_card(digits: &[u8]) -> bool {
    luhn(digits) && issuers::issued(digits)
}

/// The Luhn sum: doubling every second digit from the right catches any single wrong digit and
/// most swaps of neighbours.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = (d - b'0') as u32;
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The last four digits, as receipts print them; separators stay.
pub(super) fn partial_card(matched: &str) -> String {
    mask_chars(matched, char::is_ascii_digit, |i, n| i + 4 > n)
}

// === IBANs ===

/// IBAN lengths of the countries that use one (ISO 13616 registry). A country not listed is
/// accepted at any length 15–34 if its check digits are right.
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VG", 24),
    (b"XK", 20),
];

const MAX_IBAN: usize = 34;

/// Two capital letters, two check digits, then capitals and digits: all run together, or in
/// groups of four separated by single spaces as IBANs are printed. Lowercase is not accepted:
/// IBANs are written in capitals, and lowercase runs are mostly words and hashes.
pub(super) fn find_iban(text: &[u8], from: usize) -> Option<Span> {
    // Found from its second letter and first check digit: a capital before a digit is rare.
    let mut i = from + 1;
    while let Some(pair) = next_pair_in_classes(text, i, UPPER, DIGIT) {
        i = pair + 1;
        let start = pair - 1;
        let starts = text[start].is_ascii_uppercase() && text.get(pair + 2).is_some_and(u8::is_ascii_digit) && word_start(text, start);
        if starts {
            if let Some(end) = iban_end(text, start) {
                return Some(Span { start, end });
            }
        }
    }
    None
}

fn is_iban_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

fn iban_end(text: &[u8], start: usize) -> Option<usize> {
    let mut chars = [0u8; MAX_IBAN];
    // Where the text stands after each character: a printed IBAN may be followed by more capitals
    // in groups ("BE68 5390 0754 7034 EURO"), and then ends after its own last group.
    let mut ends = [0usize; MAX_IBAN + 1];
    let (mut n, mut j) = (0, start);
    let (mut grouped, mut overrun) = (false, false);
    // Characters since the last space, when grouped: a group has at most four.
    let mut in_group = 0;
    while j < text.len() {
        let b = text[j];
        if is_iban_byte(b) {
            if n == MAX_IBAN || (grouped && in_group == 4) {
                overrun = true;
                break;
            }
            chars[n] = b;
            n += 1;
            in_group += 1;
            j += 1;
            ends[n] = j;
        } else if b == b' ' && (n == 4 || grouped) && in_group == 4 && text.get(j + 1).is_some_and(|&b| is_iban_byte(b)) {
            grouped = true;
            in_group = 0;
            j += 1;
        } else {
            break;
        }
    }
    let len = match IBAN_LENGTHS.iter().find(|(country, _)| country[..] == chars[..2]) {
        Some(&(_, len)) if (n == len && !overrun) || (grouped && len % 4 == 0 && n >= len) => len,
        None if (15..=MAX_IBAN).contains(&n) && !overrun => n,
        _ => return None,
    };
    let (chars, end) = (&chars[..len], ends[len]);
    // Check digits 00, 01 and 99 are never issued.
    let check_ok = !matches!(&chars[2..4], b"00" | b"01" | b"99") && mod97(chars) == 1;
    (check_ok && word_end(text, end)).then_some(end)
}

/// The IBAN check: the first four characters moved to the end, letters as 10–35, read as one
/// number modulo 97.
fn mod97(chars: &[u8]) -> u32 {
    chars[4..].iter().chain(&chars[..4]).fold(0u32, |r, &c| {
        if c.is_ascii_digit() {
            (r * 10 + (c - b'0') as u32) % 97
        } else {
            (r * 100 + (c - b'A' + 10) as u32) % 97
        }
    })
}

/// The country code and the last four characters; the rest masked, spaces kept.
pub(super) fn partial_iban(matched: &str) -> String {
    mask_chars(matched, char::is_ascii_alphanumeric, |i, n| i <= 2 || i + 4 > n)
}
