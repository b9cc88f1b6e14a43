//! The card networks whose numbers carry a Luhn check digit: which number prefixes (IIN ranges)
//! each issues, at which lengths. The table follows the issuer identification number (IIN) table
//! of Wikipedia's "Payment card number" article, written down from it as data.
//!
//! Not here: networks whose numbers have no Luhn check digit (Diners Club enRoute) or that no
//! longer issue cards (Bankcard, Laser, Solo, Switch), the old UnionPay numbers issued without a
//! check digit, and anything about a number beyond its network (bank, country, card type).

/// Whether a card network issues numbers of these digits: their prefix and their length.
/// `digits` holds 12 to 19 ASCII digits.
pub(super) fn issued(digits: &[u8]) -> bool {
    let iin = digits[..IIN_DIGITS].iter().fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
    let length = 1u32 << digits.len();
    ISSUERS.iter().any(|issuer| issuer.lengths & length != 0 && issuer.first <= iin && iin <= issuer.last)
}

/// How many leading digits the ranges are written with: the longest prefix in the table
/// (UkrCard's `60400100`), and fewer than the shortest number (Maestro's 12 digits).
const IIN_DIGITS: usize = 8;

/// One IIN range of a network: numbers whose first eight digits lie in `first..=last`, at the
/// lengths set in `lengths` (bit `n`: `n` digits).
#[derive(Clone, Copy, Debug)]
pub(in crate::detect) struct Issuer {
    /// Whose range it is: for the reader, and for the tests' messages.
    #[cfg_attr(not(test), expect(dead_code, reason = "only the tests print it"))]
    pub network: &'static str,
    pub first: u32,
    pub last: u32,
    pub lengths: u32,
}

