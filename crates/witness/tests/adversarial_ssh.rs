//! A hostile SSH client against witness and a real OpenSSH sshd. The agent's rules allow commands
//! and shells and nothing else; it tries every way around them the protocol and OpenSSH offer:
//! forwardings in each form, user names built to confuse the connection lookup or the log, keys
//! and methods that are not a registered key or a valid token, and environment variables,
//! requests and channels that would run what the rules refuse. Each test checks the target's
//! side (listeners of its own that count who reaches them, files a refused command would remove
//! or create, what the target's shell prints) and the ledger's record of each refusal.
//!
//! The OpenSSH client sends what a user can ask for; a russh client sends what OpenSSH never
//! would (an exec after a shell on one channel, a raw x11-req, a cancel of a forwarding that was
//! never made, user names with control characters).

mod pg;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg::{poll, ssh_connection, Gateway};
use russh::keys::{Certificate, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{client, ChannelMsg, Disconnect};
use serde_json::Value;
use witness_testkit::{free_port, ssh_client_options, SshKeyPair, Sshd, SshdOptions};

/// Agents run commands and shells; nothing else is allowed to anyone (`default = "deny"`) but
/// X11 forwarding to designers, which witness refuses anyway. Recursive deletes are denied.
const RULES: &str = r#"
[policy]
default = "deny"

[[rules]]
name = "agents-run-commands"
groups = ["ai-agents"]
ssh = ["shell", "exec"]
action = "allow"

[[rules]]
name = "no-rm-rf"
shell = ["rm -rf *"]
action = "deny"
message = "recursive deletes are off for agents"

[[rules]]
name = "designers-x11"
groups = ["designers"]
ssh = ["x11-forward"]
action = "allow"
"#;

/// A target that takes whatever it is sent: every environment variable, X11 forwarding. Only
/// witness stands between the agent and them.
fn permissive_sshd() -> Sshd {
    Sshd::start_with(SshdOptions { extra_config: vec!["AcceptEnv *".into(), "X11Forwarding yes".into()], ..SshdOptions::default() })
}

/// witness in front of `sshd` with [`RULES`]: connections `web` and `web-admin` (the same target;
/// two names, so that a user name near one of them has another to be confused with).
fn gateway(sshd: &Sshd) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "data_dir = \"{data}\"\n[listen]\nssh = \"127.0.0.1:{port}\"\napi = \"127.0.0.1:{api}\"\n{RULES}\n{web}{admin}",
        data = dir.path().join("data").display(),
        api = free_port(),
        web = ssh_connection("web", sshd, &sshd.host_public_key()),
        admin = ssh_connection("web-admin", sshd, &sshd.host_public_key()),
    );
    Gateway::launch(dir, port, &config, &[])
}

/// A key registered to `identity` with `groups` (comma-separated) through the real CLI.
fn agent_key(gw: &Gateway, identity: &str, groups: &str) -> SshKeyPair {
    let key = SshKeyPair::generate(gw.dir.path(), identity, "ed25519");
    let public = key.private.with_extension("pub");
    let out = gw.witness(&["identity", "add-key", identity, public.to_str().unwrap(), "--groups", groups]);
    assert!(out.status.success(), "add-key: {}", text(&out.stderr));
    key
}

/// OpenSSH through witness as `connection` with `key` only, `args` before the destination.
/// An empty `command` sends none (for `-W`).
fn ssh(gw: &Gateway, key: &Path, args: &[&str], connection: &str, command: &str) -> Output {
    let mut cmd = Command::new("ssh");
    cmd.args(ssh_client_options(key, gw.port)).args(args).arg(format!("{connection}@127.0.0.1"));
    if !command.is_empty() {
        cmd.arg(command);
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn kinds<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// The `ssh.forward` event for `destination`, which must say the request was refused.
fn refused_forward<'a>(events: &'a [Value], operation: &str, destination: &str) -> &'a Value {
    let forwards = kinds(events, "ssh.forward");
    let found = forwards
        .iter()
        .find(|e| e["attrs"]["operation"] == operation && e["attrs"]["destination"] == destination)
        .unwrap_or_else(|| panic!("no ssh.forward {operation} to {destination:?} recorded: {forwards:#?}"));
    assert_eq!((&found["attrs"]["allowed"], found["attrs"]["decision"].as_str()), (&Value::Bool(false), Some("deny")), "{found:#?}");
    found
}

