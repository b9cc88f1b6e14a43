//! Content detectors: where a text value holds an email address, a card number, an IBAN, a phone
//! number, a national id, an IP address, a cloud or API key, a JWT, a private key or a secret
//! value, so masking can replace just those bytes.
//!
//! Each detector is a hand-written matcher over bytes: a cheap trigger (an `@`, a digit after a
//! non-word byte, `eyJ`, `-----BEGIN `, a word like `password`) and then every check the format
//! allows (Luhn, IBAN mod 97, SSN ranges, `Ipv6Addr` parsing, Shannon entropy). A first pass notes
//! which bytes occur at all, so matchers that cannot match a value are not run. Nothing here
//! allocates; the caller decides what to do with each [`Found`].
//!
//! Deliberately not here: regular expressions (a matcher per detector stays linear, allocation
//! free and explains its look-alikes in code); decoding of any kind (base64, URL or JSON escapes
//! are not undone, so a secret hidden that way is not found); context beyond the value (which
//! column it came from is the caller's business); and guarantees. These are heuristics tuned to
//! find real-looking data and leave look-alikes alone: a safety net, not proof that nothing
//! sensitive got through.
//!
//! **Invariant:** in a valid JSON document a span never holds an unescaped `"` and never splits a
//! backslash escape, so a span inside a string can be replaced by text free of quotes and
//! backslashes and the document stays valid. Only two kinds of span can hold a backslash at all,
//! and then only as whole escapes: a double-quoted secret value, and a private key block whose
//! line breaks are `\n` escapes. A number outside any string (`{"card": 4111111111111111}`) is
//! found too: its span is the bare number, which only a JSON value may replace.

mod financial;
mod keys;
mod lanes;
mod pii;
mod secret;

/// One kind of sensitive content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    /// `jane.doe@example.com`: a dotted domain ending in a letter TLD (`user@localhost` is not).
    Email,
    /// 12–19 digits, plain or grouped by single spaces or dashes, Luhn-valid, with the prefix
    /// and length of a card network that issues Luhn-checked numbers (Visa, Mastercard, Amex,
    /// Discover, JCB, Diners Club, UnionPay, Maestro, Mir, RuPay, Elo, Verve, Troy and more).
    CreditCard,
    /// `GB82WEST12345698765432` or in groups of four; mod 97 checked, length checked per country.
    Iban,
    /// `+44 20 7946 0958`, `(555) 123-4567`, `555-123-4567`: an international number or a
    /// North-American one with separators. A bare run of digits is not a phone number.
    Phone,
    /// US Social Security numbers with dashes and UK National Insurance numbers.
    NationalId,
    /// IPv4 dotted quads and IPv6 addresses.
    IpAddress,
    /// AWS access key ids (`AKIA…`) and secret access keys (40 random base64 characters).
    AwsKey,
    /// Tokens with a known prefix: GitHub, GitLab, Slack, Stripe, OpenAI and Anthropic.
    ApiKey,
    /// A JSON Web Token: `eyJ….eyJ….signature`.
    Jwt,
    /// A PEM private key block, BEGIN line to END line.
    PrivateKey,
    /// The value of a password, token or other secret-named field, or a high-entropy string that
    /// follows such a name.
    Secret,
}

/// A set of detectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorSet(u16);

/// Where one detector matched in a value: byte offsets, `start..end`, into the scanned text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub detector: Detector,
}

