//! The SSH gateway end to end: an ephemeral OpenSSH sshd (testkit), `witness serve` in front of
//! it, and the real OpenSSH client, scp, sftp, rsync and git, driven non-interactively, plus a
//! pty session under `script`. What a client sees through witness equals what it sees direct;
//! everything is in the ledger, which verifies; the target's key is nowhere in the data dir.

mod pg;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use pg::{assert_nowhere_in, poll, ssh_connection, Gateway};
use serde_json::Value;
use witness_testkit::{free_port, ssh_client_options, SshKeyPair, Sshd};

/// witness in front of `sshd`: `web` (pinned host key), `web-tofu` (trust on first use),
/// `web-wrong-key` (pinned to another key), with `extra_toml` before the connections.
fn gateway(sshd: &Sshd, extra_toml: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let other_host = SshKeyPair::generate(dir.path(), "other-host", "ed25519");
    let config = format!(
        "data_dir = \"{data}\"\n[listen]\nssh = \"127.0.0.1:{port}\"\napi = \"127.0.0.1:{api}\"\n{extra_toml}\n{web}{tofu}{wrong}",
        data = dir.path().join("data").display(),
        api = free_port(),
        web = ssh_connection("web", sshd, &sshd.host_public_key()),
        tofu = ssh_connection("web-tofu", sshd, "trust-on-first-use"),
        wrong = ssh_connection("web-wrong-key", sshd, other_host.public_line.trim()),
    );
    Gateway::launch(dir, port, &config, &[])
}