// === Sink: a destination that tells whether anyone reached it ===

/// A listener (TCP on loopback, or a Unix socket) that counts the connections it accepts.
struct Sink {
    /// `127.0.0.1:PORT` or the socket's path.
    address: String,
    accepted: Arc<AtomicUsize>,
    /// Connects once, as the probe of [`Sink::assert_untouched`].
    probe: Box<dyn Fn()>,
}

/// Accepts (and closes) connections with `accept` on a thread of its own, counting them.
fn count_accepted(accept: impl Fn() -> std::io::Result<()> + Send + 'static) -> Arc<AtomicUsize> {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        while accept().is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    accepted
}

impl Sink {
    fn tcp() -> Sink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = count_accepted(move || listener.accept().map(drop));
        let target = address.clone();
        Sink { address, accepted, probe: Box::new(move || drop(std::net::TcpStream::connect(&target))) }
    }

    fn unix(path: PathBuf) -> Sink {
        let listener = UnixListener::bind(&path).unwrap();
        let accepted = count_accepted(move || listener.accept().map(drop));
        let target = path.clone();
        Sink {
            address: path.to_str().unwrap().to_string(),
            accepted,
            probe: Box::new(move || drop(std::os::unix::net::UnixStream::connect(&target))),
        }
    }

    /// Nothing but this probe ever connected. A listener accepts connections in the order they
    /// were made, so once the probe is counted any earlier connection has been counted too.
    fn assert_untouched(&self, attack: &str) {
        (self.probe)();
        poll("the probe connection", || (self.accepted.load(Ordering::SeqCst) >= 1).then_some(()));
        assert_eq!(self.accepted.load(Ordering::SeqCst), 1, "{attack} reached {}", self.address);
    }
}

// === a russh client, for what OpenSSH never sends ===

/// A client that takes witness's host key as it is.
struct AnyHostKey;

impl client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

type Handle = client::Handle<AnyHostKey>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn connect(gw: &Gateway) -> Handle {
    client::connect(Arc::new(client::Config::default()), ("127.0.0.1", gw.port), AnyHostKey).await.expect("witness takes the connection")
}

fn key_of(path: &Path) -> PrivateKeyWithHashAlg {
    PrivateKeyWithHashAlg::new(Arc::new(russh::keys::load_secret_key(path, None).unwrap()), None)
}

/// A connection logged in as `user` with `key`, or None when witness refused the key.
async fn login(gw: &Gateway, user: &str, key: &Path) -> Option<Handle> {
    let mut handle = connect(gw).await;
    match handle.authenticate_publickey(user, key_of(key)).await {
        Ok(result) if result.success() => Some(handle),
        _ => None,
    }
}

async fn bye(handle: Handle) {
    let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
}

/// What a channel brought back until it closed (30 s at most: a guard, not a measurement).
#[derive(Debug, Default)]
struct Outcome {
    stdout: String,
    stderr: String,
    exit: Option<u32>,
    /// Requests the other side answered with failure.
    failures: usize,
}

async fn collect(channel: &mut russh::Channel<client::Msg>) -> Outcome {
    let mut outcome = Outcome::default();
    let reading = async {
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => outcome.stdout.push_str(&text(&data)),
                ChannelMsg::ExtendedData { data, .. } => outcome.stderr.push_str(&text(&data)),
                ChannelMsg::ExitStatus { exit_status } => outcome.exit = Some(exit_status),
                ChannelMsg::Failure => outcome.failures += 1,
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reading).await.expect("the channel closes");
    outcome
}

