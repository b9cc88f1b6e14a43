//! SCRAM channel binding to the target's TLS certificate (`tls-server-end-point`, RFC 5929): the
//! hash of the certificate the target presented goes into witness's SCRAM proof, so a proof made
//! for one TLS connection is worthless on any other. A man in the middle who terminates TLS
//! presents a certificate of its own; the target then sees a binding that is not to its
//! certificate and refuses the login, and the relayed exchange gets the intruder nothing.
//!
//! This module only reads the certificate's signature algorithm and hashes the certificate. It
//! does not judge the certificate: that is the `tls` mode's job (`verify-full`).

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use spki::der::{Decode, Reader, SliceReader};
use spki::{AlgorithmIdentifierRef, ObjectIdentifier};

/// Whether witness binds its SCRAM login to the target's TLS certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelBindingMode {
    /// Bind when the target offers SCRAM-SHA-256-PLUS over TLS; log in without binding otherwise.
    #[default]
    Prefer,
    /// Bind, or do not log in at all: the target must offer SCRAM-SHA-256-PLUS over TLS.
    Require,
    /// Never bind (for targets behind a proxy that terminates TLS and cannot bind).
    Disable,
}

/// Why witness cannot bind a login to the target's certificate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindingUnavailable {
    #[error("the connection to the target is not TLS")]
    NoTls,
    #[error("the target does not offer SCRAM-SHA-256-PLUS")]
    NotOffered,
    #[error("the target asked for {asked} instead of SCRAM")]
    NotScram { asked: &'static str },
    #[error("the target presented no certificate")]
    NoCertificate,
    #[error("the target's certificate cannot be read: {reason}")]
    MalformedCertificate { reason: String },
    #[error("the target's certificate is signed with {algorithm}, for which RFC 5929 names no hash")]
    UnknownHash { algorithm: ObjectIdentifier },
}

/// A config value that is not one of the choices.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is unknown; use {choices}")]
pub struct UnknownChoice {
    /// Which setting, as the config names it.
    pub what: &'static str,
    pub value: String,
    pub choices: &'static str,
}

impl std::str::FromStr for ChannelBindingMode {
    type Err = UnknownChoice;

    fn from_str(s: &str) -> Result<ChannelBindingMode, UnknownChoice> {
        Ok(match s {
            "prefer" => ChannelBindingMode::Prefer,
            "require" => ChannelBindingMode::Require,
            "disable" => ChannelBindingMode::Disable,
            other => {
                return Err(UnknownChoice {
                    what: "channel_binding",
                    value: other.to_string(),
                    choices: "\"prefer\", \"require\" or \"disable\"",
                })
            }
        })
    }
}

/// How witness answers a target's SCRAM offer, as the GS2 header of its first message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ScramBinding {
    /// SCRAM-SHA-256-PLUS bound to the target's certificate with this hash ("p=tls-server-end-point").
    EndPoint(Vec<u8>),
    /// SCRAM-SHA-256; witness could bind but the target did not offer it ("y"). A target that does
    /// support binding, whose offer someone stripped on the way, refuses this.
    Unoffered,
    /// SCRAM-SHA-256 without binding ("n").
    Unbound,
}

/// How to answer a SCRAM offer: `plus_offered` says whether the target offered
/// SCRAM-SHA-256-PLUS, `end_point` is the binding data of the TLS connection (or why there is
/// none). An error means `require` cannot be met.
pub(crate) fn choose(
    mode: ChannelBindingMode,
    plus_offered: bool,
    end_point: Result<Vec<u8>, BindingUnavailable>,
) -> Result<ScramBinding, BindingUnavailable> {
    use ChannelBindingMode::{Disable, Prefer, Require};
    match (mode, plus_offered, end_point) {
        (Disable, _, _) => Ok(ScramBinding::Unbound),
        (Prefer | Require, true, Ok(hash)) => Ok(ScramBinding::EndPoint(hash)),
        (Require, false, _) => Err(BindingUnavailable::NotOffered),
        (Require, true, Err(why)) => Err(why),
        (Prefer, false, Ok(_)) => Ok(ScramBinding::Unoffered),
        (Prefer, _, Err(_)) => Ok(ScramBinding::Unbound),
    }
}