/// Calls `found` for each match of a detector in `set`, in ascending order of `start`, never
/// overlapping. When two detectors claim overlapping bytes the earlier start wins, then the longer
/// match, then the detector listed first in [`Detector`] (the more specific one: a card number
/// that is also a password's value is reported as a card number).
///
/// Works on any bytes; nothing is allocated.
pub fn scan(text: &[u8], set: DetectorSet, found: &mut impl FnMut(Found)) {
    if set.is_empty() || text.is_empty() {
        return;
    }
    let seen = Seen::of(text);
    // Most values rule out every matcher, and then nothing else is done for them.
    let candidates = Matcher::candidates(&seen, text, set);
    if candidates == 0 {
        return;
    }
    // The next match of each matcher at or after the end of the last one reported, for the
    // matchers in `live`. A match that starts at or after the end of the one just reported is
    // still the matcher's next, so only matchers whose match was overlapped search again: each
    // matcher reads the text about once however many matches there are.
    let mut next = [Span { start: 0, end: 0 }; Matcher::ALL.len()];
    let mut live = 0u16;
    for i in bits(candidates) {
        if let Some(span) = Matcher::ALL[i].find(text, 0) {
            next[i] = span;
            live |= 1 << i;
        }
    }
    while live != 0 {
        let mut best = live.trailing_zeros() as usize;
        for i in bits(live & (live - 1)) {
            let (span, b) = (next[i], next[best]);
            if span.start < b.start || (span.start == b.start && span.end > b.end) {
                best = i;
            }
        }
        let span = next[best];
        found(Found { start: span.start, end: span.end, detector: Matcher::ALL[best].detector() });
        for i in bits(live) {
            if next[i].start < span.end {
                match Matcher::ALL[i].find(text, span.end) {
                    Some(again) => next[i] = again,
                    None => live &= !(1 << i),
                }
            }
        }
    }
}

/// The indices of the set bits of `mask`, lowest first.
fn bits(mut mask: u16) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let i = mask.trailing_zeros() as usize;
        mask &= mask.wrapping_sub(1);
        (i < 16).then_some(i)
    })
}

/// The "partial" masking style for one matched span: enough to recognise what it was, nothing
/// that identifies. `matched` is normally a span [`scan`] reported for `detector`; anything else
/// gets a sensible, fully masked answer rather than a panic.
pub fn partial(detector: Detector, matched: &str) -> String {
    match detector {
        Detector::Email => pii::partial_email(matched),
        Detector::CreditCard => financial::partial_card(matched),
        Detector::Iban => financial::partial_iban(matched),
        Detector::Phone => pii::partial_phone(matched),
        Detector::NationalId => pii::partial_national_id(matched),
        Detector::IpAddress => pii::partial_ip(matched),
        Detector::AwsKey | Detector::ApiKey | Detector::Jwt => keys::partial_token(matched),
        Detector::PrivateKey => keys::partial_private_key(matched),
        Detector::Secret => "***".to_string(),
    }
}

// === impl Detector ===

impl Detector {
    pub const ALL: [Detector; 11] = [
        Detector::Email,
        Detector::CreditCard,
        Detector::Iban,
        Detector::Phone,
        Detector::NationalId,
        Detector::IpAddress,
        Detector::AwsKey,
        Detector::ApiKey,
        Detector::Jwt,
        Detector::PrivateKey,
        Detector::Secret,
    ];

    /// The name in configuration (kebab-case) and in masking markers.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::CreditCard => "credit-card",
            Detector::Iban => "iban",
            Detector::Phone => "phone",
            Detector::NationalId => "national-id",
            Detector::IpAddress => "ip-address",
            Detector::AwsKey => "aws-key",
            Detector::ApiKey => "api-key",
            Detector::Jwt => "jwt",
            Detector::PrivateKey => "private-key",
            Detector::Secret => "secret",
        }
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

// === impl DetectorSet ===

/// Named groups of detectors, as configuration may list them.
const GROUPS: [(&str, &[Detector]); 4] = [
    ("pii", &[Detector::Email, Detector::Phone, Detector::NationalId, Detector::IpAddress]),
    ("financial", &[Detector::CreditCard, Detector::Iban]),
    ("secrets", &[Detector::AwsKey, Detector::ApiKey, Detector::Jwt, Detector::PrivateKey, Detector::Secret]),
    ("all", &Detector::ALL),
];