/// Runs `command` on a new session channel of `handle`, or says why it could not.
async fn exec(handle: &Handle, command: &str) -> Result<Outcome, russh::Error> {
    let mut channel = handle.channel_open_session().await?;
    channel.exec(true, command).await?;
    Ok(collect(&mut channel).await)
}

// === the attacks ===

/// Every forwarding form is refused: nothing reaches the destination, the target never binds
/// what a remote forwarding asks for, and each attempt is an `ssh.forward` deny in the ledger.
#[test]
fn every_kind_of_forwarding_is_refused_and_recorded() {
    let sshd = permissive_sshd();
    let gw = gateway(&sshd);
    let key = agent_key(&gw, "claude", "ai-agents");
    let designer = agent_key(&gw, "dana", "ai-agents,designers");
    let work = tempfile::tempdir().unwrap();
    let mut n_sessions = 0;

    // Local (-L) to a listener of ours and to the target's own sshd, and (-L port:socket) to a
    // Unix socket: the command on the target (the same machine) connects to the client's end.
    let local = Sink::tcp();
    let socket = Sink::unix(work.path().join("local.sock"));
    let (to_sink, to_sshd, to_socket) = (free_port(), free_port(), free_port());
    let probe_each = format!(
        "bash -c 'for p in {to_sink} {to_sshd} {to_socket}; do exec 3<>/dev/tcp/127.0.0.1/$p && echo probe >&3 && head -c 7 <&3; exec 3<&-; done; echo done'"
    );
    let out = ssh(
        &gw,
        &key.private,
        &[
            "-L",
            &format!("{to_sink}:{}", local.address),
            "-L",
            &format!("{to_sshd}:{}", sshd.address()),
            "-L",
            &format!("{to_socket}:{}", socket.address),
        ],
        "web",
        &probe_each,
    );
    n_sessions += 1;
    assert_eq!(text(&out.stdout), "done\n", "a local forwarding carried bytes: {}", text(&out.stderr));

    // Dynamic (-D): a SOCKS connection through the client's end.
    let socks = Sink::tcp();
    let socks_port = free_port();
    let out = ssh(
        &gw,
        &key.private,
        &["-D", &socks_port.to_string()],
        "web",
        &format!("curl -s --max-time 20 --socks5 127.0.0.1:{socks_port} http://{}/; echo curl=$?", socks.address),
    );
    n_sessions += 1;
    let said = text(&out.stdout);
    assert!(said.starts_with("curl=") && said.trim() != "curl=0", "the SOCKS connection went through: {said}");

    // Stdio (-W).
    let stdio = Sink::tcp();
    let out = ssh(&gw, &key.private, &["-W", &stdio.address], "web", "");
    n_sessions += 1;
    assert!(!out.status.success(), "stdio forwarding was opened");

    // Remote (-R), to a TCP port and to a Unix socket on the target: nothing is bound there.
    let remote = Sink::tcp();
    let remote_port = free_port();
    let remote_socket = work.path().join("remote.sock");
    for spec in [format!("127.0.0.1:{remote_port}:{}", remote.address), format!("{}:{}", remote_socket.display(), remote.address)] {
        let out = ssh(&gw, &key.private, &["-o", "ExitOnForwardFailure=yes", "-R", &spec], "web", "echo forwarded");
        n_sessions += 1;
        assert!(!text(&out.stdout).contains("forwarded"), "remote forwarding {spec} was set up: {}", text(&out.stderr));
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", remote_port)).is_err(), "the target listens on the remote-forwarded port");
    assert!(!remote_socket.exists(), "the target made the remote-forwarded socket");

    // Agent (-A): the target never learns of the client's agent.
    let agent_socket = work.path().join("agent.sock");
    let mut ssh_agent = Command::new("ssh-agent").args(["-D", "-a", agent_socket.to_str().unwrap()]).stdout(Stdio::null()).spawn().unwrap();
    poll("the agent's socket", || agent_socket.exists().then_some(()));
    let added = Command::new("ssh-add").arg(&key.private).env("SSH_AUTH_SOCK", &agent_socket).output().unwrap();
    assert!(added.status.success(), "ssh-add: {}", text(&added.stderr));
    let mut with_agent = Command::new("ssh");
    with_agent
        .args(ssh_client_options(&key.private, gw.port))
        .args(["-A", "web@127.0.0.1", "echo agent=${SSH_AUTH_SOCK:-none}"])
        .env("SSH_AUTH_SOCK", &agent_socket)
        .stdin(Stdio::null());
    let out = with_agent.output().unwrap();
    n_sessions += 1;
    let _ = ssh_agent.kill();
    let _ = ssh_agent.wait();
    assert_eq!(text(&out.stdout), "agent=none\n", "the agent was forwarded: {}", text(&out.stderr));

    // X11 (-Y, with a made-up display and cookie), also for an identity a rule allows it to.
    for who in [&key, &designer] {
        let mut with_x11 = Command::new("ssh");
        with_x11
            .args(ssh_client_options(&who.private, gw.port))
            .args(["-Y", "web@127.0.0.1", "echo display=${DISPLAY:-none}"])
            .env("DISPLAY", "127.0.0.1:77")
            .env("XAUTHORITY", work.path().join("no-xauthority"))
            .stdin(Stdio::null());
        let out = with_x11.output().unwrap();
        n_sessions += 1;
        assert_eq!(text(&out.stdout), "display=none\n", "X11 was forwarded: {}", text(&out.stderr));
    }

    // What OpenSSH does not send on its own: a raw x11-req, and cancels of remote forwardings
    // (TCP and Unix socket) that were never made, which must not reach the target either.
    runtime().block_on(async {
        let handle = login(&gw, "web", &key.private).await.expect("the agent logs in");
        let mut channel = handle.channel_open_session().await.unwrap();
        channel.request_x11(true, false, "MIT-MAGIC-COOKIE-1", "00112233445566778899aabbccddeeff", 0).await.unwrap();
        channel.exec(true, "echo display=${DISPLAY:-none}").await.unwrap();
        let outcome = collect(&mut channel).await;
        assert_eq!((outcome.stdout.as_str(), outcome.failures), ("display=none\n", 1), "{outcome:?}");
        assert!(handle.cancel_tcpip_forward("127.0.0.1", 6010).await.is_err(), "a cancel of a forwarding never made succeeded");
        assert!(handle.cancel_streamlocal_forward("/tmp/witness-never-forwarded.sock").await.is_err());
        bye(handle).await;
    });
    n_sessions += 1;

    for (sink, attack) in
        [(&local, "-L"), (&socket, "-L to a Unix socket"), (&socks, "-D"), (&stdio, "-W"), (&remote, "-R back to the client")]
    {
        sink.assert_untouched(attack);
    }
    let events = gw.all_events(n_sessions);
    for destination in [&local.address, &sshd.address(), &socks.address, &stdio.address, &format!("127.0.0.1:{remote_port}")] {
        refused_forward(&events, "port-forward", destination);
    }
    for path in [&socket.address, &remote_socket.display().to_string()] {
        refused_forward(&events, "streamlocal-forward", path);
    }
    let cancel = refused_forward(&events, "port-forward", "127.0.0.1:6010");
    assert_eq!(cancel["attrs"]["cancel"], true, "{cancel:#?}");
    let cancel = refused_forward(&events, "streamlocal-forward", "/tmp/witness-never-forwarded.sock");
    assert_eq!(cancel["attrs"]["cancel"], true, "{cancel:#?}");
    let forwards = kinds(&events, "ssh.forward");
    let refused =
        |operation: &str| forwards.iter().filter(|e| e["attrs"]["operation"] == operation && e["attrs"]["allowed"] == false).count();
    assert_eq!(refused("agent-forward"), 1, "{forwards:#?}");
    assert_eq!(refused("x11-forward"), 3, "two -Y (one of them allowed by a rule) and the raw x11-req: {forwards:#?}");
    assert!(forwards.iter().all(|e| e["attrs"]["allowed"] == false), "a forwarding was allowed: {forwards:#?}");
}

/// The SSH user name picks the connection. Names with control characters, paths, format
/// directives, other connections' names with something added, and 10 KB of one letter map to
/// no connection: no session opens, nothing runs, and the log gains no line the client wrote.
#[test]
fn user_names_pick_a_connection_exactly_and_never_forge_log_lines() {
    let sshd = permissive_sshd();
    let gw = gateway(&sshd);
    let key = agent_key(&gw, "claude", "ai-agents");
    let forged = "2031-01-01T00:00:00.000000Z  INFO witness_proto_ssh::front: SSH client authenticated connection=\"web\" identity=root";
    let long = "w".repeat(10_000);
    let names: Vec<String> = vec![
        format!("web\n{forged}"),
        format!("web\r\n{forged}"),
        "web\u{1b}[2K\u{1b}[1Gforged".into(),
        "%s%n%x%p".into(),
        "{connection}".into(),
        "web/../web".into(),
        "../web".into(),
        "web/".into(),
        "web\0".into(),
        "web\0web-admin".into(),
        "web ".into(),
        " web".into(),
        "WEB".into(),
        "Web".into(),
        "web\t".into(),
        "web@127.0.0.1".into(),
        "claude@web".into(),
        "web+admin".into(),
        "web-admin+web".into(),
        "web-".into(),
        "claude".into(),
        String::new(),
        long.clone(),
    ];
    let marker = format!("reached-the-target-{}", std::process::id());
    runtime().block_on(async {
        for name in &names {
            let Some(handle) = login(&gw, name, &key.private).await else { continue };
            let ran = exec(&handle, &format!("echo {marker}")).await;
            assert!(ran.as_ref().map_or(true, |o| !o.stdout.contains(&marker)), "user name {name:?} ran a command: {ran:?}");
            bye(handle).await;
        }
        // Without a key the names only reach the log of refused logins.
        for name in [format!("web\n{forged}"), long.clone()] {
            let mut handle = connect(&gw).await;
            let refused = handle.authenticate_password(name, "not-a-token").await.map(|r| r.success());
            assert!(!matches!(refused, Ok(true)));
        }
        // The name exactly as configured still works.
        let handle = login(&gw, "web", &key.private).await.expect("web logs in");
        assert_eq!(exec(&handle, &format!("echo {marker}")).await.unwrap().stdout, format!("{marker}\n"));
        bye(handle).await;
    });

    let sessions = gw.ended_sessions(1);
    let connections: Vec<&str> = sessions.iter().map(|s| s["connection"].as_str().unwrap()).collect();
    assert_eq!(connections, ["web"], "only the exact name opened a session");
    let log = poll("the refused logins in the log", || {
        let log = gw.log();
        (log.matches("SSH login refused").count() >= 2).then_some(log)
    });
    let forged_lines: Vec<&str> = log.lines().filter(|l| l.starts_with("2031-") || l.contains('\u{1b}') || l.contains('\r')).collect();
    assert!(forged_lines.is_empty(), "the client wrote lines into witness's log: {forged_lines:#?}");
    assert!(!log.contains(&"w".repeat(200)), "a 10 KB user name went into witness's log as it is");
    assert!(log.contains("no SSH connection named"), "the refusals are logged: {log}");
}

/// Only a registered key or a valid token logs in: not an unregistered key, not a certificate
/// of a registered key, not a removed key, not `none`, keyboard-interactive or a made-up token;
/// a key never logs in as another identity; a connection gets a bounded number of tries.
#[test]
fn only_registered_keys_and_valid_tokens_log_in() {
    let sshd = permissive_sshd();
    let gw = gateway(&sshd);
    let key = agent_key(&gw, "claude", "ai-agents");
    let _olga = agent_key(&gw, "olga", "ai-agents");
    let work = tempfile::tempdir().unwrap();
    let stranger = SshKeyPair::generate(work.path(), "stranger", "ed25519");

    // A certificate of a registered key, signed by a CA witness has never heard of.
    let ca = SshKeyPair::generate(work.path(), "ca", "ed25519");
    let signed = Command::new("ssh-keygen")
        .args(["-q", "-s", ca.private.to_str().unwrap(), "-I", "claude", "-n", "web,root", "-V", "-1h:+1h"])
        .arg(key.private.with_extension("pub"))
        .output()
        .unwrap();
    assert!(signed.status.success(), "ssh-keygen -s: {}", text(&signed.stderr));
    let cert_file = PathBuf::from(format!("{}-cert.pub", key.private.display()));
    let certificate = Certificate::from_openssh(&std::fs::read_to_string(&cert_file).unwrap()).unwrap();

    // A key that worked, then was removed.
    let removed = agent_key(&gw, "temp", "ai-agents");
    let token = gw.token("ci-bot", &["--groups", "ai-agents"]);
    let strangers: Vec<SshKeyPair> = (0..12).map(|i| SshKeyPair::generate(work.path(), &format!("many-{i}"), "ed25519")).collect();

    runtime().block_on(async {
        assert!(login(&gw, "web", &stranger.private).await.is_none(), "an unregistered key logged in");

        let mut handle = connect(&gw).await;
        let signing_key = Arc::new(russh::keys::load_secret_key(&key.private, None).unwrap());
        let by_cert = handle.authenticate_openssh_cert("web", signing_key, certificate).await;
        assert!(!by_cert.is_ok_and(|r| r.success()), "a certificate logged in");

        let handle = login(&gw, "web", &removed.private).await.expect("the key works before it is removed");
        bye(handle).await;
        let fingerprint = removed.fingerprint.clone();
        let out = gw.witness(&["identity", "remove-key", &fingerprint]);
        assert!(out.status.success(), "remove-key: {}", text(&out.stderr));
        assert!(login(&gw, "web", &removed.private).await.is_none(), "a removed key logged in");

        // A key logs in as its own identity whatever name the client gives: another identity's
        // name is no connection.
        if let Some(handle) = login(&gw, "olga", &key.private).await {
            assert!(exec(&handle, "true").await.is_err(), "the identity's name opened a session");
            bye(handle).await;
        }
        let handle = login(&gw, "web", &key.private).await.expect("claude logs in");
        assert_eq!(exec(&handle, "echo as-claude").await.unwrap().stdout, "as-claude\n");
        bye(handle).await;

        // Methods witness does not offer, and tokens that are not tokens.
        let mut handle = connect(&gw).await;
        assert!(!handle.authenticate_none("web").await.unwrap().success(), "`none` logged in");
        let interactive = handle.authenticate_keyboard_interactive_start("web", None).await.unwrap();
        let interactive = match interactive {
            client::KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                handle.authenticate_keyboard_interactive_respond(prompts.iter().map(|_| "not-a-token".to_string()).collect()).await.unwrap()
            }
            other => other,
        };
        assert!(matches!(interactive, client::KeyboardInteractiveAuthResponse::Failure { .. }), "keyboard-interactive logged in");
        for password in ["not-a-token", "", &token[..token.len() - 1], &format!("{token}x")] {
            let mut handle = connect(&gw).await;
            assert!(!handle.authenticate_password("web", password).await.unwrap().success(), "password {password:?} logged in");
        }
        let mut handle = connect(&gw).await;
        assert!(handle.authenticate_password("web", token.as_str()).await.unwrap().success(), "the real token logs in");
        bye(handle).await;

        // Many keys on one connection: witness hangs up after a bounded number of refusals (10),
        // so the right key, offered after 12 wrong ones, does not get in on that connection.
        let mut handle = connect(&gw).await;
        for stranger in &strangers {
            let result = handle.authenticate_publickey("web", key_of(&stranger.private)).await;
            assert!(!result.is_ok_and(|r| r.success()), "an unregistered key logged in");
        }
        let last = handle.authenticate_publickey("web", key_of(&key.private)).await;
        assert!(!last.is_ok_and(|r| r.success()), "the right key got in after 12 refusals on one connection");
        assert!(handle.is_closed(), "witness kept the connection open after 12 refused keys");
    });

    let sessions = gw.ended_sessions(3);
    let identities: Vec<&str> = sessions.iter().map(|s| s["identity"].as_str().unwrap()).collect();
    assert!(!identities.contains(&"olga"), "olga's name gave claude's key olga's identity: {identities:?}");
    assert!(identities.iter().all(|i| ["claude", "temp", "ci-bot"].contains(i)), "{identities:?}");
    assert_eq!(identities.iter().filter(|i| **i == "temp").count(), 1, "the removed key opened one session, before it was removed");
    assert!(gw.log().contains("SSH login refused"), "{}", gw.log());

    // A connection that signed only with keys no identity has is one refused login in the audit
    // trail, naming the keys (a bounded number of them, the rest counted).
    let fingerprint = |pair: &SshKeyPair| {
        let key = russh::keys::load_secret_key(&pair.private, None).unwrap();
        key.public_key().fingerprint(russh::keys::HashAlg::Sha256).to_string()
    };
    let (alone, first_of_many) = (fingerprint(&stranger), fingerprint(&strangers[0]));
    let refused = |events: &[Value], key: &str| {
        events
            .iter()
            .find(|e| e["kind"] == "login.refused" && e["attrs"]["protocol"] == "ssh" && e["attrs"]["what"].as_str().unwrap().contains(key))
            .cloned()
    };
    let trail = gw.audit_when(|events| refused(events, &alone).is_some() && refused(events, &first_of_many).is_some());
    let many = refused(&trail, &first_of_many).unwrap();
    assert!(many["attrs"]["what"].as_str().unwrap().contains(" more"), "more keys than named are counted: {many}");
    assert_eq!(refused(&trail, &alone).unwrap()["attrs"]["actor"], "web");
}

