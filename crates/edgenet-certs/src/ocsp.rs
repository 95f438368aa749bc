//! OCSP stapling's pure half (RFC 6960, profiled by RFC 5019): where a certificate's issuer
//! answers ([`responder`]: the leaf's Authority Information Access), the request for the leaf
//! ([`request`]: one CertID, SHA-1 as RFC 5019 asks), and whether a response may be stapled
//! ([`check`]): successful, a basic response signed by the issuer or by a responder the issuer
//! delegated to (`id-kp-OCSPSigning`), about this very certificate, `good`, and current. The
//! control plane fetches it over HTTP and streams it; PoPs staple what passed.

use der::{Decode, Encode};
use x509_ocsp::{BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// `id-ad-ocsp`.
const AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";
/// `id-kp-OCSPSigning`.
const KP_OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";
/// How far a responder's clock may run ahead of ours.
const SKEW: i64 = 300;

/// A response that may be stapled: when it was made and when it goes stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds, when the responder gives one.
    pub next_update: Option<i64>,
}

fn ders(chain_pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let ders: Vec<Vec<u8>> = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .map(|d| d.map(|d| d.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|_| "the chain is not PEM".to_string())?;
    if ders.len() < 2 {
        return Err("the chain has no issuer after the leaf: OCSP needs it".into());
    }
    Ok(ders)
}

/// The leaf's OCSP responder URL (its Authority Information Access), if it names one.
pub fn responder(chain_pem: &str) -> Option<String> {
    let der = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .next()?
        .ok()?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).ok()?;
    let url =
        leaf.iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityInfoAccess(aia) => aia.accessdescs.iter().find_map(|d| {
                    match (
                        &d.access_location,
                        d.access_method.to_id_string() == AD_OCSP,
                    ) {
                        (GeneralName::URI(u), true) => Some(u.to_string()),
                        _ => None,
                    }
                }),
                _ => None,
            });
    url
}

fn cert_id(leaf: &[u8], issuer: &[u8]) -> Result<CertId, String> {
    let leaf = x509_cert::Certificate::from_der(leaf).map_err(|e| format!("the leaf: {e}"))?;
    let issuer =
        x509_cert::Certificate::from_der(issuer).map_err(|e| format!("the issuer: {e}"))?;
    CertId::from_issuer::<sha1::Sha1>(&issuer, leaf.tbs_certificate.serial_number.clone())
        .map_err(|e| format!("the CertID: {e}"))
}

/// The DER OCSP request for the leaf of `chain_pem` (leaf first, its issuer next).
pub fn request(chain_pem: &str) -> Result<Vec<u8>, String> {
    let ders = ders(chain_pem)?;
    let id = cert_id(&ders[0], &ders[1])?;
    let req: OcspRequest = x509_ocsp::builder::OcspRequestBuilder::default()
        .with_request(x509_ocsp::Request::new(id))
        .build();
    req.to_der()
        .map_err(|e| format!("encoding the request: {e}"))
}

fn unix(t: &x509_ocsp::OcspGeneralizedTime) -> i64 {
    t.0.to_unix_duration().as_secs() as i64
}

/// Whether `key`'s owner signed `tbs` with this algorithm and signature (DER pieces).
fn signed_by(key: &X509Certificate<'_>, algorithm: &[u8], signature: &[u8], tbs: &[u8]) -> bool {
    let Ok((_, alg)) = x509_parser::x509::AlgorithmIdentifier::from_der(algorithm) else {
        return false;
    };
    let Ok((_, bits)) = x509_parser::der_parser::asn1_rs::BitString::from_der(signature) else {
        return false;
    };
    x509_parser::verify::verify_signature(key.public_key(), &alg, &bits, tbs).is_ok()
}