impl DetectorSet {
    pub const EMPTY: DetectorSet = DetectorSet(0);

    pub fn all() -> DetectorSet {
        Detector::ALL.iter().fold(DetectorSet::EMPTY, |set, d| set.with(*d))
    }

    pub fn with(self, d: Detector) -> DetectorSet {
        DetectorSet(self.0 | d.bit())
    }

    pub fn contains(self, d: Detector) -> bool {
        self.0 & d.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: DetectorSet) -> DetectorSet {
        DetectorSet(self.0 | other.0)
    }

    /// Parses one configuration name: a detector's [`Detector::name`], or a group: `pii` (email,
    /// phone, national-id, ip-address), `financial` (credit-card, iban), `secrets` (aws-key,
    /// api-key, jwt, private-key, secret) or `all`. Unknown names give None.
    pub fn from_name(name: &str) -> Option<DetectorSet> {
        if let Some(d) = Detector::ALL.iter().find(|d| d.name() == name) {
            return Some(DetectorSet::EMPTY.with(*d));
        }
        let (_, members) = GROUPS.iter().find(|(group, _)| *group == name)?;
        Some(members.iter().fold(DetectorSet::EMPTY, |set, d| set.with(*d)))
    }

    /// Every name [`DetectorSet::from_name`] accepts, detectors then groups (for error messages).
    pub fn names() -> &'static [&'static str] {
        &[
            "email",
            "credit-card",
            "iban",
            "phone",
            "national-id",
            "ip-address",
            "aws-key",
            "api-key",
            "jwt",
            "private-key",
            "secret",
            "pii",
            "financial",
            "secrets",
            "all",
        ]
    }
}

// === Matchers ===

/// A half-open byte range one matcher found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

/// One way of finding one detector's content. A detector with two unrelated shapes (IPv4 and
/// IPv6, say) has a matcher for each, so that each keeps its own next match in [`scan`] and no
/// shape has to search again because the other one matched.
///
/// Listed in [`Detector`] order: on a tie, the first listed wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Matcher {
    Email,
    Card,
    Iban,
    PhoneInternational,
    PhoneNorthAmerica,
    Ssn,
    NationalInsurance,
    Ipv4,
    Ipv6,
    AwsAccessKeyId,
    AwsSecretKey,
    ApiKey,
    Jwt,
    PrivateKey,
    Secret,
}

impl Matcher {
    const ALL: [Matcher; 15] = [
        Matcher::Email,
        Matcher::Card,
        Matcher::Iban,
        Matcher::PhoneInternational,
        Matcher::PhoneNorthAmerica,
        Matcher::Ssn,
        Matcher::NationalInsurance,
        Matcher::Ipv4,
        Matcher::Ipv6,
        Matcher::AwsAccessKeyId,
        Matcher::AwsSecretKey,
        Matcher::ApiKey,
        Matcher::Jwt,
        Matcher::PrivateKey,
        Matcher::Secret,
    ];

    #[inline(always)]
    fn detector(self) -> Detector {
        match self {
            Matcher::Email => Detector::Email,
            Matcher::Card => Detector::CreditCard,
            Matcher::Iban => Detector::Iban,
            Matcher::PhoneInternational | Matcher::PhoneNorthAmerica => Detector::Phone,
            Matcher::Ssn | Matcher::NationalInsurance => Detector::NationalId,
            Matcher::Ipv4 | Matcher::Ipv6 => Detector::IpAddress,
            Matcher::AwsAccessKeyId | Matcher::AwsSecretKey => Detector::AwsKey,
            Matcher::ApiKey => Detector::ApiKey,
            Matcher::Jwt => Detector::Jwt,
            Matcher::PrivateKey => Detector::PrivateKey,
            Matcher::Secret => Detector::Secret,
        }
    }

