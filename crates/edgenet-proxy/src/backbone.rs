//! The backbone between PoPs: a listener with mutual TLS (certificates from the control
//! plane's CA, HTTP/2 offered) where other PoPs send their cache misses (tiered cache), and the
//! client side that sends a miss to an upper-tier PoP.
//!
//! A request that came over the backbone from a lower tier carries `x-edgenet-tier`; the upper
//! tier serves it through its own cache and goes to the origin itself, never to another tier,
//! so a request crosses the backbone at most once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{CertKey, WrappedX509};

/// Marks a request sent by a lower tier; its value is the lower tier's name.
pub const TIER_HEADER: &str = "x-edgenet-tier";
/// The scheme the lower tier's client used, which is part of the cache key.
pub const SCHEME_HEADER: &str = "x-edgenet-scheme";

/// The DNS name in a PoP's backbone certificate (as the control plane's CA issues it).
pub fn pop_dns_name(pop: &str) -> String {
    format!("{pop}.pop.edgenet")
}

/// Where a PoP's backbone identity is on disk.
#[derive(Debug, Clone)]
pub struct BackboneFiles {
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Its certificate (PEM).
    pub cert: PathBuf,
    /// The CA that signs every PoP's certificate (PEM).
    pub ca: PathBuf,
}

/// What the client side needs: our certificate and key, and the CA to verify peers with.
pub struct BackboneTls {
    client: Arc<CertKey>,
    ca: Arc<[WrappedX509]>,
}

fn wrap(der: &[u8]) -> WrappedX509 {
    WrappedX509::new(der.to_vec(), |raw| {
        pingora_core::utils::tls::parse_x509(raw)
    })
}

impl BackboneTls {
    /// Loads the identity.
    pub fn load(files: &BackboneFiles) -> anyhow::Result<BackboneTls> {
        let certs = edgenet_config::read_certs(&files.cert)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.cert.display()))?;
        let key = edgenet_config::read_key(&files.key)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.key.display()))?;
        let ca = edgenet_config::read_certs(&files.ca)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.ca.display()))?;
        let client = CertKey::new(
            certs.iter().map(|c| c.to_vec()).collect(),
            key.secret_der().to_vec(),
        );
        let ca: Vec<WrappedX509> = ca.iter().map(|c| wrap(c)).collect();
        Ok(BackboneTls {
            client: Arc::new(client),
            ca: Arc::from(ca.into_boxed_slice()),
        })
    }

    /// A peer for PoP `name` at `address`: TLS verified against the backbone CA for the
    /// PoP's name, our certificate offered, HTTP/2 preferred.
    pub fn peer(&self, name: &str, address: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(address, true, pop_dns_name(name));
        peer.client_cert_key = Some(self.client.clone());
        peer.options.ca = Some(self.ca.clone());
        peer.options.alpn = ALPN::H2H1;
        peer.options.connection_timeout = Some(std::time::Duration::from_secs(1));
        peer.options.total_connection_timeout = Some(std::time::Duration::from_secs(2));
        peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        peer
    }
}

/// The listener's TLS: our certificate, client certificates required and verified against
/// the backbone CA, HTTP/2 offered.
pub fn server_tls(files: &BackboneFiles) -> anyhow::Result<TlsSettings> {
    let path = |p: &Path| {
        p.to_str()
            .map(String::from)
            .ok_or_else(|| anyhow::anyhow!("{}: not UTF-8", p.display()))
    };
    let mut tls = TlsSettings::intermediate(&path(&files.cert)?, &path(&files.key)?)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in edgenet_config::read_certs(&files.ca)
        .map_err(|e| anyhow::anyhow!("{}: {e}", files.ca.display()))?
    {
        roots
            .add(c)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.ca.display()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| anyhow::anyhow!("backbone client verifier: {e}"))?;
    tls.set_client_cert_verifier(verifier);
    tls.enable_h2();
    Ok(tls)
}

/// PoP name → backbone address, from the control plane's PoP records.
pub type PopDirectory = HashMap<String, SocketAddr>;

/// The upper tier for a request: one of the zone's upper tiers, chosen by the cache key so
/// each object has one home, skipping PoPs without a known address.
pub fn choose_upper_tier<'a>(
    upper: &'a [String],
    pops: &PopDirectory,
    key: &str,
) -> Option<(&'a str, SocketAddr)> {
    let usable: Vec<(&str, SocketAddr)> = upper
        .iter()
        .filter_map(|n| pops.get(n).map(|a| (n.as_str(), *a)))
        .collect();
    if usable.is_empty() {
        return None;
    }
    // FNV-1a: stable across processes, so every lower tier picks the same upper tier.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Some(usable[(h % usable.len() as u64) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_object_has_one_upper_tier_and_unknown_pops_are_skipped() {
        let pops: PopDirectory = [
            ("a".to_string(), "127.0.0.1:1".parse().unwrap()),
            ("b".to_string(), "127.0.0.1:2".parse().unwrap()),
        ]
        .into();
        let upper = vec!["a".to_string(), "b".to_string(), "gone".to_string()];
        let mut seen = std::collections::HashSet::new();
        for i in 0..50 {
            let key = format!("http://x.test/{i}");
            let pick = choose_upper_tier(&upper, &pops, &key).unwrap();
            assert_eq!(
                choose_upper_tier(&upper, &pops, &key).unwrap(),
                pick,
                "stable"
            );
            assert_ne!(pick.0, "gone");
            seen.insert(pick.0);
        }
        assert_eq!(seen.len(), 2, "objects spread over the upper tiers");
        assert_eq!(choose_upper_tier(&upper, &PopDirectory::new(), "k"), None);
    }
}
