//! The target credential goes only to the target: witness answers only the password exchanges a
//! connection's `auth` lists, so a server that asks for MD5 or a cleartext password (a real
//! target configured so, or a man in the middle that declined TLS) gets nothing unless the
//! connection names that method; over TLS, SCRAM is bound to the target's certificate.
//!
//! Real PostgreSQL for the methods and for channel binding that the target checks, and fake
//! targets (small TCP servers in this file) that record every byte witness sends them: a
//! downgrading one that declines TLS and asks for the password, and one that offers only
//! SCRAM-SHA-256-PLUS over TLS, to see the exact channel binding witness sends.

mod pg;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use pg::{assert_nowhere_in, psql, Gateway};
use sha2::{Digest, Sha256};
use witness_testkit::{Postgres, CLEARTEXT_PASSWORD, MD5_PASSWORD, SCRAM_PASSWORD};

/// A connection named `name` to `address` as `user`, with the password in `password_file`
/// and the rest of its keys in `extra`.
fn connection(name: &str, address: &str, user: &str, password_file: &std::path::Path, extra: &str) -> String {
    format!(
        "[[connections]]\nname = \"{name}\"\nprotocol = \"postgres\"\naddress = \"{address}\"\ndatabase = \"app\"\nuser = \"{user}\"\npassword_file = \"{}\"\n{extra}\n",
        password_file.display()
    )
}

/// Files holding the test passwords, one per role.
struct PasswordFiles {
    dir: tempfile::TempDir,
}

