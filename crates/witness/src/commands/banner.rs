//! The banner `witness serve` prints (on stdout) once every listener is ready: where clients
//! connect, the console's URL, and the next commands to try, written so that they can be pasted
//! into another terminal as they are. Logs stay on stderr; the banner is the one thing for people.
//!
//! It does not check that the commands will succeed (a target may be down): it says what to run.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use witness_server::{Config, Listening};

/// What the banner tells, gathered by the caller.
pub struct BannerFacts<'a> {
    /// The addresses bound (with the system's port where the config says 0).
    pub listening: Listening,
    pub config: &'a Config,
    pub data_dir: &'a Path,
    /// This binary's path when `witness` on PATH is not it (as after `cargo run`): the banner
    /// then starts the next commands with an alias for it, so that they work when pasted.
    pub alias: Option<String>,
    /// The arguments that make the printed commands find this witness's config and data dir
    /// (`--config FILE`, `--data-dir DIR`, as given to serve).
    pub locate_args: String,
}

/// The banner's text, lines ending in newlines.
pub fn render(facts: &BannerFacts<'_>) -> String {
    let config = facts.config;
    let names = |protocol: &str| -> Vec<&str> {
        config.connections.iter().filter(|c| c.protocol().as_str() == protocol).map(|c| c.name()).collect()
    };
    let (pg_names, mysql_names, ssh_names, http_names) = (names("postgres"), names("mysql"), names("ssh"), names("http"));
    let mut text = String::new();
    let _ = writeln!(text, "witness is serving; its ledger is in {}", facts.data_dir.display());
    if let Some(address) = facts.listening.postgres {
        let _ = writeln!(text, "  PostgreSQL clients  {address}  {}", connections_note(&pg_names, "dbname", "postgres"));
    }
    if let Some(address) = facts.listening.mysql {
        let _ = writeln!(text, "  MySQL clients       {address}  {}", connections_note(&mysql_names, "database", "mysql"));
    }
    if let Some(address) = facts.listening.ssh {
        let _ = writeln!(text, "  SSH clients         {address}  {}", connections_note(&ssh_names, "user", "ssh"));
    }
    if let Some(address) = facts.listening.http {
        let _ = writeln!(text, "  HTTP clients        {address}  {}", connections_note(&http_names, "NAME in /c/NAME/", "http"));
    }
    if let Some(address) = facts.listening.api {
        let _ = writeln!(text, "  review console      {}  (log in with a token of an identity in a [roles] group)", console_url(address));
    }

    let witness = |args: &str| format!("  witness {args}{}", facts.locate_args);
    let mut next = Vec::new();
    if let Some(path) = &facts.alias {
        next.push(format!("  alias witness={}", shell_word(path)));
    }
    match (facts.listening.postgres, pg_names.first()) {
        (Some(address), Some(connection)) => {
            next.push(witness("token create --identity claude --groups ai-agents --task \"first try\""));
            let host = reachable(address);
            next.push(format!("  psql \"host={} port={} dbname={connection} user=claude password=TOKEN\"", host.ip(), host.port()));
        }
        _ => {
            if let (Some(address), Some(connection)) = (facts.listening.mysql, mysql_names.first()) {
                next.push(witness("token create --identity claude --groups ai-agents --task \"first try\""));
                let host = reachable(address);
                next.push(format!("  mariadb -h {} -P {} -u claude -pTOKEN {connection}", host.ip(), host.port()));
            } else if let (Some(address), Some(connection)) = (facts.listening.ssh, ssh_names.first()) {
                next.push(witness("identity add-key claude ~/.ssh/id_ed25519.pub --groups ai-agents"));
                let host = reachable(address);
                next.push(format!("  ssh -p {} {connection}@{}", host.port(), host.ip()));
            } else if let (Some(address), Some(connection)) = (facts.listening.http, http_names.first()) {
                next.push(witness("token create --identity claude --groups ai-agents --task \"first try\""));
                let host = reachable(address);
                next.push(format!("  curl -H \"Authorization: Bearer TOKEN\" http://{host}/c/{connection}/"));
            }
        }
    }
    next.push(witness("sessions list"));
    // An admin's token opens the console; without an admin group, nobody's would.
    if let (Some(_), Some(group)) = (facts.listening.api, config.roles.admin.first()) {
        let create = witness(&format!("token create --identity pat --groups {}", shell_word(group)));
        next.push(format!("{create}   # an admin, for the console"));
    }
    let _ = writeln!(text, "Next, from another terminal (TOKEN is what token create prints):");
    for line in next {
        let _ = writeln!(text, "{line}");
    }
    let _ = writeln!(text, "Stop witness with Ctrl-C or SIGTERM: live sessions end and the ledger is sealed.");
    text
}

/// This binary's path, unless the first `witness` on PATH is this very binary (then the printed
/// commands work as they are).
pub fn alias() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let on_path: Option<PathBuf> = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("witness")).find(|candidate| candidate.is_file()));
    match on_path.and_then(|found| found.canonicalize().ok()) {
        Some(found) if found == exe => None,
        _ => Some(exe.display().to_string()),
    }
}