/// An agent's key registered to an identity through the real CLI.
fn agent_key(gw: &Gateway, identity: &str, groups: &str) -> SshKeyPair {
    let key = SshKeyPair::generate(gw.dir.path(), identity, "ed25519");
    let out = gw.witness(&[
        "identity",
        "add-key",
        identity,
        key.private.with_extension("pub").to_str().unwrap(),
        "--groups",
        groups,
        "--task",
        "T-7",
    ]);
    assert!(out.status.success(), "add-key: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), key.fingerprint);
    key
}

/// The options every OpenSSH tool here gets to reach witness with `key`.
fn ssh_options(gw: &Gateway, key: &Path) -> Vec<String> {
    ssh_client_options(key, gw.port)
}

fn ssh(gw: &Gateway, key: &Path, connection: &str, command: &str, stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new("ssh");
    cmd.args(ssh_options(gw, key)).arg(format!("{connection}@127.0.0.1")).arg(command);
    run_with_stdin(cmd, stdin)
}

fn run_with_stdin(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(bytes) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed ({:?}):\nstdout: {}\nstderr: {}", out.status, text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn sh(script: &str, dir: &Path) -> String {
    let out = Command::new("sh").arg("-c").arg(script).current_dir(dir).output().unwrap();
    ok(&out, script)
}

/// Every event of every SSH session once `n` sessions have ended.
fn ssh_events(gw: &Gateway, n: usize) -> Vec<Value> {
    gw.all_events(n)
}

fn kinds<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn ssh_clients_work_through_witness_and_every_channel_is_recorded() {
    let sshd = Sshd::start();
    let rules = r#"
[[rules]]
name = "no-rm-rf"
shell = ["rm -rf *"]
action = "deny"
message = "recursive deletes are off for agents"
"#;
    let mut gw = gateway(&sshd, rules);
    let key = agent_key(&gw, "claude", "ai-agents");
    let work = tempfile::tempdir().unwrap();
    let mut n_sessions = 0;

    // exec: output, exit status and stderr as direct.
    let command = "echo hello; uname -s; seq 1 3000; echo warn >&2";
    let through = ssh(&gw, &key.private, "web", command, None);
    n_sessions += 1;
    assert_eq!(ok(&through, "exec"), sshd.run(command));
    assert_eq!(text(&through.stderr), "warn\n");
    let status = ssh(&gw, &key.private, "web", "exit 3", None);
    n_sessions += 1;
    assert_eq!(status.status.code(), Some(3));

    // stdin both ways: 5 MiB of random bytes through `sha256sum`.
    let blob: Vec<u8> = (0..5 << 20).map(|_| rand::random::<u8>()).collect();
    std::fs::write(work.path().join("blob"), &blob).unwrap();
    let local_sum = sh("sha256sum < blob | cut -d' ' -f1", work.path());
    let remote_sum = ssh(&gw, &key.private, "web", "sha256sum | cut -d' ' -f1", Some(&blob));
    n_sessions += 1;
    assert_eq!(ok(&remote_sum, "stdin"), local_sum);

    // A denied command never runs: exit status 126 and the rule's message.
    let marker = work.path().join("still-here");
    std::fs::create_dir(&marker).unwrap();
    let denied = ssh(&gw, &key.private, "web", &format!("cd / && rm -rf {}", marker.display()), None);
    n_sessions += 1;
    assert_eq!(denied.status.code(), Some(126), "{}", text(&denied.stderr));
    assert!(
        text(&denied.stderr).contains("denied by witness rule \"no-rm-rf\": recursive deletes are off for agents"),
        "{}",
        text(&denied.stderr)
    );
    assert!(marker.exists(), "the denied command ran");

    // scp both ways.
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = remote_dir.path();
    let mut scp = Command::new("scp");
    scp.args(ssh_options(&gw, &key.private)).arg(work.path().join("blob")).arg(format!("web@127.0.0.1:{}/up.bin", remote.display()));
    ok(&run_with_stdin(scp, None), "scp upload");
    n_sessions += 1;
    assert_eq!(std::fs::read(remote.join("up.bin")).unwrap(), blob);
    let mut scp = Command::new("scp");
    scp.args(ssh_options(&gw, &key.private)).arg(format!("web@127.0.0.1:{}/up.bin", remote.display())).arg(work.path().join("down.bin"));
    ok(&run_with_stdin(scp, None), "scp download");
    n_sessions += 1;
    assert_eq!(std::fs::read(work.path().join("down.bin")).unwrap(), blob);

    // sftp: mkdir, put, rename, get, remove.
    std::fs::write(work.path().join("notes.txt"), "sftp through witness\n").unwrap();
    let batch = format!(
        "mkdir {r}/docs\nput {w}/notes.txt {r}/docs/notes.txt\nrename {r}/docs/notes.txt {r}/docs/renamed.txt\nget {r}/docs/renamed.txt {w}/back.txt\nrm {r}/up.bin\n",
        r = remote.display(),
        w = work.path().display()
    );
    std::fs::write(work.path().join("batch"), batch).unwrap();
    let mut sftp = Command::new("sftp");
    sftp.args(ssh_options(&gw, &key.private)).args(["-b", work.path().join("batch").to_str().unwrap()]).arg("web@127.0.0.1");
    ok(&run_with_stdin(sftp, None), "sftp");
    n_sessions += 1;
    assert_eq!(std::fs::read_to_string(work.path().join("back.txt")).unwrap(), "sftp through witness\n");
    assert!(remote.join("docs/renamed.txt").exists() && !remote.join("up.bin").exists());

    // rsync over witness.
    sh("mkdir -p tree/a/b && echo one > tree/a/1.txt && echo two > tree/a/b/2.txt", work.path());
    let rsh = format!("ssh {}", ssh_options(&gw, &key.private).join(" "));
    let out = Command::new("rsync")
        .args(["-a", "-e", &rsh, "tree/", &format!("web@127.0.0.1:{}/tree/", remote.display())])
        .current_dir(work.path())
        .output()
        .unwrap();
    ok(&out, "rsync");
    n_sessions += 1;
    assert_eq!(std::fs::read_to_string(remote.join("tree/a/b/2.txt")).unwrap(), "two\n");

    // git: clone a repository on the target through witness, commit, push.
    let repo = remote.join("app.git");
    sshd.run(&format!("git init -q --bare -b main {} && echo ok", repo.display()));
    let git_ssh = format!("ssh {}", ssh_options(&gw, &key.private).join(" "));
    let git = |args: &[&str], dir: &Path| {
        let out = Command::new("git")
            .args(["-c", "user.name=Agent", "-c", "user.email=agent@example.com", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .env("GIT_SSH_COMMAND", &git_ssh)
            .output()
            .unwrap();
        ok(&out, &format!("git {args:?}"))
    };
    git(&["clone", "-q", &format!("web@127.0.0.1:{}", repo.display()), "clone"], work.path());
    n_sessions += 1;
    let clone = work.path().join("clone");
    std::fs::write(clone.join("README"), "pushed through witness\n").unwrap();
    git(&["add", "README"], &clone);
    git(&["commit", "-q", "-m", "first"], &clone);
    git(&["push", "-q", "origin", "HEAD:refs/heads/main"], &clone);
    n_sessions += 1;
    let head = git(&["rev-parse", "HEAD"], &clone);
    assert_eq!(sshd.run(&format!("git --git-dir={} rev-parse refs/heads/main", repo.display())), head);

    // A pty session under `script`: the shell's output, then the cast and the replay show it.
    let script = format!("ssh -tt {} web@127.0.0.1", ssh_options(&gw, &key.private).join(" "));
    let pty = run_with_stdin(
        {
            let mut cmd = Command::new("script");
            cmd.args(["-qec", &script, "/dev/null"]).env("TERM", "xterm");
            cmd
        },
        Some(b"stty cols 91 rows 33; echo pty-$((6*7)); tty\nexit 0\n"),
    );
    n_sessions += 1;
    let pty_out = ok(&pty, "pty session");
    assert!(pty_out.contains("pty-42") && pty_out.contains("/dev/pts/"), "{pty_out}");

    // Forwarding is refused unless a rule allows it (and the attempt is recorded).
    let mut stdio_forward = Command::new("ssh");
    stdio_forward.args(ssh_options(&gw, &key.private)).args(["-W", &sshd.address(), "web@127.0.0.1"]);
    let refused = run_with_stdin(stdio_forward, Some(b""));
    n_sessions += 1;
    assert!(!refused.status.success(), "stdio forwarding was allowed: {}", text(&refused.stderr));

    // A token works as the password.
    let token = gw.token("ci-bot", &["--groups", "ci"]);
    let askpass = work.path().join("askpass");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{token}'\n")).unwrap();
    std::fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut with_token = Command::new("ssh");
    with_token
        .args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1"])
        .args(["-p", &gw.port.to_string(), "web-tofu@127.0.0.1", "echo token-login"])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0");
    assert_eq!(ok(&run_with_stdin(with_token, None), "token login"), "token-login\n");
    n_sessions += 1;

    // A wrong host key refuses the session and shows both fingerprints; an unknown connection is named.
    let mismatch = ssh(&gw, &key.private, "web-wrong-key", "echo nope", None);
    n_sessions += 1;
    let message = text(&mismatch.stderr);
    assert!(!mismatch.status.success() && message.contains(&sshd.host_key_fingerprint()) && message.contains("re-keyed"), "{message}");
    let unknown = ssh(&gw, &key.private, "nowhere", "echo nope", None);
    assert!(
        text(&unknown.stderr).contains("no SSH connection named \"nowhere\"") && text(&unknown.stderr).contains("web-tofu"),
        "{}",
        text(&unknown.stderr)
    );
    // An unregistered key does not get in.
    let stranger = SshKeyPair::generate(work.path(), "stranger", "ed25519");
    assert!(!ssh(&gw, &stranger.private, "web", "true", None).status.success());

    // The recording.
    let sessions = gw.ended_sessions(n_sessions);
    assert!(sessions.len() >= n_sessions, "{} sessions: {sessions:#?}", sessions.len());
    assert!(sessions.iter().all(|s| s["protocol"] == "ssh"));
    let claude: Vec<&Value> = sessions.iter().filter(|s| s["identity"] == "claude").collect();
    assert!(claude.iter().all(|s| s["task"] == "T-7" && s["connection"].as_str().unwrap().starts_with("web")));
    let events = ssh_events(&gw, n_sessions);
    let execs = kinds(&events, "ssh.exec");
    assert!(execs.iter().any(|e| e["payload_text"] == command));
    let denied_exec = execs.iter().find(|e| e["payload_text"].as_str().unwrap().contains("rm -rf")).unwrap();
    assert_eq!((denied_exec["attrs"]["decision"].as_str(), denied_exec["attrs"]["rule"].as_str()), (Some("deny"), Some("no-rm-rf")));
    assert!(kinds(&events, "ssh.output").iter().any(|e| e["payload_text"].as_str().is_some_and(|t| t.contains("hello"))));
    assert!(kinds(&events, "ssh.exit").iter().any(|e| e["attrs"]["status"] == 3));
    let sftp_ops: Vec<String> = kinds(&events, "sftp.request")
        .iter()
        .flat_map(|e| e["attrs"]["ops"].as_array().unwrap().iter().map(|op| op["summary"].as_str().unwrap().to_string()))
        .collect();
    for expected in ["mkdir", "extended posix-rename@openssh.com", "remove", "open", "write", "close"] {
        assert!(sftp_ops.iter().any(|op| op.starts_with(expected)), "no sftp {expected} in {sftp_ops:?}");
    }
    assert!(sftp_ops.iter().any(|op| op.contains("renamed.txt")), "{sftp_ops:?}");
    let push = execs.iter().find(|e| e["attrs"]["git_service"] == "git-receive-pack").expect("the push is recorded");
    assert_eq!(push["attrs"]["repository"].as_str(), Some(repo.to_str().unwrap()));
    let pushed = kinds(&events, "git.push");
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(pushed[0]["attrs"]["updates"][0]["ref"], "refs/heads/main");
    assert_eq!(pushed[0]["attrs"]["updates"][0]["new"].as_str(), Some(head.trim()));
    assert!(pushed[0]["summary"].as_str().unwrap().starts_with("push refs/heads/main 0000000.."));
    let report = kinds(&events, "git.report");
    assert_eq!(report.len(), 1);
    assert_eq!(report[0]["attrs"]["refs"][0]["ok"], true);
    let forwards = kinds(&events, "ssh.forward");
    assert!(forwards.iter().any(|e| e["attrs"]["decision"] == "deny" && e["attrs"]["destination"] == sshd.address()), "{forwards:?}");
    assert!(kinds(&events, "ssh.target_error").iter().any(|e| e["summary"].as_str().unwrap().contains("web-wrong-key")));

    // The shell session: cast and replay.
    let shell_session = sessions
        .iter()
        .find(|s| gw.events(s["id"].as_str().unwrap()).iter().any(|e| e["kind"] == "ssh.pty"))
        .expect("the pty session is recorded");
    let id = shell_session["id"].as_str().unwrap();
    let cast_file = work.path().join("shell.cast");
    let out = gw.witness(&["export", id, "--format", "asciicast", "--output", cast_file.to_str().unwrap()]);
    ok(&out, "export asciicast");
    let cast = std::fs::read_to_string(&cast_file).unwrap();
    let header: Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    let frames: Vec<Value> = cast.lines().skip(1).map(|l| serde_json::from_str(l).unwrap()).collect();
    let output: String = frames.iter().filter(|f| f[1] == "o").map(|f| f[2].as_str().unwrap()).collect();
    assert!(output.contains("pty-42"), "{output}");
    assert!(frames.iter().any(|f| f[1] == "i"), "input is in the cast");
    assert!(frames.windows(2).all(|w| w[0][0].as_f64() <= w[1][0].as_f64()), "frames are in time order");
    let replay = gw.witness(&["replay", id, "--speed", "1000"]);
    assert!(text(&ok(&replay, "replay").into_bytes()).contains("pty-42"));

    // Nothing of the target's key in the data dir; the ledger verifies.
    let key_text = std::fs::read_to_string(sshd.client_key()).unwrap();
    let key_body = key_text.lines().nth(2).unwrap();
    assert_nowhere_in(&gw.data_dir(), key_body);
    assert_nowhere_in(&gw.data_dir(), &token);
    gw.stop_and_verify();
}

#[test]
fn commands_wait_for_approval_and_revoked_keys_end_their_sessions() {
    let sshd = Sshd::start();
    let rules = r#"
[[rules]]
name = "deploys-need-approval"
shell = ["deploy*"]
action = "approve"
approvers = ["leads"]
timeout = "2m"
"#;
    let gw = gateway(&sshd, rules);
    let key = agent_key(&gw, "claude", "ai-agents");
    let lead = gw.token("lead", &["--groups", "leads"]);
    let api = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_witness")).args(args).arg("--config").arg(&gw.config).env("WITNESS_TOKEN", &lead).output().unwrap()
    };

    // The held command waits; its approval is listed; approving it runs it.
    let mut held = Command::new("ssh");
    held.args(ssh_options(&gw, &key.private)).arg("web@127.0.0.1").arg("deploy() { echo deployed $1; }; deploy v2");
    let held = held.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let approval_id = poll("a waiting approval", || first_approval(&api(&["approvals", "list", "--json"])));
    ok(&api(&["approvals", "approve", &approval_id]), "approve");
    let out = held.wait_with_output().unwrap();
    assert_eq!(ok(&out, "held command"), "deployed v2\n");
    assert!(text(&out.stderr).contains(&approval_id), "the client was told what it waits for: {}", text(&out.stderr));

    // Denied: exit 126, the command never ran.
    let mut held = Command::new("ssh");
    held.args(ssh_options(&gw, &key.private)).arg("web@127.0.0.1").arg("deploy_now; echo ran");
    let held = held.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let approval_id = poll("a waiting approval", || first_approval(&api(&["approvals", "list", "--json"])));
    ok(&api(&["approvals", "deny", &approval_id, "--reason", "not during the freeze"]), "deny");
    let out = held.wait_with_output().unwrap();
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(126), ""));
    assert!(text(&out.stderr).contains("denied by lead ("), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("): not during the freeze"), "the approver's reason reaches the client: {}", text(&out.stderr));

    // Removing a key ends the session it opened.
    let mut long = Command::new("ssh");
    long.args(ssh_options(&gw, &key.private)).arg("web@127.0.0.1").arg("echo started; exec sleep 120");
    let mut long = long.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(long.stdout.as_mut().unwrap()), &mut first_line).unwrap();
    assert_eq!(first_line, "started\n");
    ok(&gw.witness(&["identity", "remove-key", &key.fingerprint]), "remove-key");
    let status = long.wait().unwrap();
    assert!(!status.success());
    let sessions = gw.ended_sessions(3);
    let revoked = sessions
        .iter()
        .find(|s| s["end_reason"].as_str().is_some_and(|r| r.contains("revoked")))
        .unwrap_or_else(|| panic!("no session ended by revocation: {sessions:#?}\n{}", gw.log()));
    let decided: Vec<Value> =
        gw.events(sessions[0]["id"].as_str().unwrap()).into_iter().filter(|e| e["kind"] == "approval.decided").collect();
    assert_eq!(decided[0]["attrs"]["outcome"], "approved");
    assert_eq!(decided[0]["attrs"]["by"], "lead");
    assert_eq!(revoked["identity"], "claude");
    assert!(!ssh(&gw, &key.private, "web", "true", None).status.success(), "a removed key no longer logs in");
}