    /// The matchers of `set` that can match `text`, made of the `seen` bytes, one bit each
    /// ([`Matcher::bit`]): the bytes every match must contain, the shortest match, and for
    /// numbers the digits a match holds in one group (a card 13, or 12 from a 5 or a 6, a
    /// North-American phone 10, an
    /// SSN 9, an IPv4 address 4). Worked out with bit operations rather than a test per matcher
    /// (which cost a jump each, a third of the time of a short value); the digit groups are
    /// counted only when a number matcher is still in.
    fn candidates(seen: &Seen, text: &[u8], set: DetectorSet) -> u16 {
        let len = text.len();
        let has = |b| seen.has(b);
        let bit = |matcher: Matcher, may: bool| u16::from(may) << matcher as u16;
        let mut candidates = bit(Matcher::Email, len >= 6 && has(b'@') && has(b'.'))
            | bit(Matcher::Card, len >= 12 && seen.census.digits >= 12)
            | bit(Matcher::Iban, len >= 15 && seen.census.uppers >= 2 && seen.digit())
            | bit(Matcher::PhoneInternational, len >= 10 && has(b'+') && seen.digit())
            | bit(Matcher::PhoneNorthAmerica, len >= 12 && seen.census.digits >= 10 && (has(b'(') || has(b'-') || has(b'.')))
            | bit(Matcher::Ssn, len >= 11 && has(b'-') && seen.census.digits >= 9)
            | bit(Matcher::NationalInsurance, len >= 9 && seen.census.uppers >= 3 && seen.digit())
            | bit(Matcher::Ipv4, len >= 7 && has(b'.') && seen.census.digits >= 4)
            | bit(Matcher::Ipv6, len >= 3 && has(b':'))
            | bit(Matcher::AwsAccessKeyId, len >= 20 && has(b'A'))
            | bit(Matcher::AwsSecretKey, len >= 40 && seen.digit() && seen.upper() && seen.lower())
            | bit(Matcher::ApiKey, len >= 15 && (has(b'_') || has(b'-')) && seen.api_key_pair)
            | bit(Matcher::Jwt, len >= 23 && has(b'J') && has(b'.'))
            | bit(Matcher::PrivateKey, len >= 27 && has(b'-') && has(b'K'))
            | bit(Matcher::Secret, len >= 5 && (has(b'=') || has(b':') || has(b' ') || has(b'\t')) && seen.secret_pair);
        candidates &= Matcher::of(set);
        const NUMBERS: u16 = Matcher::Card.bit() | Matcher::PhoneNorthAmerica.bit() | Matcher::Ssn.bit() | Matcher::Ipv4.bit();
        if candidates & NUMBERS != 0 {
            let group = seen.digit_group(text);
            candidates &= !(bit(Matcher::Card, group < 12)
                | bit(Matcher::PhoneNorthAmerica, !has(b'(') && group < 10)
                | bit(Matcher::Ssn, group < 9)
                | bit(Matcher::Ipv4, group < 4));
        }
        candidates
    }

    /// The matcher's bit in a set of matchers: its place in [`Matcher::ALL`].
    const fn bit(self) -> u16 {
        1 << self as u16
    }

    /// The matchers of the detectors in `set`.
    fn of(set: DetectorSet) -> u16 {
        Matcher::ALL.iter().fold(0, |matchers, m| matchers | (u16::from(set.contains(m.detector())) << *m as u16))
    }

