//! The detector tables: real-looking values each detector must find, and look-alikes it must
//! leave alone. A case is the scanned text with the expected matches marked `[[…]]`; a case with
//! no marks is a look-alike. Well-known public test values only: Stripe and network test cards,
//! the IBAN registry's examples, AWS's documentation keys, jwt.io's token.

use super::*;

mod properties;

/// Scans `marked` without its `[[…]]` marks with the detectors in `set`, and checks that exactly
/// the marked parts are found.
fn check(set: DetectorSet, marked: &str) {
    let (text, expected) = unmark(marked);
    let mut spans = Vec::new();
    scan(text.as_bytes(), set, &mut |f| {
        assert!(set.contains(f.detector), "{:?} is not in the set: {marked:?}", f.detector);
        spans.push((f.start, f.end));
    });
    assert_eq!(mark(&text, &spans), mark(&text, &expected), "in {text:?}");
}

/// Checks a detector's table, which must hold at least six matches and six look-alikes.
fn check_table(detector: Detector, cases: &[&str]) {
    let n_positive = cases.iter().filter(|c| c.contains("[[")).count();
    assert!(n_positive >= 6 && cases.len() - n_positive >= 6, "{detector:?}: {n_positive} of {}", cases.len());
    for case in cases {
        check(DetectorSet::EMPTY.with(detector), case);
    }
}

/// The text without marks, and the marked spans.
fn unmark(marked: &str) -> (String, Vec<(usize, usize)>) {
    let (mut text, mut spans) = (String::new(), Vec::new());
    let mut rest = marked;
    while let Some(open) = rest.find("[[") {
        text.push_str(&rest[..open]);
        let close = rest[open..].find("]]").expect("an opening [[ is closed") + open;
        let start = text.len();
        text.push_str(&rest[open + 2..close]);
        spans.push((start, text.len()));
        rest = &rest[close + 2..];
    }
    text.push_str(rest);
    (text, spans)
}

