//! The control plane's own certificate authorities, each made at first start (`DATA/STEM.pem`,
//! `DATA/STEM.key`, mode 0600):
//!
//! - the backbone's (`ca`): it signs each PoP's backbone certificate from a CSR the PoP sends
//!   (the PoP's key never leaves it). PoPs authenticate each other with these certificates
//!   (mutual TLS on the backbone); the name in a certificate is `NAME.pop.edgenet`.
//! - the zones' local CA (`zones-ca`, `edgenet control --local-ca`, as `edgenet up` runs it):
//!   it signs the zones' edge certificates where there is no ACME CA to ask, and clients are
//!   given its certificate to trust (`curl --cacert`). It is another key than the backbone's,
//!   so no zone certificate can pass for a PoP.

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
    /// Loads the backbone's CA from `dir`, or makes one there.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Ca> {
        Ca::load_or_create_named(dir, "ca", "edgenet control plane CA")
    }

    /// Loads the CA kept as `dir/STEM.pem` and `dir/STEM.key`, or makes one there named
    /// `common_name`.
    pub fn load_or_create_named(dir: &Path, stem: &str, common_name: &str) -> anyhow::Result<Ca> {
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
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
        dn.push(DnType::CommonName, common_name);
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
        tracing::info!(path = %cert_path.display(), %common_name, "created a certificate authority");
        Ok(Ca {
            cert_pem,
            cert,
            key,
        })
    }

    /// Issues a certificate for `hosts` (DNS names; IP addresses become IP address names)
    /// valid for `days`, with a fresh P-256 key: the chain (the leaf: clients trust this CA)
    /// and the key, both PEM.
    pub fn issue(&self, hosts: &[String], days: i64) -> Result<(String, String), String> {
        let mut p = CertificateParams::new(hosts.to_vec()).map_err(|e| format!("names: {e}"))?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            hosts.first().cloned().unwrap_or_default(),
        );
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&random_serial()));
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = now + time::Duration::days(days);
        let key = KeyPair::generate().map_err(|e| format!("key: {e}"))?;
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .map_err(|e| format!("signing: {e}"))?;
        Ok((cert.pem(), key.serialize_pem()))
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

/// 16 random bytes with the top bit clear: a positive serial number of 127 bits.
fn random_serial() -> [u8; 16] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source works");
    b[0] &= 0x7f;
    b
}
