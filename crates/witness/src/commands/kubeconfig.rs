//! `witness kubeconfig`: writes a kubeconfig that points kubectl at a Kubernetes connection
//! through witness: the server is witness's HTTP listener with the connection's `/c/NAME`
//! prefix, the CA is witness's own certificate, and the user is a witness token. The API
//! server's own credential never leaves witness, so it is not in the file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use base64::Engine;
use clap::Args;
use witness_core::Protocol;

use crate::locate::load_config;
use crate::Cli;

#[derive(Args, Debug)]
pub struct KubeconfigArgs {
    /// The Kubernetes connection kubectl goes to (its `name` in the config).
    #[arg(long)]
    connection: String,
    /// The witness token kubectl sends (`witness token create` prints one).
    #[arg(long, env = "WITNESS_TOKEN", hide_env_values = true)]
    token: String,
    /// witness's HTTP listener as kubectl reaches it (`https://witness.example.com:8443`);
    /// default: `[listen] http` of the config.
    #[arg(long)]
    server: Option<String>,
    /// Where to write the kubeconfig (readable by its owner only); default: standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &KubeconfigArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(cli)?;
    let kube: Vec<&str> = config.connections.iter().filter(|c| c.protocol() == Protocol::Kubernetes).map(|c| c.name()).collect();
    if !kube.contains(&args.connection.as_str()) {
        bail!(
            "{:?} is not a Kubernetes connection of this config; those are: {}",
            args.connection,
            if kube.is_empty() { "none (add one with protocol = \"kubernetes\")".to_string() } else { kube.join(", ") }
        );
    }
    let base = match &args.server {
        Some(server) => server.trim_end_matches('/').to_string(),
        None => {
            let Some(listen) = config.listen.http else {
                bail!("the config has no [listen] http for kubectl to reach; add one, or give --server");
            };
            if listen.port() == 0 {
                bail!("[listen] http has port 0 (chosen at start); give --server with the port witness printed");
            }
            let host = if listen.ip().is_unspecified() { "127.0.0.1".to_string() } else { listen.ip().to_string() };
            let host = if listen.is_ipv6() && !listen.ip().is_unspecified() { format!("[{host}]") } else { host };
            format!("https://{host}:{}", listen.port())
        }
    };
    let ca = if base.starts_with("https://") {
        let cert = match &config.postgres.tls_cert {
            Some(cert) => cert.clone(),
            None => config.data_dir.join("tls").join("witness.crt"),
        };
        let pem = std::fs::read(&cert).with_context(|| {
            format!("cannot read witness's certificate {} (start witness once to create it, or give --server http://…)", cert.display())
        })?;
        Some(base64::engine::general_purpose::STANDARD.encode(pem))
    } else {
        None
    };
    let text = kubeconfig(&args.connection, &format!("{base}/c/{}", args.connection), ca.as_deref(), &args.token);
    match &args.output {
        None => print!("{text}"),
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}: kubectl --kubeconfig {} get pods", path.display(), path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The kubeconfig's YAML: one cluster, user and context, all named after the connection. Values
/// are written as JSON strings, which YAML reads as double-quoted scalars.
fn kubeconfig(name: &str, server: &str, ca: Option<&str>, token: &str) -> String {
    let quoted = |text: &str| serde_json::Value::String(text.to_string()).to_string();
    let name = quoted(&format!("witness-{name}"));
    let trust = match ca {
        Some(ca) => format!("    certificate-authority-data: {}\n", quoted(ca)),
        None => String::new(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n{trust}users:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\ncurrent-context: {name}\n",
        server = quoted(server),
        token = quoted(token),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_names_witness_and_the_token_only() {
        let text = kubeconfig("k8s-prod", "https://127.0.0.1:8443/c/k8s-prod", Some("Q0E="), "wit_abc\"x");
        assert!(text.contains("server: \"https://127.0.0.1:8443/c/k8s-prod\""), "{text}");
        assert!(text.contains("certificate-authority-data: \"Q0E=\""), "{text}");
        assert!(text.contains("token: \"wit_abc\\\"x\""), "{text}");
        assert!(text.contains("current-context: \"witness-k8s-prod\""), "{text}");
        assert!(!kubeconfig("k", "http://x/c/k", None, "t").contains("certificate-authority"));
    }
}