#[test]
fn a_terminal_under_tmux_is_recorded_with_its_size_and_resizes() {
    let sshd = Sshd::start();
    let gw = gateway(&sshd, "");
    let key = agent_key(&gw, "claude", "ai-agents");
    let socket = format!("witness-test-{}", std::process::id());
    let tmux = |args: &[&str]| Command::new("tmux").args(["-L", &socket, "-f", "/dev/null"]).args(args).output().unwrap();
    let screen = || text(&tmux(&["capture-pane", "-p", "-t", "w"]).stdout);
    let ssh_line = format!("ssh -tt {} web@127.0.0.1", ssh_options(&gw, &key.private).join(" "));
    ok(&tmux(&["new-session", "-d", "-s", "w", "-x", "100", "-y", "30", &ssh_line]), "tmux new-session");
    tmux(&["send-keys", "-t", "w", "echo tmux-$((6*7))", "Enter"]);
    poll("tmux-42 on the screen", || screen().contains("tmux-42").then_some(()));
    ok(&tmux(&["resize-window", "-t", "w", "-x", "120", "-y", "40"]), "tmux resize-window");
    tmux(&["send-keys", "-t", "w", "stty size", "Enter"]);
    poll("the new size on the screen", || screen().contains("40 120").then_some(()));
    tmux(&["send-keys", "-t", "w", "exit", "Enter"]);
    let sessions = gw.ended_sessions(1);
    let _ = tmux(&["kill-server"]);
    let events = gw.events(sessions[0]["id"].as_str().unwrap());
    let pty = kinds(&events, "ssh.pty");
    assert_eq!((pty[0]["attrs"]["cols"].as_u64(), pty[0]["attrs"]["rows"].as_u64()), (Some(100), Some(30)));
    let resizes = kinds(&events, "ssh.resize");
    assert!(resizes.iter().any(|e| e["attrs"]["cols"] == 120 && e["attrs"]["rows"] == 40), "{resizes:?}");
    let typed: String = kinds(&events, "ssh.input").iter().filter_map(|e| e["payload_text"].as_str()).collect();
    assert!(typed.contains("echo tmux-$((6*7))") && typed.contains("stty size\r"), "{typed:?}");
    let exit = kinds(&events, "ssh.exit");
    assert_eq!(exit[0]["attrs"]["status"], 0);
}

