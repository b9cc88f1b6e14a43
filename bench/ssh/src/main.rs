//! SSH benchmark for witness: the same OpenSSH client commands against an ephemeral sshd
//! directly, through an OpenSSH jump host (`ssh -J`, what a user would pick instead: a plain
//! bastion that records nothing) and through witness (durability `write`, every byte recorded),
//! side by side in one run.
//!
//! ```text
//! cargo build --release -p witness -p witness-bench-ssh
//! cargo run --release -p witness-bench-ssh                 # 256 MiB transfers, 30 execs
//! BENCH_MIB=64 BENCH_EXECS=10 cargo run --release -p witness-bench-ssh
//! ```
//!
//! Measured: `cat` of a file on the target to the client, an upload through `cat > file`, `scp`
//! down (SFTP protocol in OpenSSH 9), each as MB/s (best of 3 rounds through every route); the
//! round trip of `true` as a new connection each time, and as an exec on an open connection
//! (ControlMaster), p50 of N; and on one open connection, a `cat` alone and beside a session
//! whose reader has stopped (a `cat /dev/zero` into a pipe nobody reads), direct and through
//! witness. `BENCH_OPS=upload` (or any of cat,upload,scp,exec,stalled) measures less, and
//! `BENCH_ROUTES=witness` (or any of the route names, `;`-separated) only those routes.
//! Everything runs on loopback in temp dirs; the witness binary is `$WITNESS_BIN`, else the one
//! next to this executable. The report goes to stdout, progress to stderr. With the figures comes
//! the CPU each byte of the best transfers cost the client and witness (ns/B): on two cores the
//! throughput of a route follows the CPU its processes spend per byte. The report ends with the
//! markdown that docs/BENCHMARKS.md shows for this benchmark (`markdown.rs`).

#![forbid(unsafe_code)]

#[path = "../../markdown.rs"]
mod markdown;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use witness_testkit::{cpu_ticks, free_port, ssh_client_options, SshKeyPair, Sshd, SshdOptions};

