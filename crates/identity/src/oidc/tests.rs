//! Unit tests: tokens signed here with Ed25519 keys, checked against preloaded keys (no HTTP), and
//! key fetching against a small loopback HTTP server that counts requests. The integration test
//! `tests/oidc.rs` runs the same checks against a real OpenID provider.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::keys::parse_jwks;
use super::*;

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "https://witness.test/pg";

// === helpers ===

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn jwk(key: &SigningKey, kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid, "x": b64(key.verifying_key().as_bytes())})
}

/// A compact JWS of `header` and `claims`, signed with `key` (whatever `header` claims).
fn sign(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

fn header(kid: &str) -> Value {
    json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid})
}

/// Claims that pass every check of `config()`.
fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "claude", "exp": unix_now() + 300, "iat": unix_now(),
        "jti": "jti-1", "groups": ["ai-agents", "readers"], "task": "JIRA-1",
    })
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        match value {
            Value::Null => claims.as_object_mut().unwrap().remove(name),
            value => claims.as_object_mut().unwrap().insert(name.clone(), value.clone()),
        };
    }
    claims
}

fn config() -> OidcIssuerConfig {
    OidcIssuerConfig { task_claim: Some("task".into()), ..OidcIssuerConfig::new(ISSUER, AUDIENCE) }
}

/// A verifier for `configs` whose issuer `ISSUER` has `jwks` already, as if just fetched.
fn preloaded(configs: Vec<OidcIssuerConfig>, jwks: Value) -> OidcVerifier {
    let verifier = OidcVerifier::new(configs);
    let keys = parse_jwks(jwks.to_string().as_bytes()).expect("test JWKS parses");
    let issuer = verifier.inner.issuers.iter().find(|i| i.config.issuer == ISSUER).unwrap();
    let mut cache = issuer.cache.lock().unwrap();
    cache.keys = keys.into();
    cache.last_attempt = Some(Instant::now());
    drop(cache);
    verifier
}

fn standard_verifier() -> OidcVerifier {
    preloaded(vec![config()], json!({"keys": [jwk(&key(1), "k1")]}))
}

/// Moves the verifier's fetch clock forward, past refetch intervals, without sleeping.
fn advance(verifier: &OidcVerifier, by: Duration) {
    verifier.inner.clock_skew_secs.fetch_add(by.as_secs(), Ordering::Relaxed);
}

/// What a check expects: the identity's parts, or a refusal.
type Expected = Result<(&'static str, Vec<&'static str>, Option<&'static str>), OidcRefusal>;

async fn check(verifier: &OidcVerifier, token: &str, expected: Expected, case: &str) {
    let got = verifier.verify(token).await;
    let got = got.map(|who| (who.name().to_owned(), who.groups().to_vec(), who.task().map(str::to_owned)));
    let expected =
        expected.map(|(name, groups, task)| (name.to_owned(), groups.iter().map(|g| g.to_string()).collect(), task.map(str::to_owned)));
    assert_eq!(got, expected, "case: {case}");
}

fn ok(name: &'static str, groups: &[&'static str], task: Option<&'static str>) -> Expected {
    Ok((name, groups.to_vec(), task))
}

// === shape and algorithm ===

#[test]
fn looks_like_jwt_recognises_compact_jws() {
    let real = sign(&key(1), &header("k1"), &claims());
    let cases: &[(&str, bool)] = &[
        (&real, true),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", true), // {"alg":"none"}: refused later, but a JWT
        ("wit_abcdef", false),
        ("password", false),
        ("a.b.c", false),                                             // parts do not decode to a header
        ("eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ4In0.c2ln", false),           // {"typ":"JWT"}: no alg
        ("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0", false),              // two parts
        ("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln.ZXh0cmE", false), // four parts
        ("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0=.c2ln", false),        // padding is not base64url
        ("eyJhbGciOiJFUzI1NiJ9..c2ln", false),                        // empty payload
        ("eyJhbGciOiJFUzI1NiJ9 .eyJzdWIiOiJ4In0.c2ln", false),
    ];
    for (s, expected) in cases {
        assert_eq!(looks_like_jwt(s), *expected, "{s:?}");
    }
}