    /// The first match that starts at or after `from`.
    fn find(self, text: &[u8], from: usize) -> Option<Span> {
        match self {
            Matcher::Email => pii::find_email(text, from),
            Matcher::Card => financial::find_card(text, from),
            Matcher::Iban => financial::find_iban(text, from),
            Matcher::PhoneInternational => pii::find_phone_international(text, from),
            Matcher::PhoneNorthAmerica => pii::find_phone_north_america(text, from),
            Matcher::Ssn => pii::find_ssn(text, from),
            Matcher::NationalInsurance => pii::find_national_insurance(text, from),
            Matcher::Ipv4 => pii::find_ipv4(text, from),
            Matcher::Ipv6 => pii::find_ipv6(text, from),
            Matcher::AwsAccessKeyId => keys::find_aws_access_key_id(text, from),
            Matcher::AwsSecretKey => keys::find_aws_secret_key(text, from),
            Matcher::ApiKey => keys::find_api_key(text, from),
            Matcher::Jwt => keys::find_jwt(text, from),
            Matcher::PrivateKey => keys::find_private_key(text, from),
            Matcher::Secret => secret::find_secret(text, from),
        }
    }
}

/// Which of the bytes the matchers need occur in a text: one pass ([`lanes::census`], sixteen
/// bytes at a time) that lets [`scan`] skip matchers whose trigger bytes are absent (most short
/// values rule out most matchers). In short texts it also notes whether two adjacent bytes make
/// one of the letter pairs that secret-like names and API key prefixes hold. The longest group of
/// digits is worked out only when a number matcher asks, in a second pass: text with digits here
/// and there (dates, hex digests, counts) rules out every number matcher at once.
struct Seen {
    census: lanes::Census,
    /// Whether one of [`secret::PAIRS`] occurs (two adjacent bytes, either case; taken as true
    /// in a long text): every secret-like name holds one, and few other words do.
    secret_pair: bool,
    /// Whether one of [`keys::API_KEY_PAIRS`] occurs (either case; taken as true in a long text):
    /// every API key prefix starts with one.
    api_key_pair: bool,
    digit_group: std::cell::Cell<Option<usize>>,
}

/// The bytes [`Matcher::candidates`] asks about, one bit each (in this order).
const TRIGGERS: [u8; 13] = [b'@', b'.', b'+', b'-', b'(', b':', b'A', b'_', b'J', b'K', b'=', b' ', b'\t'];

/// Texts up to this long are searched for letter pairs in the census. A longer text holds some
/// pair almost surely, and the census is faster without looking.
const PAIRS_LOOKED_FOR_UP_TO: usize = 256;

/// The most digits any number matcher needs in one group (a card's 13); counting stops there.
const LONGEST_NUMBER_GROUP: usize = 13;

/// The digits of the shortest card numbers (Maestro's 12), and the first digits they can have:
/// the digit groups weigh a group of twelve that starts otherwise as eleven, so that the many
/// twelve-digit numbers that are no card (tracking numbers, UPC codes) do not send the card
/// matcher over a text.
const TWELVE_DIGIT_CARD: (usize, [u8; 2]) = (12, [b'5', b'6']);

impl Seen {
    fn of(text: &[u8]) -> Seen {
        let look_for_pairs = text.len() <= PAIRS_LOOKED_FOR_UP_TO;
        let census = lanes::census(text, look_for_pairs);
        let (secret_pair, api_key_pair) = match look_for_pairs {
            true => (census.pairs & ((1 << lanes::SECRET_PAIRS) - 1) != 0, census.pairs >> lanes::SECRET_PAIRS != 0),
            false => (true, true),
        };
        Seen { census, secret_pair, api_key_pair, digit_group: std::cell::Cell::new(None) }
    }

    /// The most digits in one group of `text`, counted up to [`LONGEST_NUMBER_GROUP`]: digits
    /// joined by single spaces, dashes or dots, as every number a matcher looks for is written
    /// ("4111 1111 1111 1111", "555-123-4567", "078-05-1120", "192.168.0.1"). A group of twelve
    /// counts as eleven unless it starts as a twelve-digit card can ([`TWELVE_DIGIT_CARD`]).
    fn digit_group(&self, text: &[u8]) -> usize {
        if let Some(known) = self.digit_group.get() {
            return known;
        }
        if self.census.digits < 4 {
            // Fewer digits than the smallest group any matcher needs (an IPv4 address's 4).
            return self.census.digits;
        }
        let longest = lanes::longest_digit_group(text);
        self.digit_group.set(Some(longest));
        longest
    }

