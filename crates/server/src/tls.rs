//! The certificate witness offers to clients: the configured one, or a self-signed pair created on
//! first start in DATA_DIR/tls (the key readable by witness only).

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use crate::config::Config;

pub fn client_facing(config: &Config, data_dir: &Path) -> Result<Arc<rustls_server_config::ServerConfig>, String> {
    let (cert_path, key_path) = match (&config.postgres.tls_cert, &config.postgres.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => {
            let dir = data_dir.join("tls");
            let (cert, key) = (dir.join("witness.crt"), dir.join("witness.key"));
            if !cert.exists() || !key.exists() {
                create_self_signed(&dir, &cert, &key)?;
            }
            (cert, key)
        }
    };
    let cert = std::fs::read(&cert_path).map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?;
    let key = std::fs::read(&key_path).map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
    witness_proto_pg::server_config(&cert, &key, &cert_path.display().to_string()).map_err(|e| e.to_string())
}

fn create_self_signed(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
    // Both 0600: the certificate is no secret, but the data dir is witness's alone.
    for (path, pem) in [(key_path, certified.key_pair.serialize_pem()), (cert_path, certified.cert.pem())] {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        std::io::Write::write_all(&mut file, pem.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    tracing::info!(cert = %cert_path.display(), "created a self-signed TLS certificate for clients");
    Ok(())
}

mod rustls_server_config {
    pub use witness_proto_pg::RustlsServerConfig as ServerConfig;
}
