//! Connections that never log in cannot keep anyone out: with small `[limits]`, a flood of
//! connections that send nothing, that start TLS or SSH and stall, or that stop at the password
//! request, from one address and from several, leaves a real psql and a real ssh client free to
//! log in, and sessions already logged in untouched; the flood's connections are told why (where
//! the protocol allows it) and closed, the last ones after the login timeout.

mod pg;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use pg::wire::startup_packet;
use pg::{psql, ssh_connection, Gateway};
use witness_testkit::{free_port, ssh_client_options, Postgres, SshKeyPair, Sshd};

/// Small bounds, so that a test's flood goes past them.
const LIMITS: &str = "[limits]\nlogin_timeout = \"5s\"\nmax_unauthenticated = 6\nmax_unauthenticated_per_address = 3\n";

/// More connections from one address than witness keeps sessions for on a listener (4,096): were
/// connections that never log in to take places of sessions, this many would take them all.
const FLOOD: usize = 4_100;

/// Lets this test process hold `n` sockets and some (the soft limit may be 1,024).
fn allow_open_files(n: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|current| current < n + 256) {
        setrlimit(Resource::Nofile, Rlimit { current: limit.maximum.map(|max| max.min(n + 256)).or(Some(n + 256)), ..limit })
            .expect("this test needs to hold thousands of sockets; raise the hard limit on open files (ulimit -Hn)");
    }
}

/// A TCP connection to witness on `port` from the loopback address `source` (127.0.0.x: all of
/// 127/8 is this host), so that one test can come from several addresses.
fn connect_from(source: &str, port: u16) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let tcp = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap()
    });
    let tcp = tcp.into_std().unwrap();
    tcp.set_nonblocking(false).unwrap();
    tcp
}

/// Everything witness sends on `tcp` until it closes the connection. The read timeout only turns
/// a connection witness never closes into a failure; nothing here depends on how long it takes.
fn read_until_closed(tcp: &mut TcpStream) -> String {
    tcp.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return String::from_utf8_lossy(&got).into_owned(),
            Err(e) => panic!("witness did not close a connection that never logged in: {e}; it sent {:?}", String::from_utf8_lossy(&got)),
        }
    }
}

/// Reads exactly `n` bytes witness sends.
fn read_exactly(tcp: &mut TcpStream, n: usize) -> Vec<u8> {
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = vec![0u8; n];
    tcp.read_exact(&mut buf).unwrap();
    buf
}

fn count(texts: &[String], needle: &str) -> usize {
    texts.iter().filter(|t| t.contains(needle)).count()
}

