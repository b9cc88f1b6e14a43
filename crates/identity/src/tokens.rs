//! The token store: service-account tokens in SQLite (`DATA_DIR/identity/tokens.sqlite`). A token's
//! secret is shown once at creation; the store keeps its SHA-256 and its SCRAM verifier only.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::scram::{derive_verifier, Candidate, ScramChallenge, SCRAM_ITERATIONS};
use crate::{valid_group_name, valid_identity_name, AuthFailure, AuthenticatedIdentity, IdentityError};

pub(crate) mod ssh_keys;

/// What to create a token for.
#[derive(Clone, Debug, Default)]
pub struct NewToken {
    pub identity: String,
    pub groups: Vec<String>,
    /// None: the token never expires.
    pub ttl: Option<Duration>,
    pub task: Option<String>,
}

/// A token as listed: everything but its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub identity: String,
    pub groups: Vec<String>,
    pub task: Option<String>,
    pub created_ns: i64,
    pub expires_ns: Option<i64>,
    pub revoked_ns: Option<i64>,
}

/// Tokens of every identity. Cheap to share: one SQLite connection behind a mutex, used briefly
/// at authentication and never across an await.
pub struct TokenStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// Two 32-byte hashes of a valid token, and who it authenticates.
type ValidToken = ([u8; 32], [u8; 32], AuthenticatedIdentity);

