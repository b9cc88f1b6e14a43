//! Properties of every scan rather than of one detector: order and overlaps, values with nothing
//! in them, arbitrary bytes, JSON safety, masked output, the partial style and configuration names.

use super::*;

#[test]
fn all_detectors_on_mixed_text() {
    let text = format!(
        "Ticket 4521 from jane.doe@example.com (call +44 20 7946 0958) on 2024-01-15 12:30:45: card 4111 1111 1111 1111, \
         refund to GB82WEST12345698765432, SSN 078-05-1120, from 10.0.0.1 and 2001:db8::1. Config: \
         aws_access_key_id=AKIAIOSFODNN7EXAMPLE password=hunter2 token={JWT_IO} gh=ghp_16C7e42F292c6912E7710c838347Ae178B4a \
         {RSA_KEY} version 1.2.3 done."
    );
    let expected = [
        (Detector::Email, "jane.doe@example.com"),
        (Detector::Phone, "+44 20 7946 0958"),
        (Detector::CreditCard, "4111 1111 1111 1111"),
        (Detector::Iban, "GB82WEST12345698765432"),
        (Detector::NationalId, "078-05-1120"),
        (Detector::IpAddress, "10.0.0.1"),
        (Detector::IpAddress, "2001:db8::1"),
        (Detector::AwsKey, "AKIAIOSFODNN7EXAMPLE"),
        (Detector::Secret, "hunter2"),
        (Detector::Jwt, JWT_IO),
        (Detector::ApiKey, "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
        (Detector::PrivateKey, RSA_KEY),
    ];
    let found = found_all(text.as_bytes(), DetectorSet::all());
    let got: Vec<(Detector, &str)> = found.iter().map(|f| (f.detector, &text[f.start..f.end])).collect();
    assert_eq!(got, expected);
    assert_ordered(text.as_bytes(), &found);
}

/// A card number that is also a password's value is reported once, as the more specific kind.
#[test]
fn overlaps_keep_the_earlier_start_then_the_longer_then_the_more_specific() {
    let check_all = |marked: &str, detectors: &[Detector]| {
        let (text, spans) = unmark(marked);
        let found = found_all(text.as_bytes(), DetectorSet::all());
        let got: Vec<(usize, usize, Detector)> = found.iter().map(|f| (f.start, f.end, f.detector)).collect();
        let want: Vec<(usize, usize, Detector)> = spans.iter().zip(detectors).map(|(&(s, e), &d)| (s, e, d)).collect();
        assert_eq!(got, want, "{marked}");
    };
    check_all("password=[[4111111111111111]]", &[Detector::CreditCard]);
    check_all(r#"{"token": "[[sk_live_4eC39HqLyjWDarjtT1zdp7dc]]"}"#, &[Detector::ApiKey]);
    check_all("aws_secret_access_key=[[wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY]]", &[Detector::AwsKey]);
    check_all(&format!("Authorization: Bearer [[{JWT_IO}]]"), &[Detector::Jwt]);
    // The secret value starts first, so it wins over the email inside it.
    check_all("password=[[pw:jane@example.com]]", &[Detector::Secret]);
    check_all("password=[[pw]],[[jane@example.com]]", &[Detector::Secret, Detector::Email]);
    check_all("card +[[4111111111111111]]", &[Detector::CreditCard]);
}

#[test]
fn nothing_found_calls_nothing() {
    let ordinary = "The quick brown fox jumps over the lazy dog at 12:30 on 2024-01-15; version 1.2.3, order #4521, total 99.95 EUR.";
    for text in ["", "plain", ordinary, "password reset requested", "\u{e9}t\u{e9} \u{1f600} 1234"] {
        scan(text.as_bytes(), DetectorSet::all(), &mut |f| panic!("{f:?} in {text:?}"));
    }
    // An empty set runs nothing, even on text full of matches.
    scan(b"jane@example.com 4111111111111111", DetectorSet::EMPTY, &mut |f| panic!("{f:?}"));
}

/// Arbitrary bytes, invalid UTF-8 and text made of the detectors' own trigger characters: no
/// panic, and spans stay ordered, disjoint, on character boundaries and JSON-safe.
#[test]
fn arbitrary_bytes() {
    const PIECES: &[&str] = &[
        "@",
        ".",
        "-",
        "+",
        ":",
        "::",
        "=",
        "\"",
        "\\",
        "\\n",
        " ",
        "(",
        ")",
        "eyJ",
        "-----BEGIN PRIVATE KEY-----",
        "-----END ",
        "password",
        "token",
        "Bearer ",
        "4111",
        "1111",
        "192",
        "168",
        "GB82",
        "WEST",
        "AKIA",
        "ghp_",
        "sk-",
        "sk_live_",
        "é",
        "😀",
        "a",
        "Z",
        "0",
        "9",
        "1",
        "com",
        "fe80",
        "abcdef",
        "/",
        "'",
        "\n",
        "ff",
    ];
    let mut random = xorshift(0x2545_f491_4f6c_dd1d);
    for _ in 0..2000 {
        let len = random(60);
        let text: String = (0..len).map(|_| PIECES[random(PIECES.len())]).collect();
        let found = found_all(text.as_bytes(), DetectorSet::all());
        assert_ordered(text.as_bytes(), &found);
        for f in &found {
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end), "{f:?} in {text:?}");
        }
        let mut bytes = text.into_bytes();
        for _ in 0..4 {
            if !bytes.is_empty() {
                let at = random(bytes.len());
                bytes[at] = 0x80 | random(0x80) as u8;
            }
        }
        assert_ordered(&bytes, &found_all(&bytes, DetectorSet::all()));
    }
}