/// The hash a certificate's signature algorithm names, as RFC 5929 section 4.1 uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CertificateHash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// Signature algorithms and their hashes. MD5 and SHA-1 signatures are bound with SHA-256, as
/// RFC 5929 says. RSASSA-PSS (whose hash is in its parameters) and EdDSA (which has no separate
/// hash) are not here: PostgreSQL cannot bind to such certificates either.
const SIGNATURE_HASHES: &[(&str, CertificateHash)] = &[
    ("1.2.840.113549.1.1.4", CertificateHash::Sha256),   // md5WithRSAEncryption
    ("1.2.840.113549.1.1.5", CertificateHash::Sha256),   // sha1WithRSAEncryption
    ("1.2.840.113549.1.1.11", CertificateHash::Sha256),  // sha256WithRSAEncryption
    ("1.2.840.113549.1.1.12", CertificateHash::Sha384),  // sha384WithRSAEncryption
    ("1.2.840.113549.1.1.13", CertificateHash::Sha512),  // sha512WithRSAEncryption
    ("1.2.840.113549.1.1.14", CertificateHash::Sha224),  // sha224WithRSAEncryption
    ("1.2.840.10045.4.1", CertificateHash::Sha256),      // ecdsa-with-SHA1
    ("1.2.840.10045.4.3.1", CertificateHash::Sha224),    // ecdsa-with-SHA224
    ("1.2.840.10045.4.3.2", CertificateHash::Sha256),    // ecdsa-with-SHA256
    ("1.2.840.10045.4.3.3", CertificateHash::Sha384),    // ecdsa-with-SHA384
    ("1.2.840.10045.4.3.4", CertificateHash::Sha512),    // ecdsa-with-SHA512
    ("1.2.840.10040.4.3", CertificateHash::Sha256),      // dsa-with-sha1
    ("2.16.840.1.101.3.4.3.1", CertificateHash::Sha224), // dsa-with-sha224
    ("2.16.840.1.101.3.4.3.2", CertificateHash::Sha256), // dsa-with-sha256
];

/// The `tls-server-end-point` channel binding data of a DER certificate: its hash with the hash
/// function of its signature algorithm (SHA-256 for MD5 and SHA-1).
pub fn tls_server_end_point(certificate: &[u8]) -> Result<Vec<u8>, BindingUnavailable> {
    let algorithm = signature_algorithm(certificate).map_err(|e| BindingUnavailable::MalformedCertificate { reason: e.to_string() })?;
    let hash = SIGNATURE_HASHES
        .iter()
        .find(|(oid, _)| ObjectIdentifier::new_unwrap(oid) == algorithm)
        .map(|(_, hash)| *hash)
        .ok_or(BindingUnavailable::UnknownHash { algorithm })?;
    Ok(match hash {
        CertificateHash::Sha224 => Sha224::digest(certificate).to_vec(),
        CertificateHash::Sha256 => Sha256::digest(certificate).to_vec(),
        CertificateHash::Sha384 => Sha384::digest(certificate).to_vec(),
        CertificateHash::Sha512 => Sha512::digest(certificate).to_vec(),
    })
}

