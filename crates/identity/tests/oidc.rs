//! OIDC identities against a real OpenID provider (`oidc-provider`, started by the testkit): its
//! discovery document, JWKS and client-credentials tokens, signed with RS256, ES256, EdDSA and
//! PS256. Forged tokens are made from the provider's real ones, so only the forged part differs.
//! Expiry, leeway and the refetch interval (which need a clock) are unit tests in `src/oidc/tests.rs`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use witness_identity::{looks_like_jwt, OidcIssuerConfig, OidcRefusal, OidcVerifier};
use witness_testkit::{free_port, OidcProvider, AGENT_CLIENT, ED_CLIENT, OPS_CLIENT, PSS_CLIENT};

const AUDIENCE: &str = "https://witness.test/pg";
const DISCOVERY: &str = "/.well-known/openid-configuration";

fn config(provider: &OidcProvider) -> OidcIssuerConfig {
    OidcIssuerConfig { task_claim: Some("task".into()), ..OidcIssuerConfig::new(provider.issuer(), AUDIENCE) }
}

fn verifier(provider: &OidcProvider) -> OidcVerifier {
    OidcVerifier::new(vec![config(provider)])
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Header, payload and signature of a token, the first two decoded.
fn split(token: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    (decode(parts[0]), decode(parts[1]), parts[2].to_owned())
}

fn join(header: &Value, payload: &Value, signature: &str) -> String {
    format!("{}.{}.{signature}", encode(header), encode(payload))
}

#[tokio::test]
async fn tokens_of_every_client_verify_with_their_claims() {
    let provider = OidcProvider::start();
    let verifier = verifier(&provider);
    let cases: &[(&str, &str, &[&str], Option<&str>)] = &[
        (AGENT_CLIENT, "RS256", &["ai-agents"], Some("JIRA-42")),
        (OPS_CLIENT, "ES256", &["dba"], None),
        (ED_CLIENT, "EdDSA", &["ai-agents", "readers"], Some("nightly-report")),
        (PSS_CLIENT, "PS256", &[], None),
    ];
    for (client, alg, groups, task) in cases {
        let token = provider.mint_for_client(client, AUDIENCE);
        assert!(looks_like_jwt(&token), "{client}: {token}");
        let (header, payload, _) = split(&token);
        assert_eq!(header["alg"], *alg, "{client}: the provider signs with the algorithm the case is about");

        let who = verifier.verify(&token).await.unwrap_or_else(|e| panic!("{client}: {e}"));
        assert_eq!(who.name(), *client);
        assert_eq!(who.groups(), *groups, "{client}");
        assert_eq!(who.task(), *task, "{client}");
        let jti = payload["jti"].as_str().expect("the provider sets jti");
        assert_eq!(who.token_id(), format!("oidc:{}", &hex::encode(Sha256::digest(jti))[..16]), "{client}");
    }
    // One discovery and one JWKS fetch served all four algorithms.
    assert_eq!((provider.request_count(DISCOVERY), provider.request_count("/jwks")), (1, 1));
}

#[tokio::test]
async fn claims_are_read_from_the_configured_names() {
    let provider = OidcProvider::start();
    let token = provider.mint(AUDIENCE);
    let with = |identity_claim: &str, groups_claim: &str| {
        OidcVerifier::new(vec![OidcIssuerConfig {
            identity_claim: identity_claim.into(),
            groups_claim: groups_claim.into(),
            ..OidcIssuerConfig::new(provider.issuer(), AUDIENCE)
        }])
    };

    let who = with("client_id", "scope").verify(&token).await.unwrap();
    assert_eq!((who.name(), who.groups(), who.task()), ("agent-client", &["db".to_string()][..], None));
    let refused = with("iat", "groups").verify(&token).await.unwrap_err();
    assert_eq!(refused, OidcRefusal::BadIdentityClaim { claim: "iat".into() });

    // Two tokens of one client are told apart in recordings.
    let verifier = verifier(&provider);
    let first = verifier.verify(&token).await.unwrap();
    let second = verifier.verify(&provider.mint(AUDIENCE)).await.unwrap();
    assert_eq!(first.name(), second.name());
    assert_ne!(first.token_id(), second.token_id());
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let provider = OidcProvider::start();
    let token = provider.mint("https://other.test/api");
    assert_eq!(
        verifier(&provider).verify(&token).await.unwrap_err(),
        OidcRefusal::WrongAudience { expected: AUDIENCE.into(), found: vec!["https://other.test/api".into()] }
    );
}

#[tokio::test]
async fn a_token_of_an_unconfigured_issuer_is_refused_without_fetching() {
    let provider = OidcProvider::start();
    let token = provider.mint(AUDIENCE);
    let verifier = OidcVerifier::new(vec![OidcIssuerConfig::new("https://idp.other.test", AUDIENCE)]);
    assert_eq!(verifier.verify(&token).await.unwrap_err(), OidcRefusal::WrongIssuer { found: provider.issuer().into() });
    assert_eq!((provider.request_count(DISCOVERY), provider.request_count("/jwks")), (0, 0));
}

#[tokio::test]
async fn altered_and_resigned_tokens_are_refused() {
    let provider = OidcProvider::start();
    let verifier = verifier(&provider);
    let token = provider.mint(AUDIENCE);
    let (header, payload, signature) = split(&token);
    verifier.verify(&token).await.expect("the unaltered token verifies");

    let mut more_groups = payload.clone();
    more_groups["groups"] = json!(["ai-agents", "dba"]);
    let mut other_name = payload.clone();
    other_name["sub"] = json!("agent-clienu");
    let other_token = provider.mint(AUDIENCE);
    let (_, _, other_signature) = split(&other_token);
    let mut flipped = signature.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };

    let cases = [
        (join(&header, &more_groups, &signature), "groups added"),
        (join(&header, &other_name, &signature), "one character of sub changed"),
        (join(&header, &payload, &other_signature), "signature of another token"),
        (join(&header, &payload, &String::from_utf8(flipped).unwrap()), "one character of the signature changed"),
    ];
    for (forged, case) in cases {
        assert_eq!(verifier.verify(&forged).await.unwrap_err(), OidcRefusal::BadSignature, "{case}");
    }
}