/// Masked output scanned again finds nothing: the recording-only stage scans what the client
/// stage left, and must not count a marker as a new secret.
#[test]
fn masked_output_is_not_found_again() {
    let cases = [
        "jane.doe@example.com",
        "4111 1111 1111 1111",
        "GB82 WEST 1234 5698 7654 32",
        "+1 (555) 123-4567",
        "078-05-1120",
        "AB 12 34 56 C",
        "10.1.2.3",
        "2001:db8::1",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        JWT_IO,
        RSA_KEY,
        "password=hunter2",
        r#"{"api_key": "abc123def456"}"#,
    ];
    for case in cases {
        for style in [Style::Redact, Style::Partial] {
            let masked = mask_with(case, style);
            assert_ne!(masked, case);
            scan(masked.as_bytes(), DetectorSet::all(), &mut |f| panic!("{f:?} in {masked:?} (from {case:?})"));
        }
    }
}

#[test]
fn partial_forms() {
    let cases = [
        (Detector::Email, "jane.doe@example.com", "j***@example.com"),
        (Detector::CreditCard, "4111 1111 1111 1111", "**** **** **** 1111"),
        (Detector::CreditCard, "378282246310005", "***********0005"),
        (Detector::Iban, "GB82WEST12345698765432", "GB****************5432"),
        (Detector::Iban, "DE89 3704 0044 0532 0130 00", "DE** **** **** **** **30 00"),
        (Detector::Phone, "+1 (555) 123-4567", "***67"),
        (Detector::NationalId, "078-05-1120", "***-**-1120"),
        (Detector::NationalId, "AB 12 34 56 C", "** ** ** *6 C"),
        (Detector::IpAddress, "10.1.2.3", "10.*.*.*"),
        (Detector::IpAddress, "2001:db8::1", "2001:*:*:*:*:*:*:*"),
        (Detector::AwsKey, "AKIAIOSFODNN7EXAMPLE", "AKIA***"),
        (Detector::AwsKey, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "***"),
        (Detector::ApiKey, "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_***"),
        (Detector::ApiKey, "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_***"),
        (Detector::ApiKey, "sk-proj-abc123DEF456ghi789JKL012", "sk-proj-***"),
        (Detector::ApiKey, "xoxb-1234567890-abcdefghij", "xoxb-***"),
        (Detector::Jwt, JWT_IO, "eyJ***"),
        (Detector::PrivateKey, RSA_KEY, "-----BEGIN RSA PRIVATE KEY----- [redacted]"),
        (Detector::Secret, "hunter2", "***"),
    ];
    for (detector, matched, expected) in cases {
        assert_eq!(partial(detector, matched), expected, "{detector:?} {matched:?}");
    }
    // Anything else gets a masked answer, not a panic.
    for detector in Detector::ALL {
        for odd in ["", "x", "@", "é", "::"] {
            assert!(!partial(detector, odd).is_empty() || odd.is_empty());
        }
    }
}

