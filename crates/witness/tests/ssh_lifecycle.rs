//! How SSH sessions through witness hold up and end, against a real OpenSSH sshd and clients
//! other than the suite's usual ones (paramiko, asyncssh, OpenSSH with ControlMaster; the Python
//! ones from PyPI into the test venv): a channel whose
//! reader stops holds back only itself; SFTP clients that request ahead never deadlock; a channel
//! echoing its input into a slow reader keeps moving both ways; a client
//! killed mid-transfer leaves nothing running on the target and its session is closed at once;
//! exit statuses reach the client and the ledger as they do direct; a target that dies
//! mid-command is reported to the client and recorded as the target's end.
//!
//! What is left on the target is read from its process list: each remote command carries a
//! marker unique to the test run, so that tests running side by side never see each other's.

mod pg;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use pg::{poll, ssh_connection, Gateway};
use serde_json::Value;
use witness_testkit::{free_port, ssh_client_options, SshKeyPair, Sshd, SshdOptions};

/// witness in front of `sshd` as connection `web`; everything is allowed.
fn gateway(sshd: &Sshd) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "data_dir = \"{data}\"\n[listen]\nssh = \"127.0.0.1:{port}\"\napi = \"127.0.0.1:{api}\"\n{web}",
        data = dir.path().join("data").display(),
        api = free_port(),
        web = ssh_connection("web", sshd, &sshd.host_public_key()),
    );
    Gateway::launch(dir, port, &config, &[])
}

fn agent_key(gw: &Gateway) -> SshKeyPair {
    let key = SshKeyPair::generate(gw.dir.path(), "claude", "ed25519");
    let public = key.private.with_extension("pub");
    let out = gw.witness(&["identity", "add-key", "claude", public.to_str().unwrap(), "--groups", "ai-agents"]);
    assert!(out.status.success(), "add-key: {}", text(&out.stderr));
    key
}

/// OpenSSH through witness to `web` with `key`, `args` before the destination.
fn ssh(gw: &Gateway, key: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(ssh_client_options(key, gw.port)).args(args).arg("web@127.0.0.1");
    cmd
}

/// Runs a Python SSH client `script` (in a venv with `packages`) against witness, as
/// `python -c SCRIPT PORT KEY ARGS...`; its stdin is closed.
fn python_client(gw: &Gateway, key: &Path, packages: &[&str], script: &str, args: &[&Path]) -> std::process::Output {
    let python = witness_testkit::Python::ensure_venv(packages);
    Command::new(python).args(["-c", script, &gw.port.to_string(), key.to_str().unwrap()]).args(args).stdin(Stdio::null()).output().unwrap()
}

/// Runs `script` after paramiko's `client` has logged in to witness (`sys.argv[3:]` are `args`).
fn paramiko_client(gw: &Gateway, key: &Path, script: &str, args: &[&Path]) -> std::process::Output {
    let login = r#"
import hashlib, os, sys, threading, time, paramiko
port, key = int(sys.argv[1]), sys.argv[2]
client = paramiko.SSHClient()
client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
client.connect("127.0.0.1", port=port, username="web", key_filename=key, look_for_keys=False, allow_agent=False, timeout=20)
"#;
    python_client(gw, key, &["paramiko"], &format!("{login}{script}"), args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A marker no other test run uses.
fn marker(what: &str) -> String {
    format!("witness-{what}-{:016x}", rand::random::<u64>())
}

/// A `sleep` of about ten minutes no other test run sleeps: its own command line is its marker.
fn unique_sleep() -> String {
    format!("sleep 600.{:09}", rand::random::<u32>() % 1_000_000_000)
}

/// The processes on this machine whose command line holds `marker`, other than `except` (the
/// local client, whose command line names the remote command too).
fn running_with(marker: &str, except: u32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = text(&std::fs::read(entry.path().join("cmdline")).ok()?).replace('\0', " ");
            (pid != except && pid != std::process::id() && cmdline.contains(marker)).then(|| format!("{pid}: {cmdline}"))
        })
        .collect()
}

