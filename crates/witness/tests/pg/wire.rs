//! A PostgreSQL client that sends exactly the messages a test gives it, in the order and batches
//! it gives them: the sequences an adversarial client would send (pipelines across errors,
//! re-used names, settings that change how text is read), which no driver sends on purpose. It
//! logs in with a cleartext password (witness takes a token so over loopback when `[postgres]
//! auth = "password"`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One backend message: its type byte and body.
#[derive(Clone, Debug)]
pub struct Backend {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Backend {
    /// An ErrorResponse's or NoticeResponse's field (b'C' SQLSTATE, b'M' message, ...).
    pub fn field(&self, code: u8) -> Option<String> {
        let mut at = 0;
        while at < self.body.len() && self.body[at] != 0 {
            let end = self.body[at + 1..].iter().position(|&b| b == 0).map_or(self.body.len(), |p| at + 1 + p);
            if self.body[at] == code {
                return Some(String::from_utf8_lossy(&self.body[at + 1..end]).into_owned());
            }
            at = end + 1;
        }
        None
    }

    /// A DataRow's values as text (NULL as None).
    pub fn row(&self) -> Vec<Option<String>> {
        let n = u16::from_be_bytes([self.body[0], self.body[1]]) as usize;
        let mut at = 2;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let len = i32::from_be_bytes(self.body[at..at + 4].try_into().unwrap());
            at += 4;
            if len < 0 {
                values.push(None);
            } else {
                values.push(Some(String::from_utf8_lossy(&self.body[at..at + len as usize]).into_owned()));
                at += len as usize;
            }
        }
        values
    }
}

pub struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A startup packet (protocol 3.0) with these parameters.
pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (key, value) in params {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

impl Wire {
    /// Connects to witness on `port` and logs in to `database` (the connection) as `user`.
    pub fn connect(port: u16, database: &str, user: &str, password: &str, params: &[(&str, &str)]) -> Result<Wire, Backend> {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut wire = Wire { stream, buf: Vec::new() };
        let params: Vec<(&str, &str)> = [("user", user), ("database", database)].iter().chain(params).copied().collect();
        wire.stream.write_all(&startup_packet(&params)).unwrap();
        loop {
            let msg = wire.read();
            match msg.tag {
                b'R' if msg.body[..4] == 3i32.to_be_bytes() => wire.send(&[password_message(password)]),
                b'R' => {}
                b'E' => return Err(msg),
                b'Z' => return Ok(wire),
                _ => {}
            }
        }
    }

    /// Sends the messages in one write.
    pub fn send(&mut self, messages: &[Vec<u8>]) {
        self.stream.write_all(&messages.concat()).unwrap();
    }

    /// Reads one message.
    pub fn read(&mut self) -> Backend {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let msg = Backend { tag: self.buf[0], body: self.buf[5..1 + len].to_vec() };
                    self.buf.drain(..1 + len);
                    return msg;
                }
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until `n` ReadyForQuery messages have arrived; returns everything read.
    pub fn until_ready(&mut self, n: usize) -> Vec<Backend> {
        let mut read = Vec::new();
        let mut ready = 0;
        while ready < n {
            let msg = self.read();
            ready += usize::from(msg.tag == b'Z');
            read.push(msg);
        }
        read
    }

    /// Sends the messages and reads until `n` ReadyForQuery messages.
    pub fn exchange(&mut self, messages: &[Vec<u8>], n: usize) -> Vec<Backend> {
        self.send(messages);
        self.until_ready(n)
    }

    /// Runs one simple query; returns its rows (panics on an error).
    pub fn query(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        let answer = self.exchange(&[query(sql)], 1);
        if let Some(error) = answer.iter().find(|m| m.tag == b'E') {
            panic!("{sql}: {:?}", error.field(b'M'));
        }
        answer.iter().filter(|m| m.tag == b'D').map(Backend::row).collect()
    }

    /// Ends the session politely.
    pub fn terminate(mut self) {
        let _ = self.stream.write_all(&message(b'X', &[]));
    }
}

/// A frontend message with its type byte and length.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(text);
    out.push(0);
}

fn password_message(password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, password.as_bytes());
    message(b'p', &body)
}

pub fn query(sql: &str) -> Vec<u8> {
    query_bytes(sql.as_bytes())
}

/// A simple Query of raw bytes (for texts in client encodings other than UTF-8).
pub fn query_bytes(sql: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, sql);
    message(b'Q', &body)
}

pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    parse_bytes(name, sql.as_bytes())
}

pub fn parse_bytes(name: &str, sql: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, name.as_bytes());
    cstr(&mut body, sql);
    body.extend_from_slice(&0i16.to_be_bytes());
    message(b'P', &body)
}

/// A Bind of text parameters, results in text.
pub fn bind(portal: &str, statement: &str, params: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal.as_bytes());
    cstr(&mut body, statement.as_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for param in params {
        body.extend_from_slice(&(param.len() as i32).to_be_bytes());
        body.extend_from_slice(param.as_bytes());
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    message(b'B', &body)
}

pub fn describe_portal(portal: &str) -> Vec<u8> {
    let mut body = vec![b'P'];
    cstr(&mut body, portal.as_bytes());
    message(b'D', &body)
}

pub fn describe_statement(name: &str) -> Vec<u8> {
    let mut body = vec![b'S'];
    cstr(&mut body, name.as_bytes());
    message(b'D', &body)
}

pub fn execute(portal: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal.as_bytes());
    body.extend_from_slice(&0i32.to_be_bytes());
    message(b'E', &body)
}

pub fn close_statement(name: &str) -> Vec<u8> {
    let mut body = vec![b'S'];
    cstr(&mut body, name.as_bytes());
    message(b'C', &body)
}

pub fn close_portal(name: &str) -> Vec<u8> {
    let mut body = vec![b'P'];
    cstr(&mut body, name.as_bytes());
    message(b'C', &body)
}

pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

pub fn flush() -> Vec<u8> {
    message(b'H', &[])
}
