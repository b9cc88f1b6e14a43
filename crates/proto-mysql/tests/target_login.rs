//! Witness's own login to a real MariaDB (the test kit's, on a free port in a temp dir): with
//! `mysql_native_password`, with MariaDB's `client_ed25519` (an auth switch), over TLS with the
//! certificate verified, and refused with a wrong password; then a query's rows read back. And
//! `caching_sha2_password`'s full exchange with a pinned RSA key, against the test kit's stand-in
//! (no MySQL 8 server can run here).

use std::sync::Arc;

use rustls::pki_types::ServerName;
use witness_proto_mysql::{LoginError, SimpleAnswer, TargetConnection, TargetLogin};
use witness_testkit::{CachingSha2Server, MariaDb, APP_DATABASE, ED25519_PASSWORD, ED25519_USER, NATIVE_PASSWORD, NATIVE_USER};

fn login<'a>(address: &'a str, user: &'a str, password: &'a str) -> TargetLogin<'a> {
    TargetLogin {
        address,
        user,
        password: password.as_bytes(),
        database: Some(APP_DATABASE),
        tls: None,
        tls_required: false,
        tls_verified: false,
        server_public_key: None,
        client_capabilities: None,
        charset: 45, // utf8mb4_general_ci
        attributes: Vec::new(),
    }
}

fn emails(answer: SimpleAnswer) -> Vec<String> {
    match answer {
        SimpleAnswer::Rows(rows) => rows.into_iter().map(|row| row[0].clone().unwrap_or_default()).collect(),
        other => panic!("expected rows, got {other:?}"),
    }
}

#[tokio::test]
async fn witness_logs_in_to_mariadb_with_each_plugin_and_reads_rows() {
    let db = MariaDb::start();
    let address = format!("127.0.0.1:{}", db.port());

    let mut native = TargetConnection::login(&login(&address, NATIVE_USER, NATIVE_PASSWORD)).await.expect("native login");
    assert!(native.greeting.server_version.contains("MariaDB"), "{}", native.greeting.server_version);
    let answer = native.simple_query("select email from customers order by id").await.unwrap();
    assert_eq!(emails(answer), ["ada@example.com", "grace@example.com", "alan@example.com"]);
    let answer = native.simple_query("select current_user()").await.unwrap();
    assert_eq!(emails(answer), [format!("{NATIVE_USER}@127.0.0.1")]);
    match native.simple_query("select * from no_such_table").await.unwrap() {
        SimpleAnswer::Failed(err) => assert_eq!((err.code, err.sql_state.as_str()), (1146, "42S02"), "{err:?}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(native.simple_query("update customers set name = name where id = 1").await.unwrap(), SimpleAnswer::Done(0));

    if db.has_ed25519() {
        let mut ed = TargetConnection::login(&login(&address, ED25519_USER, ED25519_PASSWORD)).await.expect("ed25519 login");
        assert_eq!(ed.greeting.auth_plugin, "client_ed25519", "the server switched plugins");
        assert_eq!(emails(ed.simple_query("select current_user()").await.unwrap()), [format!("{ED25519_USER}@127.0.0.1")]);
    }

    match TargetConnection::login(&login(&address, NATIVE_USER, "wrong")).await {
        Err(LoginError::Refused(err)) => assert_eq!(err.code, 1045, "{err:?}"),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("a wrong password logged in"),
    }
}

#[tokio::test]
async fn witness_logs_in_over_tls_only_to_the_certificate_its_ca_signed() {
    let db = MariaDb::start_tls();
    let address = format!("127.0.0.1:{}", db.port());
    let verified = trusting(db.ca_cert().expect("a TLS server has a CA"));
    let mut over_tls = login(&address, NATIVE_USER, NATIVE_PASSWORD);
    over_tls.tls = Some((verified, ServerName::try_from("localhost").unwrap().to_owned()));
    over_tls.tls_required = true;
    over_tls.tls_verified = true;
    let mut connection = TargetConnection::login(&over_tls).await.expect("login over TLS");
    let cipher = connection.simple_query("show status like 'Ssl_cipher'").await.unwrap();
    match cipher {
        SimpleAnswer::Rows(rows) => assert!(rows[0][1].as_deref().is_some_and(|c| !c.is_empty()), "{rows:?}"),
        other => panic!("expected rows, got {other:?}"),
    }

    // A server that offers no TLS is refused when TLS is required.
    let plain = MariaDb::start();
    let plain_address = format!("127.0.0.1:{}", plain.port());
    let mut required = login(&plain_address, NATIVE_USER, NATIVE_PASSWORD);
    required.tls_required = true;
    assert!(matches!(TargetConnection::login(&required).await, Err(LoginError::NoTls)));
}

/// A client config that trusts `ca` alone.
fn trusting(ca: &std::path::Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap();
    Arc::new(config.with_root_certificates(roots).with_no_client_auth())
}

#[tokio::test]
async fn caching_sha2_sends_the_password_only_encrypted_to_the_pinned_key() {
    let server = CachingSha2Server::start("app", "s3cret-pass");
    let address = format!("127.0.0.1:{}", server.port());
    let pinned = std::fs::read_to_string(server.public_key()).unwrap();
    let key = Arc::new(witness_proto_mysql::auth::rsa_public_key_from_pem(&pinned).expect("the stand-in's key reads"));

    // With the target's key pinned, the password goes encrypted to it, and the login succeeds.
    let mut with_key = login(&address, "app", "s3cret-pass");
    with_key.server_public_key = Some(key.clone());
    let mut connection = TargetConnection::login(&with_key).await.expect("a login with the pinned key");
    assert_eq!(connection.greeting.auth_plugin, "caching_sha2_password");
    assert!(matches!(connection.simple_query("select 1").await.unwrap(), SimpleAnswer::Done(_)));

    // A wrong password under the same key is refused by the target.
    let mut wrong = login(&address, "app", "not-the-password");
    wrong.server_public_key = Some(key);
    assert!(matches!(TargetConnection::login(&wrong).await, Err(LoginError::Refused(_))));

    // Another key: the target cannot read what witness sent.
    let another = CachingSha2Server::start("app", "s3cret-pass");
    let other = std::fs::read_to_string(another.public_key()).unwrap();
    let mut other_key = login(&address, "app", "s3cret-pass");
    other_key.server_public_key = Some(Arc::new(witness_proto_mysql::auth::rsa_public_key_from_pem(&other).unwrap()));
    assert!(matches!(TargetConnection::login(&other_key).await, Err(LoginError::Refused(_))));

    // No key and no verified TLS: the password is not sent at all.
    let refused = TargetConnection::login(&login(&address, "app", "s3cret-pass")).await;
    assert!(matches!(refused, Err(LoginError::FullAuthNeedsTls)), "{:?}", refused.err());
}