/// The ranges, most common networks first (a search stops at the first range that fits). Ranges
/// overlap where networks share prefixes (RuPay and Discover in 65, Elo within Visa's 4): a
/// number is a card when any range fits it.
pub(in crate::detect) const ISSUERS: &[Issuer] = &[
    issuer("Visa", "4", "4", &[13, 16, 19]),
    issuer("Mastercard", "51", "55", &[16]),
    issuer("Mastercard", "2221", "2720", &[16]),
    issuer("American Express", "34", "34", &[15]),
    issuer("American Express", "37", "37", &[15]),
    issuer("Discover", "6011", "6011", SIXTEEN_TO_NINETEEN),
    issuer("Discover", "644", "649", SIXTEEN_TO_NINETEEN),
    issuer("Discover", "65", "65", SIXTEEN_TO_NINETEEN),
    issuer("Discover", "622126", "622925", SIXTEEN_TO_NINETEEN),
    issuer("UnionPay", "62", "62", SIXTEEN_TO_NINETEEN),
    issuer("UnionPay", "81", "81", SIXTEEN_TO_NINETEEN),
    issuer("JCB", "3528", "3589", SIXTEEN_TO_NINETEEN),
    issuer("Diners Club", "300", "305", FOURTEEN_TO_NINETEEN),
    issuer("Diners Club", "3095", "3095", FOURTEEN_TO_NINETEEN),
    issuer("Diners Club", "36", "36", FOURTEEN_TO_NINETEEN),
    issuer("Diners Club", "38", "39", FOURTEEN_TO_NINETEEN),
    issuer("Maestro", "5018", "5018", TWELVE_TO_NINETEEN),
    issuer("Maestro", "5020", "5020", TWELVE_TO_NINETEEN),
    issuer("Maestro", "5038", "5038", TWELVE_TO_NINETEEN),
    issuer("Maestro", "5893", "5893", TWELVE_TO_NINETEEN),
    issuer("Maestro", "6304", "6304", TWELVE_TO_NINETEEN),
    issuer("Maestro", "6759", "6759", TWELVE_TO_NINETEEN),
    issuer("Maestro", "6761", "6763", TWELVE_TO_NINETEEN),
    issuer("Maestro UK", "676770", "676770", TWELVE_TO_NINETEEN),
    issuer("Maestro UK", "676774", "676774", TWELVE_TO_NINETEEN),
    issuer("Mir", "2200", "2204", SIXTEEN_TO_NINETEEN),
    issuer("RuPay", "60", "60", &[16]),
    issuer("RuPay", "65", "65", &[16]),
    issuer("RuPay", "81", "82", &[16]),
    issuer("RuPay", "508", "508", &[16]),
    issuer("RuPay", "353", "353", &[16]),
    issuer("RuPay", "356", "356", &[16]),
    issuer("Elo", "401178", "401179", &[16]),
    issuer("Elo", "431274", "431274", &[16]),
    issuer("Elo", "438935", "438935", &[16]),
    issuer("Elo", "451416", "451416", &[16]),
    issuer("Elo", "457393", "457393", &[16]),
    issuer("Elo", "457631", "457632", &[16]),
    issuer("Elo", "504175", "504175", &[16]),
    issuer("Elo", "506699", "506778", &[16]),
    issuer("Elo", "509000", "509999", &[16]),
    issuer("Elo", "627780", "627780", &[16]),
    issuer("Elo", "636297", "636297", &[16]),
    issuer("Elo", "636368", "636368", &[16]),
    issuer("Elo", "650031", "650033", &[16]),
    issuer("Elo", "650035", "650051", &[16]),
    issuer("Elo", "650405", "650439", &[16]),
    issuer("Elo", "650485", "650538", &[16]),
    issuer("Elo", "650541", "650598", &[16]),
    issuer("Elo", "650700", "650718", &[16]),
    issuer("Elo", "650720", "650727", &[16]),
    issuer("Elo", "650901", "650978", &[16]),
    issuer("Elo", "651652", "651679", &[16]),
    issuer("Elo", "655000", "655019", &[16]),
    issuer("Elo", "655021", "655058", &[16]),
    issuer("Hipercard", "606282", "606282", &[16]),
    issuer("Verve", "506099", "506198", &[16, 18, 19]),
    issuer("Verve", "507865", "507964", &[16, 18, 19]),
    issuer("Verve", "650002", "650027", &[16, 18, 19]),
    issuer("Troy", "9792", "9792", &[16]),
    issuer("Dankort", "5019", "5019", &[16]),
    issuer("InterPayment", "636", "636", SIXTEEN_TO_NINETEEN),
    issuer("InstaPayment", "637", "639", &[16]),
    issuer("UATP", "1", "1", &[15]),
    issuer("BC Card", "6541", "6541", &[16]),
    issuer("BC Card", "6556", "6556", &[16]),
    issuer("NPS Pridnestrovie", "6054740", "6054744", &[16]),
    issuer("LankaPay", "357111", "357111", &[16]),
    issuer("Humo", "9860", "9860", &[16]),
    issuer("UzCard", "8600", "8600", &[16]),
    issuer("UzCard", "5614", "5614", &[16]),
    issuer("UkrCard", "60400100", "60420099", SIXTEEN_TO_NINETEEN),
    issuer("Borica", "2205", "2205", &[16]),
    issuer("Napas", "9704", "9704", &[16, 19]),
    issuer("GPN", "1946", "1946", &[16, 18, 19]),
    issuer("GPN", "50", "50", &[16, 18, 19]),
    issuer("GPN", "56", "56", &[16, 18, 19]),
    issuer("GPN", "58", "58", &[16, 18, 19]),
    issuer("GPN", "60", "63", &[16, 18, 19]),
    issuer("China T-Union", "31", "31", &[19]),
];

const TWELVE_TO_NINETEEN: &[u8] = &[12, 13, 14, 15, 16, 17, 18, 19];
const FOURTEEN_TO_NINETEEN: &[u8] = &[14, 15, 16, 17, 18, 19];
const SIXTEEN_TO_NINETEEN: &[u8] = &[16, 17, 18, 19];

/// A range from the prefix `first` to the prefix `last` (of the same number of digits): `first`
/// is widened with zeros and `last` with nines to [`IIN_DIGITS`] digits.
const fn issuer(network: &'static str, first: &str, last: &str, lengths: &[u8]) -> Issuer {
    assert!(first.len() == last.len() && first.len() <= IIN_DIGITS, "a range's ends have as many digits, eight at most");
    let mut mask = 0u32;
    let mut i = 0;
    while i < lengths.len() {
        assert!(lengths[i] >= 12 && lengths[i] <= 19, "card numbers have 12 to 19 digits");
        mask |= 1 << lengths[i];
        i += 1;
    }
    Issuer { network, first: widened(first, 0), last: widened(last, 9), lengths: mask }
}

const fn widened(prefix: &str, fill: u32) -> u32 {
    let bytes = prefix.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < IIN_DIGITS {
        let digit = if i < bytes.len() { bytes[i] - b'0' } else { fill as u8 };
        assert!(digit <= 9, "prefixes are digits");
        value = value * 10 + digit as u32;
        i += 1;
    }
    value
}