#[tokio::test]
async fn malformed_unsigned_and_unaccepted_tokens_are_refused_with_the_failing_check() {
    let verifier = standard_verifier();
    let good = sign(&key(1), &header("k1"), &claims());
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let enc = |v: Value| b64(v.to_string().as_bytes());
    let hmac_header = enc(json!({"alg": "HS256", "kid": "k1"}));
    let cases: Vec<(String, OidcRefusal, &str)> = vec![
        (
            format!("{h}.{p}"),
            OidcRefusal::Malformed("a JWT has three parts separated by dots (encrypted tokens are not supported)"),
            "two parts",
        ),
        (
            format!("{h}.{p}.{s}.{s}.{s}"),
            OidcRefusal::Malformed("a JWT has three parts separated by dots (encrypted tokens are not supported)"),
            "JWE",
        ),
        (format!("!!.{p}.{s}"), OidcRefusal::Malformed("the header is not base64url-encoded JSON"), "header not base64"),
        (format!("{}.{p}.{s}", b64(b"[1]")), OidcRefusal::Malformed("the header is not base64url-encoded JSON"), "header not an object"),
        (format!("{}.{p}.{s}", enc(json!({"typ": "JWT"}))), OidcRefusal::Malformed("the header has no \"alg\" string"), "no alg"),
        // Unsigned comes before everything else: payload and signature are not even looked at.
        (format!("{}.!!.", enc(json!({"alg": "none"}))), OidcRefusal::Unsigned, "alg none, junk payload"),
        (format!("{}.{p}.{s}", enc(json!({"alg": "none"}))), OidcRefusal::Unsigned, "alg none with a signature"),
        (format!("{}.{p}.", enc(json!({"alg": "NONE"}))), OidcRefusal::Unsigned, "alg NONE"),
        (format!("{h}.{p}."), OidcRefusal::Unsigned, "signature stripped"),
        (format!("{hmac_header}.{p}.{s}"), OidcRefusal::UnsupportedAlgorithm { alg: "HS256".into() }, "HMAC"),
        (format!("{}.{p}.{s}", enc(json!({"alg": "ES512"}))), OidcRefusal::UnsupportedAlgorithm { alg: "ES512".into() }, "ES512"),
        (
            format!("{}.{p}.{s}", enc(json!({"alg": "EdDSA", "crit": ["b64"], "b64": false}))),
            OidcRefusal::Malformed("the header lists \"crit\" extensions, which are not supported"),
            "crit",
        ),
        (
            format!("{}.{p}.{s}", enc(json!({"alg": "EdDSA", "kid": 7}))),
            OidcRefusal::Malformed("the header's \"kid\" is not a string"),
            "numeric kid",
        ),
        (format!("{h}.!!.{s}"), OidcRefusal::Malformed("the payload is not base64url-encoded JSON"), "payload not base64"),
        (format!("{h}.{p}.!!"), OidcRefusal::Malformed("the signature is not base64url"), "signature not base64"),
        (format!("{h}.{}.{s}", enc(json!({"sub": "claude"}))), OidcRefusal::Malformed("the payload has no \"iss\" string claim"), "no iss"),
        ("x".repeat(jwt::MAX_TOKEN_LEN + 1), OidcRefusal::Malformed("the token is longer than 16 KiB"), "huge"),
    ];
    for (token, refusal, case) in cases {
        check(&verifier, &token, Err(refusal), case).await;
    }
}

// === keys and signatures ===

#[tokio::test]
async fn signatures_are_checked_with_a_key_that_fits_the_algorithm() {
    let (k1, k2, other) = (key(1), key(2), key(9));
    let verifier = preloaded(vec![config()], json!({"keys": [jwk(&k1, "k1"), jwk(&k2, "k2")]}));
    let good = sign(&k1, &header("k1"), &claims());
    let (h, rest) = good.split_once('.').unwrap();
    let (_, s) = rest.split_once('.').unwrap();
    let forged_claims = b64(with(claims(), json!({"sub": "root"})).to_string().as_bytes());
    let rs256 = b64(json!({"alg": "RS256", "kid": "k1"}).to_string().as_bytes());
    let expect_ok = ok("claude", &["ai-agents", "readers"], Some("JIRA-1"));
    let cases: Vec<(String, Expected, &str)> = vec![
        (good.clone(), expect_ok.clone(), "signed by k1"),
        (sign(&k2, &header("k2"), &claims()), expect_ok.clone(), "signed by k2"),
        (format!("{h}.{forged_claims}.{s}"), Err(OidcRefusal::BadSignature), "payload changed after signing"),
        (sign(&other, &header("k1"), &claims()), Err(OidcRefusal::BadSignature), "another key claims kid k1"),
        (sign(&k1, &header("k2"), &claims()), Err(OidcRefusal::BadSignature), "k1's signature under kid k2"),
        (sign(&k1, &json!({"alg": "EdDSA"}), &claims()), expect_ok.clone(), "no kid: every fitting key is tried"),
        (sign(&other, &json!({"alg": "EdDSA"}), &claims()), Err(OidcRefusal::BadSignature), "no kid, no key verifies"),
        (sign(&k1, &header("k3"), &claims()), Err(OidcRefusal::UnknownKey { kid: Some("k3".into()) }), "unknown kid"),
        (
            format!("{rs256}.{}", good.split_once('.').unwrap().1),
            Err(OidcRefusal::KeyAlgorithmMismatch { alg: "RS256".into(), kid: Some("k1".into()) }),
            "RS256 on an Ed25519 key",
        ),
        (sign(&k1, &json!({"alg": "ES256"}), &claims()), Err(OidcRefusal::UnknownKey { kid: None }), "no kid, no P-256 key"),
    ];
    for (token, expected, case) in cases {
        check(&verifier, &token, expected, case).await;
    }
}

