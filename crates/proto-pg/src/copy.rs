//! COPY data counted as rows, whatever splits it into messages: text lines (a data newline is
//! always escaped there), CSV lines whose quoted fields may hold newlines, and binary tuples. A
//! header line and the old end-of-data marker (`\.` on a line of its own) are not rows. The data
//! itself is not kept: only counts leave this module.
//!
//! The counts are witness's reading of the client's data; the target's own count is in the
//! command tag (`COPY n`) of the result.

mod format;

pub use format::{copy_format, CopyFormat};

/// The signature a binary COPY stream starts with.
const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// What was counted of one COPY stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCount {
    pub bytes: u64,
    pub rows: u64,
    pub messages: u64,
}

/// Counts the rows of one COPY stream, fed its CopyData bodies in order.
#[derive(Debug)]
pub struct CopyRows {
    count: CopyCount,
    reader: Reader,
}

#[derive(Debug)]
enum Reader {
    Lines(Lines),
    Binary(Binary),
}

/// Text and CSV: rows end at newlines outside quotes.
#[derive(Debug)]
struct Lines {
    /// CSV quote and escape characters; None for text format.
    csv: Option<(u8, u8)>,
    /// The next line is a header, not a row.
    header: bool,
    in_quotes: bool,
    /// The last byte was the escape character inside quotes (CSV with an escape other than the
    /// quote): the next byte is taken literally.
    escaped: bool,
    /// The current line's first bytes (up to 3), to tell the `\.` marker from a row.
    start: [u8; 3],
    /// Bytes of the current line so far.
    line_len: u64,
    /// The end-of-data marker was seen: nothing after it is data.
    ended: bool,
}

/// Binary format: a header, then tuples of a field count and length-prefixed fields.
#[derive(Debug)]
struct Binary {
    state: BinaryState,
    /// Bytes of a number being read across CopyData messages.
    pending: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum BinaryState {
    /// The signature, flags and extension length (19 bytes).
    Header,
    /// Skipping the header extension.
    Extension(u64),
    /// A tuple's field count (2 bytes).
    FieldCount,
    /// A field's length (4 bytes); `left` fields of the tuple remain after this one.
    FieldLength { left: u16 },
    /// Skipping a field's data.
    FieldData { data: u64, left: u16 },
    /// The trailer (-1) was read, or the stream is not binary COPY: nothing more counts.
    Done,
}

impl CopyRows {
    pub fn new(format: CopyFormat) -> CopyRows {
        let reader = match format {
            CopyFormat::Text { header } => Reader::Lines(Lines::new(None, header)),
            CopyFormat::Csv { header, quote, escape } => Reader::Lines(Lines::new(Some((quote, escape)), header)),
            CopyFormat::Binary => Reader::Binary(Binary { state: BinaryState::Header, pending: Vec::new() }),
        };
        CopyRows { count: CopyCount::default(), reader }
    }

    /// Takes one CopyData message's body.
    pub fn add(&mut self, data: &[u8]) {
        self.count.bytes += data.len() as u64;
        self.count.messages += 1;
        self.count.rows += match &mut self.reader {
            Reader::Lines(lines) => lines.add(data),
            Reader::Binary(binary) => binary.add(data),
        };
    }

    /// The counts once the stream has ended (a last line without a newline is a row too).
    pub fn finish(mut self) -> CopyCount {
        if let Reader::Lines(lines) = &mut self.reader {
            self.count.rows += lines.end_line();
        }
        self.count
    }
}

impl Lines {
    fn new(csv: Option<(u8, u8)>, header: bool) -> Lines {
        Lines { csv, header, in_quotes: false, escaped: false, start: [0; 3], line_len: 0, ended: false }
    }

    fn add(&mut self, data: &[u8]) -> u64 {
        let mut rows = 0;
        for &b in data {
            if self.ended {
                break;
            }
            if let Some((quote, escape)) = self.csv {
                if self.escaped {
                    self.escaped = false;
                } else if self.in_quotes && escape != quote && b == escape {
                    self.escaped = true;
                } else if b == quote {
                    // With the escape equal to the quote, `""` inside quotes closes and opens again.
                    self.in_quotes = !self.in_quotes;
                }
            }
            if b == b'\n' && !self.in_quotes {
                rows += self.end_line();
                continue;
            }
            if self.line_len < 3 {
                self.start[self.line_len as usize] = b;
            }
            self.line_len += 1;
        }
        rows
    }