#[tokio::test]
async fn unsigned_and_algorithm_confused_tokens_are_refused() {
    let provider = OidcProvider::start();
    let verifier = verifier(&provider);
    let rsa_token = provider.mint(AUDIENCE);
    let (header, payload, signature) = split(&rsa_token);
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("RS256"), Some("rsa-1")));
    let (_, _, ec_signature) = split(&provider.mint_for_client(OPS_CLIENT, AUDIENCE));

    // The classic confusion: an HMAC "keyed" with public data (there, the issuer's RSA key),
    // under the RSA key's id. It is refused on the algorithm alone, whatever the key.
    let hs_header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "rsa-1"});
    let mut mac = Hmac::<Sha256>::new_from_slice(provider.issuer().as_bytes()).unwrap();
    mac.update(format!("{}.{}", encode(&hs_header), encode(&payload)).as_bytes());
    let hs_signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());

    let cases = [
        (join(&json!({"alg": "none", "typ": "at+jwt"}), &payload, ""), OidcRefusal::Unsigned, "alg none, no signature"),
        (join(&json!({"alg": "none", "kid": "rsa-1"}), &payload, &signature), OidcRefusal::Unsigned, "alg none, real signature kept"),
        (join(&header, &payload, ""), OidcRefusal::Unsigned, "signature removed"),
        (join(&hs_header, &payload, &hs_signature), OidcRefusal::UnsupportedAlgorithm { alg: "HS256".into() }, "HS256 with the RSA key id"),
        (
            join(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "rsa-1"}), &payload, &ec_signature),
            OidcRefusal::KeyAlgorithmMismatch { alg: "ES256".into(), kid: Some("rsa-1".into()) },
            "ES256 on the RSA key",
        ),
        (
            join(&json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "ec-1"}), &payload, &signature),
            OidcRefusal::KeyAlgorithmMismatch { alg: "EdDSA".into(), kid: Some("ec-1".into()) },
            "EdDSA on the P-256 key",
        ),
    ];
    for (forged, refusal, case) in cases {
        assert_eq!(verifier.verify(&forged).await.unwrap_err(), refusal, "{case}");
    }
}

#[tokio::test]
async fn a_flood_of_unknown_key_ids_does_not_reach_the_provider() {
    let provider = OidcProvider::start();
    let verifier = verifier(&provider);
    let token = provider.mint(AUDIENCE);
    verifier.verify(&token).await.unwrap();
    assert_eq!((provider.request_count(DISCOVERY), provider.request_count("/jwks")), (1, 1));

    let (mut header, payload, signature) = split(&token);
    for n in 0..25 {
        header["kid"] = json!(format!("rotated-{n}"));
        let refused = verifier.verify(&join(&header, &payload, &signature)).await.unwrap_err();
        assert_eq!(refused, OidcRefusal::UnknownKey { kid: Some(format!("rotated-{n}")) });
    }
    // Within the refetch interval the provider saw no further request; known keys still work.
    assert_eq!((provider.request_count(DISCOVERY), provider.request_count("/jwks")), (1, 1));
    verifier.verify(&provider.mint_for_client(ED_CLIENT, AUDIENCE)).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_issuer_is_reported_as_keys_unavailable() {
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let verifier = OidcVerifier::new(vec![OidcIssuerConfig::new(issuer.clone(), AUDIENCE)]);
    let payload = json!({"iss": issuer, "aud": AUDIENCE, "sub": "agent", "exp": 4102444800u64});
    let token = join(&json!({"alg": "RS256", "kid": "rsa-1"}), &payload, "c2ln");
    match verifier.verify(&token).await.unwrap_err() {
        OidcRefusal::KeysUnavailable { issuer: named, reason } => {
            assert_eq!(named, issuer);
            assert!(reason.contains("/.well-known/openid-configuration"), "{reason}");
        }
        other => panic!("expected KeysUnavailable, got {other:?}"),
    }
}