#[test]
fn names_and_groups() {
    for detector in Detector::ALL {
        assert_eq!(DetectorSet::from_name(detector.name()), Some(DetectorSet::EMPTY.with(detector)));
    }
    let group = |name: &str| {
        let set = DetectorSet::from_name(name).unwrap();
        Detector::ALL.into_iter().filter(|d| set.contains(*d)).map(Detector::name).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(group("pii"), "email phone national-id ip-address");
    assert_eq!(group("financial"), "credit-card iban");
    assert_eq!(group("secrets"), "aws-key api-key jwt private-key secret");
    assert_eq!(DetectorSet::from_name("all"), Some(DetectorSet::all()));
    for unknown in ["", "Email", "credit_card", "cards", "everything"] {
        assert_eq!(DetectorSet::from_name(unknown), None, "{unknown:?}");
    }
    let listed: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).chain(["pii", "financial", "secrets", "all"]).collect();
    assert_eq!(DetectorSet::names(), listed);
    assert!(DetectorSet::names().iter().all(|n| DetectorSet::from_name(n).is_some()));
    let set = DetectorSet::EMPTY.with(Detector::Email).union(DetectorSet::EMPTY.with(Detector::Jwt));
    assert!(set.contains(Detector::Email) && set.contains(Detector::Jwt) && !set.contains(Detector::Iban));
    assert!(DetectorSet::EMPTY.is_empty() && DetectorSet::default().is_empty() && !set.is_empty());
}

/// Every span of a text that was valid JSON can be replaced by a marker and the text stays valid:
/// no unescaped quote inside, no escape split at either edge.
#[test]
fn spans_in_json_strings_keep_json_valid() {
    let docs = [
        r#"{"note": "mail jane@example.com, card 4111111111111111", "ip": "10.0.0.1"}"#,
        r#"{"password": "p\"a\\ss\nword", "token": "t0k"}"#,
        r#"{"api_key":"sk_live_4eC39HqLyjWDarjtT1zdp7dc","n":1}"#,
        r#"{"key": "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4\n-----END RSA PRIVATE KEY-----"}"#,
        r#"{"key": "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4", "n": 2}"#,
        r#"{"log": "{\"password\":\"hunter2\",\"auth\":\"Bearer x\"}"}"#,
        r#"["password", "token", "secret"]"#,
        r#"{"secret": {"a": 1}, "token": true, "password": 12}"#,
        r#"{"x": "\bad::1 \f00::1 \n10.0.0.1 \tAKIAIOSFODNN7EXAMPLE", "y": "\njane@example.com"}"#,
    ];
    for doc in docs {
        let found = found_all(doc.as_bytes(), DetectorSet::all());
        for f in &found {
            let span = &doc.as_bytes()[f.start..f.end];
            let backslashes_before = doc.as_bytes()[..f.start].iter().rev().take_while(|&&b| b == b'\\').count();
            assert!(backslashes_before % 2 == 0, "{f:?} starts inside an escape in {doc}");
            let mut i = 0;
            while i < span.len() {
                match span[i] {
                    b'\\' => {
                        assert!(i + 1 < span.len(), "{f:?} splits an escape in {doc}");
                        i += 2;
                    }
                    b'"' => panic!("{f:?} holds a quote in {doc}"),
                    _ => i += 1,
                }
            }
        }
    }
    let found = found_all(docs[1].as_bytes(), DetectorSet::all());
    assert_eq!(found.len(), 2, "the password and the token");
    let escapes = docs.last().unwrap();
    let found: Vec<&str> = found_all(escapes.as_bytes(), DetectorSet::all()).iter().map(|f| &escapes[f.start..f.end]).collect();
    assert_eq!(found, ["10.0.0.1", "AKIAIOSFODNN7EXAMPLE", "jane@example.com"]);
}