#[test]
fn forwardings_run_when_a_rule_allows_them_and_are_recorded() {
    let sshd = Sshd::start();
    let rules = r#"
[[rules]]
name = "ops-forwarding"
ssh = ["port-forward", "agent-forward"]
groups = ["ops"]
action = "allow"
"#;
    let gw = gateway(&sshd, rules);
    let ops = agent_key(&gw, "olga", "ops");
    let agent = agent_key(&gw, "claude", "ai-agents");

    // Local (-W): the target's own sshd answers through the tunnel.
    let tunnel = |key: &Path| {
        let mut cmd = Command::new("ssh");
        cmd.args(ssh_options(&gw, key)).args(["-W", &sshd.address(), "web@127.0.0.1"]);
        run_with_stdin(cmd, Some(b""))
    };
    assert!(text(&tunnel(&ops.private).stdout).starts_with("SSH-2.0-"), "the allowed tunnel did not reach the target's sshd");
    assert!(!tunnel(&agent.private).status.success(), "a tunnel no rule allows was opened");

    // Remote (-R): a connection on the target's side comes back to the client's side.
    let remote_port = free_port();
    let read_banner = format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{remote_port}; head -c 7 <&3'");
    let mut reverse = Command::new("ssh");
    reverse.args(ssh_options(&gw, &ops.private)).args([
        "-o",
        "ExitOnForwardFailure=yes",
        "-R",
        &format!("{remote_port}:{}", sshd.address()),
        "web@127.0.0.1",
        &read_banner,
    ]);
    assert_eq!(ok(&run_with_stdin(reverse, None), "remote forwarding"), "SSH-2.0");

    // Agent (-A): the target lists the client's agent's key.
    let socket = gw.dir.path().join("agent.sock");
    let mut ssh_agent = Command::new("ssh-agent").args(["-D", "-a", socket.to_str().unwrap()]).stdout(Stdio::null()).spawn().unwrap();
    // The socket file appears when ssh-agent binds it, a moment before it listens: wait until an
    // ssh-add can connect (exit status 2 means it could not).
    poll("ssh-agent listening", || {
        let listed = Command::new("ssh-add").arg("-l").env("SSH_AUTH_SOCK", &socket).output().ok()?;
        (listed.status.code() != Some(2)).then_some(())
    });
    let added = Command::new("ssh-add").arg(&ops.private).env("SSH_AUTH_SOCK", &socket).output().unwrap();
    ok(&added, "ssh-add");
    let list_keys = |key: &Path| {
        let mut cmd = Command::new("ssh");
        cmd.args(ssh_options(&gw, key)).args(["-A", "web@127.0.0.1", "ssh-add -l"]).env("SSH_AUTH_SOCK", &socket);
        run_with_stdin(cmd, None)
    };
    let listed = list_keys(&ops.private);
    let refused = list_keys(&agent.private);
    let _ = ssh_agent.kill();
    let _ = ssh_agent.wait();
    assert!(ok(&listed, "ssh-add -l through the forwarded agent").contains(&ops.fingerprint));
    assert!(!refused.status.success() || !text(&refused.stdout).contains(&ops.fingerprint), "an agent no rule allows was forwarded");

    let events = gw.all_events(5);
    let forwards = kinds(&events, "ssh.forward");
    let allowed = |op: &str| forwards.iter().filter(|e| e["attrs"]["operation"] == op && e["attrs"]["allowed"] == true).count();
    assert!(allowed("port-forward") >= 3, "local, remote and the connection back: {forwards:#?}");
    assert!(allowed("agent-forward") >= 2, "the request and the target's use of it: {forwards:#?}");
    assert!(forwards.iter().any(|e| e["attrs"]["allowed"] == false && e["attrs"]["operation"] == "agent-forward"));
    assert!(
        kinds(&events, "ssh.output").iter().any(|e| e["payload_text"].as_str().is_some_and(|t| t.starts_with("SSH-2.0-"))),
        "tunnel bytes are recorded"
    );
}