/// Environment variables that choose what runs (`LD_PRELOAD`, `BASH_ENV`, `PATH`) never reach
/// the target, even one that accepts every variable; a denied command cannot hide behind a shell
/// on the same channel, a NUL byte, a subsystem name or a second channel. Keystrokes in a shell
/// are recorded, not decided (README: deny lists are best effort inside a shell).
#[test]
fn environment_and_requests_cannot_smuggle_what_rules_refuse() {
    let sshd = permissive_sshd();
    let gw = gateway(&sshd);
    let key = agent_key(&gw, "claude", "ai-agents");
    let work = tempfile::tempdir().unwrap();
    let mut n_sessions = 0;

    // SetEnv: a library to preload, a file bash runs first, a directory of fake programs.
    let bash_env = work.path().join("bash_env.sh");
    let ran_bash_env = work.path().join("bash-env-ran");
    std::fs::write(&bash_env, format!("touch {}\n", ran_bash_env.display())).unwrap();
    let fake_bin = work.path().join("bin");
    std::fs::create_dir(&fake_bin).unwrap();
    std::fs::write(fake_bin.join("id"), "#!/bin/sh\necho hijacked\n").unwrap();
    std::fs::set_permissions(fake_bin.join("id"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let set_env = format!(
        "SetEnv=LD_PRELOAD=/nonexistent/witness-evil.so BASH_ENV={} PATH={}:/usr/bin:/bin LANG=C.UTF-8",
        bash_env.display(),
        fake_bin.display()
    );
    let out = ssh(&gw, &key.private, &["-o", &set_env], "web", "bash -c 'echo preload=${LD_PRELOAD:-unset} lang=$LANG; id -un'");
    n_sessions += 1;
    assert_eq!(text(&out.stdout), format!("preload=unset lang=C.UTF-8\n{}\n", sshd.user()), "{}", text(&out.stderr));
    assert!(!ran_bash_env.exists(), "the target's bash ran the client's BASH_ENV");

    // Subsystems by any name but the ones allowed: refused before the target sees them.
    let marker = work.path().join("keep-me");
    std::fs::create_dir(&marker).unwrap();
    let rm = format!("rm -rf {}", marker.display());
    for name in ["sftp", "internal-sftp", "../../../bin/sh", rm.as_str()] {
        let out = ssh(&gw, &key.private, &["-s"], "web", name);
        n_sessions += 1;
        assert_eq!(out.status.code(), Some(126), "subsystem {name:?}: {}", text(&out.stderr));
    }

    runtime().block_on(async {
        let handle = login(&gw, "web", &key.private).await.expect("the agent logs in");
        // An exec after an allowed shell, on the same channel.
        let mut shell = handle.channel_open_session().await.unwrap();
        shell.request_shell(true).await.unwrap();
        shell.exec(true, rm.as_str()).await.unwrap();
        let outcome = collect(&mut shell).await;
        assert_eq!(outcome.exit, Some(126), "{outcome:?}");
        assert!(outcome.stderr.contains("denied by witness rule \"no-rm-rf\""), "{outcome:?}");
        // A NUL byte between an allowed command and a denied one.
        let mut hidden = handle.channel_open_session().await.unwrap();
        hidden.exec(true, format!("true\0; {rm}").into_bytes()).await.unwrap();
        assert_eq!(collect(&mut hidden).await.exit, Some(126));
        // A second channel beside a live shell.
        let live = handle.channel_open_session().await.unwrap();
        live.request_shell(true).await.unwrap();
        let second = exec(&handle, &rm).await.unwrap();
        assert_eq!(second.exit, Some(126), "{second:?}");
        drop(live);
        // A pty and a shell: what is typed runs as the shell reads it, and is recorded.
        let mut typed = handle.channel_open_session().await.unwrap();
        typed.request_pty(true, "xterm", 80, 24, 0, 0, &[]).await.unwrap();
        typed.request_shell(true).await.unwrap();
        typed.data(&b"echo typed-$((6*7)); exit\n"[..]).await.unwrap();
        let outcome = collect(&mut typed).await;
        assert!(outcome.stdout.contains("typed-42"), "{outcome:?}");
        bye(handle).await;
    });
    n_sessions += 1;
    assert!(marker.exists(), "a denied rm ran");

    let events = gw.all_events(n_sessions);
    let envs = kinds(&events, "ssh.env");
    let env =
        |name: &str| envs.iter().find(|e| e["attrs"]["name"] == name).unwrap_or_else(|| panic!("no ssh.env {name} recorded: {envs:#?}"));
    for name in ["LD_PRELOAD", "BASH_ENV", "PATH"] {
        assert_eq!(env(name)["attrs"]["decision"], "deny", "{:#?}", env(name));
    }
    assert_ne!(env("LANG")["attrs"]["decision"], "deny", "{:#?}", env("LANG"));
    let subsystems = kinds(&events, "ssh.subsystem");
    assert_eq!(subsystems.len(), 4, "{subsystems:#?}");
    assert!(subsystems.iter().all(|e| e["attrs"]["decision"] == "deny"), "{subsystems:#?}");
    let denied_rm = kinds(&events, "ssh.exec")
        .into_iter()
        .filter(|e| e["payload_text"].as_str().is_some_and(|t| t.contains(&rm)) && e["attrs"]["rule"] == "no-rm-rf")
        .count();
    assert_eq!(denied_rm, 3, "the exec after a shell, the NUL-hidden one and the second channel's");
    let typed: String = kinds(&events, "ssh.input").iter().filter_map(|e| e["payload_text"].as_str()).collect();
    assert!(typed.contains("echo typed-$((6*7))"), "keystrokes are recorded: {typed:?}");
}