    /// Whether `b`, one of [`TRIGGERS`], occurs.
    #[inline(always)]
    fn has(&self, b: u8) -> bool {
        let t = TRIGGERS.iter().position(|&trigger| trigger == b);
        debug_assert!(t.is_some(), "{:?} is not a census trigger; add it to TRIGGERS", b as char);
        t.is_some_and(|t| self.census.triggers & (1 << t) != 0)
    }

    fn digit(&self) -> bool {
        self.census.digits > 0
    }

    fn upper(&self) -> bool {
        self.census.uppers > 0
    }

    fn lower(&self) -> bool {
        self.census.lowers
    }
}

/// Byte classes the matchers search for, one bit each in [`CLASSES`]: a table lookup per byte
/// keeps the searches that run over the whole text tight loops.
const UPPER: u8 = 1;
const BASE64: u8 = 1 << 1;
const DIGIT: u8 = 1 << 2;

static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut class = 0;
        if b.is_ascii_uppercase() {
            class |= UPPER;
        }
        if b.is_ascii_alphanumeric() || b == b'/' || b == b'+' {
            class |= BASE64;
        }
        if b.is_ascii_digit() {
            class |= DIGIT;
        }
        table[i] = class;
        i += 1;
    }
    table
}

fn is_class(b: u8, class: u8) -> bool {
    CLASSES[b as usize] & class != 0
}

/// The first byte at or after `from` in `class`.
fn next_in_class(text: &[u8], from: usize, class: u8) -> Option<usize> {
    text.get(from..)?.iter().position(|&b| is_class(b, class)).map(|i| from + i)
}

/// The first position at or after `from` of a byte in `first` followed by one in `second`. A
/// pair is much rarer than either byte alone (a capital and a digit, two capitals), so this
/// passes over text with few false starts.
fn next_pair_in_classes(text: &[u8], from: usize, first: u8, second: u8) -> Option<usize> {
    let rest = text.get(from..)?;
    let seconds = rest.get(1..)?;
    rest.iter().zip(seconds).position(|(&a, &b)| is_class(a, first) && is_class(b, second)).map(|i| from + i)
}

// === Searching eight bytes at a time ===
//
// Most of a text holds nothing: the searches that run over all of it skip eight bytes at a time
// while a word-sized test says none of them can be what is sought. They stop at their first hit,
// often a few bytes in, where the set-up of a vector pass (`lanes`) would cost more than it saves.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The first byte at or after `from` that `is` accepts; `may_hold` tells whether eight bytes read
/// as a little-endian word may hold one (false positives cost time, never a result).
fn find_first(text: &[u8], from: usize, may_hold: impl Fn(u64) -> bool, is: impl Fn(u8) -> bool) -> Option<usize> {
    let rest = text.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut offset = from;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of eight"));
        if may_hold(word) {
            if let Some(i) = chunk.iter().position(|&b| is(b)) {
                return Some(offset + i);
            }
        }
        offset += 8;
    }
    chunks.remainder().iter().position(|&b| is(b)).map(|i| offset + i)
}

/// Whether a byte of `word` equals `b`: a zero byte of `word ^ b…b` borrows into its high bit.
fn has_byte(word: u64, b: u8) -> bool {
    let x = word ^ (ONES * b as u64);
    x.wrapping_sub(ONES) & !x & HIGH_BITS != 0
}

/// Whether a byte of `word` lies in `lo..=hi` (both ASCII, `lo` > 0): per byte, `127 + hi + 1 -
/// low7` keeps its high bit when the byte is at most `hi`, `low7 + 127 - (lo - 1)` sets it when
/// the byte is at least `lo`; no byte carries into the next. Bytes over 127 are left out by `!word`.
fn has_between(word: u64, lo: u8, hi: u8) -> bool {
    let low7 = word & (ONES * 127);
    (ONES * (128 + hi as u64)).wrapping_sub(low7) & !word & (low7 + ONES * (128 - lo as u64)) & HIGH_BITS != 0
}

