//! Certificates as an account uploads them (Cloudflare's custom certificates: a PEM chain and
//! its private key), checked before anything stores them, pure (the time is passed in):
//!
//! - the chain parses, leaf first, and each certificate is issued by the next: its issuer is
//!   the next one's subject and the next one's key verifies its signature; every certificate
//!   after the leaf is a CA;
//! - the private key parses, is of a type the PoPs serve (RSA of at least 2,048 bits, ECDSA
//!   P-256 or P-384, Ed25519) and is the leaf's: its public key is the one the leaf certifies;
//! - every certificate is valid now (not before its start, not after its end);
//! - the leaf names every hostname it must cover (its DNS subject alternative names; a
//!   wildcard `*.example.com` covers one label, as browsers read it).
//!
//! Each problem names its field (`certificate`, `certificate[1]`, `private_key`) and the
//! reason; a private key is never put in one. What passes is described by [`Checked`]: the
//! names, issuer, serial, validity, key type and the leaf's SHA-256 fingerprint, as the API
//! shows a certificate.
//!
//! [`seal`]: private keys sealed at rest under the control plane's own key. [`to_pop`]: sealed
//! to one PoP's X25519 key for the configuration stream. [`acme`]: what a PoP answers for an
//! HTTP-01 or TLS-ALPN-01 challenge. [`ocsp`]: the OCSP request for a certificate and whether
//! a response may be stapled.

pub mod acme;
pub mod ocsp;
pub mod seal;
pub mod to_pop;

use edgenet_interconnect::Problem;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// The type of a certificate's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    /// RSA of this many bits.
    Rsa(u32),
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyType::Rsa(bits) => write!(f, "rsa-{bits}"),
            KeyType::EcdsaP256 => f.write_str("ecdsa-p256"),
            KeyType::EcdsaP384 => f.write_str("ecdsa-p384"),
            KeyType::Ed25519 => f.write_str("ed25519"),
        }
    }
}

/// The least RSA key size served.
pub const MIN_RSA_BITS: u32 = 2048;

/// An uploaded certificate that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The leaf's DNS names (and IP addresses).
    pub names: Vec<String>,
    /// The leaf's subject and issuer, as distinguished names.
    pub subject: String,
    /// The leaf's issuer.
    pub issuer: String,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// Validity, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// The leaf's key.
    pub key_type: KeyType,
    /// SHA-256 of the leaf's DER, hex.
    pub sha256: String,
    /// The chain as DER, leaf first.
    pub chain: Vec<Vec<u8>>,
}

/// Whether `host` is covered by one of `names` (exactly, or by a wildcard of one label).
pub fn covers(names: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    names.iter().any(|n| {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        match n.strip_prefix("*.") {
            Some(base) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
            None => n == host,
        }
    })
}