fn mark(text: &str, spans: &[(usize, usize)]) -> String {
    let mut out = String::new();
    let mut copied = 0;
    for &(start, end) in spans {
        out.push_str(&text[copied..start]);
        out.push_str(&format!("[[{}]]", &text[start..end]));
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

const JWT_IO: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const RSA_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----";

#[test]
fn email() {
    check_table(
        Detector::Email,
        &[
            "contact [[jane.doe@example.com]] today",
            "[[first.last+tag@sub.example.co.uk]]",
            "mailto:[[a_b-c%d@mail-server.example.org]]",
            "<[[John.Smith@Example.COM]]>",
            r#"{"email": "[[ops@witness.dev]]"}"#,
            r"line\n[[bob@example.io]]",
            "Send it to [[x@y.io]].",
            "[[a@b.co]], [[c@d.info]]",
            "user@localhost",
            "follow @handle for news",
            "a@b",
            "foo@bar.1",
            "name@.example.com",
            "@example.com",
            "a@-example.com",
            "jane@example",
            "mail .@example.com",
        ],
    );
}

#[test]
fn credit_card() {
    check_table(
        Detector::CreditCard,
        &[
            "[[4111111111111111]]",
            "card [[4242 4242 4242 4242]] exp 12/30",
            "amex [[378282246310005]]",
            "[[5555-5555-5555-4444]]",
            "[[6011111111111117]] discover",
            "jcb [[3530111333300000]]",
            "diners [[30569309025904]]",
            "mastercard 2-series [[2223003122003222]]",
            "[[3782 822463 10005]]",
            "visa 13 [[4222222222222]];",
            "csv 42,[[4111111111111111]],[[4242424242424242]]",
            "[[4111 1111 1111 1111]] 2025",
            r"note\n[[4111111111111111]]",
            "4111111111111112",
            "1234 5678 9012 3456",
            "41111111111111110000",
            "order 1234567812345670",
            "4111-1111 1111-1111",
            "4111.1111.1111.1111",
            "x4111111111111111",
            "4111111111111111x",
            "3.4111111111111111",
            "isbn 978-0-306-40615-7",
            "tracking 9400111899223344556677",
        ],
    );
}

/// A number of every network beyond the big six, Luhn-valid (generated from a prefix the
/// network issues), plain and grouped; and look-alikes: a prefix a network uses with a wrong
/// check digit, a right check digit with a prefix or length no network issues, and digit runs
/// longer than a card.
#[test]
fn credit_card_networks() {
    check_table(
        Detector::CreditCard,
        &[
            "unionpay [[6212345678000001]], [[6250941006500000009]], [[8171999900000000]]",
            "maestro [[501800000009]], [[6759649826438000002]], [[6763123450000009]]",
            "mir [[2200770200000000]] [[2204123400000006]]",
            "rupay [[8212345600000000]] [[5081234500000001]] [[3530123400000009]]",
            "elo [[6362971200000009]] [[5091234500000009]] [[6550211200000002]]",
            "verve [[506099120000000004]] [[6500021200000000004]] [[5078651200000004]]",
            "troy [[9792012300000005]], dankort [[5019012300000000]]",
            "interpayment [[6361234500000000007]], instapayment [[6381234500000006]]",
            "uatp [[123456700000009]], bc card [[6556345600000008]]",
            "nps [[6054742100000008]], lankapay [[3571111200000006]]",
            "humo [[9860012300000002]], uzcard [[8600123400000003]] [[5614123400000003]]",
            "ukrcard [[60410000000000008]], borica [[2205123400000005]], napas [[9704012300000000008]]",
            "gpn [[194612340000000001]], t-union [[3112345600000000001]], hipercard [[6062821200000009]]",
            "diners [[30951234000006]] [[3912345600000004]]",
            "grouped [[2200 7702 0000 0000]] [[5018 0000 0009]] [[1234 56700 000009]]",
            "dashes [[5090-6712-0000-0006]] [[6212-3456-0000-0000-006]] [[9792-0123-0000-0005]]",
            // A prefix a network uses, the check digit wrong.
            "6212345678000002 6250941006500000000 8171999900000001",
            "501800000000 6759649826438000003 6763123450000000",
            "2200 7702 0000 0001",
            // The check digit right, but no network issues the prefix.
            "7000000000000005 9000000000000001 6400000000000003 5900000000000000",
            "1234000000000006 0123000000000002 3200000000000002 2100000000000005",
            "330000000000001 8300000000000000 9999-0000-0000-0004",
            // The check digit and prefix right, but not the length.
            "1123450000000007 220012345000003 3412345000000005 9860123450000000007",
            "979212345000002 411234500006 3112345000000008 621234500000009",
            "97040123000000008 41234500000001 5112345000000000002",
            "5018 1234 506",
            // Longer runs of digits: no card, nor any part of one.
            "22007702000000001234 50180000000000000009",
        ],
    );
}

/// Every range of the issuer table, at each length it issues: the numbers at both ends of the
/// range with their Luhn check digit are found, alone and grouped by four; with the check digit
/// off by one they are not.
#[test]
fn every_issuer_range_is_found_at_every_length() {
    let luhn_digit = |body: &str| {
        let sum: u32 = body
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let d = u32::from(b - b'0');
                if i % 2 == 0 {
                    if d * 2 > 9 {
                        d * 2 - 9
                    } else {
                        d * 2
                    }
                } else {
                    d
                }
            })
            .sum();
        char::from(b'0' + ((10 - sum % 10) % 10) as u8)
    };
    let card = Detector::CreditCard;
    let mut checked = 0;
    for issuer in financial::issuers::ISSUERS {
        for length in (12..=19).filter(|n| issuer.lengths & 1 << n != 0) {
            for (iin, fill) in [(issuer.first, '0'), (issuer.last, '9')] {
                let mut body = format!("{iin:08}");
                while body.len() < length - 1 {
                    body.push(fill);
                }
                let number = format!("{body}{}", luhn_digit(&body));
                // In fours, a tail shorter than three joined to the group before it.
                let mut groups: Vec<&str> = number.as_bytes().chunks(4).map(|g| std::str::from_utf8(g).unwrap()).collect();
                if groups.last().is_some_and(|g| g.len() < 3) {
                    groups.pop();
                    let tail = groups.len() * 4;
                    groups.pop();
                    groups.push(&number[tail - 4..]);
                }
                let grouped = groups.join(" ");
                check(DetectorSet::EMPTY.with(card), &format!("{} [[{number}]] x [[{grouped}]]", issuer.network));
                let last = number.as_bytes()[length - 1];
                let wrong = format!("{body}{}", char::from(b'0' + (last - b'0' + 1) % 10));
                check(DetectorSet::EMPTY.with(card), &format!("{} {wrong}", issuer.network));
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked} numbers checked");
}

/// The census lets a group of twelve digits reach the card matcher only when it starts as a
/// twelve-digit card can: true of every range that issues twelve digits.
#[test]
fn twelve_digit_cards_start_as_the_census_expects() {
    let (twelve, card_firsts) = TWELVE_DIGIT_CARD;
    let ranges: Vec<_> = financial::issuers::ISSUERS.iter().filter(|issuer| issuer.lengths & 1 << twelve != 0).collect();
    assert!(!ranges.is_empty());
    for issuer in ranges {
        for iin in [issuer.first, issuer.last] {
            let first = format!("{iin:08}").as_bytes()[0];
            assert!(card_firsts.contains(&first), "{} issues twelve digits from {iin}", issuer.network);
        }
    }
}

#[test]
fn iban() {
    check_table(
        Detector::Iban,
        &[
            "[[GB82WEST12345698765432]]",
            "[[DE89370400440532013000]]",
            "IBAN: [[GB82 WEST 1234 5698 7654 32]] (GBP)",
            "[[DE89 3704 0044 0532 0130 00]]",
            "[[FR1420041010050500013M02606]]",
            "[[NL91ABNA0417164300]], [[CH9300762011623852957]]",
            "[[BE68539007547034]]",
            "[[ES9121000418450200051332]]",
            "[[IT60X0542811101000000123456]]",
            "[[AT611904300234573201]]",
            "[[NO9386011117947]]",
            "[[BE68 5390 0754 7034]] EURO",
            "GB82WEST12345698765433",
            "DE00370400440532013000",
            "DE8937040044053201300",
            "gb82west12345698765432",
            "XGB82WEST12345698765432",
            "GB82WEST12345698765432X",
            "ISO8601 says so",
            "GB82 WEST 1234 5698 7654 3",
            "GB82 WEST12 3456 9876 5432",
            "BE68 5390 0754 7034EURO",
            "[[BE68539007547034]] EURO",
        ],
    );
}

#[test]
fn phone() {
    check_table(
        Detector::Phone,
        &[
            "call [[+1 (555) 123-4567]]",
            "[[+44 20 7946 0958]]",
            "[[+49-30-1234567]]",
            "[[+33 1 23 45 67 89]]",
            "[[(555) 123-4567]]",
            "[[555-123-4567]]",
            "[[555.123.4567]]",
            "[[1-800-555-0199]]",
            "tel:[[+14155552671]]",
            "2024-01-15",
            "at 12:30:45",
            "version 1.2.3",
            "5551234567",
            "123-45-6789",
            "4111-1111-1111-1111",
            "+1 555",
            "x+12345678901",
            "2024-01-15T10:00:00+01:00",
            "123-456-7890",
            "555-123-4567-89",
            "+1.2.3.4.5.6.7.8.9",
            "+1234567890123456",
        ],
    );
}

#[test]
fn national_id() {
    check_table(
        Detector::NationalId,
        &[
            "SSN [[078-05-1120]]",
            "[[123-45-6789]]",
            "[[219-09-9999]].",
            "[[AB123456C]]",
            "[[AB 12 34 56 C]]",
            "NI: [[JG103759A]]",
            "[[ZY 98 76 54 D]]",
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123456789",
            "QQ123456C",
            "AB123456E",
            "GB123456A",
            "AB1234567C",
            "DA123456C",
            "1123-45-6789",
            "123-45-67890",
        ],
    );
}

#[test]
fn ip_address() {
    check_table(
        Detector::IpAddress,
        &[
            "[[192.168.1.1]]",
            "host [[10.0.0.1]]:5432",
            "[[255.255.255.255]]",
            "[[0.0.0.0]]",
            "[[2001:db8::1]]",
            "addr [[fe80::1ff:fe23:4567:890a]] up",
            "[[::1]]",
            "[[::ffff:192.0.2.1]]",
            "[[2001:0db8:85a3:0000:0000:8a2e:0370:7334]]",
            "net [[10.0.0.0]]/8",
            "dns [[8.8.8.8]].",
            "link [[fe80::1]]: up",
            "range [[10.0.0.1]]-[[10.0.0.5]]",
            "999.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "12:30:45",
            "00:1A:2B:3C:4D:5E",
            "10.0.0.1a",
            "v1.2.3.4",
            "01.2.3.4",
            "std::fmt::Display",
            "Face::add",
            "192.168.1.256",
            "ratio 10:30",
        ],
    );
}

#[test]
fn aws_key() {
    check_table(
        Detector::AwsKey,
        &[
            "[[AKIAIOSFODNN7EXAMPLE]]",
            "aws_access_key_id=[[AKIAIOSFODNN7EXAMPLE]]",
            "[[ASIAY34FZKBOKMUTVV7A]]",
            "aws_secret_access_key=[[wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY]]",
            r#""[[wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY]]""#,
            "[[je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY]]",
            r"key\n[[umfXfKm+r5kJP1VrT/1FJors+6ILi8IHn5kxsC7t]]",
            "commit da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
            "AKIAIOSFODNN7EXAMPL",
            "XAKIAIOSFODNN7EXAMPLE",
            "AKIAIOSFODNN7EXAMPLEX",
            "akiaiosfodnn7example",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYx",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY=",
            "usr/local/Share/Documents/Projects/Code1",
            "aaaaBBBBccccDDDD1111eeeeFFFFgggg2222hhhh",
        ],
    );
}

#[test]
fn api_key() {
    check_table(
        Detector::ApiKey,
        &[
            "[[ghp_16C7e42F292c6912E7710c838347Ae178B4a]]",
            "[[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]]",
            "[[glpat-9aBcD3fGh1JkLmN0pQrS]]",
            "SLACK=[[xoxb-1234567890-abcdefghij]]",
            "[[sk_live_4eC39HqLyjWDarjtT1zdp7dc]]",
            r#"{"stripe": "[[rk_test_4eC39HqLyjWDarjtT1zdp7dc]]"}"#,
            "[[sk-proj-abc123DEF456ghi789JKL012]]",
            "[[sk-ant-api03-abcdefghij1234567890]]",
            "OPENAI_API_KEY=[[sk-1234567890abcdefghijklmn]]",
            "ghp_short",
            "sk-",
            "task-123",
            "desk-lamp-2000",
            "sk-this-is-not-a-real-key-at-all",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4aX",
            "pk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "xoxq-1234567890",
            "sk_live_short1",
            "risk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "my-sk-1234567890abcdefghijklmn",
        ],
    );
}

#[test]
fn jwt() {
    let cases = [
        format!("[[{JWT_IO}]]"),
        format!("Authorization: Bearer [[{JWT_IO}]]"),
        "[[eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjM0NTY3ODkwIn0.]]".to_string(),
        format!(r#"{{"id_token": "[[{JWT_IO}]]"}}"#),
        format!("/cb?token=[[{JWT_IO}]]&state=1"),
        format!(r"token\n[[{JWT_IO}]]"),
        format!("Token [[{JWT_IO}]]."),
        "eyJhbGciOi".to_string(),
        "a.b.c".to_string(),
        "eyJhbGciOiJIUzI1NiJ9".to_string(),
        "eyJhbGciOiJIUzI1NiJ9.abcdefghijklmno.def".to_string(),
        format!("x{JWT_IO}"),
        "eyJa.eyJb.c".to_string(),
        format!("{JWT_IO}.more"),
    ];
    check_table(Detector::Jwt, &cases.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn private_key() {
    let json = r#"{"private_key": "[[-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----]]\n"}"#;
    let cases = [
        format!("[[{RSA_KEY}]]"),
        format!("key:\n[[{RSA_KEY}]]\ntrailing"),
        "[[-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n-----END EC PRIVATE KEY-----]]"
            .to_string(),
        "[[-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----]]"
            .to_string(),
        "truncated: [[-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9C]]".to_string(),
        json.to_string(),
        r#"{"k": "[[-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG9w0BBQ0wPDAbBgkqhkiG9w0BBQwwDgQI]]"}"#.to_string(),
        "[[-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0Q\n-----END PGP PRIVATE KEY BLOCK-----]]".to_string(),
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----".to_string(),
        "-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHBfpegPjMCMA0GCSqGSIb3\n-----END CERTIFICATE-----".to_string(),
        "BEGIN RSA PRIVATE KEY".to_string(),
        "-----BEGIN rsa private key-----\nMIIB".to_string(),
        "keep your private key safe".to_string(),
        "-----END RSA PRIVATE KEY-----".to_string(),
        "-----BEGIN RSA PRIVATE KEY----- [redacted]".to_string(),
    ];
    check_table(Detector::PrivateKey, &cases.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn secret() {
    check_table(
        Detector::Secret,
        &[
            "password=[[hunter2]]",
            r#"{"api_key": "[[abc123def456]]"}"#,
            "DB_PASSWORD=[[s3cr3t!]] next",
            "clientSecret: '[[xyz789]]'",
            "Authorization: Bearer [[abc.def.ghi]]",
            "Authorization: Basic [[dXNlcjpwYXNz]]",
            r#"{"Authorization": "Bearer [[abc.def]]"}"#,
            "?user=bob&password=[[hunter2]]&x=1",
            "ALTER USER bob PASSWORD '[[hunter2]]'",
            "token [[8f3kQz9LmN2pR7tV1wX4yB6cD]]",
            r#"{"password": "[[a\"b\\c]]"}"#,
            r#"{\"password\":\"[[hunter2]]\"}"#,
            "x-api-key: [[AbC123xyz]]",
            "--password=[[hunter2]]",
            "pwd: [[p4ss]]",
            "password: [[correcthorsebatterystaple]]",
            "password => '[[x1]]'",
            "AWS_SECRET_ACCESS_KEY=[[abc/def+ghi]]",
            "refresh_token=[[r1.abc]];",
            "APIKey=[[Zm9vYmFy]]",
            "your bearer [[xK9mQ2pL7vR4tY8wZ3nB6cD1]]",
            "CREATE USER bob PASSWORD '[[it''s]]' VALID UNTIL '2025-01-01'",
            r"note\npassword=[[hunter2]]",
            "password reset requested",
            "password policy: strict",
            "the secret garden",
            "token_count=5",
            "password=",
            "password: ***",
            "password=<redacted>",
            "password=[secret]",
            "password: null",
            r#"{"password": null}"#,
            r#"{"token": 12345}"#,
            "password=${DB_PASSWORD}",
            "WHERE password = $1",
            "max_tokens=4096",
            "PWD=/home/jane",
            "tokenizer=bert",
            "secret_name=prod-db",
            "token abc",
            "api_key_id=abc",
            "password_hash = crypt($1, gen_salt('bf'))",
            "password: hash:1a2b3c4d",
            "secretary=Ms Moneypenny",
            "key=value",
            "Authorization: Bearer",
            "the token is ready",
            "password: hunter",
        ],
    );
}