/// `--config FILE` and `--data-dir DIR` as serve was given them (each with a leading space).
pub fn locate_args(config: Option<&Path>, data_dir: Option<&Path>) -> String {
    let mut args = String::new();
    if let Some(config) = config {
        let _ = write!(args, " --config {}", shell_word(&config.display().to_string()));
    }
    if let Some(data_dir) = data_dir {
        let _ = write!(args, " --data-dir {}", shell_word(&data_dir.display().to_string()));
    }
    args
}

/// What the listener serves: its connections' names, or that there are none yet.
fn connections_note(names: &[&str], field: &str, protocol: &str) -> String {
    if names.is_empty() {
        format!("(no {protocol} connection yet: add a [[connections]] with protocol = \"{protocol}\")")
    } else {
        format!("({field} = {})", names.join(" | "))
    }
}

/// An address a client on this host can use: a listener on every interface (0.0.0.0, ::) is
/// reached on loopback.
fn reachable(address: SocketAddr) -> SocketAddr {
    if address.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), address.port())
    } else {
        address
    }
}

fn console_url(address: SocketAddr) -> String {
    format!("http://{}", reachable(address))
}

/// A word the shell reads back as `text`: as it is when it holds nothing the shell treats
/// specially, else in single quotes.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    fn check(listening: Listening, config_text: &str, alias: Option<&str>, expected: &[&str], absent: &[&str]) {
        let config = config(config_text);
        let facts = BannerFacts {
            listening,
            config: &config,
            data_dir: Path::new("./witness-data"),
            alias: alias.map(str::to_string),
            locate_args: locate_args(Some(Path::new("examples/quickstart.toml")), None),
        };
        let banner = render(&facts);
        for line in expected {
            assert!(banner.lines().any(|l| l == *line), "{line:?} missing from:\n{banner}");
        }
        for text in absent {
            assert!(!banner.contains(text), "{text:?} should not be in:\n{banner}");
        }
    }

    const PG: &str = "[[connections]]\nname = \"pg-local\"\nprotocol = \"postgres\"\naddress = \"127.0.0.1:5432\"\n";

    #[test]
    fn the_banner_says_where_to_connect_and_what_to_run_next() {
        let at = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        check(
            Listening { postgres: at(15432), mysql: None, ssh: None, http: None, api: at(8080) },
            &format!("{PG}[roles]\nadmin = [\"platform\"]\n"),
            None,
            &[
                "witness is serving; its ledger is in ./witness-data",
                "  PostgreSQL clients  127.0.0.1:15432  (dbname = pg-local)",
                "  review console      http://127.0.0.1:8080  (log in with a token of an identity in a [roles] group)",
                "  witness token create --identity claude --groups ai-agents --task \"first try\" --config examples/quickstart.toml",
                "  psql \"host=127.0.0.1 port=15432 dbname=pg-local user=claude password=TOKEN\"",
                "  witness sessions list --config examples/quickstart.toml",
                "  witness token create --identity pat --groups platform --config examples/quickstart.toml   # an admin, for the console",
            ],
            &["SSH clients", "alias"],
        );
        // A listener on every interface is reached on loopback; no connection yet is said.
        check(
            Listening { postgres: Some(SocketAddr::from(([0, 0, 0, 0], 6432))), mysql: None, ssh: None, http: None, api: None },
            "",
            None,
            &["  PostgreSQL clients  0.0.0.0:6432  (no postgres connection yet: add a [[connections]] with protocol = \"postgres\")"],
            &["psql", "review console", "--groups platform"],
        );
        let ssh = "[[connections]]\nname = \"web\"\nprotocol = \"ssh\"\naddress = \"h:22\"\nuser = \"u\"\nprivate_key_file = \"k\"\nhost_key = \"trust-on-first-use\"\n";
        check(
            Listening { postgres: None, mysql: None, ssh: Some(SocketAddr::from(([0, 0, 0, 0], 2222))), http: None, api: None },
            ssh,
            Some("/src/my witness/target/release/witness"),
            &[
                "  SSH clients         0.0.0.0:2222  (user = web)",
                "  alias witness='/src/my witness/target/release/witness'",
                "  witness identity add-key claude ~/.ssh/id_ed25519.pub --groups ai-agents --config examples/quickstart.toml",
                "  ssh -p 2222 web@127.0.0.1",
            ],
            &["psql"],
        );
        let http = "[[connections]]\nname = \"billing\"\nprotocol = \"http\"\nurl = \"http://127.0.0.1:9000\"\n";
        check(
            Listening { postgres: None, mysql: None, ssh: None, http: Some(SocketAddr::from(([127, 0, 0, 1], 8081))), api: None },
            http,
            None,
            &[
                "  HTTP clients        127.0.0.1:8081  (NAME in /c/NAME/ = billing)",
                "  curl -H \"Authorization: Bearer TOKEN\" http://127.0.0.1:8081/c/billing/",
            ],
            &["psql", "ssh -p"],
        );
    }

    #[test]
    fn paths_the_shell_would_split_are_quoted() {
        assert_eq!(
            locate_args(Some(Path::new("my configs/w.toml")), Some(Path::new("/srv/w"))),
            " --config 'my configs/w.toml' --data-dir /srv/w"
        );
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }
}