/// Checks a PEM chain (leaf first) and its PEM private key at `now` (Unix seconds) for
/// `hosts`, the names it must cover; every problem found, or what it is.
pub fn check(
    certificate_pem: &str,
    private_key_pem: &str,
    hosts: &[&str],
    now: i64,
) -> Result<Checked, Vec<Problem>> {
    let mut problems = Vec::new();
    let ders: Vec<CertificateDer<'static>> =
        match rustls_pemfile::certs(&mut certificate_pem.as_bytes()).collect() {
            Ok(d) => d,
            // The parser's error quotes the offending line, which may be a pasted key: only
            // the kind is said.
            Err(_) => {
                return Err(vec![Problem::new(
                    "certificate",
                    "is not PEM: a BEGIN or END line is broken, or a block's base64 is",
                )])
            }
        };
    if ders.is_empty() {
        return Err(vec![Problem::new(
            "certificate",
            "holds no CERTIFICATE block: give the chain in PEM, the leaf first",
        )]);
    }
    let mut certs = Vec::new();
    for (i, der) in ders.iter().enumerate() {
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, c)) => certs.push(c),
            Err(e) => problems.push(Problem::new(
                field(i),
                format!("is not an X.509 certificate: {e}"),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    for (i, c) in certs.iter().enumerate() {
        let v = c.validity();
        let (start, end) = (v.not_before.timestamp(), v.not_after.timestamp());
        if now < start {
            problems.push(Problem::new(
                field(i),
                format!("is not valid before {}", v.not_before),
            ));
        }
        if now > end {
            problems.push(Problem::new(
                field(i),
                format!("expired at {}", v.not_after),
            ));
        }
        if let Some(next) = certs.get(i + 1) {
            if c.issuer() != next.subject() || c.verify_signature(Some(next.public_key())).is_err()
            {
                problems.push(Problem::new(
                    field(i + 1),
                    format!(
                        "did not issue {} (issued by {}): the chain goes leaf first, then each issuer",
                        field(i),
                        c.issuer()
                    ),
                ));
            } else if !next.is_ca() {
                problems.push(Problem::new(
                    field(i + 1),
                    "is not a CA (basic constraints), so it cannot issue the certificate before it",
                ));
            }
        }
    }
    let leaf = &certs[0];
    let names = dns_names(leaf);
    for host in hosts {
        if !covers(&names, host) {
            problems.push(Problem::new(
                "certificate",
                format!(
                    "does not cover {host} (it names {})",
                    if names.is_empty() {
                        "no DNS names".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
    }
    let key_type = match key_type(leaf) {
        Ok(k) => Some(k),
        Err(reason) => {
            problems.push(Problem::new("certificate", reason));
            None
        }
    };
    check_key(private_key_pem, &ders, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &ders[0]);
    Ok(Checked {
        names,
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        serial: leaf.raw_serial_as_string().replace(':', ""),
        not_before: leaf.validity().not_before.timestamp(),
        not_after: leaf.validity().not_after.timestamp(),
        key_type: key_type.expect("no problem means a key type"),
        sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        chain: ders.iter().map(|d| d.to_vec()).collect(),
    })
}

fn field(i: usize) -> String {
    if i == 0 {
        "certificate".to_string()
    } else {
        format!("certificate[{i}]")
    }
}

/// The leaf's DNS names, and its IP address names written as addresses.
fn dns_names(c: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// When the certificate in `der` expires, Unix seconds.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(c.validity().not_after.timestamp())
}

/// The leaf's key type, or why the PoPs do not serve it.
fn key_type(c: &X509Certificate<'_>) -> Result<KeyType, String> {
    let spki = c.public_key();
    match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa_bits(rsa.modulus),
                _ => 0,
            };
            if bits < MIN_RSA_BITS {
                Err(format!(
                    "has an RSA key of {bits} bits: at least {MIN_RSA_BITS}"
                ))
            } else {
                Ok(KeyType::Rsa(bits))
            }
        }
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => Ok(KeyType::EcdsaP256),
                Some("1.3.132.0.34") => Ok(KeyType::EcdsaP384),
                other => Err(format!(
                    "has an ECDSA key on curve {}: P-256 or P-384 only",
                    other.unwrap_or("(none named)")
                )),
            }
        }
        "1.3.101.112" => Ok(KeyType::Ed25519),
        other => Err(format!(
            "has a key of algorithm {other}: RSA, ECDSA (P-256, P-384) or Ed25519 only"
        )),
    }
}

/// Bits of an RSA modulus (big-endian, leading zero bytes ignored).
fn rsa_bits(modulus: &[u8]) -> u32 {
    let m: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(at) => &modulus[at..],
        None => return 0,
    };
    (m.len() as u32) * 8 - m[0].leading_zeros()
}

