//! The control plane's own certificate authority: made at first start (`DATA/ca.pem`,
//! `DATA/ca.key`, mode 0600), it signs each PoP's backbone certificate from a CSR the PoP sends
//! (the PoP's key never leaves it). PoPs authenticate each other with these certificates
//! (mutual TLS on the backbone); the name in a certificate is `NAME.pop.edgenet`.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

pub use edgenet_config::pop_dns_name;

/// The CA: its certificate (PEM) and what it signs with.
pub struct Ca {
    /// The CA certificate, PEM, as PoPs trust it.
    pub cert_pem: String,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// Loads the CA from `dir`, or makes one there.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Ca> {
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        if cert_path.exists() && key_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path)?;
            let key = KeyPair::from_pem(&std::fs::read_to_string(&key_path)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
            // rcgen signs with a Certificate value: rebuild it from the stored one's parameters
            // (same name and key, so what it signs verifies against the stored certificate).
            let params = CertificateParams::from_ca_cert_pem(&cert_pem)
                .map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?;
            let cert = params.self_signed(&key)?;
            return Ok(Ca {
                cert_pem,
                cert,
                key,
            });
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "edgenet control plane CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(10 * 365);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        crate::write_private(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, &cert_pem)?;
        tracing::info!(path = %cert_path.display(), "created the backbone certificate authority");
        Ok(Ca {
            cert_pem,
            cert,
            key,
        })
    }

    /// Signs a PoP's CSR for a year, naming the PoP (whatever names the CSR asked for).
    pub fn sign(&self, csr_pem: &str, pop: &str) -> Result<String, String> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| format!("not a PEM certificate signing request: {e}"))?;
        let p = &mut csr.params;
        p.subject_alt_names = vec![rcgen::SanType::DnsName(
            pop_dns_name(pop).try_into().map_err(|e| format!("{e}"))?,
        )];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, pop_dns_name(pop));
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(365);
        csr.signed_by(&self.cert, &self.key)
            .map(|c| c.pem())
            .map_err(|e| format!("signing: {e}"))
    }
}
