//! The census of [`super::Seen`] and its digit groups, sixteen bytes at a time. Byte classes come
//! from nibble tables: a byte is in class `i` when the table of its low nibble and the table of its
//! high nibble both have bit `i`, which with one byte per class is exactly that byte; ranges
//! (digits, capitals) are two comparisons. What a pass finds ends up as bit masks and counts.
//!
//! `wide` gives the vector types in safe code, with plain-Rust fallbacks where a CPU lacks an
//! instruction, so the results are the same on every target. The workspace builds x86-64 for
//! x86-64-v2 (`.cargo/config.toml`): a table lookup is then one `pshufb` (docs/BENCHMARKS.md,
//! masking, for what the census and the digit groups cost).

use wide::{u16x8, u8x16};

use super::{keys, secret, LONGEST_NUMBER_GROUP, TRIGGERS, TWELVE_DIGIT_CARD};

/// What one pass over a text found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Census {
    /// Bit `t` when `TRIGGERS[t]` occurs.
    pub triggers: u16,
    /// How many ASCII digits: a number needs as many as its longest group at least.
    pub digits: usize,
    /// How many ASCII capitals: an IBAN starts with two, a National Insurance number has three.
    pub uppers: usize,
    /// Whether a small ASCII letter occurs.
    pub lowers: bool,
    /// Bit `p` when pair `p` of [`PAIR_FIRSTS`]/[`PAIR_SECONDS`] occurs as two adjacent bytes, in
    /// either case (only when asked to look).
    pub pairs: u16,
}

/// How many of the pairs are the secret-name pairs ([`secret::PAIRS`]); the API key prefix pairs
/// ([`keys::API_KEY_PAIRS`]) follow them.
pub(super) const SECRET_PAIRS: usize = secret::PAIRS.len();
const N_PAIRS: usize = secret::PAIRS.len() + keys::API_KEY_PAIRS.len();
const PAIR_FIRSTS: [u8; N_PAIRS] = pair_letters(0);
const PAIR_SECONDS: [u8; N_PAIRS] = pair_letters(1);

const fn pair_letters(index: usize) -> [u8; N_PAIRS] {
    let mut letters = [0u8; N_PAIRS];
    let mut p = 0;
    while p < N_PAIRS {
        let b = if p < SECRET_PAIRS { secret::PAIRS[p][index] } else { keys::API_KEY_PAIRS[p - SECRET_PAIRS][index] };
        // Pairs are compared on bytes with bit 5 set, which makes capitals small letters and
        // no other byte a letter: "either case" holds for small letters only.
        assert!(b.is_ascii_lowercase(), "letter pairs are written in small letters");
        letters[p] = b;
        p += 1;
    }
    letters
}

/// Eight byte classes of one byte each: bit `i` of `lo[b & 15] & hi[b >> 4]` says `b ==
/// bytes[from + i]`.
#[derive(Clone, Copy)]
struct NibbleTable {
    lo: [u8; 16],
    hi: [u8; 16],
}

const fn nibble_table(bytes: &[u8], from: usize) -> NibbleTable {
    let mut table = NibbleTable { lo: [0; 16], hi: [0; 16] };
    let mut i = 0;
    while i < 8 && from + i < bytes.len() {
        let b = bytes[from + i];
        table.lo[(b & 15) as usize] |= 1 << i;
        table.hi[(b >> 4) as usize] |= 1 << i;
        i += 1;
    }
    table
}

const _: () = assert!(TRIGGERS.len() <= 16 && N_PAIRS <= 16, "two tables of eight classes each");
const TRIGGERS_LOW: NibbleTable = nibble_table(&TRIGGERS, 0);
const TRIGGERS_HIGH: NibbleTable = nibble_table(&TRIGGERS, 8);
const FIRSTS_LOW: NibbleTable = nibble_table(&PAIR_FIRSTS, 0);
const FIRSTS_HIGH: NibbleTable = nibble_table(&PAIR_FIRSTS, 8);
const SECONDS_LOW: NibbleTable = nibble_table(&PAIR_SECONDS, 0);
const SECONDS_HIGH: NibbleTable = nibble_table(&PAIR_SECONDS, 8);