// === Helpers shared by the matchers ===

/// Bytes that make up words: a match must not start or end inside one.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether the byte at `i` is the letter of a `\n`, `\r` or `\t` escape. Values often hold JSON or
/// log text with escaped line breaks, and in "line\n4111…" the card number follows a line break
/// even though an `n` comes before it.
fn is_escape_letter(text: &[u8], i: usize) -> bool {
    i >= 1 && text[i - 1] == b'\\' && matches!(text[i], b'n' | b'r' | b't')
}

/// Whether a match may start at `start`: at the start of the text or after a non-word byte.
fn word_start(text: &[u8], start: usize) -> bool {
    start == 0 || !is_word(text[start - 1]) || is_escape_letter(text, start - 1)
}

/// Whether a match may end at `end`: at the end of the text or before a non-word byte.
fn word_end(text: &[u8], end: usize) -> bool {
    end == text.len() || !is_word(text[end])
}

/// Whether a number may start at `start`: at a word start, and not right after a digit and a `.`
/// or `-` (the rest of "3.14159…" or "2024-…" is not a number of its own). A comma separates: in
/// CSV, "42,4111111111111111" holds a card number.
fn number_start(text: &[u8], start: usize) -> bool {
    word_start(text, start) && !(start >= 2 && matches!(text[start - 1], b'.' | b'-') && text[start - 2].is_ascii_digit())
}

/// Whether a number may end at `end`: at a word end, and not followed by one of `continuations`
/// and a digit (which would make it part of a longer number, "1.2.3.4.5" or "555-123-4567-89").
fn number_end(text: &[u8], end: usize, continuations: &[u8]) -> bool {
    word_end(text, end) && !(end + 1 < text.len() && continuations.contains(&text[end]) && text[end + 1].is_ascii_digit())
}

/// How many bytes from `at` satisfy `class`.
fn run_len(text: &[u8], at: usize, class: impl Fn(u8) -> bool) -> usize {
    text.get(at..).map_or(0, |rest| rest.iter().take_while(|&&b| class(b)).count())
}

/// How many ASCII digits start at `at`.
fn digits_at(text: &[u8], at: usize) -> usize {
    run_len(text, at, |b| b.is_ascii_digit())
}

fn next_digit(text: &[u8], from: usize) -> Option<usize> {
    find_first(text, from, |word| has_between(word, b'0', b'9'), |b| b.is_ascii_digit())
}

fn find_byte(text: &[u8], needle: u8, from: usize) -> Option<usize> {
    find_first(text, from, |word| has_byte(word, needle), |b| b == needle)
}

fn find_bytes(text: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(at) = find_byte(text, needle[0], i) {
        if text[at..].starts_with(needle) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

fn starts_with_at(text: &[u8], at: usize, literal: &[u8]) -> bool {
    text.get(at..).is_some_and(|rest| rest.starts_with(literal))
}

/// Shannon entropy in bits per byte: how unpredictable a string's bytes are. Random base64 of 40
/// characters scores about 4.7 to 5; hex digests stay at or below 4, single English words near 3.
fn entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| -p * p.log2()).sum()
}

/// `matched` with each character of `class` replaced by `*` unless `shown(i, n)` (the character
/// is the `i`th of `n` in the class, from 1); other characters, separators mostly, stay.
fn mask_chars(matched: &str, class: fn(&char) -> bool, shown: impl Fn(usize, usize) -> bool) -> String {
    let n = matched.chars().filter(class).count();
    let mut i = 0;
    matched
        .chars()
        .map(|c| {
            if !class(&c) {
                return c;
            }
            i += 1;
            if shown(i, n) {
                c
            } else {
                '*'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