/// Whether a DER OCSP response for `chain_pem`'s leaf may be stapled at `now` (Unix seconds),
/// and how long it is fresh; or why not.
pub fn check(response: &[u8], chain_pem: &str, now: i64) -> Result<Fresh, String> {
    let ders = ders(chain_pem)?;
    let r = OcspResponse::from_der(response).map_err(|e| format!("not an OCSP response: {e}"))?;
    if r.response_status != x509_ocsp::OcspResponseStatus::Successful {
        return Err(format!("the responder answered {:?}", r.response_status));
    }
    let bytes = r
        .response_bytes
        .ok_or("a successful response without a body")?;
    if bytes.response_type != const_oid::db::rfc6960::ID_PKIX_OCSP_BASIC {
        return Err(format!(
            "a response of type {}, not basic",
            bytes.response_type
        ));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| format!("not a basic OCSP response: {e}"))?;
    let tbs = basic
        .tbs_response_data
        .to_der()
        .map_err(|e| format!("the response data: {e}"))?;
    let algorithm = basic
        .signature_algorithm
        .to_der()
        .map_err(|e| format!("the signature algorithm: {e}"))?;
    let signature = basic
        .signature
        .to_der()
        .map_err(|e| format!("the signature: {e}"))?;
    let (_, issuer) =
        x509_parser::parse_x509_certificate(&ders[1]).map_err(|e| format!("the issuer: {e}"))?;
    let by_issuer = signed_by(&issuer, &algorithm, &signature, &tbs);
    let by_delegate = || {
        basic.certs.iter().flatten().any(|c| {
            let Ok(der) = c.to_der() else { return false };
            let Ok((_, d)) = x509_parser::parse_x509_certificate(&der) else {
                return false;
            };
            let delegated = d.extended_key_usage().ok().flatten().is_some_and(|e| {
                e.value
                    .other
                    .iter()
                    .any(|o| o.to_id_string() == KP_OCSP_SIGNING)
                    || e.value.ocsp_signing
            });
            delegated
                && d.verify_signature(Some(issuer.public_key())).is_ok()
                && d.validity().is_valid_at(
                    x509_parser::time::ASN1Time::from_timestamp(now)
                        .unwrap_or(d.validity().not_before),
                )
                && signed_by(&d, &algorithm, &signature, &tbs)
        })
    };
    if !by_issuer && !by_delegate() {
        return Err("not signed by the certificate's issuer or a responder it delegated to".into());
    }
    let id = cert_id(&ders[0], &ders[1])?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|s| {
            s.cert_id.serial_number == id.serial_number
                && s.cert_id.issuer_key_hash == id.issuer_key_hash
                && s.cert_id.issuer_name_hash == id.issuer_name_hash
        })
        .ok_or("the response is about another certificate")?;
    match single.cert_status {
        CertStatus::Good(_) => {}
        CertStatus::Revoked(_) => {
            return Err("the responder says the certificate is revoked".into())
        }
        CertStatus::Unknown(_) => {
            return Err("the responder does not know the certificate (status unknown)".into())
        }
    }
    let this_update = unix(&single.this_update);
    let next_update = single.next_update.as_ref().map(unix);
    if this_update > now + SKEW {
        return Err(format!(
            "thisUpdate {this_update} is in the future (now {now})"
        ));
    }
    if next_update.is_some_and(|n| n < now) {
        return Err(format!(
            "stale: nextUpdate {} has passed (now {now})",
            next_update.unwrap_or(0)
        ));
    }
    Ok(Fresh {
        this_update,
        next_update,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MADE: i64 = 1_796_322_351;

    fn chain(leaf: &str) -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ocsp/");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}{f}")).unwrap();
        format!("{}{}", read(leaf), read("ca.pem"))
    }

    fn response(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/fixtures/ocsp/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn the_responder_is_read_and_the_request_is_the_one_openssl_makes() {
        assert_eq!(
            responder(&chain("leaf.pem")).as_deref(),
            Some("http://127.0.0.1:1/")
        );
        assert_eq!(request(&chain("leaf.pem")).unwrap(), response("leaf.req"));
        let leaf_only = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/ocsp/leaf.pem"
        ))
        .unwrap();
        assert!(request(&leaf_only).unwrap_err().contains("no issuer"));
    }

    #[test]
    fn only_a_current_good_answer_about_this_certificate_from_its_issuer_is_stapled() {
        let good = check(&response("leaf.ocsp"), &chain("leaf.pem"), MADE + 60).unwrap();
        assert_eq!(good.this_update, MADE);
        assert_eq!(good.next_update, Some(MADE + 7 * 86_400));
        let why = |r: &str, c: &str, now: i64| check(&response(r), &chain(c), now).unwrap_err();
        assert!(why("revoked.ocsp", "revoked.pem", MADE).contains("revoked"));
        assert!(why("unknown.ocsp", "unknown.pem", MADE).contains("unknown"));
        assert!(why("leaf.ocsp", "revoked.pem", MADE).contains("another certificate"));
        assert!(why("leaf.ocsp", "leaf.pem", MADE + 8 * 86_400).contains("stale"));
        assert!(why("leaf.ocsp", "leaf.pem", MADE - 3_600).contains("future"));
        // One bit of the signed data changed: the signature no longer holds.
        let mut forged = response("leaf.ocsp");
        let at = forged.windows(2).position(|w| w == [0x12, 0x34]).unwrap();
        forged[at + 1] ^= 1;
        let e = check(&forged, &chain("leaf.pem"), MADE).unwrap_err();
        assert!(e.contains("not signed by"), "{e}");
        assert!(check(b"\x30\x03\x0a\x01\x01", &chain("leaf.pem"), MADE)
            .unwrap_err()
            .contains("MalformedRequest"));
        assert!(check(b"nonsense", &chain("leaf.pem"), MADE).is_err());
    }
}