/// The private key parses, is a type rustls signs with, and is the leaf's.
fn check_key(pem: &str, chain: &[CertificateDer<'static>], problems: &mut Vec<Problem>) {
    // The key's own parse errors can quote its bytes: only the kind is said.
    let key: PrivateKeyDer<'static> = match rustls_pemfile::private_key(&mut pem.as_bytes()) {
        Ok(Some(k)) => k,
        Ok(None) => {
            problems.push(Problem::new(
                "private_key",
                "holds no PRIVATE KEY block (PKCS#8, RSA or EC, in PEM)",
            ));
            return;
        }
        Err(_) => {
            problems.push(Problem::new("private_key", "is not PEM"));
            return;
        }
    };
    let signer = match rustls::crypto::ring::sign::any_supported_type(&key) {
        Ok(s) => s,
        Err(_) => {
            problems.push(Problem::new(
                "private_key",
                "is not a key this server signs with (RSA, ECDSA P-256 or P-384, Ed25519)",
            ));
            return;
        }
    };
    let certified = rustls::sign::CertifiedKey::new(chain.to_vec(), signer);
    if let Err(e) = certified.keys_match() {
        let reason = match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                "does not match the certificate's public key".to_string()
            }
            other => format!("cannot be matched to the certificate: {other}"),
        };
        problems.push(Problem::new("private_key", reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    /// 2026-12-10 (after the fixtures were made).
    const NOW: i64 = 1_796_860_800;

    struct Issued {
        chain: String,
        key: String,
    }

    /// A leaf for `names` signed by an intermediate signed by a root; the leaf's key.
    fn issue(names: &[&str]) -> Issued {
        let root_key = KeyPair::generate().unwrap();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.distinguished_name
            .push(rcgen::DnType::CommonName, "Test Root");
        let root_cert = root.self_signed(&root_key).unwrap();
        let mid_key = KeyPair::generate().unwrap();
        let mut mid = CertificateParams::new(Vec::<String>::new()).unwrap();
        mid.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        mid.distinguished_name
            .push(rcgen::DnType::CommonName, "Test Intermediate");
        let mid_cert = mid.signed_by(&mid_key, &root_cert, &root_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        leaf.not_before = rcgen::date_time_ymd(2026, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2027, 1, 1);
        let leaf = leaf.signed_by(&leaf_key, &mid_cert, &mid_key).unwrap();
        Issued {
            chain: format!("{}{}", leaf.pem(), mid_cert.pem()),
            key: leaf_key.serialize_pem(),
        }
    }

    fn fields(r: Result<Checked, Vec<Problem>>) -> Vec<String> {
        r.unwrap_err()
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.reason))
            .collect()
    }

    #[test]
    fn a_good_chain_and_its_key_pass_and_are_described() {
        let i = issue(&["example.com", "*.example.com"]);
        let c = check(&i.chain, &i.key, &["example.com", "www.example.com"], NOW).unwrap();
        assert_eq!(c.names, vec!["example.com", "*.example.com"]);
        assert_eq!(c.key_type, KeyType::EcdsaP256);
        assert!(c.issuer.contains("Test Intermediate"), "{}", c.issuer);
        assert_eq!(c.chain.len(), 2);
        assert_eq!(c.sha256.len(), 64);
        assert!(c.not_before <= NOW && NOW <= c.not_after);
    }

    #[test]
    fn a_key_that_is_not_the_leafs_is_refused_by_its_field() {
        let (a, b) = (issue(&["example.com"]), issue(&["example.com"]));
        let p = fields(check(&a.chain, &b.key, &["example.com"], NOW));
        assert_eq!(
            p,
            vec!["private_key: does not match the certificate's public key"]
        );
        assert!(!p[0].contains("PRIVATE"), "the key is never quoted");
    }

    #[test]
    fn a_chain_out_of_order_names_the_certificate_that_did_not_issue() {
        let i = issue(&["example.com"]);
        let blocks: Vec<&str> = i
            .chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .collect();
        let swapped = format!("{}{}", blocks[1], blocks[0]);
        let p = fields(check(&swapped, &i.key, &[], NOW));
        assert!(
            p.iter()
                .any(|x| x.starts_with("certificate[1]: did not issue certificate")),
            "{p:?}"
        );
        // An intermediate from another chain did not issue this leaf either.
        let other = issue(&["example.com"]);
        let foreign: Vec<&str> = other
            .chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .collect();
        let p = fields(check(
            &format!("{}{}", blocks[0], foreign[1]),
            &i.key,
            &[],
            NOW,
        ));
        assert!(p.iter().any(|x| x.starts_with("certificate[1]:")), "{p:?}");
    }

    #[test]
    fn names_not_covered_are_each_named() {
        let i = issue(&["example.com", "*.example.com"]);
        let p = fields(check(
            &i.chain,
            &i.key,
            &["a.b.example.com", "example.org", "www.example.com"],
            NOW,
        ));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("does not cover a.b.example.com"), "{p:?}");
        assert!(p[1].contains("does not cover example.org"), "{p:?}");
    }

    #[test]
    fn outside_its_validity_it_is_refused() {
        let i = issue(&["example.com"]);
        // 2027-06-01 and 2025-06-01.
        let p = fields(check(&i.chain, &i.key, &[], 1_811_808_000));
        assert_eq!(
            p,
            vec!["certificate: expired at Jan  1 00:00:00 2027 +00:00"]
        );
        let p = fields(check(&i.chain, &i.key, &[], 1_748_736_000));
        assert_eq!(
            p,
            vec!["certificate: is not valid before Jan  1 00:00:00 2026 +00:00"]
        );
    }

    #[test]
    fn what_is_not_pem_or_holds_nothing_is_said_so() {
        let i = issue(&["example.com"]);
        assert_eq!(
            fields(check("hello", &i.key, &[], NOW)),
            vec!["certificate: holds no CERTIFICATE block: give the chain in PEM, the leaf first"]
        );
        assert_eq!(
            fields(check(&i.chain, "nope", &[], NOW)),
            vec!["private_key: holds no PRIVATE KEY block (PKCS#8, RSA or EC, in PEM)"]
        );
    }

    #[test]
    fn a_key_pasted_into_the_certificate_is_never_quoted_back() {
        let i = issue(&["example.com"]);
        let broken = i
            .key
            .replacen("-----BEGIN PRIVATE KEY-----", "-----BEGIN PRIVATE", 1);
        let p = fields(check(&broken, &i.key, &[], NOW));
        let body = i.key.lines().nth(1).unwrap();
        assert!(
            p.iter()
                .all(|x| !x.contains(body) && !x.contains("PRIVATE")),
            "{p:?}"
        );
    }

    #[test]
    fn wildcards_cover_one_label() {
        let names = vec!["*.example.com".to_string(), "Example.NET".to_string()];
        assert!(covers(&names, "www.example.com"));
        assert!(covers(&names, "WWW.example.com."));
        assert!(!covers(&names, "example.com"));
        assert!(!covers(&names, "a.b.example.com"));
        assert!(covers(&names, "example.net"));
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_refused() {
        // Self-signed with openssl (fixtures/, 100 years).
        let p = fields(check(
            include_str!("../fixtures/rsa1024.pem"),
            include_str!("../fixtures/rsa1024.key"),
            &["rsa1024.example"],
            NOW,
        ));
        // ring does not sign with one either.
        assert_eq!(
            p,
            vec![
                "certificate: has an RSA key of 1024 bits: at least 2048",
                "private_key: is not a key this server signs with (RSA, ECDSA P-256 or P-384, Ed25519)"
            ]
        );
        let c = check(
            include_str!("../fixtures/rsa2048.pem"),
            include_str!("../fixtures/rsa2048.key"),
            &["rsa2048.example"],
            NOW,
        )
        .unwrap();
        assert_eq!(c.key_type, KeyType::Rsa(2048));
    }

    #[test]
    fn rsa_sizes_count_the_modulus_bits() {
        assert_eq!(rsa_bits(&[0, 0x80, 0, 0]), 24);
        assert_eq!(rsa_bits(&[0x01, 0xff]), 9);
        assert_eq!(rsa_bits(&[0, 0]), 0);
        assert_eq!(KeyType::Rsa(2048).to_string(), "rsa-2048");
    }
}