/// The outer `signatureAlgorithm` of `Certificate ::= SEQUENCE { tbsCertificate,
/// signatureAlgorithm, signatureValue }` (RFC 5280): the algorithm the issuer signed with.
fn signature_algorithm(certificate: &[u8]) -> Result<ObjectIdentifier, spki::der::Error> {
    let mut reader = SliceReader::new(certificate)?;
    let oid = reader.sequence(|fields| -> Result<_, spki::der::Error> {
        let _tbs_certificate = fields.tlv_bytes()?;
        let algorithm = AlgorithmIdentifierRef::decode(fields)?;
        let _signature_value = fields.tlv_bytes()?;
        Ok(algorithm.oid)
    })?;
    // Nothing may follow the certificate.
    reader.finish()?;
    Ok(oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_signature_algorithm_is_a_valid_oid() {
        for (oid, _) in SIGNATURE_HASHES {
            assert!(ObjectIdentifier::new(oid).is_ok(), "{oid}");
        }
    }

    #[test]
    fn certificates_are_bound_with_the_hash_of_their_signature() {
        let check = |algorithm: &'static rcgen::SignatureAlgorithm, expect: Option<CertificateHash>| {
            let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
            let der = cert.der().to_vec();
            let expected = match expect {
                Some(CertificateHash::Sha256) => Ok(Sha256::digest(&der).to_vec()),
                Some(CertificateHash::Sha384) => Ok(Sha384::digest(&der).to_vec()),
                Some(other) => unreachable!("rcgen makes no certificate signed with {other:?}"),
                None => Err(BindingUnavailable::UnknownHash { algorithm: signature_algorithm(&der).unwrap() }),
            };
            assert_eq!(tls_server_end_point(&der), expected, "{algorithm:?}");
        };
        check(&rcgen::PKCS_ECDSA_P256_SHA256, Some(CertificateHash::Sha256));
        check(&rcgen::PKCS_ECDSA_P384_SHA384, Some(CertificateHash::Sha384));
        check(&rcgen::PKCS_ED25519, None);
    }

    #[test]
    fn bytes_that_are_no_certificate_are_refused() {
        for bytes in [&b""[..], b"\x30", b"\x30\x00", b"\x30\x03\x02\x01\x00", b"not DER at all", &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]] {
            assert!(matches!(tls_server_end_point(bytes), Err(BindingUnavailable::MalformedCertificate { .. })), "{bytes:?}");
        }
    }

    #[test]
    fn binding_is_used_when_offered_and_possible_and_required_means_required() {
        use ChannelBindingMode::{Disable, Prefer, Require};
        let hash = || Ok(vec![1, 2, 3]);
        let check =
            |mode, plus_offered, end_point: Result<Vec<u8>, BindingUnavailable>, expect: Result<ScramBinding, BindingUnavailable>| {
                assert_eq!(choose(mode, plus_offered, end_point.clone()), expect, "{mode:?} offered={plus_offered} {end_point:?}");
            };
        check(Prefer, true, hash(), Ok(ScramBinding::EndPoint(vec![1, 2, 3])));
        check(Require, true, hash(), Ok(ScramBinding::EndPoint(vec![1, 2, 3])));
        check(Disable, true, hash(), Ok(ScramBinding::Unbound));
        check(Prefer, false, hash(), Ok(ScramBinding::Unoffered));
        check(Prefer, false, Err(BindingUnavailable::NoTls), Ok(ScramBinding::Unbound));
        check(Prefer, true, Err(BindingUnavailable::NoCertificate), Ok(ScramBinding::Unbound));
        check(Require, false, hash(), Err(BindingUnavailable::NotOffered));
        check(Require, false, Err(BindingUnavailable::NoTls), Err(BindingUnavailable::NotOffered));
        check(Require, true, Err(BindingUnavailable::NoTls), Err(BindingUnavailable::NoTls));
    }

    #[test]
    fn modes_parse() {
        assert_eq!("prefer".parse(), Ok(ChannelBindingMode::Prefer));
        assert_eq!("require".parse(), Ok(ChannelBindingMode::Require));
        assert_eq!("disable".parse(), Ok(ChannelBindingMode::Disable));
        assert!("always".parse::<ChannelBindingMode>().unwrap_err().to_string().contains("\"require\""));
    }
}