/// A table's classes of the bytes whose nibbles are given.
#[inline(always)]
fn classes(table: &NibbleTable, lo: u8x16, hi: u8x16) -> u8x16 {
    u8x16::new(table.lo).shuffle(lo) & u8x16::new(table.hi).shuffle(hi)
}

/// The low and the high nibble of each byte.
#[inline(always)]
fn nibbles(v: u8x16) -> (u8x16, u8x16) {
    let fifteen = u8x16::splat(15);
    let shifted: u8x16 = wide::bytemuck::cast(wide::bytemuck::cast::<u8x16, u16x8>(v).unbounded_shr_scalar(4));
    (v & fifteen, shifted & fifteen)
}

/// One bit per byte: whether it lies in `lo..=hi`.
#[inline(always)]
fn in_range(v: u8x16, lo: u8, hi: u8) -> u32 {
    let offset = v - u8x16::splat(lo);
    offset.min(u8x16::splat(hi - lo)).simd_eq(offset).to_bitmask()
}

#[inline(always)]
fn load(bytes: &[u8]) -> u8x16 {
    u8x16::new(bytes[..16].try_into().expect("sixteen bytes"))
}

/// The census of `text`; letter pairs are looked for only when `pairs` is true.
pub(super) fn census(text: &[u8], pairs: bool) -> Census {
    let mut pass = Pass::default();
    let mut at = 0;
    if pairs {
        // Each chunk is compared with the chunk one byte on, which must be in the text too.
        while at + 17 <= text.len() {
            pass.add(load(&text[at..]), Some(load(&text[at + 1..])));
            at += 16;
        }
    } else {
        while at + 16 <= text.len() {
            pass.add(load(&text[at..]), None);
            at += 16;
        }
    }
    if at < text.len() {
        // The rest, followed by zeros: no letter, digit or trigger.
        let mut tail = [0u8; 33];
        tail[..text.len() - at].copy_from_slice(&text[at..]);
        pass.add(load(&tail), pairs.then(|| load(&tail[1..])));
    }
    pass.finish()
}

/// The running state of [`census`]: class bits ORed lane by lane, counts.
struct Pass {
    triggers: [u8x16; 2],
    pairs: [u8x16; 2],
    lowers: u32,
    digits: usize,
    uppers: usize,
}

impl Default for Pass {
    fn default() -> Pass {
        Pass { triggers: [u8x16::ZERO; 2], pairs: [u8x16::ZERO; 2], lowers: 0, digits: 0, uppers: 0 }
    }
}

impl Pass {
    #[inline(always)]
    fn add(&mut self, v: u8x16, next: Option<u8x16>) {
        let (lo, hi) = nibbles(v);
        self.triggers[0] |= classes(&TRIGGERS_LOW, lo, hi);
        self.triggers[1] |= classes(&TRIGGERS_HIGH, lo, hi);
        self.digits += in_range(v, b'0', b'9').count_ones() as usize;
        self.uppers += in_range(v, b'A', b'Z').count_ones() as usize;
        self.lowers |= in_range(v, b'a', b'z');
        if let Some(next) = next {
            // Bit 5 set makes capitals small letters; in the high nibble it is bit 1.
            let two = u8x16::splat(2);
            let (next_lo, next_hi) = nibbles(next);
            let (hi, next_hi) = (hi | two, next_hi | two);
            self.pairs[0] |= classes(&FIRSTS_LOW, lo, hi) & classes(&SECONDS_LOW, next_lo, next_hi);
            self.pairs[1] |= classes(&FIRSTS_HIGH, lo, hi) & classes(&SECONDS_HIGH, next_lo, next_hi);
        }
    }