#[tokio::test]
async fn a_key_published_for_one_algorithm_or_for_encryption_is_not_used_otherwise() {
    let k = key(1);
    let mut enc = jwk(&k, "enc");
    enc["use"] = json!("enc");
    let mut pinned = jwk(&k, "pinned");
    pinned["alg"] = json!("EdDSA");
    let verifier = preloaded(vec![config()], json!({"keys": [enc, pinned]}));
    check(&verifier, &sign(&k, &header("pinned"), &claims()), ok("claude", &["ai-agents", "readers"], Some("JIRA-1")), "alg matches").await;
    check(&verifier, &sign(&k, &header("enc"), &claims()), Err(OidcRefusal::UnknownKey { kid: Some("enc".into()) }), "use enc").await;
}

#[test]
fn jwks_documents_keep_usable_signing_keys_only() {
    let ed = jwk(&key(1), "ed");
    let small_rsa = json!({"kty": "RSA", "kid": "small", "n": b64(&[0xc5; 128]), "e": "AQAB"});
    let big_rsa = json!({"kty": "RSA", "kid": "big", "n": b64(&[0xc5; 256]), "e": "AQAB"});
    let p256 = json!({"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&[1; 32]), "y": b64(&[2; 32])});
    let p256_short = json!({"kty": "EC", "crv": "P-256", "kid": "ec-short", "x": b64(&[1; 31]), "y": b64(&[2; 32])});
    let secret = json!({"kty": "oct", "kid": "hmac", "k": b64(b"shared secret")});
    let p521 = json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": b64(&[1; 66]), "y": b64(&[2; 66])});
    let mut ed_wrong_alg = jwk(&key(2), "ed-rs");
    ed_wrong_alg["alg"] = json!("RS256");
    let mut verify_only = jwk(&key(3), "ops");
    verify_only["key_ops"] = json!(["encrypt"]);

    let count = |keys: Value| parse_jwks(json!({ "keys": keys }).to_string().as_bytes()).map(|k| k.len());
    assert_eq!(count(json!([ed, big_rsa, p256])), Ok(3));
    assert_eq!(count(json!([ed, small_rsa, secret, p521, p256_short, ed_wrong_alg, verify_only])), Ok(1));
    let none = count(json!([small_rsa, secret])).unwrap_err();
    assert!(none.contains("no usable signing key among 2") && none.contains("under 2048 bits") && none.contains("symmetric"), "{none}");
    assert!(parse_jwks(b"{\"keys\": 5}").unwrap_err().contains("no \"keys\" array"));
    assert!(parse_jwks(b"<html>").unwrap_err().contains("not JSON"));
}

// === claims ===

#[tokio::test]
async fn lifetime_is_checked_with_a_minute_of_leeway() {
    let verifier = standard_verifier();
    let now = unix_now();
    let good = ok("claude", &["ai-agents", "readers"], Some("JIRA-1"));
    let cases: Vec<(Value, Expected, &str)> = vec![
        (json!({"exp": now - 3600}), Err(OidcRefusal::Expired { expired_at: now - 3600 }), "expired an hour ago"),
        (json!({"exp": now - 90}), Err(OidcRefusal::Expired { expired_at: now - 90 }), "expired past the leeway"),
        (json!({"exp": now - 30}), good.clone(), "expired within the leeway"),
        (json!({"exp": (now + 300) as f64 + 0.5}), good.clone(), "fractional exp"),
        (
            json!({"exp": null}),
            Err(OidcRefusal::Malformed("the payload has no \"exp\" claim: only tokens that expire are accepted")),
            "no exp",
        ),
        (json!({"exp": "tomorrow"}), Err(OidcRefusal::Malformed("\"exp\" or \"nbf\" is not a number of seconds")), "exp not a number"),
        (json!({"nbf": now + 3600}), Err(OidcRefusal::NotYetValid { not_before: now + 3600 }), "not valid for an hour"),
        (json!({"nbf": now + 30}), good.clone(), "nbf within the leeway"),
        (json!({"nbf": now - 10}), good, "nbf passed"),
    ];
    for (changes, expected, case) in cases {
        check(&verifier, &sign(&key(1), &header("k1"), &with(claims(), changes)), expected, case).await;
    }
}

#[tokio::test]
async fn audience_and_issuer_must_match_the_configuration() {
    let verifier = standard_verifier();
    let good = ok("claude", &["ai-agents", "readers"], Some("JIRA-1"));
    let wrong =
        |found: &[&str]| OidcRefusal::WrongAudience { expected: AUDIENCE.into(), found: found.iter().map(|s| s.to_string()).collect() };
    let cases: Vec<(Value, Expected, &str)> = vec![
        (json!({"aud": [AUDIENCE, "https://other"]}), good, "audience in a list"),
        (json!({"aud": "https://other"}), Err(wrong(&["https://other"])), "other audience"),
        (json!({"aud": ["https://a", "https://b"]}), Err(wrong(&["https://a", "https://b"])), "other audiences"),
        (json!({"aud": null}), Err(wrong(&[])), "no audience"),
        (json!({"iss": "https://evil.test"}), Err(OidcRefusal::WrongIssuer { found: "https://evil.test".into() }), "unknown issuer"),
        (
            json!({"iss": "https://idp.test/"}),
            Err(OidcRefusal::WrongIssuer { found: "https://idp.test/".into() }),
            "issuer must match exactly",
        ),
    ];
    for (changes, expected, case) in cases {
        check(&verifier, &sign(&key(1), &header("k1"), &with(claims(), changes)), expected, case).await;
    }
}

#[tokio::test]
async fn identity_groups_and_task_come_from_the_configured_claims() {
    let custom = OidcIssuerConfig {
        identity_claim: "client_id".into(),
        groups_claim: "roles".into(),
        task_claim: None,
        ..OidcIssuerConfig::new(ISSUER, AUDIENCE)
    };
    let bad_name = |claim: &str| Err(OidcRefusal::BadIdentityClaim { claim: claim.into() });
    let cases: Vec<(OidcIssuerConfig, Value, Expected, &str)> = vec![
        (config(), json!({}), ok("claude", &["ai-agents", "readers"], Some("JIRA-1")), "defaults"),
        (config(), json!({"groups": "dba"}), ok("claude", &["dba"], Some("JIRA-1")), "one group as a string"),
        (config(), json!({"groups": null}), ok("claude", &[], Some("JIRA-1")), "no groups"),
        (
            config(),
            json!({"groups": ["ok", "not ok", 7, "", "x".repeat(65), "ok", "a.b-c_d"]}),
            ok("claude", &["ok", "a.b-c_d"], Some("JIRA-1")),
            "invalid groups dropped",
        ),
        (config(), json!({"groups": {"admin": true}}), ok("claude", &[], Some("JIRA-1")), "groups of the wrong type"),
        (config(), json!({"task": null}), ok("claude", &["ai-agents", "readers"], None), "no task"),
        (config(), json!({"task": 42}), Err(OidcRefusal::BadTaskClaim { claim: "task".into() }), "task not a string"),
        (config(), json!({"task": "line\nbreak"}), Err(OidcRefusal::BadTaskClaim { claim: "task".into() }), "task with control characters"),
        (
            config(),
            json!({"sub": "svc@corp.example"}),
            ok("svc@corp.example", &["ai-agents", "readers"], Some("JIRA-1")),
            "email-like name",
        ),
        (config(), json!({"sub": null}), bad_name("sub"), "no sub"),
        (config(), json!({"sub": "robert'); DROP TABLE"}), bad_name("sub"), "name with spaces and quotes"),
        (config(), json!({"sub": 1234}), bad_name("sub"), "numeric sub"),
        (config(), json!({"sub": "x".repeat(65)}), bad_name("sub"), "name too long"),
        (
            custom.clone(),
            json!({"client_id": "agent-7", "roles": ["writers"]}),
            ok("agent-7", &["writers"], None),
            "custom claims, task ignored",
        ),
        (custom, json!({}), bad_name("client_id"), "custom identity claim missing"),
    ];
    for (config, changes, expected, case) in cases {
        let verifier = preloaded(vec![config], json!({"keys": [jwk(&key(1), "k1")]}));
        check(&verifier, &sign(&key(1), &header("k1"), &with(claims(), changes)), expected, case).await;
    }
}

#[tokio::test]
async fn token_id_hashes_the_jti_or_else_the_token_and_never_shows_the_token() {
    let verifier = standard_verifier();
    let sha16 = |s: &str| format!("oidc:{}", &hex::encode(Sha256::digest(s.as_bytes()))[..16]);

    let with_jti = sign(&key(1), &header("k1"), &claims());
    let who = verifier.verify(&with_jti).await.unwrap();
    assert_eq!(who.token_id(), sha16("jti-1"));

    let without_jti = sign(&key(1), &header("k1"), &with(claims(), json!({"jti": null})));
    let who = verifier.verify(&without_jti).await.unwrap();
    assert_eq!(who.token_id(), sha16(&without_jti));
    assert!(!without_jti.contains(&who.token_id()[5..]) && who.token_id().len() == 21);
}

// === fetching keys ===

/// A loopback HTTP server with fixed answers per path, counting requests. Answers can change
/// while it runs (key rotation).
#[derive(Clone)]
struct KeyServer {
    issuer: String,
    /// Path -> HTTP status and body.
    routes: Arc<Mutex<HashMap<String, Answer>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl KeyServer {
    async fn start() -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let server = KeyServer { issuer, routes: Arc::default(), hits: Arc::default() };
        server.set(
            "/.well-known/openid-configuration",
            200,
            json!({"issuer": server.issuer, "jwks_uri": format!("{}/jwks", server.issuer)}),
        );
        let handler = server.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let handler = handler.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&request);
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    *handler.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let (status, body) = handler.routes.lock().unwrap().get(&path).cloned().unwrap_or((404, b"{}".to_vec()));
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                });
            }
        });
        server
    }

    fn set(&self, path: &str, status: u16, body: Value) {
        self.set_raw(path, status, body.to_string().into_bytes());
    }

    fn set_raw(&self, path: &str, status: u16, body: Vec<u8>) {
        self.routes.lock().unwrap().insert(path.to_owned(), (status, body));
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn verifier(&self) -> OidcVerifier {
        OidcVerifier::new(vec![OidcIssuerConfig::new(self.issuer.clone(), AUDIENCE)])
    }

    fn token(&self, key: &SigningKey, kid: &str) -> String {
        sign(key, &header(kid), &with(claims(), json!({"iss": self.issuer})))
    }
}