impl PasswordFiles {
    fn new() -> PasswordFiles {
        let dir = tempfile::tempdir().unwrap();
        for (name, password) in [("md5", MD5_PASSWORD), ("cleartext", CLEARTEXT_PASSWORD), ("scram", SCRAM_PASSWORD)] {
            std::fs::write(dir.path().join(name), format!("{password}\n")).unwrap();
        }
        PasswordFiles { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

#[test]
fn md5_and_cleartext_go_only_to_connections_that_list_them() {
    let pg = Postgres::start();
    let files = PasswordFiles::new();
    let address = format!("127.0.0.1:{}", pg.port());
    let connections = [
        connection("md5-default", &address, "md5_user", &files.path("md5"), "tls = \"disable\""),
        connection("md5-listed", &address, "md5_user", &files.path("md5"), "tls = \"disable\"\nauth = [\"scram-sha-256\", \"md5\"]"),
        connection("clear-default", &address, "cleartext_user", &files.path("cleartext"), "tls = \"require\""),
        connection("clear-listed", &address, "cleartext_user", &files.path("cleartext"), "tls = \"require\"\nauth = [\"password\"]"),
        connection("scram-only-md5", &address, "scram_user", &files.path("scram"), "auth = [\"md5\"]"),
    ];
    let mut gw = Gateway::start(&pg, &connections.concat());
    let token = gw.token("claude", &[]);
    let run = |connection: &str| psql(&gw.conninfo(connection, "claude", &token), &["-Atc", "select current_user"]);

    for (connection, asked, method) in [
        ("md5-default", "an MD5 password hash", "md5"),
        ("clear-default", "a cleartext password", "password"),
        ("scram-only-md5", "SCRAM-SHA-256", "scram-sha-256"),
    ] {
        let (ok, _, err) = run(connection);
        assert!(!ok, "{connection}: witness must not answer {asked}");
        let expected = format!("connection \"{connection}\": the target at {address} asks for {asked}, which the connection's auth does not list, so witness sent it no credential; if this is the real target, add \"{method}\" to the connection's auth");
        assert!(err.contains(&expected), "{connection}: {err}");
    }
    for (connection, user) in
        [("md5-listed", "md5_user"), ("clear-listed", "cleartext_user"), ("app-md5", "md5_user"), ("app", "scram_user")]
    {
        let (ok, out, err) = run(connection);
        assert!(ok && out.trim() == user, "{connection}: {out} {err}\n{}", gw.log());
    }
    let sessions = gw.ended_sessions(7);
    let refused = sessions.iter().filter(|s| s["end_reason"].as_str().unwrap_or("").contains("does not list")).count();
    assert_eq!(refused, 3, "the refused logins are recorded as the sessions' ends: {sessions:?}");
    gw.stop_and_verify();
    for password in [MD5_PASSWORD, CLEARTEXT_PASSWORD, SCRAM_PASSWORD] {
        assert_nowhere_in(&gw.data_dir(), password);
        assert!(!gw.log().contains(password));
    }
}

#[test]
fn scram_over_tls_is_bound_to_the_certificate_the_target_checks() {
    let pg = Postgres::start();
    let files = PasswordFiles::new();
    let ca = pg.server_cert().unwrap();
    let verified = format!("tls = \"verify-full\"\nca_file = \"{}\"\nchannel_binding = \"require\"", ca.display());
    let loopback = format!("127.0.0.1:{}", pg.port());
    let connections = [
        // PostgreSQL compares the binding with the hash of its own certificate and refuses the
        // login if they differ, so a session here shows witness bound to the right hash.
        connection("bound", &format!("localhost:{}", pg.port()), "scram_user", &files.path("scram"), &verified),
        connection("bound-any-cert", &loopback, "scram_user", &files.path("scram"), "tls = \"require\"\nchannel_binding = \"require\""),
        connection(
            "bound-md5",
            &loopback,
            "md5_user",
            &files.path("md5"),
            "tls = \"require\"\nchannel_binding = \"require\"\nauth = [\"scram-sha-256\", \"md5\"]",
        ),
        connection("unbound", &loopback, "scram_user", &files.path("scram"), "tls = \"require\"\nchannel_binding = \"disable\""),
    ];
    let gw = Gateway::start(&pg, &connections.concat());
    let token = gw.token("claude", &[]);
    let ssl = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
    for connection in ["bound", "bound-any-cert", "unbound"] {
        let (ok, out, err) = psql(&gw.conninfo(connection, "claude", &token), &["-Atc", ssl]);
        assert!(ok && out.trim() == "t", "{connection}: {out} {err}\n{}", gw.log());
    }
    let (ok, _, err) = psql(&gw.conninfo("bound-md5", "claude", &token), &["-Atc", "select 1"]);
    assert!(!ok, "channel_binding = \"require\" answers only SCRAM");
    assert!(
        err.contains(
            "connection \"bound-md5\": channel_binding is \"require\", but the target asked for an MD5 password hash instead of SCRAM"
        ),
        "{err}"
    );
}

/// What a fake target asks witness for once it has the startup packet.
#[derive(Clone, Copy)]
enum Ask {
    Cleartext,
    Md5,
    Scram,
    ScramPlusOnly,
}

/// Everything a fake target received from witness, after the TLS request.
struct Received {
    /// Every byte, in order (decrypted, when the fake spoke TLS).
    bytes: Vec<u8>,
    /// The tagged messages after the startup packet.
    messages: Vec<(u8, Vec<u8>)>,
    /// The fake's own certificate (DER), when it spoke TLS.
    certificate: Option<Vec<u8>>,
}

/// A fake target on a free loopback port that takes one connection: it answers the TLS request
/// with 'N' (or, with `tls`, 'S' and a TLS handshake with a self-signed certificate), reads the
/// startup packet and asks for `ask`. It keeps everything witness sends until witness leaves, or
/// until it has the password message (or, for SCRAM, the client's final message).
fn fake_target(tls: bool, ask: Ask) -> (String, JoinHandle<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut ssl_request = [0u8; 8];
        tcp.read_exact(&mut ssl_request).unwrap();
        assert_eq!(ssl_request, [0, 0, 0, 8, 4, 210, 22, 47], "witness asks for TLS first");
        if !tls {
            tcp.write_all(b"N").unwrap();
            return converse(tcp, ask, None);
        }
        tcp.write_all(b"S").unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let certificate = cert.der().to_vec();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key.into())
            .unwrap();
        let connection = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        converse(rustls::StreamOwned::new(connection, tcp), ask, Some(certificate))
    });
    (address, handle)
}

fn converse(mut stream: impl Read + Write, ask: Ask, certificate: Option<Vec<u8>>) -> Received {
    let mut received = Received { bytes: Vec::new(), messages: Vec::new(), certificate };
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
    stream.read_exact(&mut startup).unwrap();
    received.bytes.extend_from_slice(&len);
    received.bytes.extend_from_slice(&startup);
    let request: Vec<u8> = match ask {
        Ask::Cleartext => 3i32.to_be_bytes().to_vec(),
        Ask::Md5 => [&5i32.to_be_bytes()[..], b"salt"].concat(),
        Ask::Scram => [&10i32.to_be_bytes()[..], b"SCRAM-SHA-256\0\0"].concat(),
        Ask::ScramPlusOnly => [&10i32.to_be_bytes()[..], b"SCRAM-SHA-256-PLUS\0\0"].concat(),
    };
    send_auth(&mut stream, &request);
    loop {
        let mut header = [0u8; 5];
        if stream.read_exact(&mut header).is_err() {
            return received; // witness left
        }
        let mut body = vec![0u8; u32::from_be_bytes(header[1..].try_into().unwrap()) as usize - 4];
        stream.read_exact(&mut body).unwrap();
        received.bytes.extend_from_slice(&header);
        received.bytes.extend_from_slice(&body);
        received.messages.push((header[0], body.clone()));
        let scram_first = matches!(ask, Ask::Scram | Ask::ScramPlusOnly) && received.messages.len() == 1;
        if !scram_first {
            return received;
        }
        // SASLInitialResponse: mechanism, length, client-first-message. Answer with a
        // server-first-message so that witness sends its final message with the binding.
        let text = String::from_utf8_lossy(&body).into_owned();
        let client_nonce = text.split(",r=").nth(1).expect("the client's nonce").to_string();
        let server_first = format!("r={client_nonce}fake,s={},i=4096", B64.encode(b"fake-salt"));
        send_auth(&mut stream, &[&11i32.to_be_bytes()[..], server_first.as_bytes()].concat());
    }
}