    fn finish(self) -> Census {
        // The lanes ORed together: as two words, then halving (a loop over the lanes cost as
        // much as the rest of a short value's census).
        let or = |lanes: u8x16| {
            let [low, high]: [u64; 2] = wide::bytemuck::cast(lanes);
            let mut bits = low | high;
            bits |= bits >> 32;
            bits |= bits >> 16;
            bits |= bits >> 8;
            (bits & 0xff) as u16
        };
        Census {
            triggers: or(self.triggers[0]) | or(self.triggers[1]) << 8,
            digits: self.digits,
            uppers: self.uppers,
            lowers: self.lowers != 0,
            pairs: or(self.pairs[0]) | or(self.pairs[1]) << 8,
        }
    }
}

/// The most digits in one group of `text`, counted up to [`LONGEST_NUMBER_GROUP`]: digits joined
/// by single spaces, dashes or dots (see `Seen::digit_group`), a group of twelve weighed as eleven
/// unless its first digit is one a twelve-digit card starts with. Sixty-four bytes at a time: a
/// mask of digits and one of separators that follow a digit make the groups' bytes, and each run
/// of those counts its digits.
pub(super) fn longest_digit_group(text: &[u8]) -> usize {
    let (twelve, card_firsts) = TWELVE_DIGIT_CARD;
    // The digits of the group the last block ended in, and its first digit.
    let (mut longest, mut open, mut open_first, mut digit_before) = (0u32, 0u32, 0u8, 0u64);
    for block in text.chunks(64) {
        let (digits, separators) = block_masks(block);
        let all_grouped = digits | separators & (digits << 1 | digit_before);
        let (mut grouped, mut still_open) = (all_grouped, 0);
        while grouped != 0 {
            // The lowest run of set bits: adding its lowest bit carries through it.
            let lowest = grouped & grouped.wrapping_neg();
            let run = grouped & !grouped.wrapping_add(lowest);
            // A run from the block's first byte goes on with the group the last block ended in.
            let count = (digits & run).count_ones() + if lowest == 1 { open } else { 0 };
            if run >> 63 == 1 {
                still_open = count;
            }
            let weight = if count as usize == twelve {
                // Rare: only now is the group's first digit looked up.
                let first = if lowest == 1 && open > 0 { open_first } else { block[lowest.trailing_zeros() as usize] };
                count - u32::from(!card_firsts.contains(&first))
            } else {
                count
            };
            longest = longest.max(weight);
            grouped ^= run;
        }
        if longest as usize >= LONGEST_NUMBER_GROUP {
            return LONGEST_NUMBER_GROUP;
        }
        if still_open > 0 {
            // The run that reaches the block's end starts after the last byte outside a group.
            let start = 64 - (!all_grouped).leading_zeros() as usize;
            open_first = if start == 0 && open > 0 { open_first } else { block[start] };
        }
        open = still_open;
        digit_before = digits >> 63;
    }
    longest as usize
}

/// The digits and the separators (space, `-`, `.`) of up to 64 bytes, one bit each.
#[inline(always)]
fn block_masks(block: &[u8]) -> (u64, u64) {
    let (mut digits, mut separators) = (0u64, 0u64);
    for (i, chunk) in block.chunks(16).enumerate() {
        let v = if chunk.len() == 16 {
            load(chunk)
        } else {
            let mut padded = [0u8; 16];
            padded[..chunk.len()].copy_from_slice(chunk);
            load(&padded)
        };
        let separator = v.simd_eq(u8x16::splat(b' ')) | v.simd_eq(u8x16::splat(b'-')) | v.simd_eq(u8x16::splat(b'.'));
        digits |= u64::from(in_range(v, b'0', b'9')) << (16 * i);
        separators |= u64::from(separator.to_bitmask()) << (16 * i);
    }
    (digits, separators)
}
