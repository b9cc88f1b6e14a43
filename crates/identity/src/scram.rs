//! SCRAM-SHA-256 (RFC 5802, RFC 7677) on the server side: deriving a token's verifier, and
//! checking a client's proof against every valid token of an identity.
//!
//! All tokens of one identity share its salt, so that one server-first message can be answered by
//! any of them: the proof is checked against each token's StoredKey in turn, in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AuthFailure, AuthenticatedIdentity};

/// PBKDF2 rounds for token verifiers. Tokens are 192-bit random secrets, so this guards nothing a
/// dictionary could find; it is PostgreSQL's default, which every client accepts.
pub const SCRAM_ITERATIONS: u32 = 4096;

/// What the server needs to run one SCRAM exchange for an identity: the salt and rounds to send,
/// and (hidden) the verifiers of the identity's valid tokens.
pub struct ScramChallenge {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub(crate) candidates: Vec<Candidate>,
}

pub(crate) struct Candidate {
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
    pub identity: AuthenticatedIdentity,
}

/// The two keys a SCRAM verifier keeps of a secret.
pub(crate) struct Verifier {
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

pub(crate) fn derive_verifier(secret: &str, salt: &[u8], iterations: u32) -> Verifier {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(secret.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    Verifier { stored_key: Sha256::digest(client_key).into(), server_key: hmac(&salted, b"Server Key") }
}

impl ScramChallenge {
    /// A challenge that no proof passes (when the store cannot be read).
    pub fn refusing(salt: Vec<u8>, iterations: u32) -> ScramChallenge {
        ScramChallenge { salt, iterations, candidates: Vec::new() }
    }

    /// Checks a client proof for `auth_message` (client-first-bare, server-first and
    /// client-final-without-proof, joined by commas). On success returns the identity and the
    /// server signature the client expects in server-final.
    pub fn verify(&self, auth_message: &[u8], client_proof: &[u8]) -> Result<(AuthenticatedIdentity, [u8; 32]), AuthFailure> {
        let proof: [u8; 32] = client_proof.try_into().map_err(|_| AuthFailure::MalformedProof)?;
        let mut found = None;
        // Every candidate is checked, match or not, so the time taken does not tell which matched.
        for candidate in &self.candidates {
            let signature = hmac(&candidate.stored_key, auth_message);
            let mut client_key = [0u8; 32];
            for i in 0..32 {
                client_key[i] = proof[i] ^ signature[i];
            }
            let computed: [u8; 32] = Sha256::digest(client_key).into();
            if bool::from(computed.ct_eq(&candidate.stored_key)) && found.is_none() {
                found = Some(candidate);
            }
        }
        let candidate = found.ok_or(if self.candidates.is_empty() { AuthFailure::NoToken } else { AuthFailure::WrongToken })?;
        Ok((candidate.identity.clone(), hmac(&candidate.server_key, auth_message)))
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SCRAM-SHA-256 example exchange of RFC 7677 section 3.
    #[test]
    fn rfc7677_example_verifies() {
        let salt = base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
        let verifier = derive_verifier("pencil", &salt, 4096);
        let identity = AuthenticatedIdentity { name: "user".into(), groups: vec![], task: None, token_id: "t1".into() };
        let challenge = ScramChallenge {
            salt,
            iterations: 4096,
            candidates: vec![Candidate { stored_key: verifier.stored_key, server_key: verifier.server_key, identity }],
        };
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = base64_decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        let (who, server_signature) = challenge.verify(auth_message.as_bytes(), &proof).unwrap();
        assert_eq!(who.name(), "user");
        assert_eq!(server_signature.to_vec(), base64_decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert_eq!(challenge.verify(auth_message.as_bytes(), &wrong).unwrap_err(), AuthFailure::WrongToken);
        assert_eq!(challenge.verify(auth_message.as_bytes(), &proof[..31]).unwrap_err(), AuthFailure::MalformedProof);
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(text).unwrap()
    }
}