#[test]
fn a_flood_that_never_logs_in_cannot_keep_a_postgresql_client_out() {
    let pg = Postgres::start();
    let gw = Gateway::start(&pg, LIMITS);
    let token = gw.token("claude", &[]);

    // A session that logged in before the flood.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (early, connection) =
        runtime.block_on(tokio_postgres::connect(&gw.conninfo("app-trust", "claude", &token), tokio_postgres::NoTls)).unwrap();
    runtime.spawn(connection);

    // Thousands of connections from 127.0.0.1 that send nothing (past the 3 allowed per address),
    // then two from each of four other addresses (past the 6 allowed in total).
    allow_open_files(FLOOD as u64);
    let mut silent: Vec<TcpStream> = (0..FLOOD).map(|_| TcpStream::connect(("127.0.0.1", gw.port)).unwrap()).collect();
    for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        silent.extend((0..2).map(|_| connect_from(source, gw.port)));
    }
    // One that starts TLS and stalls before its handshake, one that stops at the password request.
    let mut tls_stalled = connect_from("127.0.0.1", gw.port);
    tls_stalled.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap();
    assert_eq!(read_exactly(&mut tls_stalled, 1), b"S", "witness offers TLS");
    let mut password_stalled = connect_from("127.0.0.1", gw.port);
    password_stalled.write_all(&startup_packet(&[("user", "claude"), ("database", "app-trust")])).unwrap();
    let request = read_exactly(&mut password_stalled, 5);
    assert_eq!(request[0], b'R', "witness asks for the password");
    read_exactly(&mut password_stalled, u32::from_be_bytes(request[1..5].try_into().unwrap()) as usize - 4);

    // A real client logs in and runs a query while the flood waits.
    let (ok, out, err) = psql(&gw.conninfo("app-trust", "claude", &token), &["-c", "select 'in despite the flood'"]);
    assert!(ok && out.contains("in despite the flood"), "psql was kept out:\n{out}{err}\n{}", gw.log());

    // Every flood connection is closed: the silent ones crowded out are told which bound they
    // met, the rest that they did not log in in time; the stalled ones are just closed.
    let told: Vec<String> = silent.iter_mut().map(read_until_closed).collect();
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for text in &told {
        *kinds.entry(text).or_default() += 1;
    }
    let per_address = count(&told, "too many connections from 127.0.0.1 that have not logged in (witness allows 3 at a time)");
    let total = count(&told, "too many connections that have not logged in (witness allows 6 at a time from all addresses)");
    let timed_out = count(&told, "did not log in within 5s");
    assert!(told.iter().all(|t| t.starts_with('E') && t.contains("SFATAL")), "each got a FATAL ErrorResponse: {kinds:?}");
    assert_eq!(count(&told, "C53300"), per_address + total, "{kinds:?}");
    assert_eq!(count(&told, "C57014"), timed_out, "{kinds:?}");
    assert_eq!(per_address + total + timed_out, told.len(), "{kinds:?}");
    assert_eq!(per_address, FLOOD - 3, "each from 127.0.0.1 after the 3rd closed the oldest: {kinds:?}");
    assert!(total >= 5 && timed_out >= 1, "per address {per_address}, total {total}, timed out {timed_out}: {kinds:?}");
    assert_eq!(read_until_closed(&mut tls_stalled), "", "a stalled TLS start is closed");
    assert_eq!(read_until_closed(&mut password_stalled), "", "a stalled password exchange is closed");

    // The session that logged in before goes on, past the login timeout.
    let rows = runtime.block_on(early.simple_query("select 'still here'")).unwrap();
    let values: Vec<Option<&str>> =
        rows.iter().filter_map(|m| if let tokio_postgres::SimpleQueryMessage::Row(row) = m { Some(row.get(0)) } else { None }).collect();
    assert_eq!(values, [Some("still here")]);
    // A log line says what was closed since the last one (at most one per 10 s, however long the
    // flood takes on a busy machine), not one line per connection.
    let lines = gw.log().matches("closed connections that had not logged in").count();
    assert!(lines >= 1 && lines * 100 <= told.len(), "{lines} log lines for {} closed connections:\n{}", told.len() + 2, gw.log());
}

#[test]
fn a_flood_that_never_logs_in_cannot_keep_an_ssh_client_out() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "data_dir = \"{data}\"\n[listen]\nssh = \"127.0.0.1:{port}\"\n{LIMITS}\n{web}",
        data = dir.path().join("data").display(),
        web = ssh_connection("web", &sshd, &sshd.host_public_key()),
    );
    let gw = Gateway::launch(dir, port, &config, &[]);
    let key = SshKeyPair::generate(gw.dir.path(), "agent", "ed25519");
    let added = gw.witness(&["identity", "add-key", "claude", key.private.with_extension("pub").to_str().unwrap()]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let ssh = |command: &str| {
        let mut ssh = Command::new("ssh");
        ssh.args(ssh_client_options(&key.private, port)).arg("web@127.0.0.1").arg(command);
        ssh
    };

    // A session that logged in before the flood, waiting for a line.
    let mut early = ssh("head -n 1").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    gw.sessions_when(|sessions| sessions.len() == 1);

    // Silent connections from one address and from others, and two that stall in the key
    // exchange after sending their version.
    let mut flood: Vec<TcpStream> = (0..10).map(|_| connect_from("127.0.0.1", port)).collect();
    for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        flood.extend((0..2).map(|_| connect_from(source, port)));
    }
    for _ in 0..2 {
        let mut stalled = connect_from("127.0.0.1", port);
        stalled.write_all(b"SSH-2.0-stalled\r\n").unwrap();
        flood.push(stalled);
    }

    let through = ssh("echo in despite the flood").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&through.stdout),
        "in despite the flood\n",
        "{}\n{}",
        String::from_utf8_lossy(&through.stderr),
        gw.log()
    );

    // Every flood connection is closed (after witness's version line, at most); the last after
    // the login timeout.
    for tcp in &mut flood {
        let got = read_until_closed(tcp);
        assert!(got.is_empty() || got.starts_with("SSH-2.0-witness"), "{got:?}");
    }
    // The early session goes on, past the login timeout.
    early.stdin.take().unwrap().write_all(b"still here\n").unwrap();
    let early = early.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&early.stdout), "still here\n", "{}", String::from_utf8_lossy(&early.stderr));
    let lines = gw.log().matches("closed connections that had not logged in").count();
    assert!(lines >= 1 && lines * 2 < flood.len(), "{lines} log lines for {} closed connections:\n{}", flood.len(), gw.log());
}