/// Kills `child` with SIGKILL, as a crash or an OOM killer would, and reaps it.
fn kill_hard(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends SIGKILL to process `pid`, or to process group `pid` when `group` is set. A system call,
/// not kill(1): procps's reads `kill -KILL -PGID` its own way, and may signal every process.
fn kill_pid(pid: u32, group: bool) {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else { return };
    let signal = rustix::process::Signal::KILL;
    let _ = if group { rustix::process::kill_process_group(pid, signal) } else { rustix::process::kill_process(pid, signal) };
}

/// The sessions once `n` have been recorded and every one has ended: well before witness stops.
fn ended(gw: &Gateway, n: usize) -> Vec<Value> {
    let sessions = gw.ended_sessions(n);
    assert!(sessions.len() >= n && sessions.iter().all(|s| s["status"] == "closed"), "sessions still open: {sessions:#?}");
    sessions
}

/// A client killed mid-transfer: the target's command gets its hangup and goes, the target
/// connection is closed, and the session is closed in the ledger with why, while witness runs.
#[test]
fn a_client_killed_mid_transfer_leaves_nothing_running_on_the_target() {
    // sftp-server under a name of its own (the harness runs SFTP inside sshd), to find it.
    let bin = tempfile::tempdir().unwrap();
    let sftp_marker = marker("sftp-server");
    let sftp_server = ["/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("OpenSSH's sftp-server (package openssh-sftp-server)");
    std::os::unix::fs::symlink(sftp_server, bin.path().join(&sftp_marker)).unwrap();
    let sshd = Sshd::start_with(SshdOptions {
        extra_config: vec![format!("Subsystem sftp {}", bin.path().join(&sftp_marker).display())],
        ..SshdOptions::default()
    });
    let mut gw = gateway(&sshd);
    let key = agent_key(&gw);
    let remote = tempfile::tempdir().unwrap();
    // Sparse: as large as a download that lasts, without the disk.
    std::fs::File::create(remote.path().join("big")).unwrap().set_len(16 << 30).unwrap();
    let batch = remote.path().join("batch");
    std::fs::write(&batch, format!("get {} /dev/null\n", remote.path().join("big").display())).unwrap();

    let cat = marker("cat");
    let sleep = unique_sleep();
    let mut sftp = Command::new("sftp");
    sftp.args(ssh_client_options(&key.private, gw.port)).args(["-b", batch.to_str().unwrap(), "web@127.0.0.1"]);
    let cases: Vec<(&str, Command)> = vec![
        (&cat, {
            let mut cmd = ssh(&gw, &key.private, &[]);
            cmd.arg(format!("sh -c 'cat /dev/zero; :' {cat}"));
            cmd
        }),
        (&sleep, {
            let mut cmd = ssh(&gw, &key.private, &["-tt"]);
            cmd.arg(&sleep);
            cmd
        }),
        (&sftp_marker, sftp),
    ];
    for (marker, mut command) in cases {
        // stdin stays open, as a user's terminal would, and stdout is a pipe nobody reads, as a
        // paused pager's: witness waits for the client's window when it dies. sftp's ssh is its
        // child, killed along.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut client = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let except = client.id();
        poll(&format!("{marker} to run on the target"), || (!running_with(marker, except).is_empty()).then_some(()));
        kill_pid(client.id(), true);
        kill_hard(&mut client);
        poll(&format!("{marker} to end on the target"), || running_with(marker, except).is_empty().then_some(()));
    }
    poll("the target connections to close", || sshd.descendants().is_empty().then_some(()));
    let sessions = ended(&gw, 3);
    for session in &sessions {
        assert!(session["end_reason"].as_str().is_some_and(|r| r.contains("client") && !r.contains("early eof")), "{session:#}");
    }
    gw.stop_and_verify();
}

/// Thirty short commands over one ControlMaster connection, beside a session whose reader has
/// stopped (a pipe nobody reads): each client gets its command's exit status, the ledger has
/// every one, and the commands' target connections are reused, not left open.
#[test]
fn exit_statuses_reach_the_client_and_the_ledger_over_control_master() {
    let sshd = Sshd::start();
    let mut gw = gateway(&sshd);
    let key = agent_key(&gw);
    let control = tempfile::tempdir().unwrap();
    let socket = control.path().join("master");
    let control_path = format!("ControlPath={}", socket.display());
    let mut master = ssh(&gw, &key.private, &["-M", "-N", "-o", &control_path]).stdin(Stdio::null()).spawn().unwrap();
    poll("the master to listen", || {
        let out = ssh(&gw, &key.private, &["-o", &control_path, "-O", "check"]).output().unwrap();
        out.status.success().then_some(())
    });
    let mut stalled = ssh(&gw, &key.private, &["-o", &control_path])
        .arg("cat /dev/zero")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for i in 0..30u8 {
        let status = i % 7 + i / 7 * 10;
        let out =
            ssh(&gw, &key.private, &["-o", &control_path]).arg(format!("echo out-{i}; echo err-{i} >&2; exit {status}")).output().unwrap();
        assert_eq!(out.status.code(), Some(i32::from(status)), "command {i}: stderr {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("out-{i}\n"));
    }
    // Each command's channel ended with it, and its target connection went back to the pool:
    // the target has the stalled reader's connection and a few idle ones, not one per command.
    let target_logins = sshd.descendants().iter().filter(|(_, command)| command.contains("@notty")).count();
    assert!(target_logins <= 6, "{target_logins} logins on the target for 30 commands one after another");
    kill_hard(&mut stalled);
    let _ = ssh(&gw, &key.private, &["-o", &control_path, "-O", "exit"]).output();
    let _ = master.wait();
    let sessions = ended(&gw, 1);
    let events = gw.events(sessions[0]["id"].as_str().unwrap());
    let mut statuses: Vec<u64> = events.iter().filter(|e| e["kind"] == "ssh.exit").filter_map(|e| e["attrs"]["status"].as_u64()).collect();
    statuses.sort_unstable();
    let mut expected: Vec<u64> = (0..30u64).map(|i| i % 7 + i / 7 * 10).collect();
    expected.sort_unstable();
    assert_eq!(statuses, expected, "exit statuses in the ledger");
    // Read as `sessions show --json | head` reads it: a little, then the pipe closes.
    let mut show = pg::witness_command(None)
        .args(["sessions", "show", sessions[0]["id"].as_str().unwrap(), "--json", "--config"])
        .arg(&gw.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 100];
    std::io::Read::read_exact(show.stdout.as_mut().unwrap(), &mut head).unwrap();
    drop(show.stdout.take());
    let shown = show.wait_with_output().unwrap();
    assert!(shown.status.success() && shown.stderr.is_empty(), "{:?}: {}", shown.status, text(&shown.stderr));
    gw.stop_and_verify();
}

/// The target's connection dies mid-command: the client hears it, as it would direct, and the
/// session's end is recorded as the target's.
#[test]
fn a_target_that_dies_mid_command_is_reported_to_the_client_and_recorded() {
    let sshd = Sshd::start();
    let mut gw = gateway(&sshd);
    let key = agent_key(&gw);
    let sleep = unique_sleep();
    let mut client = ssh(&gw, &key.private, &[])
        .arg(format!("echo started; {sleep}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(client.stdout.as_mut().unwrap()), &mut first).unwrap();
    assert_eq!(first, "started\n");
    // Every process serving witness's connections to the target dies, as in a crash.
    let serving: Vec<u32> = sshd.descendants().into_iter().filter(|(_, cmdline)| cmdline.starts_with("sshd")).map(|(pid, _)| pid).collect();
    assert!(!serving.is_empty(), "no connection process under {:?}", sshd.descendants());
    for pid in serving {
        kill_pid(pid, false);
    }
    let out = client.wait_with_output().unwrap();
    for orphan in running_with(&sleep, 0) {
        kill_pid(orphan.split(':').next().unwrap().parse().unwrap(), false);
    }
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("closed by remote host"), "the client was not told: {}", text(&out.stderr));
    let sessions = ended(&gw, 1);
    let reason = sessions[0]["end_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("target"), "the session's end is not the target's: {reason}");
    gw.stop_and_verify();
}

/// paramiko leaves one channel's output unread: witness holds back only that channel (the
/// target's sender waits for its window), and a second channel on the same connection runs as if
/// the first were not there. Reading the first again resumes it.
#[test]
fn a_channel_left_unread_holds_back_only_itself() {
    let sshd = Sshd::start();
    let mut gw = gateway(&sshd);
    let key = agent_key(&gw);
    let script = r#"
transport = client.get_transport()
stalled = transport.open_session(timeout=20)
stalled.exec_command("cat /dev/zero")
# Wait (bounded) until the unread channel has filled paramiko's window: from then on, witness
# and the target hold the rest.
deadline = time.monotonic() + 30
while len(stalled.in_buffer) < stalled.in_max_packet_size * 8 and time.monotonic() < deadline:
    time.sleep(0.02)
print("stalled", len(stalled.in_buffer) > 0, flush=True)
second = transport.open_session(timeout=20)
second.settimeout(20)
second.exec_command("echo second; exit 7")
print(second.makefile().read().decode().strip(), second.recv_exit_status(), flush=True)
stalled.settimeout(20)
total = 0
while total < 8 << 20:
    total += len(stalled.recv(1 << 20))
print("resumed", total >= 8 << 20, flush=True)
client.close()
"#;
    let out = paramiko_client(&gw, &key.private, script, &[]);
    assert_eq!(text(&out.stdout), "stalled True\nsecond 7\nresumed True\n", "stderr: {}", text(&out.stderr));
    // paramiko closes its socket without a goodbye: an orderly close all the same.
    assert_eq!(ended(&gw, 1)[0]["end_reason"], "the client closed the connection");
    gw.stop_and_verify();
}

/// paramiko's `SFTPClient.get` sends its read requests ahead of reading the replies: witness must
/// keep reading the requests while the replies wait for paramiko's window, or neither moves.
/// Twenty 50 MB downloads in a row, each complete.
#[test]
fn sftp_downloads_that_request_ahead_complete() {
    let sshd = Sshd::start();
    let mut gw = gateway(&sshd);
    let key = agent_key(&gw);
    let remote = tempfile::tempdir().unwrap();
    let mut blob = vec![0u8; 50 << 20];
    rand::fill(&mut blob[..]);
    std::fs::write(remote.path().join("blob"), &blob).unwrap();
    let script = r#"
source, target = sys.argv[3], sys.argv[4]
sftp = client.open_sftp()
sftp.get_channel().settimeout(60)
for i in range(20):
    sftp.get(source, target)
    with open(target, "rb") as f:
        print(hashlib.sha256(f.read()).hexdigest(), flush=True)
    os.remove(target)
client.close()
"#;
    let (blob_path, copy_path) = (remote.path().join("blob"), remote.path().join("copy"));
    let out = paramiko_client(&gw, &key.private, script, &[&blob_path, &copy_path]);
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(&blob).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let digests: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(digests.len(), 20, "downloads done: {digests:?}; stderr: {}", text(&out.stderr));
    assert!(digests.iter().all(|d| *d == digest), "{digests:?} != {digest}");
    ended(&gw, 1);
    gw.stop_and_verify();
}

/// The ledger's details: terminal output with a stray byte that is not UTF-8 keeps its text (the
/// byte escaped), and an SFTP `chmod` records the mode it set.
#[test]
fn recordings_keep_stray_bytes_readable_and_what_setstat_set() {
    let sshd = Sshd::start();
    let mut gw = gateway(&sshd);
    let key = agent_key(&gw);
    let out = ssh(&gw, &key.private, &[]).arg(r"printf 'caf\351 ready\n'").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.stdout, b"caf\xe9 ready\n");
    let remote = tempfile::tempdir().unwrap();
    let file = remote.path().join("notes.txt");
    std::fs::write(&file, "x").unwrap();
    let batch = remote.path().join("batch");
    std::fs::write(&batch, format!("chmod 640 {}\n", file.display())).unwrap();
    let sftp = Command::new("sftp")
        .args(ssh_client_options(&key.private, gw.port))
        .args(["-b", batch.to_str().unwrap(), "web@127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(sftp.status.success(), "{}", text(&sftp.stderr));
    let events: Vec<Value> = ended(&gw, 2).iter().flat_map(|s| gw.events(s["id"].as_str().unwrap())).collect();
    let output = events.iter().find(|e| e["kind"] == "ssh.output").expect("the output is recorded");
    assert_eq!(output["payload_text"], "caf\\xe9 ready\n", "{output:#}");
    assert_eq!(output["summary"], "caf\\xe9 ready");
    let ops: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "sftp.request")
        .flat_map(|e| e["attrs"]["ops"].as_array().unwrap().iter().filter_map(|op| op["summary"].as_str()))
        .collect();
    let expected = format!("setstat {} (mode 0640)", file.display());
    assert!(ops.contains(&expected.as_str()), "{ops:?}");
    gw.stop_and_verify();
}

/// asyncssh, with its own flow control: a process whose output is left unread beside short
/// commands on the same connection, each with its exit status.
#[test]
fn asyncssh_runs_commands_beside_an_unread_process() {
    let sshd = Sshd::start();
    let mut gw = gateway(&sshd);
    let key = agent_key(&gw);
    let script = r#"
import asyncio, sys, asyncssh
async def main(port, key):
    async with asyncssh.connect("127.0.0.1", port=port, username="web", client_keys=[key], known_hosts=None) as conn:
        stalled = await conn.create_process("cat /dev/zero", encoding=None)
        await stalled.stdout.readexactly(1 << 20)
        results = [await asyncio.wait_for(conn.run(f"echo run-{i}; exit {i}"), 20) for i in range(5)]
        print(" ".join(f"{r.stdout.strip()}:{r.exit_status}" for r in results), flush=True)
        stalled.close()
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"#;
    let out = python_client(&gw, &key.private, &["asyncssh"], script, &[]);
    assert_eq!(text(&out.stdout), "run-0:0 run-1:1 run-2:2 run-3:3 run-4:4\n", "stderr: {}", text(&out.stderr));
    ended(&gw, 1);
    gw.stop_and_verify();
}

/// One channel streaming both ways at once: a `cat` on the target echoes what paramiko sends,
/// and paramiko reads the echo slowly while it sends up to 11 MiB ahead of what it has read.
/// Directly the sender is slowed by the target's window and the echo flows at the reader's pace;
/// through witness the target's answers are taken into the channel's outbox toward the client
/// while the client's window is closed, so the target's connection keeps reading the window
/// adjustments the client's bytes wait for. (Taking them only as the client's window opens, as
/// before, stalled this channel in both directions from about 9 MiB ahead.)
#[test]
fn a_channel_echoing_its_input_streams_both_ways() {
    let sshd = Sshd::start();
    let mut gw = gateway(&sshd);
    let key = agent_key(&gw);
    let script = r#"
size, lead = 24 << 20, 11 << 20
blob = os.urandom(size)
channel = client.get_transport().open_session(timeout=20)
channel.settimeout(30)
channel.exec_command("cat")
got = 0
caught_up = threading.Condition()
def send():
    sent = 0
    try:
        while sent < size:
            with caught_up:
                caught_up.wait_for(lambda: sent - got < lead, 60)
            piece = blob[sent:sent + 65536]
            channel.sendall(piece)
            sent += len(piece)
        channel.shutdown_write()
    except Exception as error:
        print("send failed", error, flush=True)
threading.Thread(target=send, daemon=True).start()
echo = hashlib.sha256()
try:
    while got < size:
        piece = channel.recv(32768)
        if not piece:
            break
        echo.update(piece)
        with caught_up:
            got += len(piece)
            caught_up.notify()
        time.sleep(0.004)
except Exception as error:
    print("stalled at", got, error, flush=True)
status = channel.exit_status if channel.status_event.wait(10) else None
print(got == size and echo.digest() == hashlib.sha256(blob).digest(), status, flush=True)
client.close()
"#;
    let out = paramiko_client(&gw, &key.private, script, &[]);
    assert_eq!(text(&out.stdout), "True 0\n", "stderr: {}", text(&out.stderr));
    ended(&gw, 1);
    gw.stop_and_verify();
}