fn send_auth(stream: &mut impl Write, body: &[u8]) {
    let mut message = vec![b'R'];
    message.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(body);
    stream.write_all(&message).unwrap();
    stream.flush().unwrap();
}

/// A gateway whose only extra connection is `name`, pointing at `address`, with the scram
/// password and `extra` keys.
fn gateway_for(pg: &Postgres, files: &PasswordFiles, name: &str, address: &str, extra: &str) -> Gateway {
    Gateway::start(pg, &connection(name, address, "scram_user", &files.path("scram"), extra))
}

#[test]
fn a_target_that_declines_tls_and_asks_for_the_password_gets_nothing() {
    let pg = Postgres::start();
    let files = PasswordFiles::new();
    for (ask, asked) in [(Ask::Cleartext, "a cleartext password"), (Ask::Md5, "an MD5 password hash")] {
        let (address, fake) = fake_target(false, ask);
        // Defaults: tls = "prefer", auth = ["scram-sha-256"].
        let gw = gateway_for(&pg, &files, "downgraded", &address, "");
        let token = gw.token("claude", &[]);
        let (ok, _, err) = psql(&gw.conninfo("downgraded", "claude", &token), &["-Atc", "select 1"]);
        let received = fake.join().unwrap();
        let password = SCRAM_PASSWORD.as_bytes();
        assert!(!received.bytes.windows(password.len()).any(|w| w == password), "the password reached the fake");
        assert!(received.messages.is_empty(), "witness answered the fake: {:?}", received.messages);
        assert!(!ok && err.contains(&format!("asks for {asked}, which the connection's auth does not list")), "{err}");
    }

    // channel_binding = "require": a target without TLS is asked nothing.
    let (address, fake) = fake_target(false, Ask::Scram);
    let gw = gateway_for(&pg, &files, "strict", &address, "channel_binding = \"require\"");
    let token = gw.token("claude", &[]);
    let (ok, _, err) = psql(&gw.conninfo("strict", "claude", &token), &["-Atc", "select 1"]);
    assert!(!ok && err.contains("channel_binding is \"require\", but the target does not offer SCRAM-SHA-256-PLUS"), "{err}");
    assert!(fake.join().unwrap().messages.is_empty(), "witness started no SCRAM exchange");
}

#[test]
fn witness_binds_scram_to_the_certificate_the_target_presented() {
    let pg = Postgres::start();
    let files = PasswordFiles::new();
    let (address, fake) = fake_target(true, Ask::ScramPlusOnly);
    // Defaults: tls = "prefer", channel_binding = "prefer".
    let gw = gateway_for(&pg, &files, "tls-fake", &address, "");
    let token = gw.token("claude", &[]);
    let (ok, _, _) = psql(&gw.conninfo("tls-fake", "claude", &token), &["-Atc", "select 1"]);
    assert!(!ok, "the fake never finishes the login");
    let received = fake.join().unwrap();
    let [(b'p', initial), (b'p', last)] = received.messages.as_slice() else {
        panic!("witness sent a SASL initial response and a final message: {:?}", received.messages)
    };
    let mechanism = b"SCRAM-SHA-256-PLUS\0";
    assert!(initial.starts_with(mechanism), "{:?}", String::from_utf8_lossy(initial));
    let client_first = String::from_utf8_lossy(&initial[mechanism.len() + 4..]).into_owned();
    assert!(client_first.starts_with("p=tls-server-end-point,,n=,r="), "{client_first}");
    let hash = Sha256::digest(received.certificate.unwrap());
    let expected = B64.encode([&b"p=tls-server-end-point,,"[..], &hash[..]].concat());
    let client_final = String::from_utf8_lossy(last).into_owned();
    assert!(client_final.starts_with(&format!("c={expected},r=")), "the binding is the SHA-256 of the certificate: {client_final}");
}