/// Tokens start with this, so that they are recognisable in a leaked file or a paste.
const TOKEN_PREFIX: &str = "wit_";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS identities (
    name TEXT PRIMARY KEY,
    scram_salt BLOB NOT NULL,
    scram_iterations INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    identity TEXT NOT NULL REFERENCES identities(name),
    groups TEXT NOT NULL,
    task TEXT,
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER,
    revoked_ns INTEGER,
    secret_sha256 BLOB NOT NULL,
    stored_key BLOB NOT NULL,
    server_key BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_by_identity ON tokens (identity);
CREATE INDEX IF NOT EXISTS tokens_by_revocation ON tokens (revoked_ns);
CREATE INDEX IF NOT EXISTS tokens_by_secret ON tokens (secret_sha256);
";

impl TokenStore {
    /// Opens (creating if needed) the store of the data dir.
    pub fn open(data_dir: &Path) -> Result<TokenStore, IdentityError> {
        let dir = data_dir.join("identity");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| IdentityError::Io { path: dir.clone(), source })?;
        let path = dir.join("tokens.sqlite");
        // Made 0600 before SQLite opens it, so that its -wal and -shm files get that mode too.
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| IdentityError::Io { path: path.clone(), source })?;
        let conn = Connection::open(&path).map_err(store_err(&path))?;
        // The busy timeout first: the CLI and a running witness may open the store at once, and
        // switching to WAL needs a moment of exclusive access.
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(store_err(&path))?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").map_err(store_err(&path))?;
        conn.execute_batch(SCHEMA).map_err(store_err(&path))?;
        add_mysql_verifiers(&conn).map_err(store_err(&path))?;
        conn.execute_batch(ssh_keys::SCHEMA).map_err(store_err(&path))?;
        set_private(&path);
        Ok(TokenStore { conn: Mutex::new(conn), path })
    }

    /// Creates a token and returns it with its secret, which is not stored and cannot be shown again.
    pub fn create(&self, request: &NewToken) -> Result<(TokenInfo, String), IdentityError> {
        if !valid_identity_name(&request.identity) {
            return Err(IdentityError::BadName { given: request.identity.clone() });
        }
        if let Some(bad) = request.groups.iter().find(|g| !valid_group_name(g)) {
            return Err(IdentityError::BadGroup { given: bad.clone() });
        }
        let secret = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>()));
        let id = format!("tok_{}", hex::encode(rand::random::<[u8; 6]>()));
        let created_ns = now_ns();
        let info = TokenInfo {
            id,
            identity: request.identity.clone(),
            groups: request.groups.clone(),
            task: request.task.clone(),
            created_ns,
            expires_ns: request.ttl.map(|ttl| created_ns.saturating_add(ttl.as_nanos() as i64)),
            revoked_ns: None,
        };
        let conn = self.lock();
        let salt: Vec<u8> = rand::random::<[u8; 16]>().to_vec();
        conn.execute(
            "INSERT OR IGNORE INTO identities (name, scram_salt, scram_iterations) VALUES (?1, ?2, ?3)",
            params![info.identity, salt, SCRAM_ITERATIONS],
        )
        .map_err(store_err(&self.path))?;
        let (salt, iterations): (Vec<u8>, u32) = conn
            .query_row("SELECT scram_salt, scram_iterations FROM identities WHERE name = ?1", params![info.identity], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(store_err(&self.path))?;
        let verifier = derive_verifier(&secret, &salt, iterations);
        conn.execute(
            "INSERT INTO tokens (id, identity, groups, task, created_ns, expires_ns, secret_sha256, stored_key, server_key, mysql_native)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                info.id,
                info.identity,
                serde_json::to_string(&info.groups).expect("strings serialize"),
                info.task,
                info.created_ns,
                info.expires_ns,
                Sha256::digest(secret.as_bytes()).to_vec(),
                verifier.stored_key.to_vec(),
                verifier.server_key.to_vec(),
                mysql_native_verifier(&secret).to_vec()
            ],
        )
        .map_err(store_err(&self.path))?;
        Ok((info, secret))
    }

    pub fn list(&self) -> Result<Vec<TokenInfo>, IdentityError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT id, identity, groups, task, created_ns, expires_ns, revoked_ns FROM tokens ORDER BY created_ns, id")
            .map_err(store_err(&self.path))?;
        let rows = stmt.query_map([], token_info).map_err(store_err(&self.path))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(store_err(&self.path))
    }

    /// Revokes one token; revoking it twice keeps the first time.
    pub fn revoke(&self, id: &str) -> Result<TokenInfo, IdentityError> {
        let conn = self.lock();
        conn.execute("UPDATE tokens SET revoked_ns = COALESCE(revoked_ns, ?2) WHERE id = ?1", params![id, now_ns()])
            .map_err(store_err(&self.path))?;
        conn.query_row(
            "SELECT id, identity, groups, task, created_ns, expires_ns, revoked_ns FROM tokens WHERE id = ?1",
            params![id],
            token_info,
        )
        .optional()
        .map_err(store_err(&self.path))?
        .ok_or_else(|| IdentityError::UnknownToken { id: id.to_string() })
    }

    /// Revokes every token of an identity; returns the tokens revoked now.
    pub fn revoke_identity(&self, identity: &str) -> Result<Vec<TokenInfo>, IdentityError> {
        let ids: Vec<String> = {
            let conn = self.lock();
            let mut stmt =
                conn.prepare("SELECT id FROM tokens WHERE identity = ?1 AND revoked_ns IS NULL").map_err(store_err(&self.path))?;
            let rows = stmt.query_map(params![identity], |r| r.get(0)).map_err(store_err(&self.path))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(store_err(&self.path))?
        };
        ids.iter().map(|id| self.revoke(id)).collect()
    }

    /// Which of `ids` are revoked (for ending the live sessions that use them): token ids, and
    /// SSH key credentials (`sshkey:…`) whose key was removed.
    pub fn revoked_among(&self, ids: &[String]) -> Result<Vec<String>, IdentityError> {
        let mut revoked_keys = Vec::new();
        for id in ids.iter().filter(|id| id.starts_with("sshkey:")) {
            if self.ssh_key_revoked(id)? {
                revoked_keys.push(id.clone());
            }
        }
        let conn = self.lock();
        let mut stmt = conn.prepare_cached("SELECT revoked_ns IS NOT NULL FROM tokens WHERE id = ?1").map_err(store_err(&self.path))?;
        let mut revoked = revoked_keys;
        for id in ids {
            let is_revoked: Option<bool> = stmt.query_row(params![id], |r| r.get(0)).optional().map_err(store_err(&self.path))?;
            if is_revoked == Some(true) {
                revoked.push(id.clone());
            }
        }
        Ok(revoked)
    }

    /// Checks a token given as a password (cleartext over TLS or loopback).
    pub fn verify_secret(&self, identity: &str, secret: &str) -> Result<AuthenticatedIdentity, AuthFailure> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let candidates = self.valid_tokens(identity).map_err(|_| AuthFailure::NoToken)?;
        if candidates.is_empty() {
            return Err(AuthFailure::NoToken);
        }
        let mut found = None;
        for (hash, identity) in &candidates {
            if bool::from(hash.ct_eq(&digest)) && found.is_none() {
                found = Some(identity);
            }
        }
        found.cloned().ok_or(AuthFailure::WrongToken)
    }

    /// Checks a token presented without an identity (an API bearer token): its hash finds the
    /// identity, then the usual check compares in constant time and refuses revoked or expired ones.
    pub fn verify_bearer(&self, secret: &str) -> Result<AuthenticatedIdentity, AuthFailure> {
        let digest = Sha256::digest(secret.as_bytes()).to_vec();
        let identity: Option<String> = {
            let conn = self.lock();
            conn.prepare_cached("SELECT identity FROM tokens WHERE secret_sha256 = ?1 LIMIT 1")
                .and_then(|mut stmt| stmt.query_row(params![digest], |r| r.get(0)).optional())
                .map_err(|_| AuthFailure::NoToken)?
        };
        self.verify_secret(&identity.ok_or(AuthFailure::NoToken)?, secret)
    }

    /// The salt, rounds and verifiers for a SCRAM exchange with `identity`. An identity without
    /// tokens gets a stable made-up salt, so the exchange looks the same whether it exists or not.
    pub fn scram_challenge(&self, identity: &str) -> Result<ScramChallenge, IdentityError> {
        let conn = self.lock();
        let salt: Option<(Vec<u8>, u32)> = conn
            .query_row("SELECT scram_salt, scram_iterations FROM identities WHERE name = ?1", params![identity], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(store_err(&self.path))?;
        let (salt, iterations) = match salt {
            Some(found) => found,
            None => (self.made_up_salt(&conn, identity)?, SCRAM_ITERATIONS),
        };
        drop(conn);
        let mut candidates = Vec::new();
        for (stored_key, server_key, identity) in self.valid_verifiers(identity)? {
            candidates.push(Candidate { stored_key, server_key, identity });
        }
        Ok(ScramChallenge { salt, iterations, candidates })
    }

    fn made_up_salt(&self, conn: &Connection, identity: &str) -> Result<Vec<u8>, IdentityError> {
        let secret: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM meta WHERE key = 'salt_secret'", [], |r| r.get(0))
            .optional()
            .map_err(store_err(&self.path))?;
        let secret = match secret {
            Some(secret) => secret,
            None => {
                let secret = rand::random::<[u8; 32]>().to_vec();
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('salt_secret', ?1)", params![secret])
                    .map_err(store_err(&self.path))?;
                secret
            }
        };
        let mut h = Sha256::new();
        h.update(&secret);
        h.update(identity.as_bytes());
        Ok(h.finalize()[..16].to_vec())
    }

    fn valid_tokens(&self, identity: &str) -> Result<Vec<([u8; 32], AuthenticatedIdentity)>, IdentityError> {
        self.query_valid(identity, "secret_sha256", "secret_sha256").map(|rows| rows.into_iter().map(|(a, _, id)| (a, id)).collect())
    }

    fn valid_verifiers(&self, identity: &str) -> Result<Vec<ValidToken>, IdentityError> {
        self.query_valid(identity, "stored_key", "server_key")
    }

    /// The `mysql_native_password` verifiers (`SHA1(SHA1(token))`) of `identity`'s valid tokens,
    /// for a MySQL client that logs in with its token as the password. Tokens made before witness
    /// kept them have none.
    pub fn mysql_native_verifiers(&self, identity: &str) -> Result<Vec<([u8; 20], AuthenticatedIdentity)>, IdentityError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT mysql_native, id, groups, task FROM tokens
                 WHERE identity = ?1 AND revoked_ns IS NULL AND (expires_ns IS NULL OR expires_ns > ?2) AND mysql_native IS NOT NULL",
            )
            .map_err(store_err(&self.path))?;
        let rows = stmt
            .query_map(params![identity, now_ns()], |r| {
                let verifier: Vec<u8> = r.get(0)?;
                Ok((<[u8; 20]>::try_from(verifier), authenticated(identity, r, 1)?))
            })
            .map_err(store_err(&self.path))?;
        let rows = rows.collect::<Result<Vec<_>, _>>().map_err(store_err(&self.path))?;
        // A verifier that is not 20 bytes is no one's (the store was edited): skipped.
        Ok(rows.into_iter().filter_map(|(verifier, who)| Some((verifier.ok()?, who))).collect())
    }

    /// Two 32-byte columns of every token of `identity` that is neither revoked nor expired.
    fn query_valid(&self, identity: &str, first: &str, second: &str) -> Result<Vec<ValidToken>, IdentityError> {
        let conn = self.lock();
        let sql = format!(
            "SELECT {first}, {second}, id, groups, task FROM tokens
             WHERE identity = ?1 AND revoked_ns IS NULL AND (expires_ns IS NULL OR expires_ns > ?2)"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(store_err(&self.path))?;
        let rows = stmt
            .query_map(params![identity, now_ns()], |r| {
                let a: Vec<u8> = r.get(0)?;
                let b: Vec<u8> = r.get(1)?;
                Ok((a.try_into().unwrap_or([0; 32]), b.try_into().unwrap_or([0; 32]), authenticated(identity, r, 2)?))
            })
            .map_err(store_err(&self.path))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(store_err(&self.path))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (it is transactional).
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Who a valid token of `identity` authenticates, from its row's `id, groups, task` columns,
/// which start at column `at`.
fn authenticated(identity: &str, r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<AuthenticatedIdentity> {
    let groups: String = r.get(at + 1)?;
    Ok(AuthenticatedIdentity {
        name: identity.to_string(),
        groups: serde_json::from_str(&groups).unwrap_or_default(),
        task: r.get(at + 2)?,
        token_id: r.get(at)?,
    })
}

fn token_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    let groups: String = r.get(2)?;
    Ok(TokenInfo {
        id: r.get(0)?,
        identity: r.get(1)?,
        groups: serde_json::from_str(&groups).unwrap_or_default(),
        task: r.get(3)?,
        created_ns: r.get(4)?,
        expires_ns: r.get(5)?,
        revoked_ns: r.get(6)?,
    })
}

/// What a MySQL server keeps of a `mysql_native_password` password: `SHA1(SHA1(password))`. It
/// cannot be turned back into the token; with one recorded login exchange it can be into
/// `SHA1(token)`, which logs in over MySQL only, as a SCRAM stored key can for PostgreSQL.
fn mysql_native_verifier(secret: &str) -> [u8; 20] {
    use sha1::{Digest as _, Sha1};
    Sha1::digest(Sha1::digest(secret.as_bytes())).into()
}

/// Adds the column of MySQL verifiers to a store made before witness kept them.
fn add_mysql_verifiers(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool =
        conn.query_row("SELECT COUNT(*) FROM pragma_table_info('tokens') WHERE name = 'mysql_native'", [], |r| r.get::<_, i64>(0))? > 0;
    if !has {
        // Another process (the CLI, the gateway) may add it at the same moment: that is fine.
        if let Err(e) = conn.execute_batch("ALTER TABLE tokens ADD COLUMN mysql_native BLOB") {
            if !e.to_string().contains("duplicate column") {
                return Err(e);
            }
        }
    }
    Ok(())
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Token hashes are not secrets, but nobody but witness needs to read them.
fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

fn store_err(path: &Path) -> impl Fn(rusqlite::Error) -> IdentityError + '_ {
    move |source| IdentityError::Store { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_token_authenticates_its_identity_only_until_revoked() {
        let (dir, store) = store();
        let request = NewToken { identity: "claude".into(), groups: vec!["ai-agents".into()], ttl: None, task: Some("JIRA-1".into()) };
        let (info, secret) = store.create(&request).unwrap();
        assert!(secret.starts_with("wit_") && secret.len() > 30);
        let who = store.verify_secret("claude", &secret).unwrap();
        assert_eq!(
            (who.name(), who.groups(), who.task(), who.token_id()),
            ("claude", &["ai-agents".to_string()][..], Some("JIRA-1"), info.id.as_str())
        );
        assert_eq!(store.verify_secret("claude", "wit_wrong").unwrap_err(), AuthFailure::WrongToken);
        assert_eq!(store.verify_secret("someone-else", &secret).unwrap_err(), AuthFailure::NoToken);
        assert_eq!(store.verify_bearer(&secret).unwrap(), who, "a bearer token finds its identity");
        assert_eq!(store.verify_bearer("wit_wrong").unwrap_err(), AuthFailure::NoToken);
        let raw = std::fs::read(dir.path().join("identity/tokens.sqlite")).unwrap();
        assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret itself is never stored");

        store.revoke(&info.id).unwrap();
        assert_eq!(store.verify_secret("claude", &secret).unwrap_err(), AuthFailure::NoToken);
        assert_eq!(store.verify_bearer(&secret).unwrap_err(), AuthFailure::NoToken);
        assert_eq!(store.revoked_among(&[info.id.clone(), "tok_other".into()]).unwrap(), vec![info.id.clone()]);
        assert!(matches!(store.revoke("tok_nope"), Err(IdentityError::UnknownToken { .. })));
    }

    #[test]
    fn mysql_verifiers_are_kept_for_valid_tokens_and_added_to_old_stores() {
        use sha1::{Digest as _, Sha1};
        let (dir, store) = store();
        let request = NewToken { identity: "claude".into(), groups: vec!["ai-agents".into()], ..Default::default() };
        let (info, secret) = store.create(&request).unwrap();
        let verifiers = store.mysql_native_verifiers("claude").unwrap();
        let expected: [u8; 20] = Sha1::digest(Sha1::digest(secret.as_bytes())).into();
        assert_eq!(verifiers.len(), 1);
        assert_eq!((verifiers[0].0, verifiers[0].1.token_id()), (expected, info.id.as_str()));
        assert!(store.mysql_native_verifiers("nobody").unwrap().is_empty());
        store.revoke(&info.id).unwrap();
        assert!(store.mysql_native_verifiers("claude").unwrap().is_empty(), "a revoked token logs in nowhere");
        drop(store);

        // A store from before: no column; opening it adds one, and its tokens have no verifier.
        let old = tempfile::tempdir().unwrap();
        std::fs::create_dir(old.path().join("identity")).unwrap();
        let conn = Connection::open(old.path().join("identity/tokens.sqlite")).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(
            "INSERT INTO identities (name, scram_salt, scram_iterations) VALUES ('claude', x'00', 4096);
             INSERT INTO tokens (id, identity, groups, task, created_ns, secret_sha256, stored_key, server_key)
             VALUES ('tok_old', 'claude', '[]', NULL, 1, x'00', x'00', x'00')",
        )
        .unwrap();
        drop(conn);
        let reopened = TokenStore::open(old.path()).unwrap();
        assert!(reopened.mysql_native_verifiers("claude").unwrap().is_empty());
        reopened.create(&request).unwrap();
        assert_eq!(reopened.mysql_native_verifiers("claude").unwrap().len(), 1);
        drop(dir);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let (_dir, store) = store();
        let request = NewToken { identity: "ci".into(), ttl: Some(Duration::ZERO), ..Default::default() };
        let (_, secret) = store.create(&request).unwrap();
        assert_eq!(store.verify_secret("ci", &secret).unwrap_err(), AuthFailure::NoToken);
    }

    #[test]
    fn scram_challenges_share_the_identity_salt_and_hide_unknown_identities() {
        let (_dir, store) = store();
        let (_, first) = store.create(&NewToken { identity: "claude".into(), ..Default::default() }).unwrap();
        store.create(&NewToken { identity: "claude".into(), ..Default::default() }).unwrap();
        let challenge = store.scram_challenge("claude").unwrap();
        assert_eq!(challenge.candidates.len(), 2);
        let verifier = derive_verifier(&first, &challenge.salt, challenge.iterations);
        assert!(challenge.candidates.iter().any(|c| c.stored_key == verifier.stored_key));
        let unknown = store.scram_challenge("nobody").unwrap();
        assert!(unknown.candidates.is_empty());
        assert_eq!(unknown.salt, store.scram_challenge("nobody").unwrap().salt, "made-up salts are stable");
        assert_ne!(unknown.salt, store.scram_challenge("nobody-else").unwrap().salt);
    }

    #[test]
    fn names_are_checked() {
        let (_dir, store) = store();
        assert!(matches!(
            store.create(&NewToken { identity: "bad name".into(), ..Default::default() }),
            Err(IdentityError::BadName { .. })
        ));
        let bad_group = NewToken { identity: "ok".into(), groups: vec!["a,b".into()], ..Default::default() };
        assert!(matches!(store.create(&bad_group), Err(IdentityError::BadGroup { .. })));
    }
}