type Answer = (u16, Vec<u8>);

const DISCOVERY: &str = "/.well-known/openid-configuration";

#[test]
fn verification_can_run_in_spawned_tasks() {
    fn assert_send<T: Send>(_: T) {}
    let verifier = standard_verifier();
    // Sessions verify inside tokio::spawn: the future must not hold a std lock across a fetch.
    assert_send(verifier.verify("a.b.c"));
}

#[tokio::test]
async fn keys_are_fetched_on_first_use_and_cached() {
    let server = KeyServer::start().await;
    server.set("/jwks", 200, json!({"keys": [jwk(&key(1), "k1")]}));
    let verifier = server.verifier();
    assert_eq!((server.hits(DISCOVERY), server.hits("/jwks")), (0, 0), "nothing is fetched before a token arrives");

    for _ in 0..5 {
        let who = verifier.verify(&server.token(&key(1), "k1")).await.unwrap();
        assert_eq!(who.name(), "claude");
    }
    // Clones share the cache.
    verifier.clone().verify(&server.token(&key(1), "k1")).await.unwrap();
    assert_eq!((server.hits(DISCOVERY), server.hits("/jwks")), (1, 1));
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_at_most_once_per_interval() {
    let server = KeyServer::start().await;
    server.set("/jwks", 200, json!({"keys": [jwk(&key(1), "k1")]}));
    let verifier = server.verifier();
    verifier.verify(&server.token(&key(1), "k1")).await.unwrap();

    // The provider rotates to k2. Within the interval, a flood of unknown kids (made up, or the
    // new one) does not reach the provider.
    server.set("/jwks", 200, json!({"keys": [jwk(&key(1), "k1"), jwk(&key(2), "k2")]}));
    for n in 0..20 {
        let refused = verifier.verify(&server.token(&key(3), &format!("made-up-{n}"))).await.unwrap_err();
        assert_eq!(refused, OidcRefusal::UnknownKey { kid: Some(format!("made-up-{n}")) });
    }
    assert_eq!(verifier.verify(&server.token(&key(2), "k2")).await.unwrap_err(), OidcRefusal::UnknownKey { kid: Some("k2".into()) });
    assert_eq!((server.hits(DISCOVERY), server.hits("/jwks")), (1, 1));

    // After the interval the new kid causes one refetch (of the JWKS only: its URI is known) and
    // verifies; the old key still works from the cache.
    advance(&verifier, OIDC_REFETCH_INTERVAL + Duration::from_secs(1));
    assert_eq!(verifier.verify(&server.token(&key(2), "k2")).await.unwrap().name(), "claude");
    verifier.verify(&server.token(&key(1), "k1")).await.unwrap();
    assert_eq!((server.hits(DISCOVERY), server.hits("/jwks")), (1, 2));
}

#[tokio::test]
async fn a_failed_fetch_is_reported_and_not_retried_within_the_interval() {
    let server = KeyServer::start().await;
    server.set_raw("/jwks", 500, b"oops".to_vec());
    let verifier = server.verifier();
    let token = server.token(&key(1), "k1");

    for _ in 0..3 {
        match verifier.verify(&token).await.unwrap_err() {
            OidcRefusal::KeysUnavailable { issuer, reason } => {
                assert_eq!(issuer, server.issuer);
                assert!(reason.contains("/jwks") && reason.contains("500"), "{reason}");
            }
            other => panic!("expected KeysUnavailable, got {other:?}"),
        }
    }
    assert_eq!((server.hits(DISCOVERY), server.hits("/jwks")), (1, 1));

    // The provider recovers; the next attempt after the interval discovers again and succeeds.
    server.set("/jwks", 200, json!({"keys": [jwk(&key(1), "k1")]}));
    advance(&verifier, OIDC_REFETCH_INTERVAL + Duration::from_secs(1));
    verifier.verify(&token).await.unwrap();
    assert_eq!((server.hits(DISCOVERY), server.hits("/jwks")), (2, 2));
}

#[tokio::test]
async fn discovery_and_jwks_documents_are_checked_and_bounded() {
    let reason = |refusal: OidcRefusal| match refusal {
        OidcRefusal::KeysUnavailable { reason, .. } => reason,
        other => panic!("expected KeysUnavailable, got {other:?}"),
    };

    let server = KeyServer::start().await;
    server.set(DISCOVERY, 200, json!({"issuer": "https://impostor.test", "jwks_uri": format!("{}/jwks", server.issuer)}));
    let why = reason(server.verifier().verify(&server.token(&key(1), "k1")).await.unwrap_err());
    assert!(why.contains("discovery document of issuer \"https://impostor.test\""), "{why}");

    server.set(DISCOVERY, 200, json!({"issuer": server.issuer, "jwks_uri": "http://keys.example.com/jwks"}));
    let why = reason(server.verifier().verify(&server.token(&key(1), "k1")).await.unwrap_err());
    assert!(why.contains("plain http"), "{why}");

    server.set(DISCOVERY, 200, json!({"issuer": server.issuer, "jwks_uri": format!("{}/jwks", server.issuer)}));
    let mut huge = br#"{"keys": [], "padding": ""#.to_vec();
    huge.resize(fetch::MAX_BODY + 10, b'a');
    huge.extend_from_slice(b"\"}");
    server.set_raw("/jwks", 200, huge);
    let why = reason(server.verifier().verify(&server.token(&key(1), "k1")).await.unwrap_err());
    assert!(why.contains("larger than 1024 KiB"), "{why}");

    server.set("/jwks", 200, json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}));
    let why = reason(server.verifier().verify(&server.token(&key(1), "k1")).await.unwrap_err());
    assert!(why.contains("no usable signing key"), "{why}");
}

#[tokio::test]
async fn plain_http_issuers_off_loopback_are_refused_without_a_request() {
    let issuer = "http://idp.example.com";
    let verifier = OidcVerifier::new(vec![OidcIssuerConfig::new(issuer, AUDIENCE)]);
    let token = sign(&key(1), &header("k1"), &with(claims(), json!({"iss": issuer})));
    match verifier.verify(&token).await.unwrap_err() {
        OidcRefusal::KeysUnavailable { reason, .. } => assert!(reason.contains("plain http"), "{reason}"),
        other => panic!("expected KeysUnavailable, got {other:?}"),
    }
}