fn found_all(text: &[u8], set: DetectorSet) -> Vec<Found> {
    let mut found = Vec::new();
    scan(text, set, &mut |f| found.push(f));
    found
}

fn assert_ordered(text: &[u8], found: &[Found]) {
    let mut previous_end = 0;
    for f in found {
        assert!(f.start < f.end && f.end <= text.len(), "{f:?} out of bounds in {text:?}");
        assert!(f.start >= previous_end, "{f:?} overlaps or goes back in {text:?}");
        previous_end = f.end;
    }
}

#[derive(Clone, Copy)]
enum Style {
    Redact,
    Partial,
}

/// What masking makes of a text: each span replaced by a marker or its partial form.
fn mask_with(text: &str, style: Style) -> String {
    let mut out = String::new();
    let mut copied = 0;
    for f in found_all(text.as_bytes(), DetectorSet::all()) {
        out.push_str(&text[copied..f.start]);
        match style {
            Style::Redact => out.push_str(&format!("[{}]", f.detector.name())),
            Style::Partial => out.push_str(&partial(f.detector, &text[f.start..f.end])),
        }
        copied = f.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// The word-at-a-time tests behind the searches never miss a byte: checked for every byte value
/// in every lane, among neighbours from both ends of the byte range, and exactly on random words.
#[test]
fn word_tests_agree_with_byte_tests() {
    let ranges = [(b'0', b'9'), (b'A', b'Z')];
    for lane in 0..8 {
        for filler in [0u8, b' ', b'z', 0x7f, 0x80, 0xff] {
            for b in 0..=255u8 {
                let mut bytes = [filler; 8];
                bytes[lane] = b;
                let word = u64::from_le_bytes(bytes);
                for needle in [b'@', b'-', b'_', b':', filler] {
                    assert_eq!(has_byte(word, needle), bytes.contains(&needle), "{bytes:?} {needle}");
                }
                for (lo, hi) in ranges {
                    assert_eq!(has_between(word, lo, hi), bytes.iter().any(|x| (lo..=hi).contains(x)), "{bytes:?} {lo}..={hi}");
                }
            }
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..100_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let bytes = seed.to_le_bytes();
        for (lo, hi) in ranges {
            assert_eq!(has_between(seed, lo, hi), bytes.iter().any(|x| (lo..=hi).contains(x)), "{bytes:?}");
        }
        assert_eq!(has_byte(seed, b'-'), bytes.contains(&b'-'));
    }
    let text = b"0123456789abcdefghij-klmnop@qrstuvwxyz";
    for from in 0..=text.len() {
        for needle in [b'-', b'@', b'0', b'z', b'!'] {
            assert_eq!(find_byte(text, needle, from), text[from..].iter().position(|&b| b == needle).map(|i| i + from));
        }
        assert_eq!(next_digit(text, from), text[from..].iter().position(u8::is_ascii_digit).map(|i| i + from));
    }
}

/// A matcher's bit is its place in `Matcher::ALL`, the order `scan` breaks ties in.
#[test]
fn matcher_bits_follow_their_order() {
    for (i, matcher) in Matcher::ALL.into_iter().enumerate() {
        assert_eq!(matcher.bit(), 1 << i, "{matcher:?}");
    }
    assert_eq!(Matcher::of(DetectorSet::all()), (1 << Matcher::ALL.len()) - 1);
    let email_only = Matcher::of(DetectorSet::EMPTY.with(Detector::Email));
    assert_eq!(email_only, Matcher::Email.bit());
}

/// The census that lets `scan` skip matchers never skips one that would match: over random text
/// of numbers, separators, letters, capitals (National Insurance numbers, IBAN prefixes), secret
/// names and API keys, every matcher that finds something was allowed to run.
#[test]
fn the_census_never_hides_a_match() {
    // Pieces between `|`: numbers, separators, letters, capitals, secret names.
    const PIECES: &str = "4111|1111|4|1|5|55|555|123|4567|078|05|1120|192|168|0|2026| |-|.|(|) |+44 |a|x|\\n|,|  |--|e|AB|C|\
                          123456|12 34 56 |GB82|WEST|Q|password=|Token: |Bearer |sw|KE|=|s3cr3tValue9|\
                          ghp_16C7e42F292c6912E7710c838347Ae178B4a|sk-proj-AbC123dEf456GhI789jk|xoxb-123456789012-abcdef|sk|gl";
    let pieces: Vec<&str> = PIECES.split('|').collect();
    let mut random = xorshift(0x9e37_79b9_7f4a_7c15);
    let (mut found_some, mut found_national_insurance, mut found_secret, mut found_api_key) = (0, 0, 0, 0);
    for _ in 0..100_000 {
        let len = 3 + random(12);
        let text: String = (0..len).map(|_| pieces[random(pieces.len())]).collect();
        let seen = Seen::of(text.as_bytes());
        for matcher in Matcher::ALL {
            if matcher.find(text.as_bytes(), 0).is_some() {
                found_some += 1;
                found_national_insurance += usize::from(matcher == Matcher::NationalInsurance);
                found_secret += usize::from(matcher == Matcher::Secret);
                found_api_key += usize::from(matcher == Matcher::ApiKey);
                let candidates = Matcher::candidates(&seen, text.as_bytes(), DetectorSet::all());
                assert!(candidates & matcher.bit() != 0, "{matcher:?} matches {text:?} but the census rules it out");
            }
        }
    }
    assert!(found_some > 500, "the random texts hold numbers of every kind: {found_some}");
    assert!(found_national_insurance > 0, "the random texts hold National Insurance numbers");
    assert!(found_secret > 0, "the random texts hold secrets after their names");
    assert!(found_api_key > 0, "the random texts hold API keys");
}

/// The digit groups counted sixty-four bytes at a time are those counted byte by byte: over
/// random texts of digit runs, separators alone and doubled, and letters, long enough for groups
/// to cross from one block of 64 bytes into the next, with groups of twelve digits that may and
/// may not start a card.
#[test]
fn digit_groups_count_as_byte_by_byte() {
    // Pieces between `|`: digit runs, separators alone and doubled, letters.
    const PIECES: &str = "4111|1|55|555|0|2026|123456789|5018|6| |-|.|  |--|-.|a|xyz|(|,|deadbeef";
    let pieces: Vec<&str> = PIECES.split('|').collect();
    let mut random = xorshift(0x2545_f491_4f6c_dd1d);
    let (mut across_blocks, mut twelves) = (0, [0; 2]);
    for _ in 0..50_000 {
        let len = 1 + random(60);
        let text: String = (0..len).map(|_| pieces[random(pieces.len())]).collect();
        let expected = digit_group_byte_by_byte(text.as_bytes());
        assert_eq!(lanes::longest_digit_group(text.as_bytes()), expected, "{text:?}");
        let bytes = text.as_bytes();
        across_blocks +=
            usize::from(bytes.len() > 64 && bytes[63].is_ascii_digit() && matches!(bytes[64], b'0'..=b'9' | b' ' | b'-' | b'.'));
        if let (11 | 12, Some(first)) = (expected, twelve_digit_group(bytes)) {
            twelves[usize::from(TWELVE_DIGIT_CARD.1.contains(&first))] += 1;
        }
    }
    assert!(across_blocks > 500, "groups crossed from one block into the next: {across_blocks}");
    assert!(twelves.iter().all(|&n| n > 500), "groups of twelve digits, from another digit and from 5 or 6: {twelves:?}");
}

/// The longest digit group as the matchers see numbers, one byte at a time: a separator right
/// after a digit keeps the group open, anything else but a digit closes it. A group of twelve
/// that starts with a digit no twelve-digit card starts with weighs eleven.
fn digit_group_byte_by_byte(text: &[u8]) -> usize {
    let (mut longest, mut group, mut first, mut after_digit) = (0, 0, 0, false);
    for &b in text {
        let digit = b.is_ascii_digit();
        group = match b {
            _ if digit && group == 0 => {
                first = b;
                1
            }
            _ if digit => group + 1,
            b' ' | b'-' | b'.' if after_digit => group,
            _ => 0,
        };
        after_digit = digit;
        let (twelve, card_firsts) = TWELVE_DIGIT_CARD;
        let weight = if group == twelve && !card_firsts.contains(&first) { group - 1 } else { group };
        longest = usize::max(longest, weight);
    }
    longest.min(LONGEST_NUMBER_GROUP)
}

/// The first digit of a group of exactly twelve digits in `text`, if there is one.
fn twelve_digit_group(text: &[u8]) -> Option<u8> {
    let (mut group, mut first, mut after_digit) = (0, 0, false);
    for &b in text.iter().chain([&b'x']) {
        let digit = b.is_ascii_digit();
        if digit {
            if group == 0 {
                first = b;
            }
            group += 1;
        } else if !(after_digit && matches!(b, b' ' | b'-' | b'.')) {
            if group == TWELVE_DIGIT_CARD.0 {
                return Some(first);
            }
            group = 0;
        }
        after_digit = digit;
    }
    None
}

/// The census taken sixteen bytes at a time is the census taken byte by byte, over random bytes
/// weighted towards triggers, digits, letters and the letters of the pairs, at every length
/// around the 16-byte chunks.
#[test]
fn census_counts_as_byte_by_byte() {
    let alphabet: Vec<u8> = TRIGGERS.iter().copied().chain(*b"09azAZswpkecrbhgilxoSWKEGI\0\x7f\x80\xff").collect();
    let mut random = xorshift(0x1234_5678_9abc_def1);
    let mut pairs_seen = 0;
    for round in 0..40_000 {
        let len = round % 70;
        let text: Vec<u8> = (0..len).map(|_| if random(4) == 0 { random(256) as u8 } else { alphabet[random(alphabet.len())] }).collect();
        let expected = census_byte_by_byte(&text);
        assert_eq!(lanes::census(&text, true), expected, "{text:?}");
        assert_eq!(lanes::census(&text, false), lanes::Census { pairs: 0, ..expected }, "{text:?}");
        pairs_seen += usize::from(expected.pairs != 0);
    }
    assert!(pairs_seen > 1_000, "the random texts hold letter pairs: {pairs_seen}");
}

fn census_byte_by_byte(text: &[u8]) -> lanes::Census {
    let pairs = secret::PAIRS.iter().chain(keys::API_KEY_PAIRS.iter());
    lanes::Census {
        triggers: TRIGGERS.iter().enumerate().filter(|(_, t)| text.contains(t)).fold(0, |bits, (i, _)| bits | 1 << i),
        digits: text.iter().filter(|b| b.is_ascii_digit()).count(),
        uppers: text.iter().filter(|b| b.is_ascii_uppercase()).count(),
        lowers: text.iter().any(u8::is_ascii_lowercase),
        pairs: pairs
            .enumerate()
            .filter(|(_, pair)| text.windows(2).any(|w| w.eq_ignore_ascii_case(&pair[..])))
            .fold(0, |bits, (i, _)| bits | 1 << i),
    }
}

/// A repeatable pseudo-random number below `n` for each call (xorshift64), for test texts.
fn xorshift(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}
