//! What a PoP answers for an ACME challenge (RFC 8555 section 8), built from what the control
//! plane tells it: the token and the key authorization (`token.thumbprint`, which the control
//! plane's ACME client computes from its account key).
//!
//! - HTTP-01 (section 8.3): `GET /.well-known/acme-challenge/TOKEN` on port 80 is answered 200
//!   with the key authorization as the body ([`http01_token`] reads the path).
//! - TLS-ALPN-01 (RFC 8737): a ClientHello that offers only `acme-tls/1` ([`offers_only_acme`])
//!   for the domain is answered with a self-signed certificate naming the domain and carrying
//!   the critical acmeIdentifier extension, the SHA-256 of the key authorization
//!   ([`tls_alpn01_certificate`]); the handshake is only for the CA's validation, never for
//!   requests.

use rcgen::{CertificateParams, CustomExtension, KeyPair};

/// The ALPN protocol of TLS-ALPN-01.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The token an HTTP-01 request path asks for: one base64url segment (RFC 8555: the token's
/// alphabet), nothing after it.
pub fn http01_token(path: &str) -> Option<&str> {
    let token = path.strip_prefix(HTTP01_PREFIX)?;
    let ok = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(token)
}

/// Whether a ClientHello's ALPN list is a TLS-ALPN-01 validation: it offers `acme-tls/1` and
/// nothing else (RFC 8737 section 3: the CA offers only that protocol).
pub fn offers_only_acme(alpn: &[&[u8]]) -> bool {
    alpn == [ACME_TLS_ALPN]
}

/// The TLS-ALPN-01 certificate for `domain` and `key_authorization`: DER of the certificate
/// and of its fresh P-256 key (PKCS#8).
pub fn tls_alpn01_certificate(
    domain: &str,
    key_authorization: &str,
) -> Result<(Vec<u8>, Vec<u8>), rcgen::Error> {
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    let mut params = CertificateParams::new(vec![domain.to_string()])?;
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(digest.as_ref()));
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_paths_give_their_token_and_nothing_else() {
        assert_eq!(
            http01_token("/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"),
            Some("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0")
        );
        assert_eq!(http01_token("/.well-known/acme-challenge/"), None);
        assert_eq!(http01_token("/.well-known/acme-challenge/a/b"), None);
        assert_eq!(http01_token("/.well-known/acme-challenge/a?b"), None);
        assert_eq!(http01_token("/index.html"), None);
    }

    #[test]
    fn only_a_hello_that_offers_acme_alone_is_a_validation() {
        assert!(offers_only_acme(&[b"acme-tls/1"]));
        assert!(!offers_only_acme(&[b"h2", b"acme-tls/1"]));
        assert!(!offers_only_acme(&[b"h2", b"http/1.1"]));
        assert!(!offers_only_acme(&[]));
    }

    #[test]
    fn the_validation_certificate_names_the_domain_and_carries_the_digest_critically() {
        let (der, key) = tls_alpn01_certificate("example.com", "token.thumbprint").unwrap();
        assert!(!key.is_empty());
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        let digest = ring::digest::digest(&ring::digest::SHA256, b"token.thumbprint");
        // An OCTET STRING of the 32 bytes.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], digest.as_ref());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", san.value.general_names),
            "[DNSName(\"example.com\")]"
        );
    }
}