/// A route's figures: name, cat / upload / scp MB/s, exec ms on a new and on an open connection.
type Row = (&'static str, f64, f64, f64, f64, f64);

/// Routes in report order; the constants index them.
const DIRECT: usize = 0;
const JUMP_HOST: usize = 1;
const WITNESS: usize = 2;
const DIRECT_GCM: usize = 3;
const WITNESS_GCM: usize = 4;

/// The route each route is compared with: direct access with the same cipher.
const BASELINE: [usize; 5] = [DIRECT, DIRECT, DIRECT, DIRECT_GCM, DIRECT_GCM];

/// One way to reach the target: the ssh options that route there and the destination.
struct Route {
    name: &'static str,
    /// Whether the route goes through witness (whose CPU is then charged to it).
    via_witness: bool,
    options: Vec<String>,
    destination: String,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("witness-bench-ssh: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mib: u64 = env_number("BENCH_MIB", 256);
    let n_execs: usize = env_number("BENCH_EXECS", 30) as usize;
    let target = Sshd::start();
    let jump = Sshd::start_with(SshdOptions::default());
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let witness = Witness::start(&witness_bin()?, &target, work.path())?;

    // The client's key: authorised on the target and the jump host, registered in witness.
    let client = SshKeyPair::generate(work.path(), "client", "ed25519");
    target.authorize(&client.public_line);
    jump.authorize(&client.public_line);
    witness.cli(&["identity", "add-key", "bench", client.private.with_extension("pub").to_str().unwrap()])?;

    let base = |port: u16| ssh_client_options(&client.private, port);
    let user = target.user().to_string();
    let mut via_jump = base(target.port());
    let jump_cmd = format!("ssh {} -W %h:%p {user}@127.0.0.1", base(jump.port()).join(" "));
    via_jump.extend(["-o".into(), format!("ProxyCommand={jump_cmd}")]);
    // The client's own cipher choice (ChaCha20-Poly1305 for OpenSSH), and AES-128-GCM, which ring
    // runs fastest: each witness route is compared with direct access with the same cipher.
    let gcm = |mut options: Vec<String>| {
        options.extend(["-c".into(), "aes128-gcm@openssh.com".into()]);
        options
    };
    let routes = [
        Route { name: "direct", via_witness: false, options: base(target.port()), destination: format!("{user}@127.0.0.1") },
        Route { name: "OpenSSH jump host", via_witness: false, options: via_jump, destination: format!("{user}@127.0.0.1") },
        Route { name: "witness", via_witness: true, options: base(witness.port), destination: "target@127.0.0.1".into() },
        Route { name: "direct, AES-GCM", via_witness: false, options: gcm(base(target.port())), destination: format!("{user}@127.0.0.1") },
        Route { name: "witness, AES-GCM", via_witness: true, options: gcm(base(witness.port)), destination: "target@127.0.0.1".into() },
    ];

    let remote = work.path().join("remote");
    std::fs::create_dir(&remote).map_err(|e| e.to_string())?;
    let source = remote.join("source.bin");
    eprintln!("making a {mib} MiB file of random bytes");
    sh(&format!("head -c {} /dev/urandom > {}", mib << 20, source.display()))?;
    let bytes = (mib << 20) as f64;

    // Transfers go in rounds, each round through every route, so that whatever the machine is
    // doing meanwhile (the kernel writing back earlier runs' pages, say) falls on all routes
    // alike; before each one the dirty pages of the last are written out (`sync`, not timed).
    let operations = operations_wanted();
    let routes_wanted = routes_wanted(&routes);
    let mut best = vec![[Timed::NONE; 3]; routes.len()];
    for round in 1..=ROUNDS {
        eprintln!("transfers, round {round} of {ROUNDS}");
        for (route, best) in routes.iter().zip(best.iter_mut()).filter(|(route, _)| routes_wanted.contains(&route.name)) {
            for (op, best) in [Op::Cat, Op::Upload, Op::Scp].into_iter().zip(best.iter_mut()) {
                if operations.contains(&op) {
                    sh("sync")?;
                    let timed = Timed::measure(witness.child.id(), || transfer(op, route, &source, &remote, work.path()))?;
                    if timed.seconds < best.seconds {
                        *best = timed;
                    }
                }
            }
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    for (route, best) in routes.iter().zip(&best) {
        let (fresh, muxed) = if operations.contains(&Op::Exec) && routes_wanted.contains(&route.name) {
            exec_round_trips(route, n_execs, work.path())?
        } else {
            (f64::NAN, f64::NAN)
        };
        let rate = |seconds: f64| if seconds.is_finite() { bytes / seconds / 1e6 } else { f64::NAN };
        rows.push((route.name, rate(best[0].seconds), rate(best[1].seconds), rate(best[2].seconds), fresh * 1e3, muxed * 1e3));
    }

    // A cat beside a stalled reader: direct and through witness, each on one open connection.
    let mut stalled: Vec<(&'static str, f64, f64)> = Vec::new();
    if operations.contains(&Op::Stalled) {
        for route in routes.iter().filter(|r| [DIRECT, WITNESS].map(|i| routes[i].name).contains(&r.name)) {
            if routes_wanted.contains(&route.name) {
                let (alone, beside) = beside_a_stalled_reader(route, &source, work.path())?;
                stalled.push((route.name, bytes / alone / 1e6, bytes / beside / 1e6));
            }
        }
    }

    println!("\nSSH, {mib} MiB of random bytes, MB/s (best of {ROUNDS} rounds); exec round trip of `true`, ms (p50 of {n_execs})");
    println!("{:<18} {:>9} {:>9} {:>9} {:>12} {:>12}", "route", "cat", "upload", "scp", "exec (new)", "exec (open)");
    for (name, cat, up, scp, fresh, muxed) in &rows {
        println!("{name:<18} {cat:>9.1} {up:>9.1} {scp:>9.1} {fresh:>12.2} {muxed:>12.2}");
    }
    println!("\nratios against direct with the same cipher (throughput: higher is better; exec: lower is better)");
    for i in [JUMP_HOST, WITNESS, WITNESS_GCM] {
        let (cat, up, scp, fresh, muxed) = ratio(&rows[i], &rows[BASELINE[i]]);
        println!("{:<18} {cat:>9.2} {up:>9.2} {scp:>9.2} {fresh:>12.2} {muxed:>12.2}", rows[i].0);
    }
    if !stalled.is_empty() {
        println!("\na cat on one open connection, MB/s: alone / beside a stalled reader (ratio)");
        for (name, alone, beside) in &stalled {
            println!("{name:<18} {alone:>9.1} / {beside:>9.1} ({:.2})", beside / alone);
        }
    }
    let targets = targets(&rows, &stalled);
    println!("\ntargets:");
    for target in &targets {
        println!("  {}: {} ({})", target.name, target.verdict, target.detail);
    }
    // Where the CPU goes: on two cores a route's throughput follows the CPU each byte costs all
    // the processes on it, and witness's share is the part it can change.
    println!("\nCPU per byte of each best transfer, ns/B: the ssh or scp client / witness (all its threads)");
    println!("{:<18} {:>15} {:>15} {:>15}", "route", "cat", "upload", "scp");
    for (route, best) in routes.iter().zip(&best) {
        let cell = |t: &Timed| {
            let per_byte = |ticks: u64| ticks as f64 * 1e7 / bytes;
            if !t.seconds.is_finite() {
                "-".to_string()
            } else if route.via_witness {
                format!("{:.2} / {:.2}", per_byte(t.client_ticks), per_byte(t.witness_ticks))
            } else {
                format!("{:.2} / -", per_byte(t.client_ticks))
            }
        };
        println!("{:<18} {:>15} {:>15} {:>15}", route.name, cell(&best[0]), cell(&best[1]), cell(&best[2]));
    }
    // "verified 3.01 GiB in 2.190s (1374 MB/s)": the index check's lines follow it.
    let verified = witness.cli(&["verify"]).and_then(|out| {
        out.lines()
            .find(|line| line.starts_with("verified "))
            .map(str::to_string)
            .ok_or_else(|| format!("no throughput in its output: {out}"))
    });
    match &verified {
        Ok(line) => println!("\nwitness verify: {line}"),
        Err(e) => println!("\nwitness verify failed: {e}"),
    }

    // The markdown comes last, so that it is one piece to copy into docs/BENCHMARKS.md.
    let command = markdown::command(&["BENCH_MIB", "BENCH_EXECS", "BENCH_OPS", "BENCH_ROUTES"], "bench/ssh.sh");
    print_markdown(&command, &rows, &best, bytes, &targets, &verified);
    Ok(())
}

/// Throughput (cat, upload, scp) and exec round trips (new, open connection) of `row` over
/// `base`'s.
fn ratio(row: &Row, base: &Row) -> (f64, f64, f64, f64, f64) {
    (row.1 / base.1, row.2 / base.2, row.3 / base.3, row.4 / base.4, row.5 / base.5)
}

/// One of witness's SSH targets: what it asks, whether this run met it, and the figures.
struct Target {
    name: &'static str,
    verdict: &'static str,
    detail: String,
}

/// At least 0.70 of direct access's throughput with either cipher; an exec round trip under
/// twice direct's; a transfer beside a stalled reader at least 0.70 of its speed alone. A figure not measured (NaN) makes its verdict unknown.
fn targets(rows: &[Row], stalled: &[(&'static str, f64, f64)]) -> Vec<Target> {
    let (w, g) = (ratio(&rows[WITNESS], &rows[DIRECT]), ratio(&rows[WITNESS_GCM], &rows[DIRECT_GCM]));
    let check = |r: f64, pass: fn(f64) -> bool| (!r.is_nan()).then(|| pass(r));
    let throughput = [w.0, g.0, w.1, g.1, w.2, g.2].map(|r| check(r, |r| r >= 0.70));
    let exec = [w.3, w.4].map(|r| check(r, |r| r < 2.0));
    vec![
        Target {
            name: "throughput at least 0.70 of direct",
            verdict: markdown::verdict(&throughput),
            detail: format!(
                "cat {:.2} / {:.2}, upload {:.2} / {:.2}, scp {:.2} / {:.2}, with the client's cipher / AES-GCM",
                w.0, g.0, w.1, g.1, w.2, g.2
            ),
        },
        Target {
            name: "exec round trip under 2x direct",
            verdict: markdown::verdict(&exec),
            detail: format!("new connection {:.2}x, open connection {:.2}x", w.3, w.4),
        },
        {
            let through = stalled.iter().find(|(name, ..)| *name == "witness").map_or(f64::NAN, |(_, alone, beside)| beside / alone);
            Target {
                name: "a transfer beside a stalled reader keeps at least 0.70 of its speed alone",
                verdict: markdown::verdict(&[check(through, |r| r >= 0.70)]),
                detail: format!("through witness, on one connection: {through:.2}"),
            }
        },
    ]
}

/// The block docs/BENCHMARKS.md shows for this benchmark: each route's figures with its ratio to
/// direct access with the same cipher, witness's CPU per byte, the targets, witness against the
/// jump host and the verify of what was recorded.
fn print_markdown(command: &str, rows: &[Row], best: &[[Timed; 3]], bytes: f64, targets: &[Target], verified: &Result<String, String>) {
    println!("\n{}\n", markdown::measured(command));
    let header = [
        "route",
        "cat MB/s",
        "upload MB/s",
        "scp MB/s",
        "exec ms, new connection",
        "exec ms, open connection",
        "witness CPU ns/B, cat / upload / scp",
    ];
    let figure = |value: f64, ratio: f64, is_baseline: bool| match (value.is_nan(), is_baseline) {
        (true, _) => "-".to_string(),
        (false, true) => format!("{value:.1}"),
        (false, false) => format!("{value:.1} ({ratio:.2})"),
    };
    let table: Vec<Vec<String>> = rows
        .iter()
        .zip(best)
        .enumerate()
        .map(|(i, (row, best))| {
            let is_baseline = BASELINE[i] == i;
            let r = ratio(row, &rows[BASELINE[i]]);
            let witness_cpu = if i == WITNESS || i == WITNESS_GCM {
                let per_byte =
                    |t: &Timed| if t.seconds.is_finite() { format!("{:.2}", t.witness_ticks as f64 * 1e7 / bytes) } else { "-".into() };
                best.iter().map(per_byte).collect::<Vec<_>>().join(" / ")
            } else {
                "-".into()
            };
            vec![
                row.0.to_string(),
                figure(row.1, r.0, is_baseline),
                figure(row.2, r.1, is_baseline),
                figure(row.3, r.2, is_baseline),
                figure(row.4, r.3, is_baseline),
                figure(row.5, r.4, is_baseline),
                witness_cpu,
            ]
        })
        .collect();
    print!("{}", markdown::table(&header, &table));
    println!("\nIn brackets: the ratio to direct access with the same cipher (throughput: higher is better; exec: lower is better).\n");
    for target in targets {
        println!("- {}: **{}** ({})", target.name, target.verdict, target.detail);
    }
    let over_jump = ratio(&rows[WITNESS], &rows[JUMP_HOST]);
    println!(
        "- against the OpenSSH jump host, witness moves {:.2}x (cat), {:.2}x (upload) and {:.2}x (scp) as much, recording it all",
        over_jump.0, over_jump.1, over_jump.2
    );
    match verified {
        Ok(line) => println!("- `witness verify` of what the transfers recorded: {}", line.trim_start_matches("verified ")),
        Err(e) => println!("- `witness verify` failed: {e}"),
    }
}

/// One transfer: how long it took, and the CPU the client and witness spent on it (clock ticks of
/// 10 ms).
#[derive(Clone, Copy)]
struct Timed {
    seconds: f64,
    client_ticks: u64,
    witness_ticks: u64,
}

impl Timed {
    const NONE: Timed = Timed { seconds: f64::INFINITY, client_ticks: 0, witness_ticks: 0 };

    /// Times `transfer`, charging it the CPU of this program's finished children (the client it
    /// ran and waited for) and of witness.
    fn measure(witness_pid: u32, transfer: impl FnOnce() -> Result<f64, String>) -> Result<Timed, String> {
        let ticks = || (cpu_ticks("self", true).unwrap_or(0), cpu_ticks(&witness_pid.to_string(), false).unwrap_or(0));
        let (client_before, witness_before) = ticks();
        let seconds = transfer()?;
        let (client_after, witness_after) = ticks();
        Ok(Timed {
            seconds,
            client_ticks: client_after.saturating_sub(client_before),
            witness_ticks: witness_after.saturating_sub(witness_before),
        })
    }
}

/// Each transfer is timed this many times per route (the best counts).
const ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Cat,
    Upload,
    Scp,
    Exec,
    /// A `cat` beside a stalled reader on one connection.
    Stalled,
}

/// `BENCH_OPS=cat,upload,scp,exec,stalled` (default: all) picks what to measure, for a quicker look at
/// one of them; what is left out prints as NaN.
fn operations_wanted() -> Vec<Op> {
    let wanted = std::env::var("BENCH_OPS").unwrap_or_else(|_| "cat,upload,scp,exec,stalled".into());
    let by_name = [("cat", Op::Cat), ("upload", Op::Upload), ("scp", Op::Scp), ("exec", Op::Exec), ("stalled", Op::Stalled)];
    by_name.into_iter().filter(|(name, _)| wanted.split(',').any(|w| w.trim() == *name)).map(|(_, op)| op).collect()
}

/// `BENCH_ROUTES=witness` (route names as printed, `;`-separated; default: all) measures only
/// those routes, for a profile of one of them; the others print as NaN.
fn routes_wanted(routes: &[Route]) -> Vec<&'static str> {
    match std::env::var("BENCH_ROUTES") {
        Ok(wanted) => routes.iter().map(|r| r.name).filter(|name| wanted.split(';').any(|w| w.trim() == *name)).collect(),
        Err(_) => routes.iter().map(|r| r.name).collect(),
    }
}

/// Seconds one transfer of `source` took through `route`.
fn transfer(op: Op, route: &Route, source: &Path, remote: &Path, work: &Path) -> Result<f64, String> {
    match op {
        Op::Cat => timed(ssh(route, &format!("cat {}", source.display())).stdout(Stdio::null())),
        Op::Upload => {
            let file = std::fs::File::open(source).map_err(|e| e.to_string())?;
            timed(ssh(route, &format!("cat > {}/up.bin", remote.display())).stdin(file).stdout(Stdio::null()))
        }
        Op::Scp => {
            let mut cmd = Command::new("scp");
            cmd.args(&route.options).arg(format!("{}:{}", route.destination, source.display())).arg(work.join("down.bin"));
            timed(&mut cmd)
        }
        Op::Exec | Op::Stalled => unreachable!("timed by exec_round_trips and beside_a_stalled_reader"),
    }
}

/// p50 seconds of `true` on a new connection each time, and on one open connection.
fn exec_round_trips(route: &Route, n_execs: usize, work: &Path) -> Result<(f64, f64), String> {
    eprintln!("{}: {n_execs} execs on new connections and on one open connection", route.name);
    let fresh = percentile(&repeat(n_execs, || timed(&mut ssh(route, "true")))?, 0.5);
    let control_path = format!("ControlPath={}", work.join(format!("control-{}", route.name.replace([' ', ','], "-"))).display());
    let mut master = ssh_with(route, &["-M", "-N", "-o", &control_path], "").stdin(Stdio::null()).spawn().map_err(|e| e.to_string())?;
    wait_for(|| ssh_with(route, &["-O", "check", "-o", &control_path], "").output().is_ok_and(|o| o.status.success()))?;
    let muxed = percentile(&repeat(n_execs, || timed(&mut ssh_with(route, &["-o", &control_path], "true")))?, 0.5);
    let _ = master.kill();
    let _ = master.wait();
    Ok((fresh, muxed))
}

/// Seconds of a `cat` of `source` on one open connection (ControlMaster), best of
/// [`ROUNDS`] each: alone, and beside a session on the same connection whose reader has stopped.
fn beside_a_stalled_reader(route: &Route, source: &Path, work: &Path) -> Result<(f64, f64), String> {
    eprintln!("{}: a cat alone and beside a stalled reader on one connection", route.name);
    let control_path = format!("ControlPath={}", work.join(format!("stalled-{}", route.name.replace([' ', ','], "-"))).display());
    let mut master = ssh_with(route, &["-M", "-N", "-o", &control_path], "").stdin(Stdio::null()).spawn().map_err(|e| e.to_string())?;
    wait_for(|| ssh_with(route, &["-O", "check", "-o", &control_path], "").output().is_ok_and(|o| o.status.success()))?;
    let cat = format!("cat {}", source.display());
    let best = |control_path: &str| -> Result<f64, String> {
        let samples = repeat(ROUNDS, || timed(ssh_with(route, &["-o", control_path], &cat).stdout(Stdio::null())))?;
        Ok(samples.into_iter().fold(f64::INFINITY, f64::min))
    };
    let alone = best(&control_path)?;
    let mut stalled = ssh_with(route, &["-o", &control_path], "cat /dev/zero")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    // A moment for the stalled session to fill every buffer between it and its reader (a
    // benchmark may wait; the tests check the behaviour without timing it).
    std::thread::sleep(Duration::from_millis(500));
    let beside = best(&control_path);
    let _ = stalled.kill();
    let _ = stalled.wait();
    let _ = master.kill();
    let _ = master.wait();
    Ok((alone, beside?))
}

fn ssh(route: &Route, command: &str) -> Command {
    ssh_with(route, &[], command)
}

fn ssh_with(route: &Route, extra: &[&str], command: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(&route.options).args(extra).arg(&route.destination);
    if !command.is_empty() {
        cmd.arg(command);
    }
    cmd
}

/// Seconds a command took; an error when it failed.
fn timed(cmd: &mut Command) -> Result<f64, String> {
    let started = Instant::now();
    let out = cmd.stderr(Stdio::piped()).output().map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(seconds)
}

fn repeat(n: usize, mut run: impl FnMut() -> Result<f64, String>) -> Result<Vec<f64>, String> {
    (0..n).map(|_| run()).collect()
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn wait_for(ready: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ready() {
        if Instant::now() > deadline {
            return Err("the ssh control master did not come up".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn sh(script: &str) -> Result<(), String> {
    let status = Command::new("sh").arg("-c").arg(script).status().map_err(|e| e.to_string())?;
    status.success().then_some(()).ok_or_else(|| format!("`{script}` failed"))
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn witness_bin() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("WITNESS_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let next_to_us = here.with_file_name("witness");
    next_to_us
        .is_file()
        .then_some(next_to_us)
        .ok_or_else(|| "no witness binary next to this one; build it (cargo build --release -p witness) or set WITNESS_BIN".into())
}

/// `witness serve` in front of the target, with one connection `target` (pinned host key).
struct Witness {
    port: u16,
    config: PathBuf,
    child: Child,
}

impl Witness {
    fn start(bin: &Path, target: &Sshd, dir: &Path) -> Result<Witness, String> {
        let port = free_port();
        let config = dir.join("witness.toml");
        let text = format!(
            "data_dir = \"{data}\"\n[ledger]\ndurability = \"write\"\n[listen]\nssh = \"127.0.0.1:{port}\"\n\n[[connections]]\nname = \"target\"\nprotocol = \"ssh\"\naddress = \"{address}\"\nuser = \"{user}\"\nprivate_key_file = \"{key}\"\nhost_key = \"{host_key}\"\n",
            data = dir.join("witness-data").display(),
            address = target.address(),
            user = target.user(),
            key = target.client_key().display(),
            host_key = target.host_public_key(),
        );
        std::fs::write(&config, text).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(&config)
            .env("WITNESS_LOG", "warn,witness::commands::serve=info")
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("witness is running") {
                    let _ = ready_tx.send(());
                } else if line.contains("ERROR") || line.contains("WARN") || line.contains("shutting") || line.contains("signal") {
                    let _ = writeln!(std::io::stderr(), "witness: {line}");
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(60)).map_err(|_| "witness did not start".to_string())?;
        Ok(Witness { port, config, child })
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let bin = witness_bin()?;
        let out = Command::new(bin).args(args).arg("--config").arg(&self.config).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("witness {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}