/// An OpenSSH client uploading through witness keeps its memory as it does direct. It reads ahead
/// into its channel buffer up to the window witness gives it and grows that buffer by reallocating
/// it: with the 8 MiB window witness once gave, a 16 MiB upload cost the client 100,000 to 160,000 page
/// faults (about 500 direct), and its system time doubled.
#[test]
fn an_upload_costs_the_ssh_client_no_more_memory_than_direct() {
    let sshd = Sshd::start();
    let gw = gateway(&sshd, "");
    let key = agent_key(&gw, "claude", "ai-agents");
    let work = tempfile::tempdir().unwrap();
    let mut blob = vec![0u8; 16 << 20];
    rand::fill(&mut blob[..]);
    std::fs::write(work.path().join("blob"), &blob).unwrap();
    // The shell waits for ssh, then reads its own children's minor faults (field 11 of its stat):
    // those of ssh alone, as `read` is a builtin. The options come in as the script's arguments.
    let client_faults = |options: Vec<String>, destination: String| -> u64 {
        let script = "ssh \"$@\" 'wc -c' < blob && read -r stat < /proc/$$/stat && echo \"$stat\"";
        let out = Command::new("sh").args(["-c", script, "sh"]).args(options).arg(destination).current_dir(work.path()).output().unwrap();
        let out = ok(&out, "an upload");
        let mut lines = out.lines();
        assert_eq!(lines.next().map(str::trim), Some("16777216"), "every byte reached the target");
        let stat = lines.next().expect("the shell's stat line");
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        fields[8].parse().unwrap()
    };
    let direct = client_faults(ssh_client_options(sshd.client_key(), sshd.port()), format!("{}@127.0.0.1", sshd.user()));
    let through = client_faults(ssh_options(&gw, &key.private), "web@127.0.0.1".into());
    assert!(through <= 2 * direct + 2_000, "the ssh client took {through} page faults to upload 16 MiB through witness, {direct} direct");
}

/// The id of the first approval `witness approvals list --json` printed.
fn first_approval(listed: &Output) -> Option<String> {
    let listed: Value = serde_json::from_slice(&listed.stdout).ok()?;
    listed.as_array()?.first()?.get("id")?.as_str().map(str::to_string)
}