    /// Ends the current line: 1 if it was a row.
    fn end_line(&mut self) -> u64 {
        let len = self.line_len;
        self.line_len = 0;
        if len == 0 || self.ended {
            return 0;
        }
        let marker = (len == 2 && self.start[..2] == *b"\\.") || (len == 3 && self.start == *b"\\.\r");
        if marker {
            self.ended = true;
            return 0;
        }
        if std::mem::take(&mut self.header) {
            return 0;
        }
        1
    }
}

impl Binary {
    fn add(&mut self, mut data: &[u8]) -> u64 {
        let mut rows = 0;
        while !data.is_empty() {
            match self.state {
                BinaryState::Done => break,
                BinaryState::Extension(left) | BinaryState::FieldData { data: left, .. } => {
                    let skipped = left.min(data.len() as u64);
                    data = &data[skipped as usize..];
                    let left = left - skipped;
                    if left == 0 {
                        self.state = match self.state {
                            BinaryState::FieldData { left: 0, .. } | BinaryState::Extension(_) => BinaryState::FieldCount,
                            BinaryState::FieldData { left, .. } => BinaryState::FieldLength { left: left - 1 },
                            other => other,
                        };
                    } else {
                        self.state = match self.state {
                            BinaryState::Extension(_) => BinaryState::Extension(left),
                            BinaryState::FieldData { left: fields, .. } => BinaryState::FieldData { data: left, left: fields },
                            other => other,
                        };
                    }
                }
                BinaryState::Header | BinaryState::FieldCount | BinaryState::FieldLength { .. } => {
                    let need = match self.state {
                        BinaryState::Header => 19,
                        BinaryState::FieldCount => 2,
                        _ => 4,
                    };
                    let take = (need - self.pending.len()).min(data.len());
                    self.pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.pending.len() < need {
                        break;
                    }
                    let number = std::mem::take(&mut self.pending);
                    self.state = match self.state {
                        BinaryState::Header if number[..11] != BINARY_SIGNATURE[..] => BinaryState::Done,
                        BinaryState::Header => {
                            BinaryState::Extension(u32::from_be_bytes([number[15], number[16], number[17], number[18]]) as u64)
                        }
                        BinaryState::FieldCount => match i16::from_be_bytes([number[0], number[1]]) {
                            -1 => BinaryState::Done,
                            n if n < 0 => BinaryState::Done,
                            0 => {
                                rows += 1;
                                BinaryState::FieldCount
                            }
                            n => {
                                rows += 1;
                                BinaryState::FieldLength { left: n as u16 - 1 }
                            }
                        },
                        BinaryState::FieldLength { left } => match i32::from_be_bytes([number[0], number[1], number[2], number[3]]) {
                            len if len <= 0 && left == 0 => BinaryState::FieldCount,
                            len if len <= 0 => BinaryState::FieldLength { left: left - 1 },
                            len => BinaryState::FieldData { data: len as u64, left },
                        },
                        other => other,
                    };
                }
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts `data` cut into messages at every `cut` bytes, and checks the count does not depend
    /// on where the cuts fall.
    fn rows(format: CopyFormat, data: &[u8]) -> u64 {
        let whole = {
            let mut counter = CopyRows::new(format);
            counter.add(data);
            counter.finish().rows
        };
        for cut in 1..=7 {
            let mut counter = CopyRows::new(format);
            for piece in data.chunks(cut) {
                counter.add(piece);
            }
            assert_eq!(counter.finish().rows, whole, "cut every {cut} bytes: {data:?}");
        }
        whole
    }

    #[test]
    fn text_rows_are_lines_without_the_header_and_end_marker() {
        let text = CopyFormat::Text { header: false };
        assert_eq!(rows(text, b"1\ta\n2\tb\\nstill b\n"), 2);
        assert_eq!(rows(text, b"1\ta\n2\tb"), 2, "a last line without a newline is a row");
        assert_eq!(rows(text, b"1\ta\n\\.\n"), 1);
        assert_eq!(rows(text, b"1\ta\r\n\\.\r\n"), 1);
        assert_eq!(rows(text, b"\\.\n3\tafter the end\n"), 0);
        assert_eq!(rows(text, b"\\.x\n"), 1, "a line that only starts like the marker is data");
        assert_eq!(rows(text, b"\\.\rx\n"), 1);
        assert_eq!(rows(CopyFormat::Text { header: true }, b"id\tname\n1\ta\n"), 1);
        assert_eq!(rows(text, b""), 0);
    }

    #[test]
    fn csv_rows_end_at_newlines_outside_quotes() {
        let csv = CopyFormat::Csv { header: false, quote: b'"', escape: b'"' };
        assert_eq!(rows(csv, b"1,\"two\nlines\"\n2,\"say \"\"hi\"\"\nthere\"\n"), 2);
        assert_eq!(rows(CopyFormat::Csv { header: true, quote: b'"', escape: b'"' }, b"id,note\n1,\"a\nb\"\n"), 1);
        let backslash = CopyFormat::Csv { header: false, quote: b'"', escape: b'\\' };
        assert_eq!(rows(backslash, b"1,\"a \\\" still quoted\nb\"\n2,x\n"), 2);
        assert_eq!(rows(csv, b"1,a\n\\.\n"), 1);
        assert_eq!(rows(csv, b"1,\"\\.\n\"\n"), 1, "the marker inside quotes is data");
    }

    #[test]
    fn binary_rows_are_tuples() {
        let mut data = BINARY_SIGNATURE.to_vec();
        data.extend_from_slice(&0u32.to_be_bytes());
        data.extend_from_slice(&4u32.to_be_bytes());
        data.extend_from_slice(b"\n\n\n\n");
        for value in [&b"a\nb"[..], b"\n"] {
            data.extend_from_slice(&2i16.to_be_bytes());
            data.extend_from_slice(&(value.len() as i32).to_be_bytes());
            data.extend_from_slice(value);
            data.extend_from_slice(&(-1i32).to_be_bytes());
        }
        data.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(rows(CopyFormat::Binary, &data), 2);
        assert_eq!(rows(CopyFormat::Binary, b"not binary copy at all\n\n\n"), 0);
    }
}
